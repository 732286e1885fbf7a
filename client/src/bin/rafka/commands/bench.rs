//! `rafka bench produce | consume | e2e`: the library's benchmark runners with
//! kafka-producer-perf-test style options, progress lines on stderr and the result on stdout
//! (text, or one JSON object with `--json`).
//!
//! Defaults are Kafka 3.8's producer and consumer defaults. Each producer and consumer gets its
//! own client (its own connections), as separate Kafka client instances would.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use kafka_protocol::records::Compression;
use rafka_client::bench::consume::{ConsumeBench, StartAt};
use rafka_client::bench::e2e::E2eBench;
use rafka_client::bench::produce::ProduceBench;
use rafka_client::bench::stats::Progress;
use rafka_client::bench::{OnProgress, Report};
use rafka_client::records::parse_compression;
use rafka_client::{Acks, Bootstrap, Client, ClientConfig, ConsumerConfig, ProducerConfig};

/// `bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Producer throughput and latency (after kafka-producer-perf-test).
    Produce(ProduceArgs),
    /// Consumer throughput (after kafka-consumer-perf-test).
    Consume(ConsumeArgs),
    /// End-to-end latency, one record at a time (after Kafka's EndToEndLatency).
    E2e(E2eArgs),
}

/// Options of every benchmark.
#[derive(Debug, Args)]
pub struct Output {
    /// Print the result as one JSON object on stdout (progress lines stay on stderr).
    #[arg(long)]
    pub json: bool,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub report_interval: f64,
    /// PID of a broker on this machine: its CPU time over the run is reported.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
}

/// `bench produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic (created with --partitions if missing).
    #[arg(long)]
    pub topic: String,
    /// Records to send (over all producers).
    #[arg(long, short = 'n')]
    pub records: u64,
    /// Bytes of each record's value (random, incompressible).
    #[arg(long, value_name = "BYTES")]
    pub record_size: usize,
    /// Bytes of each record's key (default: null keys, sticky partitioning).
    #[arg(long, value_name = "BYTES")]
    pub key_size: Option<usize>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 16384, value_name = "BYTES")]
    pub batch_size: usize,
    /// linger.ms.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub linger_ms: u64,
    /// max.in.flight.requests.per.connection.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: usize,
    /// buffer.memory in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    pub buffer_memory: usize,
    /// compression.type: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_codec)]
    pub compression: Compression,
    /// Turn idempotence off (it is on by default with acks=all, as in Kafka).
    #[arg(long)]
    pub no_idempotence: bool,
    /// Partitions of the topic if it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Producers, each with its own connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub producers: u16,
    /// Records per second over all producers (-1: unlimited).
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    pub throughput: f64,
    /// Seed of the payloads.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    #[command(flatten)]
    pub output: Output,
}

/// `bench consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic (must exist).
    #[arg(long)]
    pub topic: String,
    /// Records to read (over all consumers).
    #[arg(long, short = 'n')]
    pub records: u64,
    /// Consumers, each assigned a share of the partitions (no group).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub consumers: u16,
    /// Where to start in every partition.
    #[arg(long, value_enum, default_value_t = From::Earliest)]
    pub from: From,
    /// max.partition.fetch.bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub fetch_size: i32,
    /// fetch.max.bytes.
    #[arg(long, default_value_t = 50 * 1024 * 1024, value_name = "BYTES")]
    pub fetch_max_bytes: i32,
    /// fetch.max.wait.ms.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub max_wait_ms: u64,
    /// Give up when no record arrives for this long.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub output: Output,
}

/// Where `bench consume` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
}

/// `bench e2e`.
#[derive(Debug, Args)]
pub struct E2eArgs {
    /// Topic (created with one partition if missing).
    #[arg(long, default_value = "rafka-bench-e2e")]
    pub topic: String,
    /// Round trips to measure.
    #[arg(long, short = 'n')]
    pub records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub record_size: usize,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// The consumer's long-poll wait, fetch.max.wait.ms (at least 100).
    #[arg(long, default_value_t = 500, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(100..))]
    pub max_wait_ms: u64,
    /// Unmeasured round trips first.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// A round trip taking longer fails the run.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Seed of the payloads.
    #[arg(long, default_value_t = 0xe2e)]
    pub seed: u64,
    /// Receive by push subscription (`rafka subscribe`'s path) instead of a Fetch consumer; the
    /// long-poll wait is then the push poll's.
    #[arg(long)]
    pub push: bool,
    /// Produce over Kafka TCP to these bootstrap servers (host:port,...) instead of over the
    /// receiver's transport: a stock client's path in, the receiver's (push or Fetch over the
    /// mesh, say) out.
    #[arg(long, value_name = "HOST:PORT")]
    pub produce_kafka: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    Acks::parse(s).map_err(|e| e.to_string())
}

