//! A bounds check over a batch's (decompressed) records before `kafka-protocol` decodes them.
//!
//! The decoder pre-allocates by counts read from the bytes (`Vec::with_capacity(record_count)`,
//! `IndexMap::with_capacity(header_count)`). A CRC-valid batch written by a hostile producer could
//! claim two billion headers and make the allocation abort the process. This walk reads only the
//! length prefixes and counts, and refuses any count or length that the bytes cannot hold; the
//! decoding itself stays `kafka-protocol`'s.

/// Each header needs at least a key length and a value length (one byte each).
const MIN_HEADER_BYTES: usize = 2;

/// Checks that `count` records' lengths and header counts fit in `raw`.
pub fn check_records(raw: &[u8], count: usize) -> Result<(), String> {
    let mut at = 0usize;
    for i in 0..count {
        let len = length(raw, &mut at).ok_or_else(|| format!("record {i}: bad length"))?;
        let end = at.checked_add(len).filter(|&e| e <= raw.len());
        let end = end.ok_or_else(|| format!("record {i}: {len} bytes do not fit"))?;
        let record = raw.get(at..end).unwrap_or_default();
        check_record(record).map_err(|e| format!("record {i}: {e}"))?;
        at = end;
    }
    Ok(())
}

fn check_record(record: &[u8]) -> Result<(), &'static str> {
    let mut at = 1; // attributes
    varint(record, &mut at).ok_or("bad timestamp delta")?;
    varint(record, &mut at).ok_or("bad offset delta")?;
    skip_nullable(record, &mut at).ok_or("bad key length")?;
    skip_nullable(record, &mut at).ok_or("bad value length")?;
    let headers = varint(record, &mut at).ok_or("bad header count")?;
    let headers = usize::try_from(headers).map_err(|_| "negative header count")?;
    let room = record.len().saturating_sub(at);
    if headers.saturating_mul(MIN_HEADER_BYTES) > room {
        return Err("more headers than bytes");
    }
    Ok(())
}

/// A non-negative varint length.
fn length(buf: &[u8], at: &mut usize) -> Option<usize> {
    usize::try_from(varint(buf, at)?).ok()
}

/// Skips a varint-length-prefixed field (-1 = null).
fn skip_nullable(buf: &[u8], at: &mut usize) -> Option<()> {
    match varint(buf, at)? {
        -1 => Some(()),
        n => {
            let n = usize::try_from(n).ok()?;
            *at = at.checked_add(n).filter(|&e| e <= buf.len())?;
            Some(())
        }
    }
}

/// A zigzag varint (up to 10 bytes, as Kafka's varlong).
fn varint(buf: &[u8], at: &mut usize) -> Option<i64> {
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

    fn zigzag(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn record(headers: i64, body: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8]; // attributes
        zigzag(0, &mut r); // timestamp delta
        zigzag(0, &mut r); // offset delta
        zigzag(-1, &mut r); // null key
        zigzag(1, &mut r);
        r.push(b'v');
        zigzag(headers, &mut r);
        r.extend_from_slice(body);
        let mut out = Vec::new();
        zigzag(r.len() as i64, &mut out);
        out.extend(r);
        out
    }

    #[test]
    fn plausible_records_pass() {
        let mut raw = record(0, b"");
        raw.extend(record(1, &[2, b'h', 0xff - 0xfe]));
        assert!(check_records(&raw, 2).is_ok());
        assert!(check_records(&raw, 3).is_err(), "a third record is missing");
    }

    #[test]
    fn absurd_header_counts_are_refused() {
        let raw = record(i64::from(i32::MAX), b"");
        assert_eq!(
            check_records(&raw, 1),
            Err("record 0: more headers than bytes".into())
        );
        let raw = record(-5, b"");
        assert!(check_records(&raw, 1).is_err());
    }

    #[test]
    fn truncated_and_overlong_varints_are_refused() {
        assert!(check_records(&[0x80], 1).is_err());
        assert!(check_records(&[0xff; 12], 1).is_err());
        assert!(
            check_records(&[0x7e], 1).is_err(),
            "63 bytes announced, none there"
        );
    }
}
