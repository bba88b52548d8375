//! The operator cases of the conformance kit: one per rule of
//! [`OperatorStore`] and of what a block does to the other ports (see
//! [`crate::operator`]), and a race per concurrency promise (a block against
//! an approval, a conversion and an activation; a void against a payment).
//!
//! A store opts in with
//! [`operator_conformance_tests!`](crate::operator_conformance_tests) once it
//! implements [`OperatorStore`] (with [`RewardStore`](crate::store::RewardStore):
//! the cases need every port on one store):
//!
//! ```ignore
//! async fn store() -> Option<my_store::MyStore> { Some(my_store::MyStore::connect_fresh().await) }
//! referral_core::operator_conformance_tests!(store);
//! ```
//!
//! Rewards run the worked example's policy without the cap
//! ([`example_policy`]), a 30-day hold.
//!
//! The races check the outbox: events are readable in the order their
//! changes took effect, so a reward approved (or created, or an activation
//! made) after a user's `UserBlocked` event and before their
//! `UserUnblocked` is a block that did not hold.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeDelta;

use super::rewards::{RewardHarness, RewardKitStore, example_policy};
use super::{race, rounds};
use crate::event::{EventId, EventKind};
use crate::money::{Currency, Money};
use crate::operator::{LeaderboardLimit, Reason, StatsDays, UserCursor, UserQuery, UserSummary};
use crate::phone::PhoneNumber;
use crate::random::SeededRandom;
use crate::reward::{Reward, RewardKind, RewardPolicy, RewardStatus};
use crate::service::{
    ActivateError, BlockError, Config, ReferralService, VerifyError, VoidRewardError,
};
use crate::sms::StubSmsSender;
use crate::store::{BlockOutcome, OperatorStore, UnblockOutcome, VoidOutcome};
use crate::user::{PageLimit, ReferralCursor, User, UserId};

/// What the operator cases need of a store: every port, on one store.
pub trait OperatorKitStore: RewardKitStore + OperatorStore {}
impl<T: RewardKitStore + OperatorStore> OperatorKitStore for T {}