fn parse_codec(s: &str) -> Result<Compression, String> {
    parse_compression(s).map_err(|e| e.to_string())
}

impl Output {
    fn every(&self) -> Duration {
        Duration::try_from_secs_f64(self.report_interval).unwrap_or(Duration::from_secs(5))
    }
}

impl ProduceArgs {
    /// The producer settings (Kafka 3.8's defaults unless given).
    pub fn producer_config(&self) -> rafka_client::Result<ProducerConfig> {
        let config = ProducerConfig {
            acks: self.acks,
            enable_idempotence: self.no_idempotence.then_some(false),
            batch_size: self.batch_size,
            linger: Duration::from_millis(self.linger_ms),
            compression: self.compression,
            max_in_flight: self.max_in_flight,
            buffer_memory: self.buffer_memory,
            ..ProducerConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// The benchmark these options describe.
    pub fn bench(&self) -> rafka_client::Result<ProduceBench> {
        Ok(ProduceBench {
            topic: self.topic.clone(),
            records: self.records,
            record_size: self.record_size,
            key_size: self.key_size,
            partitions: self.partitions,
            producers: usize::from(self.producers),
            throughput: self.throughput,
            producer: self.producer_config()?,
            report_every: self.output.every(),
            broker_pid: self.output.broker_pid,
            seed: self.seed,
        })
    }
}

impl ConsumeArgs {
    /// The benchmark these options describe.
    pub fn bench(&self) -> rafka_client::Result<ConsumeBench> {
        let consumer = ConsumerConfig {
            fetch_max_wait: Duration::from_millis(self.max_wait_ms),
            fetch_max_bytes: self.fetch_max_bytes,
            max_partition_fetch_bytes: self.fetch_size,
            ..ConsumerConfig::default()
        };
        consumer.validate()?;
        Ok(ConsumeBench {
            topic: self.topic.clone(),
            records: self.records,
            consumers: usize::from(self.consumers),
            start_at: match self.from {
                From::Earliest => StartAt::Earliest,
                From::Latest => StartAt::Latest,
            },
            consumer,
            timeout: Duration::from_millis(self.timeout_ms),
            report_every: self.output.every(),
            broker_pid: self.output.broker_pid,
        })
    }
}

impl E2eArgs {
    /// The benchmark these options describe.
    pub fn bench(&self) -> rafka_client::Result<E2eBench> {
        let producer = ProducerConfig {
            acks: self.acks,
            ..ProducerConfig::default()
        };
        producer.validate()?;
        Ok(E2eBench {
            topic: self.topic.clone(),
            records: self.records,
            record_size: self.record_size,
            producer,
            max_wait: Duration::from_millis(self.max_wait_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            warmup: self.warmup,
            report_every: self.output.every(),
            broker_pid: self.output.broker_pid,
            seed: self.seed,
            push: self.push,
        })
    }
}

/// Runs a benchmark; `client` is the first of the clients it uses, `config` makes the others.
pub async fn run(client: &Client, config: &ClientConfig, cmd: BenchCommand) -> anyhow::Result<()> {
    let print = |p: &Progress| eprintln!("{p}");
    let on_progress: OnProgress<'_> = &print;
    let (report, json, wanted) = match cmd {
        BenchCommand::Produce(args) => {
            let bench = args.bench()?;
            let clients = clients(client, config, bench.producers).await?;
            let report = bench.run(&clients, on_progress).await;
            shutdown(&clients).await;
            (report?, args.output.json, args.records)
        }
        BenchCommand::Consume(args) => {
            let bench = args.bench()?;
            let clients = clients(client, config, bench.consumers).await?;
            let report = bench.run(&clients, on_progress).await;
            shutdown(&clients).await;
            (report?, args.output.json, args.records)
        }
        BenchCommand::E2e(args) => {
            let bench = args.bench()?;
            let clients = match &args.produce_kafka {
                // The producer gets its own client over Kafka TCP; the receiver is the caller's.
                Some(hosts) => {
                    let mut tcp = config.clone();
                    tcp.bootstrap = Bootstrap::kafka(hosts)?;
                    let producer = Client::connect(tcp)
                        .await
                        .context("the Kafka TCP producer's client")?;
                    vec![client.clone(), producer]
                }
                None => clients(client, config, 2).await?,
            };
            let (producer, consumer) = match (clients.as_slice(), &args.produce_kafka) {
                ([caller, tcp], Some(_)) => (tcp, caller),
                ([producer, consumer], None) => (producer, consumer),
                _ => bail!("two clients expected"),
            };
            let report = bench.run(producer, consumer, on_progress).await;
            shutdown(&clients).await;
            (report?, args.output.json, args.records)
        }
    };
    if json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    check(&report, wanted)
}

/// A run that lost records or read fewer than asked fails (after its report is printed).
fn check(report: &Report, wanted: u64) -> anyhow::Result<()> {
    if report.errors > 0 {
        bail!(
            "{} records failed; first error: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("?")
        );
    }
    if report.records < wanted {
        bail!(
            "{} of {wanted} records completed{}",
            report.records,
            report
                .first_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `client` and `n - 1` more clients of the same cluster.
async fn clients(client: &Client, config: &ClientConfig, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut all = vec![client.clone()];
    while all.len() < n {
        let next = Client::connect(config.clone())
            .await
            .with_context(|| format!("client {} of {n}", all.len() + 1))?;
        all.push(next);
    }
    Ok(all)
}

/// Closes every client but the first (the caller's).
async fn shutdown(clients: &[Client]) {
    for c in clients.iter().skip(1) {
        c.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn parse(args: &[&str]) -> Result<BenchCommand, clap::Error> {
        let cli = Cli::try_parse_from(["rafka", "bench"].iter().chain(args))?;
        match cli.command {
            Command::Bench(b) => Ok(b),
            other => panic!("not bench: {other:?}"),
        }
    }

    fn produce(args: &[&str]) -> ProduceArgs {
        let mut all = vec![
            "produce",
            "--topic",
            "t",
            "--records",
            "10",
            "--record-size",
            "100",
        ];
        all.extend_from_slice(args);
        match parse(&all).unwrap() {
            BenchCommand::Produce(p) => p,
            other => panic!("not produce: {other:?}"),
        }
    }

    /// The defaults are Kafka 3.8's producer defaults.
    #[test]
    fn produce_defaults_are_kafka_3_8_producer_defaults() {
        let bench = produce(&[]).bench().unwrap();
        let p = &bench.producer;
        assert_eq!(p.acks, Acks::All);
        assert!(p.idempotent(), "enable.idempotence=true");
        assert_eq!(p.batch_size, 16384, "batch.size");
        assert_eq!(p.linger, Duration::ZERO, "linger.ms");
        assert_eq!(p.max_in_flight, 5, "max.in.flight.requests.per.connection");
        assert_eq!(p.compression, Compression::None, "compression.type");
        assert_eq!(p.buffer_memory, 33_554_432, "buffer.memory");
        assert_eq!(p.max_request_size, 1_048_576, "max.request.size");
        assert_eq!(p.delivery_timeout, Duration::from_secs(120));
        assert_eq!(p.request_timeout, Duration::from_secs(30));
        assert_eq!(p.retry_backoff, Duration::from_millis(100));
        let library = ProducerConfig::default();
        assert_eq!(
            (
                p.acks,
                p.batch_size,
                p.linger,
                p.max_in_flight,
                p.buffer_memory
            ),
            (
                library.acks,
                library.batch_size,
                library.linger,
                library.max_in_flight,
                library.buffer_memory
            )
        );
        assert_eq!((bench.partitions, bench.producers), (1, 1));
        assert_eq!(bench.key_size, None, "null keys: sticky partitioning");
        assert!(bench.throughput < 0.0, "unlimited");
        assert_eq!(bench.report_every, Duration::from_secs(5));
        assert_eq!((bench.records, bench.record_size), (10, 100));
    }

    #[test]
    fn produce_options() {
        let bench = produce(&[
            "--acks",
            "1",
            "--batch-size",
            "131072",
            "--linger-ms",
            "5",
            "--partitions",
            "6",
            "--producers",
            "3",
            "--compression",
            "lz4",
            "--throughput",
            "50000",
            "--key-size",
            "8",
            "--broker-pid",
            "42",
            "--json",
        ])
        .bench()
        .unwrap();
        let p = &bench.producer;
        assert_eq!(p.acks, Acks::Leader);
        assert!(!p.idempotent(), "acks=1 turns idempotence off, as in Kafka");
        assert_eq!((p.batch_size, p.linger), (131072, Duration::from_millis(5)));
        assert_eq!(p.compression, Compression::Lz4);
        assert_eq!((bench.partitions, bench.producers), (6, 3));
        assert_eq!((bench.throughput, bench.key_size), (50000.0, Some(8)));
        assert_eq!(bench.broker_pid, Some(42));
        assert!(produce(&["--throughput", "-1"]).bench().unwrap().throughput < 0.0);
        assert!(
            !produce(&["--no-idempotence"])
                .bench()
                .unwrap()
                .producer
                .idempotent()
        );
        assert!(
            produce(&["--max-in-flight", "6"]).bench().is_err(),
            "idempotence allows 5"
        );
        for bad in [
            &["--acks", "2"][..],
            &["--producers", "0"],
            &["--compression", "brotli"],
            &["--record-size", "x"],
        ] {
            let mut all = vec![
                "produce",
                "--topic",
                "t",
                "--records",
                "10",
                "--record-size",
                "1",
            ];
            all.extend_from_slice(bad);
            assert!(parse(&all).is_err(), "{bad:?}");
        }
        assert!(
            parse(&["produce", "--topic", "t", "--records", "10"]).is_err(),
            "size needed"
        );
    }

    #[test]
    fn consume_and_e2e_options() {
        let BenchCommand::Consume(c) = parse(&["consume", "--topic", "t", "-n", "100"]).unwrap()
        else {
            panic!("not consume")
        };
        let bench = c.bench().unwrap();
        assert_eq!((bench.consumers, bench.start_at), (1, StartAt::Earliest));
        assert_eq!(bench.consumer.max_partition_fetch_bytes, 1_048_576);
        assert_eq!(bench.consumer.fetch_max_bytes, 52_428_800);
        assert_eq!(bench.consumer.fetch_max_wait, Duration::from_millis(500));
        assert_eq!(bench.timeout, Duration::from_secs(10));
        let BenchCommand::Consume(c) = parse(&[
            "consume",
            "--topic",
            "t",
            "-n",
            "1",
            "--consumers",
            "4",
            "--from",
            "latest",
        ])
        .unwrap() else {
            panic!("not consume")
        };
        let bench = c.bench().unwrap();
        assert_eq!((bench.consumers, bench.start_at), (4, StartAt::Latest));
        assert!(parse(&["consume", "--topic", "t", "-n", "1", "--from", "middle"]).is_err());

        let BenchCommand::E2e(e) =
            parse(&["e2e", "--records", "50", "--record-size", "10"]).unwrap()
        else {
            panic!("not e2e")
        };
        let bench = e.bench().unwrap();
        assert_eq!(bench.topic, "rafka-bench-e2e");
        assert_eq!(bench.producer.acks, Acks::All);
        assert!(bench.producer.idempotent());
        assert_eq!(bench.max_wait, Duration::from_millis(500));
        assert_eq!((bench.records, bench.record_size), (50, 10));
        assert!(parse(&["e2e", "--records", "5", "--max-wait-ms", "99"]).is_err());
        assert!(parse(&["e2e", "--records", "5", "--max-wait-ms", "100"]).is_ok());
    }

    #[test]
    fn failed_or_short_runs_fail_the_command() {
        let mut report = sample_report();
        assert!(check(&report, 10).is_ok());
        assert!(check(&report, 11).is_err());
        report.errors = 1;
        assert!(check(&report, 10).is_err());
    }

    fn sample_report() -> Report {
        Report {
            mode: "produce",
            transport: "kafka-tcp",
            topic: "t".into(),
            records: 10,
            bytes: 1000,
            errors: 0,
            first_error: None,
            elapsed_s: 1.0,
            records_per_sec: 10.0,
            mb_per_sec: 0.001,
            latency_ms: None,
            fsync: rafka_client::bench::fsync::FsyncMode::Unknown,
            cpu: rafka_client::bench::cpu::CpuReport {
                client_s: None,
                client_s_per_million: None,
                broker_s: None,
                broker_s_per_million: None,
            },
            config: serde_json::Value::Null,
            notes: Vec::new(),
        }
    }
}
