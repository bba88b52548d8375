//! One-time login codes: the code itself, its policy, and the keyed hash that
//! is all a store ever sees of it.
//!
//! # The lifecycle
//!
//! 1. [`ReferralService::request_code`](crate::ReferralService::request_code)
//!    draws a code, stores only its [`OtpHash`] under a fresh [`ChallengeId`]
//!    (replacing the phone's previous code), then sends the SMS. If the
//!    sender fails, the challenge is revoked and the send is not charged.
//! 2. [`ReferralService::verify_code`](crate::ReferralService::verify_code)
//!    checks a guess in one atomic store operation: a right code is consumed
//!    (it verifies once), a wrong one counts against the code and the phone.
//!
//! # The brute-force bound, and step-up instead of lockout
//!
//! With the [`OtpPolicy`] defaults, a phone takes at most 10 wrong guesses at
//! 4-digit codes in any rolling 24 hours (`max_failures_per_window`), however
//! many codes are sent (at most 5 an hour) and however many server processes
//! share the store. The guess that spends that budget burns the live code,
//! and from then on, until fewer than 10 wrong guesses are left in the
//! window, every code sent to the phone has `step_up_length` (8) digits: the
//! phone is *stepped up*, never locked, so a stranger who knows the number
//! cannot keep its owner out (the owner reads the SMS either way).
//!
//! Per phone and rolling day, an attacker gets:
//! - before step-up: 10 guesses over 10⁴ codes, at most 10 / 10⁴ = 0.1 %;
//! - after step-up: at most 5 codes an hour × 5 guesses each = 600 guesses
//!   a day over 10⁸ codes, at most 600 / 10⁸ = 0.0006 %;
//! - together at most 0.1006 % a day (0.1 % without step-up's extra
//!   guesses, which a lockout forbade at the price of locking the owner
//!   out). Longer codes divide each term by 10 per digit.
//!
//! At most 10 guesses in any rolling day are at short codes: a short code is
//! only issued while fewer than 10 wrong guesses are in the window, and the
//! 10th burns it.

use std::fmt;
use std::time::Duration;

use hmac::digest::CtOutput;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::phone::PhoneNumber;
use crate::random::Random;

/// How many digits a login code has: 4 to 8, 4 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OtpLength(u8);

impl OtpLength {
    /// The shortest allowed length.
    pub const MIN: u8 = 4;
    /// The longest allowed length.
    pub const MAX: u8 = 8;

    /// A length of `digits`.
    ///
    /// # Errors
    /// [`OtpLengthError`] outside 4..=8.
    pub fn new(digits: u8) -> Result<Self, OtpLengthError> {
        if (Self::MIN..=Self::MAX).contains(&digits) {
            Ok(Self(digits))
        } else {
            Err(OtpLengthError(digits))
        }
    }

    /// The number of digits.
    #[must_use]
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for OtpLength {
    fn default() -> Self {
        Self(4)
    }
}

/// A login-code length outside 4..=8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a login code has 4 to 8 digits, not {0}")]
pub struct OtpLengthError(pub u8);

/// A one-time login code: a fixed number of ASCII digits.
///
/// It has no `Display`, and its `Debug` prints `OtpCode(****)`, so a code
/// does not end up in a log by accident; [`OtpCode::expose`] gives the digits
/// to the one place that needs them, the SMS.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode {
    digits: [u8; OtpLength::MAX as usize],
    len: u8,
}

/// Why a string is not an [`OtpCode`] of the configured length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtpCodeError {
    /// Not the configured number of characters.
    #[error("the code must have exactly {expected} digits")]
    InvalidLength {
        /// The configured length.
        expected: u8,
    },
    /// A character other than the ASCII digits 0–9.
    #[error("the code may only hold the digits 0-9")]
    InvalidCharacter,
    /// Fewer than 4 or more than 8 digits.
    #[error("the code must have 4 to 8 digits")]
    OutOfRange,
}

