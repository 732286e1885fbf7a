//! The `consume --format` output formatter: placeholders expanded into raw bytes.

use std::io::Write;

use rafka_client::ConsumerRecord;

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Key,
    Value,
    Partition,
    Offset,
    Timestamp,
    Topic,
    KeyLength,
    ValueLength,
    Headers,
}

/// A parsed `--format` string.
///
/// Placeholders: `%k` key, `%v` value, `%p` partition, `%o` offset, `%t` timestamp (ms), `%T`
/// topic, `%K` key length, `%S` value length, `%h` headers (`k=v,k=v`), `%%` a percent sign.
/// Escapes: `\n`, `\t`, `\r`, `\0`, `\\`. Keys and values are written as raw bytes; null is
/// written as nothing (lengths print -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pieces: Vec<Piece>,
}

/// The default: the value verbatim, one record per line.
pub const DEFAULT_FORMAT: &str = "%v\\n";

impl Format {
    /// Parses a format string.
    pub fn parse(spec: &str) -> Result<Format, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = spec.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('t') => Piece::Timestamp,
                    Some('T') => Piece::Topic,
                    Some('K') => Piece::KeyLength,
                    Some('S') => Piece::ValueLength,
                    Some('h') => Piece::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    Some(other) => return Err(format!("unknown placeholder %{other}")),
                    None => return Err("format ends with a lone %".into()),
                },
                '\\' => {
                    let byte = match chars.next() {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('r') => b'\r',
                        Some('0') => 0,
                        Some('\\') => b'\\',
                        Some(other) => return Err(format!("unknown escape \\{other}")),
                        None => return Err("format ends with a lone \\".into()),
                    };
                    literal.push(byte);
                    continue;
                }
                c => {
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Format { pieces })
    }

    /// Writes one record.
    pub fn write(&self, out: &mut impl Write, r: &ConsumerRecord) -> std::io::Result<()> {
        let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(-1, |b| b.len() as i64);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.write_all(bytes)?,
                Piece::Key => out.write_all(r.key.as_deref().unwrap_or_default())?,
                Piece::Value => out.write_all(r.value.as_deref().unwrap_or_default())?,
                Piece::Partition => write!(out, "{}", r.partition)?,
                Piece::Offset => write!(out, "{}", r.offset)?,
                Piece::Timestamp => write!(out, "{}", r.timestamp)?,
                Piece::Topic => out.write_all(r.topic.as_bytes())?,
                Piece::KeyLength => write!(out, "{}", len(&r.key))?,
                Piece::ValueLength => write!(out, "{}", len(&r.value))?,
                Piece::Headers => {
                    for (i, (k, v)) in r.headers.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(k.as_bytes())?;
                        out.write_all(b"=")?;
                        out.write_all(v.as_deref().unwrap_or_default())?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: Arc::from("t"),
            partition: 2,
            offset: 41,
            timestamp: 1700,
            log_append_time: false,
            key: Some(Bytes::from_static(b"k\xff")),
            value: Some(Bytes::from_static(b"v\x00\xfe")),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
        }
    }

    fn render(spec: &str, r: &ConsumerRecord) -> Vec<u8> {
        let mut out = Vec::new();
        Format::parse(spec).unwrap().write(&mut out, r).unwrap();
        out
    }

    #[test]
    fn default_is_the_raw_value_and_a_newline() {
        assert_eq!(render(DEFAULT_FORMAT, &record()), b"v\x00\xfe\n");
    }

    #[test]
    fn placeholders_and_escapes() {
        let out = render("%T/%p@%o %t [%k] %K %S %h 100%%\\t\\\\é", &record());
        assert_eq!(
            out,
            b"t/2@41 1700 [k\xff] 2 3 a=1,b= 100%\t\\\xc3\xa9".to_vec()
        );
        let mut null = record();
        null.key = None;
        assert_eq!(render("%k|%K", &null), b"|-1");
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(Format::parse("%x").is_err());
        assert!(Format::parse("%").is_err());
        assert!(Format::parse("\\q").is_err());
    }
}
