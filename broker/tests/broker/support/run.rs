//! External programs (the `rafka` CLI, kcat, python3) run from tests: stdin fed from a buffer,
//! stdout and stderr collected, a deadline enforced, and the child killed by its PID if the test
//! gives up on it (on timeout or when a panic unwinds past it).

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a finished program left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
    /// The command line, for messages.
    pub command: String,
}

impl Output {
    /// Stdout, after asserting the program succeeded (its stderr is in the panic message if not).
    pub fn ok(self) -> Vec<u8> {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\n{}",
            self.command,
            self.status,
            String::from_utf8_lossy(&self.stderr)
        );
        self.stdout
    }

    /// Stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A child killed by its PID when dropped (unless it was already reaped).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn describe(command: &Command) -> String {
    let args: Vec<&OsStr> = command.get_args().collect();
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in args {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// A program started in the background: stdin being fed, stdout and stderr being collected.
pub struct Running {
    guard: Guard,
    text: String,
    started: Instant,
    writer: JoinHandle<()>,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<Vec<u8>>,
}

/// Starts `command` with `stdin` as its standard input, in the background.
pub fn spawn(command: Command, stdin: &[u8]) -> Running {
    spawn_to(command, stdin, Stdio::piped())
}

/// As [`spawn`], with standard output going to `file` (to watch a long-running program's
/// progress); [`Output::stdout`] is then empty.
pub fn spawn_to_file(command: Command, stdin: &[u8], file: std::fs::File) -> Running {
    spawn_to(command, stdin, Stdio::from(file))
}

fn spawn_to(mut command: Command, stdin: &[u8], stdout: Stdio) -> Running {
    let text = describe(&command);
    let started = Instant::now();
    let child = command
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{text}`: {e}"));
    let mut guard = Guard(child);
    let mut input = guard.0.stdin.take().unwrap();
    let data = stdin.to_vec();
    // A program that exits early closes its stdin: the write error is not ours to report.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let stdout = match guard.0.stdout.take() {
        Some(pipe) => collect(pipe),
        None => std::thread::spawn(Vec::new),
    };
    let stderr = collect(guard.0.stderr.take().unwrap());
    Running {
        guard,
        text,
        started,
        writer,
        stdout,
        stderr,
    }
}

impl Running {
    /// The program's process id (to signal it; it is reaped by `wait` or on drop).
    pub fn pid(&self) -> u32 {
        self.guard.0.id()
    }

    /// Whether the program has exited (it is still reaped by `wait`).
    pub fn exited(&mut self) -> bool {
        self.guard.0.try_wait().ok().flatten().is_some()
    }

    /// Waits for the program to exit; panics (after killing it) if it has not within `timeout`
    /// of its start.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = self.started + timeout;
        let status = loop {
            if let Some(status) = self.guard.0.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                drop(self.guard);
                let err = self.stderr.join().unwrap_or_default();
                panic!(
                    "`{}` did not finish within {timeout:?}; killed. stderr:\n{}",
                    self.text,
                    String::from_utf8_lossy(&err)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.writer.join().unwrap();
        Output {
            status,
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
            elapsed: self.started.elapsed(),
            command: self.text,
        }
    }
}

/// Runs `command` with `stdin` as its standard input; panics (after killing it) if it has not
/// exited within `timeout`.
pub fn run(command: Command, stdin: &[u8], timeout: Duration) -> Output {
    spawn(command, stdin).wait(timeout)
}

/// The `rafka` CLI of this workspace with `args`.
pub fn rafka(args: &[&str]) -> Command {
    let mut command = Command::new(super::process::workspace_binary("rafka"));
    command.args(args).env("RUST_LOG", "warn");
    command
}

/// Whether `program args...` can be started and exits with success (a probe for installed tools).
pub fn probe(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the external client `name` is usable (`available`). When it is not, the test is
/// skipped with a message, unless `RAFKA_REQUIRE_EXTERNAL_CLIENTS=1`, which makes it fail.
pub fn external_client(name: &str, available: bool) -> bool {
    if available {
        return true;
    }
    let required = std::env::var("RAFKA_REQUIRE_EXTERNAL_CLIENTS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{name} is required (RAFKA_REQUIRE_EXTERNAL_CLIENTS=1) but not installed; run scripts/install-test-deps.sh"
    );
    eprintln!("SKIPPED: {name} is not installed (scripts/install-test-deps.sh installs it)");
    false
}

/// kcat, if installed (else skip or fail, see [`external_client`]).
pub fn kcat_available() -> bool {
    external_client("kcat", probe("kcat", &["-V"]))
}

/// python3 with confluent-kafka, if installed (else skip or fail, see [`external_client`]).
pub fn confluent_kafka_available() -> bool {
    external_client(
        "python3 with confluent-kafka",
        probe("python3", &["-c", "import confluent_kafka"]),
    )
}
