//! `ward bench e2e`: the clinical chat workload end to end with real MLS clients (BENCH.md
//! "end-to-end mode"), client crypto cost reported apart.
//!
//! It starts `ward serve` as a child process (TLS with its generated CA, SQLite in a temporary
//! directory) and enrolls N users with the real SDK (`ward-client`, each with its own encrypted
//! profile). Conversations are created with real MLS: one direct conversation per pair of
//! users, and groups of up to `--group-size` members, each built by its creator adding one
//! member per commit (so the commit cost is measured per group size). Every member syncs until
//! it has joined. Then, per step, real encrypted messages are sent at a fixed offered rate
//! (open loop: each has an intended send time; a random member of a random conversation sends
//! it). Every user runs its own task with its client and its live WebSocket, and syncs
//! (fetches and decrypts) when the server pushes an event, as `ward client follow` does.
//!
//! Reported: send→decrypted latency (from the intended send time until the receiver's sync
//! returned the decrypted message), send-ack latency, throughput, and the client's crypto cost
//! measured around the SDK's MLS calls only (encrypt and decrypt per message, commit building
//! when adding a member, processing others' commits). Correctness: every message a send was
//! acknowledged for is decrypted exactly once by every other member, in seq order per
//! conversation; any loss, duplicate, reordering or undecryptable message exits 1.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use ward_client::{CryptoTimings, Target, WardClient};
use ward_core::Priority;
use ward_proto::{ConversationId, Username};

use super::connections::Server;
use super::{Percentiles, percentiles};

