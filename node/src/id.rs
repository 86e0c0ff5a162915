//! Content ids and their text form.
//!
//! A content id is the BLAKE3 hash of a root manifest (see [`crate::manifest`]), so whoever holds
//! one can verify every byte it leads to. Its text form is `cairn1` (name and format version)
//! followed by the 64 lowercase hex digits of the hash: printable, copy-paste safe, and free of
//! characters a shell or URL would mangle.

use std::fmt;
use std::str::FromStr;

use cairn_dht::Key;
use serde::{Deserialize, Serialize};

/// The prefix of a content id's text form; the digit is the format version.
pub const CONTENT_ID_PREFIX: &str = "cairn1";

/// The id of a piece of content: a file, a directory, or raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentId(Key);

/// Why a string is not a content id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContentIdError {
    /// It does not start with the version prefix.
    #[error("not a cairn content id: it should start with '{CONTENT_ID_PREFIX}' (got '{0}')")]
    Prefix(String),
    /// The part after the prefix is not 64 hex digits.
    #[error(
        "malformed content id '{0}': expected '{CONTENT_ID_PREFIX}' followed by 64 hex digits; check it was copied whole"
    )]
    Digits(String),
}

impl ContentId {
    /// The id of the manifest whose hash is `key`.
    pub const fn from_key(key: Key) -> Self {
        Self(key)
    }

    /// The DHT key of the root manifest.
    pub const fn key(&self) -> Key {
        self.0
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CONTENT_ID_PREFIX}{:x}", self.0)
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = ContentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Echoed in errors on a terminal: control characters (escape sequences) are shown
        // escaped, never sent raw.
        let shown = crate::error::printable(&s.chars().take(80).collect::<String>());
        let digits = s
            .trim()
            .strip_prefix(CONTENT_ID_PREFIX)
            .ok_or_else(|| ContentIdError::Prefix(shown.clone()))?;
        let hash = blake3::Hash::from_hex(digits).map_err(|_| ContentIdError::Digits(shown))?;
        Ok(Self(Key::from_bytes(*hash.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_form_round_trips(bytes in any::<[u8; 32]>()) {
            let id = ContentId::from_key(Key::from_bytes(bytes));
            let text = id.to_string();
            prop_assert!(text.starts_with("cairn1"));
            prop_assert_eq!(text.len(), 70);
            prop_assert_eq!(text.parse::<ContentId>().unwrap(), id);
        }
    }

    #[test]
    fn malformed_ids_say_what_is_wrong() {
        assert!(matches!(
            "hello".parse::<ContentId>(),
            Err(ContentIdError::Prefix(_))
        ));
        let short = "cairn1abcd".parse::<ContentId>().unwrap_err();
        assert!(short.to_string().contains("64 hex digits"), "{short}");
        let escape = "cairn1\u{1b}[2J\u{7}".parse::<ContentId>().unwrap_err();
        assert!(
            !escape.to_string().chars().any(char::is_control),
            "{escape:?}"
        );
        assert!(escape.to_string().contains("\\u{1b}[2J"), "{escape}");
        let bad = format!("cairn1{}", "z".repeat(64));
        assert!(matches!(
            bad.parse::<ContentId>(),
            Err(ContentIdError::Digits(_))
        ));
    }
}
