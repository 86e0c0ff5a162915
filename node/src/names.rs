//! Mutable names: a name is an ed25519 public key; its value, a content id, is published as a
//! signed record on the peers closest to the key's hash. Only the holder of the secret key can
//! publish under a name, and readers take the highest valid sequence they are given.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_dht::{Key, SignedRecord, Timestamp};

use crate::error::{NameError, TtlError};
use crate::{ContentId, KeyName, Node};

/// The prefix of a name's text form; the digit is the format version.
pub const NAME_PREFIX: &str = "cairnname1";

/// How long a published name lives unless published again: 24 hours.
pub const DEFAULT_NAME_TTL: Duration = Duration::from_secs(24 * 3600);

/// The longest a published name lives unless renewed: 7 days, the longest lifetime peers accept
/// by default ([`cairn_dht::StoreLimits::max_record_ttl`]).
pub const MAX_NAME_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A name: `cairnname1` followed by the 64 hex digits of an ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name([u8; 32]);

impl Name {
    /// The name owned by `public_key`.
    pub fn from_public_key(public_key: [u8; 32]) -> Self {
        Self(public_key)
    }

    /// The ed25519 public key its records are signed with.
    pub fn public_key(&self) -> [u8; 32] {
        self.0
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
                crate::printable(&s.chars().take(80).collect::<String>())
            ))
        };
        let digits = s.trim().strip_prefix(NAME_PREFIX).ok_or_else(bad)?;
        let hash = blake3::Hash::from_hex(digits).map_err(|_| bad())?;
        Ok(Self(*hash.as_bytes()))
    }
}

impl Node {
    /// This node's own name: the name of its key `self` (see [`crate::KeyName`]), kept in the
    /// data directory.
    pub fn name(&self) -> Name {
        Name(SignedRecord::public_key_of(&self.inner.keys.self_secret()))
    }

    /// Points this node's own name (its key `self`) at `id` for `ttl` (1 s to
    /// [`MAX_NAME_TTL`]); see [`Node::publish_name_under`].
    pub async fn publish_name(
        &self,
        id: ContentId,
        ttl: Duration,
    ) -> Result<(Name, usize), NameError> {
        self.publish_name_under(&KeyName::self_key(), id, ttl).await
    }

    /// Points the name of key `key` at `id` for `ttl` (1 s to [`MAX_NAME_TTL`]). Returns the
    /// name and how many peers stored the record. The sequence is the publishing time in
    /// microseconds, so a later publish always replaces an earlier one. The node renews the
    /// record at half its life for as long as it runs and holds the key, and publishes it again
    /// after a restart.
    pub async fn publish_name_under(
        &self,
        key: &KeyName,
        id: ContentId,
        ttl: Duration,
    ) -> Result<(Name, usize), NameError> {
        if ttl < Duration::from_secs(1) || ttl > MAX_NAME_TTL {
            return Err(TtlError::OutOfRange(format!("{} s", ttl.as_secs_f64())).into());
        }
        let secret = self.inner.keys.secret(key)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let sequence = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
        let expires = now
            .checked_add(ttl)
            .map(Timestamp::from_unix)
            .ok_or_else(|| TtlError::OutOfRange(format!("{} s", ttl.as_secs())))?;
        let record = SignedRecord::sign(&secret, id.to_string().into_bytes(), sequence, expires);
        let stored = self.put_record(record).await?;
        Ok((Name(SignedRecord::public_key_of(&secret)), stored))
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

/// Reads a name's lifetime: plain seconds (`3600`), or numbers each followed by a unit, `s`,
/// `m` (minutes), `h` or `d` (`90s`, `10m`, `24h`, `7d`, `1h30m`). It must be 1 s to
/// [`MAX_NAME_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration, TtlError> {
    let shown = || crate::printable(&text.chars().take(40).collect::<String>());
    let t = text.trim();
    let malformed = || TtlError::Malformed(shown());
    if t.is_empty() {
        return Err(malformed());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(malformed());
        }
        // Too many digits for any lifetime: out of range rather than malformed.
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| TtlError::OutOfRange(shown()))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "" if total == 0 && digits == t.len() => 1,
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(malformed()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| TtlError::OutOfRange(shown()))?;
    }
    let ttl = Duration::from_secs(total);
    if ttl < Duration::from_secs(1) || ttl > MAX_NAME_TTL {
        return Err(TtlError::OutOfRange(shown()));
    }
    Ok(ttl)
}

/// `record`, a record of one of this node's names (signed with `secret`), signed again at `now` for the lifetime it was
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

    #[test]
    fn ttls_read_as_people_write_them() {
        let secs = |t: &str| parse_ttl(t).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("24h"), Ok(86_400));
        assert_eq!(secs("7d"), Ok(604_800));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs(" 3600 "), Ok(3600), "plain seconds, as before");
        assert_eq!(secs("1"), Ok(1));
        assert_eq!(secs("604800"), Ok(604_800));
        for malformed in [
            "", " ", "h", "10x", "ten", "1.5h", "-5s", "10 m", "5ss", "1h30", "s10", "1H", "10min",
        ] {
            assert!(
                matches!(parse_ttl(malformed), Err(TtlError::Malformed(_))),
                "{malformed:?}: {:?}",
                parse_ttl(malformed)
            );
        }
        for out in [
            "0",
            "0s",
            "7d1s",
            "8d",
            "604801",
            "99999999999999999999999",
            "300000000000000000d",
        ] {
            assert!(
                matches!(parse_ttl(out), Err(TtlError::OutOfRange(_))),
                "{out:?}: {:?}",
                parse_ttl(out)
            );
        }
        let message = parse_ttl("8d").unwrap_err().to_string();
        assert!(
            message.contains("1s to 7d") && message.contains("'8d'"),
            "{message}"
        );
        let message = parse_ttl("\u{1b}[31m").unwrap_err().to_string();
        assert!(
            !message.contains('\u{1b}'),
            "control characters are escaped: {message}"
        );
    }

    #[test]
    fn the_longest_ttl_is_what_peers_accept() {
        assert_eq!(
            MAX_NAME_TTL,
            cairn_dht::StoreLimits::default().max_record_ttl
        );
    }
}
