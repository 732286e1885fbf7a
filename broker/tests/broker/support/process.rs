//! `rafka-node` as a child process: started on OS-assigned ports, its ready line parsed from stdout,
//! stopped with SIGTERM or killed with SIGKILL, restarted on the same data dir.

#![allow(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of a binary built from this workspace (`rafka-node`, `rafka`).
///
/// Cargo builds `rafka-node` for these tests (it is this package's binary), but not the `rafka`
/// CLI of the client package: that one is whatever `cargo build --workspace --bins` left in the
/// target dir, so it is refused if any of its sources changed since it was built. (A stale CLI
/// once passed for a regression: after a checkout restored the consumer's leader following,
/// `consumer_failover` kept running a `rafka` built without it and failed exactly as that old
/// consumer does.)
pub fn workspace_binary(name: &str) -> PathBuf {
    if name == "rafka-node"
        && let Some(path) = option_env!("CARGO_BIN_EXE_rafka-node")
    {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<test binary> → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo build --workspace --bins` first",
        path.display()
    );
    if let Some(changed) = changed_since_built(&path) {
        panic!(
            "{} is older than its source {}: run `cargo build --workspace --bins` first",
            path.display(),
            changed.display()
        );
    }
    path
}

/// A source of `binary` (as its cargo dep-info file `<binary>.d` lists them) modified after the
/// binary was written, if any.
fn changed_since_built(binary: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let deps = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    newer_source(&deps, |source| {
        std::fs::metadata(source)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified > built)
    })
}

/// The first source in dep-info `deps` (`target: source source ...`, spaces in paths escaped)
/// for which `newer` holds.
fn newer_source(deps: &str, newer: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let (_, sources) = deps.lines().next()?.split_once(": ")?;
    let mut paths = Vec::new();
    let mut current = String::new();
    let mut chars = sources.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => paths.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    paths.push(current);
    paths
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .find(|p| newer(p))
}

#[test]
fn a_binary_is_stale_when_a_source_in_its_dep_info_is_newer() {
    let deps = "/t/debug/rafka: /w/client/src/a.rs /w/my\\ dir/b.rs\n\n/w/client/src/a.rs:\n";
    let found = newer_source(deps, |p| p == Path::new("/w/my dir/b.rs"));
    assert_eq!(found, Some(PathBuf::from("/w/my dir/b.rs")));
    assert_eq!(newer_source(deps, |_| false), None);
    assert_eq!(newer_source("garbage", |_| true), None);
}

/// Addresses a node printed on its ready line.
#[derive(Clone, Debug)]
pub struct Ready {
    pub kafka: SocketAddr,
    pub http: SocketAddr,
    pub p2p: String,
}

/// A running `rafka-node` process.
pub struct NodeProcess {
    pub child: Child,
    pub ready: Ready,
    pub log: PathBuf,
}

/// The addresses in a node's `rafka-node ready ...` line.
pub fn parse_ready(line: &str) -> Option<Ready> {
    let rest = line.strip_prefix("rafka-node ready ")?;
    let mut kafka = None;
    let mut http = None;
    let mut p2p = None;
    for field in rest.split_whitespace() {
        match field.split_once('=')? {
            ("kafka", v) => kafka = v.parse().ok(),
            ("http", v) => http = v.parse().ok(),
            ("p2p", v) => p2p = v.split(',').next().map(str::to_string),
            _ => {}
        }
    }
    Some(Ready {
        kafka: kafka?,
        http: http?,
        p2p: p2p?,
    })
}

impl NodeProcess {
    /// Starts a node on `data_dir` with extra flags; waits (up to 60 s) for its ready line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        Self::start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// As [`NodeProcess::start`], with the Kafka listener on `kafka_addr` (to restart a node on the
    /// port its clients know).
    pub fn start_on(data_dir: &Path, kafka_addr: &str, extra: &[&str]) -> NodeProcess {
        let mut args = vec!["--bootstrap-expect", "1"];
        args.extend_from_slice(extra);
        Self::spawn(data_dir, kafka_addr, &args)
    }

    fn spawn(data_dir: &Path, kafka_addr: &str, args: &[&str]) -> NodeProcess {
        let log = data_dir.with_extension("log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(workspace_binary("rafka-node"))
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(["--kafka-addr", kafka_addr, "--http-addr", "127.0.0.1:0"])
            .args([
                "--p2p-addr",
                "/ip4/127.0.0.1/tcp/0",
                "--control-addr",
                "/ip4/127.0.0.1/tcp/0",
            ])
            .arg("--no-mdns")
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ready) = parse_ready(&line) {
                    let _ = tx.send(ready);
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ready) => ready,
            Err(_) => {
                let _ = child.kill();
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("rafka-node did not become ready within 60 s; log:\n{log_text}");
            }
        };
        NodeProcess { child, ready, log }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; waits (up to 30 s) for a clean exit and returns whether it exited with success.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                self.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The body of `GET path` on the node's HTTP admin endpoint (`/metrics`, `/health`, ...).
    pub fn http_get(&self, path: &str) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.ready.http)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let host = self.ready.http;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (_, body) = response.split_once("\r\n\r\n").unwrap_or_default();
        Ok(body.to_string())
    }

    /// The node's log so far (stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
