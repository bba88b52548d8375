//! The conformance kit: one test per rule of the [store ports](crate::store),
//! run by every storage adapter — ours and yours — through
//! [`store_conformance_tests!`](crate::store_conformance_tests).
//!
//! **Not covered by semver**: cases are added as rules are.
//!
//! Each case gets a fresh, empty store from the adapter's factory and drives
//! it through a [`ReferralService`] with a [`TestClock`], a
//! [`SeededRandom`] and a [`StubSmsSender`], plus direct store calls where a
//! contract is easier to state on the port itself. Time-based rules move the
//! test clock; races run many tasks on a multi-threaded runtime released at
//! once by a barrier, so a store that reads and then writes in separate steps
//! fails them.
//!
//! ```ignore
//! // tests/conformance.rs of an adapter crate; dev-dependencies:
//! // referral-core (feature "testkit") and tokio (features "macros", "rt-multi-thread").
//! async fn store() -> Option<my_store::MyStore> {
//!     Some(my_store::MyStore::connect_fresh().await) // `None` skips a case
//! }
//! referral_core::store_conformance_tests!(store);
//! ```

pub mod operators;
pub mod rewards;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Barrier;

use crate::client::ClientAddress;
use crate::clock::{Clock, TestClock};
use crate::event::{EventId, EventKind};
use crate::invite_code::InviteCode;
use crate::otp::{ChallengeId, OtpCode, OtpGuess, OtpKey, OtpPolicy};
use crate::phone::PhoneNumber;
use crate::random::SeededRandom;
use crate::service::{ActivateError, Config, ReferralService, RequestCodeError, VerifyError};
use crate::sms::StubSmsSender;
use crate::store::{
    ActivationOutcome, InvitePolicy, IssueOutcome, NewChallenge, NewUser, OtpStore, ReferralStore,
    RegisterOutcome, VerifyOutcome,
};
use crate::user::{PageLimit, ReferralCursor, User, UserId};

/// What the kit needs of a store: both ports, shareable across tasks.
pub trait KitStore: OtpStore + ReferralStore {}
impl<T: OtpStore + ReferralStore> KitStore for T {}

/// Expands to one `#[tokio::test]` per conformance case, each calling
/// `$factory().await` for a fresh store (`Option<S>`; `None` skips the case).
///
/// The calling crate needs `tokio` (features `macros`, `rt-multi-thread`)
/// among its dev-dependencies.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:path) => {
        $crate::__conformance_cases!($factory;
            otp_first_login_creates_user_then_logs_in,
            otp_code_verifies_once,
            otp_wrong_guesses_count_and_burn_the_code,
            otp_code_expires,
            otp_new_code_replaces_previous,
            otp_resend_cooldown,
            otp_send_cap_per_window,
            otp_failures_step_the_phone_up_across_codes,
            otp_step_up_burns_a_partly_guessed_code,
            otp_lowered_failure_budget_burns_a_live_short_code,
            otp_owner_logs_in_through_a_daily_attack,
            otp_client_send_limit,
            otp_sms_failure_leaves_no_code_and_no_charge,
            otp_revoke_of_replaced_challenge_keeps_live_one,
            otp_no_code_for_unknown_phone,
            otp_limits_are_per_phone,
            otp_global_send_budget,
            otp_country_allow_list,
            otp_test_phone_gets_its_fixed_code_without_sms,
            otp_test_phone_code_obeys_the_rules,
            register_retries_invite_code_collisions,
            register_is_idempotent_per_phone,
            user_lookup,
            invite_activates_once,
            invite_unknown_codes_are_rate_limited,
            invite_self_referral_refused,
            invite_cycles_refused,
            invite_unknown_user,
            events_record_changes_in_order,
            referrals_page_oldest_first,
            referrals_same_instant_keep_a_total_order,
            referrals_and_profile_of_unknown_user,
            race_one_user_many_codes,
            race_many_users_one_code,
            race_mutual_activations,
            race_chain_cycle,
            race_concurrent_verifies_one_success,
            race_concurrent_wrong_guesses_all_counted,
            race_concurrent_sends_one_charged,
            race_concurrent_first_logins_one_user,
            race_registrations_never_share_a_code,
            race_unknown_codes_limit_exact,
            race_global_send_budget_exact,
            race_guesses_across_the_step_up_boundary,
            race_client_send_limit_exact,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:path; $($case:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            match $factory().await {
                Some(store) => $crate::testkit::cases::$case(store).await,
                None => eprintln!("skipped {}: no store", stringify!($case)),
            }
        }
    )*};
}

/// A store under test with a service, a test clock and a stub SMS sender.
#[derive(Debug)]
pub struct Harness<S> {
    /// The store under test.
    pub store: Arc<S>,
    /// A service on it.
    pub service: ReferralService,
    /// The clock the service (and so the store) sees.
    pub clock: Arc<TestClock>,
    /// The SMS outbox.
    pub sms: Arc<StubSmsSender>,
    /// The code-hashing key the service uses.
    pub key: OtpKey,
    phones: std::sync::atomic::AtomicU64,
}

/// A service on `store` with the harness's ports and `config`.
fn service_on<S: KitStore>(
    store: &Arc<S>,
    sms: &Arc<StubSmsSender>,
    clock: &Arc<TestClock>,
    key: &OtpKey,
    seed: u64,
    config: Config,
) -> ReferralService {
    ReferralService::builder(Arc::clone(store), Arc::<StubSmsSender>::clone(sms))
        .clock(Arc::<TestClock>::clone(clock))
        .random(Arc::new(SeededRandom::new(seed)))
        .otp_key(key.clone())
        .config(config)
        .build()
        .expect("valid config")
}

impl<S: KitStore> Harness<S> {
    /// A harness with the default configuration.
    pub fn new(store: S) -> Self {
        Self::with_config(store, Config::default())
    }

