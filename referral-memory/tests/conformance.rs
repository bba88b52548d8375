//! The conformance kit of referral-core, run against `MemoryStore`.

use referral_memory::MemoryStore;

async fn store() -> Option<MemoryStore> {
    Some(MemoryStore::new())
}

referral_core::store_conformance_tests!(store);
referral_core::reward_conformance_tests!(store);
referral_core::operator_conformance_tests!(store);

/// The login-code lifecycle as a state machine: random sequences of requests,
/// right and wrong guesses and clock jumps, checked step by step against a
/// model of the rules. No success after expiry, burn or use; no send past a
/// limit; the phone stepped up (longer codes, the short one burned) exactly
/// when the model says; its state forgotten once every window has passed.
mod otp_state_machine {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{DateTime, TimeDelta, Utc};
    use proptest::prelude::*;
    use referral_core::testkit::Harness;
    use referral_core::{OtpCode, OtpPolicy, RequestCodeError, VerifyError};
    use referral_memory::MemoryStore;

    #[derive(Debug, Clone)]
    enum Op {
        Request,
        GuessRight,
        GuessWrong,
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Request),
            3 => Just(Op::GuessRight),
            4 => Just(Op::GuessWrong),
            3 => prop::sample::select(vec![1u64, 30, 59, 60, 61, 299, 300, 301, 1800, 3600, 86_400])
                .prop_map(Op::Wait),
        ]
    }

    /// What the rules say about one phone.
    #[derive(Debug, Default)]
    struct Model {
        /// The live code: its digits, issue time, wrong guesses, used.
        live: Option<(OtpCode, DateTime<Utc>, u32, bool)>,
        sends: Vec<DateTime<Utc>>,
        failures: Vec<DateTime<Utc>>,
    }

    impl Model {
        fn within(list: &[DateTime<Utc>], now: DateTime<Utc>, window: Duration) -> usize {
            let start = now - TimeDelta::from_std(window).unwrap();
            list.iter().filter(|t| **t > start).count()
        }

        fn stepped_up(&self, p: &OtpPolicy, now: DateTime<Utc>) -> bool {
            Self::within(&self.failures, now, p.failure_window)
                >= p.max_failures_per_window as usize
        }

        /// When the store may forget the phone: every window has passed.
        fn drop_at(&self, p: &OtpPolicy) -> Option<DateTime<Utc>> {
            let d = |x: Duration| TimeDelta::from_std(x).unwrap();
            let live = self
                .live
                .as_ref()
                .filter(|l| !l.3)
                .map(|l| l.1 + d(p.ttl) + d(p.send_window));
            let send = self
                .sends
                .last()
                .map(|t| *t + d(p.send_window.max(p.resend_cooldown)));
            let failure = self.failures.last().map(|t| *t + d(p.failure_window));
            [live, send, failure].into_iter().flatten().max()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn the_lifecycle_follows_the_rules(ops in prop::collection::vec(op(), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let h = Arc::new(Harness::new(MemoryStore::new()));
                let p = OtpPolicy::default();
                let phone = h.phone();
                let mut m = Model::default();
                for op in ops {
                    let now = h.now();
                    if m.drop_at(&p).is_some_and(|at| at <= now) {
                        m = Model::default();
                    }
                    match op {
                        Op::Wait(s) => h.advance_secs(s),
                        Op::Request => {
                            let r = h.service.request_code(&phone).await;
                            let cooling = m.sends.last().is_some_and(|t| now - *t < TimeDelta::from_std(p.resend_cooldown).unwrap());
                            let capped = Model::within(&m.sends, now, p.send_window) >= p.max_sends_per_window as usize;
                            if cooling {
                                assert!(matches!(r, Err(RequestCodeError::Cooldown { .. })), "{r:?}");
                            } else if capped {
                                assert!(matches!(r, Err(RequestCodeError::TooManySends { .. })), "{r:?}");
                            } else {
                                let sent = r.unwrap();
                                let want = if m.stepped_up(&p, now) { p.step_up_length } else { p.length };
                                assert_eq!(sent.code_length, want);
                                assert_eq!(h.sms.latest(&phone).unwrap().code.length(), want);
                                m.sends.push(now);
                                m.live = Some((h.sms.latest(&phone).unwrap().code, now, 0, false));
                            }
                        }
                        Op::GuessRight | Op::GuessWrong => {
                            let right = matches!(op, Op::GuessRight);
                            let guess = match (&m.live, right) {
                                (Some((code, ..)), true) => code.clone(),
                                (Some((code, ..)), false) => h.wrong(code),
                                (None, _) => OtpCode::parse("0000", p.length).unwrap(),
                            };
                            let r = h.service.verify_code(&phone, &guess).await;
                            let stepped = m.stepped_up(&p, now);
                            let Some((code, issued, wrong, used)) = m.live.as_mut() else {
                                assert!(matches!(r, Err(VerifyError::NoLiveCode)), "{r:?}");
                                continue;
                            };
                            if *used {
                                assert!(matches!(r, Err(VerifyError::NoLiveCode)), "used: {r:?}");
                            } else if *wrong >= p.max_attempts || (stepped && code.length() < p.step_up_length) {
                                assert!(matches!(r, Err(VerifyError::CodeBurned { .. })), "burned: {r:?}");
                            } else if now - *issued >= TimeDelta::from_std(p.ttl).unwrap() {
                                assert!(matches!(r, Err(VerifyError::Expired)), "expired: {r:?}");
                            } else if right {
                                assert!(r.is_ok(), "{r:?}");
                                *used = true;
                            } else {
                                *wrong += 1;
                                let failures = Model::within(&m.failures, now, p.failure_window) + 1;
                                if !stepped && failures >= p.max_failures_per_window as usize {
                                    *wrong = p.max_attempts;
                                }
                                let left = p.max_attempts - *wrong;
                                assert!(matches!(r, Err(VerifyError::WrongCode { attempts_left }) if attempts_left == left), "{r:?}");
                                m.failures.push(now);
                            }
                        }
                    }
                }
            });
        }
    }
}

