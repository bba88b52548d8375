//! API keys for the host's backend: the `/api/server/*` routes take
//! `Authorization: Bearer <key>`, compared in constant time.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{Headers, bearer_credential};
use crate::error::ApiError;

/// One API key: at least [`ApiKey::MIN_LEN`] bytes of visible ASCII.
/// `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Box<str>);

/// Why a string is not an [`ApiKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an API key must be at least 32 bytes of visible ASCII (no spaces or commas)")]
pub struct ApiKeyError;

impl ApiKey {
    /// The shortest key: 32 bytes.
    pub const MIN_LEN: usize = 32;

    /// Parses a key (surrounding spaces are not part of it).
    ///
    /// # Errors
    /// [`ApiKeyError`] for a key shorter than 32 bytes, or with a byte that
    /// is not visible ASCII (or is a comma, the list separator).
    pub fn parse(input: &str) -> Result<Self, ApiKeyError> {
        let key = input.trim();
        if key.len() < Self::MIN_LEN || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err(ApiKeyError);
        }
        Ok(Self(key.into()))
    }

    /// The key itself.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl FromStr for ApiKey {
    type Err = ApiKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The keys the server routes accept, kept as SHA-256 digests and compared
/// in constant time (every key is compared, whichever matches), so neither
/// a key's bytes nor its length leak through timing. No keys: every server
/// route answers 401.
#[derive(Clone, Default)]
pub struct ApiKeys(Vec<[u8; 32]>);

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("count", &self.0.len())
            .finish()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl ApiKeys {
    /// The set of `keys`.
    #[must_use]
    pub fn new(keys: &[ApiKey]) -> Self {
        Self(keys.iter().map(|k| digest(k.0.as_bytes())).collect())
    }

    /// Whether no key is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the keys.
    #[must_use]
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = digest(presented.as_bytes());
        let mut found = subtle::Choice::from(0);
        for key in &self.0 {
            found |= key.ct_eq(&presented);
        }
        bool::from(found)
    }

    /// Checks the request's `Authorization: Bearer <key>`.
    ///
    /// # Errors
    /// 401 `unauthorized` when it is missing, malformed or not a key (a
    /// user's access token included).
    pub fn check(&self, headers: &dyn Headers) -> Result<(), ApiError> {
        let key = headers
            .get("authorization")
            .and_then(bearer_credential)
            .ok_or_else(|| {
                ApiError::unauthorized("missing API key: send Authorization: Bearer <api_key>")
            })?;
        if self.accepts(key) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("invalid API key"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(ApiKey::parse("short").is_err());
        assert!(ApiKey::parse(&"k".repeat(31)).is_err());
        assert!(ApiKey::parse(&format!("{},x", "k".repeat(32))).is_err());
        let a = ApiKey::parse(&"a".repeat(32)).unwrap();
        let b = ApiKey::parse(&"b".repeat(40)).unwrap();
        assert!(!format!("{a:?}").contains("aaaa"));
        let keys = ApiKeys::new(&[a, b]);
        assert!(keys.accepts(&"a".repeat(32)));
        assert!(keys.accepts(&"b".repeat(40)));
        assert!(!keys.accepts(&"a".repeat(33)));
        assert!(!keys.accepts(""));
        assert!(!ApiKeys::default().accepts(""));
        let mut h = http::HeaderMap::new();
        assert_eq!(keys.check(&h).unwrap_err().status, 401);
        h.insert(
            "authorization",
            format!("Bearer {}", "b".repeat(40)).parse().unwrap(),
        );
        assert!(keys.check(&h).is_ok());
        h.insert(
            "authorization",
            format!("Basic {}", "b".repeat(40)).parse().unwrap(),
        );
        assert_eq!(keys.check(&h).unwrap_err().code, "unauthorized");
    }
}
