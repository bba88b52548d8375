//! # referral-contract-tests
//!
//! The contract suite of API.md (`shared/API.md` of the project), one set of
//! cases run against every server: IN PROCESS against the app a server
//! crate builds from the published routers (`referral-axum`'s through
//! `tower::ServiceExt::oneshot`, `referral-actix`'s through
//! `actix_web::test::init_service`; see [`in_process`]), and, for the cases
//! only a real process can show (refusing bad settings at start-up,
//! finishing in-flight requests on SIGTERM, state kept across a restart
//! after SIGTERM), against the server binary,
//! spawned with `REFERRAL_LISTEN=127.0.0.1:0` and spoken to over HTTP.
//!
//! The abuse and bad-input cases of `SECURITY.md` that need no real
//! process are cases of this suite too ([`cases::security`]); the security
//! suite (`referral-security-tests`) keeps the ones that need a server
//! process.
//!
//! Every case runs twice: on the in-memory store and on PostgreSQL (a fresh
//! database on `DATABASE_URL` for each server; without `DATABASE_URL` the
//! PostgreSQL runs are skipped with a message, or fail under `CI`). A few
//! cases (two servers on one database, a restart, an outage) run on
//! PostgreSQL only. In process, every case also runs through PgBouncer in
//! transaction mode (`REFERRAL_TEST_PGBOUNCER_URL`, which scripts/test.sh
//! sets), as a deployment behind a pooler would.
//!
//! Use it from a server crate's `tests/contract.rs`:
//!
//! ```ignore
//! fn app(api: referral_http::Api, settings: &Settings) -> Arc<dyn Transport> { /* your app, as in tests/contract.rs */ }
//! referral_contract_tests::contract_tests!(
//!     bin: env!("CARGO_BIN_EXE_referral-server"),
//!     app: crate::app
//! );
//! ```
//!
//! Set `CONTRACT_SERVER_LOG=debug` (a `RUST_LOG` filter) to see the server
//! processes' logs. `SECURITY_FUZZ_SEED=<u64>` replays one run of
//! `random_bodies_never_fail_the_server` (its seed is printed when it fails).

pub mod cases;
pub mod harness;
pub mod in_process;

pub use harness::{Backend, Ctx, Logs, Resp, Server, Target, User, run};
pub use in_process::{ActixApp, AppFactory, AxumApp, PeerAddr, Transport};

/// Expands to one `#[test]` per case and store: modules `in_process` (the
/// app built by `app`, an [`AppFactory`]) and `process` (the binary `bin`),
/// each with `memory` and `postgres` modules holding a test named after
/// the case; `in_process` also has `pgbouncer` (the PostgreSQL store through
/// a transaction-mode PgBouncer, [`Backend::PgBouncer`]).
#[macro_export]
macro_rules! contract_tests {
    (bin: $bin:expr, app: $app:expr $(,)?) => {
        mod in_process {
            $crate::store_cases! {
                $crate, $crate::Target::InProcess($app);
                both: health_ok, request_code_accepted,
                    request_code_invalid_phone, default_region, request_code_cooldown,
                    request_code_hourly_cap, new_code_replaces_previous, sms_unavailable,
                    request_timeout, verify_creates_then_logs_in, code_works_once, verify_errors,
                    verify_expired, code_burns_after_max_attempts, phone_steps_up_after_daily_failures,
                    client_send_limit, forwarded_for_from_untrusted_peer_ignored,
                    forwarded_for_from_trusted_proxy,
                    unauthorized_tokens, token_of_unknown_user, activate_invite, referral_cycle,
                    invite_unknown_codes_limited, referrals_pagination, profile_lists_first_100,
                    dev_outbox, openapi_document, web_pages, json_conventions,
                    race_one_phone_many_codes, race_one_code_many_verifies,
                    race_one_user_many_codes, race_many_users_one_code, race_mutual_activations,
                    concurrent_codes_do_not_block, test_phones, real_provider, rewards_errors,
                    rewards_without_keys, admin_routes_refuse_non_operators,
                    admin_search_and_detail, admin_block_and_unblock, admin_void_reward,
                    admin_user_rewards, admin_leaderboard_and_stats, admin_csv_exports,
                    // The abuse and bad-input cases (`cases::security`).
                    brute_force_budget_across_resends, brute_force_concurrent_guesses,
                    attacker_who_knows_the_phone, sms_global_budget, sms_country_allow_list,
                    enumeration_code_route_alike, enumeration_invite_codes_limited,
                    tokens_refused, malformed_json_refused, unicode_lookalikes_refused,
                    random_bodies_never_fail_the_server;
                postgres_only: two_servers_share_one_store, store_outage,
                    rewards_two_servers_one_conversion, brute_force_two_servers,
                    sms_global_budget_two_servers, token_of_deleted_user;
                through_pgbouncer;
            }
        }
        mod process {
            $crate::store_cases! {
                $crate, $bin;
                // The worked example waits for the process's periodic approval task.
                both: bad_settings_refused, graceful_shutdown, test_phones_logged,
                    real_provider_setting_missing, rewards_worked_example;
                postgres_only: restart_keeps_state;
            }
        }
    };
}

/// The test modules of a suite built on this harness: `memory` with a
/// `#[test]` per `both` case, `postgres` with one per `both` and
/// `postgres_only` case, each calling `$suite::run(bin, backend, name,
/// $suite::cases::<case>)`. The security and fault suites expand it too.
///
/// ```ignore
/// referral_contract_tests::store_cases! {
///     my_suite, env!("CARGO_BIN_EXE_referral-server");
///     both: case_a, case_b;
///     postgres_only: case_c;
/// }
/// ```
///
/// A `through_pgbouncer;` line after `postgres_only` adds a module
/// `pgbouncer` running every `both` case on [`Backend::PgBouncer`].
#[macro_export]
macro_rules! store_cases {
    ($suite:tt, $bin:expr; both: $($case:ident),* $(,)?; postgres_only: $($pg:ident),* $(,)?; through_pgbouncer;) => {
        $crate::store_cases! { $suite, $bin; both: $($case),*; postgres_only: $($pg),*; }
        mod pgbouncer {
            $(
                #[test]
                fn $case() {
                    $suite::run($bin, $crate::Backend::PgBouncer, stringify!($case), $suite::cases::$case);
                }
            )*
        }
    };
    ($suite:tt, $bin:expr; both: $($case:ident),* $(,)?; postgres_only: $($pg:ident),* $(,)?;) => {
        mod memory {
            $(
                #[test]
                fn $case() {
                    $suite::run($bin, $crate::Backend::Memory, stringify!($case), $suite::cases::$case);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $case() {
                    $suite::run($bin, $crate::Backend::Postgres, stringify!($case), $suite::cases::$case);
                }
            )*
            $(
                #[test]
                fn $pg() {
                    $suite::run($bin, $crate::Backend::Postgres, stringify!($pg), $suite::cases::$pg);
                }
            )*
        }
    };
}

/// The code blocks of the workspace README (the quick start, rewards, the
/// conformance kit, and mounting the routes in an axum and an actix-web
/// app), compiled and run as doc tests here: this crate depends on both
/// frameworks.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
