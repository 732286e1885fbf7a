//! `rafka-node`: parse the configuration, install logging and metrics, run until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use clap::Parser;
use metrics_exporter_prometheus::Matcher;
use rafka_broker::{Node, NodeArgs, NodeConfig, metrics};
use tokio_util::sync::CancellationToken;

/// Large pre-allocations driven by wire input must not abort the node (see `alloc`).
#[global_allocator]
static ALLOCATOR: rafka_broker::alloc::LazyLargeAlloc = rafka_broker::alloc::LazyLargeAlloc;

fn main() -> ExitCode {
    let args = NodeArgs::parse();
    init_tracing();
    let config = match NodeConfig::load(args) {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rafka")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&*e),
    }
}

async fn run(config: NodeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(metrics::LATENCY_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(rafka_mesh::metrics::HEARTBEAT_GAP_SECONDS.to_string()),
            rafka_mesh::metrics::HEARTBEAT_GAP_BUCKETS,
        )?
        .install_recorder()?;
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let node = Node::start(config, Some(prometheus), shutdown.clone()).await?;
    let a = node.addresses();
    let p2p: Vec<String> = a.p2p.iter().map(ToString::to_string).collect();
    // One line on stdout that scripts and tests can read; everything else is logged on stderr.
    println!(
        "rafka-node ready kafka={} advertised={} http={} p2p={}",
        a.kafka,
        a.advertised_kafka,
        a.http,
        p2p.join(",")
    );
    tracing::info!(kafka = %a.kafka, advertised = %a.advertised_kafka, http = %a.http, p2p = %p2p.join(","), "serving");
    shutdown.cancelled().await;
    node.shutdown().await;
    signals.abort();
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("signal received");
    shutdown.cancel();
}

/// Without `RUST_LOG`: one line per event an operator cares about (Rafka's own INFO lines), and
/// only warnings and errors from libraries; openraft's own lines (state dumps at INFO, every retry
/// of an unreachable peer at WARN) only when they are errors, and none from its replication tasks:
/// they log every failed RPC to an unreachable peer as an ERROR (a node that left or died, which
/// Rafka's own "member left" / "member dead" lines already say), and their one other error, a
/// storage failure, stops the metadata log, which writes then report. `RUST_LOG=info` (or `debug`,
/// or per crate, e.g. `RUST_LOG=info,openraft=debug`) shows more.
const DEFAULT_LOG: &str = "warn,openraft=error,openraft::replication=off,rafka_node=info,\
                           rafka_broker=info,rafka_mesh=info,rafka_store=info";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("rafka-node: {error}");
    ExitCode::FAILURE
}