    /// A harness with `config`.
    ///
    /// # Panics
    /// When the configuration is invalid.
    pub fn with_config(store: S, config: Config) -> Self {
        let store = Arc::new(store);
        let clock = Arc::new(TestClock::default());
        let sms = Arc::new(StubSmsSender::with_clock(Arc::<TestClock>::clone(&clock)));
        let key = OtpKey::from_bytes(&[42u8; 32]).expect("32 bytes");
        let service = service_on(&store, &sms, &clock, &key, 0x5eed, config);
        Self {
            store,
            service,
            clock,
            sms,
            key,
            phones: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Another service with `config` on this harness's store, clock, SMS
    /// outbox and key (say, the same deployment restarted with other
    /// settings).
    ///
    /// # Panics
    /// When the configuration is invalid.
    pub fn service_with(&self, config: Config) -> ReferralService {
        service_on(&self.store, &self.sms, &self.clock, &self.key, 0x10, config)
    }

    /// A phone number no other call of this harness returned.
    pub fn phone(&self) -> PhoneNumber {
        let n = self
            .phones
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("+7999{:07}", n).parse().expect("valid phone")
    }

    /// The current test time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves the test clock.
    pub fn advance_secs(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// Requests a code for `phone` and returns the one the stub received.
    ///
    /// # Panics
    /// When the request fails.
    pub async fn send_code(&self, phone: &PhoneNumber) -> OtpCode {
        self.service
            .request_code(phone)
            .await
            .expect("code request accepted");
        self.sms.latest(phone).expect("an SMS was sent").code
    }

    /// A code of the configured length that is not `code`.
    pub fn wrong(&self, code: &OtpCode) -> OtpCode {
        let digits = code.expose();
        let first = if digits.starts_with('0') { '1' } else { '0' };
        let wrong = format!("{first}{}", &digits[1..]);
        OtpCode::parse(&wrong, code.length()).expect("digits")
    }

    /// Logs a fresh phone in (request + verify) and returns its user.
    ///
    /// # Panics
    /// When the login fails.
    pub async fn login(&self) -> User {
        let phone = self.phone();
        let code = self.send_code(&phone).await;
        self.service
            .verify_code(&phone, &code)
            .await
            .expect("login")
            .user
    }

    /// Creates a user directly in the store.
    ///
    /// # Panics
    /// When the store does not create it.
    pub async fn register(&self, code: &str) -> User {
        let phone = self.phone();
        let user = NewUser {
            id: UserId::generate(&SeededRandom::new(phone_seed(&phone))),
            created_at: self.now(),
        };
        match self
            .store
            .register(&phone, user, &[code.parse().expect("invite code")])
            .await
            .expect("store")
        {
            RegisterOutcome::Created(u) => u,
            other => panic!("expected Created, got {other:?}"),
        }
    }

    /// `user` activates `owner`'s code through the store.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn activate(&self, user: &User, owner: &User) -> ActivationOutcome {
        self.store
            .activate_invite(
                user.id,
                &owner.invite_code,
                &InvitePolicy::default(),
                self.now(),
            )
            .await
            .expect("store")
    }
}

fn phone_seed(phone: &PhoneNumber) -> u64 {
    phone.digits()
}

/// Runs `n` copies of `task` at once (released together by a barrier) on the
/// multi-threaded runtime and returns their results in spawn order.
///
/// # Panics
/// When a task panics.
pub async fn race<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let fut = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

/// Rounds of a race: at least [`MIN_ROUNDS`], and more until the race has run
/// for [`RACE_BUDGET`] (at most [`MAX_ROUNDS`]), so a store that loses a race
/// only now and then still fails, fast stores get many rounds and slow ones
/// are not held up.
fn rounds() -> impl Iterator<Item = usize> {
    let start = std::time::Instant::now();
    (0..MAX_ROUNDS).take_while(move |&r| r < MIN_ROUNDS || start.elapsed() < RACE_BUDGET)
}
const MIN_ROUNDS: usize = 8;
const MAX_ROUNDS: usize = 500;
const RACE_BUDGET: Duration = Duration::from_millis(1000);
/// Pairs (or trios) racing at once in one round of the cycle races.
const PAIRS: usize = 12;

fn policy() -> OtpPolicy {
    OtpPolicy::default()
}

/// The cases, one function per rule. Each takes a fresh store.
pub mod cases {
    use super::*;

    /// The first verify creates the user (and its event); later logins find it.
    pub async fn otp_first_login_creates_user_then_logs_in<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let code = h.send_code(&phone).await;
        let first = h
            .service
            .verify_code(&phone, &code)
            .await
            .expect("first login");
        assert!(first.new_user);
        assert_eq!(first.user.phone, phone);
        assert_eq!(first.user.created_at, h.now());
        h.advance_secs(60);
        let code = h.send_code(&phone).await;
        let again = h
            .service
            .verify_code(&phone, &code)
            .await
            .expect("second login");
        assert!(!again.new_user);
        assert_eq!(again.user, first.user);
        let events = h.service.events_after(None, 10).await.expect("events");
        assert_eq!(events.len(), 1, "one UserRegistered event: {events:?}");
        assert_eq!(
            events[0].kind,
            EventKind::UserRegistered {
                user: first.user.id,
                phone,
                invite_code: first.user.invite_code
            }
        );
    }

    /// A right code verifies once; the second use finds no live code.
    pub async fn otp_code_verifies_once<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let code = h.send_code(&phone).await;
        h.service
            .verify_code(&phone, &code)
            .await
            .expect("first use");
        let second = h.service.verify_code(&phone, &code).await;
        assert!(matches!(second, Err(VerifyError::NoLiveCode)), "{second:?}");
    }