/// Expands to one `#[tokio::test]` per operator case, each calling
/// `$factory().await` for a fresh store (`Option<S>`; `None` skips the case).
#[macro_export]
macro_rules! operator_conformance_tests {
    ($factory:path) => {
        $crate::__operator_cases!($factory;
            ops_block_outcomes_and_events,
            ops_blocked_user_cannot_log_in,
            ops_blocked_user_cannot_activate,
            ops_blocked_referrer_or_referee_earns_nothing,
            ops_pending_rewards_wait_out_the_block,
            ops_void_reward,
            ops_void_takes_the_clawbacks_along,
            ops_user_detail,
            ops_search_by_phone_prefix_and_code,
            ops_leaderboard,
            ops_stats_per_day,
            ops_export_referrals_in_batches,
            ops_export_rewards_in_batches,
            race_block_and_approval,
            race_block_and_conversion,
            race_block_and_activation,
            race_void_and_payment,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __operator_cases {
    ($factory:path; $($case:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            match $factory().await {
                Some(store) => $crate::testkit::operators::cases::$case(store).await,
                None => eprintln!("skipped {}: no store", stringify!($case)),
            }
        }
    )*};
}

const DAY: u64 = 24 * 3600;

/// A [`RewardHarness`] plus a service with operators on (same store, same
/// clock) and its SMS outbox, for logins.
#[derive(Debug)]
pub struct OperatorHarness<S> {
    rewards: RewardHarness<S>,
    /// A service with rewards and operators on.
    pub ops: ReferralService,
    /// The outbox of `ops`.
    pub sms: Arc<StubSmsSender>,
    /// The operator every action is made as.
    pub operator: UserId,
    phones: AtomicU64,
}

impl<S> Deref for OperatorHarness<S> {
    type Target = RewardHarness<S>;

    fn deref(&self) -> &Self::Target {
        &self.rewards
    }
}

impl<S: OperatorKitStore> OperatorHarness<S> {
    /// A harness with the worked example's policy, no cap.
    ///
    /// # Panics
    /// When the service cannot be built.
    pub fn new(store: S) -> Self {
        let policy = RewardPolicy {
            max_per_referrer: None,
            ..example_policy()
        };
        let rewards = RewardHarness::with_policy(store, policy.clone());
        let sms = Arc::new(StubSmsSender::new());
        let store = Arc::clone(&rewards.store);
        let ops = ReferralService::builder(Arc::clone(&store), Arc::<StubSmsSender>::clone(&sms))
            .rewards(Arc::<S>::clone(&store))
            .operators(store)
            .clock(Arc::<crate::clock::TestClock>::clone(&rewards.clock))
            .random(Arc::new(SeededRandom::new(0x0b5)))
            .config(Config {
                rewards: policy,
                ..Config::default()
            })
            .build()
            .expect("valid config");
        Self {
            rewards,
            ops,
            sms,
            operator: UserId::generate(&SeededRandom::new(0x0ba)),
            phones: AtomicU64::new(0),
        }
    }

    /// A fresh phone for a login.
    pub fn phone(&self) -> PhoneNumber {
        let n = self.phones.fetch_add(1, Ordering::Relaxed);
        format!("+7997{n:07}").parse().expect("phone")
    }

    /// Logs `phone` in through the operator service.
    ///
    /// # Panics
    /// When no code can be sent.
    pub async fn login(&self, phone: &PhoneNumber) -> Result<User, VerifyError> {
        self.ops.request_code(phone).await.expect("code sent");
        let code = self.sms.latest(phone).expect("an SMS").code;
        self.ops.verify_code(phone, &code).await.map(|l| l.user)
    }

    /// Blocks `user` as the harness's operator.
    ///
    /// # Panics
    /// When it fails.
    pub async fn block(&self, user: &User, reason: &str) {
        self.ops
            .block_user(self.operator, user.id, &reason.parse().expect("reason"))
            .await
            .expect("block");
    }

    /// Unblocks `user`.
    ///
    /// # Panics
    /// When it fails.
    pub async fn unblock(&self, user: &User) {
        self.ops
            .unblock_user(self.operator, user.id)
            .await
            .expect("unblock");
    }

    /// Every event with its id.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn all_events(&self) -> Vec<(EventId, EventKind)> {
        self.ops
            .events_after(None, 1_000_000)
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.id, e.kind))
            .collect()
    }

    /// Checks the outbox: while `user` is blocked (between their
    /// `UserBlocked` and `UserUnblocked` events), no reward of theirs is
    /// approved, no referrer reward for or from them is made, and they
    /// activate no code.
    ///
    /// # Panics
    /// When the outbox shows a block that did not hold.
    pub async fn assert_blocks_held(&self, users: &[UserId]) {
        let mut blocked = std::collections::HashSet::new();
        for (id, kind) in self.all_events().await {
            match &kind {
                EventKind::UserBlocked { user, .. } => {
                    blocked.insert(*user);
                }
                EventKind::UserUnblocked { user, .. } => {
                    blocked.remove(user);
                }
                EventKind::RewardApproved { user, reward } if blocked.contains(user) => {
                    let r = self.ops_reward(*reward).await;
                    // Welcome rewards and clawbacks are approved at creation.
                    assert!(
                        matches!(r.kind, RewardKind::Welcome | RewardKind::Clawback),
                        "event {id:?}: reward {reward} of blocked user {user} approved"
                    );
                }
                EventKind::RewardCreated { user, kind, .. }
                    if users.contains(user)
                        && blocked.contains(user)
                        && matches!(
                            kind,
                            RewardKind::ReferrerFixed | RewardKind::ReferrerPercent
                        ) =>
                {
                    panic!("event {id:?}: blocked referrer {user} earned a reward");
                }
                EventKind::InviteActivated { user, .. } if blocked.contains(user) => {
                    panic!("event {id:?}: blocked user {user} activated a code");
                }
                _ => {}
            }
        }
    }

    async fn ops_reward(&self, id: crate::reward::RewardId) -> Reward {
        use crate::store::RewardStore;
        self.store.reward(id).await.expect("store").expect("reward")
    }

    /// The reward's status now.
    pub async fn status(&self, reward: &Reward) -> RewardStatus {
        self.ops_reward(reward.id).await.status
    }
}

/// Lets one side of a two-task race start a little later, alternating by
/// round, so both orders happen (each must be right).
async fn stagger(task: usize, round: usize) {
    if task == round % 2 {
        for _ in 0..(round % 5) {
            tokio::task::yield_now().await;
        }
    }
}

fn reason(s: &str) -> Reason {
    s.parse().expect("reason")
}

fn rub(n: i64) -> Money {
    Money::new(n, Currency::RUB)
}

/// The operator cases. Each takes a fresh store.
pub mod cases {
    use super::*;

