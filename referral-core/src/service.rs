//! [`ReferralService`]: the use cases, on top of the ports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::client::ClientAddress;
use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::event::{Event, EventId};
use crate::invite_code::InviteCode;
use crate::money::Money;
use crate::otp::{ChallengeId, OtpCode, OtpCodeError, OtpGuess, OtpKey, OtpLength, OtpPolicy};
use crate::phone::{PhoneError, PhoneNumber, Region};
use crate::random::{Random, ThreadRandom};
use crate::reward::{RewardId, RewardPolicy};
use crate::sms::{OtpSms, SmsError, SmsSender};
use crate::store::{
    ActivationOutcome, InvitePolicy, IssueOutcome, NewChallenge, NewUser, OperatorStore, OtpStore,
    ReferralStore, RegisterOutcome, RewardStore, VerifyOutcome, WelcomeReward,
};
use crate::test_phone::{self, TestPhones};
use crate::user::{PageLimit, Profile, ReferralCursor, ReferralPage, User, UserId};

mod operators;
mod rewards;
pub use operators::{
    BlockError, EXPORT_BATCH, OperatorReadError, UnblockError, UserDetailError, VoidRewardError,
};
pub use rewards::{
    ApproveError, ConversionRecorded, ConversionReversed, MarkPaidError, RecordConversion,
    RecordConversionError, ReverseConversionError, RewardsError,
};

/// How many referral phones a [`Profile`] from [`ReferralService::profile`] lists.
pub const PROFILE_REFERRALS: usize = 100;

/// Everything the service can be tuned with. `Config::default()` is the HTTP
/// contract's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The login-code lifecycle.
    pub otp: OtpPolicy,
    /// Invite activation limits.
    pub invite: InvitePolicy,
    /// Region for phone numbers written without `+`; `None` accepts only
    /// international numbers.
    pub default_region: Option<Region>,
    /// What the program pays (nothing by default). A policy that pays needs
    /// a reward store: see [`ServiceBuilder::rewards`].
    pub rewards: RewardPolicy,
    /// Phones issued a fixed code and sent no SMS (none by default); each
    /// code must have `otp.length` digits.
    pub test_phones: TestPhones,
}

/// A configuration the service refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A duration that must be positive is zero or too large.
    #[error("{0} must be between 1 second and 100 years")]
    Duration(&'static str),
    /// An amount of money is negative or above 10¹⁵ minor units (or zero
    /// where it must be at least 1).
    #[error("{0} must be between 0 and 10^15 minor units")]
    Amount(&'static str),
    /// The reward policy pays, but the service has no reward store.
    #[error("the reward policy pays, but no reward store was given")]
    RewardsWithoutStore,
    /// A test phone's fixed code does not have `otp.length` digits.
    #[error("the test code of {0} must have otp.length digits")]
    TestPhoneCodeLength(PhoneNumber),
    /// The step-up length is shorter than the normal length.
    #[error("otp.step_up_length must be at least otp.length")]
    StepUpShorter,
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let o = &self.otp;
        for (name, n) in [
            ("otp.max_attempts", o.max_attempts),
            ("otp.max_sends_per_window", o.max_sends_per_window),
            ("otp.max_failures_per_window", o.max_failures_per_window),
            (
                "otp.max_global_sends_per_window",
                o.max_global_sends_per_window.unwrap_or(1),
            ),
            (
                "otp.max_sends_per_client_per_window",
                o.max_sends_per_client_per_window.unwrap_or(1),
            ),
            (
                "invite.max_failures_per_window",
                self.invite.max_failures_per_window,
            ),
        ] {
            if n == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        for (name, d, may_be_zero) in [
            ("otp.ttl", o.ttl, false),
            ("otp.resend_cooldown", o.resend_cooldown, true),
            ("otp.send_window", o.send_window, false),
            ("otp.failure_window", o.failure_window, false),
            ("invite.failure_window", self.invite.failure_window, false),
            ("rewards.window", self.rewards.window, false),
            ("rewards.cap_window", self.rewards.cap_window, false),
            ("rewards.hold", self.rewards.hold, true),
        ] {
            if (d.is_zero() && !may_be_zero) || d > LONGEST {
                return Err(ConfigError::Duration(name));
            }
        }
        let r = &self.rewards;
        for (name, n, min) in [
            ("rewards.referrer_fixed", r.referrer_fixed, 0),
            ("rewards.min_amount", r.min_amount, 0),
            ("rewards.welcome", r.welcome, 0),
            (
                "rewards.max_per_referrer",
                r.max_per_referrer.unwrap_or(1),
                1,
            ),
        ] {
            if !(min..=Money::MAX_AMOUNT).contains(&n) {
                return Err(ConfigError::Amount(name));
            }
        }
        if let Some((phone, _)) = self
            .test_phones
            .iter()
            .find(|(_, code)| code.length() != o.length)
        {
            return Err(ConfigError::TestPhoneCodeLength(*phone));
        }
        if o.step_up_length < o.length {
            return Err(ConfigError::StepUpShorter);
        }
        Ok(())
    }
}

/// A code was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSent {
    /// The phone, normalised.
    pub phone: PhoneNumber,
    /// How long the code stays valid.
    pub expires_in: Duration,
    /// How long until this phone may ask for another code.
    pub retry_after: Duration,
    /// The digits of the code sent: the policy's `length`, or its
    /// `step_up_length` while the phone is stepped up.
    pub code_length: OtpLength,
}

