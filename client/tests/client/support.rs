//! Starts a `rafka-node` process for end-to-end tests.
//!
//! The binary is `$RAFKA_NODE_BIN`, or `rafka-node` in the same target directory as this test
//! (built by `cargo build --workspace`). When neither exists the tests say so and pass without
//! running: the broker is a separate package whose binary `cargo test -p rafka-client` does not
//! build.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a node may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running node, killed (by its own pid) when dropped.
pub struct Node {
    child: Child,
    /// Kafka `HOST:PORT`.
    pub kafka: String,
    /// Mesh multiaddr (with `/p2p/<peer id>` when the node prints it).
    pub p2p: String,
    /// HTTP `HOST:PORT` (status, metrics).
    pub http: String,
    _dir: tempfile::TempDir,
}

/// The node binary, if built.
pub fn node_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RAFKA_NODE_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("rafka-node");
    candidate.exists().then_some(candidate)
}

impl Node {
    /// Starts a single-node cluster on OS-assigned ports; `None` (with a message) when the
    /// binary is not built.
    pub fn start() -> Option<Node> {
        Node::start_with(&[])
    }

    /// As [`Node::start`], with extra `rafka-node` flags.
    pub fn start_with(extra: &[&str]) -> Option<Node> {
        let Some(bin) = node_bin() else {
            eprintln!(
                "SKIPPED: rafka-node is not built (cargo build --workspace, or set RAFKA_NODE_BIN)"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--kafka-addr", "127.0.0.1:0"])
            .args(["--p2p-addr", "/ip4/127.0.0.1/tcp/0"])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(["--bootstrap-expect", "1"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RAFKA_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rafka-node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.starts_with("rafka-node ready") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("rafka-node printed no ready line within {START_TIMEOUT:?}");
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .map(|v| v.split(',').next().unwrap_or(v).to_owned())
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        };
        let kafka = field("advertised");
        let p2p = field("p2p");
        let http = field("http");
        Some(Node {
            child,
            kafka,
            p2p,
            http,
            _dir: dir,
        })
    }
}

impl Node {
    /// The body of `GET path` on the node's HTTP listener (`None` if it cannot be read).
    pub fn http_get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.http).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
