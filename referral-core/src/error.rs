//! Infrastructure errors of the ports. Expected business results (a wrong
//! code, an unknown invite code…) are outcomes, not errors: see
//! [`store`](crate::store).

use std::error::Error as StdError;

/// The error source type carried by [`StoreError`] and
/// [`SmsError`](crate::sms::SmsError).
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A store could not do what was asked, for reasons outside the domain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backing service cannot be reached now (connection refused or lost,
    /// pool timeout, failover). Retrying later may work; the operation did
    /// not take effect, or, for a lost commit, its effect is unknown.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug, a broken schema, data the store cannot decode.
    #[error("the store failed")]
    Internal(#[source] BoxError),
}

impl StoreError {
    /// Wraps a source as [`StoreError::Unavailable`].
    pub fn unavailable(source: impl Into<BoxError>) -> Self {
        Self::Unavailable(source.into())
    }

    /// Wraps a source as [`StoreError::Internal`].
    pub fn internal(source: impl Into<BoxError>) -> Self {
        Self::Internal(source.into())
    }

    /// Whether retrying later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
