//! `rafka consume TOPIC`: records to standard output, formatted, bytes kept exactly; with
//! `--group`, as a member of a consumer group.

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rafka_client::group::assignor::Assignor;
use rafka_client::records::ConsumerRecord;
use rafka_client::{
    Client, Consumer, ConsumerConfig, GroupConfig, GroupConsumer, OffsetReset, SeekTo,
    TopicPartition,
};

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
    #[arg(long, conflicts_with = "group")]
    pub partition: Vec<i32>,
    /// Start at this offset in every consumed partition.
    #[arg(long, conflicts_with = "group")]
    pub offset: Option<i64>,
    /// Exit after this many records.
    #[arg(short = 'n', long)]
    pub max_messages: Option<u64>,
    /// Join this consumer group: the group's members split the topic's partitions, each resumes
    /// from the group's committed offsets, and what is printed is committed.
    #[arg(long)]
    pub group: Option<String>,
    /// With --group: a static member id (group.instance.id); a restart within the session
    /// timeout gets the same partitions back without a rebalance.
    #[arg(long, requires = "group")]
    pub instance_id: Option<String>,
    /// With --group: an assignor to offer (range, roundrobin, cooperative-sticky), in
    /// preference order (repeatable; default range, then cooperative-sticky).
    #[arg(long, requires = "group", value_parser = parse_assignor)]
    pub assignor: Vec<Assignor>,
    /// With --group: the session timeout; a member silent this long is removed from the group.
    #[arg(long, requires = "group", default_value_t = 45_000, value_name = "MS")]
    pub session_timeout_ms: u64,
    /// Output format: %k key, %v value, %p partition, %o offset, %t timestamp, %T topic,
    /// %K/%S key/value length, %h headers, %% percent; escapes \n \t \r \0 \\.
    #[arg(long, default_value = DEFAULT_FORMAT, value_parser = Format::parse)]
    pub format: Format,
    /// Exit once no record has arrived for this long (default: run until interrupted; with
    /// --group, counted from the first assignment).
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

fn parse_assignor(s: &str) -> Result<Assignor, String> {
    Assignor::from_name(s)
        .ok_or_else(|| format!("unknown assignor {s:?} (range, roundrobin, cooperative-sticky)"))
}

/// How often offsets are committed while consuming with --group.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Where records come from: assigned partitions, or a group's assignment.
enum Source {
    Assigned(Box<Consumer>),
    Group(Box<GroupConsumer>),
}

impl Source {
    async fn poll(&mut self, timeout: Duration) -> rafka_client::Result<Vec<ConsumerRecord>> {
        match self {
            Source::Assigned(c) => c.poll(timeout).await,
            Source::Group(g) => g.poll(timeout).await,
        }
    }

    /// Whether records may arrive (a group member has joined).
    fn consuming(&self) -> bool {
        match self {
            Source::Assigned(_) => true,
            Source::Group(g) => g.generation().is_some(),
        }
    }

    /// Counts `r` as handled: a group member commits it with its next commit.
    fn printed(&mut self, r: &ConsumerRecord) {
        if let Source::Group(g) = self {
            g.store(
                &TopicPartition::new(r.topic.clone(), r.partition),
                r.offset + 1,
            );
        }
    }
}

impl ConsumeArgs {
    /// The consumer configuration these options describe, for a plain consumer and for a group
    /// member alike (a member's fetches honour --isolation too).
    pub fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            auto_offset_reset: if self.from_beginning {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            },
            read_committed: self.isolation == Isolation::ReadCommitted,
            ..ConsumerConfig::default()
        }
    }
}

/// Runs `consume`.
pub async fn run(client: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    let config = args.consumer_config();
    let mut source = match &args.group {
        Some(group) => Source::Group(Box::new(group_member(client, config, group, &args)?)),
        None => Source::Assigned(Box::new(assigned(client, config, &args).await?)),
    };
    let result = consume_loop(&mut source, &args).await;
    let printed = match source {
        Source::Group(g) => {
            // Commits what was printed and leaves the group.
            let closed = g.close().await.context("commit offsets");
            let printed = result?;
            closed?;
            printed
        }
        Source::Assigned(_) => result?,
    };
    tracing::info!(records = printed, topic = %args.topic, "consumed");
    Ok(())
}

fn group_member(
    client: &Client,
    config: ConsumerConfig,
    group: &str,
    args: &ConsumeArgs,
) -> anyhow::Result<GroupConsumer> {
    let mut group = GroupConfig::new(group);
    group.instance_id.clone_from(&args.instance_id);
    if !args.assignor.is_empty() {
        group.assignors.clone_from(&args.assignor);
    }
    group.session_timeout = Duration::from_millis(args.session_timeout_ms);
    group.heartbeat_interval = (group.session_timeout / 3).min(group.heartbeat_interval);
    // Only what was printed is committed: records a poll returned past `-n` are not.
    group.auto_store = false;
    group.auto_commit_interval = COMMIT_INTERVAL;
    let mut member = GroupConsumer::new(client.clone(), config, group)?;
    member.subscribe([args.topic.clone()]);
    Ok(member)
}

async fn assigned(
    client: &Client,
    config: ConsumerConfig,
    args: &ConsumeArgs,
) -> anyhow::Result<Consumer> {
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
    Ok(consumer)
}

/// Prints records until `-n`, the idle timeout or Ctrl-C; returns how many were printed.
async fn consume_loop(source: &mut Source, args: &ConsumeArgs) -> anyhow::Result<u64> {
    let mut out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let mut printed = 0;
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let budget = idle.map_or(Duration::from_secs(1), |i| {
            i.saturating_sub(last_record.elapsed())
        });
        let was_consuming = source.consuming();
        let records = tokio::select! {
            r = source.poll(budget.min(Duration::from_secs(1))) => r?,
            _ = &mut interrupted => break,
        };
        // A group member's idle time counts from its first assignment, which this poll may have
        // waited for (the join can take longer than the idle timeout).
        if !was_consuming || !source.consuming() {
            last_record = Instant::now();
        }
        if records.is_empty() {
            if idle.is_some_and(|i| last_record.elapsed() >= i) {
                break;
            }
        } else {
            last_record = Instant::now();
        }
        for r in &records {
            if args.max_messages.is_some_and(|max| printed >= max) {
                break;
            }
            if let Err(e) = args.format.write(&mut out, r) {
                return stdout_closed(e, printed);
            }
            printed += 1;
            source.printed(r);
        }
        if let Err(e) = out.flush() {
            return stdout_closed(e, printed);
        }
        if args.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
    }
    Ok(printed)
}

/// A closed stdout (`| head`) ends consumption quietly; other write errors are errors.
fn stdout_closed(e: std::io::Error, printed: u64) -> anyhow::Result<u64> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(printed)
    } else {
        Err(anyhow::Error::new(e).context("write to standard output"))
    }
}
