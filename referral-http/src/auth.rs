//! Authentication as a port: the host decides what a login gives the user
//! and how a request names its user.
//!
//! [`Authenticator`] has two halves: [`Authenticator::log_in`] is called by
//! the verify route once the code was checked, and returns what the host
//! issues (its own cookie session, its own token, …) as [`Credentials`];
//! [`Authenticator::authenticate`] recognises the user of a request from its
//! headers, for every authenticated route and for the framework crates'
//! user extractors. [`JwtAuth`], HS256 bearer tokens, is the provided
//! default.

use std::error::Error as StdError;
use std::fmt;
use std::hash::{BuildHasher as _, RandomState};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use referral_core::{Clock, User, UserId};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

/// A request's headers, whatever the framework: each framework crate
/// implements it for its own header map (this crate does it for
/// [`http::HeaderMap`]).
pub trait Headers: Sync {
    /// The first value of the header `name` (any case) that is visible
    /// ASCII text, if any.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).iter().find_map(|v| v.to_str().ok())
    }
}

impl<H: Headers + ?Sized> Headers for &H {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// A bearer token issued at login, written into the verify answer's body
/// as `access_token`, `token_type: "Bearer"` and `expires_in`.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken {
    /// The token.
    pub access_token: String,
    /// Its lifetime.
    pub expires_in: Duration,
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What a login gives the user: a bearer token for the answer's body, and/or
/// headers for the answer (e.g. `Set-Cookie` of the host's own session).
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Credentials {
    /// A token to write into the verify answer's body, if any.
    pub bearer: Option<BearerToken>,
    /// Headers to add to the verify answer, `(name, value)`.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer)
            .field("headers", &names)
            .finish()
    }
}

impl Credentials {
    /// Credentials carrying a bearer token in the body.
    #[must_use]
    pub fn bearer(access_token: String, expires_in: Duration) -> Self {
        Self {
            bearer: Some(BearerToken {
                access_token,
                expires_in,
            }),
            headers: Vec::new(),
        }
    }

    /// No token in the body; add headers with [`Credentials::with_header`].
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// The same credentials with one more answer header (e.g. `Set-Cookie`).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Why a request's user could not be recognised, or a login not issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carries no credentials (401 `unauthorized`).
    #[error("missing access token: send Authorization: Bearer <access_token>")]
    Missing,
    /// The credentials are malformed, forged or unknown (401 `unauthorized`).
    #[error("invalid access token")]
    Invalid,
    /// The credentials' lifetime is over (401 `unauthorized`).
    #[error("the access token has expired; log in again")]
    Expired,
    /// What the credentials are checked against (a session store) could not
    /// be reached (503 `unavailable`).
    #[error("authentication is unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// A bug, e.g. a token that could not be signed (500 `internal`).
    #[error("authentication failed")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

/// The host's authentication: what a login issues, and who a request is.
///
/// Implement it to plug an existing session system into the referral
/// routes; [`JwtAuth`] is the provided default. Usable as
/// `Arc<dyn Authenticator>`.
///
/// ```
/// use async_trait::async_trait;
/// use referral_core::{User, UserId};
/// use referral_http::{AuthError, Authenticator, Credentials, Headers};
///
/// /// Trusts a header set by the host's gateway (for illustration).
/// #[derive(Debug)]
/// struct GatewayAuth;
///
/// #[async_trait]
/// impl Authenticator for GatewayAuth {
///     async fn log_in(&self, _user: &User) -> Result<Credentials, AuthError> {
///         Ok(Credentials::none())
///     }
///     async fn authenticate(&self, headers: &dyn Headers) -> Result<UserId, AuthError> {
///         let id = headers.get("x-user-id").ok_or(AuthError::Missing)?;
///         UserId::parse(id).map_err(|_| AuthError::Invalid)
///     }
/// }
/// ```
#[async_trait]
pub trait Authenticator: fmt::Debug + Send + Sync + 'static {
    /// Called by `POST /api/auth/verify` once `user` has proved their phone:
    /// what the answer gives them. The route answers 200 with these
    /// credentials (body token and headers), the profile and `new_user`.
    ///
    /// # Errors
    /// [`AuthError::Unavailable`] or [`AuthError::Internal`] when nothing
    /// could be issued (the answer is then 503 or 500; the user exists).
    async fn log_in(&self, user: &User) -> Result<Credentials, AuthError>;

