//! `rafka`: the command-line client (topics, produce from stdin, consume to stdout).

mod commands;
mod format;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rafka_client::bootstrap::DEFAULT_BOOTSTRAP;
use rafka_client::{Bootstrap, Client, ClientConfig};

/// Command-line client for Rafka (and any Kafka broker, with --kafka).
#[derive(Debug, Parser)]
#[command(name = "rafka", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

const AFTER_HELP: &str = "\
Examples:
  rafka topic create orders --partitions 3
  seq 1000 | rafka produce orders
  rafka consume orders --from-beginning -n 1000 --format '%p:%o %k=%v\\n'
  rafka produce orders --transactional-id loader-1   # one committed transaction per input batch
  rafka consume orders --isolation read_committed
  rafka txn list                                 # transactional ids, producers, states
  rafka consume orders --group billing          # run it twice: the two split the partitions
  rafka group describe billing                   # members, assignment, committed offsets, lag
  rafka group reset-offsets billing --topic orders --to-earliest
  rafka --kafka localhost:9092 topic list
  rafka --bootstrap /ip4/127.0.0.1/tcp/7070 cluster
  rafka cluster key generate cluster.key     # then --cluster-key-file cluster.key everywhere
  rafka --kafka localhost:9092 bench produce --topic perf --records 5000000 --record-size 100

Errors are one line on stderr with a non-zero exit code. Logs go to stderr; set RUST_LOG
(e.g. RUST_LOG=rafka_client=debug) for more.";

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where to reach the cluster: a multiaddr (`/ip4/127.0.0.1/tcp/7070`, optionally with
    /// `/p2p/<peer id>`) uses the libp2p mesh; `HOST:PORT` uses plain Kafka over TCP.
    #[arg(long, global = true, env = "RAFKA_BOOTSTRAP", default_value = DEFAULT_BOOTSTRAP)]
    pub bootstrap: String,
    /// Speak plain Kafka over TCP to HOST:PORT[,HOST:PORT...] (overrides --bootstrap).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub kafka: Option<String>,
    /// Per-request timeout in milliseconds.
    #[arg(long, global = true, default_value_t = 30_000, value_name = "MS")]
    pub request_timeout_ms: u64,
    /// Client id sent in every request header.
    #[arg(long, global = true, default_value = "rafka-cli")]
    pub client_id: String,
    /// The cluster key file, for a mesh that uses one (`rafka cluster key generate FILE`).
    #[arg(
        long,
        global = true,
        env = "RAFKA_CLUSTER_KEY_FILE",
        value_name = "FILE"
    )]
    pub cluster_key_file: Option<std::path::PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(commands::topic::TopicCommand),
    /// Produce one record per line of standard input.
    Produce(commands::produce::ProduceArgs),
    /// Consume records and write them to standard output (with --group, as a group member).
    Consume(commands::consume::ConsumeArgs),
    /// Receive committed records as the partition leaders push them (mesh bootstrap only).
    Subscribe(commands::subscribe::SubscribeArgs),
    /// List and describe transactional ids and their transactions.
    #[command(subcommand)]
    Txn(commands::txn::TxnCommand),
    /// List, describe and delete consumer groups; reset their committed offsets.
    #[command(subcommand)]
    Group(commands::group::GroupCommand),
    /// Benchmarks: producer and consumer throughput, end-to-end latency.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// The cluster's members (node ids, states, metadata roles, heartbeats, addresses), its key,
    /// and node removal.
    Cluster(commands::cluster::ClusterArgs),
}

