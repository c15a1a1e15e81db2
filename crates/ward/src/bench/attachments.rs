//! `ward bench attachments --size 1GiB`: encrypted attachment transfer through the SDK
//! (ADR 0015) against a `ward serve` child process (TLS, SQLite and the blob store in a
//! temporary directory), so the client's and the server's memory are measured apart.
//!
//! Two users are enrolled with the real SDK and share a direct conversation. Each run
//! encrypts a random file into a ciphertext file (`prepare_attachment`), uploads it in parts
//! (`upload_attachment`), and the other user downloads, verifies and decrypts it
//! (`download_attachment`); the result is compared with the original by SHA-256. Reported:
//! MiB/s of each phase (median, min, max over the runs, MiB of plaintext per second) and the
//! peak resident memory (VmHWM) of this process (the client) and of the server.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use sha2::{Digest, Sha256};
use ward_client::attachments::prepare_attachment;
use ward_client::{EnrollParams, Target, WardClient};
use ward_core::Priority;
use ward_core::attachment::AttachmentPolicy;
use ward_proto::Username;

use super::connections::Server;

const PASSWORD: &str = "bench password for the ward load generator";
const PASSPHRASE: &str = "bench profile passphrase";
/// The memory target of issue 5 for either side.
const TARGET_KIB: u64 = 64 * 1024;

/// `ward bench attachments` options.
#[derive(Args, Debug, Clone)]
pub struct AttachmentBenchArgs {
    /// File size: a number with an optional unit B, KiB, MiB or GiB (e.g. 1GiB, 256MiB); at
    /// least 8 KiB (the file is a video by its header).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Runs (each: encrypt, upload, download and decrypt); the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Working directory for the server's data, the profiles and the files (default: a new
    /// temporary directory, removed afterwards). It needs about three times `--size` free.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Parses `1GiB`, `512MiB`, `64KiB`, `1000B` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?} must start with a whole number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1024,
        "mib" | "m" => 1024 * 1024,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB or GiB)"
            ));
        }
    };
    let size = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if size == 0 {
        return Err("size must be at least 1 byte".into());
    }
    Ok(size)
}

/// Median, min and max of one phase, MiB/s.
#[derive(Serialize, Debug)]
pub struct Rate {
    pub median_mib_s: f64,
    pub min_mib_s: f64,
    pub max_mib_s: f64,
}

fn rate(mut v: Vec<f64>) -> Rate {
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Rate {
        median_mib_s: round1(median),
        min_mib_s: round1(v[0]),
        max_mib_s: round1(v[v.len() - 1]),
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The report, also printed as JSON with `--json`.
#[derive(Serialize, Debug)]
pub struct AttachmentReport {
    pub size_bytes: u64,
    pub ciphertext_bytes: u64,
    pub runs: u32,
    /// Client-side check, metadata strip and encryption into the ciphertext file.
    pub encrypt: Rate,
    /// Upload of the ciphertext in parts (create, PUT parts, complete with SHA-256).
    pub upload: Rate,
    /// Ranged download streamed into verification and decryption, written to disk.
    pub download: Rate,
    /// Peak resident memory (VmHWM) of this process, the SDK client, during the transfers
    /// (the peak is reset after setup), KiB.
    pub client_peak_rss_kib: u64,
    /// Peak resident memory (VmHWM) of the `ward serve` child during the transfers, KiB.
    pub server_peak_rss_kib: u64,
    /// Resident memory of the client when the transfers start (after setup), KiB.
    pub client_baseline_rss_kib: u64,
    /// Resident memory of the server when the transfers start (after setup), KiB.
    pub server_baseline_rss_kib: u64,
    /// Peak of the client during setup (enrollment, MLS, the random file), KiB.
    pub client_setup_peak_rss_kib: u64,
    /// Peak of the server during setup (two password hashes with Argon2id at 19 MiB each,
    /// TLS, SQLite), KiB.
    pub server_setup_peak_rss_kib: u64,
    /// Both transfer peaks under 64 MiB.
    pub memory_target_met: bool,
    pub machine: String,
    pub notes: Vec<String>,
}

fn own_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Peak resident memory (VmHWM) of this process so far, KiB.
pub(super) fn peak_rss_kib() -> u64 {
    own_status_kib("VmHWM:")
}

/// Memory figures read when setup ends and the peaks are reset.
#[derive(Default)]
struct Baseline {
    client_setup_peak: u64,
    server_setup_peak: u64,
    client_rss: u64,
    server_rss: u64,
}

/// Reads the setup peaks, then resets `VmHWM` of this process and of the server to their
/// current resident size (`clear_refs` value 5, Linux 4.0+), so the peaks measured next
/// belong to the transfers alone.
fn reset_peaks(server: &Server) -> anyhow::Result<Baseline> {
    let client_setup_peak = own_status_kib("VmHWM:");
    let server_setup_peak = server.peak_rss_kib()?;
    for pid in ["self".to_owned(), server.pid().to_string()] {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
            .with_context(|| format!("reset the peak RSS of /proc/{pid}"))?;
    }
    Ok(Baseline {
        client_setup_peak,
        server_setup_peak,
        client_rss: own_status_kib("VmRSS:"),
        // Just reset, so the peak is the resident size now.
        server_rss: server.peak_rss_kib()?,
    })
}

/// An MP4 `ftyp` box: the file is a video by content (the type check refuses unrecognised
/// content declared as a generic binary).
const MP4_HEAD: &[u8] = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom";

/// Writes `size` bytes (an MP4 header, then random bytes) to `path` in 1 MiB pieces; returns
/// their SHA-256.
fn random_file(path: &Path, size: u64) -> anyhow::Result<[u8; 32]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
    );
    let mut buf = vec![0u8; 1024 * 1024];
    let mut hash = Sha256::new();
    let mut left = size;
    let mut first = true;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        if first {
            let h = MP4_HEAD.len().min(n);
            buf[..h].copy_from_slice(&MP4_HEAD[..h]);
            first = false;
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(hash.finalize().into())
}

fn sha256_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = vec![0u8; 1024 * 1024];
    let mut hash = Sha256::new();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finalize().into())
}

