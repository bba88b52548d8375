//! [`ProviderError`], the source inside every [`SmsError`] a sender returns,
//! and [`BuildError`].

use std::fmt;

use referral_core::BoxError;
use referral_core::sms::SmsError;

/// What went wrong with a provider, as the source of an [`SmsError`].
///
/// Its `Display` names the provider, the HTTP status and the provider's own
/// error code and message where there is one; it never contains credentials,
/// the message text or the code (answer bodies are not copied into it,
/// except the provider's documented error fields).
#[derive(Debug)]
pub struct ProviderError {
    provider: &'static str,
    status: Option<u16>,
    code: Option<String>,
    detail: String,
    maybe_accepted: bool,
    timed_out: bool,
    source: Option<reqwest::Error>,
}

impl ProviderError {
    pub(crate) fn connect(provider: &'static str, source: reqwest::Error) -> Self {
        Self::new(provider, "could not connect").with_source(source)
    }

    pub(crate) fn timed_out(provider: &'static str, source: reqwest::Error) -> Self {
        let mut e = Self::new(provider, "no answer in time")
            .maybe_accepted()
            .with_source(source);
        e.timed_out = true;
        e
    }

    pub(crate) fn interrupted(provider: &'static str, source: reqwest::Error) -> Self {
        Self::new(provider, "the connection broke after the request was sent")
            .maybe_accepted()
            .with_source(source)
    }

    pub(crate) fn new(provider: &'static str, detail: impl Into<String>) -> Self {
        Self {
            provider,
            status: None,
            code: None,
            detail: detail.into(),
            maybe_accepted: false,
            timed_out: false,
            source: None,
        }
    }

    pub(crate) fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub(crate) fn maybe_accepted(mut self) -> Self {
        self.maybe_accepted = true;
        self
    }

    fn with_source(mut self, source: reqwest::Error) -> Self {
        self.source = Some(source);
        self
    }

    /// The provider: `"twilio"`, `"smsru"` or `"webhook"`.
    #[must_use]
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The HTTP status of the answer, if one came.
    #[must_use]
    pub fn http_status(&self) -> Option<u16> {
        self.status
    }

    /// The provider's own error code (Twilio's `code`, SMS.ru's
    /// `status_code`), if it gave one.
    #[must_use]
    pub fn provider_code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the provider may have accepted the message although the send
    /// failed (a timeout or broken connection after the request was sent, or
    /// an answer like `500` that does not say). The SMS may still arrive;
    /// the service has revoked its code by then.
    #[must_use]
    pub fn may_have_been_accepted(&self) -> bool {
        self.maybe_accepted
    }

    /// The [`SmsError`] this failure is, for a send that stops here.
    pub(crate) fn into_sms_error(self) -> SmsError {
        if self.timed_out {
            SmsError::TimedOut
        } else {
            SmsError::Unavailable(Box::new(self))
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.provider, self.detail)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status}")?;
            if let Some(code) = &self.code {
                write!(f, ", code {code}")?;
            }
            f.write_str(")")?;
        } else if let Some(code) = &self.code {
            write!(f, " (code {code})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Why a sender could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is malformed; the message names it (never its value when it
    /// is a secret).
    #[error("invalid {0}")]
    Setting(String),
    /// The retry policy cannot work.
    #[error("invalid retry policy: {0}")]
    Policy(&'static str),
    /// The HTTPS client could not be set up (e.g. no platform certificate
    /// store).
    #[error("the HTTPS client could not be set up")]
    Tls(#[source] BoxError),
}
