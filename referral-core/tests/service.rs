//! `ReferralService` when a port fails: store outages and SMS failures, with
//! mockall doubles that fail on cue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mockall::{Sequence, mock, predicate::always};
use referral_core::event::{Event, EventId};
use referral_core::otp::OtpLength;
use referral_core::otp::{ChallengeId, OtpGuess};
use referral_core::sms::{OtpSms, SmsError, SmsSender};
use referral_core::store::{
    ActivationOutcome, IssueOutcome, NewChallenge, NewUser, OtpStore, ReferralStore,
    RegisterOutcome, VerifyOutcome,
};
use referral_core::{
    ActivateError, ClientAddress, Config, ConfigError, InviteCode, InvitePolicy, OtpCode, OtpKey,
    OtpPolicy, PhoneNumber, Profile, ProfileError, ReferralCursor, ReferralPage, ReferralService,
    RequestCodeError, SeededRandom, StoreError, TestClock, User, UserId, VerifyError,
};

// `OtpStore::verify_otp` takes a guess with its own lifetime, which mockall
// cannot express; the double records plain calls and an adapter forwards.
#[mockall::automock]
trait OtpCalls {
    fn issue(
        &self,
        phone: PhoneNumber,
        challenge: NewChallenge,
        client: Option<ClientAddress>,
        now: DateTime<Utc>,
    ) -> Result<IssueOutcome, StoreError>;
    fn revoke(&self, phone: PhoneNumber, challenge: ChallengeId) -> Result<(), StoreError>;
    fn verify(&self, phone: PhoneNumber, now: DateTime<Utc>) -> Result<VerifyOutcome, StoreError>;
}

struct Otp(MockOtpCalls);

