//! [`TwilioSender`]: Twilio Programmable Messaging (the Messages API).

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use referral_core::sms::{OtpSms, SmsError, SmsSender};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::{BuildError, ProviderError};
use crate::options::{Options, base_url, join, option_methods};
use crate::template::MessageTemplate;
use crate::transport::{Transport, Verdict};

pub(crate) const PROVIDER: &str = "twilio";

/// Twilio's production API.
pub const TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// A Twilio SID: two letters and 32 hex digits.
fn sid(name: &str, prefix: &str, input: &str) -> Result<String, BuildError> {
    let ok = input.len() == 34
        && input.starts_with(prefix)
        && input[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(input.to_owned())
    } else {
        Err(BuildError::Setting(format!(
            "{name}: expected {prefix} followed by 32 hex digits"
        )))
    }
}

/// How requests authenticate: HTTP basic auth with the account SID and its
/// auth token, or with an API key's SID and secret (Twilio's recommendation
/// for production: a key can be revoked alone). Its `Debug` shows the SIDs,
/// never the token or secret.
#[derive(Clone)]
pub struct TwilioCredentials {
    account_sid: String,
    username: String,
    password: String,
}

impl TwilioCredentials {
    /// The account SID (`AC…`) and its auth token.
    ///
    /// # Errors
    /// [`BuildError::Setting`] for a malformed SID or an empty token.
    pub fn auth_token(account_sid: &str, auth_token: &str) -> Result<Self, BuildError> {
        let account_sid = sid("Twilio account SID", "AC", account_sid)?;
        if auth_token.is_empty() {
            return Err(BuildError::Setting("Twilio auth token: empty".into()));
        }
        Ok(Self {
            username: account_sid.clone(),
            account_sid,
            password: auth_token.to_owned(),
        })
    }

    /// The account SID (`AC…`), and an API key's SID (`SK…`) and secret.
    ///
    /// # Errors
    /// [`BuildError::Setting`] for a malformed SID or an empty secret.
    pub fn api_key(account_sid: &str, key_sid: &str, key_secret: &str) -> Result<Self, BuildError> {
        let account_sid = sid("Twilio account SID", "AC", account_sid)?;
        let username = sid("Twilio API key SID", "SK", key_sid)?;
        if key_secret.is_empty() {
            return Err(BuildError::Setting("Twilio API key secret: empty".into()));
        }
        Ok(Self {
            account_sid,
            username,
            password: key_secret.to_owned(),
        })
    }
}

impl fmt::Debug for TwilioCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioCredentials")
            .field("account_sid", &self.account_sid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Who the message is from: a number (or alphanumeric sender ID) sent as
/// `From`, or a Messaging Service sent as `MessagingServiceSid`.
///
/// ```
/// use referral_sms::TwilioFrom;
///
/// let from: TwilioFrom = "+15005550006".parse().unwrap();
/// assert_eq!(from, TwilioFrom::Number("+15005550006".into()));
/// let from: TwilioFrom = "MG0123456789abcdef0123456789abcdef".parse().unwrap();
/// assert!(matches!(from, TwilioFrom::MessagingService(_)));
/// assert!("MGnot-a-sid".parse::<TwilioFrom>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TwilioFrom {
    /// A Twilio number in E.164 form, or an alphanumeric sender ID.
    Number(String),
    /// A Messaging Service SID (`MG…`): Twilio picks the number.
    MessagingService(String),
}

impl FromStr for TwilioFrom {
    type Err = BuildError;

    fn from_str(input: &str) -> Result<Self, BuildError> {
        if input.starts_with("MG") {
            return sid("Twilio Messaging Service SID", "MG", input).map(Self::MessagingService);
        }
        let ok = !input.is_empty()
            && input.len() <= 32
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b' ');
        if ok {
            Ok(Self::Number(input.to_owned()))
        } else {
            Err(BuildError::Setting(
                "Twilio From: expected a number, a sender ID or a Messaging Service SID (MG…)"
                    .into(),
            ))
        }
    }
}

/// Sends codes with Twilio's Messages API:
/// `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json` with the form
/// fields `To`, `From` (or `MessagingServiceSid`) and `Body`, HTTP basic
/// auth. A `2xx` answer (Twilio answers `201`) means queued for delivery.
///
/// # Retries and double sends
/// Twilio's Messages API has no idempotency key, and a message created
/// twice is sent twice. So this sender retries only when Twilio did *not*
/// accept the message: the connection could not be made (no request went
/// out), or Twilio answered `429` or `503` (waiting out `Retry-After` within
/// the budget). A timeout or a connection that broke after the request was
/// sent, and any other `5xx`, end the send at once with an error: the
/// message may still arrive, but its code is revoked by the service, and the
/// user asks for another. That trades a rare lost SMS for never paying and
/// confusing the user with two.
///
/// # Errors mapped
/// `401`, `403`, `404` and `400` about the sender (`From`, Messaging
/// Service: codes 21212, 21606, 21659, 21703–21705) are
/// [`SmsError::Misconfigured`]; other `4xx` (e.g. 21211, an invalid `To`;
/// 21610, an unsubscribed recipient) are [`SmsError::Rejected`]; `429` and
/// `5xx` are [`SmsError::Unavailable`]; no answer in time is
/// [`SmsError::TimedOut`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use referral_core::SmsSender;
/// use referral_sms::{TwilioCredentials, TwilioSender};
///
/// let sender = TwilioSender::builder(
///     TwilioCredentials::auth_token("AC0123456789abcdef0123456789abcdef", "the-auth-token")?,
///     "+15005550006".parse()?,
/// )
/// .build()?;
/// let sender: Arc<dyn SmsSender> = Arc::new(sender);
/// # let _ = sender; Ok(()) }
/// ```
pub struct TwilioSender {
    transport: Transport,
    template: MessageTemplate,
    credentials: TwilioCredentials,
    from: TwilioFrom,
    url: reqwest::Url,
}