    /// The user a request is from, read from its headers.
    ///
    /// # Errors
    /// [`AuthError::Missing`], [`AuthError::Invalid`] or
    /// [`AuthError::Expired`] (401 `unauthorized`); `Unavailable` (503).
    async fn authenticate(&self, headers: &dyn Headers) -> Result<UserId, AuthError>;
}

#[async_trait]
impl<T: Authenticator + ?Sized> Authenticator for Arc<T> {
    async fn log_in(&self, user: &User) -> Result<Credentials, AuthError> {
        (**self).log_in(user).await
    }

    async fn authenticate(&self, headers: &dyn Headers) -> Result<UserId, AuthError> {
        (**self).authenticate(headers).await
    }
}

#[async_trait]
impl<T: Authenticator + ?Sized> Authenticator for Box<T> {
    async fn log_in(&self, user: &User) -> Result<Credentials, AuthError> {
        (**self).log_in(user).await
    }

    async fn authenticate(&self, headers: &dyn Headers) -> Result<UserId, AuthError> {
        (**self).authenticate(headers).await
    }
}

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

/// The default [`Authenticator`]: JWT HS256 access tokens with `sub` (the
/// user id), `iat` and `exp`, sent as `Authorization: Bearer <token>`.
///
/// The algorithm is pinned to HS256 on both sides; a token signed any other
/// way (including `alg: none`) is refused. No leeway on `exp`.
///
/// A client sends the same token with every request, so the last 4,096
/// tokens that verified are remembered (one per slot of a keyed hash): the
/// same token again skips the signature check and the JSON parsing, not the
/// expiry (checked against the same clock as a full verification). A token
/// that differs in any byte is verified in full; tokens that fail are never
/// remembered.
pub struct JwtAuth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    verified: VerifiedTokens,
}

/// A direct-mapped cache of tokens whose signature and claims verified:
/// [`Self::SLOTS`] slots, each holding one token (a later token of the same
/// slot replaces it), the slot chosen by a hash keyed per process of the
/// token's signature bytes (so a client cannot aim at another's slot), the
/// token compared in constant time. At most `SLOTS` tokens of this server's own making (each under
/// 200 bytes): well under a megabyte.
struct VerifiedTokens {
    slots: Box<[Mutex<Option<Verified>>]>,
    hasher: RandomState,
}

/// A token that verified: its user and expiry (seconds since the epoch).
struct Verified {
    token: Box<str>,
    user: UserId,
    exp: u64,
}

impl VerifiedTokens {
    const SLOTS: usize = 4096;
    /// How much of a token's end picks its slot.
    const HASHED_BYTES: usize = 16;

    fn new() -> Self {
        Self::with_slots(Self::SLOTS)
    }

    /// `slots` (at least one) slots; tests use one, so that every token
    /// meets the remembered one.
    fn with_slots(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1)).map(|_| Mutex::new(None)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The slot of `token`, by the keyed hash of its last
    /// [`Self::HASHED_BYTES`] bytes: those of a JWT's signature (HMAC
    /// output, unpredictable without the secret), so tokens spread over the
    /// slots as the whole token would, at a tenth of the hashing. Which slot
    /// is only where to look: the whole token is compared before a
    /// remembered one is used.
    fn slot(&self, token: &str) -> &Mutex<Option<Verified>> {
        let bytes = token.as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(Self::HASHED_BYTES)..];
        let hash = self.hasher.hash_one(tail);
        // The remainder is below the slot count: the cast back cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let index = (hash % self.slots.len() as u64) as usize;
        &self.slots[index]
    }

    /// The user of `token` if it verified before: `Ok(None)` when it is
    /// not remembered, [`AuthError::Expired`] (and forgotten) when its
    /// `exp` is before `now`, as a full verification would answer.
    fn get(&self, token: &str, now: u64) -> Result<Option<UserId>, AuthError> {
        let mut slot = self
            .slot(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(verified) = slot.as_ref() else {
            return Ok(None);
        };
        let same = same_bytes(verified.token.as_bytes(), token.as_bytes());
        if !same {
            return Ok(None);
        }
        if verified.exp < now {
            *slot = None;
            return Err(AuthError::Expired);
        }
        Ok(Some(verified.user))
    }

    fn put(&self, token: &str, user: UserId, exp: u64) {
        let verified = Verified {
            token: token.into(),
            user,
            exp,
        };
        *self
            .slot(token)
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(verified);
    }
}

