//! [`OtpStore`] for [`PgStore`].
//!
//! Round trips: `issue_otp` 1 (`referral_otp_issue`), `revoke_otp` 1
//! (`referral_otp_revoke`), `verify_otp` 1 when the answer changes nothing
//! (locked, no code, burned, expired) and 2 otherwise (a read, then
//! `referral_otp_verify`). Each function call is its own implicit
//! transaction under the phone's advisory lock.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use referral_core::otp::{ChallengeId, OtpGuess, OtpHash, OtpPolicy};
use referral_core::store::{IssueOutcome, NewChallenge, OtpStore, VerifyOutcome};
use referral_core::{PhoneNumber, StoreError};
use sqlx::Row;
use uuid::Uuid;

use crate::error::{corrupt, map};
use crate::{PgStore, int, micros};

/// How often `verify_otp` reads again when a new code replaced the one it
/// checked. A replacement needs an issue, which the resend cooldown spaces
/// out, so more than one retry is already unlikely.
const VERIFY_RETRIES: usize = 8;

/// The read half of `verify_otp`: the failure window and the live code, from
/// one snapshot.
const READ_LIVE: &str = "
SELECT referral_window_full_until(w.ats, $3, $2 * interval '1 microsecond') AS locked_until,
       c.challenge_id, c.code_hash, c.issued_at, c.expires_at, c.wrong_guesses
  FROM (SELECT array_agg(f.at ORDER BY f.at) AS ats
          FROM referral_otp_failures f
         WHERE f.phone = $1 AND f.at > $4 - $2 * interval '1 microsecond') AS w
  LEFT JOIN referral_otp_codes c ON c.phone = $1";

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
        let row = sqlx::query(
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
        .bind(policy.max_global_sends_per_window.map(int))
        .fetch_one(&self.pool)
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
        sqlx::query("SELECT referral_otp_revoke($1, $2)")
            .bind(phone.to_e164())
            .bind(challenge.as_uuid())
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map)
    }

    async fn verify_otp(
        &self,
        phone: &PhoneNumber,
        guess: &OtpGuess<'_>,
        policy: &OtpPolicy,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, StoreError> {
        // Why not `SELECT … FOR UPDATE`, check, `UPDATE` in one transaction:
        // that holds the phone's lock across a network round trip and costs
        // four (BEGIN, SELECT, UPDATE, COMMIT). Instead the guess is checked
        // against a plain read, and the verdict applied by one function call
        // that re-checks every step under the phone's lock, for the very
        // challenge whose hash was checked (a challenge's hash never changes).
        let phone_text = phone.to_e164();
        for _ in 0..VERIFY_RETRIES {
            let row = sqlx::query(READ_LIVE)
                .bind(&phone_text)
                .bind(micros(policy.failure_window))
                .bind(int(policy.max_failures_per_window))
                .bind(now)
                .fetch_one(&self.pool)
                .await
                .map_err(map)?;
            let locked_until: Option<DateTime<Utc>> = row.try_get("locked_until").map_err(map)?;
            if let Some(retry_at) = locked_until {
                return Ok(VerifyOutcome::Locked { retry_at });
            }
            let id: Option<Uuid> = row.try_get("challenge_id").map_err(map)?;
            let Some(id) = id.map(ChallengeId::from_uuid) else {
                return Ok(VerifyOutcome::NoChallenge);
            };
            let hash: Option<Vec<u8>> = row.try_get("code_hash").map_err(map)?;
            let hash: [u8; 32] = required(hash, "code_hash")?
                .try_into()
                .map_err(|_| corrupt("a code hash is not 32 bytes"))?;
            let issued_at: Option<DateTime<Utc>> = row.try_get("issued_at").map_err(map)?;
            let issued_at = required(issued_at, "issued_at")?;
            let expires_at: Option<DateTime<Utc>> = row.try_get("expires_at").map_err(map)?;
            let expires_at = required(expires_at, "expires_at")?;
            let wrong: Option<i32> = row.try_get("wrong_guesses").map_err(map)?;
            let wrong = u32::try_from(required(wrong, "wrong_guesses")?)
                .map_err(|_| corrupt("a negative wrong-guess count"))?;
            if wrong >= policy.max_attempts {
                return Ok(VerifyOutcome::Burned { issued_at });
            }
            if now >= expires_at {
                return Ok(VerifyOutcome::Expired);
            }

            let matched = guess.matches(id, &OtpHash::from_bytes(hash));
            let row = sqlx::query(
                "SELECT outcome, at, attempts_left FROM referral_otp_verify($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&phone_text)
            .bind(id.as_uuid())
            .bind(matched)
            .bind(now)
            .bind(int(policy.max_attempts))
            .bind(micros(policy.failure_window))
            .bind(int(policy.max_failures_per_window))
            .fetch_one(&self.pool)
            .await
            .map_err(map)?;
            let outcome: String = row.try_get("outcome").map_err(map)?;
            let at: Option<DateTime<Utc>> = row.try_get("at").map_err(map)?;
            return Ok(match outcome.as_str() {
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
                "replaced" => continue,
                other => return Err(corrupt(format_args!("verify outcome {other:?}"))),
            });
        }
        Err(StoreError::internal(
            "the phone's login code kept being replaced while it was verified",
        ))
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}
