//! [`ReferralStore`] for [`PgStore`].
//!
//! Round trips: `register` 1 (`referral_register`), `activate_invite` 1
//! (`referral_activate`, or `referral_activate_welcome` with a welcome
//! reward), `user`, `profile`, `referrals` and `events_after`
//! 1 each (one `SELECT`, so one consistent snapshot).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use referral_core::store::{
    ActivationOutcome, InvitePolicy, NewUser, ReferralStore, RegisterOutcome,
};
use referral_core::{
    ConversionId, Event, EventId, EventKind, InviteCode, Money, PhoneNumber, Profile, Reason,
    Referral, ReferralCursor, ReferralPage, ReversalId, RewardId, StoreError, User, UserId,
};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{corrupt, map};
use crate::row::{conversion_id, currency, get, limit, payout_ref, reward_kind, some};
use crate::{PgStore, int, micros};

pub(crate) fn phone(text: &str) -> Result<PhoneNumber, StoreError> {
    text.parse()
        .map_err(|e| corrupt(format_args!("phone {text:?}: {e}")))
}

pub(crate) fn code(text: &str) -> Result<InviteCode, StoreError> {
    InviteCode::parse(text).map_err(|e| corrupt(format_args!("invite code {text:?}: {e}")))
}

/// A `User` from the columns `id, phone, invite_code, created_at`.
pub(crate) fn user_from(row: &PgRow) -> Result<User, StoreError> {
    Ok(User {
        id: UserId::from_uuid(some(get::<Option<Uuid>>(row, "id")?, "id")?),
        phone: phone(&some(get::<Option<String>>(row, "phone")?, "phone")?)?,
        invite_code: code(&some(
            get::<Option<String>>(row, "invite_code")?,
            "invite_code",
        )?)?,
        created_at: some(
            get::<Option<DateTime<Utc>>>(row, "created_at")?,
            "created_at",
        )?,
    })
}

/// A user's profile with the first `$2` referrals' phones: one row, or none
/// when no such user. A plpgsql function (migration 20261130100002) so that
/// it is planned once per session: as a prepared statement its `LIMIT $2`
/// made PostgreSQL plan it afresh on every call once referrers had many
/// referrals on average.
const PROFILE: &str = "SELECT * FROM referral_profile($1, $2)";

/// A page of a user's referrals, oldest first, after the cursor `($3, $4)`
/// when given: one row per referral, one row of NULLs when the page is
/// empty, no row when no such user. A plpgsql function (migration
/// 20261130100001) so that it is planned once per session: as a prepared
/// statement its `LIMIT $2` made PostgreSQL plan it afresh on every call once
/// referrers had many referrals. It seeks
/// `referral_activations_referrer_idx` on `(referrer_id, activated_at,
/// invitee_id)`.
const REFERRAL_PAGE: &str = "SELECT * FROM referral_referral_page($1, $2, $3, $4)";

