//! [`SmsSettings`]: which SMS provider the example servers send through
//! (API.md's `REFERRAL_SMS_PROVIDER` and the provider settings), and the
//! test phones.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::settings::{Settings, SettingsError};
use crate::sms::SimulatedSms;
use clap::{Args, ValueEnum};
use referral_core::{SmsSender, StubSmsSender, TestPhones};
use referral_sms::{
    BuildError, RetryPolicy, SmsRuSender, TwilioCredentials, TwilioFrom, TwilioSender,
    WebhookSender,
};

/// Where login codes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[non_exhaustive]
pub enum SmsProvider {
    /// Nothing is sent: the simulated delay, and the dev outbox when it is on.
    Simulated,
    /// Twilio's Messages API.
    Twilio,
    /// SMS.ru.
    Smsru,
    /// A signed JSON `POST` to `REFERRAL_SMS_WEBHOOK_URL`.
    Webhook,
}

/// The SMS settings (API.md). `Debug` shows which are set, never a secret.
#[derive(Clone, Args)]
#[non_exhaustive]
pub struct SmsSettings {
    /// `simulated` (the delay and the dev outbox), `twilio`, `smsru` or
    /// `webhook`; with a real provider the dev outbox is off, whatever
    /// REFERRAL_DEV_OUTBOX says, and every setting the provider needs must be
    /// set.
    #[arg(
        long,
        env = "REFERRAL_SMS_PROVIDER",
        value_enum,
        default_value = "simulated"
    )]
    pub sms_provider: SmsProvider,

    /// Twilio account SID (`AC…`).
    #[arg(long, env = "REFERRAL_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,

    /// Twilio auth token.
    #[arg(long, env = "REFERRAL_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,

    /// Twilio sender: a number (E.164) or sender ID, or a Messaging Service
    /// SID starting `MG`.
    #[arg(long, env = "REFERRAL_TWILIO_FROM")]
    pub twilio_from: Option<String>,

    /// Twilio's API base URL (tests, regional endpoints).
    #[arg(long, env = "REFERRAL_TWILIO_BASE_URL", default_value = referral_sms::TWILIO_BASE_URL)]
    pub twilio_base_url: String,

    /// SMS.ru `api_id`.
    #[arg(long, env = "REFERRAL_SMSRU_API_ID", hide_env_values = true)]
    pub smsru_api_id: Option<String>,

    /// SMS.ru's API base URL.
    #[arg(long, env = "REFERRAL_SMSRU_BASE_URL", default_value = referral_sms::SMSRU_BASE_URL)]
    pub smsru_base_url: String,

    /// The generic sender's URL: it receives a `POST` of
    /// `{"phone", "text"}` as JSON.
    #[arg(long, env = "REFERRAL_SMS_WEBHOOK_URL", hide_env_values = true)]
    pub sms_webhook_url: Option<String>,

    /// The webhook's HMAC secret: the request carries
    /// `X-Signature: sha256=<hex HMAC-SHA256 of the body under the secret>`.
    #[arg(long, env = "REFERRAL_SMS_WEBHOOK_SECRET", hide_env_values = true)]
    pub sms_webhook_secret: Option<String>,

    /// `+phone:code` pairs, comma-separated (e.g. for app-store reviewers):
    /// these phones get that fixed code (of REFERRAL_OTP_LENGTH digits) and
    /// no SMS is sent; every use is logged at WARN.
    #[arg(long, env = "REFERRAL_TEST_PHONES", hide_env_values = true)]
    pub test_phones: Option<TestPhones>,
}

impl fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "<set>");
        f.debug_struct("SmsSettings")
            .field("sms_provider", &self.sms_provider)
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_auth_token", &set(&self.twilio_auth_token))
            .field("twilio_from", &self.twilio_from)
            .field("twilio_base_url", &self.twilio_base_url)
            .field("smsru_api_id", &set(&self.smsru_api_id))
            .field("smsru_base_url", &self.smsru_base_url)
            .field("sms_webhook_url", &set(&self.sms_webhook_url))
            .field("sms_webhook_secret", &set(&self.sms_webhook_secret))
            .field(
                "test_phones",
                &self.test_phones.as_ref().map(TestPhones::len),
            )
            .finish()
    }
}

/// A real provider that cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmsSettingsError {
    /// A setting the provider needs is unset (or empty).
    #[error("{setting} must be set when REFERRAL_SMS_PROVIDER={provider}")]
    Missing {
        /// The environment variable.
        setting: &'static str,
        /// The provider chosen.
        provider: &'static str,
    },
    /// A setting is malformed (the message names it, never a secret's
    /// value).
    #[error("bad SMS provider settings: {0}")]
    Invalid(#[source] BuildError),
}

