//! [`OtpStore`] for [`PgStore`].
//!
//! Round trips: one per operation, each a function call that is its own
//! implicit transaction under the phone's advisory lock: `issue_otp`
//! (`referral_otp_issue`, which also takes the client's lock when a
//! per-client limit applies, keeps the step-up candidate for a stepped-up
//! phone and prunes a few long-dead rows of other phones and clients,
//! migration 20261130030001, and charges a global budget to one of its 16
//! shards under that shard's row lock, migration 20261130060001), `revoke_otp` (`referral_otp_revoke`) and
//! `verify_otp` (`referral_otp_verify`, which compares the guess's hash
//! itself, migration 3, and burns the live code at the step-up).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use referral_core::otp::{ChallengeId, OtpGuess, OtpLength, OtpPolicy};
use referral_core::store::{IssueOutcome, NewChallenge, OtpStore, VerifyOutcome};
use referral_core::{ClientAddress, PhoneNumber, StoreError};
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
        client: Option<&ClientAddress>,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<IssueOutcome, StoreError> {
        let row = self
            .fetch_one(
                sqlx::query(
                    "SELECT outcome, at, code_length FROM referral_otp_issue(\
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(phone.to_e164())
                .bind(challenge.id.as_uuid())
                .bind(&challenge.hash.as_bytes()[..])
                .bind(&challenge.step_up_hash.as_bytes()[..])
                .bind(challenge.issued_at)
                .bind(challenge.expires_at)
                .bind(now)
                .bind(client.map(ToString::to_string))
                .bind(micros(policy.resend_cooldown))
                .bind(micros(policy.send_window))
                .bind(int(policy.max_sends_per_window))
                .bind(micros(policy.failure_window))
                .bind(int(policy.max_failures_per_window))
                .bind(policy.max_sends_per_client_per_window.map(int))
                .bind(policy.max_global_sends_per_window.map(int))
                .bind(i32::from(policy.length.get()))
                .bind(i32::from(policy.step_up_length.get())),
            )
            .await
            .map_err(map)?;
        let outcome: String = row.try_get("outcome").map_err(map)?;
        let at: Option<DateTime<Utc>> = row.try_get("at").map_err(map)?;
        let at = required(at, "the outcome's time")?;
        Ok(match outcome.as_str() {
            "issued" => {
                let length: Option<i32> = row.try_get("code_length").map_err(map)?;
                let length = required(length, "code_length")?;
                let code_length = u8::try_from(length)
                    .ok()
                    .and_then(|n| OtpLength::new(n).ok())
                    .ok_or_else(|| corrupt(format_args!("code length {length}")))?;
                IssueOutcome::Issued {
                    next_send_at: at,
                    code_length,
                }
            }
            "cooldown" => IssueOutcome::Cooldown { retry_at: at },
            "too_many_sends" => IssueOutcome::TooManySends { retry_at: at },
            "client_limited" => IssueOutcome::ClientLimited { retry_at: at },
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
            "SELECT outcome, at, attempts_left FROM referral_otp_verify($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(phone.to_e164())
        .bind(&guess.hash().as_bytes()[..])
        .bind(now)
        .bind(int(policy.max_attempts))
        .bind(micros(policy.failure_window))
        .bind(int(policy.max_failures_per_window))
        .bind(i32::from(policy.step_up_length.get())))
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