#[async_trait]
impl ReferralStore for PgStore {
    async fn register(
        &self,
        phone_number: &PhoneNumber,
        user: NewUser,
        invite_codes: &[InviteCode],
    ) -> Result<RegisterOutcome, StoreError> {
        let codes: Vec<&str> = invite_codes.iter().map(InviteCode::as_str).collect();
        let row = self.fetch_one(sqlx::query(
            "SELECT outcome, id, phone, invite_code, created_at FROM referral_register($1, $2, $3, $4)",
        )
        .bind(phone_number.to_e164())
        .bind(user.id.as_uuid())
        .bind(user.created_at)
        .bind(&codes))
        .await
        .map_err(map)?;
        let outcome: String = get(&row, "outcome")?;
        Ok(match outcome.as_str() {
            "created" => RegisterOutcome::Created(user_from(&row)?),
            "existing" => RegisterOutcome::Existing(user_from(&row)?),
            "codes_exhausted" => RegisterOutcome::CodesExhausted,
            "blocked" => RegisterOutcome::Blocked(user_from(&row)?),
            other => return Err(corrupt(format_args!("register outcome {other:?}"))),
        })
    }

    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row = self
            .fetch_optional(
                sqlx::query(
                    "SELECT id, phone, invite_code, created_at FROM referral_users WHERE id = $1",
                )
                .bind(id.as_uuid()),
            )
            .await
            .map_err(map)?;
        row.as_ref().map(user_from).transpose()
    }

    async fn profile(&self, id: UserId, referrals: usize) -> Result<Option<Profile>, StoreError> {
        let Some(row) = self
            .fetch_optional(
                sqlx::query(PROFILE)
                    .bind(id.as_uuid())
                    .bind(limit(referrals)),
            )
            .await
            .map_err(map)?
        else {
            return Ok(None);
        };
        let activated: Option<String> = get(&row, "activated_invite_code")?;
        let count: i64 = get(&row, "referral_count")?;
        let phones: Vec<String> = get(&row, "referrals")?;
        Ok(Some(Profile {
            user: user_from(&row)?,
            activated_invite_code: activated.as_deref().map(code).transpose()?,
            referral_count: u64::try_from(count)
                .map_err(|_| corrupt("a negative referral count"))?,
            referrals: phones.iter().map(|p| phone(p)).collect::<Result<_, _>>()?,
            // Balances come from RewardStore::balances (the service fills
            // them in), as the port says.
            rewards: Vec::new(),
        }))
    }

    async fn activate_invite(
        &self,
        user: UserId,
        invite_code: &InviteCode,
        policy: &InvitePolicy,
        now: DateTime<Utc>,
    ) -> Result<ActivationOutcome, StoreError> {
        let sql = if policy.welcome.is_some() {
            // The welcome reward is written by the same call (one
            // transaction): see referral_activate_welcome.
            "SELECT outcome, referrer, code, at
               FROM referral_activate_welcome($1, $2, $3, $4, $5, $6, $7, $8)"
        } else {
            "SELECT outcome, referrer, code, at FROM referral_activate($1, $2, $3, $4, $5)"
        };
        let mut query = sqlx::query(sql)
            .bind(user.as_uuid())
            .bind(invite_code.as_str())
            .bind(now)
            .bind(micros(policy.failure_window))
            .bind(int(policy.max_failures_per_window));
        if let Some(welcome) = &policy.welcome {
            query = query
                .bind(welcome.id.as_uuid())
                .bind(welcome.amount.amount())
                .bind(welcome.amount.currency().as_str().to_owned());
        }
        let row = self.fetch_one(query).await.map_err(map)?;
        let outcome: String = get(&row, "outcome")?;
        let referrer = || -> Result<UserId, StoreError> {
            Ok(UserId::from_uuid(some(
                get::<Option<Uuid>>(&row, "referrer")?,
                "referrer",
            )?))
        };
        Ok(match outcome.as_str() {
            "activated" => ActivationOutcome::Activated {
                referrer: referrer()?,
            },
            "already_active" => ActivationOutcome::AlreadyActive {
                referrer: referrer()?,
            },
            "already_activated" => ActivationOutcome::AlreadyActivated {
                code: code(&some(get::<Option<String>>(&row, "code")?, "code")?)?,
            },
            "rate_limited" => ActivationOutcome::RateLimited {
                retry_at: some(get::<Option<DateTime<Utc>>>(&row, "at")?, "at")?,
            },
            "unknown_code" => ActivationOutcome::UnknownCode,
            "self_referral" => ActivationOutcome::SelfReferral,
            "cycle" => ActivationOutcome::Cycle,
            "user_not_found" => ActivationOutcome::UserNotFound,
            "blocked" => ActivationOutcome::Blocked,
            other => return Err(corrupt(format_args!("activation outcome {other:?}"))),
        })
    }

    async fn referrals(
        &self,
        user: UserId,
        after: Option<ReferralCursor>,
        page_size: usize,
    ) -> Result<Option<ReferralPage>, StoreError> {
        if page_size == 0 {
            // Nothing to show; still say whether the user exists.
            return Ok(self.user(user).await?.map(|_| ReferralPage::default()));
        }
        // One more than asked tells whether another page follows.
        let fetch = limit(page_size).saturating_add(1);
        let query = sqlx::query(REFERRAL_PAGE)
            .bind(user.as_uuid())
            .bind(fetch)
            .bind(after.map(|c| c.activated_at()))
            .bind(after.map(|c| c.user().as_uuid()));
        let rows = self.fetch_all(query).await.map_err(map)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut items = Vec::with_capacity(rows.len().min(page_size));
        for row in &rows {
            let Some(id) = get::<Option<Uuid>>(row, "invitee_id")? else {
                continue; // the user has no referral (past the cursor)
            };
            items.push(Referral {
                user: UserId::from_uuid(id),
                phone: phone(&some(get::<Option<String>>(row, "phone")?, "phone")?)?,
                activated_at: some(
                    get::<Option<DateTime<Utc>>>(row, "activated_at")?,
                    "activated_at",
                )?,
                converted: some(get::<Option<bool>>(row, "converted")?, "converted")?,
            });
        }
        let more = items.len() > page_size;
        items.truncate(page_size);
        let next = if more {
            items.last().map(ReferralCursor::after)
        } else {
            None
        };
        Ok(Some(ReferralPage { items, next }))
    }

    async fn events_after(
        &self,
        after: Option<EventId>,
        count: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let after = match after {
            None => 0,
            Some(EventId(id)) => match i64::try_from(id) {
                Ok(id) => id,
                Err(_) => return Ok(Vec::new()), // past any id PostgreSQL can hold
            },
        };
        // An event id is its transaction's xid8 << 16 plus its number in the
        // transaction, and only events below the horizon (of transactions
        // older than every one of this database still running) are returned:
        // one committing later has a larger id than any returned, so
        // `id > after` misses nothing (migrations 20261130020001 and
        // 20261130050001).
        let rows = self
            .fetch_all(
                sqlx::query(
                    "SELECT id, at, kind, user_id, phone, invite_code, referrer_id, conversion_id,
                    reversal_id, reward_id, reward_kind, amount, currency, payout_ref,
                    operator_id, reason
               FROM referral_events_after($1, $2)
              ORDER BY id",
                )
                .bind(after)
                .bind(limit(count)),
            )
            .await
            .map_err(map)?;
        rows.iter().map(event_from).collect()
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.ping().await
    }
}

