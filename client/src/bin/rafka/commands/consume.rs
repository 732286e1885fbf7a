//! `rafka consume TOPIC`: records to standard output, formatted, bytes kept exactly.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rafka_client::{Client, Consumer, ConsumerConfig, OffsetReset, SeekTo, TopicPartition};

use crate::format::{DEFAULT_FORMAT, Format};

/// `consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to consume.
    pub topic: String,
    /// Start at the beginning of each partition (with --group: only where nothing is committed).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Consume only this partition (repeatable; default: every partition).
    #[arg(long)]
    pub partition: Vec<i32>,
    /// Start at this offset in every consumed partition.
    #[arg(long)]
    pub offset: Option<i64>,
    /// Exit after this many records.
    #[arg(short = 'n', long)]
    pub max_messages: Option<u64>,
    /// Commit offsets under this group id, and resume from them.
    #[arg(long)]
    pub group: Option<String>,
    /// Output format: %k key, %v value, %p partition, %o offset, %t timestamp, %T topic,
    /// %K/%S key/value length, %h headers, %% percent; escapes \n \t \r \0 \\.
    #[arg(long, default_value = DEFAULT_FORMAT, value_parser = Format::parse)]
    pub format: Format,
    /// Exit once no record has arrived for this long (default: run until interrupted).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Kafka's isolation.level: read_committed stops at each partition's last stable offset and
    /// skips aborted transactions' records.
    #[arg(long, value_enum, default_value_t = Isolation::ReadUncommitted)]
    pub isolation: Isolation,
}

/// `--isolation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    /// Every record up to the high watermark, transactional or not.
    #[value(name = "read_uncommitted")]
    ReadUncommitted,
    /// Committed records only.
    #[value(name = "read_committed")]
    ReadCommitted,
}

/// How often offsets are committed while consuming with --group.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Runs `consume`.
pub async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    let config = ConsumerConfig {
        group_id: args.group.clone(),
        auto_offset_reset: if args.from_beginning {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        },
        read_committed: args.isolation == Isolation::ReadCommitted,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client.clone(), config)?;
    let wait = client.config().connection.request_timeout;
    let all = consumer
        .assign_topic(&args.topic, wait)
        .await
        .with_context(|| format!("consume {}", args.topic))?;
    if !args.partition.is_empty() {
        let chosen: Vec<TopicPartition> = all
            .into_iter()
            .filter(|tp| args.partition.contains(&tp.partition))
            .collect();
        if chosen.len() != args.partition.len() {
            anyhow::bail!(
                "topic {} has no partition among {:?}",
                args.topic,
                args.partition
            );
        }
        consumer.assign(chosen);
    }
    if let Some(offset) = args.offset {
        for tp in consumer.assignment() {
            consumer.seek(&tp, SeekTo::Offset(offset))?;
        }
    }
    let result = consume_loop(&mut consumer, &args).await;
    let commit = commit_printed(&mut consumer, &args, &result).await;
    let printed = result?;
    commit?;
    tracing::info!(records = printed.count, topic = %args.topic, "consumed");
    Ok(())
}

/// What has been written to stdout.
#[derive(Debug, Default)]
struct Printed {
    count: u64,
    next: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
}

async fn consume_loop(consumer: &mut Consumer, args: &ConsumeArgs) -> anyhow::Result<Printed> {
    let mut out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let mut printed = Printed::default();
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let mut last_commit = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let budget = idle.map_or(Duration::from_secs(1), |i| {
            i.saturating_sub(last_record.elapsed())
        });
        let records = tokio::select! {
            r = consumer.poll(budget.min(Duration::from_secs(1))) => r?,
            _ = &mut interrupted => break,
        };
        if records.is_empty() {
            if idle.is_some_and(|i| last_record.elapsed() >= i) {
                break;
            }
        } else {
            last_record = Instant::now();
        }
        for r in &records {
            if args.max_messages.is_some_and(|max| printed.count >= max) {
                break;
            }
            if let Err(e) = args.format.write(&mut out, r) {
                return stdout_closed(e, printed);
            }
            printed.count += 1;
            printed.next.insert(
                TopicPartition::new(r.topic.clone(), r.partition),
                r.offset + 1,
            );
        }
        if let Err(e) = out.flush() {
            return stdout_closed(e, printed);
        }
        if args.max_messages.is_some_and(|max| printed.count >= max) {
            break;
        }
        if args.group.is_some() && last_commit.elapsed() >= COMMIT_INTERVAL {
            commit(consumer, &mut printed).await?;
            last_commit = Instant::now();
        }
    }
    Ok(printed)
}

/// A closed stdout (`| head`) ends consumption quietly; other write errors are errors.
fn stdout_closed(e: std::io::Error, printed: Printed) -> anyhow::Result<Printed> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(printed)
    } else {
        Err(anyhow::Error::new(e).context("write to standard output"))
    }
}

async fn commit(consumer: &mut Consumer, printed: &mut Printed) -> anyhow::Result<()> {
    let pending: Vec<(TopicPartition, i64)> = printed
        .next
        .iter()
        .filter(|(tp, o)| printed.committed.get(*tp) != Some(*o))
        .map(|(tp, o)| (tp.clone(), *o))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    consumer
        .commit_offsets(&pending)
        .await
        .context("commit offsets")?;
    printed.committed.extend(pending);
    Ok(())
}

async fn commit_printed(
    consumer: &mut Consumer,
    args: &ConsumeArgs,
    result: &anyhow::Result<Printed>,
) -> anyhow::Result<()> {
    let (Some(_), Ok(printed)) = (&args.group, result) else {
        return Ok(());
    };
    let mut printed = Printed {
        count: printed.count,
        next: printed.next.clone(),
        committed: printed.committed.clone(),
    };
    commit(consumer, &mut printed).await
}