/// `a == b`, in a time that depends on their lengths only: 8 bytes at a
/// time, each word compared with `subtle` (one optimisation barrier per
/// word rather than per byte), the tail byte by byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut same = a_words.remainder().ct_eq(b_words.remainder());
    for (x, y) in a_words.zip(b_words) {
        let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or([0; 8]));
        same &= word(x).ct_eq(&word(y));
    }
    bool::from(same)
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithm", &"HS256")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
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
            verified: VerifiedTokens::new(),
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
    /// [`AuthError::Internal`] if signing fails (it does not with HS256).
    pub fn issue(&self, user: UserId) -> Result<String, AuthError> {
        let now = u64::try_from(self.clock.now().timestamp()).unwrap_or(0);
        let claims = Claims {
            sub: user.to_string(),
            iat: now,
            exp: now.saturating_add(self.ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(Box::new(e)))
    }

    /// The user a token was issued to.
    ///
    /// # Errors
    /// [`AuthError::Invalid`] or [`AuthError::Expired`].
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        // The clock `decode` checks `exp` against (no leeway: expired when
        // `exp` is before it).
        if let Some(user) = self
            .verified
            .get(token, jsonwebtoken::get_current_timestamp())?
        {
            return Ok(user);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let user = UserId::parse(&data.claims.sub).map_err(|_| AuthError::Invalid)?;
        self.verified.put(token, user, data.claims.exp);
        Ok(user)
    }

    /// The user of an `Authorization` header value (`Bearer <token>`, the
    /// scheme in any case).
    ///
    /// # Errors
    /// [`AuthError::Missing`], [`AuthError::Invalid`] or
    /// [`AuthError::Expired`].
    pub fn verify_authorization(&self, authorization: Option<&str>) -> Result<UserId, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        self.verify(bearer_credential(value).ok_or(AuthError::Invalid)?)
    }
}