#[async_trait]
impl OtpStore for Otp {
    async fn issue_otp(
        &self,
        phone: &PhoneNumber,
        challenge: &NewChallenge,
        client: Option<&ClientAddress>,
        _: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<IssueOutcome, StoreError> {
        self.0.issue(*phone, *challenge, client.copied(), now)
    }
    async fn revoke_otp(
        &self,
        phone: &PhoneNumber,
        challenge: ChallengeId,
    ) -> Result<(), StoreError> {
        self.0.revoke(*phone, challenge)
    }
    async fn verify_otp(
        &self,
        phone: &PhoneNumber,
        _: &OtpGuess,
        _: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        self.0.verify(*phone, now)
    }
    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

mock! {
    Users {}
    #[async_trait]
    impl ReferralStore for Users {
        async fn register(
            &self,
            phone: &PhoneNumber,
            user: NewUser,
            invite_codes: &[InviteCode],
        ) -> Result<RegisterOutcome, StoreError>;
        async fn user(&self, id: UserId) -> Result<Option<User>, StoreError>;
        async fn profile(&self, id: UserId, referrals: usize) -> Result<Option<Profile>, StoreError>;
        async fn activate_invite(
            &self,
            user: UserId,
            code: &InviteCode,
            policy: &InvitePolicy,
            now: DateTime<Utc>,
        ) -> Result<ActivationOutcome, StoreError>;
        async fn referrals(
            &self,
            user: UserId,
            after: Option<ReferralCursor>,
            limit: usize,
        ) -> Result<Option<ReferralPage>, StoreError>;
        async fn events_after(&self, after: Option<EventId>, limit: usize) -> Result<Vec<Event>, StoreError>;
        async fn health(&self) -> Result<(), StoreError>;
    }
}

mock! {
    #[derive(Debug)]
    Sms {}
    #[async_trait]
    impl SmsSender for Sms {
        async fn send(&self, sms: &OtpSms) -> Result<(), SmsError>;
    }
}

fn service(otp: MockOtpCalls, users: MockUsers, sms: MockSms) -> ReferralService {
    ReferralService::builder_with(Arc::new(Otp(otp)), Arc::new(users), Arc::new(sms))
        .clock(Arc::new(TestClock::default()))
        .random(Arc::new(SeededRandom::new(1)))
        .build()
        .unwrap()
}

fn down() -> StoreError {
    StoreError::unavailable(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

fn phone() -> PhoneNumber {
    "+79991234567".parse().unwrap()
}

fn code() -> OtpCode {
    OtpCode::parse("1234", Default::default()).unwrap()
}

fn user() -> User {
    User {
        id: UserId::generate(&SeededRandom::new(2)),
        phone: phone(),
        invite_code: "ABCDEF".parse().unwrap(),
        created_at: TestClock::default().now_for_tests(),
    }
}

trait NowForTests {
    fn now_for_tests(&self) -> DateTime<Utc>;
}

impl NowForTests for TestClock {
    fn now_for_tests(&self) -> DateTime<Utc> {
        referral_core::Clock::now(self)
    }
}

#[tokio::test]
async fn request_code_store_down_sends_nothing() {
    let mut otp = MockOtpCalls::new();
    otp.expect_issue()
        .times(1)
        .returning(|_, _, _, _| Err(down()));
    let mut sms = MockSms::new();
    sms.expect_send().times(0);
    let s = service(otp, MockUsers::new(), sms);
    let r = s.request_code(&phone()).await;
    assert!(
        matches!(r, Err(RequestCodeError::Store(StoreError::Unavailable(_)))),
        "{r:?}"
    );
}

#[tokio::test]
async fn request_code_sms_failure_revokes_that_challenge() {
    let mut seq = Sequence::new();
    let issued = Arc::new(std::sync::Mutex::new(None));
    let mut otp = MockOtpCalls::new();
    let seen = Arc::clone(&issued);
    otp.expect_issue()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, c, _, now| {
            *seen.lock().unwrap() = Some(c.id);
            Ok(IssueOutcome::Issued {
                next_send_at: now,
                code_length: OtpLength::default(),
            })
        });
    let mut sms = MockSms::new();
    sms.expect_send()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Err(SmsError::TimedOut));
    let seen = Arc::clone(&issued);
    otp.expect_revoke()
        .times(1)
        .in_sequence(&mut seq)
        .withf(move |p, id| *p == phone() && Some(*id) == *seen.lock().unwrap())
        .returning(|_, _| Ok(()));
    let s = service(otp, MockUsers::new(), sms);
    let r = s.request_code(&phone()).await;
    assert!(
        matches!(r, Err(RequestCodeError::Sms(SmsError::TimedOut))),
        "{r:?}"
    );
}

#[tokio::test]
async fn request_code_sms_failure_then_store_down_is_a_store_error() {
    let mut otp = MockOtpCalls::new();
    otp.expect_issue().returning(|_, _, _, now| {
        Ok(IssueOutcome::Issued {
            next_send_at: now,
            code_length: OtpLength::default(),
        })
    });
    otp.expect_revoke().times(1).returning(|_, _| Err(down()));
    let mut sms = MockSms::new();
    sms.expect_send().returning(|_| Err(SmsError::TimedOut));
    let s = service(otp, MockUsers::new(), sms);
    let r = s.request_code(&phone()).await;
    assert!(matches!(r, Err(RequestCodeError::Store(_))), "{r:?}");
}

#[tokio::test]
async fn request_code_stores_only_the_keyed_hash_of_the_code_it_sends() {
    let stored = Arc::new(std::sync::Mutex::new(None));
    let mut otp = MockOtpCalls::new();
    let seen = Arc::clone(&stored);
    otp.expect_issue()
        .times(1)
        .returning(move |_, c, client, now| {
            assert_eq!(c.expires_at - c.issued_at, chrono::TimeDelta::seconds(300));
            assert_eq!(client, None, "request_code names no client");
            *seen.lock().unwrap() = Some(c);
            Ok(IssueOutcome::Issued {
                next_send_at: now + chrono::TimeDelta::seconds(60),
                code_length: OtpLength::default(),
            })
        });
    let key = OtpKey::from_bytes(&[9u8; 32]).unwrap();
    let mut sms = MockSms::new();
    let (seen, check_key) = (Arc::clone(&stored), key.clone());
    sms.expect_send().times(1).returning(move |m| {
        let c = seen.lock().unwrap().expect("stored before sending");
        assert_eq!(m.to, phone());
        assert_eq!(check_key.hash(&m.to, &m.code), c.hash);
        assert_eq!(m.code.length().get(), 4);
        Ok(())
    });
    let s = ReferralService::builder_with(
        Arc::new(Otp(otp)),
        Arc::new(MockUsers::new()),
        Arc::new(sms),
    )
    .clock(Arc::new(TestClock::default()))
    .random(Arc::new(SeededRandom::new(1)))
    .otp_key(key)
    .build()
    .unwrap();
    let sent = s.request_code(&phone()).await.unwrap();
    assert_eq!(sent.retry_after, Duration::from_secs(60));
    assert_eq!(sent.expires_in, Duration::from_secs(300));
    assert_eq!(sent.code_length, OtpLength::default());
}

#[tokio::test]
async fn request_code_sends_the_step_up_code_the_store_kept() {
    let stored = Arc::new(std::sync::Mutex::new(None));
    let client: ClientAddress = "2001:db8::5".parse().unwrap();
    let mut otp = MockOtpCalls::new();
    let seen = Arc::clone(&stored);
    otp.expect_issue().times(1).returning(move |_, c, at, now| {
        assert_eq!(at, Some("2001:db8::/64".parse().unwrap()));
        assert_ne!(c.hash, c.step_up_hash);
        *seen.lock().unwrap() = Some(c);
        Ok(IssueOutcome::Issued {
            next_send_at: now,
            code_length: OtpLength::new(8).unwrap(),
        })
    });
    let key = OtpKey::from_bytes(&[9u8; 32]).unwrap();
    let mut sms = MockSms::new();
    let (seen, check_key) = (Arc::clone(&stored), key.clone());
    sms.expect_send().times(1).returning(move |m| {
        let c = seen.lock().unwrap().expect("stored before sending");
        assert_eq!(m.code.length().get(), 8);
        assert_eq!(check_key.hash(&m.to, &m.code), c.step_up_hash);
        Ok(())
    });
    let s = ReferralService::builder_with(
        Arc::new(Otp(otp)),
        Arc::new(MockUsers::new()),
        Arc::new(sms),
    )
    .clock(Arc::new(TestClock::default()))
    .random(Arc::new(SeededRandom::new(2)))
    .otp_key(key)
    .build()
    .unwrap();
    let sent = s.request_code_from(&phone(), client).await.unwrap();
    assert_eq!(sent.code_length.get(), 8);
}

#[tokio::test]
async fn request_code_client_limit_carries_retry_after() {
    let now = TestClock::default().now_for_tests();
    let mut otp = MockOtpCalls::new();
    otp.expect_issue().times(1).returning(move |_, _, _, _| {
        Ok(IssueOutcome::ClientLimited {
            retry_at: now + chrono::TimeDelta::milliseconds(2500),
        })
    });
    let mut sms = MockSms::new();
    sms.expect_send().times(0);
    let s = service(otp, MockUsers::new(), sms);
    let r = s
        .request_code_from(&phone(), "203.0.113.9".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(r, RequestCodeError::ClientLimited { .. }), "{r:?}");
    assert_eq!(r.retry_after(), Some(Duration::from_secs(3)), "{r:?}");
}

#[tokio::test]
async fn verify_store_down() {
    let mut otp = MockOtpCalls::new();
    otp.expect_verify().returning(|_, _| Err(down()));
    let mut users = MockUsers::new();
    users.expect_register().times(0);
    let s = service(otp, users, MockSms::new());
    let r = s.verify_code(&phone(), &code()).await;
    assert!(matches!(r, Err(VerifyError::Store(_))), "{r:?}");
}

#[tokio::test]
async fn verify_wrong_code_creates_nobody() {
    let mut otp = MockOtpCalls::new();
    otp.expect_verify()
        .returning(|_, _| Ok(VerifyOutcome::Mismatch { attempts_left: 3 }));
    let mut users = MockUsers::new();
    users.expect_register().times(0);
    let s = service(otp, users, MockSms::new());
    let r = s.verify_code(&phone(), &code()).await;
    assert!(
        matches!(r, Err(VerifyError::WrongCode { attempts_left: 3 })),
        "{r:?}"
    );
}

#[tokio::test]
async fn verify_then_user_store_down_or_exhausted() {
    for (outcome, want_exhausted) in [(Err(()), false), (Ok(()), true)] {
        let mut otp = MockOtpCalls::new();
        otp.expect_verify()
            .returning(|_, _| Ok(VerifyOutcome::Verified));
        let mut users = MockUsers::new();
        users
            .expect_register()
            .with(always(), always(), always())
            .times(1)
            .returning(move |_, _, codes| {
                assert_eq!(codes.len(), 8, "eight candidate codes");
                match outcome {
                    Err(()) => Err(down()),
                    Ok(()) => Ok(RegisterOutcome::CodesExhausted),
                }
            });
        let s = service(otp, users, MockSms::new());
        let r = s.verify_code(&phone(), &code()).await;
        if want_exhausted {
            assert!(matches!(r, Err(VerifyError::InviteCodesExhausted)), "{r:?}");
        } else {
            assert!(matches!(r, Err(VerifyError::Store(_))), "{r:?}");
        }
    }
}

#[tokio::test]
async fn verify_burned_carries_retry_after() {
    let now = TestClock::default().now_for_tests();
    let mut otp = MockOtpCalls::new();
    let mut seq = Sequence::new();
    otp.expect_verify()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _| {
            Ok(VerifyOutcome::Burned {
                issued_at: now - chrono::TimeDelta::milliseconds(58_500),
            })
        });
    otp.expect_verify()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _| {
            Ok(VerifyOutcome::Burned {
                issued_at: now - chrono::TimeDelta::seconds(10),
            })
        });
    let s = service(otp, MockUsers::new(), MockSms::new());
    let r = s.verify_code(&phone(), &code()).await.unwrap_err();
    assert_eq!(
        r.retry_after(),
        Some(Duration::from_secs(2)),
        "rounded up: {r:?}"
    );
    let r = s.verify_code(&phone(), &code()).await.unwrap_err();
    assert_eq!(r.retry_after(), Some(Duration::from_secs(50)), "{r:?}");
}

