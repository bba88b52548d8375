//! The JSON bodies of API.md, with their OpenAPI schemas.
//!
//! Requests carry plain strings: the service parses them, so a malformed
//! phone is a 400 `invalid_phone` (not a generic body error). To add a
//! route's bodies, add their types here and list them in
//! [`crate::openapi::ApiDoc`]'s `components`.

use std::fmt::Display;

use chrono::{DateTime, SecondsFormat, Utc};
use referral_core::{Balance, Conversion, Profile, Referral, ReferralPage, Reward, User};
use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

/// What the schema of a request's phone accepts: a `+`, then 7 to 15 ASCII
/// digits (the first, the country code's, not 0) with spaces, dashes, dots
/// and parentheses between them, at most 40 characters.
///
/// The server accepts a little more than the pattern says: surrounding
/// whitespace (spaces at the end included) and, with a
/// default region configured, national numbers without `+` (whose digit
/// count depends on the region's calling code and trunk prefix, a rule a
/// pattern cannot state). Every string the pattern matches is accepted.
pub const PHONE_PATTERN: &str = r"^\+[ ().-]*[1-9](?:[ ().-]*[0-9]){6,14}(?:[ ().-]*[().-])?$";

/// What the schema of a referrals cursor accepts: 32 base64url characters
/// (24 bytes: activation time in microseconds and the user id), the first
/// one restricted so the time is one chrono can represent.
pub const CURSOR_PATTERN: &str = "^[A-Zabk-z0-9_-][A-Za-z0-9_-]{31}$";

/// A timestamp as the API writes it: RFC 3339, UTC, `Z`.
#[must_use]
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `POST /api/auth/code`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"phone": "+79991234567"}))]
pub struct CodeRequest {
    /// The phone, international (`+7 999 123-45-67`) or, with a default
    /// region configured, national. See [`PHONE_PATTERN`].
    #[schema(
        pattern = r"^\+[ ().-]*[1-9](?:[ ().-]*[0-9]){6,14}(?:[ ().-]*[().-])?$",
        min_length = 8,
        max_length = 40
    )]
    pub phone: String,
}

/// 202 of `POST /api/auth/code`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"phone": "+79991234567", "expires_in": 300, "retry_after": 60, "code_length": 4}))]
pub struct CodeSentResponse {
    /// The phone in E.164.
    pub phone: String,
    /// Seconds the code stays valid.
    pub expires_in: u64,
    /// Seconds until this phone may ask for another code.
    pub retry_after: u64,
    /// Digits of the code just sent: the configured length, or the step-up
    /// length while the phone is stepped up (it spent its daily failure
    /// budget).
    #[schema(minimum = 4, maximum = 8)]
    pub code_length: u8,
}

/// `POST /api/auth/verify`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"phone": "+79991234567", "code": "1234"}))]
pub struct VerifyRequest {
    /// The phone the code was sent to. See [`PHONE_PATTERN`].
    #[schema(
        pattern = r"^\+[ ().-]*[1-9](?:[ ().-]*[0-9]){6,14}(?:[ ().-]*[().-])?$",
        min_length = 8,
        max_length = 40
    )]
    pub phone: String,
    /// The code from the SMS: the configured number of digits (4 to 8; the
    /// document an [`Api`](crate::Api) serves states the exact number).
    #[schema(pattern = r"^[0-9]{4,8}$", min_length = 4, max_length = 8)]
    pub code: String,
}

/// A user's profile.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0b9d4c2e-8a51-4b8e-9d43-5f8f2c1a7e10", "phone": "+79991234567",
    "invite_code": "A7KQ2M", "activated_invite_code": null, "referral_count": 2,
    "referrals": ["+79990000001", "+79990000002"], "created_at": "2026-11-22T10:00:00Z"
}))]
pub struct ProfileResponse {
    /// The user's id.
    pub id: String,
    /// The user's phone, E.164.
    pub phone: String,
    /// The user's own invite code: 6 letters and digits, never changed.
    pub invite_code: String,
    /// The other user's code this user activated, if any.
    pub activated_invite_code: Option<String>,
    /// How many users activated this user's code.
    pub referral_count: u64,
    /// Phones of the users who activated this user's code, oldest activation
    /// first, at most the first 100.
    pub referrals: Vec<String>,
    /// When the user was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The user's reward totals, one entry per currency with any non-voided
    /// reward, sorted by currency (empty when rewards are off).
    #[serde(default)]
    pub rewards: Vec<BalanceDto>,
}

