//! Reading what the queries return: a column, a value that must be there,
//! and the parses of stored text shared by the users and rewards sides.

use referral_core::{ConversionId, Currency, PayoutRef, RewardKind, StoreError};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{corrupt, map};

/// The column `column` of `row`.
pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(map)
}

/// `value`, which the query guarantees (an error naming `column` when NULL).
pub(crate) fn some<T>(value: Option<T>, column: &str) -> Result<T, StoreError> {
    value.ok_or_else(|| corrupt(format_args!("{column} is missing")))
}

/// A SQL `bigint` limit from a `usize`, saturating.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored currency code.
pub(crate) fn currency(text: &str) -> Result<Currency, StoreError> {
    Currency::parse(text).map_err(|e| corrupt(format_args!("currency {text:?}: {e}")))
}

/// A stored conversion id.
pub(crate) fn conversion_id(text: &str) -> Result<ConversionId, StoreError> {
    ConversionId::parse(text).map_err(|e| corrupt(format_args!("conversion id {text:?}: {e}")))
}

/// A stored payout reference.
pub(crate) fn payout_ref(text: &str) -> Result<PayoutRef, StoreError> {
    PayoutRef::parse(text).map_err(|e| corrupt(format_args!("payout ref {text:?}: {e}")))
}

/// A stored reward kind.
pub(crate) fn reward_kind(text: &str) -> Result<RewardKind, StoreError> {
    text.parse::<RewardKind>()
        .map_err(|_| corrupt(format_args!("reward kind {text:?}")))
}
