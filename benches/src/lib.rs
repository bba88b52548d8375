//! Shared pieces of the benchmarks: a bare baseline store doing the same work
//! as `MemoryStore` with nothing of ours in the way, helpers to drive async
//! store methods that never wait, PostgreSQL bench set-up ([`pg`]), a
//! protocol-counting proxy ([`proxy`]) and the scale bins' interleaved
//! medians ([`scale`]), and logging users in through a server's HTTP API
//! ([`api`]).

pub mod api;
pub mod baseline;
pub mod pg;
pub mod proxy;
pub mod reward_baseline;
pub mod scale;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Runs a future that completes without waiting (every `MemoryStore`
/// operation does), with no runtime in the way.
///
/// # Panics
/// When the future would wait.
pub fn ready<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future waited"),
    }
}

/// The `n`-th phone number of a benchmark population.
///
/// # Panics
/// Past 10⁸ phones.
#[must_use]
pub fn phone(n: u64) -> referral_core::PhoneNumber {
    assert!(n < 100_000_000);
    format!("+7900{n:08}").parse().expect("valid phone")
}