#[tokio::test]
async fn activate_store_down_and_vanished_user() {
    let mut users = MockUsers::new();
    let mut seq = Sequence::new();
    users
        .expect_activate_invite()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _, _| Err(down()));
    let referrer = user().id;
    users
        .expect_activate_invite()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _, _, _| Ok(ActivationOutcome::Activated { referrer }));
    users
        .expect_profile()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, n| {
            assert_eq!(n, 100);
            Ok(None)
        });
    let s = service(MockOtpCalls::new(), users, MockSms::new());
    let code: InviteCode = "ABCDEF".parse().unwrap();
    let r = s.activate_invite(user().id, &code).await;
    assert!(matches!(r, Err(ActivateError::Store(_))), "{r:?}");
    let r = s.activate_invite(user().id, &code).await;
    assert!(matches!(r, Err(ActivateError::UserNotFound)), "{r:?}");
}

#[tokio::test]
async fn profile_health_and_events_pass_store_errors_on() {
    let mut users = MockUsers::new();
    users.expect_profile().returning(|_, _| Err(down()));
    users.expect_health().returning(|| Err(down()));
    users.expect_events_after().returning(|_, _| Err(down()));
    let s = service(MockOtpCalls::new(), users, MockSms::new());
    let r = s.profile(user().id).await;
    assert!(matches!(r, Err(ProfileError::Store(_))), "{r:?}");
    assert!(s.health().await.unwrap_err().is_transient());
    assert!(s.events_after(None, 10).await.is_err());
}

