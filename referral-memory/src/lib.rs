//! # referral-memory
//!
//! [`MemoryStore`]: an in-memory, thread-safe implementation of every store
//! port of [`referral_core`]. It is the embedded default of the example
//! servers and the baseline of the benchmarks.
//!
//! Each operation is one critical section under one lock guard, never held
//! across an `.await`, which is what makes every rule of the ports atomic:
//! login codes live in shards keyed by phone (operations on different phones
//! do not contend), users and the referral graph behind one reader-writer
//! lock (profiles and referral pages read in parallel). Conversions and the
//! reward ledger ([`RewardStore`](referral_core::store::RewardStore)) live
//! under that same lock, since a conversion reads the referral graph and an
//! activation writes the welcome reward. So do blocks and the operator
//! indexes ([`OperatorStore`](referral_core::store::OperatorStore)): a block
//! is read by activations, conversions and approvals under that same guard.
//!
//! Data lives as long as the store: a restart forgets everything. Use
//! `referral-sqlx` where that matters.
//!
//! ```
//! use std::sync::Arc;
//! use referral_core::{ReferralService, StubSmsSender};
//! use referral_memory::MemoryStore;
//!
//! let service = ReferralService::builder(Arc::new(MemoryStore::new()), Arc::new(StubSmsSender::new()))
//!     .build()
//!     .expect("the default configuration is valid");
//! # let _ = service;
//! ```

mod operators;
mod otp;
mod rewards;
mod users;

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use otp::{OTP_SHARDS, PRUNE_PER_CALL};

/// The in-memory store. Create one per process and share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    otp: otp::OtpShards,
    users: RwLock<users::Graph>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of users.
    #[must_use]
    pub fn user_count(&self) -> usize {
        read(&self.users).len()
    }

    fn users_read(&self) -> RwLockReadGuard<'_, users::Graph> {
        read(&self.users)
    }

    fn users_write(&self) -> RwLockWriteGuard<'_, users::Graph> {
        self.users.write().unwrap_or_else(PoisonError::into_inner)
    }
}

// A panic inside a critical section cannot leave a half-made change behind:
// every operation checks everything before it writes anything. So a poisoned
// lock is safe to keep using, and the store keeps serving.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