impl OtpCode {
    /// Parses a code typed by a person (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`OtpCodeError`] unless the input is exactly `length` ASCII digits.
    pub fn parse(input: &str, length: OtpLength) -> Result<Self, OtpCodeError> {
        let bytes = input.trim().as_bytes();
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(OtpCodeError::InvalidCharacter);
        }
        if bytes.len() != usize::from(length.0) {
            return Err(OtpCodeError::InvalidLength { expected: length.0 });
        }
        let mut digits = [0u8; OtpLength::MAX as usize];
        digits[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            digits,
            len: length.0,
        })
    }

    /// Parses a code of any allowed length (4 to 8 digits, surrounding
    /// whitespace ignored): a guess, whose length need not be the one the
    /// live code has (a stepped-up phone's codes are longer).
    ///
    /// # Errors
    /// [`OtpCodeError`] unless the input is 4 to 8 ASCII digits.
    pub fn parse_any(input: &str) -> Result<Self, OtpCodeError> {
        let trimmed = input.trim();
        if !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OtpCodeError::InvalidCharacter);
        }
        let length = u8::try_from(trimmed.len())
            .ok()
            .and_then(|n| OtpLength::new(n).ok())
            .ok_or(OtpCodeError::OutOfRange)?;
        Self::parse(trimmed, length)
    }

    /// Draws a code of `length` uniformly distributed digits.
    pub fn generate(length: OtpLength, rng: &dyn Random) -> Self {
        let mut digits = [0u8; OtpLength::MAX as usize];
        for d in &mut digits[..usize::from(length.0)] {
            // `below(10)` is at most 9, so the cast cannot truncate.
            *d = b'0' + rng.below(10) as u8;
        }
        Self {
            digits,
            len: length.0,
        }
    }

    /// The digits, for the SMS (and the simulated outbox) only.
    #[must_use]
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or_default()
    }

    /// How many digits the code has.
    #[must_use]
    pub fn length(&self) -> OtpLength {
        OtpLength(self.len)
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(****)")
    }
}

/// Identifies one issued code of one phone. Binding the hash to it means two
/// codes with the same digits still hash differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChallengeId(Uuid);

impl ChallengeId {
    /// A fresh random id.
    pub fn generate(rng: &dyn Random) -> Self {
        Self(crate::uuid_id::random(rng))
    }

    /// Wraps an id read back from a store.
    #[must_use]
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The id as a UUID, for stores.
    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// HMAC-SHA256 of a code, keyed with the server's [`OtpKey`] and bound to the
/// phone. This, never the code, is what a store keeps.
///
/// The hash does not depend on the [`ChallengeId`], so a guess's hash is known
/// before the store is asked and a database can compare it inside the same
/// statement that counts the guess (one round trip). Nothing is lost by it:
/// without the key, a hash tells nothing about its code; with the key, the
/// 10⁴ codes of a phone can be tried either way, since a challenge id would be
/// stored next to its hash. Two challenges of one phone that drew the same
/// code have equal hashes, which says only that the code repeated.
///
/// `==` on `OtpHash` is not constant-time; stores that compare in the process
/// use [`OtpGuess::matches`], which is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OtpHash([u8; 32]);

impl OtpHash {
    /// Wraps 32 bytes read back from a store.
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes, for stores.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for OtpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpHash(..)")
    }
}

/// The server's secret key for hashing login codes. At least 32 bytes; its
/// `Debug` never prints it.
///
/// Every process that shares a store must use the same key, or a code sent by
/// one cannot be verified by another.
#[derive(Clone)]
pub struct OtpKey(Hmac<Sha256>);

/// A key shorter than 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the code-hashing key must have at least 32 bytes, not {0}")]
pub struct OtpKeyError(pub usize);

/// Domain separation for the code hash. v1 also hashed the challenge id.
const HASH_DOMAIN: &[u8] = b"referral/otp/v2\0";

impl OtpKey {
    /// The shortest accepted key, in bytes.
    pub const MIN_LEN: usize = 32;

    /// A key from secret bytes.
    ///
    /// # Errors
    /// [`OtpKeyError`] for fewer than 32 bytes.
    pub fn from_bytes(secret: &[u8]) -> Result<Self, OtpKeyError> {
        if secret.len() < Self::MIN_LEN {
            return Err(OtpKeyError(secret.len()));
        }
        Ok(Self(Self::mac(secret)))
    }

    /// A key derived from a longer-lived `master` secret for one `purpose`
    /// (HMAC-SHA256(master, purpose)), so one configured secret can serve
    /// several uses without the uses sharing a key.
    ///
    /// # Errors
    /// [`OtpKeyError`] when `master` has fewer than 32 bytes.
    pub fn derive(master: &[u8], purpose: &str) -> Result<Self, OtpKeyError> {
        if master.len() < Self::MIN_LEN {
            return Err(OtpKeyError(master.len()));
        }
        let mut mac = Self::mac(master);
        mac.update(purpose.as_bytes());
        Self::from_bytes(&mac.finalize().into_bytes())
    }

