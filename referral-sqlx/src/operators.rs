//! [`OperatorStore`] for [`PgStore`].
//!
//! Round trips: one each. `block_user`, `unblock_user`, `void_reward` and
//! the all-time `leaderboard` are one call of a plpgsql function (migration
//! `20261130040001_operators.sql`, where the locks that make a block hold
//! against activations, conversions and approvals are described);
//! `search_users` and the windowed `leaderboard` too (migration
//! `20261130100001_reads_plan_once.sql`: functions whose plans are made once
//! per session, where a prepared statement ending in `LIMIT $n` was planned
//! again on every call once the tables were large); the rest are one
//! `SELECT` each, so one consistent snapshot.
//!
//! Costs: a search page seeks `referral_users_phone_c_idx` (byte order,
//! whatever the database's collation) and the invite-code index, O(page);
//! the all-time leaderboard reads `limit` entries of
//! `referral_referrer_rank_idx` (after folding the activations not yet in
//! it, at most a few per referrer contended at that moment); a windowed one
//! reads the activations of the window from `referral_activations_at_idx`;
//! an export batch seeks `(activated_at, invitee_id)` or `(created_at, id)`,
//! O(batch) wherever it starts. Statistics count the tables (all time) and
//! the window's rows through the time indexes: O(rows), meant for an
//! operator's page, not a request path.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use referral_core::store::{BlockOutcome, OperatorStore, UnblockOutcome, VoidOutcome};
use referral_core::{
    Block, DayStats, LeaderboardEntry, Money, Profile, ProgramTotals, Reason, ReferralCursor,
    ReferralExportBatch, ReferralExportRow, Referrer, RewardCursor, RewardExportBatch,
    RewardExportRow, RewardId, RewardTotals, Stats, StoreError, UserCursor, UserDetail, UserId,
    UserQuery, UserSearchPage, UserSummary,
};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::PgStore;
use crate::error::{corrupt, map};
use crate::rewards::{REWARD_COLUMNS, reward_from};
use crate::row::{currency, get, limit, some};
use crate::users::{code, phone, user_from};

/// The block in the columns `block_reason, block_at, block_by`, or `None`
/// when they are NULL.
fn block_from(row: &PgRow) -> Result<Option<Block>, StoreError> {
    let Some(reason) = get::<Option<String>>(row, "block_reason")? else {
        return Ok(None);
    };
    Ok(Some(Block {
        reason: Reason::parse(&reason)
            .map_err(|e| corrupt(format_args!("block reason {reason:?}: {e}")))?,
        at: some(get(row, "block_at")?, "block_at")?,
        by: UserId::from_uuid(some(get(row, "block_by")?, "block_by")?),
    }))
}

fn count(row: &PgRow, column: &str) -> Result<u64, StoreError> {
    let n: i64 = get::<Option<i64>>(row, column)?.unwrap_or(0);
    u64::try_from(n).map_err(|_| corrupt(format_args!("a negative {column}")))
}

/// The user detail: the profile's columns, the referrer and the block, in
/// one statement.
pub const DETAIL: &str = "
SELECT u.id, u.phone, u.invite_code, u.created_at,
       (SELECT coalesce(sum(c.n), 0)::bigint
          FROM referral_count_shards c WHERE c.user_id = u.id) AS referral_count,
       r.invite_code AS activated_invite_code, r.id AS referrer_id, r.phone AS referrer_phone,
       ARRAY(SELECT i.phone
               FROM referral_activations a
               JOIN referral_users i ON i.id = a.invitee_id
              WHERE a.referrer_id = u.id
              ORDER BY a.activated_at, a.invitee_id
              LIMIT $2) AS referrals,
       b.reason AS block_reason, b.blocked_at AS block_at, b.blocked_by AS block_by
  FROM referral_users u
  LEFT JOIN referral_activations me ON me.invitee_id = u.id
  LEFT JOIN referral_users r ON r.id = me.referrer_id
  LEFT JOIN referral_blocks b ON b.user_id = u.id
 WHERE u.id = $1";

