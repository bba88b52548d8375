//! Phone numbers: parsed once from what people type, kept and shown in E.164.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest input [`PhoneNumber::parse`] looks at; anything longer is refused
/// before any other work.
const MAX_INPUT_LEN: usize = 40;
/// E.164 allows at most 15 digits, country code included.
const MAX_DIGITS: usize = 15;
/// The shortest numbers in use (some small territories) have 7 digits in all.
const MIN_DIGITS: usize = 7;

/// A phone number in E.164 form (`+79991234567`).
///
/// Built only by [`PhoneNumber::parse`] (or [`FromStr`], serde), which accepts
/// what people usually type: spaces, dashes, dots and parentheses between the
/// digits, and a national number when a default [`Region`] is given. Only ASCII
/// digits count as digits: Arabic-Indic, full-width and other Unicode digits are
/// refused, so two different strings can never name the same user by accident.
///
/// The check is syntactic (E.164 length and shape, the region's calling code
/// and trunk prefix); whether the number is in service is for the SMS to find out.
///
/// ```
/// use referral_core::{PhoneNumber, Region};
///
/// let a = PhoneNumber::parse("+7 (999) 123-45-67", None)?;
/// let b: PhoneNumber = "+79991234567".parse()?;
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "+79991234567");
///
/// let ru = Region::parse("RU")?;
/// assert_eq!(PhoneNumber::parse("8 999 123 45 67", Some(ru))?, a);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(
    // The digits after `+` as one integer: E.164 numbers have at most 15 digits
    // and never start with 0, so this is lossless, `Copy` and cheap to hash.
    u64,
);

/// Why a string is not a [`PhoneNumber`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Nothing but separators was given.
    #[error("the phone number is empty")]
    Empty,
    /// The input is longer than any phone number written with separators.
    #[error("the phone number is too long")]
    TooLong,
    /// A character other than ASCII digits, a leading `+`, spaces, dashes, dots
    /// and parentheses.
    #[error(
        "the phone number may only hold digits 0-9, a leading '+', spaces, dashes, dots and parentheses"
    )]
    InvalidCharacter,
    /// Too few or too many digits for E.164 (7 to 15, country code included).
    #[error("a phone number has 7 to 15 digits, country code included")]
    InvalidLength,
    /// Country calling codes never start with 0.
    #[error("the country code cannot start with 0")]
    InvalidCountryCode,
    /// A number without `+` was given and no default region is configured.
    #[error("write the number in international form, starting with '+' and the country code")]
    MissingRegion,
}

impl PhoneNumber {
    /// Parses a phone number typed by a person.
    ///
    /// Surrounding whitespace is ignored; spaces, dashes, dots and parentheses
    /// between digits are dropped. A number starting with `+` is international.
    /// Any other number is national and needs `default_region`: the region's
    /// trunk prefix (`8` in Russia, `0` in most of Europe) is dropped and its
    /// calling code put in front.
    ///
    /// # Errors
    /// A [`PhoneError`] saying what is wrong with the input.
    pub fn parse(input: &str, default_region: Option<Region>) -> Result<Self, PhoneError> {
        let input = input.trim();
        if input.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let (international, rest) = match input.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        let mut digits = [0u8; MAX_INPUT_LEN];
        let mut len = 0;
        for byte in rest.bytes() {
            match byte {
                b'0'..=b'9' => {
                    digits[len] = byte - b'0';
                    len += 1;
                }
                b' ' | b'-' | b'.' | b'(' | b')' => {}
                _ => return Err(PhoneError::InvalidCharacter),
            }
        }
        if len == 0 {
            return Err(PhoneError::Empty);
        }
        let digits = &digits[..len];
        if international {
            return Self::from_digits(None, digits);
        }
        let region = default_region.ok_or(PhoneError::MissingRegion)?;
        let info = region.info();
        let trunk = info.trunk_prefix.as_bytes();
        let national = if !trunk.is_empty()
            && digits.len() > trunk.len()
            && digits.iter().zip(trunk).all(|(d, t)| *d == t - b'0')
        {
            &digits[trunk.len()..]
        } else {
            digits
        };
        Self::from_digits(Some(info.calling_code), national)
    }

