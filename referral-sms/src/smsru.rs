//! [`SmsRuSender`]: SMS.ru's HTTP API.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use referral_core::sms::{OtpSms, SmsError, SmsSender};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::{BuildError, ProviderError};
use crate::options::{Options, base_url, join, option_methods};
use crate::template::MessageTemplate;
use crate::transport::{Transport, Verdict};

pub(crate) const PROVIDER: &str = "smsru";

/// SMS.ru's API.
pub const SMSRU_BASE_URL: &str = "https://sms.ru";

/// Sends codes with SMS.ru: `POST {base}/sms/send` with the form fields
/// `api_id`, `to` (the number's digits, no `+`), `msg` and `json=1` (and
/// `from` when a sender name is set). The credential travels in the form
/// body, never in the URL, so it stays out of access logs.
///
/// SMS.ru answers `200` to every well-formed request and says in the JSON
/// body what happened: `status_code` 100 at the top level and for the
/// number means accepted.
///
/// # Retries and double sends
/// SMS.ru has no idempotency key. This sender retries only when the message
/// was certainly not accepted: the connection could not be made, HTTP `429`
/// or `503`, or SMS.ru's own code 220 ("service temporarily unavailable").
/// A timeout or broken connection after the request was sent, another `5xx`
/// or an unreadable answer ends the send with an error: the SMS may still
/// arrive, with a code the service has revoked.
///
/// # Errors mapped
/// SMS.ru codes 200, 201, 204, 300, 301 and 302 (bad `api_id`, no money,
/// unapproved sender name, account not confirmed) are
/// [`SmsError::Misconfigured`]; 220 and HTTP `429`/`5xx` are
/// [`SmsError::Unavailable`]; every other code (202 bad number, 207 number
/// not allowed, 209 stop list, 230–233 limits for this number…) is
/// [`SmsError::Rejected`], with the code in the [`ProviderError`].
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use referral_sms::SmsRuSender;
///
/// let sender = SmsRuSender::builder("the-api-id")?.build()?;
/// # let _ = sender; Ok(()) }
/// ```
pub struct SmsRuSender {
    transport: Transport,
    template: MessageTemplate,
    api_id: String,
    from: Option<String>,
    url: reqwest::Url,
}

impl fmt::Debug for SmsRuSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsRuSender")
            .field("api_id", &"<redacted>")
            .field("from", &self.from)
            .field("url", &self.url.as_str())
            .field("template", &self.template)
            .field("policy", &self.transport.policy)
            .finish_non_exhaustive()
    }
}

/// Builds an [`SmsRuSender`]; see [`SmsRuSender::builder`].
#[must_use]
pub struct SmsRuSenderBuilder {
    api_id: String,
    from: Option<String>,
    base_url: String,
    options: Options,
}

impl fmt::Debug for SmsRuSenderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsRuSenderBuilder")
            .field("api_id", &"<redacted>")
            .field("from", &self.from)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SmsRuSenderBuilder {
    /// The API's base URL (default [`SMSRU_BASE_URL`]).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// A sender name approved in the SMS.ru account (the `from` field);
    /// default: the account's default sender.
    pub fn sender_name(mut self, from: impl Into<String>) -> Self {
        self.from = Some(from.into());
        self
    }

    option_methods!();

    /// The sender.
    ///
    /// # Errors
    /// [`BuildError`] for a malformed base URL or sender name, an unusable
    /// retry policy, or an HTTPS client that cannot be set up.
    pub fn build(self) -> Result<SmsRuSender, BuildError> {
        let base = base_url("SMS.ru base URL", &self.base_url)?;
        if self.from.as_ref().is_some_and(|f| f.is_empty()) {
            return Err(BuildError::Setting("SMS.ru sender name: empty".into()));
        }
        let (transport, template) = self.options.transport(PROVIDER, false)?;
        Ok(SmsRuSender {
            transport,
            template,
            api_id: self.api_id,
            from: self.from,
            url: join(&base, "/sms/send"),
        })
    }
}

impl SmsRuSender {
    /// Starts a builder for the account with this `api_id`.
    ///
    /// # Errors
    /// [`BuildError::Setting`] for an empty `api_id`.
    pub fn builder(api_id: &str) -> Result<SmsRuSenderBuilder, BuildError> {
        if api_id.trim().is_empty() {
            return Err(BuildError::Setting("SMS.ru api_id: empty".into()));
        }
        Ok(SmsRuSenderBuilder {
            api_id: api_id.to_owned(),
            from: None,
            base_url: SMSRU_BASE_URL.to_owned(),
            options: Options::default(),
        })
    }
}