    /// Block and unblock: outcomes, the first block staying, events naming
    /// the operator, the block readable, unknown users.
    pub async fn ops_block_outcomes_and_events<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let bob = h.user().await;
        let (op1, op2) = (
            UserId::generate(&SeededRandom::new(1)),
            UserId::generate(&SeededRandom::new(2)),
        );
        let before = h.last_event().await;
        let now = h.now();
        let out = h
            .store
            .block_user(bob.id, &reason("spam, \"bots\""), op1, now)
            .await
            .expect("store");
        let BlockOutcome::Blocked(block) = out else {
            panic!("expected Blocked, got {out:?}")
        };
        assert_eq!(
            (block.reason.as_str(), block.at, block.by),
            ("spam, \"bots\"", now, op1)
        );
        h.advance_secs(5);
        let again = h
            .store
            .block_user(bob.id, &reason("other"), op2, h.now())
            .await
            .expect("store");
        assert_eq!(again, BlockOutcome::AlreadyBlocked(block.clone()));
        assert_eq!(
            h.store.block(bob.id).await.expect("store"),
            Some(block.clone())
        );
        let unknown = UserId::generate(&SeededRandom::new(99));
        assert_eq!(
            h.store
                .block_user(unknown, &reason("x"), op1, h.now())
                .await
                .expect("store"),
            BlockOutcome::UserNotFound
        );
        assert_eq!(h.store.block(unknown).await.expect("store"), None);
        let out = h
            .store
            .unblock_user(bob.id, op2, h.now())
            .await
            .expect("store");
        assert_eq!(out, UnblockOutcome::Unblocked(block));
        assert_eq!(
            h.store
                .unblock_user(bob.id, op2, h.now())
                .await
                .expect("store"),
            UnblockOutcome::NotBlocked
        );
        assert_eq!(
            h.store
                .unblock_user(unknown, op2, h.now())
                .await
                .expect("store"),
            UnblockOutcome::UserNotFound
        );
        assert_eq!(h.store.block(bob.id).await.expect("store"), None);
        assert_eq!(
            h.events(before).await,
            vec![
                EventKind::UserBlocked {
                    user: bob.id,
                    operator: op1,
                    reason: reason("spam, \"bots\"")
                },
                EventKind::UserUnblocked {
                    user: bob.id,
                    operator: op2
                },
            ]
        );
        // Through the service.
        let detail = h
            .ops
            .block_user(op1, bob.id, &reason("again"))
            .await
            .expect("block");
        assert_eq!(detail.block.map(|b| b.by), Some(op1));
        assert!(matches!(
            h.ops.block_user(op1, unknown, &reason("x")).await,
            Err(BlockError::UserNotFound)
        ));
        assert_eq!(
            h.ops
                .block_of(bob.id)
                .await
                .expect("store")
                .map(|b| b.reason),
            Some(reason("again"))
        );
    }

    /// A blocked user's right code answers `Blocked` (a code is still sent
    /// to them like to anyone); after the unblock they log in again.
    pub async fn ops_blocked_user_cannot_log_in<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let phone = h.phone();
        let bob = h.login(&phone).await.expect("first login");
        h.block(&bob, "fraud").await;
        h.advance_secs(61);
        assert!(matches!(h.login(&phone).await, Err(VerifyError::Blocked)));
        // The code was used: it does not log in after the unblock either.
        let code = h.sms.latest(&phone).expect("sms").code;
        h.unblock(&bob).await;
        assert!(matches!(
            h.ops.verify_code(&phone, &code).await,
            Err(VerifyError::NoLiveCode)
        ));
        h.advance_secs(61);
        assert_eq!(
            h.login(&phone).await.expect("login after unblock").id,
            bob.id
        );
    }

    /// A blocked user activates nothing (not even a retry of their own
    /// code); someone activating a blocked user's code succeeds.
    pub async fn ops_blocked_user_cannot_activate<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (alice, bob, carol) = (h.user().await, h.user().await, h.user().await);
        h.block(&bob, "fraud").await;
        assert!(matches!(
            h.ops.activate_invite(bob.id, &alice.invite_code).await,
            Err(ActivateError::Blocked)
        ));
        assert_eq!(
            h.ops
                .profile(bob.id)
                .await
                .expect("profile")
                .activated_invite_code,
            None
        );
        assert_eq!(
            h.ops
                .profile(alice.id)
                .await
                .expect("profile")
                .referral_count,
            0
        );
        // Carol activates blocked Bob's code: allowed, and she gets her welcome.
        h.ops
            .activate_invite(carol.id, &bob.invite_code)
            .await
            .expect("activate");
        assert_eq!(h.rub(&carol).await.approved, 300);
        h.unblock(&bob).await;
        h.ops
            .activate_invite(bob.id, &alice.invite_code)
            .await
            .expect("after unblock");
        h.block(&bob, "again").await;
        // A retry of the very code is refused too while blocked.
        assert!(matches!(
            h.ops.activate_invite(bob.id, &alice.invite_code).await,
            Err(ActivateError::Blocked)
        ));
        h.assert_blocks_held(&[]).await;
    }

    /// Conversions while the referrer or the referee is blocked are recorded
    /// but earn nothing, do not mark the referral converted and do not use
    /// the fixed part; after the unblock the next conversion earns in full.
    pub async fn ops_blocked_referrer_or_referee_earns_nothing<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (alice, bob) = h.pair().await;
        for blocked in [&alice, &bob] {
            h.block(blocked, "review").await;
            let id = h.conversion_id();
            let rec = h.convert(&bob, &id, 10_000).await.expect("record");
            assert!(rec.created);
            assert!(
                rec.rewards.is_empty(),
                "blocked {}: {:?}",
                blocked.id,
                rec.rewards
            );
            h.unblock(blocked).await;
        }
        let page = h
            .ops
            .referrals(alice.id, None, PageLimit::default())
            .await
            .expect("referrals");
        assert!(!page.items[0].converted);
        let rec = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("record");
        let kinds: Vec<_> = rec
            .rewards
            .iter()
            .map(|r| (r.kind, r.amount.amount()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (RewardKind::ReferrerFixed, 1000),
                (RewardKind::ReferrerPercent, 500)
            ]
        );
        h.assert_blocks_held(&[alice.id, bob.id]).await;
    }

    /// Pending rewards are not approved while their owner is blocked, and are
    /// on the first run after the unblock.
    pub async fn ops_pending_rewards_wait_out_the_block<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (alice, bob) = h.pair().await;
        let (carol, dave) = h.pair().await;
        let a = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("record")
            .rewards;
        let c = h
            .convert(&dave, &h.conversion_id(), 10_000)
            .await
            .expect("record")
            .rewards;
        h.block(&alice, "review").await;
        h.advance_secs(31 * DAY);
        let approved = h.approve().await;
        assert_eq!(approved.len(), 2, "only Carol's two");
        assert!(approved.iter().all(|r| r.user == carol.id));
        assert_eq!(h.status(&a[0]).await, RewardStatus::Pending);
        assert_eq!(h.status(&c[0]).await, RewardStatus::Approved);
        assert_eq!(h.rub(&alice).await.pending, 1500);
        h.unblock(&alice).await;
        let approved = h.approve().await;
        assert_eq!(approved.len(), 2);
        assert!(approved.iter().all(|r| r.user == alice.id));
        assert_eq!(h.rub(&alice).await.approved, 1500);
        h.assert_blocks_held(&[]).await;
    }

    /// Voiding: pending and approved → voided (balances drop, events name
    /// the operator); voided again → unchanged; paid and clawbacks → not
    /// voidable; unknown → not found.
    pub async fn ops_void_reward<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (alice, bob) = h.pair().await;
        let first = h
            .convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("record")
            .rewards;
        assert_eq!(h.rub(&alice).await.pending, 1500);
        let before = h.last_event().await;
        let r = h
            .ops
            .void_reward(h.operator, first[0].id, &reason("test order"))
            .await
            .expect("void");
        assert_eq!((r.status, r.amount), (RewardStatus::Voided, rub(1000)));
        assert_eq!(h.rub(&alice).await.pending, 500);
        assert_eq!(
            h.events(before).await,
            vec![
                EventKind::RewardVoided {
                    reward: first[0].id,
                    user: alice.id
                },
                EventKind::RewardVoidedByOperator {
                    reward: first[0].id,
                    user: alice.id,
                    operator: h.operator,
                    reason: reason("test order"),
                },
            ]
        );
        let before = h.last_event().await;
        let out = h
            .store
            .void_reward(first[0].id, &reason("x"), h.operator, h.now())
            .await
            .expect("store");
        assert_eq!(out, VoidOutcome::AlreadyVoided(r));
        assert_eq!(h.events(before).await, vec![]);
        h.advance_secs(31 * DAY);
        h.approve().await;
        assert_eq!(h.rub(&alice).await.approved, 500);
        let r = h
            .ops
            .void_reward(h.operator, first[1].id, &reason("x"))
            .await
            .expect("void approved");
        assert_eq!(r.status, RewardStatus::Voided);
        assert_eq!(h.rub(&alice).await.approved, 0);
        // Paid: not voidable.
        let second = h
            .convert(&bob, &h.conversion_id(), 20_000)
            .await
            .expect("record")
            .rewards;
        h.advance_secs(31 * DAY);
        h.approve().await;
        h.service
            .mark_reward_paid(second[0].id, &"p-1".parse().expect("ref"))
            .await
            .expect("paid");
        assert!(matches!(
            h.ops
                .void_reward(h.operator, second[0].id, &reason("x"))
                .await,
            Err(VoidRewardError::NotVoidable {
                status: RewardStatus::Paid
            })
        ));
        // The welcome reward of Bob is approved: voidable.
        let welcome = h
            .rewards(&bob)
            .await
            .into_iter()
            .find(|r| r.kind == RewardKind::Welcome)
            .expect("welcome");
        h.ops
            .void_reward(h.operator, welcome.id, &reason("x"))
            .await
            .expect("void welcome");
        assert_eq!(h.rub(&bob).await.approved, 0);
        assert!(matches!(
            h.ops
                .void_reward(
                    h.operator,
                    crate::reward::RewardId::generate(&SeededRandom::new(5)),
                    &reason("x")
                )
                .await,
            Err(VoidRewardError::RewardNotFound)
        ));
    }

    /// Voiding an approved reward that was partly clawed back voids its
    /// clawbacks too, so the balance loses exactly what it still counted; a
    /// clawback alone is not voidable.
    pub async fn ops_void_takes_the_clawbacks_along<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (alice, bob) = h.pair().await;
        let id = h.conversion_id();
        let rewards = h.convert(&bob, &id, 30_000).await.expect("record").rewards;
        h.advance_secs(31 * DAY);
        h.approve().await;
        let rev = h.reverse(&id, "r1", Some(10_000)).await.expect("reverse");
        let claws: Vec<_> = rev
            .rewards
            .iter()
            .filter(|r| r.kind == RewardKind::Clawback)
            .collect();
        assert_eq!(claws.len(), 2);
        assert!(matches!(
            h.ops
                .void_reward(h.operator, claws[0].id, &reason("x"))
                .await,
            Err(VoidRewardError::NotVoidable { .. })
        ));
        // fixed 1000 − 334 + percent 1500 − 500 = 1666.
        assert_eq!(h.rub(&alice).await.approved, 1666);
        h.ops
            .void_reward(h.operator, rewards[0].id, &reason("x"))
            .await
            .expect("void");
        // Only the percent reward and its clawback are left: 1000.
        assert_eq!(h.rub(&alice).await.approved, 1000);
        let fixed_claw = claws
            .iter()
            .find(|c| c.reverses == Some(rewards[0].id))
            .expect("claw");
        assert_eq!(h.status(fixed_claw).await, RewardStatus::Voided);
        // A later reversal leaves the voided reward alone.
        let rev = h.reverse(&id, "r2", None).await.expect("reverse rest");
        assert!(
            rev.rewards
                .iter()
                .all(|r| r.reverses != Some(rewards[0].id))
        );
        assert_eq!(h.rub(&alice).await.approved, 0);
    }

    /// The user detail: profile with balances, referrer, block.
    pub async fn ops_user_detail<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (alice, bob) = h.pair().await;
        let d = h.ops.user_detail(bob.id).await.expect("detail");
        assert_eq!(d.profile.user, bob);
        assert_eq!(d.profile.activated_invite_code, Some(alice.invite_code));
        assert_eq!(
            d.referrer.map(|r| (r.id, r.phone)),
            Some((alice.id, alice.phone))
        );
        assert_eq!(d.block, None);
        assert_eq!(d.profile.rewards.first().map(|b| b.approved), Some(300));
        h.block(&alice, "why").await;
        let d = h.ops.user_detail(alice.id).await.expect("detail");
        assert_eq!(d.referrer, None);
        assert_eq!(d.profile.referrals, vec![bob.phone]);
        let b = d.block.expect("blocked");
        assert_eq!((b.reason.as_str(), b.by), ("why", h.operator));
        assert!(matches!(
            h.ops
                .user_detail(UserId::generate(&SeededRandom::new(7)))
                .await,
            Err(crate::service::UserDetailError::UserNotFound)
        ));
    }

    /// Search: by phone prefix (`+` optional), by exact code (any case),
    /// both for six digits, everyone without a query; pages by phone text,
    /// complete and without repeats.
    pub async fn ops_search_by_phone_prefix_and_code<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        // `h.user()` phones are +7998NNNNNNN; add a few elsewhere.
        let mut users = Vec::new();
        for _ in 0..23 {
            users.push(h.user().await);
        }
        let others: Vec<User> = {
            let mut v = Vec::new();
            for p in ["+12025550100", "+447700900123", "+79990000001"] {
                let phone: PhoneNumber = p.parse().expect("phone");
                v.push(h.login(&phone).await.expect("login"));
            }
            v
        };
        h.refer(&users[1], &users[0]).await;
        h.block(&users[2], "x").await;
        let all = |q: &str| {
            let q = UserQuery::parse(q).expect("query");
            let h = &h;
            async move {
                let mut out: Vec<UserSummary> = Vec::new();
                let mut after: Option<UserCursor> = None;
                loop {
                    let page = h
                        .ops
                        .search_users(&q, after, PageLimit::new(4).expect("limit"))
                        .await
                        .expect("search");
                    assert!(page.items.len() <= 4);
                    out.extend(page.items);
                    match page.next {
                        Some(n) => after = Some(n),
                        None => return out,
                    }
                }
            }
        };
        let everyone = all("").await;
        assert_eq!(everyone.len(), 26);
        let texts: Vec<String> = everyone.iter().map(|u| u.phone.to_e164()).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(texts, sorted, "ordered by phone text, no repeats");
        let seven = all("+7998").await;
        assert_eq!(seven.len(), 23);
        assert_eq!(all("7998").await, seven);
        assert_eq!(all("+7998000001").await.len(), 10); // ...0010 to ...0019
        assert_eq!(
            all("44").await.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![others[1].id]
        );
        assert!(all("+3").await.is_empty());
        let u0 = everyone.iter().find(|u| u.id == users[0].id).expect("u0");
        assert_eq!(u0.referral_count, 1);
        assert!(
            everyone
                .iter()
                .find(|u| u.id == users[2].id)
                .expect("u2")
                .blocked
        );
        assert!(!u0.blocked);
        let by_code = all(&users[5].invite_code.as_str().to_lowercase()).await;
        assert_eq!(
            by_code.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![users[5].id]
        );
        // Six digits: a phone prefix and a code at once (a code only in this store's
        // spelling, so here the prefix side finds them).
        assert_eq!(all("799800").await.len(), 23);
        // A page after a cursor past the code's owner does not repeat it.
        let q = UserQuery::parse(users[5].invite_code.as_str()).expect("query");
        let page = h
            .ops
            .search_users(
                &q,
                Some(UserCursor::after(users[5].phone)),
                PageLimit::default(),
            )
            .await
            .expect("search");
        assert!(page.items.is_empty() && page.next.is_none());
    }

    /// The leaderboard: more referrals first, ties by the earlier latest
    /// activation; the window counts only its activations; `rewarded` is
    /// approved and paid referrer rewards with clawbacks, not pending ones.
    pub async fn ops_leaderboard<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (a, b, c) = (h.user().await, h.user().await, h.user().await);
        let mut referees = Vec::new();
        // a: 3 long ago; b: 2 recent; c: 2 recent, later than b's.
        for _ in 0..3 {
            let r = h.user().await;
            h.refer(&r, &a).await;
            referees.push(r);
        }
        h.advance_secs(40 * DAY);
        for owner in [&b, &b, &c, &c] {
            h.advance_secs(60);
            let r = h.user().await;
            h.refer(&r, owner).await;
            referees.push(r);
        }
        let top = h
            .ops
            .leaderboard(LeaderboardLimit::new(10).expect("limit"), None)
            .await
            .expect("board");
        let ids: Vec<_> = top.iter().map(|e| (e.user, e.referrals)).collect();
        assert_eq!(ids, vec![(a.id, 3), (b.id, 2), (c.id, 2)]);
        assert_eq!(top[0].phone, a.phone);
        let top1 = h
            .ops
            .leaderboard(LeaderboardLimit::new(1).expect("limit"), None)
            .await
            .expect("board");
        assert_eq!(top1.len(), 1);
        let window = h
            .ops
            .leaderboard(
                LeaderboardLimit::default(),
                Some(StatsDays::new(30).expect("days")),
            )
            .await
            .expect("board");
        let ids: Vec<_> = window.iter().map(|e| (e.user, e.referrals)).collect();
        assert_eq!(ids, vec![(b.id, 2), (c.id, 2)]);
        // rewarded: a's referee converts; pending does not count.
        let id = h.conversion_id();
        h.convert(&referees[0], &id, 10_000).await.expect("record");
        let top = h
            .ops
            .leaderboard(LeaderboardLimit::default(), None)
            .await
            .expect("board");
        assert!(top[0].rewarded.iter().all(|m| m.amount() == 0));
        h.advance_secs(31 * DAY);
        h.approve().await;
        h.reverse(&id, "r", Some(5_000)).await.expect("reverse");
        let top = h
            .ops
            .leaderboard(LeaderboardLimit::default(), None)
            .await
            .expect("board");
        // 1000 + 500 approved, clawed back by half: 500 + 250.
        assert_eq!(top[0].rewarded, vec![rub(750)]);
        // Welcome rewards are not referrer rewards.
        assert!(top[1].rewarded.iter().all(|m| m.amount() == 0));
    }

    /// Statistics: totals all time; exactly `days` rows, oldest first, the
    /// last one today, counting by creation date.
    pub async fn ops_stats_per_day<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let day0 = h.now().date_naive();
        let (_alice, bob) = h.pair().await;
        h.convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("record");
        h.advance_secs(2 * DAY);
        let _carol = h.user().await;
        h.convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("record");
        h.convert(&bob, &h.conversion_id(), 10_000)
            .await
            .expect("record");
        let today = h.now().date_naive();
        let s = h
            .ops
            .stats(StatsDays::new(3).expect("days"))
            .await
            .expect("stats");
        assert_eq!(
            (s.totals.users, s.totals.activations, s.totals.conversions),
            (3, 1, 3)
        );
        let rows: Vec<_> = s
            .days
            .iter()
            .map(|d| (d.date, d.users, d.activations, d.conversions))
            .collect();
        assert_eq!(
            rows,
            vec![
                (day0, 2, 1, 1),
                (day0 + TimeDelta::days(1), 0, 0, 0),
                (today, 1, 0, 2),
            ]
        );
        let r = s
            .totals
            .rewards
            .iter()
            .find(|t| t.currency == Currency::RUB)
            .expect("RUB");
        // welcome 300 approved; 1000 + 500 + 500 + 500 pending.
        assert_eq!((r.pending, r.approved, r.paid, r.voided), (2500, 300, 0, 0));
        let s1 = h
            .ops
            .stats(StatsDays::new(1).expect("days"))
            .await
            .expect("stats");
        assert_eq!(s1.days.len(), 1);
        assert_eq!(s1.days[0].date, today);
        let s366 = h
            .ops
            .stats(StatsDays::new(366).expect("days"))
            .await
            .expect("stats");
        assert_eq!(s366.days.len(), 366);
        assert_eq!(s366.days.last().map(|d| d.date), Some(today));
    }

    /// The referrals export: every activation once, in `(activated_at,
    /// referee)` order, in batches of at most the limit.
    pub async fn ops_export_referrals_in_batches<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let owners = [h.user().await, h.user().await];
        let mut expected = Vec::new();
        for i in 0..23 {
            if i % 5 != 0 {
                h.advance_secs(1);
            }
            let r = h.user().await;
            h.refer(&r, &owners[i % 2]).await;
            expected.push((r.id, owners[i % 2].id));
        }
        let mut got = Vec::new();
        let mut after: Option<ReferralCursor> = None;
        let mut batches = 0;
        loop {
            let batch = h.store.export_referrals(after, 7).await.expect("export");
            assert!(batch.rows.len() <= 7);
            batches += 1;
            for row in &batch.rows {
                let owner = owners.iter().find(|o| o.id == row.referrer).expect("owner");
                assert_eq!(
                    (row.referrer_phone, row.invite_code),
                    (owner.phone, owner.invite_code)
                );
            }
            got.extend(
                batch
                    .rows
                    .iter()
                    .map(|r| (r.activated_at, r.referee, r.referrer)),
            );
            match batch.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert!(batches >= 4);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted, "in (activated_at, referee) order");
        let mut pairs: Vec<_> = got.iter().map(|&(_, e, r)| (e, r)).collect();
        pairs.sort();
        expected.sort();
        assert_eq!(pairs, expected);
        let all = h.ops.export_referrals(None).await.expect("export");
        assert_eq!((all.rows.len(), all.next), (23, None));
    }

    /// The rewards export: every reward once (all kinds and statuses), in
    /// `(created_at, id)` order, with its owner's phone.
    pub async fn ops_export_rewards_in_batches<S: OperatorKitStore>(store: S) {
        let h = OperatorHarness::new(store);
        let (alice, bob) = h.pair().await;
        let mut ids = Vec::new();
        for _ in 0..6 {
            h.advance_secs(1);
            let id = h.conversion_id();
            h.convert(&bob, &id, 10_000).await.expect("record");
            ids.push(id);
        }
        h.reverse(&ids[0], "r", None).await.expect("reverse");
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let batch = h.store.export_rewards(after, 3).await.expect("export");
            assert!(batch.rows.len() <= 3);
            for row in &batch.rows {
                let owner = if row.reward.user == alice.id {
                    &alice
                } else {
                    &bob
                };
                assert_eq!(row.phone, owner.phone);
            }
            got.extend(batch.rows.into_iter().map(|r| r.reward));
            match batch.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        // welcome + fixed + 6 percent.
        assert_eq!(got.len(), 8);
        let keys: Vec<_> = got.iter().map(|r| (r.created_at, r.id)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted);
        assert_eq!(
            got.iter()
                .filter(|r| r.status == RewardStatus::Voided)
                .count(),
            2
        );
    }

    /// A block racing an approval: the reward is approved only if the
    /// approval came first (outbox order), else it waits out the block.
    pub async fn race_block_and_approval<S: OperatorKitStore>(store: S) {
        let h = Arc::new(OperatorHarness::new(store));
        for round in rounds().take(40) {
            // A fresh pair each round: the clock moves past the reward window.
            let (alice, bob) = h.pair().await;
            let made = h
                .convert(&bob, &h.conversion_id(), 10_000)
                .await
                .expect("record");
            assert_eq!(made.rewards.len(), 2);
            h.advance_secs(31 * DAY);
            race(2, |i| {
                let h = Arc::clone(&h);
                let alice = alice.clone();
                async move {
                    stagger(i, round).await;
                    if i == 0 {
                        h.block(&alice, "race").await;
                    } else {
                        h.approve().await;
                    }
                }
            })
            .await;
            h.assert_blocks_held(&[alice.id]).await;
            h.unblock(&alice).await;
            h.approve().await;
            assert_eq!(h.rub(&alice).await.pending, 0);
        }
    }

    /// A block of the referrer racing a conversion of their referee: the
    /// conversion earns exactly when it came first.
    pub async fn race_block_and_conversion<S: OperatorKitStore>(store: S) {
        let h = Arc::new(OperatorHarness::new(store));
        let (alice, bob) = h.pair().await;
        for round in rounds().take(40) {
            let id = h.conversion_id();
            race(2, |i| {
                let (h, alice, bob, id) = (Arc::clone(&h), alice.clone(), bob.clone(), id.clone());
                async move {
                    stagger(i, round).await;
                    if i == 0 {
                        h.block(&alice, "race").await;
                    } else {
                        h.convert(&bob, &id, 10_000).await.expect("record");
                    }
                }
            })
            .await;
            // Earned exactly when the conversion's event precedes the block's.
            let events = h.all_events().await;
            let pos = |f: &dyn Fn(&EventKind) -> bool| events.iter().rposition(|(_, k)| f(k));
            let conv = pos(&|k| matches!(k, EventKind::ConversionRecorded { conversion, .. } if *conversion == id))
                .expect("conversion event");
            let block =
                pos(&|k| matches!(k, EventKind::UserBlocked { user, .. } if *user == alice.id))
                    .expect("block event");
            let earned = events[conv..].iter().any(
                |(_, k)| matches!(k, EventKind::RewardCreated { user, .. } if *user == alice.id),
            );
            assert_eq!(
                earned,
                conv < block,
                "conversion at {conv}, block at {block}"
            );
            h.assert_blocks_held(&[alice.id]).await;
            h.unblock(&alice).await;
        }
    }

    /// A block racing the blocked user's activation: the activation happens
    /// only before the block.
    pub async fn race_block_and_activation<S: OperatorKitStore>(store: S) {
        let h = Arc::new(OperatorHarness::new(store));
        for round in rounds().take(40) {
            let (alice, bob) = (h.user().await, h.user().await);
            let results = race(2, |i| {
                let (h, alice, bob) = (Arc::clone(&h), alice.clone(), bob.clone());
                async move {
                    stagger(i, round).await;
                    if i == 0 {
                        h.block(&bob, "race").await;
                        None
                    } else {
                        Some(h.ops.activate_invite(bob.id, &alice.invite_code).await)
                    }
                }
            })
            .await;
            let activated = match &results[1] {
                Some(Ok(_)) => true,
                Some(Err(ActivateError::Blocked)) => false,
                other => panic!("unexpected {other:?}"),
            };
            let profile = h.ops.profile(alice.id).await.expect("profile");
            assert_eq!(profile.referral_count, u64::from(activated));
            h.assert_blocks_held(&[]).await;
        }
    }

    /// A void racing a payment of one approved reward: exactly one wins.
    pub async fn race_void_and_payment<S: OperatorKitStore>(store: S) {
        let h = Arc::new(OperatorHarness::new(store));
        for round in rounds().take(40) {
            // A fresh pair each round: the clock moves past the reward window.
            let (_alice, bob) = h.pair().await;
            let rewards = h
                .convert(&bob, &h.conversion_id(), 10_000)
                .await
                .expect("record")
                .rewards;
            h.advance_secs(31 * DAY);
            h.approve().await;
            let target = rewards.last().expect("a reward").id;
            let results = race(2, |i| {
                let h = Arc::clone(&h);
                async move {
                    stagger(i, round).await;
                    if i == 0 {
                        h.ops
                            .void_reward(h.operator, target, &reason("race"))
                            .await
                            .is_ok()
                    } else {
                        h.service
                            .mark_reward_paid(target, &format!("p-{round}").parse().expect("ref"))
                            .await
                            .is_ok()
                    }
                }
            })
            .await;
            assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
            let status = h.status(&rewards[rewards.len() - 1]).await;
            assert_eq!(
                status,
                if results[0] {
                    RewardStatus::Voided
                } else {
                    RewardStatus::Paid
                }
            );
        }
    }
}
