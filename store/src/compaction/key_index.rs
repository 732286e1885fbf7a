//! The key index: for each key of a compacted partition, its latest record (and, for the
//! windowed strategies, its latest record per time window), as far as cleanings have read the
//! log. Keys are 128-bit SipHash-1-3 hashes under a secret the store generated, so neither a
//! collision by chance (2^-64 per pair at 2^32 keys) nor one crafted by a producer who cannot
//! see the secret makes the cleaner drop a live key's record (a 64-bit hash would not be
//! enough, and an unkeyed one could be attacked).
//!
//! A cleaning first merges the dirty part of the log into the index: entries of the round are
//! buffered in memory (`cleaner_buffer_keys` of them at most) and written out, each kept only
//! if newer than what the index holds, in batches committed with `PersistMode::Buffer`. Entries
//! only ever point at records that exist: a truncation or a reset gives the partition a new
//! generation (see `writer/state.rs`), which makes every older entry invisible.

use crate::codec::KeyEntry;
use crate::error::Result;
use crate::keys::{self, KEY_INDEX_KEY_LEN, LATEST_SLOT};
use crate::shared::{Engine, SMALL_MEMTABLE_BYTES};
use crate::types::TopicPartition;
use fjall::PersistMode;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::collections::HashMap;
use std::hash::Hasher;

/// Entries per key index write batch.
const WRITE_CHUNK: usize = 8_192;

/// Hashes record keys under the store's secret.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHasher {
    keys: [u64; 2],
}

impl KeyHasher {
    pub(crate) fn new(keys: [u64; 2]) -> Self {
        KeyHasher { keys }
    }

    pub(crate) fn hash(&self, key: &[u8]) -> [u8; 16] {
        let mut h = SipHasher13::new_with_keys(self.keys[0], self.keys[1]);
        h.write(key);
        h.finish128().as_bytes()
    }
}

/// A secret for a new store: 128 bits from the standard library's randomly keyed hasher (the
/// OS seeds it), so nothing outside the process can predict it.
pub(crate) fn new_secret() -> [u64; 2] {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    [state.hash_one((nanos, 1u8)), state.hash_one((nanos, 2u8))]
}

/// Hash and slot: what identifies an entry within one partition and generation.
pub(crate) type Slot = ([u8; 16], u64);

/// One cleaning's view of a partition's key index.
pub(crate) struct KeyIndex<'a> {
    engine: &'a Engine,
    tp: TopicPartition,
    generation: u32,
    /// Entries observed this round (newest wins), then, after `flush`, what the index holds.
    buffer: HashMap<Slot, KeyEntry>,
    limit: usize,
    /// Entries written to fjall by this round.
    pub written: u64,
}

impl<'a> KeyIndex<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        tp: TopicPartition,
        generation: u32,
        limit: usize,
    ) -> Self {
        KeyIndex {
            engine,
            tp,
            generation,
            buffer: HashMap::new(),
            limit,
            written: 0,
        }
    }

    pub(crate) fn key(&self, slot: &Slot) -> [u8; KEY_INDEX_KEY_LEN] {
        keys::key_index_key(self.tp, self.generation, &slot.0, slot.1)
    }

    /// Records a dirty record (called in offset order, so the last call for a slot wins).
    pub(crate) fn observe(&mut self, slot: Slot, entry: KeyEntry) -> Result<()> {
        if self.buffer.len() >= self.limit && !self.buffer.contains_key(&slot) {
            self.flush()?;
            self.buffer.clear();
        }
        self.buffer.insert(slot, entry);
        Ok(())
    }

    /// Writes the buffered entries that are newer than the index's, and leaves the buffer
    /// holding what the index now says for each of them.
    pub(crate) fn flush(&mut self) -> Result<()> {
        let ks = &self.engine.keys;
        let mut wb = self.engine.db.batch();
        let mut staged = 0;
        for (slot, entry) in self.buffer.iter_mut() {
            let key = keys::key_index_key(self.tp, self.generation, &slot.0, slot.1);
            if let Some(v) = ks.get(key)? {
                let stored = KeyEntry::decode(&v)?;
                if stored.offset >= entry.offset {
                    *entry = stored;
                    continue;
                }
            }
            wb.insert(ks, key, entry.encode());
            staged += 1;
            if staged == WRITE_CHUNK {
                let full = std::mem::replace(&mut wb, self.engine.db.batch());
                full.durability(Some(PersistMode::Buffer)).commit()?;
                self.written += staged as u64;
                staged = 0;
            }
        }
        if staged > 0 {
            wb.durability(Some(PersistMode::Buffer)).commit()?;
            self.written += staged as u64;
        }
        // fjall does not rotate memtables itself (shared::FJALL_MEMTABLE_LIMIT).
        Engine::rotate_full(std::slice::from_ref(ks), SMALL_MEMTABLE_BYTES);
        Ok(())
    }

    /// What the index says about a slot (the buffer first).
    pub(crate) fn get(&self, slot: &Slot) -> Result<Option<KeyEntry>> {
        if let Some(e) = self.buffer.get(slot) {
            return Ok(Some(*e));
        }
        match self.engine.keys.get(self.key(slot))? {
            Some(v) => Ok(Some(KeyEntry::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Every stored key of one key hash (its latest slot and its window slots).
    pub(crate) fn keys_of(&self, hash: &[u8; 16]) -> Result<Vec<Vec<u8>>> {
        let from = keys::key_index_key(self.tp, self.generation, hash, 0);
        let to = keys::key_index_key(self.tp, self.generation, hash, LATEST_SLOT);
        let mut out = Vec::new();
        for kv in self.engine.keys.range(from..=to) {
            out.push(kv.key()?.to_vec());
        }
        Ok(out)
    }
}