#[test]
fn invalid_configs_are_refused() {
    let mut config = Config::default();
    config.otp.max_attempts = 0;
    let r = ReferralService::builder_with(
        Arc::new(Otp(MockOtpCalls::new())),
        Arc::new(MockUsers::new()),
        Arc::new(MockSms::new()),
    )
    .config(config)
    .build();
    assert_eq!(r.err(), Some(ConfigError::Zero("otp.max_attempts")));
    let mut config = Config::default();
    config.otp.ttl = Duration::ZERO;
    let r = ReferralService::builder_with(
        Arc::new(Otp(MockOtpCalls::new())),
        Arc::new(MockUsers::new()),
        Arc::new(MockSms::new()),
    )
    .config(config)
    .build();
    assert_eq!(r.err(), Some(ConfigError::Duration("otp.ttl")));
    for (config, want) in [
        (
            {
                let mut c = Config::default();
                c.otp.length = OtpLength::new(6).unwrap();
                c.otp.step_up_length = OtpLength::new(5).unwrap();
                c
            },
            ConfigError::StepUpShorter,
        ),
        (
            {
                let mut c = Config::default();
                c.otp.max_sends_per_client_per_window = Some(0);
                c
            },
            ConfigError::Zero("otp.max_sends_per_client_per_window"),
        ),
    ] {
        let r = ReferralService::builder_with(
            Arc::new(Otp(MockOtpCalls::new())),
            Arc::new(MockUsers::new()),
            Arc::new(MockSms::new()),
        )
        .config(config)
        .build();
        assert_eq!(r.err(), Some(want));
    }
}

