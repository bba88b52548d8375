//! [`RewardStore`] for [`PgStore`].
//!
//! Round trips: one each. `record_conversion`, `reverse_conversion`,
//! `mark_reward_paid` and `approve_due_rewards` are one call of a plpgsql
//! function (migration `20261130010001_rewards.sql`, where the locks that
//! carry each rule are described); `rewards`, `balances`, `reward` and
//! `conversion` are one `SELECT`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use referral_core::store::{
    ApproveOutcome, NewRewardIds, PayOutcome, RecordOutcome, ReverseOutcome, RewardStore,
};
use referral_core::{
    Balance, Conversion, ConversionId, ConversionKind, ConversionUser, Money, NewConversion,
    PayoutRef, PhoneNumber, ReversalId, Reward, RewardCursor, RewardId, RewardPage, RewardPolicy,
    RewardStatus, StoreError, UserId,
};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{corrupt, map};
use crate::row::{conversion_id, currency, get, limit, payout_ref, reward_kind, some};
use crate::{PgStore, micros};

/// The reward in the `r_*` columns, or `None` when they are NULL (a row
/// carrying a conversion or an outcome without a reward).
pub(crate) fn reward_from(row: &PgRow) -> Result<Option<Reward>, StoreError> {
    let Some(id) = get::<Option<Uuid>>(row, "r_id")? else {
        return Ok(None);
    };
    let cur = currency(&some(
        get::<Option<String>>(row, "r_currency")?,
        "r_currency",
    )?)?;
    let kind: String = some(get(row, "r_kind")?, "r_kind")?;
    let status: String = some(get(row, "r_status")?, "r_status")?;
    let conversion = get::<Option<String>>(row, "r_conversion")?
        .map(|c| conversion_id(&c))
        .transpose()?;
    let referral_phone = get::<Option<String>>(row, "r_referral_phone")?
        .map(|p| {
            p.parse::<PhoneNumber>()
                .map_err(|e| corrupt(format_args!("phone {p:?}: {e}")))
        })
        .transpose()?;
    let payout_ref = get::<Option<String>>(row, "r_payout_ref")?
        .map(|p| payout_ref(&p))
        .transpose()?;
    Ok(Some(Reward {
        id: RewardId::from_uuid(id),
        user: UserId::from_uuid(some(get(row, "r_user")?, "r_user")?),
        kind: reward_kind(&kind)?,
        amount: Money::new(some(get(row, "r_amount")?, "r_amount")?, cur),
        original_amount: Money::new(some(get(row, "r_original")?, "r_original")?, cur),
        status: status
            .parse::<RewardStatus>()
            .map_err(|_| corrupt(format_args!("reward status {status:?}")))?,
        conversion,
        referral: get::<Option<Uuid>>(row, "r_referral")?.map(UserId::from_uuid),
        referral_phone,
        reverses: get::<Option<Uuid>>(row, "r_reverses")?.map(RewardId::from_uuid),
        created_at: some(get(row, "r_created_at")?, "r_created_at")?,
        approved_at: get(row, "r_approved_at")?,
        paid_at: get(row, "r_paid_at")?,
        payout_ref,
    }))
}

/// The conversion in the `c_*` columns.
fn conversion_from(row: &PgRow) -> Result<Conversion, StoreError> {
    let id: String = some(get(row, "c_id")?, "c_id")?;
    let kind: String = some(get(row, "c_kind")?, "c_kind")?;
    let cur = currency(&some(
        get::<Option<String>>(row, "c_currency")?,
        "c_currency",
    )?)?;
    Ok(Conversion {
        id: conversion_id(&id)?,
        user: UserId::from_uuid(some(get(row, "c_user")?, "c_user")?),
        amount: Money::new(some(get(row, "c_amount")?, "c_amount")?, cur),
        kind: ConversionKind::parse(&kind)
            .map_err(|e| corrupt(format_args!("conversion kind {kind:?}: {e}")))?,
        occurred_at: some(get(row, "c_occurred_at")?, "c_occurred_at")?,
        recorded_at: some(get(row, "c_recorded_at")?, "c_recorded_at")?,
        reversed_amount: some(get(row, "c_reversed")?, "c_reversed")?,
    })
}

