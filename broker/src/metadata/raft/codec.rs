//! Byte encodings of everything the metadata log stores or sends: a format byte, then bincode 2
//! (serde, standard config). Decoding never panics: bad bytes are a [`CodecError`].
//!
//! Format 1 is all that nodes of feature level 0 know, and what every value but the snapshot
//! image still uses: what changes inside it is versioned inside (`MetadataCommand::Gated`). The
//! image has its own formats (`snapshot`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metadata::features::FeatureLevel;

/// Format version in front of every encoded value.
pub(crate) const FORMAT: u8 = 1;

/// Largest value decoded (a snapshot of a very large image fits; a forged length does not make
/// the decoder allocate beyond it).
const LIMIT: usize = 256 << 20;

/// Bytes that are not a value of the expected type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// No bytes at all.
    #[error("empty value")]
    Empty,
    /// Written by a format this build does not know.
    #[error("unknown format version {0}")]
    UnknownFormat(u8),
    /// Written at a cluster feature level above this build's.
    #[error(
        "{what} written at cluster feature level {level}, and this rafka-node supports levels up \
         to {supported}: a node cannot run below its cluster's finalized feature level (run a \
         release that supports level {level})"
    )]
    TooNew {
        /// What was being decoded.
        what: &'static str,
        /// Its level.
        level: FeatureLevel,
        /// The highest level this build supports.
        supported: FeatureLevel,
    },
    /// The bytes do not decode.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The value could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's complaint.
        reason: String,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// `FORMAT` then the bincode of `value`.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| {
        CodecError::Encode {
            what,
            reason: e.to_string(),
        }
    })?;
    Ok(out)
}

/// The inverse of [`encode`]. Trailing bytes are corruption too.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT, body)) => decode_body(what, body),
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

/// The bincode of `value`, without a format byte (for values nested in an encoded one).
pub(crate) fn encode_body<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode {
        what: "nested value",
        reason: e.to_string(),
    })
}

/// The inverse of [`encode_body`]. Trailing bytes are corruption too.
pub(crate) fn decode_body<T: DeserializeOwned>(
    what: &'static str,
    body: &[u8],
) -> Result<T, CodecError> {
    let (value, read) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Corrupt {
            what,
            reason: e.to_string(),
        })?;
    if read != body.len() {
        return Err(CodecError::Corrupt {
            what,
            reason: format!("{} trailing bytes", body.len() - read),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let decode = |bytes: &[u8]| decode::<(String, u64)>("pair", bytes);
        assert_eq!(decode(&[]).unwrap_err(), CodecError::Empty);
        assert_eq!(
            decode(&[9, 1, 2]).unwrap_err(),
            CodecError::UnknownFormat(9)
        );
        assert!(matches!(
            decode(&[FORMAT, 0xff, 0xff, 0xff]),
            Err(CodecError::Corrupt { .. })
        ));
        let mut pair = encode("pair", &("x".to_string(), 7u64)).unwrap();
        assert_eq!(decode(&pair).unwrap(), ("x".to_string(), 7));
        pair.push(0);
        assert!(matches!(decode(&pair), Err(CodecError::Corrupt { .. })));
    }

    #[test]
    fn a_forged_length_does_not_allocate_it() {
        // A string claiming u64::MAX bytes.
        let forged = [FORMAT, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<String>("string", &forged).is_err());
        let forged_vec = [FORMAT, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode::<Vec<String>>("strings", &forged_vec).is_err());
    }
}
