//! Byte encodings of everything the metadata log stores or sends: a format byte, then bincode 2
//! (serde, standard config). Decoding never panics: bad bytes are a [`CodecError`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metadata::MetadataImage;

/// Format version in front of every encoded value; bump when an encoding changes.
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
        Some((&FORMAT, body)) => {
            let (value, read) = bincode::serde::decode_from_slice(body, config()).map_err(|e| {
                CodecError::Corrupt {
                    what,
                    reason: e.to_string(),
                }
            })?;
            if read != body.len() {
                return Err(CodecError::Corrupt {
                    what,
                    reason: format!("{} trailing bytes", body.len() - read),
                });
            }
            Ok(value)
        }
        Some((&other, _)) => Err(CodecError::UnknownFormat(other)),
    }
}

/// Encodes a metadata image (the body of a snapshot).
pub(crate) fn encode_image(image: &MetadataImage) -> Result<Vec<u8>, CodecError> {
    encode("metadata image", image)
}

/// Decodes a metadata image and rebuilds its derived indexes.
pub(crate) fn decode_image(bytes: &[u8]) -> Result<MetadataImage, CodecError> {
    let mut image: MetadataImage = decode("metadata image", bytes)?;
    image.rebuild_indexes();
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode_image(&[]).unwrap_err(), CodecError::Empty);
        assert_eq!(
            decode_image(&[9, 1, 2]).unwrap_err(),
            CodecError::UnknownFormat(9)
        );
        assert!(matches!(
            decode_image(&[FORMAT, 0xff, 0xff, 0xff]),
            Err(CodecError::Corrupt { .. })
        ));
        let mut image = encode_image(&MetadataImage::default()).unwrap();
        image.push(0);
        assert!(matches!(
            decode_image(&image),
            Err(CodecError::Corrupt { .. })
        ));
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