#[tokio::test]
async fn rewards_are_off_without_a_reward_store() {
    let mut users = MockUsers::new();
    users.expect_user().returning(|_| Ok(None));
    let s = service(MockOtpCalls::new(), users, MockSms::new());
    assert!(!s.rewards_enabled());
    let conversion = referral_core::RecordConversion::new(
        "order-1".parse().unwrap(),
        referral_core::ConversionUser::Id(user().id),
        100,
        referral_core::Currency::RUB,
    );
    let r = s.record_conversion(conversion).await;
    assert!(
        matches!(
            r,
            Err(referral_core::RecordConversionError::RewardsDisabled)
        ),
        "{r:?}"
    );
    let r = s
        .reverse_conversion(&"order-1".parse().unwrap(), &"r-1".parse().unwrap(), None)
        .await;
    assert!(
        matches!(
            r,
            Err(referral_core::ReverseConversionError::RewardsDisabled)
        ),
        "{r:?}"
    );
    let r = s
        .mark_reward_paid(
            referral_core::RewardId::generate(&SeededRandom::new(5)),
            &"p-1".parse().unwrap(),
        )
        .await;
    assert!(
        matches!(r, Err(referral_core::MarkPaidError::RewardsDisabled)),
        "{r:?}"
    );
    let r = s
        .approve_due_rewards(TestClock::default().now_for_tests(), 10)
        .await;
    assert!(
        matches!(r, Err(referral_core::ApproveError::RewardsDisabled)),
        "{r:?}"
    );
    let r = s.rewards(user().id, None, Default::default()).await;
    assert!(
        matches!(r, Err(referral_core::RewardsError::UserNotFound)),
        "{r:?}"
    );
}

