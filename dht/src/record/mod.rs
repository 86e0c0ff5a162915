//! Signed records (mutable names) and provider records, and the store that keeps them.
//!
//! A signed record's key is the hash of its publisher's public key, so only the holder of the
//! secret key can write under it. Every peer verifies the signature before storing, and a lower
//! sequence never replaces a higher one, so a network with liars can still only return what the
//! publisher wrote (or an older version of it, which readers outvote by asking several peers).

mod store;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

pub use store::{MemoryRecordStore, ProviderRecord, RecordStore, StoreError};

use crate::{Key, Timestamp};

/// Domain separation for record signatures.
const SIGNING_CONTEXT: &[u8] = b"cairn signed record v1";

/// A mutable name: a value signed by the holder of `public_key`, under [`Key::for_record`].
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct SignedRecord {
    /// The publisher's ed25519 public key; the record's name.
    #[serde(with = "serde_bytes")]
    pub public_key: [u8; 32],
    /// The value, usually a content id.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Version: a higher sequence replaces a lower one, never the other way round.
    pub sequence: u64,
    /// When the record stops being valid.
    pub expires: Timestamp,
    /// ed25519 signature over the other fields.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// Why a record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The public key is not a valid ed25519 point.
    #[error("record public key is not a valid ed25519 key")]
    BadPublicKey,
    /// The signature does not match the record.
    #[error("record signature does not verify; the record was altered or forged")]
    BadSignature,
    /// The record's expiry has passed.
    #[error("record expired; publish a new one with a later expiry")]
    Expired,
    /// The record claims to live longer than peers keep records.
    #[error("record expiry is too far in the future; peers keep records at most {max_secs} s")]
    TooLong {
        /// The longest lifetime accepted, in seconds.
        max_secs: u64,
    },
    /// The value is larger than peers accept.
    #[error("record value is {len} bytes; peers accept at most {max}")]
    TooLarge {
        /// The value's size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl RecordError {
    /// Whether the record was forged or altered (a key or signature that does not check), which
    /// no honest peer sends, as opposed to one that merely lapsed or exceeds this peer's limits.
    pub fn is_forgery(&self) -> bool {
        matches!(self, RecordError::BadPublicKey | RecordError::BadSignature)
    }
}

impl SignedRecord {
    /// Signs `value` as version `sequence` of the name owned by `secret_key`.
    pub fn sign(secret_key: &[u8; 32], value: Vec<u8>, sequence: u64, expires: Timestamp) -> Self {
        let signing = SigningKey::from_bytes(secret_key);
        let public_key = signing.verifying_key().to_bytes();
        let message = signed_message(&public_key, &value, sequence, expires);
        let signature = signing.sign(&message).to_bytes();
        Self {
            public_key,
            value,
            sequence,
            expires,
            signature,
        }
    }

    /// The public key that `secret_key` signs as: the name it publishes under.
    pub fn public_key_of(secret_key: &[u8; 32]) -> [u8; 32] {
        SigningKey::from_bytes(secret_key)
            .verifying_key()
            .to_bytes()
    }

    /// The key this record is stored under.
    pub fn key(&self) -> Key {
        Key::for_record(&self.public_key)
    }

    /// Checks the signature and that the record is live at `now`.
    pub fn verify(&self, now: Timestamp) -> Result<(), RecordError> {
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| RecordError::BadPublicKey)?;
        let message = signed_message(&self.public_key, &self.value, self.sequence, self.expires);
        let signature = Signature::from_bytes(&self.signature);
        // Strict: no small-order public key, no malleable signature (with the plain check, the
        // identity point as key and (identity, 0) as signature verify any message).
        key.verify_strict(&message, &signature)
            .map_err(|_| RecordError::BadSignature)?;
        if self.expires <= now {
            return Err(RecordError::Expired);
        }
        Ok(())
    }
}

fn signed_message(
    public_key: &[u8; 32],
    value: &[u8],
    sequence: u64,
    expires: Timestamp,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + 32 + 8 + 8 + 8 + value.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(public_key);
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(&expires.as_micros().to_be_bytes());
    m.extend_from_slice(&(value.len() as u64).to_be_bytes());
    m.extend_from_slice(value);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let now = Timestamp::from_micros(1_000);
        let r = SignedRecord::sign(
            &[1; 32],
            b"hello".to_vec(),
            3,
            now + std::time::Duration::from_secs(60),
        );
        r.verify(now).unwrap();
        let mut forged = r.clone();
        forged.value = b"evil".to_vec();
        assert_eq!(forged.verify(now), Err(RecordError::BadSignature));
        let mut bumped = r.clone();
        bumped.sequence = 4;
        assert_eq!(bumped.verify(now), Err(RecordError::BadSignature));
        let mut other_key = r.clone();
        other_key.public_key = SignedRecord::sign(&[2; 32], vec![], 0, now).public_key;
        assert_eq!(other_key.verify(now), Err(RecordError::BadSignature));
        assert_eq!(r.verify(r.expires), Err(RecordError::Expired));
    }

    #[test]
    fn a_weak_key_cannot_sign_everything() {
        // The identity point as the public key, and R = identity, S = 0 as the signature:
        // [S]B = R + [k]A holds for every message, so a plain check accepts any value.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&identity);
        let now = Timestamp::from_micros(1_000);
        let forged = SignedRecord {
            public_key: identity,
            value: b"anything".to_vec(),
            sequence: 1,
            expires: now + std::time::Duration::from_secs(60),
            signature,
        };
        assert_eq!(forged.verify(now), Err(RecordError::BadSignature));
    }
}