impl From<&Profile> for ProfileResponse {
    fn from(p: &Profile) -> Self {
        let User {
            id,
            phone,
            invite_code,
            created_at,
        } = &p.user;
        Self {
            id: id.to_string(),
            phone: phone.to_string(),
            invite_code: invite_code.to_string(),
            activated_invite_code: p.activated_invite_code.map(|c| c.to_string()),
            referral_count: p.referral_count,
            referrals: p.referrals.iter().map(ToString::to_string).collect(),
            created_at: timestamp(*created_at),
            rewards: p.rewards.iter().map(BalanceDto::from).collect(),
        }
    }
}

/// The JSON of [`ProfileResponse::from`] `profile`, written straight from
/// the [`Profile`]: the same bytes (tested), without a `String` per field
/// and per referral. What the profile and invite routes answer.
pub(crate) struct ProfileJson<'a>(pub(crate) &'a Profile);

impl Serialize for ProfileJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Profile {
            user,
            activated_invite_code,
            referral_count,
            referrals,
            rewards,
        } = self.0;
        // ProfileResponse's fields, in its order.
        let mut out = serializer.serialize_struct("ProfileResponse", 8)?;
        out.serialize_field("id", &Shown(&user.id))?;
        out.serialize_field("phone", &Shown(&user.phone))?;
        out.serialize_field("invite_code", &Shown(&user.invite_code))?;
        out.serialize_field(
            "activated_invite_code",
            &activated_invite_code.as_ref().map(Shown),
        )?;
        out.serialize_field("referral_count", referral_count)?;
        out.serialize_field("referrals", &ShownAll(referrals))?;
        out.serialize_field("created_at", &timestamp(user.created_at))?;
        out.serialize_field("rewards", &Balances(rewards))?;
        out.end()
    }
}

/// The JSON of a [`ReferralsPage`] made from `page`, written straight from
/// it: the same bytes (tested), without two `String`s per referral.
pub(crate) struct ReferralsPageJson<'a>(pub(crate) &'a ReferralPage);

impl Serialize for ReferralsPageJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ReferralPage { items, next } = self.0;
        let mut out = serializer.serialize_struct("ReferralsPage", 2)?;
        out.serialize_field("items", &ReferralItems(items))?;
        out.serialize_field("next_cursor", &next.as_ref().map(Shown))?;
        out.end()
    }
}

/// A value as the JSON string of its `Display` (what `to_string` gives).
struct Shown<'a, T>(&'a T);

impl<T: Display> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self.0)
    }
}

/// Values as a JSON array of [`Shown`] strings.
struct ShownAll<'a, T>(&'a [T]);

impl<T: Display> Serialize for ShownAll<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(Shown))
    }
}

/// Balances as [`BalanceDto`]s.
struct Balances<'a>(&'a [Balance]);

impl Serialize for Balances<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(BalanceDto::from))
    }
}

/// Referrals as [`ReferralItem`]s.
struct ReferralItems<'a>(&'a [Referral]);

impl Serialize for ReferralItems<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ReferralItemJson))
    }
}

/// One [`ReferralItem`], its fields in its order.
struct ReferralItemJson<'a>(&'a Referral);

impl Serialize for ReferralItemJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Referral {
            phone,
            activated_at,
            converted,
            ..
        } = self.0;
        let mut out = serializer.serialize_struct("ReferralItem", 3)?;
        out.serialize_field("phone", &Shown(phone))?;
        out.serialize_field("activated_at", &timestamp(*activated_at))?;
        out.serialize_field("converted", converted)?;
        out.end()
    }
}

/// 200 of `POST /api/auth/verify`.
///
/// `access_token`, `token_type` and `expires_in` are there when the host's
/// authenticator issues bearer tokens (the provided JWT one does); a host
/// that issues its own session (a cookie) leaves them out.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct LoginResponse {
    /// The bearer token for the authenticated routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Always `Bearer` (with `access_token`).
    #[schema(example = "Bearer")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Seconds the token stays valid (with `access_token`).
    #[schema(example = 86400)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    /// Whether this login created the user.
    pub new_user: bool,
    /// The user's profile.
    pub profile: ProfileResponse,
}

/// `POST /api/profile/invite`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"invite_code": "A7KQ2M"}))]
pub struct InviteRequest {
    /// Another user's invite code: 6 ASCII letters and digits, case
    /// ignored (surrounding whitespace is also ignored, though the schema
    /// does not list it).
    #[schema(pattern = r"^[A-Za-z0-9]{6}$", min_length = 6, max_length = 6)]
    pub invite_code: String,
}