/// The reward ledger against a model of the rules: random sequences of
/// conversions (by three referees of one referrer), partial and whole
/// reversals, approval runs and clock jumps under random policies. After
/// every step the referrer's ledger equals the model's; the sum of their
/// non-voided rewards is never negative and never passes the cap in the
/// cap window; and without a cap, each conversion's rewards are worth what
/// the policy gives for its net amount, within the documented rounding (each
/// reward rounded down: at most one minor unit per reward below).
mod reward_ledger {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::{DateTime, TimeDelta, Utc};
    use proptest::prelude::*;
    use referral_core::testkit::rewards::{RewardHarness, example_policy, live_sum};
    use referral_core::{
        BasisPoints, ConversionId, Reward, RewardKind, RewardPolicy, RewardStatus,
    };
    use referral_memory::MemoryStore;

    const DAY: u64 = 24 * 3600;

    #[derive(Debug, Clone)]
    enum Op {
        Convert { who: usize, amount: i64 },
        Reverse { conv: usize, amount: Option<i64> },
        Wait(u64),
        Approve,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..3, prop_oneof![1i64..300, 1i64..200_000]).prop_map(|(who, amount)| Op::Convert { who, amount }),
            3 => (0usize..16, prop::option::of(1i64..120_000)).prop_map(|(conv, amount)| Op::Reverse { conv, amount }),
            2 => prop::sample::select(vec![60, DAY, 7 * DAY, 10 * DAY]).prop_map(Op::Wait),
            2 => Just(Op::Approve),
        ]
    }

    fn policy() -> impl Strategy<Value = RewardPolicy> {
        (0i64..2_000, 0u32..3_000, prop::option::of(1i64..30_000)).prop_map(|(fixed, bp, cap)| {
            let mut p = example_policy();
            p.referrer_fixed = fixed;
            p.referrer_bp = BasisPoints::new(bp).unwrap();
            p.max_per_referrer = cap;
            p.hold = Duration::from_secs(7 * DAY);
            p.cap_window = Duration::from_secs(30 * DAY);
            p
        })
    }

    /// One reward as the rules say it is.
    #[derive(Debug, Clone)]
    struct MReward {
        original: i64,
        amount: i64,
        clawed: i64,
        created_at: DateTime<Utc>,
        status: RewardStatus,
    }

    #[derive(Debug)]
    struct MConv {
        id: ConversionId,
        amount: i64,
        reversed: i64,
        fixed: Option<usize>,
        rewards: Vec<usize>,
    }

    #[derive(Debug, Default)]
    struct Model {
        rewards: Vec<MReward>,
        /// Clawbacks: amount and creation time.
        clawbacks: Vec<(i64, DateTime<Utc>)>,
        convs: Vec<MConv>,
        fixed_used: [bool; 3],
    }

    impl Model {
        fn live(&self) -> i64 {
            let r: i64 = self
                .rewards
                .iter()
                .filter(|r| r.status != RewardStatus::Voided)
                .map(|r| r.amount)
                .sum();
            r + self.clawbacks.iter().map(|c| c.0).sum::<i64>()
        }

        /// The room the cap has used for a reward made at `now`: the most
        /// the window's rewards and clawbacks sum to over every suffix of
        /// them in time (those of one instant together), at least 0: the
        /// windows still to come that hold the new reward.
        fn cap_used(&self, now: DateTime<Utc>, window: Duration) -> i64 {
            let start = now - TimeDelta::from_std(window).unwrap();
            let mut entries: Vec<(DateTime<Utc>, i64)> = self
                .rewards
                .iter()
                .filter(|r| r.status != RewardStatus::Voided && r.created_at > start)
                .map(|r| (r.created_at, r.amount))
                .chain(
                    self.clawbacks
                        .iter()
                        .filter(|c| c.1 > start)
                        .map(|c| (c.1, c.0)),
                )
                .collect();
            entries.sort_by_key(|e| e.0);
            let (mut tail, mut most) = (0, 0);
            for (i, &(at, amount)) in entries.iter().enumerate().rev() {
                tail += amount;
                if i == 0 || entries[i - 1].0 != at {
                    most = most.max(tail);
                }
            }
            most
        }

        fn in_window(&self, now: DateTime<Utc>, window: Duration) -> i64 {
            let start = now - TimeDelta::from_std(window).unwrap();
            let r: i64 = self
                .rewards
                .iter()
                .filter(|r| r.status != RewardStatus::Voided && r.created_at > start)
                .map(|r| r.amount)
                .sum();
            r + self
                .clawbacks
                .iter()
                .filter(|c| c.1 > start)
                .map(|c| c.0)
                .sum::<i64>()
        }
    }

    fn effective(rewards: &[Reward]) -> i64 {
        live_sum(rewards)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

        #[test]
        fn the_ledger_follows_the_rules(p in policy(), ops in prop::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let h = Arc::new(RewardHarness::with_policy(MemoryStore::new(), p.clone()));
                let alice = h.user().await;
                let mut referees = Vec::new();
                for _ in 0..3 {
                    let u = h.user().await;
                    h.refer(&u, &alice).await;
                    referees.push(u);
                }
                let mut m = Model::default();
                let mut reversal = 0;
                for op in ops {
                    let now = h.now();
                    match op {
                        Op::Wait(s) => h.advance_secs(s),
                        Op::Approve => {
                            let approved = h.approve().await;
                            let hold = TimeDelta::from_std(p.hold).unwrap();
                            let mut due = 0;
                            for r in m.rewards.iter_mut().filter(|r| r.status == RewardStatus::Pending && r.created_at + hold <= now) {
                                r.status = RewardStatus::Approved;
                                due += 1;
                            }
                            assert_eq!(approved.len(), due);
                        }
                        Op::Convert { who, amount } => {
                            let id = h.conversion_id();
                            let got = h.convert(&referees[who], &id, amount).await.expect("record");
                            let mut fixed = 0;
                            if !m.fixed_used[who] {
                                m.fixed_used[who] = true;
                                fixed = p.referrer_fixed;
                            }
                            let mut percent = i64::try_from(i128::from(amount) * i128::from(p.referrer_bp.get()) / 10_000).unwrap();
                            if let Some(cap) = p.max_per_referrer {
                                let mut left = (cap - m.cap_used(now, p.cap_window)).max(0);
                                fixed = fixed.min(left);
                                left -= fixed;
                                percent = percent.min(left);
                            }
                            let mut conv = MConv { id, amount, reversed: 0, fixed: None, rewards: Vec::new() };
                            for (kind, value) in [(RewardKind::ReferrerFixed, fixed), (RewardKind::ReferrerPercent, percent)] {
                                if value > 0 {
                                    if kind == RewardKind::ReferrerFixed {
                                        conv.fixed = Some(m.rewards.len());
                                    }
                                    conv.rewards.push(m.rewards.len());
                                    m.rewards.push(MReward { original: value, amount: value, clawed: 0, created_at: now, status: RewardStatus::Pending });
                                }
                            }
                            let want: Vec<i64> = conv.rewards.iter().map(|&i| m.rewards[i].amount).collect();
                            let have: Vec<i64> = got.rewards.iter().map(|r| r.amount.amount()).collect();
                            assert_eq!(have, want, "rewards of a conversion of {amount}");
                            m.convs.push(conv);
                        }
                        Op::Reverse { conv, amount } => {
                            let Some(c) = m.convs.get_mut(conv) else { continue };
                            reversal += 1;
                            let got = h.reverse(&c.id, &format!("r{reversal}"), amount).await;
                            let remaining = c.amount - c.reversed;
                            let a = amount.unwrap_or(remaining);
                            if a > remaining || a == 0 {
                                assert!(got.is_err(), "{got:?}");
                                continue;
                            }
                            got.expect("reverse");
                            c.reversed += a;
                            let left = c.amount - c.reversed;
                            for &i in &c.rewards {
                                let r = &mut m.rewards[i];
                                let target = i64::try_from(i128::from(r.original) * i128::from(left) / i128::from(c.amount)).unwrap();
                                match r.status {
                                    RewardStatus::Pending if target == 0 => r.status = RewardStatus::Voided,
                                    RewardStatus::Pending => r.amount = target,
                                    RewardStatus::Approved if target < r.amount + r.clawed => {
                                        let diff = target - (r.amount + r.clawed);
                                        r.clawed += diff;
                                        m.clawbacks.push((diff, now));
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    let now = h.now();
                    let rewards: Vec<Reward> = h.rewards(&alice).await.into_iter().collect();
                    let total = effective(&rewards);
                    assert_eq!(total, m.live(), "the ledger equals the model");
                    assert!(total >= 0, "never negative in total: {total}");
                    if let Some(cap) = p.max_per_referrer {
                        assert!(m.in_window(now, p.cap_window) <= cap, "the cap holds");
                        let start = now - TimeDelta::from_std(p.cap_window).unwrap();
                        let stored: i64 = rewards.iter().filter(|r| r.status != RewardStatus::Voided && r.created_at > start).map(|r| r.amount.amount()).sum();
                        assert!(stored <= cap, "the stored rewards in the window ({stored}) pass the cap {cap}");
                    } else {
                        // What the policy gives for each conversion's net amount.
                        for c in &m.convs {
                            let left = c.amount - c.reversed;
                            let fixed = c.fixed.map_or(0, |_| i64::try_from(i128::from(p.referrer_fixed) * i128::from(left) / i128::from(c.amount)).unwrap());
                            let percent = i64::try_from(i128::from(left) * i128::from(p.referrer_bp.get()) / 10_000).unwrap();
                            let ours: i64 = rewards.iter().filter(|r| r.conversion.as_ref() == Some(&c.id) && r.status != RewardStatus::Voided).map(|r| r.amount.amount()).sum();
                            assert!(ours <= fixed + percent && ours >= fixed + percent - 1, "{} left of {}: {ours} vs {fixed} + {percent}", left, c.amount);
                        }
                    }
                }
            });
        }
    }
}
