//! `rafka topic create|list|describe|delete`.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use rafka_client::Client;
use rafka_client::admin::{Admin, ConfigChange, NewTopic, TopicDescription};

/// Topic administration.
#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line.
    List,
    /// Show partitions, leaders, replicas and configs of a topic.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Change topic configs (IncrementalAlterConfigs), e.g.
    /// `alter-config orders --set cleanup.policy=compact --set min.cleanable.dirty.ratio=0.1`.
    AlterConfig(AlterArgs),
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// `topic create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions (default: the broker's default).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor (default: the broker's default).
    #[arg(long)]
    pub replication_factor: Option<i16>,
    /// A topic config as KEY=VALUE (repeatable), e.g. --config retention.ms=86400000.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_config)]
    pub config: Vec<(String, String)>,
}

/// `topic alter-config`.
#[derive(Debug, Args)]
pub struct AlterArgs {
    /// Topic name.
    pub name: String,
    /// Set a config: KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_config)]
    pub set: Vec<(String, String)>,
    /// Remove a topic's override, back to the broker default: KEY (repeatable).
    #[arg(long, value_name = "KEY")]
    pub delete: Vec<String>,
    /// Add items to a list config: KEY=ITEM[,ITEM] (repeatable), e.g. cleanup.policy=compact.
    #[arg(long, value_name = "KEY=ITEMS", value_parser = parse_config)]
    pub append: Vec<(String, String)>,
    /// Remove items from a list config: KEY=ITEM[,ITEM] (repeatable).
    #[arg(long, value_name = "KEY=ITEMS", value_parser = parse_config)]
    pub subtract: Vec<(String, String)>,
}

impl AlterArgs {
    fn changes(self) -> Vec<(String, ConfigChange)> {
        let set = self.set.into_iter().map(|(k, v)| (k, ConfigChange::Set(v)));
        let delete = self.delete.into_iter().map(|k| (k, ConfigChange::Delete));
        let append = self
            .append
            .into_iter()
            .map(|(k, v)| (k, ConfigChange::Append(v)));
        let subtract = self
            .subtract
            .into_iter()
            .map(|(k, v)| (k, ConfigChange::Subtract(v)));
        set.chain(delete).chain(append).chain(subtract).collect()
    }
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if k.is_empty() {
        return Err("empty config key".into());
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Prints a description the way `kafka-topics.sh --describe` does.
fn describe(out: &mut impl Write, d: &TopicDescription) -> std::io::Result<()> {
    let rf = d.topic.partitions.first().map_or(0, |p| p.replicas.len());
    let configs: Vec<String> = d
        .configs
        .iter()
        .filter(|c| !c.is_default)
        .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("")))
        .collect();
    writeln!(
        out,
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
        d.topic.name,
        d.topic.id,
        d.topic.partitions.len(),
        rf,
        configs.join(",")
    )?;
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for p in &d.topic.partitions {
        let leader = p.leader.map_or("none".to_owned(), |l| l.to_string());
        writeln!(
            out,
            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
            d.topic.name,
            p.partition,
            leader,
            list(&p.replicas),
            list(&p.isr)
        )?;
    }
    Ok(())
}

/// Runs a topic command.
pub async fn run(client: &Client, cmd: TopicCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client.clone());
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicCommand::Create(args) => {
            let topic = NewTopic {
                name: args.name.clone(),
                partitions: args.partitions.unwrap_or(-1),
                replication_factor: args.replication_factor.unwrap_or(-1),
                configs: args.config.into_iter().collect::<BTreeMap<_, _>>(),
            };
            admin
                .create_topic(topic)
                .await
                .with_context(|| format!("create topic {}", args.name))?;
            writeln!(out, "Created topic {}.", args.name)?;
        }
        TopicCommand::List => {
            for t in admin.list_topics().await.context("list topics")? {
                writeln!(out, "{}", t.name)?;
            }
        }
        TopicCommand::Describe { name } => {
            let d = admin
                .describe_topic(&name)
                .await
                .with_context(|| format!("describe topic {name}"))?;
            describe(&mut out, &d)?;
        }
        TopicCommand::AlterConfig(args) => {
            let name = args.name.clone();
            let changes = args.changes();
            anyhow::ensure!(
                !changes.is_empty(),
                "nothing to change: give --set, --delete, --append or --subtract"
            );
            admin
                .alter_topic_configs(&name, &changes)
                .await
                .with_context(|| format!("alter configs of topic {name}"))?;
            writeln!(out, "Altered configs of topic {name}.")?;
        }
        TopicCommand::Delete { name } => {
            admin
                .delete_topic(&name)
                .await
                .with_context(|| format!("delete topic {name}"))?;
            writeln!(out, "Deleted topic {name}.")?;
        }
    }
    Ok(())
}
