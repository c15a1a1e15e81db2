//! `ward serve --workers K` (ADR 0021): K worker processes share one port with SO_REUSEPORT
//! over one PostgreSQL and NATS; the kernel spreads connections over them; SIGTERM to the
//! supervisor stops them all. On SQLite several workers are refused.
//!
//! Needs PostgreSQL (`WARD_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`)
//! and NATS (`WARD_TEST_NATS_URL`, default `nats://127.0.0.1:4222`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn postgres_url() -> String {
    std::env::var("WARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn nats_url() -> String {
    std::env::var("WARD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Established TCP connections a process holds on local port `port` (from /proc/net/tcp and
/// the process's descriptors).
fn connections_of(pid: u32, port: u16) -> usize {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let inodes: std::collections::HashSet<String> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
            (local_port == port && *f.get(3)? == "01").then(|| f.get(9).map(|i| i.to_string()))?
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| {
                let l = l.to_string_lossy();
                l.strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .is_some_and(|i| inodes.contains(i))
            })
        })
        .count()
}

/// Kills the supervisor and its workers if the test fails half-way.
struct Cleanup(Vec<u32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            if running(*p) {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
        }
    }
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn workers_share_one_port_and_stop_together() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let schema = format!("ward_workers_{}", uuid::Uuid::new_v4().simple());
    let pg = postgres_url();
    rt.block_on(async {
        ward_store_postgres::PgStore::connect_isolated(&pg, &schema)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL test database unreachable ({e})"))
            .close()
            .await;
    });
    let sep = if pg.contains('?') { '&' } else { '?' };
    let database_url = format!("{pg}{sep}options[search_path]={schema}");
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env_remove("WARD_MASTER_KEY")
        .env("WARD_LOG", "error")
        .env("WARD_CLUSTER__NATS_URL", nats_url())
        .env(
            "WARD_CLUSTER__SUBJECT",
            format!("ward.test.{}", uuid::Uuid::new_v4().simple()),
        )
        .args([
            "serve",
            "--workers",
            "2",
            "--dangerous-plain-http",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database_url,
            "--data",
        ])
        .arg(data.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cleanup = Cleanup(vec![child.id()]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut pids: Vec<u32> = Vec::new();
    let url = loop {
        let line = lines
            .next()
            .expect("ward serve --workers printed its URL")
            .unwrap();
        if let Some(p) = line.strip_prefix("Ward worker pids: ") {
            pids = p.split_whitespace().map(|p| p.parse().unwrap()).collect();
        }
        if let Some(u) = line.strip_prefix("Ward is listening on ") {
            break u.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    cleanup.0.extend(&pids);
    assert_eq!(pids.len(), 2, "two worker pids");
    assert!(pids.iter().all(|p| running(*p)));
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();

    // Connections from many source addresses: the kernel hashes them over both workers, and
    // each worker answers on the shared port.
    let before: Vec<usize> = pids
        .iter()
        .map(|p| connections_of(*p, addr.port()))
        .collect();
    let mut conns = Vec::new();
    for i in 0..80u8 {
        let from = SocketAddr::from((Ipv4Addr::new(127, 0, 0, i % 40 + 1), 0));
        conns.push(socket_from(from, addr));
    }
    for s in &mut conns {
        s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200", "health answered");
    }
    std::thread::sleep(Duration::from_millis(300));
    let after: Vec<usize> = pids
        .iter()
        .map(|p| connections_of(*p, addr.port()))
        .collect();
    let gained: Vec<usize> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b))
        .collect();
    assert_eq!(gained.iter().sum::<usize>(), 80, "{before:?} → {after:?}");
    assert!(
        gained.iter().all(|g| *g >= 10),
        "SO_REUSEPORT spread the connections over both workers: {gained:?}"
    );
    drop(conns);

    // SIGTERM to the supervisor stops both workers, and it exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(40);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "supervisor did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}");
    for p in &pids {
        assert!(!running(*p), "worker {p} still running");
    }
    rt.block_on(async {
        ward_store_postgres::PgStore::drop_schema(&pg, &schema)
            .await
            .unwrap();
    });
}

fn socket_from(from: SocketAddr, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(from).unwrap();
        let stream = s.connect(to).await.unwrap();
        let std = stream.into_std().unwrap();
        std.set_nonblocking(false).unwrap();
        std.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        std
    })
}

#[test]
fn several_workers_are_refused_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .env("WARD_CLUSTER__NATS_URL", nats_url())
        .args([
            "serve",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--workers 2"), "{stderr}");
    assert!(stderr.contains("SQLite stays a single process"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .env("WARD_LOG", "error")
        .args(["serve", "--reuse-port", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--reuse-port"), "{stderr}");
}
