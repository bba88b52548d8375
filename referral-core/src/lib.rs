//! # referral-core
//!
//! Phone login with one-time SMS codes and a one-invite referral program, as
//! a framework-agnostic library: the domain types, the rules, and the ports a
//! storage backend and an SMS provider plug into.
//!
//! - People log in by phone: [`ReferralService::request_code`] sends a
//!   one-time code (4 digits by default), [`ReferralService::verify_code`]
//!   checks it. The first login creates the user with a unique 6-character
//!   [`InviteCode`].
//! - A user activates one other user's code, once in their life
//!   ([`ReferralService::activate_invite`]); their [`Profile`] shows the code
//!   they activated and the phones of everyone who activated theirs.
//! - With a [`RewardPolicy`] and a [`RewardStore`], the program pays: the
//!   host reports conversions and refunds
//!   ([`ReferralService::record_conversion`],
//!   [`ReferralService::reverse_conversion`]); referrers earn a fixed amount
//!   and a share, newcomers a welcome gift, held, approved, paid, clawed back
//!   ([`reward`] states the rules exactly).
//! - Operators ([`operator`]) block abusers, void rewards, search users and
//!   read the leaderboard, statistics and exports
//!   ([`ReferralService::block_user`] and the rest, behind
//!   [`ServiceBuilder::operators`]).
//! - Every rule that must hold under concurrency is one atomic store
//!   operation ([`store`]), so it holds across threads, processes and retries.
//!
//! This crate has no async runtime, web framework or database driver among
//! its dependencies. Stores: `referral-memory` (in memory) and
//! `referral-sqlx` (PostgreSQL); servers: the examples of the workspace.
//!
//! ## Quick start
//!
//! ```
//! use std::sync::Arc;
//! use referral_core::{ReferralService, StubSmsSender};
//! use referral_memory::MemoryStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let sms = Arc::new(StubSmsSender::new());
//! let service = ReferralService::builder(Arc::new(MemoryStore::new()), sms.clone()).build()?;
//!
//! // Alice logs in: a code goes out by SMS, she types it back.
//! let alice_phone = service.parse_phone("+7 999 123-45-67")?;
//! service.request_code(&alice_phone).await?;
//! let code = sms.latest(&alice_phone).unwrap().code;
//! let alice = service.verify_code(&alice_phone, &code).await?.user;
//!
//! // Bob logs in and activates Alice's code.
//! let bob_phone = service.parse_phone("+79990000001")?;
//! service.request_code(&bob_phone).await?;
//! let code = sms.latest(&bob_phone).unwrap().code;
//! let bob = service.verify_code(&bob_phone, &code).await?.user;
//! service.activate_invite(bob.id, &alice.invite_code).await?;
//!
//! let profile = service.profile(alice.id).await?;
//! assert_eq!(profile.referrals, vec![bob_phone]);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `testkit` | [`testkit`]: the conformance kit every store runs, the [`store_conformance_tests!`] macro, and the opt-in [`reward_conformance_tests!`] and [`operator_conformance_tests!`] (pulls in tokio; not semver-stable) |
//!
//! ## Bring your own store
//!
//! Implement [`store::OtpStore`] and [`store::ReferralStore`] (and
//! [`store::RewardStore`] to pay rewards), reading each method's contract,
//! then prove it with the kit:
//!
//! ```ignore
//! // tests/conformance.rs of your adapter crate, with referral-core's
//! // `testkit` feature and tokio (macros, rt-multi-thread) as dev-dependencies.
//! async fn new_store() -> my_store::MyStore { my_store::MyStore::connect_fresh().await }
//! referral_core::store_conformance_tests!(new_store);
//! ```
//!
//! ## Bring your own SMS sender
//!
//! Implement [`sms::SmsSender`] (see its example) and pass it to
//! [`ReferralService::builder`]. [`StubSmsSender`] keeps an outbox instead of
//! sending, for tests and development.

pub mod client;
pub mod clock;
pub mod error;
pub mod event;
pub mod invite_code;
mod keyset;
pub mod money;
pub mod operator;
pub mod otp;
pub mod phone;
pub mod random;
pub mod reward;
pub mod service;
pub mod sms;
pub mod store;
pub mod test_phone;
pub mod user;
mod uuid_id;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use client::{ClientAddress, ClientAddressError};
pub use clock::{Clock, SystemClock, TestClock};
pub use error::{BoxError, StoreError};
pub use event::{Event, EventId, EventKind};
pub use invite_code::{InviteCode, InviteCodeError};
pub use money::{BasisPoints, BasisPointsError, Currency, CurrencyError, Money};
pub use operator::{
    Block, DayStats, ExportBatch, LeaderboardEntry, LeaderboardLimit, PhonePrefix, ProgramTotals,
    Reason, ReasonError, ReferralExportBatch, ReferralExportRow, Referrer, RewardExportBatch,
    RewardExportRow, RewardTotals, Stats, StatsDays, UserCursor, UserDetail, UserQuery,
    UserSearchPage, UserSummary,
};
pub use otp::{OtpCode, OtpCodeError, OtpKey, OtpLength, OtpPolicy};
pub use phone::{E164, PhoneError, PhoneNumber, Region, RegionError};
pub use random::{Random, SeededRandom, ThreadRandom};
pub use reward::{
    Balance, Conversion, ConversionId, ConversionKind, ConversionUser, ExternalIdError,
    NewConversion, PayoutRef, ReversalId, Reward, RewardCursor, RewardCursorError, RewardId,
    RewardIdError, RewardKind, RewardPage, RewardPolicy, RewardStatus,
};
pub use service::{
    ActivateError, Activation, ApproveError, BlockError, CodeSent, Config, ConfigError,
    ConversionRecorded, ConversionReversed, Login, MarkPaidError, OperatorReadError, ProfileError,
    RecordConversion, RecordConversionError, ReferralService, ReferralsError, RequestCodeError,
    ReverseConversionError, RewardsError, ServiceBuilder, UnblockError, UserDetailError,
    VerifyError, VoidRewardError,
};
pub use sms::{SmsError, SmsSender, StubSmsSender};
pub use store::{InvitePolicy, OperatorStore, OtpStore, ReferralStore, RewardStore};
pub use test_phone::{TestPhones, TestPhonesError};
pub use user::{PageLimit, Profile, Referral, ReferralCursor, ReferralPage, User, UserId};
