//! Pre-generated record values and keys: random bytes made once, handed out as slices, so a
//! record costs nothing to make and compresses no better than real random data.
//!
//! Slices never overlap within a pool of at least 4 MiB, so no batch (at most 1 MiB per request
//! by default) holds the same bytes twice for a compressor to find.
//!
//! The random bytes are made once per (size, seed) in a process and kept for its lifetime
//! (`'static`), so handing out a payload does not even touch a reference count.

use std::sync::Mutex;

use bytes::Bytes;

use crate::cluster::lock;

/// A random buffer made for a (payload size, seed).
type Made = ((usize, u64), &'static [u8]);

/// Random buffers made so far.
static POOLS: Mutex<Vec<Made>> = Mutex::new(Vec::new());

/// Smallest pool.
const MIN_POOL_BYTES: usize = 4 * 1024 * 1024;

/// A ring of `size`-byte slices of one random buffer.
#[derive(Debug, Clone)]
pub struct PayloadPool {
    data: Bytes,
    size: usize,
    slots: usize,
    next: usize,
}

impl PayloadPool {
    /// A pool of `size`-byte payloads from a generator seeded with `seed`.
    pub fn new(size: usize, seed: u64) -> PayloadPool {
        let slots = if size == 0 {
            1
        } else {
            MIN_POOL_BYTES.div_ceil(size).max(64)
        };
        let mut pools = lock(&POOLS);
        let data = match pools.iter().find(|(key, _)| *key == (size, seed)) {
            Some((_, data)) => *data,
            None => {
                let data: &'static [u8] = Vec::leak(random_bytes(size * slots, seed));
                pools.push(((size, seed), data));
                data
            }
        };
        PayloadPool {
            data: Bytes::from_static(data),
            size,
            slots,
            next: 0,
        }
    }

    /// The same payloads, handed out from another starting slot (one pool per producer).
    pub fn starting_at(&self, slot: usize) -> PayloadPool {
        PayloadPool {
            next: slot % self.slots,
            ..self.clone()
        }
    }

    /// Bytes of each payload.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The next payload (a slice of the pool: no copy, no allocation).
    pub fn next_payload(&mut self) -> Bytes {
        let at = self.next * self.size;
        self.next = (self.next + 1) % self.slots;
        self.data.slice(at..at + self.size)
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64*: fast, and its output looks random to every codec Kafka has.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_size_and_differ() {
        let mut pool = PayloadPool::new(100, 7);
        let a = pool.next_payload();
        let b = pool.next_payload();
        assert_eq!((a.len(), b.len()), (100, 100));
        assert_ne!(a, b);
        let mut again = PayloadPool::new(100, 7);
        assert_eq!(again.next_payload(), a, "deterministic per seed");
        let mut other = pool.starting_at(1);
        assert_eq!(other.next_payload(), b);
        let mut empty = PayloadPool::new(0, 1);
        assert!(empty.next_payload().is_empty());
    }

    #[test]
    fn payloads_do_not_compress() {
        use kafka_protocol::compression::{Compressor, Lz4};
        let mut pool = PayloadPool::new(100, 3);
        let mut raw = bytes::BytesMut::new();
        for _ in 0..1000 {
            raw.extend_from_slice(&pool.next_payload());
        }
        let mut out = bytes::BytesMut::new();
        Lz4::compress(&mut out, |tmp: &mut bytes::BytesMut| {
            tmp.extend_from_slice(&raw);
            Ok(())
        })
        .unwrap();
        assert!(out.len() >= raw.len(), "{} < {}", out.len(), raw.len());
    }
}