/// Every reward of `rows`, in order.
fn rewards_from(rows: &[PgRow]) -> Result<Vec<Reward>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(r) = reward_from(row)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The columns of a reward row of the view `referral_reward_rows`, named as
/// [`reward_from`] reads them.
pub(crate) const REWARD_COLUMNS: &str = "r.id AS r_id, r.user_id AS r_user, r.kind AS r_kind,
       r.currency AS r_currency, r.amount AS r_amount, r.original_amount AS r_original,
       r.status AS r_status, r.conversion_id::text AS r_conversion, r.referral_id AS r_referral,
       r.referral_phone AS r_referral_phone, r.reverses AS r_reverses,
       r.created_at AS r_created_at, r.approved_at AS r_approved_at, r.paid_at AS r_paid_at,
       r.payout_ref::text AS r_payout_ref";

/// A page of a user's rewards, newest first, after the cursor `($3, $4)`
/// when given: one row per reward, one row of NULLs when the page is empty,
/// no row when no such user. A plpgsql function (migration
/// 20261130080001) so that it is planned once per session: as a prepared
/// statement its `LIMIT $2` made PostgreSQL plan it afresh on every call.
const REWARD_PAGE: &str = "SELECT * FROM referral_reward_page($1, $2, $3, $4)";

#[async_trait]
impl RewardStore for PgStore {
    async fn record_conversion(
        &self,
        conversion: &NewConversion,
        ids: NewRewardIds,
        policy: &RewardPolicy,
        now: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError> {
        let (user, phone) = match conversion.user {
            ConversionUser::Id(id) => (Some(id.as_uuid()), None),
            ConversionUser::Phone(phone) => (None, Some(phone.to_e164())),
        };
        let ids: Vec<Uuid> = ids.iter().map(RewardId::as_uuid).collect();
        let rows = self
            .fetch_all(
                sqlx::query(
                    "SELECT * FROM referral_record_conversion(
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                )
                .bind(conversion.id.as_str())
                .bind(user)
                .bind(phone)
                .bind(conversion.amount.amount())
                .bind(conversion.amount.currency().as_str())
                .bind(conversion.kind.as_str())
                .bind(conversion.occurred_at)
                .bind(now)
                .bind(&ids)
                .bind(policy.referrer_fixed)
                .bind(i32::from(policy.referrer_bp.get()))
                .bind(micros(policy.window))
                .bind(policy.min_amount)
                .bind(policy.currency.as_str())
                .bind(policy.max_per_referrer)
                .bind(micros(policy.cap_window)),
            )
            .await
            .map_err(map)?;
        let first = rows
            .first()
            .ok_or_else(|| corrupt("record_conversion returned no row"))?;
        let outcome: String = get(first, "outcome")?;
        Ok(match outcome.as_str() {
            "recorded" => RecordOutcome::Recorded {
                conversion: conversion_from(first)?,
                rewards: rewards_from(&rows)?,
            },
            "existing" => RecordOutcome::Existing {
                conversion: conversion_from(first)?,
                rewards: rewards_from(&rows)?,
            },
            "conflict" => RecordOutcome::Conflict {
                existing: conversion_from(first)?,
            },
            "user_not_found" => RecordOutcome::UserNotFound,
            other => return Err(corrupt(format_args!("record outcome {other:?}"))),
        })
    }

    async fn reverse_conversion(
        &self,
        conversion: &ConversionId,
        reversal: &ReversalId,
        amount: Option<i64>,
        ids: NewRewardIds,
        now: DateTime<Utc>,
    ) -> Result<ReverseOutcome, StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(RewardId::as_uuid).collect();
        let rows = self
            .fetch_all(
                sqlx::query("SELECT * FROM referral_reverse_conversion($1, $2, $3, $4, $5)")
                    .bind(conversion.as_str())
                    .bind(reversal.as_str())
                    .bind(amount)
                    .bind(&ids)
                    .bind(now),
            )
            .await
            .map_err(map)?;
        let first = rows
            .first()
            .ok_or_else(|| corrupt("reverse_conversion returned no row"))?;
        let outcome: String = get(first, "outcome")?;
        let n = || -> Result<i64, StoreError> { some(get(first, "n")?, "n") };
        Ok(match outcome.as_str() {
            "reversed" => ReverseOutcome::Reversed {
                conversion: conversion_from(first)?,
                rewards: rewards_from(&rows)?,
            },
            "existing" => ReverseOutcome::Existing {
                conversion: conversion_from(first)?,
                rewards: rewards_from(&rows)?,
            },
            "conflict" => ReverseOutcome::Conflict { amount: n()? },
            "exceeds_remaining" => ReverseOutcome::ExceedsRemaining { remaining: n()? },
            "conversion_not_found" => ReverseOutcome::ConversionNotFound,
            other => return Err(corrupt(format_args!("reverse outcome {other:?}"))),
        })
    }

