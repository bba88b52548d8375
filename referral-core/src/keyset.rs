//! The opaque text of a keyset cursor over `(instant, uuid)` keys, shared by
//! [`ReferralCursor`](crate::ReferralCursor) and
//! [`RewardCursor`](crate::RewardCursor): the instant's microseconds
//! (big-endian `i64`) then the UUID's 16 bytes, 24 bytes in base64url
//! without padding, always 32 characters.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The text of the key `(at, id)`.
pub(crate) fn encode(at: DateTime<Utc>, id: Uuid) -> String {
    let mut raw = [0u8; 24];
    raw[..8].copy_from_slice(&at.timestamp_micros().to_be_bytes());
    raw[8..].copy_from_slice(id.as_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// The key [`encode`] wrote into `input`; `None` for any other text.
pub(crate) fn decode(input: &str) -> Option<(DateTime<Utc>, Uuid)> {
    if input.len() != 32 {
        return None;
    }
    let mut raw = [0u8; 24];
    let n = URL_SAFE_NO_PAD.decode_slice(input, &mut raw).ok()?;
    if n != raw.len() {
        return None;
    }
    let (micros, id) = raw.split_at(8);
    let micros = i64::from_be_bytes(micros.try_into().ok()?);
    let at = DateTime::from_timestamp_micros(micros)?;
    let id = Uuid::from_slice(id).ok()?;
    Some((at, id))
}
