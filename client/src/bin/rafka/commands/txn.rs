//! `rafka txn list|describe`, as `kafka-transactions.sh list` and `describe` show them.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use rafka_client::Client;
use rafka_client::transactions::{ListFilter, TransactionDescription, TxnAdmin};

/// Transaction administration.
#[derive(Debug, Subcommand)]
pub enum TxnCommand {
    /// List the cluster's transactional ids: producer id, state and coordinator.
    List {
        /// Only ids in this state (Empty, Ongoing, PrepareCommit, CompleteCommit, PrepareAbort,
        /// CompleteAbort, ...); repeatable.
        #[arg(long, value_name = "STATE")]
        state: Vec<String>,
        /// Only this producer id; repeatable.
        #[arg(long, value_name = "ID")]
        producer_id: Vec<i64>,
        /// Only transactions open for at least this long.
        #[arg(long, value_name = "MS")]
        min_duration_ms: Option<i64>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a transactional id's state, producer id and epoch, timeout, and its open
    /// transaction's start time and partitions.
    Describe {
        /// Transactional id.
        transactional_id: String,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn describe(out: &mut impl Write, d: &TransactionDescription) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:>11} {:<18} {:>11} {:>6} {:>10} {:>15}  PARTITIONS",
        "TRANSACTIONAL-ID",
        "COORDINATOR",
        "STATE",
        "PRODUCER-ID",
        "EPOCH",
        "TIMEOUT-MS",
        "START-TIME-MS"
    )?;
    writeln!(
        out,
        "{:<24} {:>11} {:<18} {:>11} {:>6} {:>10} {:>15}  {}",
        d.transactional_id,
        d.coordinator,
        d.state,
        d.producer_id,
        d.producer_epoch,
        d.timeout_ms,
        d.start_time_ms.map_or("-".to_owned(), |t| t.to_string()),
        if d.partitions.is_empty() {
            "-".to_owned()
        } else {
            d.partitions.join(",")
        }
    )
}

/// Runs a txn command.
pub async fn run(client: &Client, cmd: TxnCommand) -> anyhow::Result<()> {
    let admin = TxnAdmin::new(client.clone());
    let mut out = std::io::stdout().lock();
    match cmd {
        TxnCommand::List {
            state,
            producer_id,
            min_duration_ms,
            json,
        } => {
            let filter = ListFilter {
                states: state,
                producer_ids: producer_id,
                min_duration_ms,
            };
            let listed = admin.list(&filter).await.context("list transactions")?;
            if json {
                serde_json::to_writer_pretty(&mut out, &listed)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:<32} {:>12} {:<18} COORDINATOR",
                    "TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"
                )?;
                for t in listed {
                    writeln!(
                        out,
                        "{:<32} {:>12} {:<18} {}",
                        t.transactional_id, t.producer_id, t.state, t.coordinator
                    )?;
                }
            }
        }
        TxnCommand::Describe {
            transactional_id,
            json,
        } => {
            let d = admin
                .describe(&transactional_id)
                .await
                .with_context(|| format!("describe transactional id {transactional_id}"))?;
            if json {
                serde_json::to_writer_pretty(&mut out, &d)?;
                writeln!(out)?;
            } else {
                describe(&mut out, &d)?;
            }
        }
    }
    Ok(())
}
