//! Invite codes: six letters and digits, unique per user, never changed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::random::Random;

/// Characters of a generated code: digits and upper-case letters without the
/// look-alikes `0 O 1 I L`, so a code read aloud or off a screen survives.
pub const ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Length of every invite code.
pub const LEN: usize = 6;

/// A user's invite code: six ASCII letters and digits, kept in upper case.
///
/// Parsing trims surrounding whitespace and ignores case, so `" a7kq2m "` and
/// `"A7KQ2M"` are the same code. Generated codes use only [`ALPHABET`]
/// (31⁶ ≈ 8.9 × 10⁸ codes) and come from the injected CSPRNG.
///
/// ```
/// use referral_core::InviteCode;
///
/// let code: InviteCode = " a7kq2m ".parse()?;
/// assert_eq!(code.as_str(), "A7KQ2M");
/// assert!("A7KQ2".parse::<InviteCode>().is_err());
/// # Ok::<(), referral_core::InviteCodeError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InviteCode([u8; LEN]);

/// Why a string is not an [`InviteCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteCodeError {
    /// Not exactly six characters after trimming.
    #[error("an invite code has exactly 6 letters and digits")]
    InvalidLength,
    /// A character other than the ASCII letters A–Z and digits 0–9.
    #[error("an invite code holds only the letters A-Z and digits 0-9")]
    InvalidCharacter,
}

impl InviteCode {
    /// Parses a code typed by a person: trimmed, case-insensitive.
    ///
    /// Any six ASCII letters and digits form a valid code, also ones outside
    /// [`ALPHABET`]: such a code is well-formed but belongs to nobody.
    ///
    /// # Errors
    /// [`InviteCodeError`] when the input is not six ASCII letters and digits.
    pub fn parse(input: &str) -> Result<Self, InviteCodeError> {
        let input = input.trim();
        let bytes = input.as_bytes();
        if bytes.len() != LEN {
            // A multi-byte character makes the byte length differ from the
            // character count; report the more useful of the two errors.
            return Err(if input.is_ascii() {
                InviteCodeError::InvalidLength
            } else {
                InviteCodeError::InvalidCharacter
            });
        }
        let mut code = [0u8; LEN];
        for (slot, &b) in code.iter_mut().zip(bytes) {
            if !b.is_ascii_alphanumeric() {
                return Err(InviteCodeError::InvalidCharacter);
            }
            *slot = b.to_ascii_uppercase();
        }
        Ok(Self(code))
    }

    /// Draws a fresh code uniformly from [`ALPHABET`].
    pub fn generate(rng: &dyn Random) -> Self {
        let mut code = [0u8; LEN];
        for slot in &mut code {
            *slot = ALPHABET[rng.below(ALPHABET.len() as u32) as usize];
        }
        Self(code)
    }

    /// The code, six upper-case ASCII characters.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII letters and digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InviteCode({})", self.as_str())
    }
}

impl FromStr for InviteCode {
    type Err = InviteCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for InviteCode {
    type Error = InviteCodeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<InviteCode> for String {
    fn from(value: InviteCode) -> Self {
        value.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;
    use proptest::prelude::*;

    #[test]
    fn parse_trims_and_ignores_case() {
        assert_eq!(InviteCode::parse("\t a7kq2m\n").unwrap().as_str(), "A7KQ2M");
        assert_eq!(
            InviteCode::parse("A7KQ2"),
            Err(InviteCodeError::InvalidLength)
        );
        assert_eq!(
            InviteCode::parse("A7KQ2MM"),
            Err(InviteCodeError::InvalidLength)
        );
        assert_eq!(
            InviteCode::parse("A7K-2M"),
            Err(InviteCodeError::InvalidCharacter)
        );
        assert_eq!(
            InviteCode::parse("A7KQ2٣"),
            Err(InviteCodeError::InvalidCharacter)
        );
        // Full-width letters look alike but are not ASCII.
        assert_eq!(
            InviteCode::parse("ＡＢＣＤＥＦ"),
            Err(InviteCodeError::InvalidCharacter)
        );
        assert_eq!(InviteCode::parse(""), Err(InviteCodeError::InvalidLength));
    }

    #[test]
    fn alphabet_has_no_look_alikes() {
        for c in b"0O1IL" {
            assert!(!ALPHABET.contains(c));
        }
        let mut sorted = ALPHABET.to_vec();
        sorted.dedup();
        assert_eq!(sorted.len(), ALPHABET.len());
    }

    #[test]
    fn generated_codes_use_the_whole_alphabet() {
        let rng = SeededRandom::new(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            seen.extend(InviteCode::generate(&rng).0);
        }
        assert_eq!(seen.len(), ALPHABET.len());
    }

    proptest! {
        #[test]
        fn generated_codes_are_valid(seed: u64) {
            let code = InviteCode::generate(&SeededRandom::new(seed));
            prop_assert!(code.0.iter().all(|c| ALPHABET.contains(c)));
            prop_assert_eq!(InviteCode::parse(code.as_str()), Ok(code));
        }

        #[test]
        fn parse_display_round_trip(s in "[A-Za-z0-9]{6}") {
            let code = InviteCode::parse(&s).unwrap();
            prop_assert_eq!(code.as_str(), s.to_ascii_uppercase());
            prop_assert_eq!(InviteCode::parse(&code.to_string()), Ok(code));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = InviteCode::parse(&s);
        }
    }
}
