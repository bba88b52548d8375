//! # referral-security-tests
//!
//! The abuse and bad-input cases that need a real server process, black-box
//! over real sockets: each case spawns the server binary through the contract
//! suite's harness (`referral-contract-tests`) on `127.0.0.1:0`, on the
//! in-memory store and again on PostgreSQL (a fresh database per server on
//! `DATABASE_URL`; without it the PostgreSQL runs are skipped with a message,
//! or fail under `CI`).
//!
//! The other abuse cases of `SECURITY.md` (brute force, the lockout
//! attacker, SMS pumping, enumeration, tokens, hostile JSON, look-alikes,
//! random bodies) need no process: they are cases of the contract suite
//! (`referral_contract_tests::cases::security`), run in process on both
//! servers' apps and both stores. What stays here, and why:
//!
//! | case | why it needs a process |
//! |---|---|
//! | `client_send_limit_per_address` | the client address is the peer of the connection the server accepted: the accept loop must hand it to the routes (in process, the harness sets the peer itself) |
//! | `secrets_never_logged` | it reads the process's stderr at `RUST_LOG=debug`, as the binary's own log setup writes it |
//! | `chunked_body_over_limit_refused` | a body streamed in chunks with no `Content-Length` over a socket (in process, a body is whole and sized) |
//! | `absurd_headers_refused` | 5000 headers, a 1 MiB header, a 64 KiB path: the HTTP parser of the server meets them before any app (in process there is no parser) |
//!
//! Each case fails when its defence is removed.
//!
//! Use it from a server crate's `tests/security.rs`:
//!
//! ```ignore
//! referral_security_tests::security_tests!(env!("CARGO_BIN_EXE_referral-server"));
//! ```
//!
//! `CONTRACT_SERVER_LOG=debug` shows the spawned servers' logs (except in the
//! case that captures them).

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
            both: client_send_limit_per_address, secrets_never_logged,
                chunked_body_over_limit_refused, absurd_headers_refused;
            postgres_only: ;
        }
    };
}
