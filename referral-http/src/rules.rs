//! The request rules every framework crate applies, written once: JSON object
//! bodies, body and header sizes, and the JSON envelope on error answers a
//! framework makes on its own.
//!
//! A framework crate reads the raw parts out of its own request type and
//! calls these; it never restates a rule.

use crate::auth::Headers;
use crate::error::ApiError;
use crate::handlers::Reply;

/// The size limits of a request.
///
/// The defaults are the contract's: bodies up to 16 KiB (larger: 413
/// `payload_too_large`), headers up to 32 KiB (larger: 431
/// `request_header_fields_too_large`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The most header bytes (names, values and 4 bytes of framing each) a
    /// request may carry. Enforced by the header-limit helpers of the
    /// framework crates, which the host adds where it wants them.
    pub max_header_bytes: usize,
}

impl Limits {
    /// The contract's body limit: 16 KiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
    /// The contract's header limit: 32 KiB. (hyper and actix-web alone
    /// would take 64 KiB or more.)
    pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

    /// Limits with the given body limit and the default header limit.
    #[must_use]
    pub fn with_max_body_bytes(self, max_body_bytes: usize) -> Self {
        Self {
            max_body_bytes,
            ..self
        }
    }

    /// Limits with the given header limit.
    #[must_use]
    pub fn with_max_header_bytes(self, max_header_bytes: usize) -> Self {
        Self {
            max_header_bytes,
            ..self
        }
    }

    /// Checks a request's declared `Content-Type` and `Content-Length`
    /// before its body is read: 415 `unsupported_media_type` unless the type
    /// is JSON ([`is_json_content_type`]); 413 `payload_too_large` when the
    /// declared length is over [`Limits::max_body_bytes`]. The framework
    /// then reads at most `max_body_bytes` (413 past it, see
    /// [`Limits::payload_too_large`]) and hands the bytes to
    /// [`parse_json_body`].
    ///
    /// # Errors
    /// Those two answers.
    pub fn check_json_request(
        &self,
        content_type: Option<&[u8]>,
        content_length: Option<&[u8]>,
    ) -> Result<(), ApiError> {
        let is_json = content_type
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(is_json_content_type);
        if !is_json {
            return Err(ApiError::unsupported_media_type());
        }
        let declared = content_length
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body_bytes as u64) {
            return Err(self.payload_too_large());
        }
        Ok(())
    }

    /// 413 `payload_too_large`, naming this limit.
    #[must_use]
    pub fn payload_too_large(&self) -> ApiError {
        ApiError::payload_too_large(self.max_body_bytes)
    }

    /// Checks the size of a request's headers, given as `(name, value)`
    /// pairs: each counts its name, its value and 4 bytes of framing.
    ///
    /// # Errors
    /// 431 `request_header_fields_too_large` past
    /// [`Limits::max_header_bytes`].
    pub fn check_header_bytes<'a>(
        &self,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(), ApiError> {
        let bytes: usize = headers
            .into_iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        if bytes > self.max_header_bytes {
            return Err(ApiError::for_status(431));
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: Self::DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// Whether a `Content-Type` value declares JSON: `application/json` or
/// `application/*+json`, parameters (`; charset=utf-8`) allowed.
#[must_use]
pub fn is_json_content_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a request body, which must be a JSON object: 400 `invalid_json`
/// when it is not JSON, 400 `invalid_body` when it is not an object or a
/// field is missing or mistyped. (serde would otherwise read a struct from a
/// JSON array too: `["+79991234567"]` as a code request.)
///
/// # Errors
/// Those two answers.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice::<T>(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid_body(e),
        _ => ApiError::invalid_json(e),
    })?;
    // serde_json skips only these four bytes as whitespace.
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first == Some(&b'{') {
        Ok(value)
    } else {
        Err(ApiError::invalid_body("the body must be a JSON object"))
    }
}

/// The envelope for an answer a framework made on its own: `Some` when the
/// answer is an error (4xx or 5xx) without a JSON body (its `Content-Type`
/// does not start with `application/json`): the [`Reply`] to send instead,
/// the envelope its status stands for ([`ApiError::for_status`]) keeping the
/// original's `Allow` and `Retry-After`; `None` for every other answer,
/// which goes out as it is.
#[must_use]
pub fn envelope_for(status: u16, headers: &dyn Headers) -> Option<Reply> {
    if !(400..=599).contains(&status) {
        return None;
    }
    if headers
        .get("content-type")
        .is_some_and(|v| v.starts_with(crate::JSON))
    {
        return None;
    }
    let mut reply = Reply::from(ApiError::for_status(status));
    for name in ["allow", "retry-after"] {
        if let Some(value) = headers.get(name) {
            reply.headers.retain(|(n, _)| n != name);
            reply.headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/problem+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("", false),
        ] {
            assert_eq!(is_json_content_type(value), json, "{value}");
        }
    }

    #[test]
    fn declared_type_and_length() {
        let limits = Limits::default().with_max_body_bytes(10);
        let json = Some(&b"application/json"[..]);
        assert_eq!(limits.check_json_request(json, Some(b"10")), Ok(()));
        assert_eq!(limits.check_json_request(json, None), Ok(()));
        let e = limits.check_json_request(json, Some(b"11")).unwrap_err();
        assert_eq!((e.status, e.code), (413, "payload_too_large"));
        let e = limits.check_json_request(None, Some(b"1")).unwrap_err();
        assert_eq!((e.status, e.code), (415, "unsupported_media_type"));
        let e = limits
            .check_json_request(Some(b"text/plain"), None)
            .unwrap_err();
        assert_eq!(e.status, 415);
    }

    #[test]
    fn header_bytes() {
        let limits = Limits::default().with_max_header_bytes(20);
        assert!(
            limits
                .check_header_bytes([("a", &b"0123456789"[..])])
                .is_ok()
        );
        let e = limits
            .check_header_bytes([("a", &b"0123456789"[..]), ("b", &b"0123"[..])])
            .unwrap_err();
        assert_eq!((e.status, e.code), (431, "request_header_fields_too_large"));
    }

    #[test]
    fn bodies_must_be_objects() {
        #[derive(serde::Deserialize, Debug)]
        struct B {
            #[allow(dead_code)]
            phone: String,
        }
        assert!(parse_json_body::<B>(b" {\"phone\": \"x\"}").is_ok());
        let e = parse_json_body::<B>(b"[\"x\"]").unwrap_err();
        assert_eq!(e.code, "invalid_body");
        let e = parse_json_body::<B>(b"{").unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = parse_json_body::<B>(b"{}").unwrap_err();
        assert_eq!(e.code, "invalid_body");
    }

    #[test]
    fn envelopes_bare_errors_only() {
        use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
        let mut headers = http::HeaderMap::new();
        assert_eq!(envelope_for(200, &headers), None);
        let reply = envelope_for(503, &headers).unwrap();
        assert_eq!(reply.status, 503);
        assert!(String::from_utf8_lossy(&reply.body).contains("\"unavailable\""));
        headers.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
        headers.insert(ALLOW, "GET,HEAD".parse().unwrap());
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let reply = envelope_for(405, &headers).unwrap();
        assert!(String::from_utf8_lossy(&reply.body).contains("method_not_allowed"));
        assert!(reply.headers.contains(&("allow".into(), "GET,HEAD".into())));
        assert!(reply.headers.contains(&("retry-after".into(), "7".into())));
        headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(envelope_for(404, &headers), None);
    }
}