/// A search page: phones in `[$1, $2)` (a prefix as a byte range; none
/// when `$1` is NULL), or the user whose code is `$4`, after the phone `$3`,
/// in byte order of the phone, at most `$5` rows. A plpgsql function
/// (migration 20261130100001) so that it is planned once per session: as a
/// prepared statement its `LIMIT $5` made PostgreSQL plan it afresh on every
/// call on a large table. Its query seeks `referral_users_phone_c_idx` and
/// `referral_users_invite_code_key`.
const SEARCH: &str = "SELECT * FROM referral_user_search($1, $2, $3, $4, $5)";

/// The leaderboard of the activations after `$1`, at most `$2` referrers:
/// read from `referral_activations_at_idx`, grouped by referrer. A plpgsql
/// function planned once per session, as [`SEARCH`].
const WINDOW_BOARD: &str = "SELECT * FROM referral_window_board($1, $2)";

/// Statistics in one statement (one snapshot): a `total` row, one row per
/// date with something created for each of `users`, `activations` and
/// `conversions` in `[$1, $2)`, and a `money` row per currency.
pub const STATS: &str = "
SELECT 'total' AS tag, NULL::date AS day, NULL::text AS currency,
       (SELECT count(*) FROM referral_users) AS a,
       (SELECT count(*) FROM referral_activations) AS b,
       (SELECT count(*) FROM referral_conversions) AS c,
       NULL::bigint AS d
UNION ALL
SELECT 'users', (u.created_at AT TIME ZONE 'UTC')::date, NULL, count(*), NULL, NULL, NULL
  FROM referral_users u WHERE u.created_at >= $1 AND u.created_at < $2 GROUP BY 2
UNION ALL
SELECT 'activations', (a.activated_at AT TIME ZONE 'UTC')::date, NULL, count(*), NULL, NULL, NULL
  FROM referral_activations a WHERE a.activated_at >= $1 AND a.activated_at < $2 GROUP BY 2
UNION ALL
SELECT 'conversions', (c.recorded_at AT TIME ZONE 'UTC')::date, NULL, count(*), NULL, NULL, NULL
  FROM referral_conversions c WHERE c.recorded_at >= $1 AND c.recorded_at < $2 GROUP BY 2
UNION ALL
SELECT 'money', NULL, r.currency,
       coalesce(sum(r.amount) FILTER (WHERE r.status = 'pending'), 0)::bigint,
       coalesce(sum(r.amount) FILTER (WHERE r.status = 'approved'), 0)::bigint,
       coalesce(sum(r.amount) FILTER (WHERE r.status = 'paid'), 0)::bigint,
       coalesce(sum(r.amount) FILTER (WHERE r.status = 'voided'), 0)::bigint
  FROM referral_rewards r GROUP BY r.currency";

/// The referrals export: the first batch, or (`after`) one after a cursor.
pub fn export_referrals_query(after: bool) -> String {
    let seek = if after {
        "WHERE (a.activated_at, a.invitee_id) > ($2, $3)"
    } else {
        ""
    };
    format!(
        "SELECT a.referrer_id, r.phone AS referrer_phone, r.invite_code, a.invitee_id,
                e.phone AS referee_phone, a.activated_at
           FROM referral_activations a
           JOIN referral_users r ON r.id = a.referrer_id
           JOIN referral_users e ON e.id = a.invitee_id
           {seek}
          ORDER BY a.activated_at, a.invitee_id
          LIMIT $1"
    )
}

/// The rewards export: the first batch, or (`after`) one after a cursor.
pub fn export_rewards_query(after: bool) -> String {
    let seek = if after {
        "WHERE (r.created_at, r.id) > ($2, $3)"
    } else {
        ""
    };
    format!(
        "SELECT {REWARD_COLUMNS}, u.phone AS owner_phone
           FROM referral_reward_rows r
           JOIN referral_users u ON u.id = r.user_id
           {seek}
          ORDER BY r.created_at, r.id
          LIMIT $1"
    )
}

/// The byte range `[lo, hi)` of phones starting with `prefix` (`+` and
/// digits): `hi` is the prefix with its last byte raised by one.
fn prefix_range(prefix: &str) -> (String, String) {
    let mut hi = prefix.as_bytes().to_vec();
    if let Some(last) = hi.last_mut() {
        *last += 1; // '+' or a digit: never 0xFF
    }
    (prefix.to_owned(), String::from_utf8(hi).unwrap_or_default())
}

