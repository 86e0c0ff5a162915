//! Mutable names: a name is an ed25519 public key; its value, a content id, is published as a
//! signed record on the peers closest to the key's hash. Only the holder of the secret key can
//! publish under a name, and readers take the highest valid sequence they are given.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_dht::{Key, SignedRecord, Timestamp};

use crate::error::NameError;
use crate::{ContentId, Node};

/// The prefix of a name's text form; the digit is the format version.
pub const NAME_PREFIX: &str = "cairnname1";

/// How long a published name lives unless published again: 24 hours.
pub const DEFAULT_NAME_TTL: Duration = Duration::from_secs(24 * 3600);

/// A name: `cairnname1` followed by the 64 hex digits of an ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name([u8; 32]);

impl Name {
    /// The name owned by `public_key`.
    pub fn from_public_key(public_key: [u8; 32]) -> Self {
        Self(public_key)
    }

    /// The DHT key its records are stored under.
    pub fn key(&self) -> Key {
        Key::for_record(&self.0)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{NAME_PREFIX}{}",
            blake3::Hash::from_bytes(self.0).to_hex()
        )
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            NameError::Malformed(format!(
                "'{}' is not a cairn name: expected '{NAME_PREFIX}' followed by 64 hex digits",
                s.chars().take(80).collect::<String>()
            ))
        };
        let digits = s.trim().strip_prefix(NAME_PREFIX).ok_or_else(bad)?;
        let hash = blake3::Hash::from_hex(digits).map_err(|_| bad())?;
        Ok(Self(*hash.as_bytes()))
    }
}

impl Node {
    /// This node's own name (its name key is kept in the data directory).
    pub fn name(&self) -> Name {
        Name(SignedRecord::public_key_of(&self.inner.name_secret))
    }

    /// Points this node's name at `id` for `ttl`. The sequence is the publishing time in
    /// microseconds, so a later publish always replaces an earlier one.
    pub async fn publish_name(
        &self,
        id: ContentId,
        ttl: Duration,
    ) -> Result<(Name, usize), NameError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let sequence = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
        let expires = now
            .checked_add(ttl)
            .map(Timestamp::from_unix)
            .ok_or_else(|| {
                NameError::Malformed(format!(
                    "a ttl of {} s is too long; peers keep names at most 7 days",
                    ttl.as_secs()
                ))
            })?;
        let record = SignedRecord::sign(
            &self.inner.name_secret,
            id.to_string().into_bytes(),
            sequence,
            expires,
        );
        let stored = self.put_record(record).await?;
        Ok((self.name(), stored))
    }

    /// The content id `name` points at now.
    pub async fn resolve_name(&self, name: Name) -> Result<ContentId, NameError> {
        let record = self
            .get_record(name.key())
            .await?
            .ok_or_else(|| NameError::NotFound(name.to_string()))?;
        let text =
            String::from_utf8(record.value).map_err(|_| NameError::NotFound(name.to_string()))?;
        text.parse()
            .map_err(|_| NameError::NotFound(name.to_string()))
    }
}

/// `record`, a record of this node's name, signed again at `now` for the lifetime it was
/// published with: its sequence is its signing time in microseconds (see
/// [`Node::publish_name`]), so the lifetime is its expiry less its sequence. A record whose
/// sequence is not such a time (the lifetime would be out of range) gets `fallback`.
pub(crate) fn resign(
    secret: &[u8; 32],
    record: &SignedRecord,
    now: Timestamp,
    fallback: Duration,
) -> SignedRecord {
    let max = cairn_dht::StoreLimits::default().max_record_ttl;
    let published =
        Duration::from_micros(record.expires.as_micros().saturating_sub(record.sequence));
    let ttl = if published >= Duration::from_secs(1) && published <= max {
        published
    } else {
        fallback
    };
    let sequence = now.as_micros().max(record.sequence.saturating_add(1));
    SignedRecord::sign(secret, record.value.clone(), sequence, now + ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let name = Name::from_public_key([7; 32]);
        assert_eq!(name.to_string().parse::<Name>().unwrap(), name);
        assert!("cairn1abc".parse::<Name>().is_err());
    }
}