fn add_user(data: &Path, name: &str) -> anyhow::Result<String> {
    let out = Command::new(std::env::current_exe()?)
        .env_remove("WARD_MASTER_KEY")
        .env("WARD_LOG", "warn")
        .arg("admin")
        .arg("--data")
        .arg(data)
        .args(["--json", "user", "add", name, "--role", "physician"])
        .output()
        .context("run ward admin user add")?;
    if !out.status.success() {
        bail!(
            "ward admin user add {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["enrollment_code"]
        .as_str()
        .map(str::to_owned)
        .context("no enrollment code in the answer of ward admin user add")
}

pub(super) async fn enroll(
    base: &Path,
    data: &Path,
    url: &str,
    ca_pem: &str,
    name: &str,
) -> anyhow::Result<WardClient> {
    let code = add_user(data, name)?;
    let (client, _) = WardClient::enroll(EnrollParams {
        profile_dir: &base.join(format!("{name}-profile")),
        passphrase: PASSPHRASE,
        server_url: url,
        ca_pem,
        username: Username::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?,
        enrollment_code: &code,
        password: PASSWORD,
        device_name: "bench",
    })
    .await
    .with_context(|| format!("enroll {name}"))?;
    Ok(client)
}

/// Run the attachment benchmark.
pub async fn run(args: AttachmentBenchArgs) -> anyhow::Result<AttachmentReport> {
    if args.size < 8 * 1024 {
        bail!("--size must be at least 8KiB (got {} bytes)", args.size);
    }
    let (base, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("ward-bench-att-{}", uuid::Uuid::new_v4().simple())),
            true,
        ),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let report = run_in(&args, &base).await;
    if remove {
        let _ = std::fs::remove_dir_all(&base);
    }
    report
}

async fn run_in(args: &AttachmentBenchArgs, base: &Path) -> anyhow::Result<AttachmentReport> {
    let base = base.to_path_buf();
    let data = base.join("server-data");
    // The organisation's defaults (2 GiB per attachment, 100 GiB quota) fit the runs.
    let mut server = Server::start(&data, 100)?;
    let url = format!("https://localhost:{}", server.addr.port());
    let ca_pem = std::fs::read_to_string(data.join("tls/ca.pem")).context("the server's CA")?;
    let result = measure(args, &base, &data, &url, &ca_pem, &server).await;
    let server_peak = server.peak_rss_kib().unwrap_or(0);
    server.stop();
    let (encrypt, upload, download, ciphertext_bytes, baseline) = result?;
    let client_peak = own_status_kib("VmHWM:");
    Ok(AttachmentReport {
        size_bytes: args.size,
        ciphertext_bytes,
        runs: args.runs,
        encrypt: rate(encrypt),
        upload: rate(upload),
        download: rate(download),
        client_peak_rss_kib: client_peak,
        server_peak_rss_kib: server_peak,
        client_baseline_rss_kib: baseline.client_rss,
        server_baseline_rss_kib: baseline.server_rss,
        client_setup_peak_rss_kib: baseline.client_setup_peak,
        server_setup_peak_rss_kib: baseline.server_setup_peak,
        memory_target_met: client_peak < TARGET_KIB && server_peak < TARGET_KIB,
        machine: super::machine(),
        notes: vec![
            "TLS on loopback; server: `ward serve` child process, SQLite, local blob store".into(),
            "client: this process, the SDK (ward-client) of the sender and the recipient".into(),
            "rates are MiB of plaintext per second; download includes verification, \
             decryption and writing the file"
                .into(),
        ],
    })
}

type Phases = (Vec<f64>, Vec<f64>, Vec<f64>, u64, Baseline);

async fn measure(
    args: &AttachmentBenchArgs,
    base: &Path,
    data: &Path,
    url: &str,
    ca_pem: &str,
    server: &Server,
) -> anyhow::Result<Phases> {
    let mut alice = enroll(base, data, url, ca_pem, "alice").await?;
    let mut bob = enroll(base, data, url, ca_pem, "bob").await?;
    let sent = alice
        .send_message(
            Target::User(Username::parse("bob").map_err(|e| anyhow::anyhow!("{e}"))?),
            "benchmark conversation",
            Priority::Routine,
            false,
        )
        .await?;
    bob.sync().await?;
    let src = base.join("bench.mp4");
    let work = base.join("work");
    let dl = base.join("downloads");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&dl)?;
    let expected = tokio::task::spawn_blocking({
        let src = src.clone();
        let size = args.size;
        move || random_file(&src, size)
    })
    .await??;
    let baseline = reset_peaks(server)?;
    let mib = args.size as f64 / (1024.0 * 1024.0);
    let (mut enc, mut up, mut down) = (Vec::new(), Vec::new(), Vec::new());
    let mut ciphertext_bytes = 0;
    for run in 1..=args.runs {
        let t = Instant::now();
        let prepared = tokio::task::spawn_blocking({
            let (src, work) = (src.clone(), work.clone());
            move || {
                prepare_attachment(
                    &src,
                    None,
                    &AttachmentPolicy::default(),
                    &work,
                    &mut rand::rngs::OsRng,
                )
            }
        })
        .await??;
        enc.push(mib / t.elapsed().as_secs_f64());
        ciphertext_bytes = prepared.blob.ciphertext_len;
        let t = Instant::now();
        let d = alice
            .upload_attachment(sent.conversation_id, &prepared, None)
            .await;
        let _ = std::fs::remove_file(&prepared.ciphertext_path);
        let d = d?;
        up.push(mib / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let path = bob.download_attachment(&d, &dl, None).await?;
        down.push(mib / t.elapsed().as_secs_f64());
        let got = tokio::task::spawn_blocking({
            let path = path.clone();
            move || sha256_file(&path)
        })
        .await??;
        std::fs::remove_file(&path)?;
        if got != expected {
            bail!("run {run}: the downloaded file differs from the original");
        }
        eprintln!(
            "run {run}: encrypt {:.1} MiB/s, upload {:.1} MiB/s, download {:.1} MiB/s",
            enc[enc.len() - 1],
            up[up.len() - 1],
            down[down.len() - 1]
        );
    }
    let _ = std::fs::remove_file(&src);
    Ok((enc, up, down, ciphertext_bytes, baseline))
}

pub fn print_summary(r: &AttachmentReport) {
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "ward bench attachments: {} bytes ({:.0} MiB), {} run(s), {}",
        r.size_bytes,
        r.size_bytes as f64 / (1024.0 * 1024.0),
        r.runs,
        r.machine
    );
    for (name, rt) in [
        ("encrypt", &r.encrypt),
        ("upload", &r.upload),
        ("download", &r.download),
    ] {
        println!(
            "  {name:<9} median {:>7.1} MiB/s (min {:.1}, max {:.1})",
            rt.median_mib_s, rt.min_mib_s, rt.max_mib_s
        );
    }
    println!(
        "  peak RSS during the transfers: client {:.1} MiB, server {:.1} MiB \
         (target < 64 MiB each: {}); at their start {:.1} / {:.1} MiB",
        mib(r.client_peak_rss_kib),
        mib(r.server_peak_rss_kib),
        if r.memory_target_met { "met" } else { "MISSED" },
        mib(r.client_baseline_rss_kib),
        mib(r.server_baseline_rss_kib),
    );
    println!(
        "  peak RSS during setup (enrollment, MLS, password hashing): client {:.1} MiB, \
         server {:.1} MiB",
        mib(r.client_setup_peak_rss_kib),
        mib(r.server_setup_peak_rss_kib),
    );
    for n in &r.notes {
        println!("  note: {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1TB").unwrap_err().contains("unknown size unit"));
        assert!(parse_size("GiB").unwrap_err().contains("whole number"));
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
        let r = rate(vec![3.0, 1.0, 2.0]);
        assert_eq!((r.median_mib_s, r.min_mib_s, r.max_mib_s), (2.0, 1.0, 3.0));
    }
}
