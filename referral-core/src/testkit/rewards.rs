//! The reward cases of the conformance kit: one per rule of
//! [`RewardStore`] and of the welcome reward of
//! [`ReferralStore::activate_invite`](crate::store::ReferralStore::activate_invite), and a race per concurrency promise.
//!
//! A store opts in with [`reward_conformance_tests!`](crate::reward_conformance_tests)
//! once it implements [`RewardStore`] (the cases need both ports on one
//! store):
//!
//! ```ignore
//! async fn store() -> Option<my_store::MyStore> { Some(my_store::MyStore::connect_fresh().await) }
//! referral_core::store_conformance_tests!(store);
//! referral_core::reward_conformance_tests!(store);
//! ```
//!
//! Unless a case says otherwise it runs the policy of the worked example of
//! the HTTP contract: fixed 1000, 500 bp, welcome 300, cap 20000 per 30
//! days, all RUB, a 30-day hold, a 365-day window.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{KitStore, race, rounds};
use crate::clock::{Clock, TestClock};
use crate::event::{EventId, EventKind};
use crate::money::{BasisPoints, Currency, Money};
use crate::phone::PhoneNumber;
use crate::random::SeededRandom;
use crate::reward::{
    Balance, ConversionId, ConversionUser, PayoutRef, Reward, RewardKind, RewardPolicy,
    RewardStatus,
};
use crate::service::{
    Config, ConversionRecorded, ConversionReversed, MarkPaidError, RecordConversion,
    RecordConversionError, ReferralService, ReverseConversionError, RewardsError,
};
use crate::sms::StubSmsSender;
use crate::store::{NewUser, RegisterOutcome, RewardStore};
use crate::user::{PageLimit, User, UserId};

/// What the reward cases need of a store: every port, on one store.
pub trait RewardKitStore: KitStore + RewardStore {}
impl<T: KitStore + RewardStore> RewardKitStore for T {}

/// Expands to one `#[tokio::test]` per reward case, each calling
/// `$factory().await` for a fresh store (`Option<S>`; `None` skips the case).
#[macro_export]
macro_rules! reward_conformance_tests {
    ($factory:path) => {
        $crate::__reward_cases!($factory;
            rewards_welcome_at_activation,
            rewards_worked_example,
            rewards_fixed_once_per_referee,
            rewards_percent_rounds_down_and_zero_is_not_made,
            rewards_qualification,
            rewards_other_currency_earns_the_percentage_only,
            rewards_conversion_is_idempotent_and_conflicts,
            rewards_cap_cuts_fixed_first_and_rolls,
            rewards_cap_holds_when_a_clawback_outlives_its_reward,
            rewards_reversal_shrinks_and_voids_pending,
            rewards_reversal_claws_back_approved_and_paid,
            rewards_reversal_rules,
            rewards_approval_after_the_hold,
            rewards_mark_paid,
            rewards_page_newest_first,
            rewards_balances_per_currency,
            rewards_converted_on_referrals,
            race_identical_conversions,
            race_cap_many_referees,
            race_reversal_and_approval,
            race_approval_many_callers,
            race_reversals,
            race_payouts,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __reward_cases {
    ($factory:path; $($case:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            match $factory().await {
                Some(store) => $crate::testkit::rewards::cases::$case(store).await,
                None => eprintln!("skipped {}: no store", stringify!($case)),
            }
        }
    )*};
}

/// The policy of the worked example of the HTTP contract.
pub fn example_policy() -> RewardPolicy {
    RewardPolicy {
        referrer_fixed: 1000,
        referrer_bp: BasisPoints::new(500).expect("500 bp"),
        welcome: 300,
        max_per_referrer: Some(20_000),
        ..RewardPolicy::default()
    }
}

const DAY: u64 = 24 * 3600;

/// A store with rewards on, a service, and a test clock.
#[derive(Debug)]
pub struct RewardHarness<S> {
    /// The store under test.
    pub store: Arc<S>,
    /// A service on it, with rewards on.
    pub service: ReferralService,
    /// The clock the service sees.
    pub clock: Arc<TestClock>,
    users: AtomicU64,
    ids: AtomicU64,
}

impl<S: RewardKitStore> RewardHarness<S> {
    /// A harness with the worked example's policy.
    pub fn new(store: S) -> Self {
        Self::with_policy(store, example_policy())
    }

    /// A harness with `policy`.
    ///
    /// # Panics
    /// When the policy is invalid.
    pub fn with_policy(store: S, policy: RewardPolicy) -> Self {
        let store = Arc::new(store);
        let clock = Arc::new(TestClock::default());
        let config = Config {
            rewards: policy,
            ..Config::default()
        };
        let service = ReferralService::builder(Arc::clone(&store), Arc::new(StubSmsSender::new()))
            .rewards(Arc::<S>::clone(&store))
            .clock(Arc::<TestClock>::clone(&clock))
            .random(Arc::new(SeededRandom::new(0x5eed)))
            .config(config)
            .build()
            .expect("valid config");
        Self {
            store,
            service,
            clock,
            users: AtomicU64::new(0),
            ids: AtomicU64::new(0),
        }
    }

    /// The current test time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves the test clock.
    pub fn advance_secs(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    /// A new user, made directly in the store.
    ///
    /// # Panics
    /// When the store does not create it.
    pub async fn user(&self) -> User {
        let n = self.users.fetch_add(1, Ordering::Relaxed);
        let phone: PhoneNumber = format!("+7998{n:07}").parse().expect("phone");
        let code = format!("R{n:05}").parse().expect("invite code");
        let new = NewUser {
            id: UserId::generate(&SeededRandom::new(n + 1)),
            created_at: self.now(),
        };
        match self
            .store
            .register(&phone, new, &[code])
            .await
            .expect("store")
        {
            RegisterOutcome::Created(u) => u,
            other => panic!("expected Created, got {other:?}"),
        }
    }

    /// `referee` activates `referrer`'s code through the service.
    ///
    /// # Panics
    /// When the activation fails.
    pub async fn refer(&self, referee: &User, referrer: &User) {
        self.service
            .activate_invite(referee.id, &referrer.invite_code)
            .await
            .expect("activation");
    }

    /// A referrer and a referee who activated their code.
    pub async fn pair(&self) -> (User, User) {
        let (referrer, referee) = (self.user().await, self.user().await);
        self.refer(&referee, &referrer).await;
        (referrer, referee)
    }

    /// A conversion id no other call returned.
    pub fn conversion_id(&self) -> ConversionId {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("order-{n}").parse().expect("conversion id")
    }

    /// Records a conversion of `amount` RUB by `user`, happening now.
    pub async fn convert(
        &self,
        user: &User,
        id: &ConversionId,
        amount: i64,
    ) -> Result<ConversionRecorded, RecordConversionError> {
        self.convert_in(user, id, amount, Currency::RUB).await
    }

    /// Records a conversion of `amount` in `currency` by `user`.
    pub async fn convert_in(
        &self,
        user: &User,
        id: &ConversionId,
        amount: i64,
        currency: Currency,
    ) -> Result<ConversionRecorded, RecordConversionError> {
        self.service
            .record_conversion(RecordConversion::new(
                id.clone(),
                ConversionUser::Id(user.id),
                amount,
                currency,
            ))
            .await
    }

    /// Reverses `amount` (all that is left with `None`) of conversion `id`.
    pub async fn reverse(
        &self,
        id: &ConversionId,
        reversal: &str,
        amount: Option<i64>,
    ) -> Result<ConversionReversed, ReverseConversionError> {
        self.service
            .reverse_conversion(id, &reversal.parse().expect("reversal id"), amount)
            .await
    }

    /// Approves every due reward now.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn approve(&self) -> Vec<Reward> {
        self.service
            .approve_due_rewards(self.now(), 10_000)
            .await
            .expect("approve")
    }

    /// Every reward of `user`, newest first.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn rewards(&self, user: &User) -> Vec<Reward> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .service
                .rewards(user.id, after, PageLimit::new(500).expect("limit"))
                .await
                .expect("rewards");
            out.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return out,
            }
        }
    }

    /// The user's balances from their profile.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn balances(&self, user: &User) -> Vec<Balance> {
        self.service
            .profile(user.id)
            .await
            .expect("profile")
            .rewards
    }

    /// The user's balance in RUB (zeros when none).
    pub async fn rub(&self, user: &User) -> Balance {
        self.balances(user)
            .await
            .into_iter()
            .find(|b| b.currency == Currency::RUB)
            .unwrap_or(Balance::new(Currency::RUB))
    }

    /// Every event after `after`.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn events(&self, after: Option<EventId>) -> Vec<EventKind> {
        self.service
            .events_after(after, 100_000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// The id of the latest event.
    pub async fn last_event(&self) -> Option<EventId> {
        self.service
            .events_after(None, 100_000)
            .await
            .expect("events")
            .last()
            .map(|e| e.id)
    }
}

