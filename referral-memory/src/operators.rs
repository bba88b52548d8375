//! [`OperatorStore`] for [`MemoryStore`]: blocks and voids under the same
//! write lock as every rule they touch; reads from ordered indexes kept up
//! to date by the writes.
//!
//! Costs: a search page is O(log n + limit) (a `BTreeMap` by phone text, one
//! hash lookup for an invite code); the all-time leaderboard O(log n +
//! limit) (an ordered ranking moved on each activation); a windowed one
//! O(activations in the window); statistics O(days · log days + currencies);
//! an export batch O(log n + batch); a block or unblock O(the user's
//! rewards) (their pending rewards leave or rejoin the approval set).

use std::collections::HashMap;
use std::ops::Bound;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use referral_core::store::{BlockOutcome, OperatorStore, UnblockOutcome, VoidOutcome};
use referral_core::{
    Block, DayStats, EventKind, LeaderboardEntry, ProgramTotals, Reason, ReferralCursor,
    ReferralExportBatch, ReferralExportRow, Referrer, RewardCursor, RewardExportBatch, RewardId,
    Stats, StoreError, UserCursor, UserDetail, UserId, UserQuery, UserSearchPage, UserSummary,
};

use crate::MemoryStore;
use crate::users::{Graph, Ix, RankKey};

impl Graph {
    fn summary(&self, ix: Ix) -> UserSummary {
        let r = self.rec(ix);
        UserSummary {
            id: r.id,
            phone: r.phone,
            invite_code: r.code,
            referral_count: r.referrals.len() as u64,
            blocked: r.block.is_some(),
            created_at: r.created_at,
        }
    }

    fn search(&self, query: &UserQuery, after: Option<UserCursor>, limit: usize) -> UserSearchPage {
        let after = after.map(|c| c.phone().to_e164());
        let lower = |floor: Option<&str>| -> Bound<String> {
            match (after.as_deref(), floor) {
                (Some(a), Some(f)) if f > a => Bound::Included(f.to_owned()),
                (Some(a), _) => Bound::Excluded(a.to_owned()),
                (None, Some(f)) => Bound::Included(f.to_owned()),
                (None, None) => Bound::Unbounded,
            }
        };
        // One more than a page, to know whether more follow.
        let want = limit.saturating_add(1);
        let mut found: Vec<(&str, Ix)> = match query {
            UserQuery::Match { phone, invite_code } => {
                let mut found: Vec<(&str, Ix)> = match phone {
                    Some(p) => self
                        .by_phone_text
                        .range((lower(Some(p.as_str())), Bound::Unbounded))
                        .take_while(|(text, _)| text.starts_with(p.as_str()))
                        .take(want)
                        .map(|(t, &ix)| (t.as_str(), ix))
                        .collect(),
                    None => Vec::new(),
                };
                if let Some(&ix) = invite_code.as_ref().and_then(|c| self.by_code.get(c)) {
                    let text = self
                        .by_phone_text
                        .get_key_value(&self.rec(ix).phone.to_e164())
                        .map(|(t, _)| t.as_str());
                    if let Some(text) = text
                        && after.as_deref().is_none_or(|a| text > a)
                    {
                        found.push((text, ix));
                    }
                }
                found.sort_unstable();
                found.dedup();
                found
            }
            _ => self
                .by_phone_text
                .range((lower(None), Bound::Unbounded))
                .take(want)
                .map(|(t, &ix)| (t.as_str(), ix))
                .collect(),
        };
        let more = found.len() > limit;
        found.truncate(limit);
        let items: Vec<UserSummary> = found.iter().map(|&(_, ix)| self.summary(ix)).collect();
        let next = if more {
            items.last().map(|u| UserCursor::after(u.phone))
        } else {
            None
        };
        UserSearchPage { items, next }
    }

    fn entry(&self, ix: Ix, referrals: u64, latest: DateTime<Utc>) -> LeaderboardEntry {
        let r = self.rec(ix);
        LeaderboardEntry {
            user: r.id,
            phone: r.phone,
            referrals,
            latest_activation: latest,
            rewarded: self.ledger.rewarded(ix),
        }
    }

    fn leaderboard(&self, since: Option<DateTime<Utc>>, limit: usize) -> Vec<LeaderboardEntry> {
        let Some(since) = since else {
            return self
                .ranking
                .iter()
                .take(limit)
                .map(|&(std::cmp::Reverse(n), latest, _, ix)| self.entry(ix, n, latest))
                .collect();
        };
        let mut window: HashMap<Ix, (u64, DateTime<Utc>)> = HashMap::new();
        for &(at, _, referee) in self.activations.iter().rev().take_while(|e| e.0 > since) {
            let Some(referrer) = self.rec(referee).referrer else {
                continue;
            };
            let e = window.entry(referrer).or_insert((0, at));
            e.0 += 1;
            e.1 = e.1.max(at);
        }
        let mut ranked: Vec<RankKey> = window
            .into_iter()
            .map(|(ix, (n, latest))| (std::cmp::Reverse(n), latest, self.rec(ix).id, ix))
            .collect();
        ranked.sort_unstable();
        ranked
            .into_iter()
            .take(limit)
            .map(|(std::cmp::Reverse(n), latest, _, ix)| self.entry(ix, n, latest))
            .collect()
    }