#[test]
fn a_paying_reward_policy_needs_a_reward_store_and_valid_amounts() {
    let build = |config: Config| {
        ReferralService::builder_with(
            Arc::new(Otp(MockOtpCalls::new())),
            Arc::new(MockUsers::new()),
            Arc::new(MockSms::new()),
        )
        .config(config)
        .build()
        .map(|_| ())
    };
    let mut config = Config::default();
    config.rewards.welcome = 300;
    assert_eq!(build(config), Err(ConfigError::RewardsWithoutStore));
    let mut config = Config::default();
    config.rewards.min_amount = -1;
    assert_eq!(
        build(config),
        Err(ConfigError::Amount("rewards.min_amount"))
    );
    let mut config = Config::default();
    config.rewards.max_per_referrer = Some(0);
    assert_eq!(
        build(config),
        Err(ConfigError::Amount("rewards.max_per_referrer"))
    );
    let mut config = Config::default();
    config.rewards.referrer_fixed = referral_core::Money::MAX_AMOUNT + 1;
    assert_eq!(
        build(config),
        Err(ConfigError::Amount("rewards.referrer_fixed"))
    );
    let mut config = Config::default();
    config.rewards.window = Duration::ZERO;
    assert_eq!(build(config), Err(ConfigError::Duration("rewards.window")));
    // Off by default: builds without a reward store.
    assert_eq!(build(Config::default()), Ok(()));
}

/// A writer the WARN log of the test-phone test goes to.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn test_phone_stores_its_fixed_code_sends_no_sms_and_logs_a_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    // Global: a thread-local default can miss callsites registered by other
    // tests' threads. No other test here sets a subscriber.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let key = OtpKey::from_bytes(&[9u8; 32]).unwrap();
    let expected = key.hash(
        &phone(),
        &OtpCode::parse("8642", Default::default()).unwrap(),
    );
    let mut otp = MockOtpCalls::new();
    otp.expect_issue()
        .times(1)
        .withf(move |p, c, _, _| *p == phone() && c.hash == expected)
        .returning(|_, _, _, now| {
            Ok(IssueOutcome::Issued {
                next_send_at: now,
                code_length: OtpLength::default(),
            })
        });
    otp.expect_verify()
        .times(1)
        .returning(|_, _| Ok(VerifyOutcome::Verified));
    let mut users = MockUsers::new();
    users
        .expect_register()
        .returning(|_, _, _| Ok(RegisterOutcome::Existing(user())));
    let mut sms = MockSms::new();
    sms.expect_send().times(0);
    let mut config = Config::default();
    config.test_phones = "+79991234567:8642".parse().unwrap();
    let s = ReferralService::builder_with(Arc::new(Otp(otp)), Arc::new(users), Arc::new(sms))
        .clock(Arc::new(TestClock::default()))
        .random(Arc::new(SeededRandom::new(1)))
        .otp_key(key)
        .config(config)
        .build()
        .unwrap();
    s.request_code(&phone()).await.unwrap();
    s.verify_code(
        &phone(),
        &OtpCode::parse("8642", Default::default()).unwrap(),
    )
    .await
    .unwrap();
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logs.matches("WARN").count(), 2, "{logs}");
    assert!(
        logs.contains("test phone: fixed code issued, no SMS sent"),
        "{logs}"
    );
    assert!(
        logs.contains("test phone: logged in with its fixed code"),
        "{logs}"
    );
    assert!(logs.contains("+79991234567"), "{logs}");
    assert!(!logs.contains("8642"), "the code was logged: {logs}");
}

#[test]
fn test_phone_codes_must_have_the_configured_length() {
    let mut config = Config::default();
    config.test_phones = "+79991234567:123456".parse().unwrap();
    let r = ReferralService::builder_with(
        Arc::new(Otp(MockOtpCalls::new())),
        Arc::new(MockUsers::new()),
        Arc::new(MockSms::new()),
    )
    .config(config)
    .build();
    assert_eq!(r.err(), Some(ConfigError::TestPhoneCodeLength(phone())));
}
