//! Money: an integer number of minor units (kopecks, cents) with its ISO 4217
//! currency, and percentages as basis points. No floats anywhere.
//!
//! Arithmetic is checked (`None` on overflow or on mixing currencies). The
//! only rounding is down to the minor unit, in [`Money::percent_floor`] and
//! [`Money::scale_floor`], and it is documented there.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code: three capital ASCII letters (`RUB`, `USD`).
///
/// Any three capital letters are accepted; the list of codes in force is the
/// host's business.
///
/// ```
/// use referral_core::Currency;
///
/// let rub: Currency = "RUB".parse()?;
/// assert_eq!(rub.as_str(), "RUB");
/// assert!("rub".parse::<Currency>().is_err());
/// # Ok::<(), referral_core::CurrencyError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// A string that is not a [`Currency`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a currency is three capital letters (ISO 4217)")]
pub struct CurrencyError;

impl Currency {
    /// The Russian rouble, the default currency of fixed rewards.
    pub const RUB: Self = Self(*b"RUB");

    /// Parses three capital ASCII letters, exactly (no trimming, no case folding).
    ///
    /// # Errors
    /// [`CurrencyError`] for anything else.
    pub fn parse(input: &str) -> Result<Self, CurrencyError> {
        match input.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(CurrencyError),
        }
    }

    /// The code.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

/// A percentage in basis points: 1 % = 100 bp, from 0 to 10 000 (100 %).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(try_from = "u32", into = "u32")]
pub struct BasisPoints(u16);

/// A number of basis points above 10 000.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("basis points are 0 to 10000 (100 %)")]
pub struct BasisPointsError;

impl BasisPoints {
    /// Zero: nothing.
    pub const ZERO: Self = Self(0);
    /// 10 000 bp: the whole amount.
    pub const MAX: u16 = 10_000;

    /// `bp` basis points.
    ///
    /// # Errors
    /// [`BasisPointsError`] above 10 000.
    pub fn new(bp: u32) -> Result<Self, BasisPointsError> {
        match u16::try_from(bp) {
            Ok(bp) if bp <= Self::MAX => Ok(Self(bp)),
            _ => Err(BasisPointsError),
        }
    }

    /// The number of basis points.
    #[must_use]
    pub fn get(self) -> u16 {
        self.0
    }

    /// Whether it is zero.
    #[must_use]
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl TryFrom<u32> for BasisPoints {
    type Error = BasisPointsError;

    fn try_from(bp: u32) -> Result<Self, Self::Error> {
        Self::new(bp)
    }
}

impl From<BasisPoints> for u32 {
    fn from(bp: BasisPoints) -> Self {
        u32::from(bp.0)
    }
}

impl fmt::Display for BasisPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bp", self.0)
    }
}

/// An amount of money: a signed number of minor units and its currency.
///
/// Negative amounts exist: a clawback is a negative ledger entry. Amounts a
/// host reports (conversions) are checked against [`Money::MAX_AMOUNT`] where
/// they come in.
///
/// ```
/// use referral_core::{BasisPoints, Currency, Money};
///
/// let order = Money::new(150_000, Currency::RUB);
/// assert_eq!(order.percent_floor(BasisPoints::new(500)?).amount(), 7_500);
/// // floor(1000 × 100000 ÷ 150000) = 666
/// assert_eq!(Money::new(1_000, Currency::RUB).scale_floor(100_000, 150_000).unwrap().amount(), 666);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount: i64,
    currency: Currency,
}

impl Money {
    /// The largest amount a host may report for one conversion, and the
    /// largest configured reward: 10¹⁵ minor units.
    pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

    /// `amount` minor units of `currency`.
    #[must_use]
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Nothing, in `currency`.
    #[must_use]
    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The number of minor units.
    #[must_use]
    pub fn amount(&self) -> i64 {
        self.amount
    }