/// `(kind, amount, status)` of each reward, for compact assertions.
pub fn summary(rewards: &[Reward]) -> Vec<(RewardKind, i64, RewardStatus)> {
    rewards
        .iter()
        .map(|r| (r.kind, r.amount.amount(), r.status))
        .collect()
}

/// The sum of the non-voided rewards.
pub fn live_sum(rewards: &[Reward]) -> i64 {
    rewards
        .iter()
        .filter(|r| r.status != RewardStatus::Voided)
        .map(|r| r.amount.amount())
        .sum()
}

fn rub(n: i64) -> Money {
    Money::new(n, Currency::RUB)
}

fn usd() -> Currency {
    Currency::parse("USD").expect("USD")
}

/// The reward cases. Each takes a fresh store.
pub mod cases {
    use super::*;
    use RewardKind::{Clawback, ReferrerFixed, ReferrerPercent, Welcome};
    use RewardStatus::{Approved, Paid, Pending, Voided};

    /// Activating a code gives the welcome reward, approved at once, with its
    /// events, written by the activation; a retried activation gives none.
    pub async fn rewards_welcome_at_activation<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = (h.user().await, h.user().await);
        let before = h.last_event().await;
        h.refer(&bob, &alice).await;
        let rewards = h.rewards(&bob).await;
        assert_eq!(summary(&rewards), vec![(Welcome, 300, Approved)]);
        let w = &rewards[0];
        assert_eq!(w.referral, Some(alice.id));
        assert_eq!(w.referral_phone, Some(alice.phone));
        assert_eq!(w.conversion, None);
        assert_eq!((w.created_at, w.approved_at), (h.now(), Some(h.now())));
        let events = h.events(before).await;
        assert!(
            matches!(events[0], EventKind::InviteActivated { .. }),
            "{events:?}"
        );
        assert_eq!(
            events[1..],
            [
                EventKind::RewardCreated {
                    reward: w.id,
                    user: bob.id,
                    kind: Welcome,
                    amount: rub(300)
                },
                EventKind::RewardApproved {
                    reward: w.id,
                    user: bob.id
                },
            ]
        );
        assert_eq!(h.rub(&bob).await.approved, 300);
        assert!(h.rewards(&alice).await.is_empty());
        // A retry of the same activation gives nothing more.
        h.refer(&bob, &alice).await;
        assert_eq!(h.rewards(&bob).await.len(), 1);
        // No welcome in a policy without one.
        let config = Config {
            rewards: RewardPolicy {
                welcome: 0,
                ..example_policy()
            },
            ..Config::default()
        };
        let without =
            ReferralService::builder(Arc::clone(&h.store), Arc::new(StubSmsSender::new()))
                .rewards(Arc::<S>::clone(&h.store))
                .clock(Arc::<TestClock>::clone(&h.clock))
                .config(config)
                .build()
                .expect("valid config");
        let (a, b) = (h.user().await, h.user().await);
        without
            .activate_invite(b.id, &a.invite_code)
            .await
            .expect("activation");
        assert!(h.rewards(&b).await.is_empty());
    }

    /// The worked example of the HTTP contract, step by step.
    /// (The hold is one day here, so that, as in the example, every reward
    /// is still inside the 30-day cap window at step 5.)
    pub async fn rewards_worked_example<S: RewardKitStore>(store: S) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                hold: Duration::from_secs(DAY),
                ..example_policy()
            },
        );
        let (alice, bob) = (h.user().await, h.user().await);
        // 1. Bob activates Alice's code: welcome 300, approved at once.
        h.refer(&bob, &alice).await;
        assert_eq!(h.rub(&bob).await.approved, 300);
        // 2. o1 of 150000: fixed 1000 and 5 % = 7500, pending.
        let o1 = h.conversion_id();
        let before = h.last_event().await;
        let r = h.convert(&bob, &o1, 150_000).await.expect("o1");
        assert!(r.created);
        let created = |x: &Reward| EventKind::RewardCreated {
            reward: x.id,
            user: alice.id,
            kind: x.kind,
            amount: x.amount,
        };
        assert_eq!(
            h.events(before).await,
            vec![
                EventKind::ConversionRecorded {
                    conversion: o1.clone(),
                    user: bob.id,
                    amount: rub(150_000)
                },
                created(&r.rewards[0]),
                created(&r.rewards[1]),
            ]
        );
        assert_eq!(
            summary(&r.rewards),
            vec![
                (ReferrerFixed, 1000, Pending),
                (ReferrerPercent, 7500, Pending)
            ]
        );
        assert!(r.rewards.iter().all(|x| x.user == alice.id
            && x.referral == Some(bob.id)
            && x.referral_phone == Some(bob.phone)
            && x.conversion.as_ref() == Some(&o1)));
        // 3. 50000 refunded while pending: 666 and 5000.
        let rev = h
            .reverse(&o1, "refund-1", Some(50_000))
            .await
            .expect("refund");
        assert_eq!(rev.conversion.reversed_amount, 50_000);
        assert_eq!(
            summary(&rev.rewards),
            vec![
                (ReferrerFixed, 666, Pending),
                (ReferrerPercent, 5000, Pending)
            ]
        );
        // 4. The hold passes: both approved; the rest refunded: two clawbacks.
        h.advance_secs(DAY);
        assert_eq!(h.approve().await.len(), 2);
        let rev = h.reverse(&o1, "refund-2", None).await.expect("refund rest");
        assert_eq!(rev.conversion.reversed_amount, 150_000);
        assert_eq!(
            summary(&rev.rewards),
            vec![(Clawback, -666, Approved), (Clawback, -5000, Approved)]
        );
        let b = h.rub(&alice).await;
        assert_eq!((b.pending, b.approved, b.paid), (0, 0, 0));
        // 5. o2 of 300000: 15000, percentage only; o3 of 200000 is cut to 5000.
        let o2 = h.conversion_id();
        let r = h.convert(&bob, &o2, 300_000).await.expect("o2");
        assert_eq!(
            summary(&r.rewards),
            vec![(ReferrerPercent, 15_000, Pending)]
        );
        let o3 = h.conversion_id();
        let r = h.convert(&bob, &o3, 200_000).await.expect("o3");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 5_000, Pending)]);
        assert_eq!(r.rewards[0].original_amount, rub(5_000));
        let b = h.rub(&alice).await;
        assert_eq!((b.pending, b.approved, b.paid), (20_000, 0, 0));
    }

    /// The fixed part comes once per referee, with their first qualifying
    /// conversion; each referee brings their own.
    pub async fn rewards_fixed_once_per_referee<S: RewardKitStore>(store: S) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: None,
                ..example_policy()
            },
        );
        let (alice, bob) = h.pair().await;
        let carol = h.user().await;
        h.refer(&carol, &alice).await;
        let first = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("1");
        assert_eq!(
            summary(&first.rewards),
            vec![
                (ReferrerFixed, 1000, Pending),
                (ReferrerPercent, 500, Pending)
            ]
        );
        let second = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("2");
        assert_eq!(
            summary(&second.rewards),
            vec![(ReferrerPercent, 500, Pending)]
        );
        let carols = h
            .convert(&carol, &h.conversion_id(), 10_000)
            .await
            .expect("3");
        assert_eq!(
            summary(&carols.rewards),
            vec![
                (ReferrerFixed, 1000, Pending),
                (ReferrerPercent, 500, Pending)
            ]
        );
        // Reversing the first whole does not bring the fixed part back.
        h.reverse(&first.conversion.id, "r", None)
            .await
            .expect("reverse");
        let again = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("4");
        assert_eq!(
            summary(&again.rewards),
            vec![(ReferrerPercent, 500, Pending)]
        );
        assert_eq!(h.rub(&alice).await.pending, 500 + 1500 + 500);
    }

    /// The percentage is rounded down; a reward of 0 is not made (the
    /// conversion is still recorded and still qualifies).
    pub async fn rewards_percent_rounds_down_and_zero_is_not_made<S: RewardKitStore>(store: S) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                referrer_fixed: 0,
                ..example_policy()
            },
        );
        let (alice, bob) = h.pair().await;
        let r = h.convert(&bob, &h.conversion_id(), 199).await.expect("199");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 9, Pending)]);
        let r = h.convert(&bob, &h.conversion_id(), 19).await.expect("19");
        assert!(r.created);
        assert!(r.rewards.is_empty(), "{:?}", r.rewards);
        assert_eq!(r.conversion.amount, rub(19));
        assert_eq!(
            summary(&h.rewards(&alice).await),
            vec![(ReferrerPercent, 9, Pending)]
        );
        let page = h
            .service
            .referrals(alice.id, None, PageLimit::default())
            .await
            .expect("referrals");
        assert!(page.items[0].converted);
    }

    /// Only conversions of referred users, at or after the activation,
    /// within the window, of at least the minimum, earn.
    pub async fn rewards_qualification<S: RewardKitStore>(store: S) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                min_amount: 1000,
                max_per_referrer: None,
                window: Duration::from_secs(10 * DAY),
                ..example_policy()
            },
        );
        // No referrer: recorded, no reward.
        let loner = h.user().await;
        let r = h
            .convert(&loner, &h.conversion_id(), 50_000)
            .await
            .expect("loner");
        assert!(r.created && r.rewards.is_empty());
        let (alice, bob) = h.pair().await;
        let activated = h.now();
        let at = |secs: i64| activated + TimeDelta::seconds(secs);
        let conv = |id: ConversionId, amount: i64, when: DateTime<Utc>| {
            RecordConversion::new(id, ConversionUser::Id(bob.id), amount, Currency::RUB)
                .occurred_at(when)
        };
        // Before the activation: nothing.
        let r = h
            .service
            .record_conversion(conv(h.conversion_id(), 50_000, at(-1)))
            .await
            .expect("before");
        assert!(r.rewards.is_empty());
        // Below the minimum: nothing.
        let r = h
            .service
            .record_conversion(conv(h.conversion_id(), 999, at(0)))
            .await
            .expect("small");
        assert!(r.rewards.is_empty());
        // Past the window: nothing.
        h.advance_secs(11 * DAY);
        let r = h
            .service
            .record_conversion(conv(h.conversion_id(), 50_000, at(10 * DAY as i64 + 1)))
            .await
            .expect("late");
        assert!(r.rewards.is_empty());
        assert!(h.rewards(&alice).await.is_empty());
        let page = h
            .service
            .referrals(alice.id, None, PageLimit::default())
            .await
            .expect("referrals");
        assert!(!page.items[0].converted);
        // At the window's end, reported late, and at the minimum: earns.
        let r = h
            .service
            .record_conversion(conv(h.conversion_id(), 1000, at(10 * DAY as i64)))
            .await
            .expect("last moment");
        assert_eq!(
            summary(&r.rewards),
            vec![
                (ReferrerFixed, 1000, Pending),
                (ReferrerPercent, 50, Pending)
            ]
        );
        assert_eq!(r.rewards[0].created_at, h.now());
        assert_eq!(r.conversion.occurred_at, at(10 * DAY as i64));
        // The referee's own conversions never pay the referee.
        assert_eq!(
            h.rewards(&bob)
                .await
                .iter()
                .filter(|r| r.kind != Welcome)
                .count(),
            0
        );
    }

    /// A conversion in another currency earns the percentage (in that
    /// currency) and leaves the fixed part for the first one in the policy
    /// currency.
    pub async fn rewards_other_currency_earns_the_percentage_only<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = h.pair().await;
        let r = h
            .convert_in(&bob, &h.conversion_id(), 10_000, usd())
            .await
            .expect("usd");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 500, Pending)]);
        assert_eq!(r.rewards[0].amount, Money::new(500, usd()));
        let r = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("rub");
        assert_eq!(
            summary(&r.rewards),
            vec![
                (ReferrerFixed, 1000, Pending),
                (ReferrerPercent, 500, Pending)
            ]
        );
        let balances = h.balances(&alice).await;
        assert_eq!(
            balances
                .iter()
                .map(|b| (b.currency, b.pending))
                .collect::<Vec<_>>(),
            vec![(Currency::RUB, 1500), (usd(), 500)]
        );
    }

    /// The same conversion again changes nothing and answers the same; the
    /// same id with other fields is a conflict; bad input is refused.
    pub async fn rewards_conversion_is_idempotent_and_conflicts<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = h.pair().await;
        let id = h.conversion_id();
        let when = h.now();
        let base = RecordConversion::new(
            id.clone(),
            ConversionUser::Id(bob.id),
            10_000,
            Currency::RUB,
        )
        .occurred_at(when);
        let before = h.last_event().await;
        let first = h
            .service
            .record_conversion(base.clone())
            .await
            .expect("first");
        h.advance_secs(60);
        let again = h
            .service
            .record_conversion(base.clone())
            .await
            .expect("again");
        assert!(first.created && !again.created);
        assert_eq!(
            (&again.conversion, &again.rewards),
            (&first.conversion, &first.rewards)
        );
        // By phone, without `occurred_at`: the same conversion.
        let by_phone = RecordConversion::new(
            id.clone(),
            ConversionUser::Phone(bob.phone),
            10_000,
            Currency::RUB,
        );
        let r = h
            .service
            .record_conversion(by_phone)
            .await
            .expect("by phone");
        assert!(!r.created);
        let conflicts = [
            RecordConversion {
                amount: 10_001,
                ..base.clone()
            },
            RecordConversion {
                currency: usd(),
                ..base.clone()
            },
            RecordConversion {
                kind: "renewal".parse().expect("kind"),
                ..base.clone()
            },
            RecordConversion {
                user: ConversionUser::Id(alice.id),
                ..base.clone()
            },
            base.clone().occurred_at(when + TimeDelta::seconds(1)),
        ];
        for c in conflicts {
            let r = h.service.record_conversion(c.clone()).await;
            assert!(
                matches!(&r, Err(RecordConversionError::Conflict { existing }) if existing.id == id),
                "{c:?}: {r:?}"
            );
        }
        let events = h.events(before).await;
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, EventKind::ConversionRecorded { .. }))
                .count(),
            1,
            "{events:?}"
        );
        assert_eq!(h.rewards(&alice).await.len(), 2);
        // Unknown users and bad amounts change nothing.
        let ghost = UserId::generate(&SeededRandom::new(999_999));
        let r = h
            .service
            .record_conversion(RecordConversion::new(
                h.conversion_id(),
                ConversionUser::Id(ghost),
                10,
                Currency::RUB,
            ))
            .await;
        assert!(
            matches!(r, Err(RecordConversionError::UserNotFound)),
            "{r:?}"
        );
        let r = h
            .service
            .record_conversion(RecordConversion::new(
                h.conversion_id(),
                ConversionUser::Phone("+79000000000".parse().expect("phone")),
                10,
                Currency::RUB,
            ))
            .await;
        assert!(
            matches!(r, Err(RecordConversionError::UserNotFound)),
            "{r:?}"
        );
        for amount in [0, -5, Money::MAX_AMOUNT + 1] {
            let fresh = h.conversion_id();
            let r = h
                .service
                .record_conversion(RecordConversion::new(
                    fresh.clone(),
                    ConversionUser::Id(bob.id),
                    amount,
                    Currency::RUB,
                ))
                .await;
            assert!(
                matches!(r, Err(RecordConversionError::InvalidAmount)),
                "{amount}: {r:?}"
            );
            assert_eq!(h.service.conversion(&fresh).await.expect("store"), None);
        }
        let r = h
            .service
            .record_conversion(RecordConversion::new(
                h.conversion_id(),
                ConversionUser::Id(bob.id),
                Money::MAX_AMOUNT,
                Currency::RUB,
            ))
            .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(
            h.service.conversion(&id).await.expect("store"),
            Some(first.conversion)
        );
    }

    /// The cap: a reward that would pass it is cut (the fixed part first),
    /// none is made when nothing is left, per currency, and the rolling
    /// window frees room.
    pub async fn rewards_cap_cuts_fixed_first_and_rolls<S: RewardKitStore>(store: S) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: Some(1_500),
                cap_window: Duration::from_secs(10 * DAY),
                ..example_policy()
            },
        );
        let (alice, bob) = h.pair().await;
        let carol = h.user().await;
        h.refer(&carol, &alice).await;
        // 1000 + 400 = 1400 of 1500.
        let r = h.convert(&bob, &h.conversion_id(), 8_000).await.expect("1");
        assert_eq!(
            summary(&r.rewards),
            vec![
                (ReferrerFixed, 1000, Pending),
                (ReferrerPercent, 400, Pending)
            ]
        );
        // 100 left: the fixed part takes it, the percentage gets nothing.
        let r = h
            .convert(&carol, &h.conversion_id(), 8_000)
            .await
            .expect("2");
        assert_eq!(summary(&r.rewards), vec![(ReferrerFixed, 100, Pending)]);
        // Nothing left: none made.
        let r = h.convert(&bob, &h.conversion_id(), 8_000).await.expect("3");
        assert!(r.rewards.is_empty(), "{:?}", r.rewards);
        // Another currency has its own cap.
        let r = h
            .convert_in(&bob, &h.conversion_id(), 8_000, usd())
            .await
            .expect("usd");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 400, Pending)]);
        // The window rolls on: room again.
        h.advance_secs(10 * DAY);
        let r = h.convert(&bob, &h.conversion_id(), 8_000).await.expect("4");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 400, Pending)]);
        // A voided reward frees room; cutting keeps the sum at the cap.
        let big = h.conversion_id();
        let r = h.convert(&bob, &big, 100_000).await.expect("5");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 1_100, Pending)]);
        h.reverse(&big, "r", None).await.expect("void");
        let r = h
            .convert(&bob, &h.conversion_id(), 100_000)
            .await
            .expect("6");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 1_100, Pending)]);
        assert_eq!(h.rub(&alice).await.pending, 1_000 + 400 + 100 + 400 + 1_100);
    }

    /// The cap holds in every later window too. A reward fills the cap and
    /// is clawed back later; once the reward has left the window, the
    /// clawback is still in it. It makes no room: the window that will hold
    /// a new reward once the clawback has left too must stay within the cap.
    pub async fn rewards_cap_holds_when_a_clawback_outlives_its_reward<S: RewardKitStore>(
        store: S,
    ) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: Some(1_000),
                cap_window: Duration::from_secs(30 * DAY),
                hold: Duration::from_secs(7 * DAY),
                ..example_policy()
            },
        );
        let (alice, bob) = h.pair().await;
        // Day 0: the fixed 1000 fills the cap (the 5 % of 100 gets nothing).
        let first = h.conversion_id();
        let r = h.convert(&bob, &first, 100).await.expect("day 0");
        assert_eq!(summary(&r.rewards), vec![(ReferrerFixed, 1_000, Pending)]);
        h.advance_secs(7 * DAY);
        assert_eq!(h.approve().await.len(), 1);
        // Day 14: refunded, a clawback of −1000.
        h.advance_secs(7 * DAY);
        let r = h.reverse(&first, "refund", None).await.expect("refund");
        assert_eq!(summary(&r.rewards), vec![(Clawback, -1_000, Approved)]);
        // Day 35: the reward has left the window, the clawback has not. The
        // window's sum is −1000, but the window ending on day 45 will hold
        // the new reward without the clawback: 1000 at most, not 2000.
        h.advance_secs(21 * DAY);
        let r = h
            .convert(&bob, &h.conversion_id(), 100_000)
            .await
            .expect("day 35");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 1_000, Pending)]);
        // Day 45: the new reward alone fills the window; nothing is left.
        h.advance_secs(10 * DAY);
        let r = h
            .convert(&bob, &h.conversion_id(), 100_000)
            .await
            .expect("day 45");
        assert!(r.rewards.is_empty(), "{:?}", r.rewards);
        // Day 66: the window is empty again, the cap is whole.
        h.advance_secs(21 * DAY);
        let r = h
            .convert(&bob, &h.conversion_id(), 100_000)
            .await
            .expect("day 66");
        assert_eq!(summary(&r.rewards), vec![(ReferrerPercent, 1_000, Pending)]);
        assert_eq!(h.rub(&alice).await.pending, 2_000);
    }

    /// A reversal shrinks pending rewards in proportion to what is left of
    /// the conversion, from their original amounts, and voids them at 0
    /// (keeping their last amount).
    pub async fn rewards_reversal_shrinks_and_voids_pending<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = h.pair().await;
        let id = h.conversion_id();
        h.convert(&bob, &id, 3_000).await.expect("convert");
        // fixed 1000, percent 150.
        let before = h.last_event().await;
        let r = h.reverse(&id, "a", Some(1_000)).await.expect("a");
        assert_eq!(
            summary(&r.rewards),
            vec![
                (ReferrerFixed, 666, Pending),
                (ReferrerPercent, 100, Pending)
            ]
        );
        let r = h.reverse(&id, "b", Some(1_000)).await.expect("b");
        // From the originals: floor(1000 × 1000 / 3000) = 333, floor(150 / 3) = 50.
        assert_eq!(
            summary(&r.rewards),
            vec![
                (ReferrerFixed, 333, Pending),
                (ReferrerPercent, 50, Pending)
            ]
        );
        let r = h.reverse(&id, "c", Some(999)).await.expect("c");
        // 1 left: floor(1000 / 3000) = 0 → voided at 333; floor(150 / 3000) = 0 → voided at 50.
        assert_eq!(
            summary(&r.rewards),
            vec![(ReferrerFixed, 333, Voided), (ReferrerPercent, 50, Voided)]
        );
        assert_eq!(r.conversion.reversed_amount, 2_999);
        assert_eq!(h.rub(&alice).await, Balance::new(Currency::RUB));
        assert!(h.balances(&alice).await.is_empty());
        let events = h.events(before).await;
        let count = |f: fn(&EventKind) -> bool| events.iter().filter(|e| f(e)).count();
        assert_eq!(
            count(|e| matches!(e, EventKind::ConversionReversed { .. })),
            3
        );
        assert_eq!(count(|e| matches!(e, EventKind::RewardAdjusted { .. })), 4);
        assert_eq!(count(|e| matches!(e, EventKind::RewardVoided { .. })), 2);
        // Voided rewards stay voided; the last unit reverses with no change.
        let r = h.reverse(&id, "d", None).await.expect("d");
        assert!(r.rewards.is_empty());
        h.advance_secs(30 * DAY);
        assert!(h.approve().await.is_empty());
    }

    /// Approved and paid rewards are never edited: a reversal adds one
    /// negative clawback per reward, approved at once.
    pub async fn rewards_reversal_claws_back_approved_and_paid<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = h.pair().await;
        let id = h.conversion_id();
        let made = h.convert(&bob, &id, 10_000).await.expect("convert");
        h.advance_secs(30 * DAY);
        h.approve().await;
        let fixed = &made.rewards[0];
        let paid = h
            .service
            .mark_reward_paid(fixed.id, &"payout-1".parse().expect("ref"))
            .await
            .expect("pay");
        assert_eq!(paid.status, Paid);
        let r = h.reverse(&id, "a", Some(2_500)).await.expect("a");
        // fixed 1000 → 750 (paid: clawback −250); percent 500 → 375 (−125).
        assert_eq!(
            summary(&r.rewards),
            vec![(Clawback, -250, Approved), (Clawback, -125, Approved)]
        );
        assert_eq!(r.rewards[0].reverses, Some(fixed.id));
        assert_eq!(r.rewards[1].reverses, Some(made.rewards[1].id));
        assert!(r.rewards.iter().all(|c| c.conversion.as_ref() == Some(&id)
            && c.referral == Some(bob.id)
            && c.user == alice.id
            && c.approved_at == Some(h.now())));
        // Each clawback: created and approved, after the reversal's event.
        let events = h.events(None).await;
        let tail = &events[events.len() - 5..];
        assert!(
            matches!(&tail[0], EventKind::ConversionReversed { conversion, amount: 2_500, .. } if *conversion == id),
            "{tail:?}"
        );
        for (pair, claw) in tail[1..].chunks(2).zip(&r.rewards) {
            assert_eq!(
                pair,
                [
                    EventKind::RewardCreated {
                        reward: claw.id,
                        user: alice.id,
                        kind: Clawback,
                        amount: claw.amount
                    },
                    EventKind::RewardApproved {
                        reward: claw.id,
                        user: alice.id
                    },
                ]
            );
        }
        // The originals are unchanged.
        let fixed_now = h
            .service
            .reward(fixed.id)
            .await
            .expect("store")
            .expect("reward");
        assert_eq!((fixed_now.amount, fixed_now.status), (rub(1000), Paid));
        let r = h.reverse(&id, "b", None).await.expect("rest");
        assert_eq!(
            summary(&r.rewards),
            vec![(Clawback, -750, Approved), (Clawback, -375, Approved)]
        );
        let b = h.rub(&alice).await;
        assert_eq!((b.pending, b.approved, b.paid), (0, 500 - 1500, 1000));
        assert_eq!(live_sum(&h.rewards(&alice).await), 0);
    }

    /// Reversal ids are idempotent per conversion; amounts are checked.
    pub async fn rewards_reversal_rules<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (_alice, bob) = h.pair().await;
        let id = h.conversion_id();
        h.convert(&bob, &id, 10_000).await.expect("convert");
        let first = h.reverse(&id, "r1", Some(4_000)).await.expect("r1");
        assert!(!first.replayed);
        let again = h.reverse(&id, "r1", Some(4_000)).await.expect("again");
        assert!(again.replayed);
        assert_eq!(again.rewards, first.rewards);
        assert_eq!(again.conversion.reversed_amount, 4_000);
        let none = h
            .reverse(&id, "r1", None)
            .await
            .expect("replay without amount");
        assert!(none.replayed);
        let r = h.reverse(&id, "r1", Some(3_000)).await;
        assert!(
            matches!(r, Err(ReverseConversionError::Conflict { amount: 4_000 })),
            "{r:?}"
        );
        let r = h.reverse(&id, "r2", Some(6_001)).await;
        assert!(
            matches!(
                r,
                Err(ReverseConversionError::ExceedsRemaining { remaining: 6_000 })
            ),
            "{r:?}"
        );
        for bad in [0, -1] {
            let r = h.reverse(&id, "r3", Some(bad)).await;
            assert!(
                matches!(r, Err(ReverseConversionError::InvalidAmount)),
                "{r:?}"
            );
        }
        let missing: ConversionId = "no-such-order".parse().expect("id");
        let r = h.reverse(&missing, "r1", None).await;
        assert!(
            matches!(r, Err(ReverseConversionError::ConversionNotFound)),
            "{r:?}"
        );
        // The same reversal id on another conversion is another reversal.
        let other = h.conversion_id();
        h.convert(&bob, &other, 10_000).await.expect("other");
        let r = h
            .reverse(&other, "r1", Some(1_000))
            .await
            .expect("r1 elsewhere");
        assert!(!r.replayed);
        let rest = h.reverse(&id, "r2", None).await.expect("rest");
        assert_eq!(rest.conversion.reversed_amount, 10_000);
        let r = h.reverse(&id, "r4", None).await;
        assert!(
            matches!(
                r,
                Err(ReverseConversionError::ExceedsRemaining { remaining: 0 })
            ),
            "{r:?}"
        );
        let stored = h
            .service
            .conversion(&id)
            .await
            .expect("store")
            .expect("conversion");
        assert_eq!(stored.reversed_amount, 10_000);
    }

    /// Pending rewards are approved once their hold has passed, not before,
    /// oldest first, `limit` at a time, with one event each.
    pub async fn rewards_approval_after_the_hold<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = h.pair().await;
        let first = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("1");
        h.advance_secs(DAY);
        let second = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("2");
        h.advance_secs(29 * DAY - 1);
        assert!(h.approve().await.is_empty(), "one second early");
        h.advance_secs(1);
        let before = h.last_event().await;
        let one = h
            .service
            .approve_due_rewards(h.now(), 1)
            .await
            .expect("approve");
        assert_eq!(one.len(), 1);
        // Oldest first: the two are of one instant, so the lower id.
        assert_eq!(Some(one[0].id), first.rewards.iter().map(|r| r.id).min());
        let rest = h.approve().await;
        assert_eq!(rest.len(), 1);
        let mut approved: Vec<_> = one.iter().chain(&rest).map(|r| r.id).collect();
        approved.sort();
        let mut expected: Vec<_> = first.rewards.iter().map(|r| r.id).collect();
        expected.sort();
        assert_eq!(approved, expected);
        assert!(
            one.iter()
                .chain(&rest)
                .all(|r| r.status == Approved && r.approved_at == Some(h.now()))
        );
        let events = h.events(before).await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            events
                .iter()
                .all(|e| matches!(e, EventKind::RewardApproved { user, .. } if *user == alice.id))
        );
        h.advance_secs(DAY);
        let later = h.approve().await;
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].id, second.rewards[0].id);
        assert!(h.approve().await.is_empty());
        let b = h.rub(&alice).await;
        assert_eq!((b.pending, b.approved), (0, 1500 + 500));
    }

    /// Approved → paid once; the same reference again is fine; anything
    /// else is refused.
    pub async fn rewards_mark_paid<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = h.pair().await;
        let id = h.conversion_id();
        let made = h.convert(&bob, &id, 10_000).await.expect("convert");
        let fixed = made.rewards[0].id;
        let p1: PayoutRef = "payout-1".parse().expect("ref");
        let p2: PayoutRef = "payout-2".parse().expect("ref");
        let r = h.service.mark_reward_paid(fixed, &p1).await;
        assert!(
            matches!(r, Err(MarkPaidError::NotPayable { status: Pending })),
            "{r:?}"
        );
        h.advance_secs(30 * DAY);
        h.approve().await;
        let before = h.last_event().await;
        let paid = h.service.mark_reward_paid(fixed, &p1).await.expect("pay");
        assert_eq!(
            (paid.status, paid.paid_at, paid.payout_ref.clone()),
            (Paid, Some(h.now()), Some(p1.clone()))
        );
        h.advance_secs(60);
        let again = h.service.mark_reward_paid(fixed, &p1).await.expect("again");
        assert_eq!(again, paid);
        let r = h.service.mark_reward_paid(fixed, &p2).await;
        assert!(
            matches!(r, Err(MarkPaidError::NotPayable { status: Paid })),
            "{r:?}"
        );
        let r = h
            .service
            .mark_reward_paid(
                crate::reward::RewardId::generate(&SeededRandom::new(77)),
                &p1,
            )
            .await;
        assert!(matches!(r, Err(MarkPaidError::RewardNotFound)), "{r:?}");
        let events = h.events(before).await;
        assert_eq!(
            events,
            vec![EventKind::RewardPaid {
                reward: fixed,
                user: alice.id,
                payout_ref: p1.clone()
            }]
        );
        // A voided reward is not payable.
        let other = h.conversion_id();
        let made = h.convert(&bob, &other, 10_000).await.expect("convert");
        h.reverse(&other, "all", None).await.expect("void");
        let r = h.service.mark_reward_paid(made.rewards[0].id, &p2).await;
        assert!(
            matches!(r, Err(MarkPaidError::NotPayable { status: Voided })),
            "{r:?}"
        );
        let b = h.rub(&alice).await;
        assert_eq!((b.pending, b.approved, b.paid), (0, 500, 1000));
    }

    /// A user's rewards page newest first by `(created_at, id)`, with a
    /// keyset cursor, also through rewards made at one instant.
    pub async fn rewards_page_newest_first<S: RewardKitStore>(store: S) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: None,
                ..example_policy()
            },
        );
        let (alice, bob) = h.pair().await;
        for i in 0..5 {
            h.convert(&bob, &h.conversion_id(), 10_000 + i)
                .await
                .expect("convert");
            if i % 2 == 0 {
                h.advance_secs(1);
            }
        }
        let all = h.rewards(&alice).await;
        assert_eq!(all.len(), 6);
        let keys: Vec<_> = all.iter().map(|r| (r.created_at, r.id)).collect();
        let mut sorted = keys.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(keys, sorted, "newest first");
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = h
                .service
                .rewards(alice.id, after, PageLimit::new(2).expect("limit"))
                .await
                .expect("page");
            assert!(page.items.len() <= 2);
            paged.extend(page.items.iter().map(|r| r.id));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(paged, all.iter().map(|r| r.id).collect::<Vec<_>>());
        let exact = h
            .service
            .rewards(alice.id, None, PageLimit::new(6).expect("limit"))
            .await
            .expect("page");
        assert_eq!((exact.items.len(), exact.next), (6, None));
        let ghost = UserId::generate(&SeededRandom::new(424_242));
        let r = h.service.rewards(ghost, None, PageLimit::default()).await;
        assert!(matches!(r, Err(RewardsError::UserNotFound)), "{r:?}");
        let empty = h.user().await;
        assert!(h.rewards(&empty).await.is_empty());
    }

    /// Balances: one per currency with a non-voided reward, sorted; voided
    /// rewards count nowhere; clawbacks count in `approved`.
    pub async fn rewards_balances_per_currency<S: RewardKitStore>(store: S) {
        let h = RewardHarness::new(store);
        let (alice, bob) = h.pair().await;
        let eur = Currency::parse("EUR").expect("EUR");
        h.convert_in(&bob, &h.conversion_id(), 10_000, usd())
            .await
            .expect("usd");
        let gone = h.conversion_id();
        h.convert_in(&bob, &gone, 10_000, eur).await.expect("eur");
        h.convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("rub");
        h.reverse(&gone, "all", None).await.expect("void eur");
        let balances = h.balances(&alice).await;
        let rows: Vec<_> = balances
            .iter()
            .map(|b| {
                (
                    b.currency.as_str().to_owned(),
                    b.pending,
                    b.approved,
                    b.paid,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("RUB".to_owned(), 1500, 0, 0),
                ("USD".to_owned(), 500, 0, 0)
            ]
        );
        // Bob sees his welcome only.
        let rows: Vec<_> = h
            .balances(&bob)
            .await
            .iter()
            .map(|b| (b.currency, b.approved))
            .collect();
        assert_eq!(rows, vec![(Currency::RUB, 300)]);
        // An approved reward fully clawed back still shows (at 0).
        let id = h.conversion_id();
        h.convert_in(&bob, &id, 10_000, eur)
            .await
            .expect("eur again");
        h.advance_secs(30 * DAY);
        h.approve().await;
        h.reverse(&id, "all", None).await.expect("claw back");
        let eur_row = h
            .balances(&alice)
            .await
            .into_iter()
            .find(|b| b.currency == eur);
        assert_eq!(
            eur_row.map(|b| (b.pending, b.approved, b.paid)),
            Some((0, 0, 0))
        );
    }

    /// `converted` on a referral: set by the referee's first qualifying
    /// conversion, kept after a reversal.
    pub async fn rewards_converted_on_referrals<S: RewardKitStore>(store: S) {
        let h = RewardHarness::with_policy(
            store,
            RewardPolicy {
                min_amount: 100,
                ..example_policy()
            },
        );
        let alice = h.user().await;
        let mut referees = Vec::new();
        for _ in 0..3 {
            let u = h.user().await;
            h.refer(&u, &alice).await;
            h.advance_secs(1);
            referees.push(u);
        }
        h.convert(&referees[0], &h.conversion_id(), 99)
            .await
            .expect("too small");
        let id = h.conversion_id();
        h.convert(&referees[1], &id, 10_000)
            .await
            .expect("qualifies");
        h.reverse(&id, "all", None).await.expect("reverse");
        let page = h
            .service
            .referrals(alice.id, None, PageLimit::default())
            .await
            .expect("referrals");
        let flags: Vec<_> = page.items.iter().map(|r| (r.user, r.converted)).collect();
        assert_eq!(
            flags,
            vec![
                (referees[0].id, false),
                (referees[1].id, true),
                (referees[2].id, false)
            ]
        );
    }

    /// Identical conversions racing: one conversion, one set of rewards, one
    /// event (over several rounds).
    pub async fn race_identical_conversions<S: RewardKitStore>(store: S) {
        let h = Arc::new(RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: None,
                ..example_policy()
            },
        ));
        let (alice, bob) = h.pair().await;
        let mut n = 0;
        for round in rounds() {
            let id = h.conversion_id();
            let before = h.last_event().await;
            let results = race(8, |_| {
                let (h, bob, id) = (Arc::clone(&h), bob.clone(), id.clone());
                async move { h.convert(&bob, &id, 10_000).await.expect("record") }
            })
            .await;
            let created = results.iter().filter(|r| r.created).count();
            assert_eq!(created, 1, "round {round}");
            let ids: HashSet<_> = results
                .iter()
                .flat_map(|r| r.rewards.iter().map(|x| x.id))
                .collect();
            let expected = if round == 0 { 2 } else { 1 };
            assert_eq!(ids.len(), expected, "round {round}: {results:?}");
            let events = h.events(before).await;
            assert_eq!(
                events
                    .iter()
                    .filter(|e| matches!(e, EventKind::ConversionRecorded { .. }))
                    .count(),
                1,
                "round {round}"
            );
            n += 1;
        }
        assert_eq!(h.rub(&alice).await.pending, 1000 + 500 * n);
    }

    /// Conversions of many referees of one referrer racing: the cap is never
    /// passed, and is reached exactly (over several rounds, the window
    /// rolled on between them).
    pub async fn race_cap_many_referees<S: RewardKitStore>(store: S) {
        let h = Arc::new(RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: Some(5_000),
                cap_window: Duration::from_secs(DAY),
                ..example_policy()
            },
        ));
        let alice = h.user().await;
        for round in rounds().take(20) {
            let mut referees = Vec::new();
            for _ in 0..12 {
                let u = h.user().await;
                h.refer(&u, &alice).await;
                referees.push(u);
            }
            let referees = Arc::new(referees);
            // Each conversion alone is worth 1000 + 500: 12 of them 18000.
            let results = race(12, |i| {
                let (h, referees) = (Arc::clone(&h), Arc::clone(&referees));
                async move {
                    let id = h.conversion_id();
                    h.convert(&referees[i], &id, 10_000).await.expect("record")
                }
            })
            .await;
            let made: i64 = results
                .iter()
                .flat_map(|r| &r.rewards)
                .map(|r| r.amount.amount())
                .sum();
            assert_eq!(made, 5_000, "round {round}: {results:?}");
            h.advance_secs(DAY);
        }
    }

    /// A reversal racing the approval of the rewards it touches: either
    /// order ends with each reward worth exactly what the rule says.
    pub async fn race_reversal_and_approval<S: RewardKitStore>(store: S) {
        let h = Arc::new(RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: None,
                hold: Duration::from_secs(60),
                ..example_policy()
            },
        ));
        let (alice, bob) = h.pair().await;
        let mut expected = 0;
        for round in rounds().take(40) {
            let id = h.conversion_id();
            h.convert(&bob, &id, 30_000).await.expect("record");
            h.advance_secs(60);
            let results = race(2, |i| {
                let (h, id) = (Arc::clone(&h), id.clone());
                async move {
                    if i == 0 {
                        h.approve().await;
                    } else {
                        h.reverse(&id, "half", Some(10_000)).await.expect("reverse");
                    }
                }
            })
            .await;
            assert_eq!(results.len(), 2);
            h.approve().await;
            // 20000 of 30000 left: fixed floor(1000 × 2/3) = 666 on the
            // first round only, percent floor(1500 × 2/3) = 1000.
            expected += if round == 0 { 666 + 1000 } else { 1000 };
            let b = h.rub(&alice).await;
            assert_eq!((b.pending, b.approved), (0, expected), "round {round}");
        }
    }

    /// Approval from many callers at once: each reward approved exactly
    /// once, one event each.
    pub async fn race_approval_many_callers<S: RewardKitStore>(store: S) {
        let h = Arc::new(RewardHarness::with_policy(
            store,
            RewardPolicy {
                max_per_referrer: None,
                ..example_policy()
            },
        ));
        let (alice, bob) = h.pair().await;
        for _ in 0..60 {
            h.convert(&bob, &h.conversion_id(), 10_000)
                .await
                .expect("record");
        }
        h.advance_secs(30 * DAY);
        let before = h.last_event().await;
        let results = race(8, |_| {
            let h = Arc::clone(&h);
            async move {
                h.service
                    .approve_due_rewards(h.now(), 7)
                    .await
                    .expect("approve")
                    .into_iter()
                    .map(|r| r.id)
                    .collect::<Vec<_>>()
            }
        })
        .await;
        let mut all: Vec<_> = results.into_iter().flatten().collect();
        all.extend(h.approve().await.into_iter().map(|r| r.id));
        let distinct: HashSet<_> = all.iter().copied().collect();
        assert_eq!((all.len(), distinct.len()), (61, 61));
        let events = h.events(before).await;
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, EventKind::RewardApproved { .. }))
                .count(),
            61
        );
        assert_eq!(h.rub(&alice).await.approved, 1000 + 60 * 500);
    }

    /// Reversals racing: one reversal id takes effect once, and the
    /// reversed amount never passes the conversion's.
    pub async fn race_reversals<S: RewardKitStore>(store: S) {
        let h = Arc::new(RewardHarness::new(store));
        let (_alice, bob) = h.pair().await;
        for round in rounds().take(40) {
            let id = h.conversion_id();
            h.convert(&bob, &id, 10_000).await.expect("record");
            let same = race(6, |_| {
                let (h, id) = (Arc::clone(&h), id.clone());
                async move { h.reverse(&id, "same", Some(3_000)).await.expect("reverse") }
            })
            .await;
            assert_eq!(
                same.iter().filter(|r| !r.replayed).count(),
                1,
                "round {round}"
            );
            let distinct = race(6, |i| {
                let (h, id) = (Arc::clone(&h), id.clone());
                async move { h.reverse(&id, &format!("r{i}"), Some(3_000)).await }
            })
            .await;
            let applied = distinct.iter().filter(|r| r.is_ok()).count();
            assert_eq!(applied, 2, "round {round}: {distinct:?}");
            let c = h
                .service
                .conversion(&id)
                .await
                .expect("store")
                .expect("conversion");
            assert_eq!(c.reversed_amount, 9_000, "round {round}");
        }
    }

    /// Payouts racing with different references: exactly one wins.
    pub async fn race_payouts<S: RewardKitStore>(store: S) {
        let h = Arc::new(RewardHarness::new(store));
        let (_alice, bob) = h.pair().await;
        let welcome = h.rewards(&bob).await[0].id;
        let results = race(8, |i| {
            let h = Arc::clone(&h);
            async move {
                let r: PayoutRef = format!("payout-{i}").parse().expect("ref");
                h.service.mark_reward_paid(welcome, &r).await.is_ok()
            }
        })
        .await;
        assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
        let b = h.rub(&bob).await;
        assert_eq!((b.approved, b.paid), (0, 300));
    }
}
