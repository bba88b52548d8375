//! The clock port: the core never reads the wall clock itself.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Where the current time comes from. Every expiry, cooldown and rolling
/// window in the core is measured against it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock: the production default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the one sanctioned use
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move: for tests of expiry,
/// cooldowns and rolling windows.
///
/// ```
/// use std::time::Duration;
/// use referral_core::clock::{Clock, TestClock};
///
/// let clock = TestClock::default();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(301));
/// assert_eq!((clock.now() - t0).num_seconds(), 301);
/// ```
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    /// Moves the clock to `now` (also backwards).
    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the clock forward by `by`.
    ///
    /// # Panics
    /// When `by` does not fit a [`TimeDelta`] (hundreds of millions of years).
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).expect("duration within chrono's range");
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Default for TestClock {
    /// A clock at 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