    /// The currency.
    #[must_use]
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.amount == 0
    }

    /// The sum; `None` for different currencies or on overflow.
    #[must_use]
    pub fn checked_add(self, other: Self) -> Option<Self> {
        (self.currency == other.currency)
            .then(|| self.amount.checked_add(other.amount))
            .flatten()
            .map(|amount| Self::new(amount, self.currency))
    }

    /// The difference; `None` for different currencies or on overflow.
    #[must_use]
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        (self.currency == other.currency)
            .then(|| self.amount.checked_sub(other.amount))
            .flatten()
            .map(|amount| Self::new(amount, self.currency))
    }

    /// The negation; `None` for `i64::MIN`.
    #[must_use]
    pub fn checked_neg(self) -> Option<Self> {
        self.amount
            .checked_neg()
            .map(|amount| Self::new(amount, self.currency))
    }

    /// `bp` of this amount, **rounded down** (towards minus infinity) to the
    /// minor unit: `floor(amount × bp ÷ 10000)`. Never overflows (the result
    /// is at most the amount in size).
    #[must_use]
    pub fn percent_floor(self, bp: BasisPoints) -> Self {
        let scaled = (i128::from(self.amount) * i128::from(bp.get()))
            .div_euclid(i128::from(BasisPoints::MAX));
        // |scaled| <= |amount|, so it fits.
        Self::new(i64::try_from(scaled).unwrap_or(self.amount), self.currency)
    }

    /// `floor(amount × numerator ÷ denominator)`, **rounded down** (towards
    /// minus infinity) to the minor unit, computed without intermediate
    /// overflow. `None` when `denominator` is not positive or the result does
    /// not fit.
    #[must_use]
    pub fn scale_floor(self, numerator: i64, denominator: i64) -> Option<Self> {
        if denominator <= 0 {
            return None;
        }
        let scaled =
            (i128::from(self.amount) * i128::from(numerator)).div_euclid(i128::from(denominator));
        i64::try_from(scaled)
            .ok()
            .map(|amount| Self::new(amount, self.currency))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} {})", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currencies() {
        assert_eq!(Currency::parse("USD").unwrap().as_str(), "USD");
        for bad in ["", "US", "USDT", "usd", "US1", "ÉUR", " RUB", "RU "] {
            assert_eq!(Currency::parse(bad), Err(CurrencyError), "{bad:?}");
        }
        let json = serde_json::to_string(&Currency::RUB).unwrap();
        assert_eq!(json, "\"RUB\"");
        assert!(serde_json::from_str::<Currency>("\"rub\"").is_err());
    }

    #[test]
    fn basis_points() {
        assert_eq!(BasisPoints::new(10_000).unwrap().get(), 10_000);
        assert!(BasisPoints::new(10_001).is_err());
        assert!(BasisPoints::new(u32::MAX).is_err());
        assert!(serde_json::from_str::<BasisPoints>("10001").is_err());
    }

    #[test]
    fn rounding_is_down() {
        let rub = Currency::RUB;
        assert_eq!(
            Money::new(199, rub)
                .percent_floor(BasisPoints::new(50).unwrap())
                .amount(),
            0
        );
        assert_eq!(
            Money::new(-1, rub)
                .percent_floor(BasisPoints::new(5000).unwrap())
                .amount(),
            -1
        );
        assert_eq!(
            Money::new(7_500, rub)
                .scale_floor(100_000, 150_000)
                .unwrap()
                .amount(),
            5_000
        );
        assert_eq!(Money::new(1, rub).scale_floor(1, 0), None);
        assert_eq!(Money::new(i64::MAX, rub).scale_floor(2, 1), None);
    }

    #[test]
    fn checked_arithmetic() {
        let rub = Money::new(5, Currency::RUB);
        let usd = Money::new(5, Currency::parse("USD").unwrap());
        assert_eq!(rub.checked_add(usd), None);
        assert_eq!(rub.checked_sub(usd), None);
        assert_eq!(Money::new(i64::MAX, Currency::RUB).checked_add(rub), None);
        assert_eq!(Money::new(i64::MIN, Currency::RUB).checked_neg(), None);
        assert_eq!(rub.checked_sub(rub).unwrap().amount(), 0);
    }

    proptest! {
        #[test]
        fn percent_floor_is_floor(amount in 0i64..=Money::MAX_AMOUNT, bp in 0u32..=10_000) {
            let got = Money::new(amount, Currency::RUB).percent_floor(BasisPoints::new(bp).unwrap()).amount();
            let exact = i128::from(amount) * i128::from(bp);
            prop_assert!(i128::from(got) * 10_000 <= exact);
            prop_assert!((i128::from(got) + 1) * 10_000 > exact);
        }

        #[test]
        fn currency_parse_never_panics(s in "\\PC{0,5}") {
            let _ = Currency::parse(&s);
        }
    }
}
