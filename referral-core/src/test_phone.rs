//! [`TestPhones`]: phones that get a fixed login code and no SMS (for
//! app-store reviewers and monitoring).

use std::collections::HashMap;
use std::str::FromStr;

use crate::otp::OtpCode;
use crate::phone::PhoneNumber;

/// Phones that are issued a fixed code instead of a random one, and sent no
/// SMS. Everything else about the code is unchanged: it is stored as a
/// keyed hash, it must be requested before it works, it expires, it
/// verifies once, wrong guesses count and burn it, and the phone's send
/// limits apply (the send counts against the global budget too). Every use
/// is logged at `WARN` through the `tracing` facade (target
/// `referral_core::test_phone`), without the code.
///
/// A test phone is a standing password for that account: keep the list
/// short, the codes unguessable in the configured length, and remove them
/// when the review is over.
///
/// ```
/// use referral_core::TestPhones;
///
/// let phones: TestPhones = "+15550100001:1234, +15550100002:9876".parse().unwrap();
/// let phone = "+15550100001".parse().unwrap();
/// assert_eq!(phones.code(&phone).unwrap().expose(), "1234");
/// assert_eq!(phones.len(), 2);
/// assert!("+15550100001".parse::<TestPhones>().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestPhones(HashMap<PhoneNumber, OtpCode>);

/// Why a test-phone list was refused. It names the entry by its phone part,
/// never its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TestPhonesError {
    /// An entry is not `+phone:code`.
    #[error("test phone entry {0}: expected +phone:code")]
    Malformed(usize),
    /// An entry's phone is not an international number.
    #[error("test phone entry {0}: not an international phone number")]
    Phone(usize),
    /// An entry's code is not 4 to 8 digits.
    #[error("test phone {0}: the code must be 4 to 8 digits")]
    Code(PhoneNumber),
    /// A phone is listed twice.
    #[error("test phone {0} is listed twice")]
    Duplicate(PhoneNumber),
}

impl TestPhones {
    /// No test phones.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `phone` with `code`, returning the code it replaces.
    pub fn insert(&mut self, phone: PhoneNumber, code: OtpCode) -> Option<OtpCode> {
        self.0.insert(phone, code)
    }

    /// The fixed code of `phone`, if it is a test phone.
    #[must_use]
    pub fn code(&self, phone: &PhoneNumber) -> Option<&OtpCode> {
        self.0.get(phone)
    }

    /// Whether `phone` is a test phone.
    #[must_use]
    pub fn contains(&self, phone: &PhoneNumber) -> bool {
        self.0.contains_key(phone)
    }

    /// How many test phones there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The phones and their codes.
    pub fn iter(&self) -> impl Iterator<Item = (&PhoneNumber, &OtpCode)> {
        self.0.iter()
    }

    /// Parses `+phone:code` entries separated by commas (whitespace around
    /// entries ignored; an empty string is no phones).
    ///
    /// # Errors
    /// [`TestPhonesError`] for a malformed entry, a bad phone or code, or a
    /// phone listed twice.
    pub fn parse(input: &str) -> Result<Self, TestPhonesError> {
        let mut phones = Self::new();
        for (i, entry) in input
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let n = i + 1;
            let (phone, code) = entry.split_once(':').ok_or(TestPhonesError::Malformed(n))?;
            let phone =
                PhoneNumber::parse(phone.trim(), None).map_err(|_| TestPhonesError::Phone(n))?;
            let code = OtpCode::parse_any(code).map_err(|_| TestPhonesError::Code(phone))?;
            if phones.insert(phone, code).is_some() {
                return Err(TestPhonesError::Duplicate(phone));
            }
        }
        Ok(phones)
    }
}

impl FromStr for TestPhones {
    type Err = TestPhonesError;

    fn from_str(input: &str) -> Result<Self, TestPhonesError> {
        Self::parse(input)
    }
}

/// Logs one use of a test phone at `WARN` (never the code).
pub(crate) fn log_use(phone: &PhoneNumber, what: &'static str) {
    tracing::warn!(
        target: "referral_core::test_phone",
        phone = %phone,
        "test phone: {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_refuses_bad_entries() {
        assert!(TestPhones::parse("").unwrap().is_empty());
        assert!(TestPhones::parse(" , ").unwrap().is_empty());
        let p = TestPhones::parse(" +79991234567 : 123456 ").unwrap();
        let phone: PhoneNumber = "+79991234567".parse().unwrap();
        assert_eq!(p.code(&phone).unwrap().expose(), "123456");
        assert!(p.contains(&phone));
        assert_eq!(
            TestPhones::parse("+7999"),
            Err(TestPhonesError::Malformed(1))
        );
        assert_eq!(
            TestPhones::parse("79991234567:1234"),
            Err(TestPhonesError::Phone(1))
        );
        assert_eq!(
            TestPhones::parse("+79991234567:12"),
            Err(TestPhonesError::Code(phone))
        );
        assert_eq!(
            TestPhones::parse("+79991234567:12a4"),
            Err(TestPhonesError::Code(phone))
        );
        assert_eq!(
            TestPhones::parse("+79991234567:1234,+7 999 123-45-67:5678"),
            Err(TestPhonesError::Duplicate(phone))
        );
        // The error never carries the code.
        let e = TestPhones::parse("+79991234567:98x7").unwrap_err();
        assert!(!e.to_string().contains("98x7"));
    }
}
