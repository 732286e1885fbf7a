//! The closed mesh with real processes on loopback:
//!
//! - a node started with a cluster key serves nodes and clients holding the same key; a node with
//!   another key and a node without a key never join it, and a client without the key (or with
//!   another) cannot send it a request over the mesh, each side saying why in its log or error;
//! - the Kafka TCP listener is not behind the key (Kafka-port security is a later issue);
//! - a node refuses to start with a mesh address reachable from other machines and no key, and
//!   says what to do; `rafka cluster key generate` makes a key file and never overwrites one.

use std::process::Command;
use std::time::Duration;

use crate::support::cluster::{cluster_view, create_topic, spawn};
use crate::support::process::workspace_binary;
use crate::support::run::{rafka, run};
use crate::support::wait_until_blocking;

const READY: Duration = Duration::from_secs(60);
const CLI: Duration = Duration::from_secs(30);
/// Refusals are logged when the dialling node first tries (its bootstrap loop runs every 2 s).
const REFUSED_WITHIN: Duration = Duration::from_secs(20);

fn generate_key(path: &std::path::Path) {
    let out = run(
        rafka(&["cluster", "key", "generate", path.to_str().unwrap()]),
        b"",
        CLI,
    );
    let stdout = String::from_utf8(out.ok()).unwrap();
    assert!(stdout.contains("fingerprint"), "{stdout}");
}

/// A keyless side learns that a key is needed from the peer's first bytes (a nonce), or, when
/// the keyed peer has already closed on the keyless side's own first bytes, from the close.
fn says_a_key_is_needed(text: &str) -> bool {
    text.contains("requires a cluster key") || text.contains("may require a cluster key")
}

#[test]
fn process_only_holders_of_the_cluster_key_join_or_send_requests() {
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("cluster.key");
    let other = root.path().join("other.key");
    generate_key(&key);
    generate_key(&other);
    // Never overwritten.
    let again = run(
        rafka(&["cluster", "key", "generate", key.to_str().unwrap()]),
        b"",
        CLI,
    );
    assert!(!again.status.success());

    let binary = workspace_binary("rafka-node");
    let key_arg = key.to_str().unwrap();
    let first = spawn(
        &binary,
        &root.path().join("first"),
        &["--bootstrap-expect", "1", "--cluster-key-file", key_arg],
    )
    .wait_ready(READY);
    let seed = first.ready.p2p.clone();
    // A second node with the key joins.
    let member = spawn(
        &binary,
        &root.path().join("member"),
        &["--bootstrap", &seed, "--cluster-key-file", key_arg],
    )
    .wait_ready(READY);
    // One with another key, one without: they start, try, and wait forever to be added.
    let wrong = spawn(
        &binary,
        &root.path().join("wrong"),
        &[
            "--bootstrap",
            &seed,
            "--cluster-key-file",
            other.to_str().unwrap(),
        ],
    );
    let keyless = spawn(
        &binary,
        &root.path().join("keyless"),
        &["--bootstrap", &seed],
    );
    wait_until_blocking(REFUSED_WITHIN, "the node to log both refusals", || {
        let log = first.log_text();
        log.contains("refused: wrong cluster key")
            && log.contains("refused: peer has no cluster key")
    });
    wait_until_blocking(REFUSED_WITHIN, "the intruders to log why", || {
        wrong.log_text().contains("refused: wrong cluster key")
            && keyless
                .log_text()
                .contains("refused: peer requires a cluster key")
    });
    // Both key holders see each other, and only each other.
    for node in [&first, &member] {
        wait_until_blocking(REFUSED_WITHIN, "the two key holders alive", || {
            let view = cluster_view(node.ready.http);
            match view {
                Some(v) if v.count("alive") == 2 && v.members.len() == 2 => Ok(()),
                other => Err(format!("{other:#?}")),
            }
        });
    }

    // Clients: with the key a request goes through; without it, or with another, it cannot.
    let with_key = |key: Option<&str>, args: &[&str]| {
        let mut command = rafka(&["--bootstrap", &seed]);
        if let Some(key) = key {
            command.args(["--cluster-key-file", key]);
        }
        command.args(args);
        run(command, b"", CLI)
    };
    with_key(Some(key_arg), &["topic", "create", "keyed"]).ok();
    let listed = String::from_utf8(with_key(Some(key_arg), &["topic", "list"]).ok()).unwrap();
    assert!(listed.contains("keyed"), "{listed}");
    let refused = with_key(None, &["topic", "create", "intruder"]);
    assert!(!refused.status.success());
    assert!(
        says_a_key_is_needed(&refused.stderr_text()),
        "{}",
        refused.stderr_text()
    );
    let refused = with_key(Some(other.to_str().unwrap()), &["topic", "delete", "keyed"]);
    assert!(!refused.status.success());
    assert!(
        refused.stderr_text().contains("wrong cluster key"),
        "{}",
        refused.stderr_text()
    );
    // The environment variable works as the flag does.
    let mut command = rafka(&["--bootstrap", &seed, "topic", "list"]);
    command.env("RAFKA_CLUSTER_KEY_FILE", key_arg);
    let listed = String::from_utf8(run(command, b"", CLI).ok()).unwrap();
    assert!(
        listed.contains("keyed") && !listed.contains("intruder"),
        "{listed}"
    );

    // The Kafka port is not behind the key.
    let (code, message) = create_topic(first.ready.kafka, "over-kafka", 1, CLI).unwrap();
    assert_eq!(code, 0, "{message:?}");
}

#[test]
fn process_a_node_reachable_from_other_machines_needs_a_key_or_an_explicit_open_mesh() {
    let root = tempfile::tempdir().unwrap();
    for (flag, addr) in [
        ("--p2p-addr", "/ip4/0.0.0.0/tcp/0"),
        ("--control-addr", "/ip4/0.0.0.0/tcp/0"),
        ("--bootstrap", "/ip4/10.1.2.3/tcp/7070"),
    ] {
        let dir = root.path().join(flag.trim_start_matches('-'));
        let mut command = Command::new(workspace_binary("rafka-node"));
        command.args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--bootstrap-expect",
            "1",
            "--kafka-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            flag,
            addr,
        ]);
        let out = run(command, b"", CLI);
        assert!(!out.status.success(), "{flag} {addr} started without a key");
        let err = out.stderr_text();
        for hint in [
            "cluster key",
            "--cluster-key-file",
            "--insecure-open-mesh",
            addr,
        ] {
            assert!(
                err.contains(hint),
                "{flag} {addr}: {hint:?} missing in {err}"
            );
        }
    }
    // Said explicitly, an open mesh starts.
    let open = spawn(
        &workspace_binary("rafka-node"),
        &root.path().join("open"),
        &[
            "--bootstrap-expect",
            "1",
            "--p2p-addr",
            "/ip4/0.0.0.0/tcp/0",
            "--insecure-open-mesh",
        ],
    )
    .wait_ready(READY);
    assert!(open.log_text().contains("--insecure-open-mesh"));
}
