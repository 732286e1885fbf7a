//! Producer and consumer settings, with Kafka's defaults and names in the docs.

use std::time::Duration;

use kafka_protocol::records::Compression;

use crate::error::{Error, Result};

/// `acks`: how many replicas must have a batch before the produce request completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// 0: no response at all; offsets are unknown (-1).
    None,
    /// 1: the leader appended it (lost if the leader fails before followers copy it).
    Leader,
    /// all (-1): every in-sync replica has it.
    #[default]
    All,
}

impl Acks {
    /// The wire value.
    pub fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Parses `0`, `1`, `all` or `-1`.
    pub fn parse(s: &str) -> Result<Acks> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(Error::Config(format!(
                "acks must be 0, 1 or all, not {other:?}"
            ))),
        }
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks` (default all).
    pub acks: Acks,
    /// `enable.idempotence`: `None` = on exactly when acks=all (Kafka's default behaviour).
    pub enable_idempotence: Option<bool>,
    /// `batch.size` in bytes (default 16384).
    pub batch_size: usize,
    /// `linger.ms` (default 0).
    pub linger: Duration,
    /// `compression.type` (default none).
    pub compression: Compression,
    /// `max.in.flight.requests.per.connection` (default 5; at most 5 with idempotence).
    pub max_in_flight: usize,
    /// `max.request.size` (default 1 MiB).
    pub max_request_size: usize,
    /// `buffer.memory`: bytes of records waiting to be sent before `send` waits (default 32 MiB).
    pub buffer_memory: usize,
    /// `delivery.timeout.ms` (default 120 s).
    pub delivery_timeout: Duration,
    /// The produce request's `timeout_ms` (default 30 s).
    pub request_timeout: Duration,
    /// `retry.backoff.ms` (default 100 ms).
    pub retry_backoff: Duration,
    /// `max.block.ms`: how long `send` waits for topic metadata (default 60 s).
    pub max_block: Duration,
    /// Seed of the sticky partitioner's random choices (default: from the clock).
    pub partitioner_seed: Option<u64>,
    /// `transactional.id`: makes the producer transactional (see [`crate::Producer`]'s
    /// transaction methods); needs idempotence (acks=all). Default none.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms` (default 60 s): the coordinator aborts a transaction open longer.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            enable_idempotence: None,
            batch_size: 16384,
            linger: Duration::ZERO,
            compression: Compression::None,
            max_in_flight: 5,
            max_request_size: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            max_block: Duration::from_secs(60),
            partitioner_seed: None,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    /// Whether the producer is idempotent with these settings.
    pub fn idempotent(&self) -> bool {
        self.enable_idempotence.unwrap_or(self.acks == Acks::All)
    }

    /// Checks the values and their combinations (as the Java producer does).
    pub fn validate(&self) -> Result<()> {
        if let Some(id) = &self.transactional_id {
            if id.is_empty() {
                return Err(Error::Config(
                    "the transactional id must not be empty".into(),
                ));
            }
            if !self.idempotent() {
                return Err(Error::Config(
                    "a transactional producer is idempotent: it needs acks=all and idempotence on"
                        .into(),
                ));
            }
            let ms = self.transaction_timeout.as_millis();
            if ms == 0 || ms > i32::MAX as u128 {
                return Err(Error::Config(
                    "the transaction timeout must be between 1 ms and i32::MAX ms".into(),
                ));
            }
        }
        if self.enable_idempotence == Some(true) && self.acks != Acks::All {
            return Err(Error::Config("idempotence requires acks=all".into()));
        }
        if self.idempotent() && !(1..=5).contains(&self.max_in_flight) {
            return Err(Error::Config(
                "idempotence allows 1 to 5 requests in flight".into(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(Error::Config("max in flight must be at least 1".into()));
        }
        if self.batch_size == 0 || self.max_request_size < 1024 {
            return Err(Error::Config(
                "batch size must be positive, max request size >= 1 KiB".into(),
            ));
        }
        if self.buffer_memory < self.max_request_size {
            return Err(Error::Config(
                "buffer memory must be at least the max request size".into(),
            ));
        }
        if self.delivery_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(Error::Config("timeouts must be positive".into()));
        }
        i32::try_from(self.request_timeout.as_millis())
            .map_err(|_| Error::Config("request timeout too large".into()))?;
        Ok(())
    }
}

/// `auto.offset.reset`: where to start when there is no valid position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end (default).
    #[default]
    Latest,
    /// Fail with [`Error::OffsetOutOfRange`].
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `group.id` for committed offsets (simple consumer commits; no group membership yet).
    pub group_id: Option<String>,
    /// `auto.offset.reset` (default latest).
    pub auto_offset_reset: OffsetReset,
    /// `fetch.max.wait.ms` (default 500 ms).
    pub fetch_max_wait: Duration,
    /// `fetch.min.bytes` (default 1).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes` (default 50 MiB).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes` (default 1 MiB).
    pub max_partition_fetch_bytes: i32,
    /// `isolation.level`: read_committed when true (default read_uncommitted).
    pub read_committed: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            read_committed: false,
        }
    }
}

impl ConsumerConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.fetch_max_bytes <= 0 || self.max_partition_fetch_bytes <= 0 {
            return Err(Error::Config("fetch sizes must be positive".into()));
        }
        i32::try_from(self.fetch_max_wait.as_millis())
            .map_err(|_| Error::Config("fetch max wait too large".into()))?;
        if self.group_id.as_deref() == Some("") {
            return Err(Error::Config("group id must not be empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotence_follows_acks_unless_forced() {
        let mut c = ProducerConfig::default();
        assert!(c.idempotent() && c.validate().is_ok());
        c.acks = Acks::Leader;
        assert!(!c.idempotent() && c.validate().is_ok());
        c.enable_idempotence = Some(true);
        assert!(c.validate().is_err());
        c.acks = Acks::All;
        c.max_in_flight = 6;
        assert!(c.validate().is_err());
        assert_eq!(Acks::parse("all").unwrap().as_i16(), -1);
        assert!(Acks::parse("2").is_err());
        assert!(ConsumerConfig::default().validate().is_ok());
    }

    #[test]
    fn a_transactional_producer_must_be_idempotent() {
        let mut c = ProducerConfig {
            transactional_id: Some("t".into()),
            ..ProducerConfig::default()
        };
        assert!(c.validate().is_ok());
        c.acks = Acks::Leader;
        assert!(c.validate().is_err());
        c.acks = Acks::All;
        c.enable_idempotence = Some(false);
        assert!(c.validate().is_err());
        c.enable_idempotence = None;
        c.transactional_id = Some(String::new());
        assert!(c.validate().is_err());
        c.transactional_id = Some("t".into());
        c.transaction_timeout = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
