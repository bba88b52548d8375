//! # referral-security-tests
//!
//! The abuse and bad-input suite of the example servers, black-box over HTTP
//! like the contract suite (`referral-contract-tests`), whose harness it
//! reuses: each case spawns the server binary on `127.0.0.1:0`, on the
//! in-memory store and again on PostgreSQL (a fresh database per server on
//! `DATABASE_URL`; without it the PostgreSQL runs are skipped with a message,
//! or fail under `CI`). A few cases need two processes on one database, or
//! SQL access to it, and run on PostgreSQL only.
//!
//! What it shows, each case able to fail when its defence is removed:
//!
//! | area | cases |
//! |---|---|
//! | brute force | the per-phone daily guess budget at 4-digit codes (10) holds across resends, concurrent guesses and two processes; then codes have 8 digits and take 5 guesses each |
//! | lockout | an attacker who knows the phone spends its budget (from its own address, forging `X-Forwarded-For`, the per-client limit on): the owner still logs in every time with the 8-digit code the code route announces, on one process or two |
//! | SMS pumping | the per-client send limit of a server process over real sockets (a forged `X-Forwarded-For` changes nothing); the global send budget (503 `sms_unavailable` + `Retry-After`), also across processes; the country allow-list |
//! | enumeration | the code route answers known and unknown phones byte for byte alike; unknown invite codes are limited per user |
//! | tokens | forged, expired, `alg: none`, foreign algorithms, wrong keys, truncated, garbage, unknown and deleted users: 401; no code, secret or token in the logs |
//! | bad input | oversized, truncated, wrong-type and deeply nested JSON; absurd headers; Unicode look-alikes; random bodies (a proptest stand-in for fuzzing) |
//!
//! Use it from a server crate's `tests/security.rs`:
//!
//! ```ignore
//! referral_security_tests::security_tests!(env!("CARGO_BIN_EXE_referral-server"));
//! ```
//!
//! `CONTRACT_SERVER_LOG=debug` shows the spawned servers' logs (except in the
//! case that captures them). `SECURITY_FUZZ_SEED=<u64>` replays one run of
//! the random-bodies case (its seed is printed when it fails).

pub mod cases;

#[doc(hidden)]
pub use referral_contract_tests::{run, store_cases};

/// Expands to one `#[test]` per case and store: modules `memory` and
/// `postgres`, each with a test named after the case.
#[macro_export]
macro_rules! security_tests {
    ($bin:expr) => {
        $crate::store_cases! {
            $crate, $bin;
            both: brute_force_budget_across_resends, brute_force_concurrent_guesses,
                attacker_who_knows_the_phone, client_send_limit_per_address,
                sms_global_budget, sms_country_allow_list, enumeration_code_route_alike,
                enumeration_invite_codes_limited, tokens_refused, secrets_never_logged,
                malformed_json_refused, absurd_headers_refused, unicode_lookalikes_refused,
                random_bodies_never_fail_the_server;
            postgres_only: brute_force_two_servers, sms_global_budget_two_servers,
                token_of_deleted_user;
        }
    };
}
