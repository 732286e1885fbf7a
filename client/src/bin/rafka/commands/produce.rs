//! `rafka produce TOPIC`: one record per line of standard input, bytes kept exactly.
//!
//! A blocking thread reads stdin in large chunks and splits lines with memchr (no per-line
//! copies: each record shares its chunk). The async side hands records to the producer and
//! keeps the delivery futures in send order, counting those already resolved after each send
//! (no channel or task per record) and the rest once the producer has flushed.
//!
//! With `--transactional-id` each batch of lines read from stdin at once (everything available,
//! up to 256 KiB) is one transaction, committed before the next is read: read_committed
//! consumers see a batch whole or not at all. A failed transaction is aborted and the command
//! stops with an error saying how many records were committed before it.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kafka_protocol::records::Compression;
use rafka_client::records::parse_compression;
use rafka_client::{Acks, Client, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::mpsc;

/// `produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Split each line at the first SEP into key and value (lines without SEP get a null key).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Send every record to this partition (default: by key, sticky for null keys).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Wait up to this long for a batch to fill (linger.ms).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub linger_ms: u64,
    /// Largest batch in bytes (batch.size).
    #[arg(long, default_value_t = 16384, value_name = "BYTES")]
    pub batch_size: usize,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_codec)]
    pub compression: Compression,
    /// Disable the idempotent producer (it is on by default with acks=all).
    #[arg(long)]
    pub no_idempotence: bool,
    /// How long to wait for the topic's metadata (and, with --transactional-id, for the
    /// transaction coordinator) before giving up.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub max_block_ms: u64,
    /// Produce in transactions under this transactional id, one per batch of input lines,
    /// each committed (a newer producer with the same id fences this one).
    #[arg(long, value_name = "ID", conflicts_with = "no_idempotence")]
    pub transactional_id: Option<String>,
    /// transaction.timeout.ms: the coordinator aborts a transaction open longer.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub transaction_timeout_ms: u64,
    /// Abort every transaction instead of committing it (read_committed consumers see
    /// nothing; read_uncommitted ones see the records): to try out isolation levels.
    #[arg(long, requires = "transactional_id")]
    pub abort: bool,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    Acks::parse(s).map_err(|e| e.to_string())
}

fn parse_codec(s: &str) -> Result<Compression, String> {
    parse_compression(s).map_err(|e| e.to_string())
}

