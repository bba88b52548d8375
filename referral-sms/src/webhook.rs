//! [`WebhookSender`]: a signed JSON `POST` to a gateway of your own.

use std::fmt;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use referral_core::sms::{OtpSms, SmsError, SmsSender};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use sha2::Sha256;

use crate::error::{BuildError, ProviderError};
use crate::options::{Options, base_url, option_methods};
use crate::template::MessageTemplate;
use crate::transport::{Transport, Verdict};

pub(crate) const PROVIDER: &str = "webhook";

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Signature";

/// The header carrying the send's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// `sha256=<hex HMAC-SHA256 of body under secret>`: the
/// [`SIGNATURE_HEADER`] value, for receivers to recompute (compare it in
/// constant time).
///
/// ```
/// let sig = referral_sms::webhook_signature(b"secret", br#"{"phone":"+1","text":"x"}"#);
/// assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
/// ```
#[must_use]
pub fn webhook_signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    out
}

/// Sends codes to a gateway you run: `POST {url}` of
/// `{"phone": "+79991234567", "text": "…"}` (`Content-Type:
/// application/json`), with `X-Signature: sha256=<hex HMAC-SHA256 of the
/// exact body bytes under the secret>` and an `Idempotency-Key` (a UUID, the
/// same on every retry of one send, new for each send). Any `2xx` answer
/// means sent.
///
/// # Retries and double sends
/// The receiver MUST treat a repeated `Idempotency-Key` as the same message
/// (send it at most once, answer `2xx` again). On that contract this sender
/// retries every failure that may be temporary: no connection, a timeout, a
/// connection broken after the request was sent, `429` and any `5xx`, within
/// the policy's attempts and budget, waiting out `Retry-After`. `401` and
/// `403` (a signature the gateway refuses) are [`SmsError::Misconfigured`];
/// other `4xx` are [`SmsError::Rejected`], never retried.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use referral_sms::WebhookSender;
///
/// let sender = WebhookSender::builder("https://sms-gateway.internal/send", b"a long random secret")?
///     .build()?;
/// # let _ = sender; Ok(()) }
/// ```
pub struct WebhookSender {
    transport: Transport,
    template: MessageTemplate,
    url: reqwest::Url,
    secret: Vec<u8>,
}

/// The URL without path or query, which may carry a token.
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("origin", &origin(&self.url))
            .field("secret", &"<redacted>")
            .field("template", &self.template)
            .field("policy", &self.transport.policy)
            .finish_non_exhaustive()
    }
}

/// Builds a [`WebhookSender`]; see [`WebhookSender::builder`].
#[must_use]
pub struct WebhookSenderBuilder {
    url: reqwest::Url,
    secret: Vec<u8>,
    options: Options,
}

impl fmt::Debug for WebhookSenderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSenderBuilder")
            .field("origin", &origin(&self.url))
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl WebhookSenderBuilder {
    option_methods!();

    /// The sender.
    ///
    /// # Errors
    /// [`BuildError`] for an unusable retry policy or an HTTPS client that
    /// cannot be set up.
    pub fn build(self) -> Result<WebhookSender, BuildError> {
        let (transport, template) = self.options.transport(PROVIDER, true)?;
        Ok(WebhookSender {
            transport,
            template,
            url: self.url,
            secret: self.secret,
        })
    }
}

impl WebhookSender {
    /// Starts a builder posting to `url`, signing with `secret` (use at
    /// least 32 random bytes).
    ///
    /// # Errors
    /// [`BuildError::Setting`] for a URL that is not `http(s)` or an empty
    /// secret.
    pub fn builder(url: &str, secret: &[u8]) -> Result<WebhookSenderBuilder, BuildError> {
        let url = reqwest::Url::parse(url)
            .map_err(|_| BuildError::Setting("webhook URL: not a URL".into()))?;
        // The same checks as a base URL, except that a query is allowed.
        let mut bare = url.clone();
        bare.set_query(None);
        base_url("webhook URL", bare.as_str())?;
        if secret.is_empty() {
            return Err(BuildError::Setting("webhook secret: empty".into()));
        }
        Ok(WebhookSenderBuilder {
            url,
            secret: secret.to_vec(),
            options: Options::default(),
        })
    }
}

fn classify(status: StatusCode, _body: &[u8]) -> Verdict {
    if status.is_success() {
        return Verdict::Sent;
    }
    // The answer body is not copied into the error: a gateway may echo the
    // message, and the message carries the code.
    let error =
        ProviderError::new(PROVIDER, "the message was not accepted").status(status.as_u16());
    match status.as_u16() {
        429 | 503 => Verdict::NotAccepted(error),
        500..=599 => Verdict::MaybeAccepted(error.maybe_accepted()),
        401 | 403 => Verdict::Refused(SmsError::Misconfigured(Box::new(error))),
        400..=499 => Verdict::Refused(SmsError::Rejected(Box::new(error))),
        _ => Verdict::Refused(SmsError::Misconfigured(Box::new(error))),
    }
}

#[async_trait]
impl SmsSender for WebhookSender {
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
        let body = serde_json::to_vec(&serde_json::json!({
            "phone": sms.to.to_e164(),
            "text": self.template.render(sms),
        }))
        .map_err(|e| SmsError::Rejected(Box::new(e)))?;
        let signature = webhook_signature(&self.secret, &body);
        let mut key = [0u8; 16];
        self.transport.random.fill_bytes(&mut key);
        let key = uuid::Builder::from_random_bytes(key)
            .into_uuid()
            .to_string();
        self.transport
            .send(
                |client| {
                    client
                        .post(self.url.clone())
                        .header(CONTENT_TYPE, "application/json")
                        .header(SIGNATURE_HEADER, &signature)
                        .header(IDEMPOTENCY_HEADER, &key)
                        .body(body.clone())
                },
                classify,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            webhook_signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn debug_hides_the_secret_and_the_path() {
        let s = WebhookSender::builder("https://gw.example/hook/t0ken?k=v", b"hush-hush")
            .unwrap()
            .build()
            .unwrap();
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("hush-hush") && !debug.contains("t0ken"),
            "{debug}"
        );
        assert!(WebhookSender::builder("https://gw.example/", b"").is_err());
        assert!(WebhookSender::builder("file:///etc/passwd", b"k").is_err());
    }
}
