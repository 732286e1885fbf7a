//! Kafka's default partitioner: murmur2 of the key, sticky partitions for null keys (KIP-480).

/// Kafka's `Utils.murmur2` (a 32-bit MurmurHash2 with seed `0x9747b28c`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    // Java computes `seed ^ length` on an int: the length wraps the same way.
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = chunk
            .iter()
            .rev()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Kafka's default partitioner picks for `key` among `num_partitions`.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

/// Sticky partition choice for records without key or explicit partition (KIP-480).
///
/// A topic sticks to one partition until the batch there fills up; then the producer calls
/// [`StickyPartitions::next`] and a different partition (random, among those with a leader) is
/// chosen. The producer keeps each topic's current choice next to its cached partition count;
/// this holds the random source. Deterministic given its seed.
#[derive(Debug, Clone)]
pub struct StickyPartitions {
    rng: u64,
}

impl StickyPartitions {
    /// A new chooser; `seed` makes the random choices reproducible.
    pub fn new(seed: u64) -> Self {
        StickyPartitions { rng: seed | 1 }
    }

    /// A partition other than `previous` (unless it is the only one), among `available` (or
    /// all `num_partitions` when none is known to have a leader).
    pub fn next(&mut self, previous: Option<i32>, available: &[i32], num_partitions: i32) -> i32 {
        let all = 0..num_partitions.max(1);
        let candidates = if available.is_empty() {
            all.len()
        } else {
            available.len()
        };
        let candidate = |i: usize| {
            if available.is_empty() {
                i32::try_from(i).unwrap_or(0)
            } else {
                available.get(i).copied().unwrap_or(0)
            }
        };
        let others = (0..candidates)
            .filter(|&i| Some(candidate(i)) != previous)
            .count();
        if others == 0 {
            return candidate(0);
        }
        let pick = self.random() as usize % others;
        (0..candidates)
            .map(candidate)
            .filter(|&p| Some(p) != previous)
            .nth(pick)
            .unwrap_or(0)
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2` (outputs of the Java implementation).
    #[test]
    fn murmur2_matches_java() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn partitions_like_the_java_default_partitioner() {
        // toPositive(-973932308) % 3 = 1173551340 % 3
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn sticky_moves_to_another_available_partition() {
        let mut s = StickyPartitions::new(7);
        let first = s.next(None, &[0, 1, 2, 3], 4);
        let second = s.next(Some(first), &[0, 1, 2, 3], 4);
        assert_ne!(first, second);
        // Only one available partition: it is chosen even if it was the previous one.
        assert_eq!(s.next(Some(2), &[2], 4), 2);
        // No leader known anywhere: any partition.
        assert!((0..4).contains(&s.next(None, &[], 4)));
        // Spreads over the available partitions.
        let mut seen = std::collections::HashSet::new();
        let mut prev = None;
        for _ in 0..100 {
            let p = s.next(prev, &[1, 3, 5], 6);
            assert_ne!(Some(p), prev);
            seen.insert(p);
            prev = Some(p);
        }
        assert_eq!(seen.len(), 3);
    }
}