    async fn mark_reward_paid(
        &self,
        reward: RewardId,
        payout_ref: &PayoutRef,
        now: DateTime<Utc>,
    ) -> Result<PayOutcome, StoreError> {
        let row = self
            .fetch_one(
                sqlx::query("SELECT * FROM referral_mark_reward_paid($1, $2, $3)")
                    .bind(reward.as_uuid())
                    .bind(payout_ref.as_str())
                    .bind(now),
            )
            .await
            .map_err(map)?;
        let outcome: String = get(&row, "outcome")?;
        let reward = || some(reward_from(&row)?, "r_id");
        Ok(match outcome.as_str() {
            "paid" => PayOutcome::Paid(reward()?),
            "already_paid" => PayOutcome::AlreadyPaid(reward()?),
            "not_payable" => PayOutcome::NotPayable(reward()?),
            "not_found" => PayOutcome::NotFound,
            other => return Err(corrupt(format_args!("pay outcome {other:?}"))),
        })
    }

    async fn approve_due_rewards(
        &self,
        hold: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<ApproveOutcome, StoreError> {
        if limit == 0 {
            return Ok(ApproveOutcome::Approved(Vec::new()));
        }
        let rows = self
            .fetch_all(
                sqlx::query("SELECT * FROM referral_approve_due_rewards($1, $2, $3)")
                    .bind(micros(hold))
                    .bind(now)
                    .bind(i32::try_from(limit).unwrap_or(i32::MAX)),
            )
            .await
            .map_err(map)?;
        Ok(ApproveOutcome::Approved(rewards_from(&rows)?))
    }

    async fn rewards(
        &self,
        user: UserId,
        after: Option<RewardCursor>,
        page_size: usize,
    ) -> Result<Option<RewardPage>, StoreError> {
        // One more than asked tells whether another page follows.
        let fetch = limit(page_size).saturating_add(1);
        let rows = self
            .fetch_all(
                sqlx::query(REWARD_PAGE)
                    .bind(user.as_uuid())
                    .bind(fetch)
                    .bind(after.map(|c| c.created_at()))
                    .bind(after.map(|c| c.id().as_uuid())),
            )
            .await
            .map_err(map)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut items = rewards_from(&rows)?;
        let more = items.len() > page_size;
        items.truncate(page_size);
        let next = if more {
            items.last().map(RewardCursor::after)
        } else {
            None
        };
        Ok(Some(RewardPage { items, next }))
    }

    async fn balances(&self, user: UserId) -> Result<Option<Vec<Balance>>, StoreError> {
        let rows = self
            .fetch_all(
                sqlx::query(
                    "SELECT b.currency, b.pending, b.approved, b.paid
               FROM referral_users u
               LEFT JOIN referral_reward_balances b ON b.user_id = u.id AND b.live > 0
              WHERE u.id = $1
              ORDER BY b.currency COLLATE \"C\"",
                )
                .bind(user.as_uuid()),
            )
            .await
            .map_err(map)?;
        if rows.is_empty() {
            return Ok(None);
        }
        balances_from(&rows).map(Some)
    }

    async fn reward(&self, id: RewardId) -> Result<Option<Reward>, StoreError> {
        let row = self
            .fetch_optional(
                sqlx::query(&format!(
                    "SELECT {REWARD_COLUMNS} FROM referral_reward_rows r WHERE r.id = $1"
                ))
                .bind(id.as_uuid()),
            )
            .await
            .map_err(map)?;
        match row {
            Some(row) => reward_from(&row),
            None => Ok(None),
        }
    }

    async fn conversion(&self, id: &ConversionId) -> Result<Option<Conversion>, StoreError> {
        let row = self
            .fetch_optional(
                sqlx::query(
                    "SELECT c.id::text AS c_id, c.user_id AS c_user, c.amount AS c_amount,
                    c.currency AS c_currency, c.kind::text AS c_kind,
                    c.occurred_at AS c_occurred_at, c.recorded_at AS c_recorded_at,
                    c.reversed_amount AS c_reversed
               FROM referral_conversions c WHERE c.id = $1",
                )
                .bind(id.as_str()),
            )
            .await
            .map_err(map)?;
        row.as_ref().map(conversion_from).transpose()
    }
}

/// Balances from rows of `currency, pending, approved, paid` (a row of
/// NULLs: none).
fn balances_from(rows: &[PgRow]) -> Result<Vec<Balance>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(cur) = get::<Option<String>>(row, "currency")? else {
            continue;
        };
        out.push(Balance {
            currency: currency(&cur)?,
            pending: some(get(row, "pending")?, "pending")?,
            approved: some(get(row, "approved")?, "approved")?,
            paid: some(get(row, "paid")?, "paid")?,
        });
    }
    Ok(out)
}
