//! Real SMS senders for [`referral_core`]: [Twilio](TwilioSender),
//! [SMS.ru](SmsRuSender) and a [signed JSON webhook](WebhookSender) for
//! gateways not shipped here. Each implements [`SmsSender`], so the service
//! treats it like any other sender: when a send fails, the service revokes
//! the code it stored, and no usable code is left behind.
//!
//! Every sender:
//! - gives each request a timeout, and the whole send a time budget
//!   ([`RetryPolicy`]);
//! - retries a bounded number of times, with exponential backoff and jitter,
//!   only on failures that may pass: no connection, `429`, `5xx` and the
//!   provider's own "try later" answers; never on another `4xx`. A `Retry-After` is
//!   waited out when it fits in the budget, and ends the send otherwise;
//! - never sends a second SMS by retrying a request the provider may have
//!   accepted, unless the provider deduplicates it (the webhook's
//!   `Idempotency-Key`); Twilio and SMS.ru do not, so they retry only
//!   answers that say "not accepted" (see each sender's docs);
//! - maps failures to [`SmsError`]: [`Rejected`](SmsError::Rejected) for this
//!   message, [`Misconfigured`](SmsError::Misconfigured) for the account or
//!   settings, [`Unavailable`](SmsError::Unavailable) and
//!   [`TimedOut`](SmsError::TimedOut) for the provider's trouble, with a
//!   [`ProviderError`] inside saying which provider, status and code;
//! - keeps credentials out of `Debug`, errors and logs, and never logs the
//!   message text (it carries the code). Retries and failures are logged with
//!   [`tracing`] at `WARN` (provider, attempt, wait, the error with its
//!   status), a send accepted after a retry at `INFO`, nothing else;
//! - speaks HTTPS with rustls (reqwest's default provider, the platform's
//!   certificate store); no OpenSSL.
//!
//! The text comes from a [`MessageTemplate`] (`{code}`, `{minutes}`);
//! the default is the core's English text.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use referral_core::{ReferralService, SmsSender};
//! use referral_memory::MemoryStore;
//! use referral_sms::{MessageTemplate, RetryPolicy, WebhookSender};
//!
//! let sms: Arc<dyn SmsSender> = Arc::new(
//!     WebhookSender::builder("https://sms-gateway.internal/send", b"32 or more random bytes...")?
//!         .template(MessageTemplate::parse("{code} is your code ({minutes} min)")?)
//!         .retry_policy(RetryPolicy::default())
//!         .build()?,
//! );
//! let service = ReferralService::builder(Arc::new(MemoryStore::new()), sms).build()?;
//! # let _ = service; Ok(()) }
//! ```

mod error;
mod options;
mod smsru;
mod template;
mod transport;
mod twilio;
mod webhook;

pub use error::{BuildError, ProviderError};
pub use referral_core::sms::{SmsError, SmsSender};
pub use smsru::{SMSRU_BASE_URL, SmsRuSender, SmsRuSenderBuilder};
pub use template::{MessageTemplate, TemplateError};
pub use transport::RetryPolicy;
pub use twilio::{
    TWILIO_BASE_URL, TwilioCredentials, TwilioFrom, TwilioSender, TwilioSenderBuilder,
};
pub use webhook::{
    IDEMPOTENCY_HEADER, SIGNATURE_HEADER, WebhookSender, WebhookSenderBuilder, webhook_signature,
};

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