impl fmt::Debug for TwilioSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSender")
            .field("credentials", &self.credentials)
            .field("from", &self.from)
            .field("url", &self.url.as_str())
            .field("template", &self.template)
            .field("policy", &self.transport.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TwilioSender`]; see [`TwilioSender::builder`].
#[must_use]
pub struct TwilioSenderBuilder {
    credentials: TwilioCredentials,
    from: TwilioFrom,
    base_url: String,
    options: Options,
}

impl fmt::Debug for TwilioSenderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSenderBuilder")
            .field("credentials", &self.credentials)
            .field("from", &self.from)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TwilioSenderBuilder {
    /// The API's base URL (default [`TWILIO_BASE_URL`]): for tests, or a
    /// regional edge such as `https://api.dublin.ie1.twilio.com`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    option_methods!();

    /// The sender.
    ///
    /// # Errors
    /// [`BuildError`] for a malformed base URL, an unusable retry policy,
    /// or an HTTPS client that cannot be set up.
    pub fn build(self) -> Result<TwilioSender, BuildError> {
        let base = base_url("Twilio base URL", &self.base_url)?;
        let url = join(
            &base,
            &format!(
                "/2010-04-01/Accounts/{}/Messages.json",
                self.credentials.account_sid
            ),
        );
        // Not idempotent: see the type's docs.
        let (transport, template) = self.options.transport(PROVIDER, false)?;
        Ok(TwilioSender {
            transport,
            template,
            credentials: self.credentials,
            from: self.from,
            url,
        })
    }
}

impl TwilioSender {
    /// Starts a builder sending from `from` with `credentials`.
    pub fn builder(credentials: TwilioCredentials, from: TwilioFrom) -> TwilioSenderBuilder {
        TwilioSenderBuilder {
            credentials,
            from,
            base_url: TWILIO_BASE_URL.to_owned(),
            options: Options::default(),
        }
    }
}

/// Twilio's error body: `{"code": 21211, "message": "…", "status": 400, …}`.
#[derive(Deserialize)]
struct TwilioErrorBody {
    code: Option<u64>,
    message: Option<String>,
}

/// Twilio error codes about the sending side, not the recipient.
const SENDER_CODES: [u64; 6] = [21212, 21606, 21659, 21703, 21704, 21705];

fn classify(status: StatusCode, body: &[u8]) -> Verdict {
    if status.is_success() {
        return Verdict::Sent;
    }
    let parsed: Option<TwilioErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.code);
    let message = parsed
        .and_then(|b| b.message)
        .map(|m| m.chars().take(200).collect::<String>());
    let mut error = ProviderError::new(
        PROVIDER,
        message.unwrap_or_else(|| "the message was not accepted".to_owned()),
    )
    .status(status.as_u16());
    if let Some(code) = code {
        error = error.code(code.to_string());
    }
    match status.as_u16() {
        429 | 503 => Verdict::NotAccepted(error),
        500..=599 => Verdict::MaybeAccepted(error.maybe_accepted()),
        401 | 403 | 404 => Verdict::Refused(SmsError::Misconfigured(Box::new(error))),
        400 if code.is_some_and(|c| SENDER_CODES.contains(&c)) => {
            Verdict::Refused(SmsError::Misconfigured(Box::new(error)))
        }
        400..=499 => Verdict::Refused(SmsError::Rejected(Box::new(error))),
        // Redirects are not followed: the base URL is wrong.
        _ => Verdict::Refused(SmsError::Misconfigured(Box::new(error))),
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
        let text = self.template.render(sms);
        let to = sms.to.to_e164();
        let from = match &self.from {
            TwilioFrom::Number(n) => ("From", n.as_str()),
            TwilioFrom::MessagingService(s) => ("MessagingServiceSid", s.as_str()),
        };
        let form = [("To", to.as_str()), from, ("Body", text.as_str())];
        self.transport
            .send(
                |client| {
                    client
                        .post(self.url.clone())
                        .basic_auth(&self.credentials.username, Some(&self.credentials.password))
                        .form(&form)
                },
                classify,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn debug_hides_the_secret() {
        let c = TwilioCredentials::auth_token(SID, "s3cr3t-token").unwrap();
        let s = TwilioSender::builder(c, "+15005550006".parse().unwrap())
            .build()
            .unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr3t-token"), "{debug}");
        assert!(debug.contains(SID));
        let k = TwilioCredentials::api_key(SID, "SK0123456789abcdef0123456789abcdef", "k3y-secret")
            .unwrap();
        assert!(!format!("{k:?}").contains("k3y-secret"));
    }

    #[test]
    fn malformed_settings_are_refused() {
        assert!(TwilioCredentials::auth_token("AC123", "t").is_err());
        assert!(TwilioCredentials::auth_token(SID, "").is_err());
        assert!(TwilioCredentials::api_key(SID, SID, "x").is_err());
        assert!("".parse::<TwilioFrom>().is_err());
        assert!("+1 555/../x".parse::<TwilioFrom>().is_err());
        let c = TwilioCredentials::auth_token(SID, "t").unwrap();
        assert!(
            TwilioSender::builder(c, "+15005550006".parse().unwrap())
                .base_url("not a url")
                .build()
                .is_err()
        );
    }
}