    /// A random key: fine for one process on its own, wrong for several
    /// processes sharing a store.
    pub fn generate(rng: &dyn Random) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Self(Self::mac(&secret))
    }

    fn mac(secret: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the length was checked above.
        <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
    }

    /// The hash a store keeps for `code` sent to `phone`.
    #[must_use]
    pub fn hash(&self, phone: &PhoneNumber, code: &OtpCode) -> OtpHash {
        let mut mac = self.0.clone();
        mac.update(HASH_DOMAIN);
        mac.update(&phone.digits().to_be_bytes());
        mac.update(code.expose().as_bytes());
        OtpHash(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpKey(<redacted>)")
    }
}

/// A guess at a phone's login code, handed to
/// [`OtpStore::verify_otp`](crate::store::OtpStore::verify_otp) so the store
/// can check it against the live challenge inside its atomic operation.
///
/// It holds only the guess's [`OtpHash`], computed once when it is made: a
/// store either compares it in the process with [`OtpGuess::matches`]
/// (constant-time) or sends [`OtpGuess::hash`] to a database that compares it
/// in the statement that counts the guess.
#[derive(Clone, Copy)]
pub struct OtpGuess {
    hash: OtpHash,
}

impl OtpGuess {
    /// A guess of `code` for `phone`, hashed with `key`.
    #[must_use]
    pub fn new(key: &OtpKey, phone: &PhoneNumber, code: &OtpCode) -> Self {
        Self {
            hash: key.hash(phone, code),
        }
    }

    /// The guess's hash, for stores that compare inside a database.
    #[must_use]
    pub fn hash(&self) -> &OtpHash {
        &self.hash
    }

    /// Whether the guess is the code hashed into `stored`, compared in
    /// constant time.
    #[must_use]
    pub fn matches(&self, stored: &OtpHash) -> bool {
        let ours = CtOutput::<Hmac<Sha256>>::new(self.hash.0.into());
        ours == CtOutput::new(stored.0.into())
    }
}

impl fmt::Debug for OtpGuess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpGuess(..)")
    }
}

/// The rules of the login-code lifecycle. The defaults are the ones in the
/// HTTP contract and give the brute-force bound in the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use referral_core::OtpPolicy;
///
/// let mut policy = OtpPolicy::default();
/// policy.ttl = Duration::from_secs(120);
/// assert_eq!(policy.max_attempts, 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtpPolicy {
    /// Digits in a code (4).
    pub length: OtpLength,
    /// How long a code stays valid (300 s).
    pub ttl: Duration,
    /// Wrong guesses that burn one code (5).
    pub max_attempts: u32,
    /// Least time between two codes sent to one phone (60 s).
    pub resend_cooldown: Duration,
    /// Codes sent to one phone within any [`send_window`](Self::send_window) (5).
    pub max_sends_per_window: u32,
    /// The rolling window of `max_sends_per_window` (1 hour).
    pub send_window: Duration,
    /// Wrong guesses for one phone within any
    /// [`failure_window`](Self::failure_window), across codes, before the
    /// phone is stepped up until the window frees: its live code is burned
    /// and every code sent to it has [`step_up_length`](Self::step_up_length)
    /// digits (10).
    pub max_failures_per_window: u32,
    /// The rolling window of `max_failures_per_window` (24 hours).
    pub failure_window: Duration,
    /// Codes sent to ALL phones together within any
    /// [`send_window`](Self::send_window): a cost circuit breaker against SMS
    /// pumping (many phones, each under its own cap). `None` (the default):
    /// no global budget.
    pub max_global_sends_per_window: Option<u32>,
    /// Digits of the codes sent to a stepped-up phone (8); at least
    /// [`length`](Self::length).
    pub step_up_length: OtpLength,
    /// Codes sent on the requests of one client address (an IPv4 address or
    /// an IPv6 /64, see [`ClientAddress`](crate::ClientAddress)) within any
    /// [`send_window`](Self::send_window), whatever the phones (30). `None`:
    /// no per-client limit. Applies to requests that name their client
    /// ([`ReferralService::request_code_from`](crate::ReferralService::request_code_from)).
    pub max_sends_per_client_per_window: Option<u32>,
    /// If set, only phones whose country calling code is listed may be sent a
    /// code (`[7, 44]`: Russia/Kazakhstan and the UK). `None` (the default):
    /// every country.
    pub allowed_country_codes: Option<Vec<u16>>,
}

