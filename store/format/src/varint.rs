//! Kafka's zigzag varints (`varint` / `varlong`), written into a buffer and read back with
//! bounds checks (never panicking on short or overlong input).

use bytes::{BufMut, BytesMut};

/// Bytes of the longest varlong.
pub const MAX_VARLONG_BYTES: usize = 10;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Encoded length of `v` as a zigzag varint/varlong.
pub fn len(v: i64) -> usize {
    let bits = 64 - (zigzag(v) | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes `v` into `out` (at most 10 bytes); returns how many bytes were written.
pub fn write(out: &mut [u8; MAX_VARLONG_BYTES], v: i64) -> usize {
    let mut z = zigzag(v);
    let mut n = 0;
    for slot in out.iter_mut() {
        n += 1;
        if z < 0x80 {
            *slot = z as u8;
            break;
        }
        *slot = (z as u8) | 0x80;
        z >>= 7;
    }
    n
}

/// Appends `v` to `buf`.
pub fn put(buf: &mut BytesMut, v: i64) {
    let mut tmp = [0u8; MAX_VARLONG_BYTES];
    let n = write(&mut tmp, v);
    buf.put_slice(tmp.get(..n).unwrap_or_default());
}

/// Reads a varint at `*at`, advancing it. `None` on truncated or overlong (> 10 bytes) input.
pub fn read(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut raw = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        raw |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_lengths_agree() {
        let cases = [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ];
        for v in cases {
            let mut buf = BytesMut::new();
            put(&mut buf, v);
            assert_eq!(buf.len(), len(v), "{v}");
            let mut at = 0;
            assert_eq!(read(&buf, &mut at), Some(v));
            assert_eq!(at, buf.len());
        }
        // Kafka's examples: -1 is 0x01, 1 is 0x02, 300 is 0xd8 0x04.
        let mut buf = BytesMut::new();
        put(&mut buf, -1);
        put(&mut buf, 1);
        put(&mut buf, 300);
        assert_eq!(&buf[..], &[0x01, 0x02, 0xd8, 0x04]);
    }

    #[test]
    fn truncated_and_overlong_input_is_refused() {
        assert_eq!(read(&[0x80], &mut 0), None);
        assert_eq!(read(&[0xff; 11], &mut 0), None);
        assert_eq!(read(&[], &mut 0), None);
    }
}