    fn stats(&self, today: NaiveDate, days: u16) -> Stats {
        let rows = (0..i64::from(days))
            .rev()
            .filter_map(|back| today.checked_sub_signed(TimeDelta::days(back)))
            .map(|date| {
                let [users, activations, conversions] =
                    self.days.get(&date).copied().unwrap_or_default();
                DayStats {
                    date,
                    users,
                    activations,
                    conversions,
                }
            })
            .collect();
        Stats {
            totals: ProgramTotals {
                users: self.users.len() as u64,
                activations: self.activations.len() as u64,
                conversions: self.ledger.conversion_count() as u64,
                rewards: self.ledger.totals(),
            },
            days: rows,
        }
    }

    fn export_referrals(&self, after: Option<ReferralCursor>, limit: usize) -> ReferralExportBatch {
        // Every entry after the cursor's `(activated_at, user)`, whatever its index.
        let from = after.map_or(Bound::Unbounded, |c| {
            Bound::Excluded((c.activated_at(), c.user(), Ix::MAX))
        });
        let mut iter = self.activations.range((from, Bound::Unbounded));
        let rows: Vec<ReferralExportRow> = iter
            .by_ref()
            .take(limit)
            .filter_map(|&(at, _, ix)| {
                let referee = self.rec(ix);
                let referrer = self.rec(referee.referrer?);
                Some(ReferralExportRow {
                    referrer: referrer.id,
                    referrer_phone: referrer.phone,
                    referee: referee.id,
                    referee_phone: referee.phone,
                    invite_code: referrer.code,
                    activated_at: at,
                })
            })
            .collect();
        let next = if rows.len() == limit && iter.next().is_some() {
            rows.last().map(ReferralExportRow::cursor)
        } else {
            None
        };
        ReferralExportBatch { rows, next }
    }

    fn detail(&self, ix: Ix, referrals: usize) -> UserDetail {
        let rec = self.rec(ix);
        UserDetail {
            profile: self.profile(ix, referrals),
            referrer: rec.referrer.map(|r| Referrer {
                id: self.rec(r).id,
                phone: self.rec(r).phone,
            }),
            block: rec.block.clone(),
        }
    }
}

#[async_trait]
impl OperatorStore for MemoryStore {
    async fn block_user(
        &self,
        user: UserId,
        reason: &Reason,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<BlockOutcome, StoreError> {
        let mut g = self.users_write();
        let Some(&ix) = g.by_id.get(&user) else {
            return Ok(BlockOutcome::UserNotFound);
        };
        if let Some(block) = &g.rec(ix).block {
            return Ok(BlockOutcome::AlreadyBlocked(block.clone()));
        }
        let block = Block {
            reason: reason.clone(),
            at: now,
            by,
        };
        g.users[ix as usize].block = Some(block.clone());
        g.park(ix, true);
        g.push_event(
            now,
            EventKind::UserBlocked {
                user,
                operator: by,
                reason: reason.clone(),
            },
        );
        Ok(BlockOutcome::Blocked(block))
    }

    async fn unblock_user(
        &self,
        user: UserId,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<UnblockOutcome, StoreError> {
        let mut g = self.users_write();
        let Some(&ix) = g.by_id.get(&user) else {
            return Ok(UnblockOutcome::UserNotFound);
        };
        let Some(block) = g.users[ix as usize].block.take() else {
            return Ok(UnblockOutcome::NotBlocked);
        };
        g.park(ix, false);
        g.push_event(now, EventKind::UserUnblocked { user, operator: by });
        Ok(UnblockOutcome::Unblocked(block))
    }

    async fn block(&self, user: UserId) -> Result<Option<Block>, StoreError> {
        let g = self.users_read();
        Ok(g.by_id.get(&user).and_then(|&ix| g.rec(ix).block.clone()))
    }

    async fn void_reward(
        &self,
        reward: RewardId,
        reason: &Reason,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Result<VoidOutcome, StoreError> {
        Ok(self.users_write().void(reward, reason, by, now))
    }

    async fn user_detail(
        &self,
        user: UserId,
        referrals: usize,
    ) -> Result<Option<UserDetail>, StoreError> {
        let g = self.users_read();
        Ok(g.by_id.get(&user).map(|&ix| g.detail(ix, referrals)))
    }

    async fn search_users(
        &self,
        query: &UserQuery,
        after: Option<UserCursor>,
        limit: usize,
    ) -> Result<UserSearchPage, StoreError> {
        Ok(self.users_read().search(query, after, limit))
    }

    async fn leaderboard(
        &self,
        since: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<LeaderboardEntry>, StoreError> {
        Ok(self.users_read().leaderboard(since, limit))
    }

    async fn stats(&self, today: NaiveDate, days: u16) -> Result<Stats, StoreError> {
        Ok(self.users_read().stats(today, days))
    }

    async fn export_referrals(
        &self,
        after: Option<ReferralCursor>,
        limit: usize,
    ) -> Result<ReferralExportBatch, StoreError> {
        Ok(self.users_read().export_referrals(after, limit))
    }

    async fn export_rewards(
        &self,
        after: Option<RewardCursor>,
        limit: usize,
    ) -> Result<RewardExportBatch, StoreError> {
        Ok(self.users_read().export_rewards(after, limit))
    }
}