impl Default for OtpPolicy {
    fn default() -> Self {
        Self {
            length: OtpLength::default(),
            ttl: Duration::from_secs(300),
            max_attempts: 5,
            resend_cooldown: Duration::from_secs(60),
            max_sends_per_window: 5,
            send_window: Duration::from_secs(3600),
            max_failures_per_window: 10,
            failure_window: Duration::from_secs(24 * 3600),
            max_global_sends_per_window: None,
            step_up_length: OtpLength(8),
            max_sends_per_client_per_window: Some(30),
            allowed_country_codes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use proptest::prelude::*;

    fn four() -> OtpLength {
        OtpLength::default()
    }

    #[test]
    fn parse_checks_length_and_digits() {
        assert_eq!(OtpCode::parse(" 1234 ", four()).unwrap().expose(), "1234");
        assert_eq!(
            OtpCode::parse("123", four()),
            Err(OtpCodeError::InvalidLength { expected: 4 })
        );
        assert_eq!(
            OtpCode::parse("12a4", four()),
            Err(OtpCodeError::InvalidCharacter)
        );
        assert_eq!(
            OtpCode::parse("١٢٣٤", four()),
            Err(OtpCodeError::InvalidCharacter)
        );
        let six = OtpLength::new(6).unwrap();
        assert_eq!(OtpCode::parse("123456", six).unwrap().length(), six);
        assert!(OtpLength::new(3).is_err());
        assert!(OtpLength::new(9).is_err());
    }

    #[test]
    fn parse_any_takes_4_to_8_digits() {
        assert_eq!(OtpCode::parse_any(" 1234 ").unwrap().length().get(), 4);
        assert_eq!(OtpCode::parse_any("12345678").unwrap().length().get(), 8);
        assert_eq!(OtpCode::parse_any("12345").unwrap().expose(), "12345");
        for bad in ["", "123", "123456789"] {
            assert_eq!(
                OtpCode::parse_any(bad),
                Err(OtpCodeError::OutOfRange),
                "{bad}"
            );
        }
        assert_eq!(
            OtpCode::parse_any("12a4"),
            Err(OtpCodeError::InvalidCharacter)
        );
        assert_eq!(
            OtpCode::parse_any("١٢٣٤"),
            Err(OtpCodeError::InvalidCharacter)
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let code = OtpCode::parse("9876", four()).unwrap();
        let key = OtpKey::from_bytes(&[7u8; 32]).unwrap();
        let phone: PhoneNumber = "+79991234567".parse().unwrap();
        let shown = format!("{code:?} {key:?} {:?}", OtpGuess::new(&key, &phone, &code));
        assert!(!shown.contains("9876"), "{shown}");
        assert!(!shown.contains("7, 7"), "{shown}");
    }

    #[test]
    fn hash_is_bound_to_phone_code_and_key() {
        let key = OtpKey::from_bytes(&[1u8; 32]).unwrap();
        let other_key = OtpKey::derive(&[1u8; 32], "other").unwrap();
        let a: PhoneNumber = "+79991234567".parse().unwrap();
        let b: PhoneNumber = "+79991234568".parse().unwrap();
        let code = OtpCode::parse("1234", four()).unwrap();
        let h = key.hash(&a, &code);
        assert!(OtpGuess::new(&key, &a, &code).matches(&h));
        assert_eq!(OtpGuess::new(&key, &a, &code).hash(), &h);
        assert!(!OtpGuess::new(&key, &b, &code).matches(&h));
        assert!(!OtpGuess::new(&other_key, &a, &code).matches(&h));
        let wrong = OtpCode::parse("1235", four()).unwrap();
        assert!(!OtpGuess::new(&key, &a, &wrong).matches(&h));
        // A code of another length is another code, not a prefix.
        let longer = OtpCode::parse("12340", OtpLength::new(5).unwrap()).unwrap();
        assert!(!OtpGuess::new(&key, &a, &longer).matches(&h));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(OtpKey::from_bytes(&[0u8; 31]).err(), Some(OtpKeyError(31)));
        assert!(OtpKey::derive(b"short", "otp").is_err());
    }

    proptest! {
        #[test]
        fn generated_codes_parse_back(seed: u64, len in 4u8..=8) {
            let length = OtpLength::new(len).unwrap();
            let code = OtpCode::generate(length, &SeededRandom::new(seed));
            prop_assert_eq!(code.expose().len(), usize::from(len));
            prop_assert_eq!(OtpCode::parse(code.expose(), length), Ok(code));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}", len in 4u8..=8) {
            let _ = OtpCode::parse(&s, OtpLength::new(len).unwrap());
            let _ = OtpCode::parse_any(&s);
        }
    }
}