impl ProduceArgs {
    /// The producer configuration these options describe.
    pub fn producer_config(&self) -> rafka_client::Result<ProducerConfig> {
        let config = ProducerConfig {
            acks: self.acks,
            enable_idempotence: self.no_idempotence.then_some(false),
            batch_size: self.batch_size,
            linger: Duration::from_millis(self.linger_ms),
            compression: self.compression,
            max_block: Duration::from_millis(self.max_block_ms),
            transactional_id: self.transactional_id.clone(),
            transaction_timeout: Duration::from_millis(self.transaction_timeout_ms),
            ..ProducerConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Lines per message from the reader thread.
const CHUNK: usize = 256 * 1024;

/// Runs `produce`.
pub async fn run(client: &Client, args: ProduceArgs) -> anyhow::Result<()> {
    let producer = Producer::new(client.clone(), args.producer_config()?)?;
    let topic: Arc<str> = Arc::from(args.topic.as_str());
    let separator = args.key_separator.clone().map(Bytes::from);
    let (lines_tx, mut lines_rx) = mpsc::channel::<std::io::Result<Vec<Bytes>>>(16);
    std::thread::spawn(move || read_lines(std::io::stdin().lock(), &lines_tx));
    if args.transactional_id.is_some() {
        let result = run_transactions(&producer, &args, &topic, &mut lines_rx).await;
        producer.close().await;
        return result;
    }
    let mut outstanding = Deliveries::default();
    let mut failure = None;
    'read: while let Some(chunk) = lines_rx.recv().await {
        let lines = chunk.context("read standard input")?;
        for line in lines {
            let mut record = to_record(&topic, line, separator.as_deref());
            record.partition = args.partition;
            match producer.send(record).await {
                Ok(delivery) => outstanding.push(delivery),
                Err(e) => {
                    failure = Some(anyhow::Error::new(e).context(format!("produce to {topic}")));
                    break 'read;
                }
            }
        }
    }
    producer.close().await;
    let (sent, delivered, first_error) = outstanding.finish().await;
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(e) = first_error {
        bail!(
            "{} of {sent} records were not delivered; first error: {e}",
            sent - delivered
        );
    }
    tracing::info!(records = sent, topic = %topic, "produced");
    Ok(())
}

/// Produces each batch of lines in its own transaction, committed (or aborted with `--abort`).
async fn run_transactions(
    producer: &Producer,
    args: &ProduceArgs,
    topic: &Arc<str>,
    lines_rx: &mut mpsc::Receiver<std::io::Result<Vec<Bytes>>>,
) -> anyhow::Result<()> {
    let id = args.transactional_id.as_deref().unwrap_or_default();
    producer
        .init_transactions()
        .await
        .with_context(|| format!("initialize transactional id {id}"))?;
    let separator = args.key_separator.clone().map(Bytes::from);
    let (mut transactions, mut records) = (0u64, 0u64);
    while let Some(chunk) = lines_rx.recv().await {
        let lines = chunk.context("read standard input")?;
        let count = lines.len() as u64;
        let outcome: rafka_client::Result<()> = async {
            producer.begin_transaction()?;
            for line in lines {
                let mut record = to_record(topic, line, separator.as_deref());
                record.partition = args.partition;
                // Delivery is checked by the commit, which fails if any record failed.
                drop(producer.send(record).await?);
            }
            if args.abort {
                // Written first, so read_uncommitted consumers see what was aborted.
                producer.flush().await;
                producer.abort_transaction().await
            } else {
                producer.commit_transaction().await
            }
        }
        .await;
        if let Err(e) = outcome {
            if !e.is_fatal_for_transactions() {
                let _ = producer.abort_transaction().await;
            }
            let ended = if args.abort { "aborted" } else { "committed" };
            bail!(
                "transaction {} of transactional id {id} failed: {e} \
                 ({records} records in {transactions} transactions {ended} before it)",
                transactions + 1
            );
        }
        transactions += 1;
        records += count;
    }
    tracing::info!(records, transactions, topic = %topic, "produced in transactions");
    Ok(())
}

/// Delivery futures in send order, tallied as they resolve.
#[derive(Default)]
struct Deliveries {
    pending: VecDeque<DeliveryFuture>,
    sent: u64,
    delivered: u64,
    first_error: Option<rafka_client::Error>,
}

impl Deliveries {
    /// Adds a delivery and tallies every resolved one at the front.
    fn push(&mut self, delivery: DeliveryFuture) {
        self.sent += 1;
        self.pending.push_back(delivery);
        while let Some(result) = self.pending.front().and_then(DeliveryFuture::try_result) {
            self.pending.pop_front();
            self.tally(result);
        }
    }

    fn tally(&mut self, result: rafka_client::Result<rafka_client::RecordMetadata>) {
        match result {
            Ok(_) => self.delivered += 1,
            Err(e) => {
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// Waits for the rest; returns (sent, delivered, first error).
    async fn finish(mut self) -> (u64, u64, Option<rafka_client::Error>) {
        while let Some(delivery) = self.pending.pop_front() {
            let result = delivery.await;
            self.tally(result);
        }
        (self.sent, self.delivered, self.first_error)
    }
}

/// Splits a line into key and value at the first `separator`.
pub fn to_record(topic: &Arc<str>, line: Bytes, separator: Option<&[u8]>) -> ProducerRecord {
    let mut record = ProducerRecord {
        topic: topic.clone(),
        partition: None,
        key: None,
        value: None,
        headers: Vec::new(),
        timestamp: None,
    };
    match separator.and_then(|sep| find(&line, sep).map(|at| (at, sep.len()))) {
        Some((at, len)) => {
            record.key = Some(line.slice(..at));
            record.value = Some(line.slice(at + len..));
        }
        None => record.value = Some(line),
    }
    record
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(haystack, needle)
}

/// Reads `input` to the end, sending its lines (without the `\n`) in chunks.
pub fn read_lines(mut input: impl Read, tx: &mpsc::Sender<std::io::Result<Vec<Bytes>>>) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        if buf.capacity() - buf.len() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        let start = buf.len();
        let spare = buf.capacity() - start;
        buf.resize(start + spare, 0);
        let read = match input.read(buf.get_mut(start..).unwrap_or_default()) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                buf.truncate(start);
                continue;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        buf.truncate(start + read);
        if read == 0 {
            if !buf.is_empty() {
                let _ = tx.blocking_send(Ok(vec![buf.split().freeze()]));
            }
            return;
        }
        let lines = split_complete_lines(&mut buf, start);
        if !lines.is_empty() && tx.blocking_send(Ok(lines)).is_err() {
            return;
        }
    }
}

/// Splits off every complete line in `buf` (newlines searched from `from`).
fn split_complete_lines(buf: &mut BytesMut, from: usize) -> Vec<Bytes> {
    let Some(last_newline) = memchr::memrchr(b'\n', buf.get(from..).unwrap_or_default()) else {
        return Vec::new();
    };
    let complete = buf.split_to(from + last_newline + 1).freeze();
    let mut lines = Vec::new();
    let mut at = 0;
    for nl in memchr::memchr_iter(b'\n', &complete) {
        lines.push(complete.slice(at..nl));
        at = nl + 1;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
        let (tx, mut rx) = mpsc::channel(1024);
        // A reader that returns a few bytes at a time, to cut lines across reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(out.len()).min(3);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        read_lines(Trickle(input), &tx);
        drop(tx);
        let mut out = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            out.extend(chunk.unwrap().into_iter().map(|b| b.to_vec()));
        }
        out
    }

    #[test]
    fn lines_keep_every_byte() {
        let input = b"a\r\n\n\xff\x00bin\nlast";
        assert_eq!(
            lines_of(input),
            vec![
                b"a\r".to_vec(),
                vec![],
                b"\xff\x00bin".to_vec(),
                b"last".to_vec()
            ]
        );
        assert!(lines_of(b"").is_empty());
    }

    #[test]
    fn key_separator_splits_at_the_first_occurrence() {
        let topic: Arc<str> = Arc::from("t");
        let r = to_record(&topic, Bytes::from_static(b"k::v::w"), Some(b"::"));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v::w"[..]));
        let r = to_record(&topic, Bytes::from_static(b"novalue"), Some(b"::"));
        assert_eq!((r.key, r.value.as_deref()), (None, Some(&b"novalue"[..])));
        let r = to_record(&topic, Bytes::from_static(b"x"), None);
        assert_eq!(r.value.as_deref(), Some(&b"x"[..]));
    }
}
