//! The JSON bodies of API.md, with their OpenAPI schemas.
//!
//! Requests carry plain strings: the service parses them, so a malformed
//! phone is a 400 `invalid_phone` (not a generic body error). To add a
//! route's bodies, add their types here and list them in
//! [`crate::openapi::ApiDoc`]'s `components`.

use chrono::{DateTime, SecondsFormat, Utc};
use referral_core::{
    Balance, Conversion, PhoneNumber, Profile, Referral, ReferralPage, Reward, User,
};
use serde::{Deserialize, Serialize};
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

/// A timestamp as the API writes it: RFC 3339, UTC, `Z` (chrono's
/// `to_rfc3339_opts(SecondsFormat::AutoSi, true)`: the fraction of a second,
/// if any, in 3, 6 or 9 digits).
#[must_use]
pub fn timestamp(at: DateTime<Utc>) -> String {
    let mut buffer = [0; Rfc3339::MAX_LEN];
    match Rfc3339::write(at, &mut buffer).map(std::str::from_utf8) {
        Some(Ok(text)) => text.to_owned(),
        _ => at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    }
}

/// A timestamp written as [`timestamp`] writes it, without a `String`: the
/// digits go straight into a buffer on the stack (chrono's formatter goes
/// through `core::fmt` for the fraction and allocates the `String`).
#[derive(Debug, Clone, Copy)]
struct Rfc3339(DateTime<Utc>);

impl Rfc3339 {
    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    const MAX_LEN: usize = 30;

    /// `at` as chrono writes it (ASCII), in `buffer`; `None` for a year
    /// outside 0..=9999 (chrono writes those with a sign; the caller asks
    /// chrono).
    fn write(at: DateTime<Utc>, buffer: &mut [u8; Self::MAX_LEN]) -> Option<&[u8]> {
        use chrono::{Datelike as _, Timelike as _};

        /// Two digits of `n` (below 100) at `buffer[at..at + 2]`.
        fn two(buffer: &mut [u8], at: usize, n: u32) {
            // Both digits are below 10: the casts cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            {
                buffer[at] = b'0' + (n / 10 % 10) as u8;
                buffer[at + 1] = b'0' + (n % 10) as u8;
            }
        }

        // The date and the time once, not through `DateTime`'s accessors
        // (each of which adds the offset again).
        let at = at.naive_utc();
        let (date, time) = (at.date(), at.time());
        let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
        let mut second = time.second();
        let mut nano = time.nanosecond();
        // A leap second (chrono keeps it as nanoseconds past 1e9): `:60`,
        // as chrono writes it.
        if nano >= 1_000_000_000 {
            second += 1;
            nano -= 1_000_000_000;
        }
        two(buffer, 0, year / 100);
        two(buffer, 2, year % 100);
        buffer[4] = b'-';
        two(buffer, 5, date.month());
        buffer[7] = b'-';
        two(buffer, 8, date.day());
        buffer[10] = b'T';
        two(buffer, 11, time.hour());
        buffer[13] = b':';
        two(buffer, 14, time.minute());
        buffer[16] = b':';
        two(buffer, 17, second);
        let mut len = 19;
        if nano != 0 {
            let (mut fraction, digits) = if nano.is_multiple_of(1_000_000) {
                (nano / 1_000_000, 3)
            } else if nano.is_multiple_of(1_000) {
                (nano / 1_000, 6)
            } else {
                (nano, 9)
            };
            buffer[len] = b'.';
            for at in (len + 1..=len + digits).rev() {
                // A digit: the cast cannot truncate.
                #[allow(clippy::cast_possible_truncation)]
                {
                    buffer[at] = b'0' + (fraction % 10) as u8;
                }
                fraction /= 10;
            }
            len += 1 + digits;
        }
        buffer[len] = b'Z';
        Some(&buffer[..=len])
    }

    /// The timestamp as a JSON string, appended to `out`.
    fn write_json(self, out: &mut Vec<u8>) {
        let mut buffer = [0; Self::MAX_LEN];
        match Self::write(self.0, &mut buffer) {
            Some(text) => write_json_str(out, text),
            None => write_json_str(out, timestamp(self.0).as_bytes()),
        }
    }
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