    fn from_digits(calling_code: Option<u16>, digits: &[u8]) -> Result<Self, PhoneError> {
        let mut value: u64 = calling_code.map_or(0, u64::from);
        let mut count = calling_code.map_or(0, |c| c.ilog10() as usize + 1);
        if calling_code.is_none() && digits.first() == Some(&0) {
            return Err(PhoneError::InvalidCountryCode);
        }
        count += digits.len();
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&count) {
            return Err(PhoneError::InvalidLength);
        }
        for &d in digits {
            value = value * 10 + u64::from(d);
        }
        Ok(Self(value))
    }

    /// The digits after `+` as one integer (hash input; never shown).
    pub(crate) fn digits(self) -> u64 {
        self.0
    }

    /// Whether the number starts with country calling code `code` (`7`,
    /// `44`, `1`…). Calling codes are prefix-free, so at most one assigned
    /// code matches a number.
    #[must_use]
    pub fn has_country_code(&self, code: u16) -> bool {
        if code == 0 {
            return false;
        }
        let code_digits = code.ilog10() + 1;
        let digits = self.0.ilog10() + 1;
        digits > code_digits && self.0 / 10u64.pow(digits - code_digits) == u64::from(code)
    }

    /// The number in E.164 form, `+` and digits only.
    #[must_use]
    pub fn to_e164(&self) -> String {
        self.e164().as_str().to_owned()
    }

    /// The number in E.164 form (what [`Self::to_e164`] and `Display` give)
    /// written into a stack buffer: no allocation and no `core::fmt`, for
    /// writers that take a `&str` (a JSON serializer's `serialize_str`).
    ///
    /// ```
    /// use referral_core::PhoneNumber;
    /// let phone: PhoneNumber = "+7 999 123-45-67".parse()?;
    /// assert_eq!(phone.e164().as_str(), "+79991234567");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn e164(&self) -> E164 {
        E164::of(self.0)
    }
}

/// A [`PhoneNumber`]'s E.164 text, `+` and its digits, held in a stack
/// buffer: [`PhoneNumber::e164`].
#[derive(Clone, Copy)]
pub struct E164 {
    // `+` and the digits of a u64 (at most 20) end at the buffer's end.
    buf: [u8; 21],
    start: u8,
}

impl E164 {
    fn of(digits: u64) -> Self {
        // itoa writes four digits a step from a table of pairs: a third of
        // the instructions of one `% 10` and `/ 10` per digit.
        let mut text = itoa::Buffer::new();
        let text = text.format(digits).as_bytes();
        let mut buf = [0u8; 21];
        // A u64 has at most 20 digits: `at` is 0 or more.
        let at = buf.len() - 1 - text.len();
        buf[at] = b'+';
        buf[at + 1..].copy_from_slice(text);
        #[allow(clippy::cast_possible_truncation)] // at < 21
        Self {
            buf,
            start: at as u8,
        }
    }

    /// The text: `+` and the digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII `+` and digits were written there.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text's bytes, ASCII `+` and digits: [`Self::as_str`] without
    /// its UTF-8 check (for writers of bytes, such as a hand-written JSON
    /// body).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.e164().as_str())
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber(+{})", self.0)
    }
}

impl FromStr for PhoneNumber {
    type Err = PhoneError;

    /// Parses an international number (no default region).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s, None)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.to_string()
    }
}

/// An ISO 3166-1 alpha-2 region (`RU`, `GB`, `US`…) whose numbers may be written
/// in national form: see [`PhoneNumber::parse`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(&'static RegionInfo);

#[derive(Debug, PartialEq, Eq, Hash)]
struct RegionInfo {
    code: &'static str,
    calling_code: u16,
    trunk_prefix: &'static str,
}

/// Why a string is not a known [`Region`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    /// Not two ASCII letters, or not a region this crate knows the dialling
    /// rules of.
    #[error("unknown region {0:?}: expected an ISO 3166-1 alpha-2 code such as RU or GB")]
    Unknown(String),
}

impl Region {
    /// Parses an ISO 3166-1 alpha-2 code, in any case.
    ///
    /// # Errors
    /// [`RegionError::Unknown`] for anything not in the built-in dialling table.
    pub fn parse(code: &str) -> Result<Self, RegionError> {
        let code = code.trim();
        REGIONS
            .iter()
            .find(|r| r.code.eq_ignore_ascii_case(code))
            .map(Region)
            .ok_or_else(|| RegionError::Unknown(code.chars().take(8).collect()))
    }

    fn info(self) -> &'static RegionInfo {
        self.0
    }

    /// The two-letter code, upper case.
    #[must_use]
    pub fn code(self) -> &'static str {
        self.0.code
    }

    /// The country calling code (`7` for RU, `44` for GB).
    #[must_use]
    pub fn calling_code(self) -> u16 {
        self.0.calling_code
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Region({})", self.0.code)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.code)
    }
}

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

macro_rules! regions {
    ($($code:ident $cc:literal $trunk:literal),* $(,)?) => {
        &[$(RegionInfo { code: stringify!($code), calling_code: $cc, trunk_prefix: $trunk }),*]
    };
}

