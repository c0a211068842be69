//! SHA-256 checksums as OSTree writes them: 64 lowercase hex digits in object paths, and
//! "modified base64" (43 characters, `/` written as `_`) in static delta paths.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::alphabet::Alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The standard base64 alphabet with `_` in place of `/`, so that a checksum is one path segment.
const MODIFIED_BASE64: GeneralPurpose = GeneralPurpose::new(
    &match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_") {
        Ok(alphabet) => alphabet,
        Err(_) => panic!("the modified base64 alphabet is valid"),
    },
    // No padding, and the unused low bits of the last character must be zero, so that every
    // checksum has exactly one spelling and so exactly one path.
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// A SHA-256 object checksum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum([u8; 32]);

/// A string or byte array that is not a checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("{0:?} is not 64 lowercase hex digits")]
    Hex(String),
    #[error("{0:?} is not a 43-character modified base64 checksum")]
    ModifiedBase64(String),
    #[error("checksum has {0} bytes, expected 32")]
    Length(usize),
}

impl Checksum {
    pub const fn from_bytes(bytes: [u8; 32]) -> Checksum {
        Checksum(bytes)
    }

    /// The binary form GVariant objects carry (`ay` of length 32).
    pub fn from_slice(bytes: &[u8]) -> Result<Checksum, ChecksumError> {
        <[u8; 32]>::try_from(bytes)
            .map(Checksum)
            .map_err(|_| ChecksumError::Length(bytes.len()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the 64-digit lowercase hex form. Upper case is refused: OSTree never writes it, and
    /// accepting it would give one object two names.
    pub fn from_hex(s: &str) -> Result<Checksum, ChecksumError> {
        Checksum::from_hex_bytes(s.as_bytes()).ok_or_else(|| ChecksumError::Hex(s.to_owned()))
    }

    /// 64 lowercase hex digits, in one pass (every request path of an object is parsed so).
    pub(crate) fn from_hex_bytes(hex: &[u8]) -> Option<Checksum> {
        fn digit(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                _ => None,
            }
        }
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Checksum(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 43-character modified base64 form used under `deltas/` and `delta-indexes/`.
    pub fn from_modified_base64(s: &str) -> Result<Checksum, ChecksumError> {
        let err = || ChecksumError::ModifiedBase64(s.to_owned());
        if s.len() != 43 {
            return Err(err());
        }
        let mut bytes = [0u8; 32];
        match MODIFIED_BASE64.decode_slice(s, &mut bytes) {
            Ok(32) => Ok(Checksum(bytes)),
            _ => Err(err()),
        }
    }

    pub fn to_modified_base64(&self) -> String {
        MODIFIED_BASE64.encode(self.0)
    }
}

impl FromStr for Checksum {
    type Err = ChecksumError;

    fn from_str(s: &str) -> Result<Checksum, ChecksumError> {
        Checksum::from_hex(s)
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Encoding 32 bytes into 64 hex digits cannot fail.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "f2003bbeb2eb40f7bd6b86c01842c3faa12b4f100bbfd27910ec92cd83e2a9b8";

    #[test]
    fn hex_round_trip() {
        let c = Checksum::from_hex(HEX).unwrap();
        assert_eq!(c.to_string(), HEX);
        assert_eq!(c.to_hex(), HEX);
    }

    #[test]
    fn modified_base64_matches_ostree() {
        // Pairs as the real `ostree static-delta generate` named the delta directories.
        let cases = [
            (
                "f2003bbeb2eb40f7bd6b86c01842c3faa12b4f100bbfd27910ec92cd83e2a9b8",
                "8gA7vrLrQPe9a4bAGELD+qErTxALv9J5EOySzYPiqbg",
            ),
            (
                "4efc12fb1aba5fe0951834f83d9cc6f96f8be09a7a6f9ff78bc67af527c24b84",
                "TvwS+xq6X+CVGDT4PZzG+W+L4Jp6b5_3i8Z69SfCS4Q",
            ),
        ];
        for (hex, b64) in cases {
            let c = Checksum::from_hex(hex).unwrap();
            assert_eq!(c.to_modified_base64(), b64);
            assert_eq!(Checksum::from_modified_base64(b64).unwrap(), c);
        }
    }

    #[test]
    fn refuses_other_spellings() {
        let bad_hex = [
            "",
            &HEX[..63],
            &HEX.to_uppercase(),
            &format!("{HEX}0"),
            &HEX.replace('f', "g"),
        ];
        for s in bad_hex {
            assert_eq!(
                Checksum::from_hex(s),
                Err(ChecksumError::Hex(s.to_owned())),
                "{s}"
            );
        }
        let bad_b64 = [
            "8gA7vrLrQPe9a4bAGELD+qErTxALv9J5EOySzYPiqbg=",
            "8gA7vrLrQPe9a4bAGELD+qErTxALv9J5EOySzYPiqb",
            "8gA7vrLrQPe9a4bAGELD/qErTxALv9J5EOySzYPiqbg",
            // Same bytes, but the last character's unused bits are not zero.
            "8gA7vrLrQPe9a4bAGELD+qErTxALv9J5EOySzYPiqbh",
            "8gA7vrLrQPe9a4bAGELD+qErTxALv9J5EOySzYPiq.g",
        ];
        for s in bad_b64 {
            assert!(Checksum::from_modified_base64(s).is_err(), "{s}");
        }
        assert_eq!(
            Checksum::from_slice(&[0; 31]),
            Err(ChecksumError::Length(31))
        );
    }
}