/// `{"status": "OK", "status_code": 100, "sms": {"7999…": {…}}, …}`.
#[derive(Deserialize)]
struct Answer {
    status_code: Option<i64>,
    status_text: Option<String>,
    #[serde(default)]
    sms: HashMap<String, PerNumber>,
}

#[derive(Deserialize)]
struct PerNumber {
    status_code: Option<i64>,
    status_text: Option<String>,
}

/// What an SMS.ru `status_code` other than 100 means.
fn refused(code: i64, text: Option<String>) -> Verdict {
    let detail = text
        .map(|t| t.chars().take(200).collect::<String>())
        .unwrap_or_else(|| "the message was not accepted".to_owned());
    let error = ProviderError::new(PROVIDER, detail).code(code.to_string());
    match code {
        220 => Verdict::NotAccepted(error),
        200 | 201 | 204 | 300 | 301 | 302 => {
            Verdict::Refused(SmsError::Misconfigured(Box::new(error)))
        }
        _ => Verdict::Refused(SmsError::Rejected(Box::new(error))),
    }
}

fn classify(to: &str, status: StatusCode, body: &[u8]) -> Verdict {
    if !status.is_success() {
        let error =
            ProviderError::new(PROVIDER, "the message was not accepted").status(status.as_u16());
        return match status.as_u16() {
            429 | 503 => Verdict::NotAccepted(error),
            500..=599 => Verdict::MaybeAccepted(error.maybe_accepted()),
            _ => Verdict::Refused(SmsError::Misconfigured(Box::new(error))),
        };
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(body) else {
        return Verdict::MaybeAccepted(
            ProviderError::new(PROVIDER, "unreadable answer")
                .status(status.as_u16())
                .maybe_accepted(),
        );
    };
    match answer.status_code {
        Some(100) => {}
        Some(code) => return refused(code, answer.status_text),
        None => {
            return Verdict::MaybeAccepted(
                ProviderError::new(PROVIDER, "answer without status_code").maybe_accepted(),
            );
        }
    }
    match answer.sms.get(to) {
        Some(PerNumber {
            status_code: Some(100),
            ..
        }) => Verdict::Sent,
        Some(PerNumber {
            status_code: Some(code),
            status_text,
        }) => refused(*code, status_text.clone()),
        _ => Verdict::MaybeAccepted(
            ProviderError::new(PROVIDER, "answer without this number's status").maybe_accepted(),
        ),
    }
}

#[async_trait]
impl SmsSender for SmsRuSender {
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
        let text = self.template.render(sms);
        let e164 = sms.to.to_e164();
        let to = e164.trim_start_matches('+');
        let mut form = vec![
            ("api_id", self.api_id.as_str()),
            ("to", to),
            ("msg", text.as_str()),
            ("json", "1"),
        ];
        if let Some(from) = &self.from {
            form.push(("from", from.as_str()));
        }
        self.transport
            .send(
                |client| client.post(self.url.clone()).form(&form),
                |status, body| classify(to, status, body),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let ok = br#"{"status":"OK","status_code":100,"sms":{"79991234567":{"status":"OK","status_code":100,"sms_id":"1"}},"balance":1}"#;
        assert!(matches!(
            classify("79991234567", StatusCode::OK, ok),
            Verdict::Sent
        ));
        // The number is missing from the answer: cannot tell.
        assert!(matches!(
            classify("79990000000", StatusCode::OK, ok),
            Verdict::MaybeAccepted(_)
        ));
        let bad_number = br#"{"status":"OK","status_code":100,"sms":{"79991234567":{"status":"ERROR","status_code":207,"status_text":"no"}}}"#;
        assert!(matches!(
            classify("79991234567", StatusCode::OK, bad_number),
            Verdict::Refused(SmsError::Rejected(_))
        ));
        let bad_key = br#"{"status":"ERROR","status_code":200,"status_text":"Wrong api_id"}"#;
        assert!(matches!(
            classify("79991234567", StatusCode::OK, bad_key),
            Verdict::Refused(SmsError::Misconfigured(_))
        ));
        let busy = br#"{"status":"ERROR","status_code":220,"status_text":"later"}"#;
        assert!(matches!(
            classify("79991234567", StatusCode::OK, busy),
            Verdict::NotAccepted(_)
        ));
        assert!(matches!(
            classify("79991234567", StatusCode::OK, b"{\"status\":"),
            Verdict::MaybeAccepted(_)
        ));
    }

    #[test]
    fn debug_hides_the_api_id() {
        let s = SmsRuSender::builder("SECRET-API-ID")
            .unwrap()
            .build()
            .unwrap();
        assert!(!format!("{s:?}").contains("SECRET-API-ID"));
        assert!(SmsRuSender::builder(" ").is_err());
    }
}
