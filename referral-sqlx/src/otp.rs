//! [`OtpStore`] for [`PgStore`].
//!
//! Round trips: one per operation, each a function call that is its own
//! implicit transaction under the phone's advisory lock: `issue_otp`
//! (`referral_otp_issue`), `revoke_otp` (`referral_otp_revoke`) and
//! `verify_otp` (`referral_otp_verify`, which compares the guess's hash
//! itself, migration 3).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use referral_core::otp::{ChallengeId, OtpGuess, OtpPolicy};
use referral_core::store::{IssueOutcome, NewChallenge, OtpStore, VerifyOutcome};
use referral_core::{PhoneNumber, StoreError};
use sqlx::Row;

use crate::error::{corrupt, map};
use crate::{PgStore, int, micros};

fn required<T>(value: Option<T>, what: &str) -> Result<T, StoreError> {
    value.ok_or_else(|| corrupt(format_args!("{what} is missing")))
}

#[async_trait]
impl OtpStore for PgStore {
    async fn issue_otp(
        &self,
        phone: &PhoneNumber,
        challenge: &NewChallenge,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<IssueOutcome, StoreError> {
        let row = self.fetch_one(sqlx::query(
            "SELECT outcome, at FROM referral_otp_issue($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(phone.to_e164())
        .bind(challenge.id.as_uuid())
        .bind(&challenge.hash.as_bytes()[..])
        .bind(challenge.issued_at)
        .bind(challenge.expires_at)
        .bind(now)
        .bind(micros(policy.resend_cooldown))
        .bind(micros(policy.send_window))
        .bind(int(policy.max_sends_per_window))
        .bind(micros(policy.failure_window))
        .bind(int(policy.max_failures_per_window))
        .bind(policy.max_global_sends_per_window.map(int)))
        .await
        .map_err(map)?;
        let outcome: String = row.try_get("outcome").map_err(map)?;
        let at: Option<DateTime<Utc>> = row.try_get("at").map_err(map)?;
        let at = required(at, "the outcome's time")?;
        Ok(match outcome.as_str() {
            "issued" => IssueOutcome::Issued { next_send_at: at },
            "cooldown" => IssueOutcome::Cooldown { retry_at: at },
            "too_many_sends" => IssueOutcome::TooManySends { retry_at: at },
            "locked" => IssueOutcome::Locked { retry_at: at },
            "budget_spent" => IssueOutcome::BudgetSpent { retry_at: at },
            other => return Err(corrupt(format_args!("issue outcome {other:?}"))),
        })
    }

    async fn revoke_otp(
        &self,
        phone: &PhoneNumber,
        challenge: ChallengeId,
    ) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("SELECT referral_otp_revoke($1, $2)")
                .bind(phone.to_e164())
                .bind(challenge.as_uuid()),
        )
        .await
        .map(drop)
        .map_err(map)
    }

    async fn verify_otp(
        &self,
        phone: &PhoneNumber,
        guess: &OtpGuess,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        let row = self.fetch_one(sqlx::query(
            "SELECT outcome, at, attempts_left FROM referral_otp_verify($1, $2, $3, $4, $5, $6)",
        )
        .bind(phone.to_e164())
        .bind(&guess.hash().as_bytes()[..])
        .bind(now)
        .bind(int(policy.max_attempts))
        .bind(micros(policy.failure_window))
        .bind(int(policy.max_failures_per_window)))
        .await
        .map_err(map)?;
        let outcome: String = row.try_get("outcome").map_err(map)?;
        let at: Option<DateTime<Utc>> = row.try_get("at").map_err(map)?;
        Ok(match outcome.as_str() {
            "verified" => VerifyOutcome::Verified,
            "mismatch" => {
                let left: Option<i32> = row.try_get("attempts_left").map_err(map)?;
                let left = required(left, "attempts_left")?;
                VerifyOutcome::Mismatch {
                    attempts_left: u32::try_from(left).unwrap_or(0),
                }
            }
            "locked" => VerifyOutcome::Locked {
                retry_at: required(at, "retry_at")?,
            },
            "burned" => VerifyOutcome::Burned {
                issued_at: required(at, "issued_at")?,
            },
            "expired" => VerifyOutcome::Expired,
            "no_challenge" => VerifyOutcome::NoChallenge,
            other => return Err(corrupt(format_args!("verify outcome {other:?}"))),
        })
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}