fn required<'a>(
    value: &'a Option<String>,
    setting: &'static str,
    provider: &'static str,
) -> Result<&'a str, SmsSettingsError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(SmsSettingsError::Missing { setting, provider })
}

impl SmsSettings {
    /// Whether a real provider is configured (the dev outbox is off then).
    #[must_use]
    pub fn is_real(&self) -> bool {
        self.sms_provider != SmsProvider::Simulated
    }

    /// The test phones (none when unset).
    #[must_use]
    pub fn test_phones(&self) -> TestPhones {
        self.test_phones.clone().unwrap_or_default()
    }

    /// The real provider's sender, or `None` for `simulated`. A send,
    /// retries included, takes at most `timeout`.
    ///
    /// # Errors
    /// [`SmsSettingsError`] naming the first missing or malformed setting.
    pub fn real_sender(
        &self,
        timeout: Duration,
    ) -> Result<Option<Arc<dyn SmsSender>>, SmsSettingsError> {
        let mut policy = RetryPolicy::default();
        policy.budget = timeout;
        policy.request_timeout = policy.request_timeout.min(timeout);
        policy.connect_timeout = policy.connect_timeout.min(timeout);
        let sender: Arc<dyn SmsSender> = match self.sms_provider {
            SmsProvider::Simulated => return Ok(None),
            SmsProvider::Twilio => {
                const P: &str = "twilio";
                let sid = required(&self.twilio_account_sid, "REFERRAL_TWILIO_ACCOUNT_SID", P)?;
                let token = required(&self.twilio_auth_token, "REFERRAL_TWILIO_AUTH_TOKEN", P)?;
                let from = required(&self.twilio_from, "REFERRAL_TWILIO_FROM", P)?;
                let credentials =
                    TwilioCredentials::auth_token(sid, token).map_err(SmsSettingsError::Invalid)?;
                let from: TwilioFrom = from.parse().map_err(SmsSettingsError::Invalid)?;
                Arc::new(
                    TwilioSender::builder(credentials, from)
                        .base_url(self.twilio_base_url.clone())
                        .retry_policy(policy)
                        .build()
                        .map_err(SmsSettingsError::Invalid)?,
                )
            }
            SmsProvider::Smsru => {
                let api_id = required(&self.smsru_api_id, "REFERRAL_SMSRU_API_ID", "smsru")?;
                Arc::new(
                    SmsRuSender::builder(api_id)
                        .map_err(SmsSettingsError::Invalid)?
                        .base_url(self.smsru_base_url.clone())
                        .retry_policy(policy)
                        .build()
                        .map_err(SmsSettingsError::Invalid)?,
                )
            }
            SmsProvider::Webhook => {
                const P: &str = "webhook";
                let url = required(&self.sms_webhook_url, "REFERRAL_SMS_WEBHOOK_URL", P)?;
                let secret = required(&self.sms_webhook_secret, "REFERRAL_SMS_WEBHOOK_SECRET", P)?;
                Arc::new(
                    WebhookSender::builder(url, secret.as_bytes())
                        .map_err(SmsSettingsError::Invalid)?
                        .retry_policy(policy)
                        .build()
                        .map_err(SmsSettingsError::Invalid)?,
                )
            }
        };
        Ok(Some(sender))
    }
}

/// The sender `settings` choose, and the dev outbox: the real provider
/// with no outbox, or the simulated sender with the outbox when
/// `REFERRAL_DEV_OUTBOX` is on.
///
/// # Errors
/// [`SettingsError::Sms`] naming a missing or malformed provider setting.
#[allow(clippy::type_complexity)]
pub fn sms_sender(
    settings: &Settings,
) -> Result<(Arc<dyn SmsSender>, Option<Arc<StubSmsSender>>), SettingsError> {
    if let Some(sender) = settings.sms.real_sender(settings.sms_timeout())? {
        tracing::info!(
            provider = ?settings.sms.sms_provider,
            dev_outbox = false,
            "sending SMS through a real provider; the dev outbox is off"
        );
        return Ok((sender, None));
    }
    if settings.sms_delay_ms.max() >= settings.sms_timeout() {
        tracing::warn!(
            delay = %settings.sms_delay_ms,
            timeout_ms = settings.sms_timeout_ms,
            "the simulated SMS delay reaches the SMS timeout: some or all sends will fail"
        );
    }
    let outbox = settings.dev_outbox.then(|| Arc::new(StubSmsSender::new()));
    let sms = Arc::new(SimulatedSms::new(
        settings.sms_delay_ms,
        settings.sms_timeout(),
        outbox.clone(),
    ));
    Ok((sms, outbox))
}