/// One referral in a page.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ReferralItem {
    /// The referred user's phone, E.164.
    pub phone: String,
    /// When they activated the code (RFC 3339).
    #[schema(format = DateTime)]
    pub activated_at: String,
    /// Whether the referred user has had a qualifying conversion (even if
    /// it was reversed later).
    #[serde(default)]
    pub converted: bool,
}

impl From<&Referral> for ReferralItem {
    fn from(r: &Referral) -> Self {
        Self {
            phone: r.phone.to_string(),
            activated_at: timestamp(r.activated_at),
            converted: r.converted,
        }
    }
}

/// 200 of `GET /api/profile/referrals`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ReferralsPage {
    /// Referrals, oldest activation first.
    pub items: Vec<ReferralItem>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// 200 of `GET /api/dev/sms`: the latest simulated SMS to a phone.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"phone": "+79991234567", "code": "1234", "sent_at": "2026-11-22T10:00:00Z"}))]
pub struct DevSms {
    /// The phone, E.164.
    pub phone: String,
    /// The code sent.
    pub code: String,
    /// When it was sent (RFC 3339).
    #[schema(format = DateTime)]
    pub sent_at: String,
}

/// `GET /health`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
}

/// Every error answer's body.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "invalid_phone", "message": "the phone number is empty"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable `snake_case` code to match on.
    pub code: String,
    /// A human-readable message, fit to show to a person.
    pub message: String,
}

/// A user's reward totals in one currency, in minor units (clawbacks count
/// in `approved`; voided rewards count nowhere).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"currency": "RUB", "pending": 0, "approved": 1500, "paid": 0}))]
pub struct BalanceDto {
    /// ISO 4217 code.
    pub currency: String,
    /// Sum of the pending rewards.
    pub pending: i64,
    /// Sum of the approved rewards (clawbacks included).
    pub approved: i64,
    /// Sum of the paid rewards.
    pub paid: i64,
}

impl From<&Balance> for BalanceDto {
    fn from(b: &Balance) -> Self {
        Self {
            currency: b.currency.to_string(),
            pending: b.pending,
            approved: b.approved,
            paid: b.paid,
        }
    }
}

/// `POST /api/server/conversions`: exactly one of `user_id` and `phone`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"external_id": "order-17", "phone": "+79990000001", "amount": 150000, "currency": "RUB"}))]
pub struct ConversionRequest {
    /// The host's id of the conversion: 1–128 characters from `!` to `~`.
    pub external_id: String,
    /// The user's id (or `phone`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// The user's phone (or `user_id`).
    #[serde(default)]
    pub phone: Option<String>,
    /// The amount in minor units, 1 to 10¹⁵ (any JSON number; anything but
    /// an integer in range is 400 `invalid_amount`).
    #[schema(value_type = i64)]
    pub amount: serde_json::Value,
    /// ISO 4217 code: three capital letters.
    pub currency: String,
    /// 1–32 characters from `!` to `~`; default `purchase`.
    #[serde(default)]
    pub kind: Option<String>,
    /// When it happened (RFC 3339); default now.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub occurred_at: Option<String>,
}

/// `POST /api/server/conversions/{external_id}/reversals`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"reversal_id": "refund-3", "amount": 50000}))]
pub struct ReversalRequest {
    /// The host's id of the refund: 1–128 characters from `!` to `~`.
    pub reversal_id: String,
    /// Minor units to reverse; absent: all that is not yet reversed.
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub amount: Option<serde_json::Value>,
}

/// `POST /api/server/rewards/{id}/paid`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"payout_ref": "payout-2026-11-30-17"}))]
pub struct PaidRequest {
    /// The host's payout reference: 1–128 characters from `!` to `~`.
    pub payout_ref: String,
}

/// A conversion as recorded.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ConversionDto {
    /// The host's id.
    pub external_id: String,
    /// Whose conversion it is.
    pub user_id: String,
    /// The amount, minor units.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Its kind.
    pub kind: String,
    /// When it happened (RFC 3339).
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// How much of it was reversed, minor units.
    pub reversed_amount: i64,
}

impl From<&Conversion> for ConversionDto {
    fn from(c: &Conversion) -> Self {
        Self {
            external_id: c.id.to_string(),
            user_id: c.user.to_string(),
            amount: c.amount.amount(),
            currency: c.amount.currency().to_string(),
            kind: c.kind.to_string(),
            occurred_at: timestamp(c.occurred_at),
            reversed_amount: c.reversed_amount,
        }
    }
}