impl GlobalArgs {
    /// The client configuration these options describe.
    pub fn client_config(&self) -> rafka_client::Result<ClientConfig> {
        let bootstrap = match &self.kafka {
            Some(hosts) => Bootstrap::kafka(hosts)?,
            None => Bootstrap::parse(&self.bootstrap)?,
        };
        let mut config = ClientConfig::new(bootstrap);
        config.connection.request_timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        config.connection.client_id = self.client_id.clone();
        config.cluster_key_file.clone_from(&self.cluster_key_file);
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rafka: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // Standard output closed by its reader (`rafka group describe g | head`): done.
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rafka: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is a write to a closed pipe.
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Commands that need no cluster.
    if let Command::Cluster(args) = &cli.command
        && let Some(result) = commands::cluster::run_offline(args)
    {
        return result;
    }
    let config = cli.global.client_config()?;
    let client = Client::connect(config.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster at {}: {e}", config.bootstrap))?;
    let result = match cli.command {
        Command::Topic(cmd) => commands::topic::run(&client, cmd).await,
        Command::Produce(args) => commands::produce::run(&client, args).await,
        Command::Consume(args) => commands::consume::run(&client, args).await,
        Command::Subscribe(args) => commands::subscribe::run(&client, args).await,
        Command::Txn(cmd) => commands::txn::run(&client, cmd).await,
        Command::Group(cmd) => commands::group::run(&client, cmd).await,
        Command::Bench(cmd) => commands::bench::run(&client, &config, cmd).await,
        Command::Cluster(args) => commands::cluster::run(&client, args).await,
    };
    client.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use rafka_client::OffsetReset;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rafka").chain(args.iter().copied()))
    }

    #[test]
    fn a_closed_stdout_is_not_an_error() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(stdout_closed(&anyhow::Error::new(pipe).context("describe")));
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert!(!stdout_closed(&anyhow::Error::new(other)));
        assert!(!stdout_closed(&anyhow::anyhow!("broken pipe")));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bootstrap_flags_select_the_transport() {
        let cli = parse(&["topic", "list"]).unwrap();
        assert_eq!(
            cli.global.client_config().unwrap().bootstrap,
            Bootstrap::default()
        );
        let cli = parse(&["--kafka", "localhost:9092", "topic", "list"]).unwrap();
        assert!(matches!(
            cli.global.client_config().unwrap().bootstrap,
            Bootstrap::Kafka(_)
        ));
        let cli = parse(&["topic", "list", "--bootstrap", "h:1"]).unwrap();
        assert!(matches!(
            cli.global.client_config().unwrap().bootstrap,
            Bootstrap::Kafka(_)
        ));
        let cli = parse(&["--kafka", "/ip4/1.2.3.4/tcp/1", "topic", "list"]).unwrap();
        assert!(cli.global.client_config().is_err());
    }

    #[test]
    fn topic_commands_parse() {
        let cli = parse(&[
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup.policy=compact",
        ])
        .unwrap();
        let Command::Topic(commands::topic::TopicCommand::Create(c)) = cli.command else {
            panic!("not create")
        };
        assert_eq!(
            (c.name.as_str(), c.partitions, c.replication_factor),
            ("t", Some(3), Some(2))
        );
        assert_eq!(c.config.len(), 2);
        assert!(parse(&["topic", "create", "t", "--config", "novalue"]).is_err());
        assert!(parse(&["topic", "describe"]).is_err());
        assert!(parse(&["topic", "delete", "t"]).is_ok());
    }

    #[test]
    fn produce_and_consume_options_parse() {
        let cli = parse(&[
            "produce",
            "t",
            "--key-separator",
            ":",
            "--acks",
            "1",
            "--partition",
            "2",
            "--linger-ms",
            "5",
            "--batch-size",
            "65536",
            "--compression",
            "zstd",
        ])
        .unwrap();
        let Command::Produce(p) = cli.command else {
            panic!("not produce")
        };
        assert_eq!(p.key_separator.as_deref(), Some(":"));
        assert_eq!(p.partition, Some(2));
        assert!(p.producer_config().is_ok());
        assert!(parse(&["produce", "t", "--acks", "2"]).is_err());
        assert!(parse(&["produce", "t", "--compression", "brotli"]).is_err());

        let cli = parse(&[
            "consume",
            "t",
            "--from-beginning",
            "-n",
            "10",
            "--format",
            "%k %v\\n",
            "--timeout-ms",
            "1000",
            "--partition",
            "0",
            "--partition",
            "1",
        ])
        .unwrap();
        let Command::Consume(c) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(c.max_messages, Some(10));
        assert_eq!(c.partition, vec![0, 1]);
        assert!(parse(&["consume", "t", "--format", "%x"]).is_err());
        assert!(parse(&["consume", "t", "--offset", "5", "--from-beginning"]).is_err());

        let cli = parse(&[
            "consume",
            "t",
            "--group",
            "g",
            "--instance-id",
            "i1",
            "--assignor",
            "cooperative-sticky",
            "--assignor",
            "range",
            "--session-timeout-ms",
            "10000",
        ])
        .unwrap();
        let Command::Consume(c) = cli.command else {
            panic!("not consume")
        };
        assert_eq!(c.group.as_deref(), Some("g"));
        assert_eq!(c.assignor.len(), 2);
        assert!(!c.consumer_config().read_committed);
        let Command::Consume(c) = parse(&[
            "consume",
            "t",
            "--group",
            "g",
            "--isolation",
            "read_committed",
            "--from-beginning",
        ])
        .unwrap()
        .command
        else {
            panic!("not consume")
        };
        let config = c.consumer_config();
        assert!(config.read_committed, "a group member reads committed too");
        assert_eq!(config.auto_offset_reset, OffsetReset::Earliest);
        // A group member is given its partitions; assigning them by hand is another mode.
        assert!(parse(&["consume", "t", "--group", "g", "--partition", "0"]).is_err());
        assert!(parse(&["consume", "t", "--instance-id", "i1"]).is_err());
        assert!(parse(&["consume", "t", "--group", "g", "--assignor", "sticky"]).is_err());
    }

    #[test]
    fn group_commands_parse() {
        use commands::group::GroupCommand;
        assert!(matches!(
            parse(&["group", "describe", "g", "--json"])
                .unwrap()
                .command,
            Command::Group(GroupCommand::Describe { json: true, .. })
        ));
        assert!(parse(&["group", "list"]).is_ok());
        assert!(parse(&["group", "delete", "g"]).is_ok());
        let reset = ["group", "reset-offsets", "g", "--topic", "t"];
        assert!(parse(&reset).is_err(), "a target is required");
        assert!(parse(&[&reset[..], &["--to-earliest", "--to-latest"]].concat()).is_err());
        let Command::Group(GroupCommand::ResetOffsets(r)) = parse(
            &[
                &reset[..],
                &["--to-datetime", "2026-12-07T06:00:00Z", "--dry-run"],
            ]
            .concat(),
        )
        .unwrap()
        .command
        else {
            panic!("not reset-offsets")
        };
        assert_eq!(r.to_datetime, Some(1_796_623_200_000));
        assert!(r.dry_run);
    }

    #[test]
    fn transactional_produce_and_txn_commands_parse() {
        let cli = parse(&[
            "produce",
            "t",
            "--transactional-id",
            "loader",
            "--transaction-timeout-ms",
            "5000",
        ])
        .unwrap();
        let Command::Produce(p) = cli.command else {
            panic!("not produce")
        };
        let config = p.producer_config().unwrap();
        assert_eq!(config.transactional_id.as_deref(), Some("loader"));
        assert_eq!(config.transaction_timeout, Duration::from_secs(5));
        // A transactional producer is idempotent.
        let Command::Produce(p) =
            parse(&["produce", "t", "--transactional-id", "x", "--acks", "1"])
                .unwrap()
                .command
        else {
            panic!("not produce")
        };
        assert!(p.producer_config().is_err());
        assert!(
            parse(&[
                "produce",
                "t",
                "--transactional-id",
                "x",
                "--no-idempotence"
            ])
            .is_err()
        );
        assert!(
            parse(&["produce", "t", "--abort"]).is_err(),
            "--abort needs an id"
        );

        use commands::txn::TxnCommand;
        assert!(matches!(
            parse(&["txn", "describe", "loader", "--json"])
                .unwrap()
                .command,
            Command::Txn(TxnCommand::Describe { json: true, .. })
        ));
        let Command::Txn(TxnCommand::List { state, json, .. }) =
            parse(&["txn", "list", "--state", "Ongoing", "--state", "Empty"])
                .unwrap()
                .command
        else {
            panic!("not txn list")
        };
        assert_eq!(state, ["Ongoing", "Empty"]);
        assert!(!json);
        assert!(parse(&["txn", "describe"]).is_err());
    }
}
