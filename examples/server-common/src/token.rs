//! Access tokens: JWT HS256 with `sub` (the user id), `iat` and `exp`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use referral_core::{Clock, UserId};
use serde::{Deserialize, Serialize};

use crate::settings::JwtSecret;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// Issues and checks access tokens. The algorithm is pinned to HS256 on both
/// sides; a token signed any other way (including `alg: none`) is refused.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("algorithm", &"HS256")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a token was refused (all answer 401 `unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No `Authorization: Bearer …` header.
    #[error("missing access token: send Authorization: Bearer <access_token>")]
    Missing,
    /// Not a token this server signed, or malformed.
    #[error("invalid access token")]
    Invalid,
    /// The token's lifetime is over.
    #[error("the access token has expired; log in again")]
    Expired,
}

/// A token could not be signed (a bug).
#[derive(Debug, thiserror::Error)]
#[error("could not sign an access token")]
pub struct SignError(#[source] jsonwebtoken::errors::Error);

impl Tokens {
    /// Tokens signed with `secret`, valid for `ttl`, timed by `clock`.
    #[must_use]
    pub fn new(secret: &JwtSecret, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            clock,
        }
    }

    /// The lifetime of a new token.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `user`.
    ///
    /// # Errors
    /// [`SignError`] if signing fails (it does not with HS256).
    pub fn issue(&self, user: UserId) -> Result<String, SignError> {
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(SignError)
    }

    /// The user a token was issued to.
    ///
    /// # Errors
    /// [`TokenError`] for a forged, malformed or expired token.
    pub fn verify(&self, token: &str) -> Result<UserId, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        UserId::parse(&data.claims.sub).map_err(|_| TokenError::Invalid)
    }

    /// The user of an `Authorization` header value (`Bearer <token>`, the
    /// scheme in any case).
    ///
    /// # Errors
    /// [`TokenError`] for a missing, malformed, forged or expired token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<UserId, TokenError> {
        let value = authorization.ok_or(TokenError::Missing)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(TokenError::Invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Invalid);
        }
        self.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use referral_core::{SeededRandom, SystemClock};

    fn tokens(secret: &str) -> Tokens {
        Tokens::new(
            &secret.parse().unwrap(),
            Duration::from_secs(60),
            Arc::new(SystemClock),
        )
    }

    #[test]
    fn round_trip_and_forgery() {
        let t = tokens("0123456789abcdef0123456789abcdef");
        let user = UserId::generate(&SeededRandom::new(1));
        let token = t.issue(user).unwrap();
        assert_eq!(t.verify(&token), Ok(user));
        assert_eq!(t.authenticate(Some(&format!("bearer {token}"))), Ok(user));
        assert_eq!(t.authenticate(None), Err(TokenError::Missing));
        assert_eq!(t.authenticate(Some(&token)), Err(TokenError::Invalid));
        let other = tokens("another-secret-another-secret-0123");
        assert_eq!(other.verify(&token), Err(TokenError::Invalid));
        assert_eq!(t.verify("a.b.c"), Err(TokenError::Invalid));
    }
}
