//! The conformance kit of referral-core, run against `MemoryStore`.

use referral_memory::MemoryStore;

async fn store() -> Option<MemoryStore> {
    Some(MemoryStore::new())
}

referral_core::store_conformance_tests!(store);
referral_core::reward_conformance_tests!(store);

/// The login-code lifecycle as a state machine: random sequences of requests,
/// right and wrong guesses and clock jumps, checked step by step against a
/// model of the rules. No success after expiry, burn or use; no send past a
/// limit; the phone locked exactly when the model says.
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

        fn locked(&self, p: &OtpPolicy, now: DateTime<Utc>) -> bool {
            Self::within(&self.failures, now, p.failure_window)
                >= p.max_failures_per_window as usize
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
                    match op {
                        Op::Wait(s) => h.advance_secs(s),
                        Op::Request => {
                            let r = h.service.request_code(&phone).await;
                            let cooling = m.sends.last().is_some_and(|t| now - *t < TimeDelta::from_std(p.resend_cooldown).unwrap());
                            let capped = Model::within(&m.sends, now, p.send_window) >= p.max_sends_per_window as usize;
                            if m.locked(&p, now) {
                                assert!(matches!(r, Err(RequestCodeError::Locked { .. })), "{r:?}");
                            } else if cooling {
                                assert!(matches!(r, Err(RequestCodeError::Cooldown { .. })), "{r:?}");
                            } else if capped {
                                assert!(matches!(r, Err(RequestCodeError::TooManySends { .. })), "{r:?}");
                            } else {
                                assert!(r.is_ok(), "{r:?}");
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
                            if m.locked(&p, now) {
                                assert!(matches!(r, Err(VerifyError::Locked { .. })), "{r:?}");
                                continue;
                            }
                            let Some((_, issued, wrong, used)) = m.live.as_mut() else {
                                assert!(matches!(r, Err(VerifyError::NoLiveCode)), "{r:?}");
                                continue;
                            };
                            if *used {
                                assert!(matches!(r, Err(VerifyError::NoLiveCode)), "used: {r:?}");
                            } else if *wrong >= p.max_attempts {
                                assert!(matches!(r, Err(VerifyError::CodeBurned { .. })), "burned: {r:?}");
                            } else if now - *issued >= TimeDelta::from_std(p.ttl).unwrap() {
                                assert!(matches!(r, Err(VerifyError::Expired)), "expired: {r:?}");
                            } else if right {
                                assert!(r.is_ok(), "{r:?}");
                                *used = true;
                            } else {
                                *wrong += 1;
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
