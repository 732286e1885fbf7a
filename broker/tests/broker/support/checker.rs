//! `python/checker.py` run from a test: started (optionally inside a network namespace), its
//! progress lines read as they come (how many records are acknowledged so far), and its final
//! JSON report returned. The child is killed by its PID if the test gives up on it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What the checker is asked to do.
#[derive(Clone, Debug)]
pub struct Plan {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub seconds: u64,
    pub rate: u64,
    /// `all` (idempotent producer) or `1` (plain producer: librdkafka's idempotence needs all).
    pub acks: &'static str,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/checker.py")
}

/// A running checker.
pub struct Checker {
    child: Child,
    progress: mpsc::Receiver<Result<u64, Value>>,
    /// Acknowledged records as of the last progress line read.
    pub acked: u64,
    seconds: u64,
}

impl Checker {
    /// Starts the checker on this machine's network.
    pub fn start(plan: &Plan) -> Checker {
        Self::start_with(Command::new("python3"), plan)
    }

    /// Starts the checker inside network namespace `ns` (`ip netns exec`).
    pub fn start_in(ns: &str, plan: &Plan) -> Checker {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, "python3"]);
        Self::start_with(command, plan)
    }

    fn start_with(mut command: Command, plan: &Plan) -> Checker {
        command
            .arg(script())
            .args([plan.bootstrap.as_str(), plan.topic.as_str()])
            .args(["--partitions", &plan.partitions.to_string()])
            .args(["--seconds", &plan.seconds.to_string()])
            .args(["--rate", &plan.rate.to_string()])
            .args(["--acks", plan.acks])
            .args([
                "--idempotence",
                if plan.acks == "all" { "true" } else { "false" },
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("cannot start checker.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("progress acked=") {
                    let acked = rest.split(' ').next().and_then(|n| n.parse().ok());
                    if let Some(acked) = acked {
                        let _ = tx.send(Ok(acked));
                    }
                } else if let Ok(report) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(Err(report));
                }
            }
        });
        Checker {
            child,
            progress: rx,
            acked: 0,
            seconds: plan.seconds,
        }
    }

    /// Reads the progress lines already written (does not wait).
    pub fn poll(&mut self) -> u64 {
        while let Ok(message) = self.progress.try_recv() {
            match message {
                Ok(acked) => self.acked = acked,
                Err(report) => panic!("checker ended at {} acknowledged: {report}", self.acked),
            }
        }
        self.acked
    }

    /// Waits until at least `count` records are acknowledged.
    pub fn wait_acked(&mut self, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acked < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(Ok(acked)) => self.acked = acked,
                Ok(Err(report)) => panic!("checker ended at {} acknowledged: {report}", self.acked),
                Err(_) => panic!(
                    "only {} records acknowledged within {timeout:?} (wanted {count})",
                    self.acked
                ),
            }
        }
    }

    /// Waits for the final report (the run's length plus three minutes at most).
    pub fn report(mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(self.seconds + 180);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(Ok(_)) => {}
                Ok(Err(report)) => {
                    let _ = self.child.wait();
                    return report;
                }
                Err(_) => panic!("checker gave no report"),
            }
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        // Reaped already after a report; otherwise the test gave up on it.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Asserts a report shows nothing acknowledged lost, duplicated, out of order or vanished, and
/// at least `min_acked` acknowledged records.
pub fn assert_clean(report: &Value, what: &str, min_acked: u64) {
    eprintln!("{what}: {report}");
    for key in ["lost", "duplicated", "out_of_order", "vanished"] {
        assert_eq!(report[key], 0, "{what}: {key} in {report}");
    }
    let acked = report["acked"].as_u64().unwrap();
    assert!(
        acked >= min_acked,
        "{what}: {acked} acknowledged, fewer than {min_acked}"
    );
}
