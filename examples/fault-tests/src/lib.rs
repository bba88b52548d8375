//! # referral-fault-tests
//!
//! Fault cases for the example servers, tested the way outages behave: a
//! PostgreSQL killed with SIGKILL and restarted, connections to it cut
//! mid-transaction, an SMS sender that hangs, clients that stall or flood
//! the server with idle connections, and SIGTERM under load. Every case
//! talks to a server binary over loopback HTTP only (the harness of
//! `referral-contract-tests`) and is bounded in time.
//!
//! Use it from a server crate's `tests/faults.rs`:
//!
//! ```ignore
//! referral_fault_tests::fault_tests!(env!("CARGO_BIN_EXE_referral-server"));
//! ```
//!
//! Stores: cases in `memory` and `postgres` run like the contract suite's
//! (PostgreSQL: a fresh database on `DATABASE_URL`; skipped without it, or
//! failing under `CI`). The `own_cluster` cases start a throwaway PostgreSQL
//! cluster of their own ([`cluster::PgCluster`]), because they kill it; they
//! need PostgreSQL's server binaries (skipped with a message without them,
//! failing under `CI`).
//!
//! Set `CONTRACT_SERVER_LOG=debug` to see the servers' logs.
//!
//! | case | the defence it checks |
//! |---|---|
//! | `postgres_killed_and_restarted` | store errors map to 503 `unavailable`; the pool reconnects; committed data survives a crash |
//! | `backends_terminated_mid_stream`, `proxy_cut_mid_stream` | the same for connections lost mid-transaction and a network cut |
//! | `database_dropped` | SQLSTATE 3D000 is `Unavailable` in `referral-sqlx`, not `Internal` (500) |
//! | `sms_sender_hangs` | `REFERRAL_SMS_TIMEOUT_MS`; the service revokes the code and does not charge the send |
//! | `sms_webhook_hangs_fails_recovers` | the webhook provider at a gateway that hangs, fails (500) and recovers: 503 `sms_unavailable` within `REFERRAL_SMS_TIMEOUT_MS`, retries under one `Idempotency-Key`, no usable code, nothing charged, sends again after recovery |
//! | `stalled_headers_disconnected`, `idle_connection_flood` | `REFERRAL_HEADER_TIMEOUT_SECS` (and `REFERRAL_MAX_CONNECTIONS`) |
//! | `connection_limit_holds` | `REFERRAL_MAX_CONNECTIONS` bounds the connections served at once: past it a connection waits unanswered until one closes (a limit that is a multiple of the cores, exact for both servers) |
//! | `stalled_body_times_out` | `REFERRAL_REQUEST_TIMEOUT_SECS` covers reading the body |
//! | `shutdown_under_load` | graceful shutdown: in-flight requests finish, then exit 0 |

pub mod cases;
pub mod cluster;
pub mod net;

pub use referral_contract_tests::{Backend, Ctx};

/// What a fault case runs against: the contract harness's [`Ctx`] and the
/// server binary's path (for a server on a cluster of the case's own).
#[derive(Debug, Clone)]
pub struct Fx {
    /// The contract harness context (fresh stores, servers).
    pub ctx: Ctx,
    /// The server binary.
    pub bin: &'static str,
}

/// Runs one case on `backend` (see [`referral_contract_tests::run`]).
///
/// # Panics
/// When the case fails.
pub fn run<F, Fut>(bin: &'static str, backend: Backend, name: &str, case: F)
where
    F: FnOnce(Fx) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    referral_contract_tests::run(bin, backend, name, move |ctx| case(Fx { ctx, bin }));
}

#[doc(hidden)]
pub use referral_contract_tests::store_cases;

/// Expands to one `#[test]` per case: modules `memory` and `postgres` (as
/// the contract suite's) and `own_cluster` (cases that start, kill and
/// restart a PostgreSQL cluster of their own).
#[macro_export]
macro_rules! fault_tests {
    ($bin:expr) => {
        $crate::store_cases! {
            $crate, $bin;
            both: sms_sender_hangs, sms_webhook_hangs_fails_recovers, stalled_headers_disconnected, stalled_body_times_out,
                idle_connection_flood, connection_limit_holds, shutdown_under_load;
            postgres_only: backends_terminated_mid_stream, proxy_cut_mid_stream, database_dropped;
        }
        mod own_cluster {
            #[test]
            fn postgres_killed_and_restarted() {
                // The memory backend: the case brings its own PostgreSQL.
                $crate::run(
                    $bin,
                    $crate::Backend::Memory,
                    "postgres_killed_and_restarted",
                    $crate::cases::postgres_killed_and_restarted,
                );
            }
        }
    };
}
