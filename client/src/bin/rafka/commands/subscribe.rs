//! `rafka subscribe TOPIC`: committed records pushed by the partition leaders (through the home
//! node; gaps and history by Fetch), printed as `rafka consume` prints them.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rafka_client::{Client, StartAt, Subscription, SubscriptionConfig};

use crate::format::{DEFAULT_FORMAT, Format};

/// `subscribe`.
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Topics to subscribe to (one or more).
    #[arg(required = true)]
    pub topics: Vec<String>,
    /// Start at the beginning of each partition (default: only records committed from now on).
    #[arg(long, conflicts_with_all = ["offset", "timestamp", "group"])]
    pub from_beginning: bool,
    /// Start at this offset in every partition.
    #[arg(long, conflicts_with_all = ["timestamp", "group"])]
    pub offset: Option<i64>,
    /// Start at the first record with a timestamp (ms) at or after this one.
    #[arg(long, value_name = "MS", conflicts_with = "group")]
    pub timestamp: Option<i64>,
    /// Start at this group's committed offsets (the end where it has none); nothing is committed.
    #[arg(long)]
    pub group: Option<String>,
    /// Exit after this many records.
    #[arg(short = 'n', long)]
    pub max_messages: Option<u64>,
    /// Output format, as for `rafka consume`: %k key, %v value, %p partition, %o offset,
    /// %t timestamp, %T topic, %K/%S key/value length, %h headers, %% percent.
    #[arg(long, default_value = DEFAULT_FORMAT, value_parser = Format::parse)]
    pub format: Format,
    /// Exit once no record has arrived for this long (default: run until interrupted).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// On exit, print the subscription's counters (records by push and by Fetch, gaps,
    /// duplicates dropped, push losses) to standard error.
    #[arg(long)]
    pub stats: bool,
}

/// Runs `subscribe`.
pub async fn run(client: &Client, args: SubscribeArgs) -> anyhow::Result<()> {
    let start = if args.from_beginning {
        StartAt::Beginning
    } else if let Some(offset) = args.offset {
        StartAt::Offset(offset)
    } else if let Some(ms) = args.timestamp {
        StartAt::Timestamp(ms)
    } else if let Some(group) = &args.group {
        StartAt::Committed(group.clone())
    } else {
        StartAt::End
    };
    let config = SubscriptionConfig {
        metadata_wait: client.config().connection.request_timeout,
        ..SubscriptionConfig::default()
    };
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    let mut subscription = Subscription::new(client.clone(), &topics, start, config)
        .await
        .with_context(|| format!("subscribe {}", args.topics.join(",")))?;
    let result = print_loop(&mut subscription, &args).await;
    if args.stats {
        eprintln!("{:?}", subscription.stats());
    }
    let printed = result?;
    tracing::info!(records = printed, "subscribed");
    Ok(())
}

async fn print_loop(subscription: &mut Subscription, args: &SubscribeArgs) -> anyhow::Result<u64> {
    let mut out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let mut printed = 0u64;
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let budget = idle.map_or(Duration::from_secs(1), |i| {
            i.saturating_sub(last_record.elapsed())
        });
        let records = tokio::select! {
            r = subscription.poll(budget.min(Duration::from_secs(1))) => r?,
            _ = &mut interrupted => break,
        };
        if records.is_empty() {
            if idle.is_some_and(|i| last_record.elapsed() >= i) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        for r in &records {
            if args.max_messages.is_some_and(|max| printed >= max) {
                break;
            }
            match args.format.write(&mut out, r) {
                Ok(()) => printed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(printed),
                Err(e) => return Err(e.into()),
            }
        }
        match out.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(printed),
            Err(e) => return Err(e.into()),
        }
        if args.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
    }
    Ok(printed)
}
