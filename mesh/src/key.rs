//! The cluster key: 32 random bytes every node (and every client) of one mesh shares. Without it a
//! process cannot complete a connection to the mesh (see [`crate::gate`]).
//!
//! The file format is libp2p's private-network key file (`swarm.key`, as go-libp2p and IPFS write
//! it): three lines, `/key/swarm/psk/1.0.0/`, `/base16/` and 64 hex digits. Files are written
//! with mode 0600 and never overwritten.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use libp2p::pnet::PreSharedKey;

use crate::MeshError;

/// The first line of a key file.
const KEY_TYPE: &str = "/key/swarm/psk/1.0.0/";
/// The second line: the encoding of the third.
const ENCODING: &str = "/base16/";
/// Bytes in a key.
const KEY_BYTES: usize = 32;

/// A cluster key. Its `Debug` shows the fingerprint, never the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClusterKey(PreSharedKey);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey(fingerprint {})", self.fingerprint())
    }
}

impl ClusterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Self(PreSharedKey::new(bytes))
    }

    /// A new random key (from the operating system's random source).
    pub fn generate() -> Result<Self, MeshError> {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| MeshError::Key(format!("no randomness from the OS: {e}")))?;
        Ok(Self::from_bytes(bytes))
    }

    /// A short, safe-to-log digest of the key (go-libp2p's fingerprint): equal fingerprints mean
    /// equal keys, and it reveals nothing usable about the key.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint().to_string()
    }

    /// The libp2p pre-shared key.
    pub(crate) fn psk(&self) -> PreSharedKey {
        self.0
    }

    /// Parses the text of a key file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim);
        if lines.next() != Some(KEY_TYPE) {
            return Err(format!("the first line must be {KEY_TYPE}"));
        }
        if lines.next() != Some(ENCODING) {
            return Err(format!(
                "the second line must be {ENCODING} (the only encoding supported)"
            ));
        }
        let hex = lines.next().unwrap_or_default();
        if hex.len() != 2 * KEY_BYTES || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "the third line must be {} hex digits",
                2 * KEY_BYTES
            ));
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let digits = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            *byte = u8::from_str_radix(digits, 16).map_err(|e| e.to_string())?;
        }
        Ok(Self::from_bytes(bytes))
    }

    /// The key file's text.
    pub fn to_file_text(&self) -> String {
        // PreSharedKey's Display is the key file format.
        self.0.to_string()
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, MeshError> {
        let err = |reason: String| MeshError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        let text = fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Writes a new random key to `path` (mode 0600); refuses to overwrite an existing file.
    pub fn generate_file(path: &Path) -> Result<Self, MeshError> {
        let key = Self::generate()?;
        write_new_private(path, key.to_file_text().as_bytes()).map_err(|e| MeshError::KeyFile {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(key)
    }
}

/// Creates `path` (which must not exist) readable by its owner only, with `bytes`, synced.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let key = ClusterKey::generate_file(&path).unwrap();
        assert_eq!(ClusterKey::load(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = ClusterKey::generate_file(&path).unwrap_err().to_string();
        assert!(err.contains("cluster.key"), "{err}");
        assert_ne!(ClusterKey::generate().unwrap(), key);
    }

    #[test]
    fn the_format_is_libp2ps_swarm_key() {
        let text = "/key/swarm/psk/1.0.0/\n/base16/\n\
                    6189c5cf0b87fb800c1a9feeda73c6ab5e998db48fb9e6a978575c770ceef683\n";
        let key = ClusterKey::parse(text).unwrap();
        assert_eq!(key.to_file_text(), text);
        // go-libp2p's fingerprint of this key.
        assert_eq!(key.fingerprint(), "45fc986bbc9388a11d939df26f730f0c");
        assert!(!format!("{key:?}").contains("6189c5cf"));
    }

    #[test]
    fn bad_files_are_refused_without_panicking() {
        for bad in [
            "",
            "/key/swarm/psk/1.0.0/\n/base64/\nabc",
            "/key/swarm/psk/1.0.0/\n/base16/\nabc",
            "/key/swarm/psk/1.0.0/\n/base16/\n6189c5cf0b87fb800c1a9feeda73c6ab5e998db48fb9e6a978575c770ceef6zz",
            // 64 bytes of text, not 64 characters.
            "/key/swarm/psk/1.0.0/\n/base16/\n\u{e9}\u{e9}89c5cf0b87fb800c1a9feeda73c6ab5e998db48fb9e6a978575c770ceef6",
        ] {
            assert!(ClusterKey::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
