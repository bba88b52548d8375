//! A rough throughput probe of `PgStore` against a real server.
//!
//! ```text
//! DATABASE_URL=postgres://… cargo run --release -p referral-sqlx --example pg_throughput [TASKS] [OPS]
//! ```
//!
//! It migrates the database of `DATABASE_URL` and writes test users (phones
//! `+7999…`) into it: point it at a scratch database. Prints operations per
//! second for registrations, invite activations (serialised by the writer
//! lock), login-code issues and verifies, and profile reads, each run by TASKS
//! concurrent tasks over one pool of TASKS connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use referral_core::otp::{ChallengeId, OtpCode, OtpGuess, OtpKey, OtpLength, OtpPolicy};
use referral_core::random::SeededRandom;
use referral_core::store::{
    ActivationOutcome, InvitePolicy, IssueOutcome, NewChallenge, NewUser, OtpStore, ReferralStore,
    RegisterOutcome, VerifyOutcome,
};
use referral_core::{InviteCode, PhoneNumber, User, UserId};
use referral_sqlx::{PgStore, PgStoreOptions};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[allow(clippy::print_stdout)]
fn report(what: &str, ops: usize, took: Duration) {
    println!(
        "{what:<28} {ops:>6} ops in {:>7.3} s = {:>8.0} ops/s",
        took.as_secs_f64(),
        ops as f64 / took.as_secs_f64()
    );
}

/// Runs `ops` calls of `op(i)` on `tasks` tasks; how long it took.
async fn run<F, Fut>(tasks: usize, ops: usize, op: F) -> Result<Duration, Error>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = Arc::clone(&op);
            tokio::spawn(async move {
                let mut i = t;
                while i < ops {
                    op(i).await?;
                    i += tasks;
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    Ok(start.elapsed())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Error> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL")?;
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map_or(Ok(16), |s| s.parse())?;
    let ops: usize = args.next().map_or(Ok(2000), |s| s.parse())?;
    let store =
        PgStore::connect_with(PgStoreOptions::new(&url)?.max_connections(u32::try_from(tasks)?))
            .await?;
    store.migrate().await?;
    let t0: DateTime<Utc> = DateTime::from_timestamp(1_900_000_000, 0).ok_or("time")?;
    // Phones unique to this run, so it can be repeated on one database.
    let run_id = u64::from(std::process::id()) % 1000;
    let phone = move |i: usize| -> PhoneNumber {
        format!("+7999{run_id:03}{i:05}")
            .parse()
            .unwrap_or_else(|_| unreachable!())
    };

    let users: Arc<std::sync::Mutex<Vec<User>>> = Arc::default();
    let took = {
        let (store, users) = (store.clone(), Arc::clone(&users));
        run(tasks, ops, move |i| {
            let (store, users) = (store.clone(), Arc::clone(&users));
            async move {
                let rng = SeededRandom::new(i as u64 ^ (run_id << 32));
                let codes: Vec<InviteCode> = (0..4).map(|_| InviteCode::generate(&rng)).collect();
                let new = NewUser {
                    id: UserId::generate(&rng),
                    created_at: t0,
                };
                match store.register(&phone(i), new, &codes).await? {
                    RegisterOutcome::Created(u) | RegisterOutcome::Existing(u) => {
                        users.lock().map_err(|_| "poisoned")?.push(u);
                    }
                    _ => return Err("codes exhausted".into()),
                }
                Ok(())
            }
        })
        .await?
    };
    report("register (new users)", ops, took);

    let users: Arc<Vec<User>> = Arc::new(users.lock().map_err(|_| "poisoned")?.clone());
    // Each user after the first 100 activates the code of one of the first 100.
    let took = {
        let (store, users) = (store.clone(), Arc::clone(&users));
        run(tasks, ops - 100, move |i| {
            let (store, users) = (store.clone(), Arc::clone(&users));
            async move {
                let me = &users[100 + i];
                let owner = &users[i % 100];
                match store
                    .activate_invite(me.id, &owner.invite_code, &InvitePolicy::default(), t0)
                    .await?
                {
                    ActivationOutcome::Activated { .. } | ActivationOutcome::Cycle => Ok(()),
                    other => Err(format!("{other:?}").into()),
                }
            }
        })
        .await?
    };
    report("activate_invite", ops - 100, took);

    let took = {
        let (store, users) = (store.clone(), Arc::clone(&users));
        run(tasks, ops, move |i| {
            let (store, users) = (store.clone(), Arc::clone(&users));
            async move {
                store.profile(users[i % 100].id, 100).await?;
                Ok(())
            }
        })
        .await?
    };
    report("profile (100 referrals)", ops, took);

    let key = Arc::new(OtpKey::from_bytes(&[9u8; 32])?);
    let code = OtpCode::parse("1234", OtpLength::default())?;
    let took = {
        let (store, key, code) = (store.clone(), Arc::clone(&key), code.clone());
        run(tasks, ops, move |i| {
            let (store, key, code) = (store.clone(), Arc::clone(&key), code.clone());
            async move {
                let p = phone(i);
                let id = ChallengeId::generate(&SeededRandom::new(i as u64 ^ (run_id << 40)));
                let challenge = NewChallenge {
                    id,
                    hash: key.hash(&p, &code),
                    step_up_hash: key.hash(&p, &code),
                    issued_at: t0,
                    expires_at: t0 + TimeDelta::minutes(5),
                };
                match store
                    .issue_otp(&p, &challenge, None, &OtpPolicy::default(), t0)
                    .await?
                {
                    IssueOutcome::Issued { .. } => Ok(()),
                    other => Err(format!("{other:?}").into()),
                }
            }
        })
        .await?
    };
    report("issue_otp", ops, took);

    let took = {
        let (store, key, code) = (store.clone(), Arc::clone(&key), code.clone());
        run(tasks, ops, move |i| {
            let (store, key, code) = (store.clone(), Arc::clone(&key), code.clone());
            async move {
                let p = phone(i);
                let outcome = store
                    .verify_otp(
                        &p,
                        &OtpGuess::new(&key, &p, &code),
                        &OtpPolicy::default(),
                        t0 + TimeDelta::seconds(1),
                    )
                    .await?;
                if outcome == VerifyOutcome::Verified {
                    Ok(())
                } else {
                    Err(format!("{outcome:?}").into())
                }
            }
        })
        .await?
    };
    report("verify_otp (right code)", ops, took);
    Ok(())
}