fn event_from(row: &PgRow) -> Result<Event, StoreError> {
    let id: i64 = get(row, "id")?;
    let kind: String = get(row, "kind")?;
    let user = UserId::from_uuid(get(row, "user_id")?);
    let invite_code = || -> Result<InviteCode, StoreError> {
        code(&some(
            get::<Option<String>>(row, "invite_code")?,
            "invite_code",
        )?)
    };
    let text = |column: &str| -> Result<String, StoreError> {
        some(get::<Option<String>>(row, column)?, column)
    };
    let reward = || -> Result<RewardId, StoreError> {
        Ok(RewardId::from_uuid(some(
            get::<Option<Uuid>>(row, "reward_id")?,
            "reward_id",
        )?))
    };
    let amount =
        || -> Result<i64, StoreError> { some(get::<Option<i64>>(row, "amount")?, "amount") };
    let money = || -> Result<Money, StoreError> {
        Ok(Money::new(amount()?, currency(&text("currency")?)?))
    };
    let conversion =
        || -> Result<ConversionId, StoreError> { conversion_id(&text("conversion_id")?) };
    let operator = || -> Result<UserId, StoreError> {
        Ok(UserId::from_uuid(some(
            get::<Option<Uuid>>(row, "operator_id")?,
            "operator_id",
        )?))
    };
    let reason = || -> Result<Reason, StoreError> {
        let text = text("reason")?;
        Reason::parse(&text).map_err(|e| corrupt(format_args!("reason {text:?}: {e}")))
    };
    let kind = match kind.as_str() {
        "user_registered" => EventKind::UserRegistered {
            user,
            phone: phone(&some(get::<Option<String>>(row, "phone")?, "phone")?)?,
            invite_code: invite_code()?,
        },
        "invite_activated" => EventKind::InviteActivated {
            user,
            referrer: UserId::from_uuid(some(
                get::<Option<Uuid>>(row, "referrer_id")?,
                "referrer_id",
            )?),
            invite_code: invite_code()?,
        },
        "conversion_recorded" => EventKind::ConversionRecorded {
            conversion: conversion()?,
            user,
            amount: money()?,
        },
        "conversion_reversed" => {
            let reversal = text("reversal_id")?;
            EventKind::ConversionReversed {
                conversion: conversion()?,
                reversal: ReversalId::parse(&reversal)
                    .map_err(|e| corrupt(format_args!("reversal id {reversal:?}: {e}")))?,
                amount: amount()?,
            }
        }
        "reward_created" => EventKind::RewardCreated {
            reward: reward()?,
            user,
            kind: reward_kind(&text("reward_kind")?)?,
            amount: money()?,
        },
        "reward_adjusted" => EventKind::RewardAdjusted {
            reward: reward()?,
            user,
            amount: money()?,
        },
        "reward_approved" => EventKind::RewardApproved {
            reward: reward()?,
            user,
        },
        "reward_voided" => EventKind::RewardVoided {
            reward: reward()?,
            user,
        },
        "reward_paid" => EventKind::RewardPaid {
            reward: reward()?,
            user,
            payout_ref: payout_ref(&text("payout_ref")?)?,
        },
        "user_blocked" => EventKind::UserBlocked {
            user,
            operator: operator()?,
            reason: reason()?,
        },
        "user_unblocked" => EventKind::UserUnblocked {
            user,
            operator: operator()?,
        },
        "reward_voided_by_operator" => EventKind::RewardVoidedByOperator {
            reward: reward()?,
            user,
            operator: operator()?,
            reason: reason()?,
        },
        other => return Err(corrupt(format_args!("event kind {other:?}"))),
    };
    Ok(Event {
        id: EventId(u64::try_from(id).map_err(|_| corrupt("a negative event id"))?),
        at: get(row, "at")?,
        kind,
    })
}