    /// Each wrong guess counts; after `max_attempts` the code is burned and
    /// even the right code fails, without counting.
    pub async fn otp_wrong_guesses_count_and_burn_the_code<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let code = h.send_code(&phone).await;
        let wrong = h.wrong(&code);
        for left in (0..5).rev() {
            let r = h.service.verify_code(&phone, &wrong).await;
            assert!(
                matches!(r, Err(VerifyError::WrongCode { attempts_left }) if attempts_left == left),
                "{r:?}"
            );
        }
        let r = h.service.verify_code(&phone, &code).await;
        assert!(matches!(r, Err(VerifyError::CodeBurned { .. })), "{r:?}");
        let r = h.service.verify_code(&phone, &wrong).await;
        assert!(matches!(r, Err(VerifyError::CodeBurned { .. })), "{r:?}");
        // A new code works again: the burned code's extra guesses were not counted.
        h.advance_secs(60);
        let code = h.send_code(&phone).await;
        h.service
            .verify_code(&phone, &code)
            .await
            .expect("fresh code");
    }

    /// A code works until its TTL and not at it.
    pub async fn otp_code_expires<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let (a, b) = (h.phone(), h.phone());
        let code_a = h.send_code(&a).await;
        let code_b = h.send_code(&b).await;
        h.advance_secs(299);
        h.service
            .verify_code(&a, &code_a)
            .await
            .expect("still valid at 299 s");
        h.advance_secs(1);
        let r = h.service.verify_code(&b, &code_b).await;
        assert!(matches!(r, Err(VerifyError::Expired)), "{r:?}");
    }

    /// A new code replaces the previous one.
    pub async fn otp_new_code_replaces_previous<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let old = h.send_code(&phone).await;
        h.advance_secs(60);
        let mut new = h.send_code(&phone).await;
        while new == old {
            h.advance_secs(60);
            new = h.send_code(&phone).await;
        }
        let r = h.service.verify_code(&phone, &old).await;
        assert!(matches!(r, Err(VerifyError::WrongCode { .. })), "{r:?}");
        h.service
            .verify_code(&phone, &new)
            .await
            .expect("the new code works");
    }

    /// A second code within the cooldown is refused with the time left.
    pub async fn otp_resend_cooldown<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let sent = h.service.request_code(&phone).await.expect("first");
        assert_eq!(sent.retry_after, Duration::from_secs(60));
        assert_eq!(sent.expires_in, Duration::from_secs(300));
        h.advance_secs(45);
        let r = h.service.request_code(&phone).await;
        assert!(
            matches!(r, Err(RequestCodeError::Cooldown { retry_after }) if retry_after == Duration::from_secs(15)),
            "{r:?}"
        );
        h.advance_secs(15);
        h.service.request_code(&phone).await.expect("cooldown over");
    }

    /// At most `max_sends_per_window` codes per phone in any rolling window.
    pub async fn otp_send_cap_per_window<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let start = h.now();
        for i in 0..5 {
            let sent = h.service.request_code(&phone).await.expect("within cap");
            if i == 4 {
                // The fifth send fills the window: the next is an hour after the first.
                assert_eq!(sent.retry_after, Duration::from_secs(3600 - 4 * 60));
            }
            h.advance_secs(60);
        }
        let r = h.service.request_code(&phone).await;
        // Now = start + 300 s; the first send leaves the window at start + 3600 s.
        assert!(
            matches!(r, Err(RequestCodeError::TooManySends { retry_after }) if retry_after == Duration::from_secs(3300)),
            "{r:?}"
        );
        h.clock.set(start + TimeDelta::seconds(3599));
        assert!(h.service.request_code(&phone).await.is_err());
        h.clock.set(start + TimeDelta::seconds(3600));
        h.service
            .request_code(&phone)
            .await
            .expect("the window freed a place");
    }

    /// `max_failures_per_window` wrong guesses across codes step the phone
    /// up, never lock it: the live code is burned, every code sent until the
    /// window frees has `step_up_length` digits and logs in, wrong guesses at
    /// it still count and burn it; then codes are short again.
    pub async fn otp_failures_step_the_phone_up_across_codes<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let start = h.now();
        let mut last = None;
        for round in 0..2 {
            let code = h.send_code(&phone).await;
            assert_eq!(code.length().get(), 4, "round {round}");
            let wrong = h.wrong(&code);
            for _ in 0..5 {
                let r = h.service.verify_code(&phone, &wrong).await;
                assert!(
                    matches!(r, Err(VerifyError::WrongCode { .. })),
                    "round {round}: {r:?}"
                );
            }
            last = Some(code);
            h.advance_secs(60);
        }
        // Ten wrong guesses in the window: the last short code stays burned.
        let r = h.service.verify_code(&phone, &last.expect("sent")).await;
        assert!(matches!(r, Err(VerifyError::CodeBurned { .. })), "{r:?}");
        // The next code is long: a 4-digit guess never matches it, and its
        // wrong guesses count and burn it as before.
        let sent = h
            .service
            .request_code(&phone)
            .await
            .expect("stepped up, not locked");
        assert_eq!(sent.code_length.get(), 8);
        let code = h.sms.latest(&phone).expect("sent").code;
        assert_eq!(code.length().get(), 8);
        let short = OtpCode::parse(&code.expose()[..4], Default::default()).expect("code");
        let r = h.service.verify_code(&phone, &short).await;
        assert!(
            matches!(r, Err(VerifyError::WrongCode { attempts_left: 4 })),
            "{r:?}"
        );
        for left in (0..4).rev() {
            let r = h.service.verify_code(&phone, &h.wrong(&code)).await;
            assert!(
                matches!(r, Err(VerifyError::WrongCode { attempts_left }) if attempts_left == left),
                "{r:?}"
            );
        }
        let r = h.service.verify_code(&phone, &code).await;
        assert!(matches!(r, Err(VerifyError::CodeBurned { .. })), "{r:?}");
        // The owner, reading the SMS, logs in with a long code.
        h.advance_secs(60);
        let code = h.send_code(&phone).await;
        assert_eq!(code.length().get(), 8);
        h.service
            .verify_code(&phone, &code)
            .await
            .expect("the owner logs in while stepped up");
        // The 15 wrong guesses were at start, start + 60 s and start + 120 s
        // (5 each): ten are still in the window at start + 24 h + 59 s, none
        // at start + 24 h + 120 s.
        h.clock
            .set(start + TimeDelta::hours(24) + TimeDelta::seconds(59));
        assert_eq!(h.send_code(&phone).await.length().get(), 8);
        h.clock
            .set(start + TimeDelta::hours(24) + TimeDelta::seconds(120));
        let sent = h.service.request_code(&phone).await.expect("sent");
        assert_eq!(
            sent.code_length.get(),
            4,
            "the window freed: short codes again"
        );
        let code = h.sms.latest(&phone).expect("sent").code;
        h.service.verify_code(&phone, &code).await.expect("logs in");
    }

    /// The wrong guess that steps a phone up burns the live code even when
    /// that code itself has attempts left: no short code verifies after it.
    pub async fn otp_step_up_burns_a_partly_guessed_code<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        // 4 + 4 wrong guesses over two codes, then 2 at a third: ten in all,
        // with the third code at 3 attempts left.
        for guesses in [4, 4, 2] {
            let code = h.send_code(&phone).await;
            for _ in 0..guesses {
                let r = h.service.verify_code(&phone, &h.wrong(&code)).await;
                assert!(matches!(r, Err(VerifyError::WrongCode { .. })), "{r:?}");
            }
            if guesses == 2 {
                let r = h.service.verify_code(&phone, &code).await;
                assert!(
                    matches!(r, Err(VerifyError::CodeBurned { .. })),
                    "the short code died with the step-up: {r:?}"
                );
            }
            h.advance_secs(60);
        }
        assert_eq!(h.send_code(&phone).await.length().get(), 8);
    }

    /// A failure budget lowered while a phone's short code is live (a
    /// restart with a smaller `max_failures_per_window`) steps the phone up
    /// at once: that code is burned at its next use, the right code
    /// included, and the next code is long.
    pub async fn otp_lowered_failure_budget_burns_a_live_short_code<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        // 4 wrong guesses at a first code, 2 at a second: 6 in the window,
        // under the default budget of 10.
        let mut live = None;
        for guesses in [4, 2] {
            let code = h.send_code(&phone).await;
            for _ in 0..guesses {
                let r = h.service.verify_code(&phone, &h.wrong(&code)).await;
                assert!(matches!(r, Err(VerifyError::WrongCode { .. })), "{r:?}");
            }
            live = Some(code);
            h.advance_secs(60);
        }
        let live = live.expect("sent");
        assert_eq!(live.length().get(), 4);
        // The same store, clock and key; the budget now 5.
        let mut config = Config::default();
        config.otp.max_failures_per_window = 5;
        let lowered = h.service_with(config);
        let r = lowered.verify_code(&phone, &live).await;
        assert!(
            matches!(r, Err(VerifyError::CodeBurned { .. })),
            "a short code must not log in once the phone is stepped up: {r:?}"
        );
        let sent = lowered
            .request_code(&phone)
            .await
            .expect("stepped up, not locked");
        assert_eq!(sent.code_length.get(), 8);
    }

    /// An attacker who knows the phone spends its failure budget every day
    /// (and asks for codes to keep the owner's SMS coming); the owner logs in
    /// every time, with the code the SMS brings.
    pub async fn otp_owner_logs_in_through_a_daily_attack<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let mut owner = None;
        for day in 0..3 {
            // The attacker: codes sent, 12 wrong guesses (the last ones find
            // the codes burned), as fast as the limits allow.
            for _ in 0..3 {
                let Ok(_) = h.service.request_code(&phone).await else {
                    break;
                };
                let code = h.sms.latest(&phone).expect("sent").code;
                for _ in 0..4 {
                    let _ = h.service.verify_code(&phone, &h.wrong(&code)).await;
                }
                h.advance_secs(60);
            }
            // The owner asks for a code and types what the SMS says.
            let sent = h
                .service
                .request_code(&phone)
                .await
                .unwrap_or_else(|e| panic!("day {day}: the owner gets a code: {e:?}"));
            assert_eq!(sent.code_length.get(), 8, "day {day}");
            let code = h.sms.latest(&phone).expect("sent").code;
            let login = h
                .service
                .verify_code(&phone, &code)
                .await
                .unwrap_or_else(|e| panic!("day {day}: the owner logs in: {e:?}"));
            if let Some(first) = &owner {
                assert_eq!(&login.user, first, "day {day}");
            }
            owner = Some(login.user);
            h.advance_secs(24 * 3600 - 180);
        }
    }

    /// Codes requested from one client address are limited per send window,
    /// whatever the phones; IPv6 clients by their /64; a failed send gives
    /// its place back; other clients and requests naming no client are not
    /// affected.
    pub async fn otp_client_send_limit<S: KitStore>(store: S) {
        let mut config = Config::default();
        config.otp.max_sends_per_client_per_window = Some(3);
        let h = Harness::with_config(store, config);
        let a: ClientAddress = "2001:db8:1:2::1".parse().expect("address");
        let a_too: ClientAddress = "2001:db8:1:2:ffff::7".parse().expect("address");
        let b: ClientAddress = "2001:db8:1:3::1".parse().expect("address");
        let start = h.now();
        h.sms.set_failing(true);
        let r = h.service.request_code_from(&h.phone(), a).await;
        assert!(matches!(r, Err(RequestCodeError::Sms(_))), "{r:?}");
        h.sms.set_failing(false);
        for client in [a, a_too, a] {
            h.service
                .request_code_from(&h.phone(), client)
                .await
                .expect("within the client's limit");
            h.advance_secs(10);
        }
        let r = h.service.request_code_from(&h.phone(), a_too).await;
        assert!(
            matches!(r, Err(RequestCodeError::ClientLimited { retry_after }) if retry_after == Duration::from_secs(3600 - 30)),
            "{r:?}"
        );
        assert_eq!(
            r.map(drop).err().and_then(|e| e.retry_after()),
            Some(Duration::from_secs(3570))
        );
        h.service
            .request_code_from(&h.phone(), b)
            .await
            .expect("another /64 is another client");
        h.service
            .request_code(&h.phone())
            .await
            .expect("no client named, no client limit");
        h.clock.set(start + TimeDelta::hours(1));
        h.service
            .request_code_from(&h.phone(), a)
            .await
            .expect("the first send left the window");
    }

    /// When the SMS fails, the stored code stops verifying and the send is not
    /// charged (no cooldown, no place in the send window).
    pub async fn otp_sms_failure_leaves_no_code_and_no_charge<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        h.sms.set_failing(true);
        for _ in 0..6 {
            let r = h.service.request_code(&phone).await;
            assert!(matches!(r, Err(RequestCodeError::Sms(_))), "{r:?}");
        }
        h.sms.set_failing(false);
        h.service
            .request_code(&phone)
            .await
            .expect("nothing was charged");

        // The same on the port: a revoked challenge does not verify, even right.
        let other = h.phone();
        let rng = SeededRandom::new(11);
        let id = ChallengeId::generate(&rng);
        let code = OtpCode::parse("4321", Default::default()).expect("code");
        let challenge = NewChallenge {
            id,
            hash: h.key.hash(&other, &code),
            step_up_hash: h.key.hash(&other, &code),
            issued_at: h.now(),
            expires_at: h.now() + TimeDelta::seconds(300),
        };
        let out = h
            .store
            .issue_otp(&other, &challenge, None, &policy(), h.now())
            .await
            .expect("store");
        assert!(matches!(out, IssueOutcome::Issued { .. }), "{out:?}");
        h.store.revoke_otp(&other, id).await.expect("store");
        h.store
            .revoke_otp(&other, id)
            .await
            .expect("revoke is idempotent");
        let guess = OtpGuess::new(&h.key, &other, &code);
        let out = h
            .store
            .verify_otp(&other, &guess, &policy(), h.now())
            .await
            .expect("store");
        assert_eq!(out, VerifyOutcome::NoChallenge);
        let id2 = ChallengeId::generate(&rng);
        let again = NewChallenge {
            id: id2,
            ..challenge
        };
        let out = h
            .store
            .issue_otp(&other, &again, None, &policy(), h.now())
            .await
            .expect("store");
        assert!(
            matches!(out, IssueOutcome::Issued { .. }),
            "no cooldown after a revoke: {out:?}"
        );
    }

    /// Revoking a challenge that was since replaced leaves the live one alone.
    pub async fn otp_revoke_of_replaced_challenge_keeps_live_one<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let rng = SeededRandom::new(12);
        let code = OtpCode::parse("2468", Default::default()).expect("code");
        let mut ids = Vec::new();
        for _ in 0..2 {
            let id = ChallengeId::generate(&rng);
            let c = NewChallenge {
                id,
                hash: h.key.hash(&phone, &code),
                step_up_hash: h.key.hash(&phone, &code),
                issued_at: h.now(),
                expires_at: h.now() + TimeDelta::seconds(300),
            };
            let out = h
                .store
                .issue_otp(&phone, &c, None, &policy(), h.now())
                .await
                .expect("store");
            assert!(matches!(out, IssueOutcome::Issued { .. }), "{out:?}");
            ids.push(id);
            h.advance_secs(60);
        }
        h.store.revoke_otp(&phone, ids[0]).await.expect("store");
        let guess = OtpGuess::new(&h.key, &phone, &code);
        let out = h
            .store
            .verify_otp(&phone, &guess, &policy(), h.now())
            .await
            .expect("store");
        assert_eq!(out, VerifyOutcome::Verified);
    }

    /// A phone that was never sent a code has none.
    pub async fn otp_no_code_for_unknown_phone<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let phone = h.phone();
        let code = OtpCode::parse("0000", Default::default()).expect("code");
        let r = h.service.verify_code(&phone, &code).await;
        assert!(matches!(r, Err(VerifyError::NoLiveCode)), "{r:?}");
        // Guesses without a live code are not counted against the phone.
        for _ in 0..20 {
            let _ = h.service.verify_code(&phone, &code).await;
        }
        let code = h.send_code(&phone).await;
        h.service
            .verify_code(&phone, &code)
            .await
            .expect("not locked");
    }

    /// One phone's cooldown, cap and lock do not touch another phone.
    pub async fn otp_limits_are_per_phone<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let (a, b) = (h.phone(), h.phone());
        let code = h.send_code(&a).await;
        let wrong = h.wrong(&code);
        for _ in 0..5 {
            let _ = h.service.verify_code(&a, &wrong).await;
        }
        assert!(
            h.service.request_code(&a).await.is_err(),
            "a is cooling down"
        );
        let code = h.send_code(&b).await;
        h.service
            .verify_code(&b, &code)
            .await
            .expect("b is unaffected");
    }

    /// The global send budget counts every phone's charged sends in the
    /// window; a failed (revoked) send gives its place back.
    pub async fn otp_global_send_budget<S: KitStore>(store: S) {
        let mut config = Config::default();
        config.otp.max_global_sends_per_window = Some(3);
        let h = Harness::with_config(store, config);
        let start = h.now();
        for _ in 0..3 {
            h.service
                .request_code(&h.phone())
                .await
                .expect("within budget");
            h.advance_secs(10);
        }
        let r = h.service.request_code(&h.phone()).await;
        assert!(
            matches!(r, Err(RequestCodeError::BudgetSpent { retry_after }) if retry_after == Duration::from_secs(3600 - 30)),
            "{r:?}"
        );
        h.clock.set(start + TimeDelta::hours(1));
        let phone = h.phone();
        h.sms.set_failing(true);
        assert!(matches!(
            h.service.request_code(&phone).await,
            Err(RequestCodeError::Sms(_))
        ));
        h.sms.set_failing(false);
        h.service
            .request_code(&phone)
            .await
            .expect("the first send left the window; the failed one was refunded");
        let r = h.service.request_code(&h.phone()).await;
        assert!(
            matches!(r, Err(RequestCodeError::BudgetSpent { retry_after }) if retry_after == Duration::from_secs(10)),
            "the second send leaves the window 10 s later: {r:?}"
        );
        h.advance_secs(10);
        h.service
            .request_code(&h.phone())
            .await
            .expect("a place freed");
    }

    /// With a country allow-list, other countries are refused before anything
    /// is stored or sent.
    pub async fn otp_country_allow_list<S: KitStore>(store: S) {
        let mut config = Config::default();
        config.otp.allowed_country_codes = Some(vec![7]);
        let h = Harness::with_config(store, config);
        let uk: PhoneNumber = "+442079460018".parse().expect("phone");
        let r = h.service.request_code(&uk).await;
        assert!(
            matches!(r, Err(RequestCodeError::CountryNotAllowed)),
            "{r:?}"
        );
        assert!(h.sms.latest(&uk).is_none());
        h.service
            .request_code(&h.phone())
            .await
            .expect("+7 is allowed");
    }

    /// A harness whose config lists one test phone, `+15550100001:2468`.
    fn test_phone_harness<S: KitStore>(store: S) -> (Harness<S>, PhoneNumber, OtpCode) {
        let config = Config {
            test_phones: "+15550100001:2468".parse().expect("test phones"),
            ..Config::default()
        };
        let phone: PhoneNumber = "+15550100001".parse().expect("phone");
        let code = OtpCode::parse("2468", crate::otp::OtpLength::default()).expect("code");
        (Harness::with_config(store, config), phone, code)
    }

    /// A test phone is issued its fixed code and sent no SMS; the code
    /// works only once it was requested. Other phones are unaffected: they
    /// get an SMS with a random code, and the test code does not log them in.
    pub async fn otp_test_phone_gets_its_fixed_code_without_sms<S: KitStore>(store: S) {
        let (h, test, fixed) = test_phone_harness(store);
        let r = h.service.verify_code(&test, &fixed).await;
        assert!(matches!(r, Err(VerifyError::NoLiveCode)), "{r:?}");
        h.service
            .request_code(&test)
            .await
            .expect("test phone code");
        assert!(h.sms.latest(&test).is_none(), "no SMS to a test phone");
        assert!(h.sms.messages().is_empty());
        h.service
            .verify_code(&test, &fixed)
            .await
            .expect("the fixed code logs in");

        let other = h.phone();
        let code = h.send_code(&other).await;
        assert_eq!(h.sms.messages().len(), 1);
        if code != fixed {
            let r = h.service.verify_code(&other, &fixed).await;
            assert!(matches!(r, Err(VerifyError::WrongCode { .. })), "{r:?}");
        }
        h.service
            .verify_code(&other, &code)
            .await
            .expect("other phones keep their random codes");
    }

    /// A test phone's code still verifies once, expires, and burns after
    /// `max_attempts` wrong guesses; the resend limits still apply.
    pub async fn otp_test_phone_code_obeys_the_rules<S: KitStore>(store: S) {
        let (h, test, fixed) = test_phone_harness(store);
        // Single use.
        h.service.request_code(&test).await.expect("code");
        h.service
            .verify_code(&test, &fixed)
            .await
            .expect("first use");
        let r = h.service.verify_code(&test, &fixed).await;
        assert!(matches!(r, Err(VerifyError::NoLiveCode)), "{r:?}");
        // The cooldown.
        let r = h.service.request_code(&test).await;
        assert!(matches!(r, Err(RequestCodeError::Cooldown { .. })), "{r:?}");
        // Expiry.
        h.advance_secs(60);
        h.service.request_code(&test).await.expect("code");
        h.advance_secs(300);
        let r = h.service.verify_code(&test, &fixed).await;
        assert!(matches!(r, Err(VerifyError::Expired)), "{r:?}");
        // Attempts.
        h.service.request_code(&test).await.expect("code");
        let wrong = h.wrong(&fixed);
        for _ in 0..5 {
            let r = h.service.verify_code(&test, &wrong).await;
            assert!(matches!(r, Err(VerifyError::WrongCode { .. })), "{r:?}");
        }
        let r = h.service.verify_code(&test, &fixed).await;
        assert!(matches!(r, Err(VerifyError::CodeBurned { .. })), "{r:?}");
        assert!(h.sms.messages().is_empty());
    }

    /// A taken candidate invite code is skipped; when all are taken nothing is
    /// created.
    pub async fn register_retries_invite_code_collisions<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let taken = h.register("AAAAAA").await;
        let phone = h.phone();
        let rng = SeededRandom::new(5);
        let codes: Vec<InviteCode> = ["aaaaaa", "BBBBBB"]
            .iter()
            .map(|c| c.parse().expect("code"))
            .collect();
        let new = NewUser {
            id: UserId::generate(&rng),
            created_at: h.now(),
        };
        let out = h.store.register(&phone, new, &codes).await.expect("store");
        let RegisterOutcome::Created(user) = out else {
            panic!("expected Created, got {out:?}")
        };
        assert_eq!(user.invite_code.as_str(), "BBBBBB");
        assert_ne!(user.id, taken.id);

        let third = h.phone();
        let new = NewUser {
            id: UserId::generate(&rng),
            created_at: h.now(),
        };
        let out = h.store.register(&third, new, &codes).await.expect("store");
        assert_eq!(out, RegisterOutcome::CodesExhausted);
        let new = NewUser {
            id: UserId::generate(&rng),
            created_at: h.now(),
        };
        let out = h
            .store
            .register(&third, new, &["CCCCCC".parse().expect("code")])
            .await
            .expect("store");
        assert!(
            matches!(out, RegisterOutcome::Created(_)),
            "nothing was left behind: {out:?}"
        );
        let events = h.store.events_after(None, 100).await.expect("store");
        assert_eq!(events.len(), 3, "{events:?}");
    }

    /// Registering a phone again returns the same user and changes nothing.
    pub async fn register_is_idempotent_per_phone<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let user = h.register("QQQQQQ").await;
        let rng = SeededRandom::new(6);
        let again = NewUser {
            id: UserId::generate(&rng),
            created_at: h.now() + TimeDelta::seconds(5),
        };
        let out = h
            .store
            .register(&user.phone, again, &["RRRRRR".parse().expect("code")])
            .await
            .expect("store");
        assert_eq!(out, RegisterOutcome::Existing(user.clone()));
        assert_eq!(h.store.user(user.id).await.expect("store"), Some(user));
        assert_eq!(
            h.store.events_after(None, 100).await.expect("store").len(),
            1
        );
    }

    /// Users are found by id; unknown ids are `None`.
    pub async fn user_lookup<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let user = h.login().await;
        assert_eq!(h.service.user(user.id).await.expect("store"), Some(user));
        let stranger = UserId::generate(&SeededRandom::new(99));
        assert_eq!(h.service.user(stranger).await.expect("store"), None);
    }

    /// The one-invite rule: one code per life, the same code again is a safe
    /// retry, another code is refused with the first one named.
    pub async fn invite_activates_once<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let (alice, bob, carol) = (h.login().await, h.login().await, h.login().await);
        let act = h
            .service
            .activate_invite(bob.id, &alice.invite_code)
            .await
            .expect("activate");
        assert!(act.newly_activated);
        assert_eq!(act.profile.activated_invite_code, Some(alice.invite_code));
        let lower: InviteCode = format!(" {} ", alice.invite_code.as_str().to_lowercase())
            .parse()
            .expect("code");
        let again = h
            .service
            .activate_invite(bob.id, &lower)
            .await
            .expect("retry");
        assert!(!again.newly_activated);
        let r = h.service.activate_invite(bob.id, &carol.invite_code).await;
        assert!(
            matches!(r, Err(ActivateError::AlreadyActivated { code }) if code == alice.invite_code),
            "{r:?}"
        );
        let p = h.service.profile(alice.id).await.expect("profile");
        assert_eq!(
            (p.referral_count, p.referrals.clone()),
            (1, vec![bob.phone])
        );
        assert_eq!(p.activated_invite_code, None);
        let p = h.service.profile(carol.id).await.expect("profile");
        assert_eq!(p.referral_count, 0);
    }

    /// Unknown codes are counted per user; past the limit every activation
    /// waits for the window, known codes too.
    pub async fn invite_unknown_codes_are_rate_limited<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let (alice, bob) = (h.login().await, h.login().await);
        let start = h.now();
        let unknown: InviteCode = "ZZZZZZ".parse().expect("code");
        for _ in 0..10 {
            let r = h.service.activate_invite(bob.id, &unknown).await;
            assert!(matches!(r, Err(ActivateError::CodeNotFound)), "{r:?}");
            h.advance_secs(1);
        }
        let r = h.service.activate_invite(bob.id, &alice.invite_code).await;
        assert!(
            matches!(r, Err(ActivateError::TooManyAttempts { retry_after }) if retry_after == Duration::from_secs(3590)),
            "{r:?}"
        );
        // Other users are not limited.
        let carol = h.login().await;
        h.service
            .activate_invite(carol.id, &alice.invite_code)
            .await
            .expect("carol is free");
        h.clock.set(start + TimeDelta::hours(1));
        h.service
            .activate_invite(bob.id, &alice.invite_code)
            .await
            .expect("window freed");
    }

    /// One's own code is refused and changes nothing.
    pub async fn invite_self_referral_refused<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let alice = h.login().await;
        let r = h
            .service
            .activate_invite(alice.id, &alice.invite_code)
            .await;
        assert!(matches!(r, Err(ActivateError::SelfReferral)), "{r:?}");
        let p = h.service.profile(alice.id).await.expect("profile");
        assert_eq!((p.activated_invite_code, p.referral_count), (None, 0));
    }

    /// A code whose owner this user referred, directly or through a chain, is
    /// refused.
    pub async fn invite_cycles_refused<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let (a, b, c, d) = (
            h.login().await,
            h.login().await,
            h.login().await,
            h.login().await,
        );
        assert!(matches!(
            h.activate(&b, &a).await,
            ActivationOutcome::Activated { .. }
        ));
        assert!(matches!(
            h.activate(&c, &b).await,
            ActivationOutcome::Activated { .. }
        ));
        assert_eq!(h.activate(&a, &b).await, ActivationOutcome::Cycle, "direct");
        assert_eq!(
            h.activate(&a, &c).await,
            ActivationOutcome::Cycle,
            "through a chain"
        );
        // Not a cycle: D is outside the chain.
        assert!(matches!(
            h.activate(&a, &d).await,
            ActivationOutcome::Activated { .. }
        ));
        let r = h.service.activate_invite(d.id, &c.invite_code).await;
        assert!(
            matches!(r, Err(ActivateError::Cycle)),
            "d ← a ← b ← c: {r:?}"
        );
    }

    /// Activation for an unknown user is refused.
    pub async fn invite_unknown_user<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let alice = h.login().await;
        let ghost = UserId::generate(&SeededRandom::new(3));
        let r = h.service.activate_invite(ghost, &alice.invite_code).await;
        assert!(matches!(r, Err(ActivateError::UserNotFound)), "{r:?}");
        assert_eq!(
            h.service
                .profile(alice.id)
                .await
                .expect("profile")
                .referral_count,
            0
        );
    }

    /// Registrations and activations are in the outbox, in order, readable
    /// page by page; refused operations leave nothing.
    pub async fn events_record_changes_in_order<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let (a, b) = (h.login().await, h.login().await);
        h.advance_secs(5);
        h.service
            .activate_invite(b.id, &a.invite_code)
            .await
            .expect("activate");
        let _ = h.service.activate_invite(b.id, &a.invite_code).await;
        let _ = h.service.activate_invite(a.id, &a.invite_code).await;
        let _ = h.service.activate_invite(a.id, &b.invite_code).await;
        let all = h.service.events_after(None, 100).await.expect("events");
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        assert!(matches!(&all[0].kind, EventKind::UserRegistered { user, .. } if *user == a.id));
        assert!(matches!(&all[1].kind, EventKind::UserRegistered { user, .. } if *user == b.id));
        assert_eq!(
            all[2].kind,
            EventKind::InviteActivated {
                user: b.id,
                referrer: a.id,
                invite_code: a.invite_code
            }
        );
        assert_eq!(all[2].at, h.now());
        let first = h.service.events_after(None, 2).await.expect("events");
        assert_eq!(first, all[..2]);
        let rest = h
            .service
            .events_after(Some(first[1].id), 10)
            .await
            .expect("events");
        assert_eq!(rest, all[2..]);
        assert!(
            h.service
                .events_after(Some(all[2].id), 10)
                .await
                .expect("events")
                .is_empty()
        );
        assert!(
            h.service
                .events_after(Some(EventId(u64::MAX)), 10)
                .await
                .expect("events")
                .is_empty()
        );
    }

    /// Referrals come oldest first in pages; the last page has no cursor; the
    /// profile lists the first ones and counts all.
    pub async fn referrals_page_oldest_first<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let owner = h.login().await;
        let mut phones = Vec::new();
        for _ in 0..7 {
            let u = h.login().await;
            h.advance_secs(1);
            h.service
                .activate_invite(u.id, &owner.invite_code)
                .await
                .expect("activate");
            phones.push(u.phone);
        }
        let limit = PageLimit::new(3).expect("limit");
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = h
                .service
                .referrals(owner.id, cursor, limit)
                .await
                .expect("page");
            pages += 1;
            assert!(page.items.len() <= 3);
            seen.extend(page.items.iter().map(|r| r.phone));
            assert!(
                page.items
                    .windows(2)
                    .all(|w| w[0].activated_at <= w[1].activated_at)
            );
            match page.next {
                Some(next) => {
                    cursor = Some(ReferralCursor::parse(&next.to_string()).expect("round trip"));
                }
                None => break,
            }
        }
        assert_eq!((seen, pages), (phones.clone(), 3));
        let exact = h
            .service
            .referrals(owner.id, None, PageLimit::new(7).expect("limit"))
            .await
            .expect("page");
        assert_eq!(
            (exact.items.len(), exact.next),
            (7, None),
            "no cursor when nothing follows"
        );
        let p = h.service.profile(owner.id).await.expect("profile");
        assert_eq!((p.referral_count, p.referrals), (7, phones));
        let short = h
            .store
            .profile(owner.id, 2)
            .await
            .expect("store")
            .expect("user");
        assert_eq!((short.referral_count, short.referrals.len()), (7, 2));
    }

    /// Referrals activated at the same instant are ordered by user id, and
    /// paging through them neither skips nor repeats.
    pub async fn referrals_same_instant_keep_a_total_order<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let owner = h.login().await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let u = h.login().await;
            h.service
                .activate_invite(u.id, &owner.invite_code)
                .await
                .expect("activate");
            ids.push(u.id);
        }
        ids.sort();
        let limit = PageLimit::new(2).expect("limit");
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = h
                .service
                .referrals(owner.id, cursor, limit)
                .await
                .expect("page");
            seen.extend(page.items.iter().map(|r| r.user));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ids);
    }

    /// An unknown user has neither profile nor referral pages.
    pub async fn referrals_and_profile_of_unknown_user<S: KitStore>(store: S) {
        let h = Harness::new(store);
        let ghost = UserId::generate(&SeededRandom::new(4));
        assert_eq!(h.store.profile(ghost, 10).await.expect("store"), None);
        assert_eq!(
            h.store.referrals(ghost, None, 10).await.expect("store"),
            None
        );
    }

    /// One user activating many codes at once ends with exactly one (over
    /// several rounds, each with a fresh user).
    pub async fn race_one_user_many_codes<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        let mut owners = Vec::new();
        for _ in 0..16 {
            owners.push(h.login().await);
        }
        let owners = Arc::new(owners);
        for round in rounds().map(|r| r + 1) {
            let user = h.login().await;
            let results = race(owners.len(), |i| {
                let (h, owners, user) = (Arc::clone(&h), Arc::clone(&owners), user.clone());
                async move { h.activate(&user, &owners[i]).await }
            })
            .await;
            let wins = results
                .iter()
                .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
                .count();
            assert_eq!(wins, 1, "round {round}: {results:?}");
            let mut total = 0;
            for o in owners.iter() {
                total += h
                    .service
                    .profile(o.id)
                    .await
                    .expect("profile")
                    .referral_count;
            }
            assert_eq!(total, round as u64, "round {round}");
        }
    }

    /// Many users activating one code at once: every one counted, once.
    pub async fn race_many_users_one_code<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        let owner = h.login().await;
        let mut users = Vec::new();
        for _ in 0..40 {
            users.push(h.login().await);
        }
        let users = Arc::new(users);
        let results = race(40, |i| {
            let (h, users, owner) = (Arc::clone(&h), Arc::clone(&users), owner.clone());
            async move { h.activate(&users[i], &owner).await }
        })
        .await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, ActivationOutcome::Activated { .. })),
            "{results:?}"
        );
        let p = h.service.profile(owner.id).await.expect("profile");
        assert_eq!(p.referral_count, 40);
        let page = h
            .service
            .referrals(owner.id, None, PageLimit::new(500).expect("limit"))
            .await
            .expect("page");
        let distinct: HashSet<_> = page.items.iter().map(|r| r.user).collect();
        assert_eq!((page.items.len(), distinct.len()), (40, 40));
    }

    /// Two users activating each other's codes at the same instant: never
    /// both (many pairs racing at once, over several rounds).
    pub async fn race_mutual_activations<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        for round in rounds() {
            let mut pairs = Vec::new();
            for _ in 0..PAIRS {
                pairs.push((h.login().await, h.login().await));
            }
            let pairs = Arc::new(pairs);
            let results = race(2 * PAIRS, |i| {
                let (h, pairs) = (Arc::clone(&h), Arc::clone(&pairs));
                async move {
                    let (a, b) = &pairs[i / 2];
                    if i % 2 == 0 {
                        h.activate(a, b).await
                    } else {
                        h.activate(b, a).await
                    }
                }
            })
            .await;
            for (p, pair) in results.chunks(2).enumerate() {
                let wins = pair
                    .iter()
                    .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
                    .count();
                assert_eq!(wins, 1, "round {round}, pair {p}: {pair:?}");
                assert!(
                    pair.contains(&ActivationOutcome::Cycle),
                    "round {round}, pair {p}: {pair:?}"
                );
            }
        }
    }

    /// Concurrent activations that would close a longer cycle: only one of
    /// them succeeds. With A ← B in place, A activating C's code and C
    /// activating B's code race; both would make A ← B ← C ← A.
    pub async fn race_chain_cycle<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        for round in rounds() {
            let mut trios = Vec::new();
            for _ in 0..PAIRS {
                let (a, b, c) = (h.login().await, h.login().await, h.login().await);
                assert!(matches!(
                    h.activate(&b, &a).await,
                    ActivationOutcome::Activated { .. }
                ));
                trios.push((a, b, c));
            }
            let trios = Arc::new(trios);
            let results = race(2 * PAIRS, |i| {
                let (h, trios) = (Arc::clone(&h), Arc::clone(&trios));
                async move {
                    let (a, b, c) = &trios[i / 2];
                    if i % 2 == 0 {
                        h.activate(a, c).await
                    } else {
                        h.activate(c, b).await
                    }
                }
            })
            .await;
            for (t, pair) in results.chunks(2).enumerate() {
                let wins = pair
                    .iter()
                    .filter(|r| matches!(r, ActivationOutcome::Activated { .. }))
                    .count();
                assert_eq!(wins, 1, "round {round}, trio {t}: {pair:?}");
            }
        }
    }

    /// Many concurrent verifies of one right code: exactly one logs in (over
    /// several rounds).
    pub async fn race_concurrent_verifies_one_success<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        for round in rounds() {
            let phone = h.phone();
            let code = h.send_code(&phone).await;
            let results = race(16, |_| {
                let (h, code) = (Arc::clone(&h), code.clone());
                async move { h.service.verify_code(&phone, &code).await.is_ok() }
            })
            .await;
            assert_eq!(
                results.iter().filter(|ok| **ok).count(),
                1,
                "round {round}: {results:?}"
            );
        }
    }

    /// Concurrent wrong guesses are all counted: exactly `max_attempts` are
    /// answered as wrong, the rest find the code burned.
    pub async fn race_concurrent_wrong_guesses_all_counted<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        let phone = h.phone();
        let code = h.send_code(&phone).await;
        let wrong = h.wrong(&code);
        let results = race(20, |_| {
            let (h, wrong) = (Arc::clone(&h), wrong.clone());
            async move { h.service.verify_code(&phone, &wrong).await }
        })
        .await;
        let wrongs = results
            .iter()
            .filter(|r| matches!(r, Err(VerifyError::WrongCode { .. })))
            .count();
        let burned = results
            .iter()
            .filter(|r| matches!(r, Err(VerifyError::CodeBurned { .. })))
            .count();
        assert_eq!((wrongs, burned), (5, 15), "{results:?}");
        // Five failures counted for the phone: five more step it up.
        h.advance_secs(60);
        let code = h.send_code(&phone).await;
        assert_eq!(code.length().get(), 4);
        let wrong = h.wrong(&code);
        for _ in 0..5 {
            let _ = h.service.verify_code(&phone, &wrong).await;
        }
        h.advance_secs(60);
        assert_eq!(h.send_code(&phone).await.length().get(), 8);
    }

    /// Concurrent code requests for one phone: exactly one is charged and sent.
    pub async fn race_concurrent_sends_one_charged<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        let phone = h.phone();
        let results = race(16, |_| {
            let h = Arc::clone(&h);
            async move { h.service.request_code(&phone).await }
        })
        .await;
        let sent = results.iter().filter(|r| r.is_ok()).count();
        let cooling = results
            .iter()
            .filter(|r| matches!(r, Err(RequestCodeError::Cooldown { .. })))
            .count();
        assert_eq!((sent, cooling), (1, 15), "{results:?}");
    }

    /// Concurrent first logins of one phone create one user.
    pub async fn race_concurrent_first_logins_one_user<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        let phone = h.phone();
        let results = race(16, |i| {
            let h = Arc::clone(&h);
            async move {
                let rng = SeededRandom::new(1000 + i as u64);
                let user = NewUser {
                    id: UserId::generate(&rng),
                    created_at: h.now(),
                };
                let codes = [InviteCode::generate(&rng), InviteCode::generate(&rng)];
                h.store.register(&phone, user, &codes).await.expect("store")
            }
        })
        .await;
        let created: Vec<_> = results
            .iter()
            .filter_map(|r| match r {
                RegisterOutcome::Created(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(created.len(), 1, "{results:?}");
        for r in &results {
            match r {
                RegisterOutcome::Created(u) | RegisterOutcome::Existing(u) => {
                    assert_eq!(u, &created[0]);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            h.store.events_after(None, 100).await.expect("store").len(),
            1
        );
    }

    /// Concurrent registrations competing for a few invite codes never share
    /// one: each code is given once, the rest are exhausted.
    pub async fn race_registrations_never_share_a_code<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        let pool: Arc<Vec<InviteCode>> = Arc::new(
            ["KKKKK2", "KKKKK3", "KKKKK4", "KKKKK5"]
                .iter()
                .map(|c| c.parse().expect("code"))
                .collect(),
        );
        let phones: Arc<Vec<PhoneNumber>> = Arc::new((0..24).map(|_| h.phone()).collect());
        let results = race(24, |i| {
            let (h, pool, phones) = (Arc::clone(&h), Arc::clone(&pool), Arc::clone(&phones));
            async move {
                let user = NewUser {
                    id: UserId::generate(&SeededRandom::new(i as u64)),
                    created_at: h.now(),
                };
                let mut codes = pool.to_vec();
                codes.rotate_left(i % pool.len());
                h.store
                    .register(&phones[i], user, &codes)
                    .await
                    .expect("store")
            }
        })
        .await;
        let codes: Vec<InviteCode> = results
            .iter()
            .filter_map(|r| match r {
                RegisterOutcome::Created(u) => Some(u.invite_code),
                _ => None,
            })
            .collect();
        let distinct: HashSet<_> = codes.iter().collect();
        assert_eq!(
            distinct.len(),
            codes.len(),
            "a code was given twice: {codes:?}"
        );
        assert_eq!(codes.len(), 4, "every free code is used: {results:?}");
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == RegisterOutcome::CodesExhausted)
                .count(),
            20
        );
    }

    /// Concurrent code requests for different phones never overspend the
    /// global budget.
    pub async fn race_global_send_budget_exact<S: KitStore>(store: S) {
        let mut config = Config::default();
        config.otp.max_global_sends_per_window = Some(10);
        let h = Arc::new(Harness::with_config(store, config));
        let phones: Arc<Vec<PhoneNumber>> = Arc::new((0..30).map(|_| h.phone()).collect());
        let results = race(30, |i| {
            let (h, phones) = (Arc::clone(&h), Arc::clone(&phones));
            async move { h.service.request_code(&phones[i]).await }
        })
        .await;
        let sent = results.iter().filter(|r| r.is_ok()).count();
        let spent = results
            .iter()
            .filter(|r| matches!(r, Err(RequestCodeError::BudgetSpent { .. })))
            .count();
        assert_eq!((sent, spent), (10, 20), "{results:?}");
    }

    /// Concurrent unknown codes by one user: exactly the limit is counted.
    pub async fn race_unknown_codes_limit_exact<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        let user = h.login().await;
        let results = race(20, |i| {
            let h = Arc::clone(&h);
            async move {
                let code: InviteCode = format!("ZZZZ{:02}", i).parse().expect("code");
                h.store
                    .activate_invite(user.id, &code, &InvitePolicy::default(), h.now())
                    .await
                    .expect("store")
            }
        })
        .await;
        let unknown = results
            .iter()
            .filter(|r| **r == ActivationOutcome::UnknownCode)
            .count();
        let limited = results
            .iter()
            .filter(|r| matches!(r, ActivationOutcome::RateLimited { .. }))
            .count();
        assert_eq!((unknown, limited), (10, 10), "{results:?}");
    }

    /// Wrong guesses and the right short code racing across the step-up
    /// boundary: the right code verifies only if it came before the guess
    /// that stepped the phone up, never after it; and the next code is long.
    pub async fn race_guesses_across_the_step_up_boundary<S: KitStore>(store: S) {
        let h = Arc::new(Harness::new(store));
        for round in rounds() {
            let phone = h.phone();
            // 4 + 4 wrong guesses: two short of the step-up.
            for _ in 0..2 {
                let code = h.send_code(&phone).await;
                for _ in 0..4 {
                    let _ = h.service.verify_code(&phone, &h.wrong(&code)).await;
                }
                h.advance_secs(60);
            }
            let code = h.send_code(&phone).await;
            let wrong = h.wrong(&code);
            let results = race(7, |i| {
                let (h, guess) = (
                    Arc::clone(&h),
                    if i == 3 { code.clone() } else { wrong.clone() },
                );
                async move { h.service.verify_code(&phone, &guess).await }
            })
            .await;
            let wrongs = results
                .iter()
                .filter(|r| matches!(r, Err(VerifyError::WrongCode { .. })))
                .count();
            let verified = results[3].is_ok();
            // The 2nd wrong guess steps the phone up: at most 2 are counted
            // while the code lives, and the right one wins only before it.
            assert!(
                wrongs <= 2 && (!verified || wrongs < 2),
                "round {round}: {results:?}"
            );
            if !verified {
                assert_eq!(wrongs, 2, "round {round}: {results:?}");
                let r = h.service.verify_code(&phone, &code).await;
                assert!(
                    matches!(r, Err(VerifyError::CodeBurned { .. })),
                    "round {round}: {r:?}"
                );
                h.advance_secs(60);
                assert_eq!(h.send_code(&phone).await.length().get(), 8, "round {round}");
            }
            h.advance_secs(60);
        }
    }

    /// Concurrent code requests from one client for different phones never
    /// pass the client's limit.
    pub async fn race_client_send_limit_exact<S: KitStore>(store: S) {
        let mut config = Config::default();
        config.otp.max_sends_per_client_per_window = Some(5);
        let h = Arc::new(Harness::with_config(store, config));
        let client: ClientAddress = "198.51.100.20".parse().expect("address");
        let phones: Arc<Vec<PhoneNumber>> = Arc::new((0..20).map(|_| h.phone()).collect());
        let results = race(20, |i| {
            let (h, phones) = (Arc::clone(&h), Arc::clone(&phones));
            async move { h.service.request_code_from(&phones[i], client).await }
        })
        .await;
        let sent = results.iter().filter(|r| r.is_ok()).count();
        let limited = results
            .iter()
            .filter(|r| matches!(r, Err(RequestCodeError::ClientLimited { .. })))
            .count();
        assert_eq!((sent, limited), (5, 15), "{results:?}");
    }
}