/// Region, country calling code, trunk prefix (the digits dialled before a
/// national number inside the country, dropped in international form).
static REGIONS: &[RegionInfo] = regions![
    AD 376 "", AE 971 "0", AF 93 "0", AG 1 "1", AL 355 "0", AM 374 "0", AO 244 "",
    AR 54 "0", AT 43 "0", AU 61 "0", AZ 994 "0", BA 387 "0", BB 1 "1", BD 880 "0",
    BE 32 "0", BG 359 "0", BH 973 "", BO 591 "0", BR 55 "0", BS 1 "1", BY 375 "8",
    BZ 501 "", CA 1 "1", CH 41 "0", CL 56 "", CM 237 "", CN 86 "0", CO 57 "",
    CR 506 "", CU 53 "0", CY 357 "", CZ 420 "", DE 49 "0", DK 45 "", DO 1 "1",
    DZ 213 "0", EC 593 "0", EE 372 "", EG 20 "0", ES 34 "", ET 251 "0", FI 358 "0",
    FR 33 "0", GB 44 "0", GE 995 "0", GH 233 "0", GR 30 "", GT 502 "", HK 852 "",
    HN 504 "", HR 385 "0", HU 36 "06", ID 62 "0", IE 353 "0", IL 972 "0", IN 91 "0",
    IQ 964 "0", IR 98 "0", IS 354 "", IT 39 "", JM 1 "1", JO 962 "0", JP 81 "0",
    KE 254 "0", KG 996 "0", KH 855 "0", KR 82 "0", KW 965 "", KZ 7 "8", LB 961 "0",
    LI 423 "", LK 94 "0", LU 352 "", LV 371 "", MA 212 "0", MC 377 "", MD 373 "0",
    ME 382 "0", MK 389 "0", MN 976 "0", MT 356 "", MX 52 "", MY 60 "0", NG 234 "0",
    NL 31 "0", NO 47 "", NP 977 "0", NZ 64 "0", OM 968 "", PA 507 "", PE 51 "0",
    PH 63 "0", PK 92 "0", PL 48 "", PR 1 "1", PT 351 "", PY 595 "0", QA 974 "",
    RO 40 "0", RS 381 "0", RU 7 "8", SA 966 "0", SE 46 "0", SG 65 "", SI 386 "0",
    SK 421 "0", SV 503 "", TH 66 "0", TN 216 "", TR 90 "0", TT 1 "1", TW 886 "0",
    TZ 255 "0", UA 380 "0", UG 256 "0", US 1 "1", UY 598 "0", VE 58 "0", VN 84 "0",
    ZA 27 "0", ZM 260 "0", ZW 263 "0",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn intl(s: &str) -> Result<PhoneNumber, PhoneError> {
        PhoneNumber::parse(s, None)
    }

    #[test]
    fn separators_are_dropped() {
        let want = intl("+79991234567").unwrap();
        for s in ["+7 (999) 123-45-67", " +7.999.123.45.67 ", "+7-999-1234567"] {
            assert_eq!(intl(s).unwrap(), want, "{s}");
        }
        assert_eq!(want.to_string(), "+79991234567");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(intl(""), Err(PhoneError::Empty));
        assert_eq!(intl("+ ( )"), Err(PhoneError::Empty));
        assert_eq!(intl("+7999abc4567"), Err(PhoneError::InvalidCharacter));
        assert_eq!(intl("+7+9991234567"), Err(PhoneError::InvalidCharacter));
        assert_eq!(intl("+123456"), Err(PhoneError::InvalidLength));
        assert_eq!(intl("+1234567890123456"), Err(PhoneError::InvalidLength));
        assert_eq!(intl("+0123456789"), Err(PhoneError::InvalidCountryCode));
        assert_eq!(intl("89991234567"), Err(PhoneError::MissingRegion));
        assert_eq!(intl(&"1".repeat(41)), Err(PhoneError::TooLong));
    }

    /// The E.164 text written by hand is `format!`'s, for every u64.
    fn e164_as_fmt_writes_it(n: u64) {
        let want = format!("+{n}");
        assert_eq!(E164::of(n).as_str(), want);
        assert_eq!(E164::of(n).as_bytes(), want.as_bytes());
        assert_eq!(PhoneNumber(n).e164().as_str(), want);
        assert_eq!(PhoneNumber(n).to_string(), want);
        assert_eq!(PhoneNumber(n).to_e164(), want);
        assert_eq!(
            format!("{:?}", PhoneNumber(n).e164()),
            format!("\"{want}\"")
        );
    }

    #[test]
    fn e164_is_written_as_fmt_writes_it() {
        for n in [0, 1, 9, 10, 99, 100, 1_000_000, 9_999_999, 79_991_234_567] {
            e164_as_fmt_writes_it(n);
        }
        for n in [
            999_999_999_999_999,
            100_000_000_000_000,
            u64::MAX,
            u64::MAX - 1,
        ] {
            e164_as_fmt_writes_it(n);
        }
        for exp in 0..20 {
            e164_as_fmt_writes_it(10u64.pow(exp));
            e164_as_fmt_writes_it(10u64.pow(exp) - 1);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn e164_matches_fmt(n in any::<u64>(), digits in 7u32..=15) {
            e164_as_fmt_writes_it(n);
            // A valid number's width.
            e164_as_fmt_writes_it(10u64.pow(digits - 1) + n % (9 * 10u64.pow(digits - 1)));
        }
    }

    #[test]
    fn unicode_digits_are_not_digits() {
        // Arabic-Indic, Extended Arabic-Indic, full-width and Devanagari digits.
        for s in [
            "+٧٩٩٩١٢٣٤٥٦٧",
            "+۷۹۹۹۱۲۳۴۵۶۷",
            "+７９９９１２３４５６７",
            "+७९९९१२३४५६७",
            "+7999123456\u{0667}",
        ] {
            assert_eq!(intl(s), Err(PhoneError::InvalidCharacter), "{s}");
        }
    }

    #[test]
    fn national_numbers_need_a_region() {
        let ru = Region::parse("ru").unwrap();
        let want = intl("+79991234567").unwrap();
        assert_eq!(
            PhoneNumber::parse("8 (999) 123-45-67", Some(ru)).unwrap(),
            want
        );
        assert_eq!(PhoneNumber::parse("9991234567", Some(ru)).unwrap(), want);
        // An international number ignores the region.
        let gb = Region::parse("GB").unwrap();
        assert_eq!(PhoneNumber::parse("+79991234567", Some(gb)).unwrap(), want);
        assert_eq!(
            PhoneNumber::parse("020 7946 0018", Some(gb))
                .unwrap()
                .to_string(),
            "+442079460018"
        );
        assert_eq!(
            PhoneNumber::parse("(415) 555-2671", Some(Region::parse("US").unwrap()))
                .unwrap()
                .to_string(),
            "+14155552671"
        );
    }

    #[test]
    fn country_codes() {
        let ru = intl("+79991234567").unwrap();
        assert!(ru.has_country_code(7));
        assert!(!ru.has_country_code(44));
        assert!(!ru.has_country_code(0));
        let gb = intl("+442079460018").unwrap();
        assert!(gb.has_country_code(44) && !gb.has_country_code(43) && !gb.has_country_code(33));
        assert!(intl("+14155552671").unwrap().has_country_code(1));
    }

    #[test]
    fn regions() {
        assert_eq!(Region::parse("RU").unwrap().calling_code(), 7);
        assert_eq!(Region::parse(" gb ").unwrap().code(), "GB");
        assert!(Region::parse("XX").is_err());
        assert!(Region::parse("").is_err());
        let codes: std::collections::HashSet<_> = REGIONS.iter().map(|r| r.code).collect();
        assert_eq!(codes.len(), REGIONS.len(), "a region is listed twice");
    }

    #[test]
    fn serde_goes_through_parse() {
        let p: PhoneNumber = serde_json::from_str("\"+7 999 123 45 67\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"+79991234567\"");
        assert!(serde_json::from_str::<PhoneNumber>("\"12\"").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(n in 1_000_000u64..1_000_000_000_000_000) {
            let p = intl(&format!("+{n}")).unwrap();
            prop_assert_eq!(p.to_string(), format!("+{n}"));
            prop_assert_eq!(intl(&p.to_string()).unwrap(), p);
        }

        #[test]
        fn normalisation_is_idempotent(s in "[+]?[0-9 ().-]{0,30}") {
            if let Ok(p) = intl(&s) {
                prop_assert_eq!(intl(&p.to_string()), Ok(p));
            }
        }

        #[test]
        fn separators_never_change_the_number(
            n in 1_000_000u64..1_000_000_000_000_000,
            seps in proptest::collection::vec("[ ().-]", 0..15),
        ) {
            let digits = n.to_string();
            let mut s = String::from("+");
            for (i, c) in digits.chars().enumerate() {
                s.push(c);
                if let Some(sep) = seps.get(i) { s.push_str(sep); }
            }
            prop_assert_eq!(intl(&s), intl(&format!("+{n}")));
        }

        #[test]
        fn never_panics(s in "\\PC{0,50}") {
            let _ = intl(&s);
            let _ = PhoneNumber::parse(&s, Some(Region::parse("RU").unwrap()));
        }
    }
}