/// Leaderboard entries from rows of `user_id, phone, referrals, latest,
/// currency, rewarded`, one per referrer and rewarded currency, in order.
fn board_from(rows: &[PgRow]) -> Result<Vec<LeaderboardEntry>, StoreError> {
    let mut out: Vec<LeaderboardEntry> = Vec::new();
    for row in rows {
        let user = UserId::from_uuid(get(row, "user_id")?);
        if out.last().is_none_or(|e| e.user != user) {
            out.push(LeaderboardEntry {
                user,
                phone: phone(&get::<String>(row, "phone")?)?,
                referrals: count(row, "referrals")?,
                latest_activation: get(row, "latest")?,
                rewarded: Vec::new(),
            });
        }
        if let Some(cur) = get::<Option<String>>(row, "currency")? {
            let amount: i64 = some(get(row, "rewarded")?, "rewarded")?;
            if let Some(e) = out.last_mut() {
                e.rewarded.push(Money::new(amount, currency(&cur)?));
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl OperatorStore for PgStore {
    async fn block_user(
        &self,
        user: UserId,
        reason: &Reason,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<BlockOutcome, StoreError> {
        let row = self
            .fetch_one(
                sqlx::query(
                    "SELECT outcome, block_reason, block_at, block_by
                       FROM referral_block_user($1, $2, $3, $4)",
                )
                .bind(user.as_uuid())
                .bind(reason.as_str())
                .bind(by.as_uuid())
                .bind(now),
            )
            .await
            .map_err(map)?;
        let outcome: String = get(&row, "outcome")?;
        let block = || some(block_from(&row)?, "block_reason");
        Ok(match outcome.as_str() {
            "blocked" => BlockOutcome::Blocked(block()?),
            "already_blocked" => BlockOutcome::AlreadyBlocked(block()?),
            "user_not_found" => BlockOutcome::UserNotFound,
            other => return Err(corrupt(format_args!("block outcome {other:?}"))),
        })
    }

    async fn unblock_user(
        &self,
        user: UserId,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<UnblockOutcome, StoreError> {
        let row = self
            .fetch_one(
                sqlx::query(
                    "SELECT outcome, block_reason, block_at, block_by
                       FROM referral_unblock_user($1, $2, $3)",
                )
                .bind(user.as_uuid())
                .bind(by.as_uuid())
                .bind(now),
            )
            .await
            .map_err(map)?;
        let outcome: String = get(&row, "outcome")?;
        Ok(match outcome.as_str() {
            "unblocked" => UnblockOutcome::Unblocked(some(block_from(&row)?, "block_reason")?),
            "not_blocked" => UnblockOutcome::NotBlocked,
            "user_not_found" => UnblockOutcome::UserNotFound,
            other => return Err(corrupt(format_args!("unblock outcome {other:?}"))),
        })
    }

    async fn block(&self, user: UserId) -> Result<Option<Block>, StoreError> {
        let row = self
            .fetch_optional(
                sqlx::query(
                    "SELECT b.reason AS block_reason, b.blocked_at AS block_at,
                            b.blocked_by AS block_by
                       FROM referral_blocks b WHERE b.user_id = $1",
                )
                .bind(user.as_uuid()),
            )
            .await
            .map_err(map)?;
        match row {
            Some(row) => block_from(&row),
            None => Ok(None),
        }
    }

    async fn void_reward(
        &self,
        reward: RewardId,
        reason: &Reason,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<VoidOutcome, StoreError> {
        let row = self
            .fetch_one(
                sqlx::query("SELECT * FROM referral_void_reward($1, $2, $3, $4)")
                    .bind(reward.as_uuid())
                    .bind(reason.as_str())
                    .bind(by.as_uuid())
                    .bind(now),
            )
            .await
            .map_err(map)?;
        let outcome: String = get(&row, "outcome")?;
        let reward = || some(reward_from(&row)?, "r_id");
        Ok(match outcome.as_str() {
            "voided" => VoidOutcome::Voided(reward()?),
            "already_voided" => VoidOutcome::AlreadyVoided(reward()?),
            "not_voidable" => VoidOutcome::NotVoidable(reward()?),
            "not_found" => VoidOutcome::NotFound,
            other => return Err(corrupt(format_args!("void outcome {other:?}"))),
        })
    }

    async fn user_detail(
        &self,
        user: UserId,
        referrals: usize,
    ) -> Result<Option<UserDetail>, StoreError> {
        let Some(row) = self
            .fetch_optional(
                sqlx::query(DETAIL)
                    .bind(user.as_uuid())
                    .bind(limit(referrals)),
            )
            .await
            .map_err(map)?
        else {
            return Ok(None);
        };
        let activated: Option<String> = get(&row, "activated_invite_code")?;
        let phones: Vec<String> = get(&row, "referrals")?;
        let referrer = match get::<Option<Uuid>>(&row, "referrer_id")? {
            Some(id) => Some(Referrer {
                id: UserId::from_uuid(id),
                phone: phone(&some(
                    get::<Option<String>>(&row, "referrer_phone")?,
                    "referrer_phone",
                )?)?,
            }),
            None => None,
        };
        Ok(Some(UserDetail {
            profile: Profile {
                user: user_from(&row)?,
                activated_invite_code: activated.as_deref().map(code).transpose()?,
                referral_count: count(&row, "referral_count")?,
                referrals: phones.iter().map(|p| phone(p)).collect::<Result<_, _>>()?,
                // Balances come from RewardStore::balances (the service
                // fills them in).
                rewards: Vec::new(),
            },
            referrer,
            block: block_from(&row)?,
        }))
    }

    async fn search_users(
        &self,
        query: &UserQuery,
        after: Option<UserCursor>,
        page_size: usize,
    ) -> Result<UserSearchPage, StoreError> {
        let (range, invite_code) = match query {
            UserQuery::All => (Some(prefix_range("+")), None),
            UserQuery::Match { phone, invite_code } => (
                phone.as_ref().map(|p| prefix_range(p.as_str())),
                invite_code.as_ref().map(|c| c.as_str().to_owned()),
            ),
            other => {
                return Err(StoreError::internal(format!(
                    "a user query this store does not know: {other:?}"
                )));
            }
        };
        let (lo, hi) = range.unzip();
        let after = after.map_or_else(String::new, |c| c.phone().to_e164());
        // One more than asked tells whether another page follows.
        let rows = self
            .fetch_all(
                sqlx::query(SEARCH)
                    .bind(lo)
                    .bind(hi)
                    .bind(after)
                    .bind(invite_code)
                    .bind(limit(page_size).saturating_add(1)),
            )
            .await
            .map_err(map)?;
        let mut items = Vec::with_capacity(rows.len().min(page_size));
        for row in &rows {
            let user = user_from(row)?;
            items.push(UserSummary {
                id: user.id,
                phone: user.phone,
                invite_code: user.invite_code,
                referral_count: count(row, "referral_count")?,
                blocked: get(row, "blocked")?,
                created_at: user.created_at,
            });
        }
        let more = items.len() > page_size;
        items.truncate(page_size);
        let next = if more {
            items.last().map(|u| UserCursor::after(u.phone))
        } else {
            None
        };
        Ok(UserSearchPage { items, next })
    }

    async fn leaderboard(
        &self,
        since: Option<DateTime<Utc>>,
        size: usize,
    ) -> Result<Vec<LeaderboardEntry>, StoreError> {
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        let rows = match since {
            None => {
                self.fetch_all(sqlx::query("SELECT * FROM referral_leaderboard($1)").bind(size))
                    .await
            }
            Some(since) => {
                self.fetch_all(sqlx::query(WINDOW_BOARD).bind(since).bind(i64::from(size)))
                    .await
            }
        }
        .map_err(map)?;
        board_from(&rows)
    }

    async fn stats(&self, today: NaiveDate, days: u16) -> Result<Stats, StoreError> {
        let first = today
            .checked_sub_signed(TimeDelta::days(i64::from(days.max(1)) - 1))
            .unwrap_or(NaiveDate::MIN);
        let start = first.and_time(NaiveTime::MIN).and_utc();
        let end = today
            .succ_opt()
            .unwrap_or(NaiveDate::MAX)
            .and_time(NaiveTime::MIN)
            .and_utc();
        let rows = self
            .fetch_all(sqlx::query(STATS).bind(start).bind(end))
            .await
            .map_err(map)?;
        let mut totals = ProgramTotals::default();
        let mut per_day: HashMap<NaiveDate, [u64; 3]> = HashMap::new();
        for row in &rows {
            let tag: String = get(row, "tag")?;
            let slot = match tag.as_str() {
                "total" => {
                    totals.users = count(row, "a")?;
                    totals.activations = count(row, "b")?;
                    totals.conversions = count(row, "c")?;
                    continue;
                }
                "money" => {
                    let cur: String = some(get(row, "currency")?, "currency")?;
                    totals.rewards.push(RewardTotals {
                        currency: currency(&cur)?,
                        pending: get(row, "a")?,
                        approved: get(row, "b")?,
                        paid: get(row, "c")?,
                        voided: get(row, "d")?,
                    });
                    continue;
                }
                "users" => 0,
                "activations" => 1,
                "conversions" => 2,
                other => return Err(corrupt(format_args!("stats row {other:?}"))),
            };
            let day: NaiveDate = some(get(row, "day")?, "day")?;
            per_day.entry(day).or_default()[slot] = count(row, "a")?;
        }
        totals.rewards.sort_by_key(|t| t.currency);
        let days = (0..i64::from(days))
            .rev()
            .filter_map(|back| today.checked_sub_signed(TimeDelta::days(back)))
            .map(|date| {
                let [users, activations, conversions] =
                    per_day.get(&date).copied().unwrap_or_default();
                DayStats {
                    date,
                    users,
                    activations,
                    conversions,
                }
            })
            .collect();
        Ok(Stats { totals, days })
    }

    async fn export_referrals(
        &self,
        after: Option<ReferralCursor>,
        batch: usize,
    ) -> Result<ReferralExportBatch, StoreError> {
        // One more than asked tells whether another batch follows.
        let fetch = limit(batch).saturating_add(1);
        let rows = match after {
            None => {
                self.fetch_all(sqlx::query(&export_referrals_query(false)).bind(fetch))
                    .await
            }
            Some(c) => {
                self.fetch_all(
                    sqlx::query(&export_referrals_query(true))
                        .bind(fetch)
                        .bind(c.activated_at())
                        .bind(c.user().as_uuid()),
                )
                .await
            }
        }
        .map_err(map)?;
        let mut out = Vec::with_capacity(rows.len().min(batch));
        for row in rows.iter().take(batch) {
            out.push(ReferralExportRow {
                referrer: UserId::from_uuid(get(row, "referrer_id")?),
                referrer_phone: phone(&get::<String>(row, "referrer_phone")?)?,
                referee: UserId::from_uuid(get(row, "invitee_id")?),
                referee_phone: phone(&get::<String>(row, "referee_phone")?)?,
                invite_code: code(&get::<String>(row, "invite_code")?)?,
                activated_at: get(row, "activated_at")?,
            });
        }
        let next = if rows.len() > batch {
            out.last().map(ReferralExportRow::cursor)
        } else {
            None
        };
        Ok(ReferralExportBatch { rows: out, next })
    }

    async fn export_rewards(
        &self,
        after: Option<RewardCursor>,
        batch: usize,
    ) -> Result<RewardExportBatch, StoreError> {
        let fetch = limit(batch).saturating_add(1);
        let rows = match after {
            None => {
                self.fetch_all(sqlx::query(&export_rewards_query(false)).bind(fetch))
                    .await
            }
            Some(c) => {
                self.fetch_all(
                    sqlx::query(&export_rewards_query(true))
                        .bind(fetch)
                        .bind(c.created_at())
                        .bind(c.id().as_uuid()),
                )
                .await
            }
        }
        .map_err(map)?;
        let mut out = Vec::with_capacity(rows.len().min(batch));
        for row in rows.iter().take(batch) {
            out.push(RewardExportRow {
                reward: some(reward_from(row)?, "r_id")?,
                phone: phone(&get::<String>(row, "owner_phone")?)?,
            });
        }
        let next = if rows.len() > batch {
            out.last().map(RewardExportRow::cursor)
        } else {
            None
        };
        Ok(RewardExportBatch { rows: out, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_byte_ranges() {
        assert_eq!(
            prefix_range("+7998"),
            ("+7998".to_owned(), "+7999".to_owned())
        );
        assert_eq!(prefix_range("+79"), ("+79".to_owned(), "+7:".to_owned()));
        assert_eq!(prefix_range("+"), ("+".to_owned(), ",".to_owned()));
    }
}
