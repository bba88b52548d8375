//! Heap bytes per user in `MemoryStore`, measured with dhat's counting
//! allocator: 1 M registered users, then half of them activating a code.
//!
//! ```sh
//! cargo run --release -p referral-benches --bin memory-per-user [-- USERS]
//! ```
#![allow(clippy::print_stdout)]

use chrono::{DateTime, TimeDelta};
use referral_benches::{phone, ready};
use referral_core::store::{NewUser, ReferralStore};
use referral_core::{InviteCode, InvitePolicy, SeededRandom, UserId};
use referral_memory::MemoryStore;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn heap() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let users: u64 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("a number of users"));
    let rng = SeededRandom::new(1);
    let t0 = DateTime::from_timestamp(1_767_225_600, 0).expect("valid time");
    // Draw ids, phones and codes first, so only the store's own memory is counted.
    let input: Vec<_> = (0..users)
        .map(|n| {
            (
                phone(n),
                UserId::generate(&rng),
                [InviteCode::generate(&rng), InviteCode::generate(&rng)],
            )
        })
        .collect();

    let before = heap();
    let store = MemoryStore::new();
    for (p, id, codes) in &input {
        let _ = ready(store.register(
            p,
            NewUser {
                id: *id,
                created_at: t0,
            },
            codes,
        ))
        .expect("memory store");
    }
    let registered = heap() - before;
    println!(
        "{users} users registered: {:.1} MiB, {} bytes per user",
        registered as f64 / 1_048_576.0,
        registered / users
    );

    // Every second user activates the code of a user among the first 1000.
    let codes: Vec<InviteCode> = input
        .iter()
        .take(1000)
        .map(|(_, id, _)| {
            ready(store.user(*id))
                .expect("memory store")
                .expect("user")
                .invite_code
        })
        .collect();
    for (i, (_, id, _)) in input.iter().enumerate().skip(1000).step_by(2) {
        let at = t0 + TimeDelta::milliseconds(i as i64);
        let _ = ready(store.activate_invite(*id, &codes[i % 1000], &InvitePolicy::default(), at))
            .expect("memory store");
    }
    let total = heap() - before;
    println!(
        "after {} activations: {:.1} MiB, {} bytes per user (target: <= 300)",
        (users.saturating_sub(1000)).div_ceil(2),
        total as f64 / 1_048_576.0,
        total / users
    );
    drop(store);
}