/// A reward (REWARD of API.md).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct RewardDto {
    /// Its id.
    pub id: String,
    /// `referrer_fixed`, `referrer_percent`, `welcome` or `clawback`.
    pub kind: String,
    /// Minor units (negative for a clawback).
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `pending`, `approved`, `paid` or `voided`.
    pub status: String,
    /// The conversion it comes from, if any.
    pub conversion_id: Option<String>,
    /// The other side of the referral's phone.
    pub referral_phone: Option<String>,
    /// When it was made (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When it was approved.
    #[schema(format = DateTime)]
    pub approved_at: Option<String>,
    /// When it was paid.
    #[schema(format = DateTime)]
    pub paid_at: Option<String>,
    /// The host's payout reference.
    pub payout_ref: Option<String>,
}

impl From<&Reward> for RewardDto {
    fn from(r: &Reward) -> Self {
        Self {
            id: r.id.to_string(),
            kind: r.kind.as_str().to_owned(),
            amount: r.amount.amount(),
            currency: r.amount.currency().to_string(),
            status: r.status.as_str().to_owned(),
            conversion_id: r.conversion.as_ref().map(ToString::to_string),
            referral_phone: r.referral_phone.map(|p| p.to_string()),
            created_at: timestamp(r.created_at),
            approved_at: r.approved_at.map(timestamp),
            paid_at: r.paid_at.map(timestamp),
            payout_ref: r.payout_ref.as_ref().map(ToString::to_string),
        }
    }
}

/// 201/200 of the conversion routes and 200 of the reversal route.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ConversionAnswer {
    /// The conversion.
    pub conversion: ConversionDto,
    /// The rewards created (recording) or changed and added (reversal).
    pub rewards: Vec<RewardDto>,
}

/// 200 of `GET /api/profile/rewards`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct RewardsPage {
    /// Rewards, newest first.
    pub items: Vec<RewardDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use referral_core::{Currency, InviteCode, PhoneNumber, ReferralCursor, UserId};

    use super::*;

    fn user(n: u32, phone: &str, code: &str) -> User {
        User {
            id: UserId::parse(&format!("00000000-0000-4000-8000-{n:012}")).unwrap(),
            phone: phone.parse::<PhoneNumber>().unwrap(),
            invite_code: InviteCode::parse(code).unwrap(),
            created_at: Utc.timestamp_opt(1_790_000_000, 123_456_000).unwrap(),
        }
    }

    fn referral(n: u32, converted: bool) -> Referral {
        Referral {
            user: UserId::parse(&format!("00000000-0000-4000-8000-{:012}", n + 100)).unwrap(),
            phone: format!("+7900000{n:04}").parse().unwrap(),
            activated_at: Utc
                .timestamp_opt(1_790_000_000 + i64::from(n), n * 1_000)
                .unwrap(),
            converted,
        }
    }

    /// The borrowed JSON writers answer exactly the bytes of the DTOs they
    /// stand for (the DTOs' schemas are what OpenAPI documents).
    #[test]
    fn json_views_write_the_dtos_bytes() {
        let bare = Profile {
            user: user(1, "+79000000000", "A7KQ2M"),
            activated_invite_code: None,
            referral_count: 0,
            referrals: Vec::new(),
            rewards: Vec::new(),
        };
        let full = Profile {
            user: user(2, "+14155550100", "ZZ9ZZ9"),
            activated_invite_code: Some(InviteCode::parse("A7KQ2M").unwrap()),
            referral_count: 12,
            referrals: (1..=10).map(|n| referral(n, false).phone).collect(),
            rewards: vec![
                Balance {
                    currency: Currency::parse("EUR").unwrap(),
                    pending: 1,
                    approved: -2,
                    paid: 3,
                },
                Balance {
                    currency: Currency::parse("RUB").unwrap(),
                    pending: 150_000,
                    approved: 0,
                    paid: 0,
                },
            ],
        };
        for profile in [&bare, &full] {
            assert_eq!(
                serde_json::to_string(&ProfileJson(profile)).unwrap(),
                serde_json::to_string(&ProfileResponse::from(profile)).unwrap()
            );
        }
        let items: Vec<Referral> = (0..10).map(|n| referral(n, n % 3 == 0)).collect();
        let last = ReferralPage {
            items: items.clone(),
            next: None,
        };
        let more = ReferralPage {
            next: Some(ReferralCursor::after(&items[9])),
            items,
        };
        for page in [&last, &more, &ReferralPage::default()] {
            let dto = ReferralsPage {
                items: page.items.iter().map(ReferralItem::from).collect(),
                next_cursor: page.next.map(|c| c.to_string()),
            };
            assert_eq!(
                serde_json::to_string(&ReferralsPageJson(page)).unwrap(),
                serde_json::to_string(&dto).unwrap()
            );
        }
    }
}