/// Why [`ReferralService::request_code`] sent nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestCodeError {
    /// The previous code was sent less than the resend cooldown ago.
    #[error("a code was sent to this phone moments ago")]
    Cooldown {
        /// When another code may be asked for.
        retry_after: Duration,
    },
    /// The phone had its hourly number of codes.
    #[error("too many codes were sent to this phone")]
    TooManySends {
        /// When another code may be asked for.
        retry_after: Duration,
    },
    /// The client address asked for too many codes in the send window
    /// (any phones).
    #[error("too many codes were requested from this address")]
    ClientLimited {
        /// When another code may be asked for.
        retry_after: Duration,
    },
    /// The global SMS budget of the send window is spent (a cost circuit
    /// breaker): no code is sent to any phone until it frees.
    #[error("no more codes can be sent right now")]
    BudgetSpent {
        /// When the budget frees a place.
        retry_after: Duration,
    },
    /// The phone's country is not on the allow-list.
    #[error("codes cannot be sent to this country")]
    CountryNotAllowed,
    /// The SMS could not be sent; no usable code is left and the send was not
    /// charged.
    #[error("the code could not be sent")]
    Sms(#[source] SmsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RequestCodeError {
    /// How long to wait before asking again, for the rate-limit variants.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Cooldown { retry_after }
            | Self::TooManySends { retry_after }
            | Self::ClientLimited { retry_after }
            | Self::BudgetSpent { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user logged in.
    pub user: User,
    /// Whether this login created the user.
    pub new_user: bool,
}

/// Why [`ReferralService::verify_code`] logged nobody in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The code is wrong; the guess was counted.
    #[error("the code is wrong")]
    WrongCode {
        /// Wrong guesses this code still takes before it burns.
        attempts_left: u32,
    },
    /// The phone has no live code (never sent, already used, or replaced).
    #[error("no code is waiting for this phone")]
    NoLiveCode,
    /// The code expired.
    #[error("the code has expired")]
    Expired,
    /// The code took too many wrong guesses; even the right one fails now.
    #[error("too many wrong guesses: ask for a new code")]
    CodeBurned {
        /// When a new code may be asked for.
        retry_after: Duration,
    },
    /// No free invite code was found for the new user (the code space is
    /// nearly full, or the random source is broken). The login code was used.
    #[error("no free invite code could be found for the new user")]
    InviteCodesExhausted,
    /// The code was right, but an operator blocked this user (see
    /// [`crate::operator`]). The login code was used.
    #[error("this user is blocked")]
    Blocked,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VerifyError {
    /// How long to wait before trying again, for the rate-limit variants.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CodeBurned { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Why [`ReferralService::profile`] has no profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// No user has this id (deleted, or never existed).
    #[error("no such user")]
    UserNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`ReferralService::activate_invite`] activated nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivateError {
    /// No user has this id.
    #[error("no such user")]
    UserNotFound,
    /// The user activated another code before; one per life.
    #[error("an invite code was already activated")]
    AlreadyActivated {
        /// The code activated before.
        code: InviteCode,
    },
    /// No user has this code.
    #[error("no user has this invite code")]
    CodeNotFound,
    /// The code is the user's own.
    #[error("you cannot activate your own invite code")]
    SelfReferral,
    /// The code's owner was referred by this user, directly or through a chain.
    #[error("this code belongs to someone you referred")]
    Cycle,
    /// Too many unknown codes were tried.
    #[error("too many unknown invite codes were tried")]
    TooManyAttempts {
        /// When to try again.
        retry_after: Duration,
    },
    /// An operator blocked this user (see [`crate::operator`]).
    #[error("this user is blocked")]
    Blocked,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A successful activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The user's profile after the activation.
    pub profile: Profile,
    /// `false` when the code was already active (a retry).
    pub newly_activated: bool,
}

/// Why [`ReferralService::referrals`] has no page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferralsError {
    /// No user has this id.
    #[error("no such user")]
    UserNotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Phone login with one-time codes and the one-invite referral program.
///
/// Cheap to share: wrap it in an [`Arc`] and hand it to every request handler.
/// Build it with [`ReferralService::builder`].
pub struct ReferralService {
    otp_store: Arc<dyn OtpStore>,
    users: Arc<dyn ReferralStore>,
    rewards: Option<Arc<dyn RewardStore>>,
    operators: Option<Arc<dyn OperatorStore>>,
    sms: Arc<dyn SmsSender>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    key: OtpKey,
    config: Config,
}

impl fmt::Debug for ReferralService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferralService")
            .field("sms", &self.sms)
            .field("clock", &self.clock)
            .field("key", &self.key)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ReferralService`]; see [`ReferralService::builder`].
#[must_use]
pub struct ServiceBuilder {
    otp_store: Arc<dyn OtpStore>,
    users: Arc<dyn ReferralStore>,
    rewards: Option<Arc<dyn RewardStore>>,
    operators: Option<Arc<dyn OperatorStore>>,
    sms: Arc<dyn SmsSender>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    key: Option<OtpKey>,
    config: Config,
}

impl fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The random source (default: [`ThreadRandom`]).
    pub fn random(mut self, random: Arc<dyn Random>) -> Self {
        self.random = random;
        self
    }

    /// The code-hashing key. Every process sharing a store needs the same one;
    /// the default, a random key, suits a single process only.
    pub fn otp_key(mut self, key: OtpKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Turns rewards on with `store` keeping conversions and the ledger. It
    /// MUST be the same store as the [`ReferralStore`] the builder was given
    /// (see [`RewardStore`]). Without it, the reward operations answer their
    /// `RewardsDisabled` error, profiles show no balances, and a
    /// [`Config::rewards`] that pays is refused by [`build`](Self::build).
    pub fn rewards(mut self, store: Arc<dyn RewardStore>) -> Self {
        self.rewards = Some(store);
        self
    }

    /// Turns the operator use cases on (blocks, voids, search, the
    /// leaderboard, statistics, exports) with `store`. It MUST be the same
    /// store as the [`ReferralStore`] the builder was given (see
    /// [`OperatorStore`]). Without it, those operations answer their
    /// `OperatorsDisabled` error and nobody is blocked.
    pub fn operators(mut self, store: Arc<dyn OperatorStore>) -> Self {
        self.operators = Some(store);
        self
    }

    /// The configuration (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The service.
    ///
    /// # Errors
    /// [`ConfigError`] for a configuration that cannot work (a zero limit or
    /// window, an amount out of range, a paying reward policy without a
    /// reward store).
    pub fn build(self) -> Result<ReferralService, ConfigError> {
        self.config.validate()?;
        if self.config.rewards.pays() && self.rewards.is_none() {
            return Err(ConfigError::RewardsWithoutStore);
        }
        let key = self
            .key
            .unwrap_or_else(|| OtpKey::generate(self.random.as_ref()));
        Ok(ReferralService {
            otp_store: self.otp_store,
            users: self.users,
            rewards: self.rewards,
            operators: self.operators,
            sms: self.sms,
            clock: self.clock,
            random: self.random,
            key,
            config: self.config,
        })
    }
}

/// Whole seconds until `at`, rounded up, at least 1: what a client should wait.
fn wait_until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    let ms = (at - now).num_milliseconds().max(1);
    Duration::from_secs(u64::try_from(ms).unwrap_or(1).div_ceil(1000))
}

/// `at` truncated to the microsecond precision every store keeps, so a value
/// compares equal to itself read back.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at)
}

fn delta(d: Duration) -> TimeDelta {
    // Config::validate bounds every duration far below chrono's range.
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The number of candidate invite codes drawn for each new user. With
/// 31⁶ codes, all eight colliding needs a store more than ~ 90 % full.
const INVITE_CANDIDATES: usize = 8;

impl ReferralService {
    /// Starts a builder for a service on one `store` that keeps both login
    /// codes and users, sending codes with `sms`.
    pub fn builder<S>(store: Arc<S>, sms: Arc<dyn SmsSender>) -> ServiceBuilder
    where
        S: OtpStore + ReferralStore,
    {
        let otp_store: Arc<dyn OtpStore> = Arc::<S>::clone(&store);
        Self::builder_with(otp_store, store, sms)
    }

    /// Starts a builder for a service keeping login codes in `otp_store` and
    /// users in `users`.
    pub fn builder_with(
        otp_store: Arc<dyn OtpStore>,
        users: Arc<dyn ReferralStore>,
        sms: Arc<dyn SmsSender>,
    ) -> ServiceBuilder {
        ServiceBuilder {
            otp_store,
            users,
            rewards: None,
            operators: None,
            sms,
            clock: Arc::new(SystemClock),
            random: Arc::new(ThreadRandom),
            key: None,
            config: Config::default(),
        }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Parses a phone with the configured default region.
    ///
    /// # Errors
    /// [`PhoneError`] for input that is not a phone number.
    pub fn parse_phone(&self, input: &str) -> Result<PhoneNumber, PhoneError> {
        PhoneNumber::parse(input, self.config.default_region)
    }

    /// Parses a login code typed by a person: 4 to 8 digits, whatever the
    /// configured lengths (a stepped-up phone's codes are longer, and a guess
    /// of another length is simply a wrong guess).
    ///
    /// # Errors
    /// [`OtpCodeError`] for input that is not 4 to 8 ASCII digits.
    pub fn parse_code(&self, input: &str) -> Result<OtpCode, OtpCodeError> {
        OtpCode::parse_any(input)
    }

    /// The time now, at the microsecond precision every store keeps.
    fn now(&self) -> DateTime<Utc> {
        to_micros(self.clock.now())
    }

    /// Sends a fresh login code to `phone`, replacing any previous one, with
    /// no per-client limit: for callers that cannot name the client (a
    /// back-office tool); requests from the internet go through
    /// [`request_code_from`](Self::request_code_from).
    ///
    /// # Errors
    /// [`RequestCodeError`]: a limit, the sender or the store.
    pub async fn request_code(&self, phone: &PhoneNumber) -> Result<CodeSent, RequestCodeError> {
        self.send_code(phone, None).await
    }

    /// Sends a fresh login code to `phone` at the request of `client`,
    /// replacing any previous one.
    ///
    /// The code is stored (as a keyed hash) first, then sent. If the sender
    /// fails, the code is revoked and the send is not charged against the
    /// phone's or the client's limits. The answer does not depend on whether
    /// the phone belongs to a user. A stepped-up phone (see
    /// [`OtpPolicy::max_failures_per_window`]) is sent a code of
    /// `step_up_length` digits; [`CodeSent::code_length`] says which.
    ///
    /// # Errors
    /// [`RequestCodeError`]: a limit, the sender or the store.
    pub async fn request_code_from(
        &self,
        phone: &PhoneNumber,
        client: ClientAddress,
    ) -> Result<CodeSent, RequestCodeError> {
        self.send_code(phone, Some(&client)).await
    }

    async fn send_code(
        &self,
        phone: &PhoneNumber,
        client: Option<&ClientAddress>,
    ) -> Result<CodeSent, RequestCodeError> {
        let policy = &self.config.otp;
        if let Some(allowed) = &policy.allowed_country_codes
            && !allowed.iter().any(|c| phone.has_country_code(*c))
        {
            return Err(RequestCodeError::CountryNotAllowed);
        }
        let now = self.now();
        // A test phone gets its fixed code (stepped up or not), and no SMS
        // (below). Other phones: both candidate codes are drawn; the store
        // keeps the one the phone's state calls for, in the step that
        // decides it.
        let test_code = self.config.test_phones.code(phone);
        let (code, step_up_code) = match test_code {
            Some(fixed) => (fixed.clone(), fixed.clone()),
            None => {
                let code = OtpCode::generate(policy.length, self.random.as_ref());
                let step_up_code = if policy.step_up_length == policy.length {
                    code.clone()
                } else {
                    OtpCode::generate(policy.step_up_length, self.random.as_ref())
                };
                (code, step_up_code)
            }
        };
        let id = ChallengeId::generate(self.random.as_ref());
        let challenge = NewChallenge {
            id,
            hash: self.key.hash(phone, &code),
            step_up_hash: self.key.hash(phone, &step_up_code),
            issued_at: now,
            expires_at: now + delta(policy.ttl),
        };
        let outcome = self
            .otp_store
            .issue_otp(phone, &challenge, client, policy, now)
            .await?;
        let (next_send_at, code_length) = match outcome {
            IssueOutcome::Issued {
                next_send_at,
                code_length,
            } => (next_send_at, code_length),
            IssueOutcome::Cooldown { retry_at } => {
                return Err(RequestCodeError::Cooldown {
                    retry_after: wait_until(retry_at, now),
                });
            }
            IssueOutcome::TooManySends { retry_at } => {
                return Err(RequestCodeError::TooManySends {
                    retry_after: wait_until(retry_at, now),
                });
            }
            IssueOutcome::ClientLimited { retry_at } => {
                return Err(RequestCodeError::ClientLimited {
                    retry_after: wait_until(retry_at, now),
                });
            }
            IssueOutcome::BudgetSpent { retry_at } => {
                return Err(RequestCodeError::BudgetSpent {
                    retry_after: wait_until(retry_at, now),
                });
            }
        };
        let code = if code_length == code.length() {
            code
        } else {
            step_up_code
        };
        let code_length = code.length();
        let sms = OtpSms {
            to: *phone,
            code,
            expires_in: policy.ttl,
        };
        if test_code.is_some() {
            test_phone::log_use(phone, "fixed code issued, no SMS sent");
        } else if let Err(error) = self.sms.send(&sms).await {
            self.otp_store.revoke_otp(phone, id).await?;
            return Err(RequestCodeError::Sms(error));
        }
        Ok(CodeSent {
            phone: *phone,
            expires_in: policy.ttl,
            retry_after: if next_send_at > now {
                wait_until(next_send_at, now)
            } else {
                Duration::ZERO
            },
            code_length,
        })
    }

    /// Logs in with a code: the first success for a phone creates its user
    /// and invite code. A code verifies once.
    ///
    /// # Errors
    /// [`VerifyError`]: a wrong, missing, expired or burned code, a blocked
    /// user, no free invite code for a new user, or the store.
    pub async fn verify_code(
        &self,
        phone: &PhoneNumber,
        code: &OtpCode,
    ) -> Result<Login, VerifyError> {
        let policy = &self.config.otp;
        let now = self.now();
        let guess = OtpGuess::new(&self.key, phone, code);
        match self
            .otp_store
            .verify_otp(phone, &guess, policy, now)
            .await?
        {
            VerifyOutcome::Verified => {
                if self.config.test_phones.contains(phone) {
                    test_phone::log_use(phone, "logged in with its fixed code");
                }
            }
            VerifyOutcome::Mismatch { attempts_left } => {
                return Err(VerifyError::WrongCode { attempts_left });
            }
            VerifyOutcome::NoChallenge => return Err(VerifyError::NoLiveCode),
            VerifyOutcome::Expired => return Err(VerifyError::Expired),
            VerifyOutcome::Burned { issued_at } => {
                let resend_at = issued_at + delta(policy.resend_cooldown);
                return Err(VerifyError::CodeBurned {
                    retry_after: wait_until(resend_at, now),
                });
            }
        }
        let user = NewUser {
            id: UserId::generate(self.random.as_ref()),
            created_at: now,
        };
        let candidates: Vec<InviteCode> = (0..INVITE_CANDIDATES)
            .map(|_| InviteCode::generate(self.random.as_ref()))
            .collect();
        match self.users.register(phone, user, &candidates).await? {
            RegisterOutcome::Created(user) => Ok(Login {
                user,
                new_user: true,
            }),
            RegisterOutcome::Existing(user) => Ok(Login {
                user,
                new_user: false,
            }),
            RegisterOutcome::CodesExhausted => Err(VerifyError::InviteCodesExhausted),
            RegisterOutcome::Blocked(_) => Err(VerifyError::Blocked),
        }
    }

    /// The user's profile, listing the first [`PROFILE_REFERRALS`] referrals.
    ///
    /// # Errors
    /// [`ProfileError::UserNotFound`] for an unknown id, or the store.
    pub async fn profile(&self, user: UserId) -> Result<Profile, ProfileError> {
        let mut profile = self
            .users
            .profile(user, PROFILE_REFERRALS)
            .await?
            .ok_or(ProfileError::UserNotFound)?;
        self.fill_balances(&mut profile).await?;
        Ok(profile)
    }

    /// Puts the user's reward balances into `profile` (none with rewards off).
    async fn fill_balances(&self, profile: &mut Profile) -> Result<(), StoreError> {
        if let Some(rewards) = &self.rewards {
            profile.rewards = rewards.balances(profile.user.id).await?.unwrap_or_default();
        }
        Ok(())
    }

    /// Activates another user's invite code for `user`: once in a life, never
    /// one's own, never closing a cycle. Activating the same code again
    /// succeeds without changing anything.
    ///
    /// # Errors
    /// [`ActivateError`] saying which rule refused it, or the store.
    pub async fn activate_invite(
        &self,
        user: UserId,
        code: &InviteCode,
    ) -> Result<Activation, ActivateError> {
        let now = self.now();
        let mut policy = self.config.invite.clone();
        // The welcome reward is written by the activation itself (one atomic
        // step), so a retry or a race can never give it twice.
        policy.welcome = match (&self.rewards, self.config.rewards.welcome_money()) {
            (Some(_), Some(amount)) => Some(WelcomeReward {
                id: RewardId::generate(self.random.as_ref()),
                amount,
            }),
            _ => None,
        };
        let newly_activated = match self.users.activate_invite(user, code, &policy, now).await? {
            ActivationOutcome::Activated { .. } => true,
            ActivationOutcome::AlreadyActive { .. } => false,
            ActivationOutcome::AlreadyActivated { code } => {
                return Err(ActivateError::AlreadyActivated { code });
            }
            ActivationOutcome::UnknownCode => return Err(ActivateError::CodeNotFound),
            ActivationOutcome::SelfReferral => return Err(ActivateError::SelfReferral),
            ActivationOutcome::Cycle => return Err(ActivateError::Cycle),
            ActivationOutcome::RateLimited { retry_at } => {
                return Err(ActivateError::TooManyAttempts {
                    retry_after: wait_until(retry_at, now),
                });
            }
            ActivationOutcome::UserNotFound => return Err(ActivateError::UserNotFound),
            ActivationOutcome::Blocked => return Err(ActivateError::Blocked),
        };
        let mut profile = self
            .users
            .profile(user, PROFILE_REFERRALS)
            .await?
            .ok_or(ActivateError::UserNotFound)?;
        self.fill_balances(&mut profile).await?;
        Ok(Activation {
            profile,
            newly_activated,
        })
    }

    /// A page of the user's referrals, oldest activation first.
    ///
    /// # Errors
    /// [`ReferralsError::UserNotFound`] for an unknown id, or the store.
    pub async fn referrals(
        &self,
        user: UserId,
        after: Option<ReferralCursor>,
        limit: PageLimit,
    ) -> Result<ReferralPage, ReferralsError> {
        self.users
            .referrals(user, after, limit.get())
            .await?
            .ok_or(ReferralsError::UserNotFound)
    }

    /// The user with this id, if any (e.g. to check a token's subject).
    ///
    /// # Errors
    /// The store's.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.users.user(id).await
    }

    /// Up to `limit` outbox events after `after`: see
    /// [`ReferralStore::events_after`].
    ///
    /// # Errors
    /// The store's.
    pub async fn events_after(
        &self,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.users.events_after(after, limit).await
    }

    /// Whether the stores answer.
    ///
    /// # Errors
    /// The first store's error.
    pub async fn health(&self) -> Result<(), StoreError> {
        self.users.health().await?;
        self.otp_store.health().await
    }
}