/// The credential of an `Authorization` header value `Bearer <credential>`
/// (the scheme in any case, surrounding spaces ignored); `None` for another
/// scheme or no credential part. Access tokens and API keys are both read
/// with it.
pub(crate) fn bearer_credential(authorization: &str) -> Option<&str> {
    let (scheme, credential) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

#[async_trait]
impl Authenticator for JwtAuth {
    async fn log_in(&self, user: &User) -> Result<Credentials, AuthError> {
        Ok(Credentials::bearer(self.issue(user.id)?, self.ttl))
    }

    async fn authenticate(&self, headers: &dyn Headers) -> Result<UserId, AuthError> {
        self.verify_authorization(headers.get("authorization"))
    }
}

/// The HS256 secret: at least 32 bytes. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(Vec<u8>);

/// A secret shorter than 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must have at least 32 bytes, not {0}")]
pub struct JwtSecretError(pub usize);

impl JwtSecret {
    /// The shortest accepted secret, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A secret from bytes.
    ///
    /// # Errors
    /// [`JwtSecretError`] for fewer than 32 bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, JwtSecretError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(JwtSecretError(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A random 32-byte secret, for one process on its own.
    #[must_use]
    pub fn generate(random: &dyn referral_core::Random) -> Self {
        let mut bytes = vec![0u8; Self::MIN_LEN];
        random.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The secret's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for JwtSecret {
    type Err = JwtSecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use referral_core::{SeededRandom, SystemClock};

    fn jwt(secret: &str) -> JwtAuth {
        JwtAuth::new(
            &secret.parse().unwrap(),
            Duration::from_secs(60),
            Arc::new(SystemClock),
        )
    }

    #[test]
    fn round_trip_and_forgery() {
        let t = jwt("0123456789abcdef0123456789abcdef");
        let user = UserId::generate(&SeededRandom::new(1));
        let token = t.issue(user).unwrap();
        assert_eq!(t.verify(&token).unwrap(), user);
        assert_eq!(
            t.verify_authorization(Some(&format!("bearer {token}")))
                .unwrap(),
            user
        );
        assert!(matches!(
            t.verify_authorization(None),
            Err(AuthError::Missing)
        ));
        assert!(matches!(
            t.verify_authorization(Some(&token)),
            Err(AuthError::Invalid)
        ));
        let other = jwt("another-secret-another-secret-0123");
        assert!(matches!(other.verify(&token), Err(AuthError::Invalid)));
        assert!(matches!(t.verify("a.b.c"), Err(AuthError::Invalid)));
    }

    #[test]
    fn a_remembered_token_verifies_again_and_nothing_else_does() {
        // One slot: every forgery below is compared with the remembered
        // token; all slots: a forgery keeping the signature's bytes meets it
        // in its slot, the others mostly miss it.
        for slots in [1, VerifiedTokens::SLOTS] {
            remembered_token_and_forgeries(slots);
        }
    }

    /// Tokens spread over the slots by their signature's bytes, as they
    /// would by the whole token's (1,000 in 4,096 slots: ~886 expected).
    #[test]
    fn remembered_tokens_spread_over_the_slots() {
        let t = jwt("0123456789abcdef0123456789abcdef");
        let rng = SeededRandom::new(6);
        let slots: std::collections::HashSet<*const Mutex<Option<Verified>>> = (0..1000)
            .map(|_| {
                let token = t.issue(UserId::generate(&rng)).unwrap();
                std::ptr::from_ref(t.verified.slot(&token))
            })
            .collect();
        assert!(slots.len() > 800, "{} slots", slots.len());
    }

    fn remembered_token_and_forgeries(slots: usize) {
        let mut t = jwt("0123456789abcdef0123456789abcdef");
        t.verified = VerifiedTokens::with_slots(slots);
        let user = UserId::generate(&SeededRandom::new(3));
        let token = t.issue(user).unwrap();
        assert_eq!(t.verify(&token).unwrap(), user);
        assert_eq!(t.verify(&token).unwrap(), user, "the remembered token");
        // Every one-byte change of the remembered token is refused.
        for i in 0..token.len() {
            let mut forged = token.clone().into_bytes();
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).unwrap();
            assert!(t.verify(&forged).is_err(), "byte {i} changed");
        }
        assert!(t.verify(&token[..token.len() - 1]).is_err(), "shortened");
        assert!(t.verify(&format!("{token}A")).is_err(), "lengthened");
        // A server with another secret never remembered it.
        assert!(matches!(
            jwt("another-secret-another-secret-0123").verify(&token),
            Err(AuthError::Invalid)
        ));
    }

    #[test]
    fn a_remembered_token_expires() {
        let cache = VerifiedTokens::with_slots(1);
        let user = UserId::generate(&SeededRandom::new(4));
        assert!(matches!(cache.get("t", 100), Ok(None)));
        cache.put("t", user, 100);
        assert_eq!(cache.get("t", 100).unwrap(), Some(user), "valid up to exp");
        assert!(matches!(cache.get("u", 100), Ok(None)));
        assert!(matches!(cache.get("t", 101), Err(AuthError::Expired)));
        assert!(
            matches!(cache.get("t", 100), Ok(None)),
            "forgotten once expired"
        );
    }

    #[test]
    fn an_expired_token_is_refused_after_it_was_remembered() {
        // Issued at 2026-01-01 for a minute: long expired by the system
        // clock jsonwebtoken checks against.
        let behind = Arc::new(referral_core::clock::TestClock::default());
        let t = JwtAuth::new(
            &"0123456789abcdef0123456789abcdef".parse().unwrap(),
            Duration::from_secs(60),
            behind,
        );
        let token = t.issue(UserId::generate(&SeededRandom::new(5))).unwrap();
        assert!(matches!(t.verify(&token), Err(AuthError::Expired)));
        assert!(matches!(t.verify(&token), Err(AuthError::Expired)));
    }

    #[tokio::test]
    async fn authenticates_from_headers() {
        let t = jwt("0123456789abcdef0123456789abcdef");
        let user = UserId::generate(&SeededRandom::new(2));
        let token = t.issue(user).unwrap();
        let mut headers = http::HeaderMap::new();
        assert!(matches!(
            t.authenticate(&headers).await,
            Err(AuthError::Missing)
        ));
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        assert_eq!(t.authenticate(&headers).await.unwrap(), user);
    }

    #[test]
    fn secrets_are_long_and_hidden() {
        assert_eq!("short".parse::<JwtSecret>(), Err(JwtSecretError(5)));
        let s: JwtSecret = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(format!("{s:?}"), "JwtSecret(<redacted>)");
    }
}