/// A string, given as its UTF-8 bytes `text`, appended to `out` as a JSON
/// string: the bytes serde_json writes for it.
///
/// Every string the hand-written bodies hold is ASCII that needs no escape
/// (ids, E.164 phones, invite codes, timestamps, currency codes, cursors),
/// so it goes in as it is, between quotes. Should one ever hold a byte
/// serde_json escapes (a control character below U+0020, `"` or `\`), the
/// whole string is written by serde_json instead. Other bytes, non-ASCII
/// UTF-8 and DEL included, serde_json writes unescaped too.
fn write_json_str(out: &mut Vec<u8>, text: &[u8]) {
    if needs_escape(text) {
        // `text` is a string's bytes, so nothing is replaced; serde_json
        // fails only on an I/O error, which a `Vec` never gives.
        let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(text));
    } else {
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
    }
}

/// Whether serde_json escapes a byte of `text`: one below 0x20, `"` or
/// `\`.
///
/// Eight bytes a step (the strings are 3 to 36 bytes long), with Hacker's
/// Delight's "has a byte less than n": `(word - n·0x0101…) & !word &
/// 0x8080…` is not zero exactly when a byte of `word` is below `n`. A byte
/// below 0x20 is one below 0x20; a `"` or a `\` is one below 1 once the
/// word is XORed with a word of `"` or of `\`. A last part shorter than a
/// word is read again as the text's last 8 bytes; a text shorter than 8
/// is checked byte by byte.
fn needs_escape(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    fn any_below(word: u64, n: u8) -> bool {
        word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0
    }
    fn word_needs_escape(word: u64) -> bool {
        any_below(word, 0x20)
            | any_below(word ^ (ONES * u64::from(b'"')), 1)
            | any_below(word ^ (ONES * u64::from(b'\\')), 1)
    }
    fn word(bytes: &[u8]) -> u64 {
        let mut word = [0; 8];
        word.copy_from_slice(bytes);
        u64::from_le_bytes(word)
    }

    if text.len() < 8 {
        return text.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    let mut chunks = text.chunks_exact(8);
    let mut needs = false;
    for chunk in &mut chunks {
        needs |= word_needs_escape(word(chunk));
    }
    if !chunks.remainder().is_empty() {
        needs |= word_needs_escape(word(&text[text.len() - 8..]));
    }
    needs
}

/// `text` as a JSON string ([`write_json_str`]), or `null` for `None`,
/// appended to `out`.
fn write_json_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => write_json_str(out, text.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// `items` as a JSON array, each written by `write`, appended to `out`.
fn write_json_array<T>(out: &mut Vec<u8>, items: &[T], mut write: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// An integer as JSON (its decimal digits, `itoa`'s, not `core::fmt`'s),
/// appended to `out`.
fn write_json_int<I: itoa::Integer>(out: &mut Vec<u8>, n: I) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A phone as the JSON string of its E.164 text (what `to_string` gives),
/// written by [`PhoneNumber::e164`], not through `core::fmt`. The text is
/// `+` and digits by construction, so it is not checked for escapes.
fn write_json_phone(out: &mut Vec<u8>, phone: PhoneNumber) {
    let e164 = phone.e164();
    out.push(b'"');
    out.extend_from_slice(e164.as_bytes());
    out.push(b'"');
}

/// The JSON of [`ProfileResponse::from`] `profile`, written by hand straight
/// from the [`Profile`]: the same bytes (tested), without a `String` per
/// field and per referral and without serde_json's per-byte escaping or
/// `core::fmt`. What the profile and invite routes answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProfileJson<'a>(pub(crate) &'a Profile);

impl ProfileJson<'_> {
    /// The JSON, in a buffer sized for it at once: [`Self::write_json`].
    pub(crate) fn to_json(self) -> Vec<u8> {
        // Room for every field at its longest (a u64 count, 20-digit
        // phones, i64 balances), so the buffer never grows.
        let mut out =
            Vec::with_capacity(256 + 24 * self.0.referrals.len() + 112 * self.0.rewards.len());
        self.write_json(&mut out);
        out
    }

    /// The JSON appended to `out`: [`ProfileResponse`]'s fields, in its
    /// order, as serde_json writes them (compact).
    pub(crate) fn write_json(self, out: &mut Vec<u8>) {
        let Profile {
            user,
            activated_invite_code,
            referral_count,
            referrals,
            rewards,
        } = self.0;
        out.extend_from_slice(b"{\"id\":");
        write_json_str(
            out,
            user.id
                .as_uuid()
                .hyphenated()
                .encode_lower(&mut [0; 36])
                .as_bytes(),
        );
        out.extend_from_slice(b",\"phone\":");
        write_json_phone(out, user.phone);
        out.extend_from_slice(b",\"invite_code\":");
        write_json_str(out, user.invite_code.as_str().as_bytes());
        out.extend_from_slice(b",\"activated_invite_code\":");
        write_json_opt_str(out, activated_invite_code.as_ref().map(|c| c.as_str()));
        out.extend_from_slice(b",\"referral_count\":");
        write_json_int(out, *referral_count);
        out.extend_from_slice(b",\"referrals\":");
        write_json_array(out, referrals, |out, phone| write_json_phone(out, *phone));
        out.extend_from_slice(b",\"created_at\":");
        Rfc3339(user.created_at).write_json(out);
        out.extend_from_slice(b",\"rewards\":");
        write_json_array(out, rewards, write_json_balance);
        out.push(b'}');
    }
}

/// A [`BalanceDto`] made from `balance`, its fields in its order, appended
/// to `out`.
fn write_json_balance(out: &mut Vec<u8>, balance: &Balance) {
    let Balance {
        currency,
        pending,
        approved,
        paid,
    } = balance;
    out.extend_from_slice(b"{\"currency\":");
    write_json_str(out, currency.as_str().as_bytes());
    out.extend_from_slice(b",\"pending\":");
    write_json_int(out, *pending);
    out.extend_from_slice(b",\"approved\":");
    write_json_int(out, *approved);
    out.extend_from_slice(b",\"paid\":");
    write_json_int(out, *paid);
    out.push(b'}');
}

/// The JSON of a [`ReferralsPage`] made from `page`, written by hand straight
/// from it: the same bytes (tested), without two `String`s per referral.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReferralsPageJson<'a>(pub(crate) &'a ReferralPage);

impl ReferralsPageJson<'_> {
    /// The JSON, in a buffer sized for it at once: [`Self::write_json`].
    pub(crate) fn to_json(self) -> Vec<u8> {
        // Room for every item at its longest and a cursor, so the buffer
        // never grows.
        let mut out = Vec::with_capacity(64 + 100 * self.0.items.len());
        self.write_json(&mut out);
        out
    }

    /// The JSON appended to `out`: [`ReferralsPage`]'s fields, in its
    /// order, as serde_json writes them (compact).
    pub(crate) fn write_json(self, out: &mut Vec<u8>) {
        let ReferralPage { items, next } = self.0;
        out.extend_from_slice(b"{\"items\":");
        write_json_array(out, items, write_json_referral);
        out.extend_from_slice(b",\"next_cursor\":");
        write_json_opt_str(out, next.map(|c| c.to_string()).as_deref());
        out.push(b'}');
    }
}

/// A [`ReferralItem`] made from `referral`, its fields in its order,
/// appended to `out`.
fn write_json_referral(out: &mut Vec<u8>, referral: &Referral) {
    let Referral {
        phone,
        activated_at,
        converted,
        ..
    } = referral;
    out.extend_from_slice(b"{\"phone\":");
    write_json_phone(out, *phone);
    out.extend_from_slice(b",\"activated_at\":");
    Rfc3339(*activated_at).write_json(out);
    let converted: &[u8] = if *converted {
        b",\"converted\":true}"
    } else {
        b",\"converted\":false}"
    };
    out.extend_from_slice(converted);
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
    use proptest::prelude::*;
    use referral_core::{Currency, InviteCode, ReferralCursor, UserId};

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

    /// What chrono writes, the API's timestamp format before [`Rfc3339`].
    fn chrono_rfc3339(at: DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    fn assert_as_chrono(at: DateTime<Utc>) {
        let expected = chrono_rfc3339(at);
        assert_eq!(timestamp(at), expected, "{at:?}");
        let mut out = Vec::new();
        Rfc3339(at).write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_bytes(&expected),
            "{at:?}"
        );
    }

    /// The edges: no fraction, each fraction length, a leap second, the
    /// first and last years written without a sign, and years chrono writes
    /// with one (handed to chrono).
    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let cases = [
            (0, 0),
            (1_790_000_000, 0),
            (1_790_000_000, 123_000_000),
            (1_790_000_000, 123_456_000),
            (1_790_000_000, 123_456_789),
            (1_790_000_000, 1),
            (1_790_000_000, 999_999_999),
            (1_790_000_000, 100_000_000),
            (1_790_000_000, 1_000),
            // A leap second: 23:59:60.5.
            (1_483_228_799, 1_500_000_000),
            (1_483_228_799, 1_000_000_000),
            // 0000-01-01 and 9999-12-31T23:59:59.
            (-62_167_219_200, 0),
            (253_402_300_799, 999_000_000),
            // 10000-01-01 and -0001-12-31: signed years.
            (253_402_300_800, 0),
            (-62_167_219_201, 5_000),
        ];
        for (secs, nanos) in cases {
            assert_as_chrono(DateTime::from_timestamp(secs, nanos).unwrap());
        }
        assert_as_chrono(DateTime::<Utc>::MIN_UTC);
        assert_as_chrono(DateTime::<Utc>::MAX_UTC);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// Any instant chrono represents, any fraction (whole milli- and
        /// microseconds weighted in: they take the shorter forms).
        #[test]
        fn any_timestamp_is_written_as_chrono_writes_it(
            secs in DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
            nanos in prop_oneof![
                0..2_000_000_000_u32,
                (0..2_000_u32).prop_map(|n| n * 1_000_000),
                (0..2_000_000_u32).prop_map(|n| n * 1_000),
                Just(0_u32),
            ],
        ) {
            if let Some(at) = DateTime::from_timestamp(secs, nanos) {
                assert_as_chrono(at);
            }
        }
    }

    /// What serde_json writes for `dto`, the bytes a hand-written view must
    /// match.
    fn serde_bytes<T: Serialize>(dto: &T) -> String {
        serde_json::to_string(dto).unwrap()
    }

    /// What the profile's hand-written view writes, as text.
    fn profile_bytes(profile: &Profile) -> String {
        String::from_utf8(ProfileJson(profile).to_json()).unwrap()
    }

    /// What the page's hand-written view writes, as text.
    fn page_bytes(page: &ReferralPage) -> String {
        String::from_utf8(ReferralsPageJson(page).to_json()).unwrap()
    }

    /// The [`ReferralsPage`] DTO of `page`.
    fn page_dto(page: &ReferralPage) -> ReferralsPage {
        ReferralsPage {
            items: page.items.iter().map(ReferralItem::from).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        }
    }

    /// The string writer writes what serde_json writes, for strings that
    /// need no escape (raw) and for every byte serde_json escapes (its
    /// fallback), non-ASCII and DEL left as they are.
    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut every_ascii = String::new();
        for c in 0..=0x7f_u8 {
            every_ascii.push(char::from(c));
        }
        for s in [
            "",
            "A7KQ2M",
            "+79991234567",
            "2026-01-01T00:00:00.123Z",
            "a\"quote",
            "back\\slash",
            "line\nbreak\ttab\r\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "café ☎ 𝄞",
            every_ascii.as_str(),
        ] {
            let mut out = b"[".to_vec();
            write_json_str(&mut out, s.as_bytes());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("[{}", serde_bytes(&s)),
                "{s:?}"
            );
        }
    }

    /// Each byte serde_json escapes, and each byte next to the ones it does
    /// not, is found at every position of strings of 1 to 24 bytes (the
    /// word-at-a-time check's whole words, its last overlapping word and
    /// its byte-by-byte short strings).
    #[test]
    fn every_escaped_byte_is_found_at_every_position() {
        for len in 1..=24 {
            for at in 0..len {
                for c in (0..=0x7f_u8).map(char::from).chain(['é', '☎']) {
                    let mut s: String = "x".repeat(at);
                    s.push(c);
                    s.push_str(&"y".repeat(len - at - 1));
                    let want = c < ' ' || c == '"' || c == '\\';
                    assert_eq!(needs_escape(s.as_bytes()), want, "{s:?}");
                    let mut out = Vec::new();
                    write_json_str(&mut out, s.as_bytes());
                    assert_eq!(String::from_utf8(out).unwrap(), serde_bytes(&s), "{s:?}");
                }
            }
        }
    }

    /// A user id from any 128 bits (not only a version-4 UUID).
    fn user_id(bits: u128) -> UserId {
        let hex = format!("{bits:032x}");
        UserId::parse(&format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        ))
        .unwrap()
    }

    /// A valid phone: 7 to 15 digits, the first not 0, every width.
    fn any_phone() -> impl Strategy<Value = PhoneNumber> {
        (7_u32..=15, any::<u64>()).prop_map(|(digits, n)| {
            let lowest = 10_u64.pow(digits - 1);
            format!("+{}", lowest + n % (9 * lowest)).parse().unwrap()
        })
    }

    /// An invite code (any case: parsing upper-cases it).
    fn any_code() -> impl Strategy<Value = InviteCode> {
        "[A-Za-z0-9]{6}".prop_map(|s| InviteCode::parse(&s).unwrap())
    }

    /// Any instant chrono represents, with every fraction length (none,
    /// milli-, micro-, nanoseconds) and leap seconds.
    fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
        (
            DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
            prop_oneof![
                Just(0_u32),
                (0..1_000_u32).prop_map(|n| n * 1_000_000),
                (0..1_000_000_u32).prop_map(|n| n * 1_000),
                0..2_000_000_000_u32,
            ],
        )
            .prop_map(|(secs, nanos)| {
                // A leap second is only representable at a minute's last
                // second: elsewhere the fraction alone is kept.
                DateTime::from_timestamp(secs, nanos)
                    .or_else(|| DateTime::from_timestamp(secs, nanos % 1_000_000_000))
                    .unwrap_or_default()
            })
    }

    /// Any minor-unit amount, the extremes weighted in.
    fn any_amount() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            -1_000_i64..1_000
        ]
    }

    fn any_balance() -> impl Strategy<Value = Balance> {
        ("[A-Z]{3}", any_amount(), any_amount(), any_amount()).prop_map(
            |(currency, pending, approved, paid)| Balance {
                currency: Currency::parse(&currency).unwrap(),
                pending,
                approved,
                paid,
            },
        )
    }

    fn any_profile() -> impl Strategy<Value = Profile> {
        (
            (any::<u128>(), any_phone(), any_code(), any_instant()),
            proptest::option::of(any_code()),
            prop_oneof![any::<u64>(), 0_u64..200, Just(u64::MAX)],
            proptest::collection::vec(any_phone(), 0..=100),
            proptest::collection::vec(any_balance(), 0..4),
        )
            .prop_map(
                |((id, phone, invite_code, created_at), activated, count, referrals, rewards)| {
                    Profile {
                        user: User {
                            id: user_id(id),
                            phone,
                            invite_code,
                            created_at,
                        },
                        activated_invite_code: activated,
                        referral_count: count,
                        referrals,
                        rewards,
                    }
                },
            )
    }

    fn any_page() -> impl Strategy<Value = ReferralPage> {
        (
            proptest::collection::vec(
                (any::<u128>(), any_phone(), any_instant(), any::<bool>()).prop_map(
                    |(user, phone, activated_at, converted)| Referral {
                        user: user_id(user),
                        phone,
                        activated_at,
                        converted,
                    },
                ),
                0..=100,
            ),
            proptest::option::of((any_instant(), any::<u128>())),
        )
            .prop_map(|(items, next)| ReferralPage {
                items,
                next: next.map(|(at, user)| ReferralCursor::new(at, user_id(user))),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Any profile's hand-written JSON is its DTO's serde_json bytes.
        #[test]
        fn any_profile_is_written_as_its_dto(profile in any_profile()) {
            prop_assert_eq!(
                profile_bytes(&profile),
                serde_bytes(&ProfileResponse::from(&profile))
            );
        }

        /// Any page's hand-written JSON is its DTO's serde_json bytes.
        #[test]
        fn any_page_is_written_as_its_dto(page in any_page()) {
            prop_assert_eq!(page_bytes(&page), serde_bytes(&page_dto(&page)));
        }
    }

    /// The hand-written JSON views answer exactly the bytes of the DTOs they
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
                profile_bytes(profile),
                serde_bytes(&ProfileResponse::from(profile))
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
            assert_eq!(page_bytes(page), serde_bytes(&page_dto(page)));
        }
    }
}