/// `ward bench e2e` options.
#[derive(Args, Debug, Clone)]
pub struct E2eBenchArgs {
    /// Users, one device each, each with its own SDK profile.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(2..=500))]
    users: u32,
    /// Largest group; groups are built one added member per commit.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(3..=100))]
    group_size: u32,
    /// Offered rates, messages per second, one step each.
    #[arg(long, value_delimiter = ',', default_value = "10,20,40")]
    rates: Vec<u32>,
    /// Sending window per step, seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    step_secs: u64,
    /// How long after a step's last send to wait for deliveries, seconds.
    #[arg(long, default_value_t = 20)]
    settle_secs: u64,
    /// Random seed for membership and traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working directory for the server's data and the profiles (default: a new temporary
    /// directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Median, p99 and max of a duration sample, microseconds.
#[derive(Serialize, Debug, Default, Clone)]
pub struct Micros {
    pub samples: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

fn micros(mut v: Vec<Duration>) -> Micros {
    if v.is_empty() {
        return Micros::default();
    }
    v.sort_unstable();
    let at = |p: f64| {
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        round1(v[i].as_secs_f64() * 1e6)
    };
    Micros {
        samples: v.len(),
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: round1(v[v.len() - 1].as_secs_f64() * 1e6),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Commit cost of adding one member, at one group size (members after the add).
#[derive(Serialize, Debug, Clone)]
pub struct CommitCost {
    pub group_size_after: usize,
    pub cost: Micros,
}

/// Client-side MLS cost, measured around the SDK's calls into the sans-I/O core (no network,
/// no profile writes).
#[derive(Serialize, Debug, Default, Clone)]
pub struct CryptoReport {
    /// Encrypting one application message (the sender).
    pub encrypt: Micros,
    /// Decrypting one application message, with the sender's credential checks (a receiver).
    pub decrypt: Micros,
    /// Building a commit that adds one member (one device), by group size.
    pub commit_add_member: Vec<CommitCost>,
    /// Processing another member's commit on receipt.
    pub commit_processed: Micros,
    /// Client CPU in MLS per delivered message: (encrypt + decrypts) / deliveries, µs.
    pub mls_us_per_delivery: f64,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct E2eStep {
    pub offered_msgs_per_sec: u32,
    pub planned: usize,
    pub acked: usize,
    pub send_errors: usize,
    /// Sends acknowledged per second over the step's sending window.
    pub acked_msgs_per_sec: f64,
    /// Messages decrypted by receivers (per device) per second over the window.
    pub decrypted_per_sec: f64,
    /// From the intended send time until `send` returned (encrypt, HTTP, durable append).
    pub send_ack: Percentiles,
    /// From the intended send time until a receiver's sync returned it decrypted.
    pub send_to_decrypted: Percentiles,
    /// Syncs the receivers ran (each triggered by a pushed event).
    pub syncs: u64,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct E2eCorrectness {
    pub ok: bool,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub lost: u64,
    /// A message returned twice to the same receiver.
    pub duplicates: u64,
    /// A receiver got a conversation's messages out of seq order.
    pub out_of_order: u64,
    /// Messages the SDK could not decrypt or refused (its sync warnings).
    pub decrypt_failures: u64,
    pub send_errors: u64,
    pub first_errors: Vec<String>,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct E2eReport {
    pub mode: &'static str,
    pub users: usize,
    pub direct_conversations: usize,
    pub groups: usize,
    pub largest_group: usize,
    pub mean_recipients: f64,
    pub setup_secs: f64,
    pub steps: Vec<E2eStep>,
    pub crypto: CryptoReport,
    pub correctness: E2eCorrectness,
    pub server_peak_rss_kib: u64,
    pub client_peak_rss_kib: u64,
    pub machine: String,
    pub notes: Vec<String>,
}

struct User {
    name: Username,
    client: WardClient,
}

struct Conv {
    id: ConversationId,
    members: Vec<usize>,
}

/// What one user's task saw in a step.
#[derive(Default)]
struct UserLog {
    /// (message index, send-ack µs) of acknowledged sends, with the seq.
    sent: Vec<(u32, u64, u64)>,
    errors: Vec<String>,
    /// (message index, conversation, seq, µs after the run's base) per decrypted message.
    received: Vec<(u32, usize, u64, u64)>,
    warnings: u64,
    syncs: u64,
}

/// `(message index, intended µs)` parsed from a bench text.
fn parse_text(t: &str) -> Option<(u32, u64)> {
    let mut it = t.strip_prefix("e2e ")?.split(' ');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Run the end-to-end benchmark.
pub async fn run(args: E2eBenchArgs) -> anyhow::Result<E2eReport> {
    if args.rates.is_empty() || args.rates.iter().any(|r| *r == 0 || *r > 10_000) {
        bail!("--rates must list 1 to 10000 messages per second per step");
    }
    let (base, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ward-bench-e2e-{}", uuid::Uuid::new_v4().simple())),
            true,
        ),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let data = base.join("server-data");
    let result = async {
        let mut server = Server::start(&data, args.users as usize * 2 + 100)?;
        let r = run_with(&args, &base, &data, &server).await;
        let peak = server.peak_rss_kib().unwrap_or(0);
        server.stop();
        r.map(|mut rep| {
            rep.server_peak_rss_kib = peak;
            rep
        })
    }
    .await;
    if remove {
        let _ = std::fs::remove_dir_all(&base);
    }
    result
}

async fn run_with(
    args: &E2eBenchArgs,
    base: &Path,
    data: &Path,
    server: &Server,
) -> anyhow::Result<E2eReport> {
    let started = Instant::now();
    let url = format!("https://localhost:{}", server.addr.port());
    let ca_pem = std::fs::read_to_string(data.join("tls/ca.pem")).context("the server's CA")?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let n = args.users as usize;

    eprintln!("e2e: enrolling {n} users with the SDK");
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("e2e-u{i:03}");
        let mut client = super::attachments::enroll(base, data, &url, &ca_pem, &name).await?;
        client.measure_crypto();
        users.push(User {
            name: Username::parse(&name).map_err(|e| anyhow::anyhow!("{e}"))?,
            client,
        });
    }

    // Conversations: direct pairs, then groups of up to group_size from a shuffled order.
    let mut convs: Vec<Conv> = Vec::new();
    eprintln!("e2e: creating direct conversations");
    for a in (0..n.saturating_sub(1)).step_by(2) {
        let b = a + 1;
        let peer = users[b].name.clone();
        let sent = users[a]
            .client
            .send_text(Target::User(peer), "e2e setup", Priority::Routine)
            .await
            .with_context(|| format!("direct conversation {a}-{b}"))?;
        convs.push(Conv {
            id: sent.conversation_id,
            members: vec![a, b],
        });
    }
    let n_direct = convs.len();
    let gs = (args.group_size as usize).min(n);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut commit_costs: HashMap<usize, Vec<Duration>> = HashMap::new();
    if gs >= 3 {
        eprintln!("e2e: creating groups of up to {gs}, one member per commit");
        for chunk in order.chunks(gs).filter(|c| c.len() >= 3) {
            let creator = chunk[0];
            let first = users[chunk[1]].name.clone();
            users[creator].client.take_crypto_timings();
            let id = users[creator]
                .client
                .create_group("e2e group", &[first])
                .await
                .context("create a group")?;
            let mut record = |t: CryptoTimings, size: usize| {
                if let Some((_, d)) = t.commits.iter().find(|(added, _)| *added == 1) {
                    commit_costs.entry(size).or_default().push(*d);
                }
            };
            let t = users[creator].client.take_crypto_timings();
            record(t, 2);
            for (k, &m) in chunk.iter().enumerate().skip(2) {
                let name = users[m].name.clone();
                users[creator]
                    .client
                    .add_members(id, &[name])
                    .await
                    .context("add a member")?;
                let t = users[creator].client.take_crypto_timings();
                record(t, k + 1);
            }
            convs.push(Conv {
                id,
                members: chunk.to_vec(),
            });
        }
    }
    let n_groups = convs.len() - n_direct;
    // Everyone joins (Welcomes) and processes the later commits.
    eprintln!("e2e: {} conversations; members joining", convs.len());
    let mut processed = Vec::new();
    for _ in 0..2 {
        for u in users.iter_mut() {
            u.client.sync().await.context("sync after setup")?;
        }
    }
    for u in users.iter_mut() {
        processed.extend(u.client.take_crypto_timings().commits_processed);
    }
    let setup_secs = started.elapsed().as_secs_f64();
    let mean_recipients =
        convs.iter().map(|c| c.members.len() - 1).sum::<usize>() as f64 / convs.len().max(1) as f64;

    let base_t = Instant::now();
    let mut steps = Vec::new();
    let mut corr = E2eCorrectness::default();
    let mut enc = Vec::new();
    let mut dec = Vec::new();
    let mut next_msg: u32 = 0;
    let mut all_users = users;
    for &rate in &args.rates {
        let (back, step, timings) = run_step(
            args,
            all_users,
            &convs,
            rate,
            &mut rng,
            &mut next_msg,
            base_t,
            &mut corr,
        )
        .await?;
        all_users = back;
        enc.extend(timings.encrypt);
        dec.extend(timings.decrypt);
        processed.extend(timings.commits_processed);
        eprintln!(
            "e2e: {rate} msg/s offered: {} acked, {:.1} decrypted/s, send→decrypted p50 {:.1} ms, p99 {:.1} ms",
            step.acked,
            step.decrypted_per_sec,
            step.send_to_decrypted.p50_ms,
            step.send_to_decrypted.p99_ms
        );
        steps.push(step);
    }
    drop(all_users);
    corr.ok = corr.lost == 0
        && corr.duplicates == 0
        && corr.out_of_order == 0
        && corr.decrypt_failures == 0
        && corr.expected_deliveries > 0;
    let mut commit_add_member: Vec<CommitCost> = commit_costs
        .into_iter()
        .map(|(size, v)| CommitCost {
            group_size_after: size,
            cost: micros(v),
        })
        .collect();
    commit_add_member.sort_by_key(|c| c.group_size_after);
    let mls_total: Duration = enc.iter().chain(dec.iter()).sum();
    let crypto = CryptoReport {
        mls_us_per_delivery: round1(mls_total.as_secs_f64() * 1e6 / corr.delivered.max(1) as f64),
        encrypt: micros(enc),
        decrypt: micros(dec),
        commit_add_member,
        commit_processed: micros(processed),
    };
    Ok(E2eReport {
        mode: "e2e",
        users: n,
        direct_conversations: n_direct,
        groups: n_groups,
        largest_group: convs.iter().map(|c| c.members.len()).max().unwrap_or(0),
        mean_recipients: round1(mean_recipients * 10.0) / 10.0,
        setup_secs: round1(setup_secs),
        steps,
        crypto,
        correctness: corr,
        server_peak_rss_kib: 0,
        client_peak_rss_kib: super::attachments::peak_rss_kib(),
        machine: super::machine(),
        notes: vec![
            "TLS on loopback; server: `ward serve` child process, SQLite (synchronous=FULL)".into(),
            "clients: this process, one SDK client (own encrypted profile) and one WebSocket per \
             user; a pushed event triggers a sync (fetch, decrypt, save profile, acknowledge)"
                .into(),
            "latency is from the intended send time (open loop) to the receiver's decrypted \
             message; it includes the sender's encrypt and profile write and the receiver's \
             sync round trips"
                .into(),
            "crypto cost is time inside the SDK's MLS calls; all clients share this process's \
             cores with the server"
                .into(),
        ],
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "one step of the run; the arguments are the run's state"
)]
async fn run_step(
    args: &E2eBenchArgs,
    users: Vec<User>,
    convs: &[Conv],
    rate: u32,
    rng: &mut StdRng,
    next_msg: &mut u32,
    base: Instant,
    corr: &mut E2eCorrectness,
) -> anyhow::Result<(Vec<User>, E2eStep, CryptoTimings)> {
    let n_msgs = (u64::from(rate) * args.step_secs) as usize;
    let first = *next_msg;
    let start_us = base.elapsed().as_micros() as u64 + 1_000_000;
    // Plan: (message index, intended µs, conversation) per sender.
    let mut plans: Vec<Vec<(u32, u64, usize)>> = vec![Vec::new(); users.len()];
    let mut msg_conv: HashMap<u32, (usize, usize)> = HashMap::new();
    for k in 0..n_msgs {
        let idx = first + k as u32;
        let at = start_us + (k as u64 * 1_000_000) / u64::from(rate);
        let c = rng.gen_range(0..convs.len());
        let sender = convs[c].members[rng.gen_range(0..convs[c].members.len())];
        plans[sender].push((idx, at, c));
        msg_conv.insert(idx, (c, sender));
    }
    *next_msg = first + n_msgs as u32;
    let conv_index: Arc<HashMap<ConversationId, usize>> =
        Arc::new(convs.iter().enumerate().map(|(i, c)| (c.id, i)).collect());
    let expected_total: u64 = msg_conv
        .values()
        .map(|(c, _)| (convs[*c].members.len() - 1) as u64)
        .sum();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (u, plan) in users.into_iter().zip(plans) {
        let ids: Vec<ConversationId> = convs.iter().map(|c| c.id).collect();
        tasks.push(tokio::spawn(user_task(
            u,
            plan,
            ids,
            conv_index.clone(),
            base,
            delivered.clone(),
            stop_rx.clone(),
        )));
    }
    // Wait for the sending window, then for the deliveries (or the settle time).
    let window_end = base + Duration::from_micros(start_us + args.step_secs * 1_000_000);
    tokio::time::sleep_until(window_end.into()).await;
    let settle_until = Instant::now() + Duration::from_secs(args.settle_secs);
    while Instant::now() < settle_until && delivered.load(Ordering::Relaxed) < expected_total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let mut back = Vec::new();
    let mut logs = Vec::new();
    let mut timings = CryptoTimings::default();
    for t in tasks {
        let (mut u, log) = t.await.context("a user task panicked")?;
        let ct = u.client.take_crypto_timings();
        timings.encrypt.extend(ct.encrypt);
        timings.decrypt.extend(ct.decrypt);
        timings.commits_processed.extend(ct.commits_processed);
        back.push(u);
        logs.push(log);
    }

    // Correctness and figures.
    let mut acked: HashMap<u32, u64> = HashMap::new();
    let mut ack_lat = Vec::new();
    let mut step = E2eStep {
        offered_msgs_per_sec: rate,
        planned: n_msgs,
        ..Default::default()
    };
    for log in &logs {
        for &(idx, lat, seq) in &log.sent {
            acked.insert(idx, seq);
            ack_lat.push(lat);
        }
        step.send_errors += log.errors.len();
        for e in &log.errors {
            if corr.first_errors.len() < 5 {
                corr.first_errors.push(e.clone());
            }
        }
        step.syncs += log.syncs;
        corr.decrypt_failures += log.warnings;
    }
    corr.send_errors += step.send_errors as u64;
    step.acked = acked.len();
    let window_s = args.step_secs as f64;
    step.acked_msgs_per_sec = round1(acked.len() as f64 / window_s);
    let mut lat = Vec::new();
    let mut got = 0u64;
    for (r, log) in logs.iter().enumerate() {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut last_seq: HashMap<usize, u64> = HashMap::new();
        for &(idx, c, seq, at_us) in &log.received {
            if !(first..*next_msg).contains(&idx) {
                continue;
            }
            if !seen.insert(idx) {
                corr.duplicates += 1;
                continue;
            }
            let last = last_seq.entry(c).or_insert(0);
            if seq <= *last {
                corr.out_of_order += 1;
            }
            *last = seq;
            match (msg_conv.get(&idx), acked.get(&idx)) {
                (Some((mc, sender)), Some(aseq)) if *mc == c && *sender != r && *aseq == seq => {}
                _ => corr.duplicates += 1, // not a message this receiver should have
            }
            got += 1;
            let intended = plan_time(idx, first, start_us, rate);
            lat.push(at_us.saturating_sub(intended));
        }
        for (idx, (c, sender)) in &msg_conv {
            if *sender == r || !acked.contains_key(idx) || !convs[*c].members.contains(&r) {
                continue;
            }
            corr.expected_deliveries += 1;
            if seen.contains(idx) {
                corr.delivered += 1;
            } else {
                corr.lost += 1;
            }
        }
    }
    step.decrypted_per_sec = round1(got as f64 / window_s);
    step.send_ack = percentiles(ack_lat);
    step.send_to_decrypted = percentiles(lat);
    Ok((back, step, timings))
}

fn plan_time(idx: u32, first: u32, start_us: u64, rate: u32) -> u64 {
    start_us + (u64::from(idx - first) * 1_000_000) / u64::from(rate)
}

async fn user_task(
    mut u: User,
    plan: Vec<(u32, u64, usize)>,
    conv_ids: Vec<ConversationId>,
    conv_index: Arc<HashMap<ConversationId, usize>>,
    base: Instant,
    delivered: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (User, UserLog) {
    let mut log = UserLog::default();
    let mut ws = match u.client.event_socket().await {
        Ok(ws) => Some(ws),
        Err(e) => {
            log.errors.push(format!("{}: event socket: {e}", u.name));
            None
        }
    };
    let now_us = || base.elapsed().as_micros() as u64;
    let mut plan = plan.into_iter().peekable();
    loop {
        let next_at = plan
            .peek()
            .map(|(_, at, _)| base + Duration::from_micros(*at));
        let mut do_sync = false;
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = async {
                match next_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending::<()>().await,
                }
            } => {
                if let Some((idx, at, c)) = plan.next() {
                    let text = format!("e2e {idx} {at}");
                    match u.client
                        .send_text(Target::Conversation(conv_ids[c]), &text, Priority::Routine)
                        .await
                    {
                        Ok(sent) => log.sent.push((idx, now_us().saturating_sub(at), sent.seq)),
                        Err(e) => log.errors.push(format!("{}: send: {e}", u.name)),
                    }
                }
            }
            frame = async {
                match ws.as_mut() {
                    Some(ws) => ws.next().await,
                    None => std::future::pending().await,
                }
            } => {
                match frame {
                    Some(Ok(_)) => do_sync = true,
                    _ => {
                        // The socket ended: reconnect, then catch up by sync.
                        ws = u.client.event_socket().await.ok();
                        do_sync = true;
                    }
                }
            }
        }
        if do_sync {
            // Events that queued up meanwhile are covered by this one sync.
            if let Some(ws) = ws.as_mut() {
                while let Some(Some(Ok(_))) = ws.next().now_or_never() {}
            }
            sync_into(&mut u, &conv_index, base, &delivered, &mut log).await;
        }
    }
    // Catch anything pushed after the last event.
    sync_into(&mut u, &conv_index, base, &delivered, &mut log).await;
    if let Some(mut ws) = ws {
        let _ = ws.close(None).await;
    }
    (u, log)
}

async fn sync_into(
    u: &mut User,
    conv_index: &HashMap<ConversationId, usize>,
    base: Instant,
    delivered: &AtomicU64,
    log: &mut UserLog,
) {
    log.syncs += 1;
    match u.client.sync().await {
        Ok(report) => {
            let at = base.elapsed().as_micros() as u64;
            log.warnings += report.warnings.len() as u64;
            for m in &report.messages {
                let (Some((idx, _)), Some(&c), Some(seq)) = (
                    parse_text(&m.text),
                    conv_index.get(&m.conversation_id),
                    m.seq,
                ) else {
                    continue;
                };
                if m.outgoing {
                    continue;
                }
                log.received.push((idx, c, seq, at));
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(e) => log.errors.push(format!("{}: sync: {e}", u.name)),
    }
}

pub fn print_summary(r: &E2eReport) {
    println!(
        "ward bench e2e: {} users, {} direct + {} groups (largest {}, mean {:.1} recipients), setup {:.1}s, {}",
        r.users,
        r.direct_conversations,
        r.groups,
        r.largest_group,
        r.mean_recipients,
        r.setup_secs,
        r.machine
    );
    println!(
        "  {:>8} {:>7} {:>9} {:>12} {:>26} {:>26}",
        "offered",
        "acked",
        "acked/s",
        "decrypted/s",
        "send-ack p50/p99 ms",
        "send→decrypted p50/p99 ms"
    );
    for s in &r.steps {
        println!(
            "  {:>8} {:>7} {:>9.1} {:>12.1} {:>26} {:>26}",
            s.offered_msgs_per_sec,
            s.acked,
            s.acked_msgs_per_sec,
            s.decrypted_per_sec,
            format!("{:.1} / {:.1}", s.send_ack.p50_ms, s.send_ack.p99_ms),
            format!(
                "{:.1} / {:.1}",
                s.send_to_decrypted.p50_ms, s.send_to_decrypted.p99_ms
            ),
        );
    }
    let c = &r.crypto;
    println!(
        "  client MLS: encrypt p50 {:.0} µs p99 {:.0} µs ({} msgs); decrypt p50 {:.0} µs p99 {:.0} µs ({}); {:.0} µs per delivery",
        c.encrypt.p50_us,
        c.encrypt.p99_us,
        c.encrypt.samples,
        c.decrypt.p50_us,
        c.decrypt.p99_us,
        c.decrypt.samples,
        c.mls_us_per_delivery
    );
    for cc in &c.commit_add_member {
        println!(
            "  commit adding 1 member → group of {:>3}: p50 {:.0} µs ({} samples)",
            cc.group_size_after, cc.cost.p50_us, cc.cost.samples
        );
    }
    println!(
        "  processing another member's commit: p50 {:.0} µs ({} samples)",
        c.commit_processed.p50_us, c.commit_processed.samples
    );
    let k = &r.correctness;
    println!(
        "  correctness: {} ({} of {} deliveries, {} lost, {} duplicates, {} out of order, {} undecryptable, {} send errors)",
        if k.ok { "OK" } else { "FAILED" },
        k.delivered,
        k.expected_deliveries,
        k.lost,
        k.duplicates,
        k.out_of_order,
        k.decrypt_failures,
        k.send_errors
    );
    for e in &k.first_errors {
        println!("    error: {e}");
    }
    println!(
        "  peak RSS: clients {:.1} MiB (all users in this process), server {:.1} MiB",
        r.client_peak_rss_kib as f64 / 1024.0,
        r.server_peak_rss_kib as f64 / 1024.0
    );
    for n in &r.notes {
        println!("  note: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_parse_and_durations_summarise() {
        assert_eq!(parse_text("e2e 42 1000"), Some((42, 1000)));
        assert_eq!(parse_text("hello"), None);
        assert_eq!(parse_text("e2e x 1"), None);
        let m = micros(vec![
            Duration::from_micros(30),
            Duration::from_micros(10),
            Duration::from_micros(20),
        ]);
        assert_eq!((m.samples, m.p50_us, m.max_us), (3, 20.0, 30.0));
        assert_eq!(micros(Vec::new()).samples, 0);
        assert_eq!(plan_time(12, 10, 1_000, 4), 1_000 + 500_000);
    }
}
