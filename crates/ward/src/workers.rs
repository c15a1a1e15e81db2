//! `ward serve --workers K`: K `ward serve --reuse-port` processes sharing one port (ADR 0021).
//!
//! Each worker is a complete, independent node (its own runtime, connection limit, file
//! descriptors and NATS connection) over the one PostgreSQL database; Linux spreads new
//! connections over the workers' listening sockets. This process only starts them one after
//! the other (the first creates the master key and TLS material and picks the port when the
//! listen port is 0), prints the address once, forwards SIGTERM and Ctrl-C to every worker,
//! and exits, stopping the others, as soon as one worker exits on its own: restarting a
//! failed worker is the service manager's job, which also stops the workers if this process
//! is killed (systemd `KillMode=control-group`, the default).

use std::ffi::OsString;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use ward_server::config::Config;

use super::ServeArgs;

/// How long a worker may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long workers get to shut down after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Start `k` workers and wait; see the module documentation.
pub async fn supervise(k: u16, args: &ServeArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("path of this binary")?;
    let mut common: Vec<OsString> = vec!["serve".into(), "--reuse-port".into()];
    if let Some(c) = &args.location.config {
        common.extend(["--config".into(), c.clone().into_os_string()]);
    }
    // The data directory as resolved, so every worker uses the same master key and TLS.
    common.extend(["--data".into(), config.data_dir.clone().into_os_string()]);
    if let Some(u) = &args.location.database_url {
        common.extend(["--database-url".into(), u.into()]);
    }
    if args.dangerous_plain_http {
        common.push("--dangerous-plain-http".into());
    }

    let mut listen = config.listen.to_string();
    let mut url = String::new();
    let mut workers: Vec<Child> = Vec::with_capacity(usize::from(k));
    for i in 1..=k {
        let started = start_worker(&exe, &common, &listen, i == 1).await;
        let (child, worker_url) = match started {
            Ok(w) => w,
            Err(e) => {
                stop_all(&mut workers).await;
                return Err(e.context(format!("worker {i} of {k}")));
            }
        };
        if i == 1 {
            // Later workers bind the port the first one got (it matters for port 0).
            listen = worker_url
                .split_once("://")
                .map_or(worker_url.as_str(), |(_, rest)| rest)
                .trim_end_matches('/')
                .to_owned();
            url = worker_url;
        }
        workers.push(child);
    }
    let pids: Vec<String> = workers
        .iter()
        .filter_map(|w| w.id().map(|p| p.to_string()))
        .collect();
    println!("Ward worker pids: {}", pids.join(" "));
    println!("Ward is listening on {url}");
    println!("Workers: {k} processes sharing the port (SO_REUSEPORT)");
    tracing::info!(workers = k, "all workers started");

    let exited = {
        let waits = workers
            .iter_mut()
            .enumerate()
            .map(|(i, w)| Box::pin(async move { (i, w.wait().await) }));
        tokio::select! {
            _ = shutdown_signal() => None,
            ((i, status), _, _) = futures_util::future::select_all(waits) => Some((i, status)),
        }
    };
    stop_all(&mut workers).await;
    match exited {
        None => Ok(ExitCode::SUCCESS),
        Some((i, status)) => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            bail!(
                "worker {} of {k} exited on its own ({status}); the others were stopped",
                i + 1
            )
        }
    }
}

/// Start one worker and wait for its address. Only the first worker's further output (the
/// organisation, database and CA lines) is passed on; the others' is read and dropped.
async fn start_worker(
    exe: &std::path::Path,
    common: &[OsString],
    listen: &str,
    forward: bool,
) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(exe)
        .args(common)
        .args(["--listen", listen])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("start a worker")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(u) = line.strip_prefix("Ward is listening on ") {
                return anyhow::Ok(u.trim().to_owned());
            }
        }
        bail!("the worker exited before printing its address (see its errors above)")
    })
    .await
    .context("the worker did not print its address within 60 s")??;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if forward {
                println!("{line}");
            }
        }
    });
    Ok((child, url))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} },
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down the workers");
}

/// SIGTERM to every running worker, then wait; those still running after the grace period
/// are killed.
async fn stop_all(workers: &mut [Child]) {
    for w in workers.iter_mut() {
        if let (Ok(None), Some(pid)) = (w.try_wait(), w.id()) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
    }
    for w in workers.iter_mut() {
        if tokio::time::timeout(STOP_GRACE, w.wait()).await.is_err() {
            let _ = w.kill().await;
        }
    }
}
