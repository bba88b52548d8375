//! The SMS port, and a stub sender that keeps what it "sent".

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::clock::{Clock, SystemClock};
use crate::error::BoxError;
use crate::otp::OtpCode;
use crate::phone::PhoneNumber;

/// A login code to deliver.
#[derive(Debug, Clone)]
pub struct OtpSms {
    /// The recipient.
    pub to: PhoneNumber,
    /// The code (its `Debug` is redacted).
    pub code: OtpCode,
    /// How long the code stays valid.
    pub expires_in: Duration,
}

impl OtpSms {
    /// The message text: `"Your login code: 1234. It expires in 5 minutes."`.
    #[must_use]
    pub fn text(&self) -> String {
        let minutes = self.expires_in.as_secs().div_ceil(60).max(1);
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        format!(
            "Your login code: {}. It expires in {minutes} {unit}.",
            self.code.expose()
        )
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmsError {
    /// The provider cannot be reached or is overloaded; retrying later may work.
    #[error("the SMS provider is unavailable")]
    Unavailable(#[source] BoxError),
    /// The provider refused this message (bad number, blocked destination…).
    #[error("the SMS provider refused the message")]
    Rejected(#[source] BoxError),
    /// No answer within the sender's time limit.
    #[error("the SMS provider did not answer in time")]
    TimedOut,
    /// The provider refused the sender's account or settings (bad
    /// credentials, no balance, an unapproved sender name…): no message goes
    /// through until an operator fixes it.
    #[error("the SMS provider refused the sender's account or settings")]
    Misconfigured(#[source] BoxError),
}

impl SmsError {
    /// Whether retrying later may succeed (without an operator's help).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Rejected(_) | Self::Misconfigured(_))
    }

    /// Whether retrying the same message cannot succeed.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

/// Delivers login codes. Implement it for your provider; the service treats
/// every sender alike.
///
/// ```
/// use async_trait::async_trait;
/// use referral_core::sms::{OtpSms, SmsError, SmsSender};
///
/// #[derive(Debug)]
/// struct LogSender;
///
/// #[async_trait]
/// impl SmsSender for LogSender {
///     async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
///         // A real sender calls its provider's API with `sms.text()`.
///         let _ = (sms.to, sms.text());
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait SmsSender: Send + Sync + fmt::Debug + 'static {
    /// Sends `sms`. Called after the code is stored; an error makes the
    /// service revoke the code and not charge the send.
    ///
    /// # Errors
    /// [`SmsError`] when the message was not accepted for delivery.
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError>;
}

#[async_trait]
impl<T: SmsSender + ?Sized> SmsSender for Arc<T> {
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
        (**self).send(sms).await
    }
}

#[async_trait]
impl<T: SmsSender + ?Sized> SmsSender for Box<T> {
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
        (**self).send(sms).await
    }
}

/// A message the [`StubSmsSender`] accepted.
#[derive(Debug, Clone)]
pub struct SentSms {
    /// The recipient.
    pub to: PhoneNumber,
    /// The code sent.
    pub code: OtpCode,
    /// The full text.
    pub text: String,
    /// When it was accepted.
    pub sent_at: DateTime<Utc>,
}

/// A sender that delivers nothing and keeps an outbox instead: for tests,
/// development servers and demos. It can be told to fail.
///
/// It keeps the latest message per phone, and the last
/// [`StubSmsSender::LOG_LEN`] messages in order.
///
/// ```
/// # tokio_test_shim::block_on(async {
/// use std::time::Duration;
/// use referral_core::sms::{OtpSms, SmsSender, StubSmsSender};
/// use referral_core::{OtpCode, OtpLength, PhoneNumber};
///
/// let stub = StubSmsSender::new();
/// let to: PhoneNumber = "+79991234567".parse().unwrap();
/// let code = OtpCode::parse("1234", OtpLength::default()).unwrap();
/// stub.send(&OtpSms { to, code, expires_in: Duration::from_secs(300) }).await.unwrap();
/// assert_eq!(stub.latest(&to).unwrap().code.expose(), "1234");
///
/// stub.set_failing(true);
/// let code = OtpCode::parse("5678", OtpLength::default()).unwrap();
/// assert!(stub.send(&OtpSms { to, code, expires_in: Duration::from_secs(300) }).await.is_err());
/// # });
/// # mod tokio_test_shim { pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) } }
/// ```
#[derive(Debug)]
pub struct StubSmsSender {
    clock: Arc<dyn Clock>,
    failing: AtomicBool,
    outbox: Mutex<Outbox>,
}

#[derive(Debug, Default)]
struct Outbox {
    latest: HashMap<PhoneNumber, SentSms>,
    log: VecDeque<SentSms>,
}

impl StubSmsSender {
    /// How many recent messages [`StubSmsSender::messages`] keeps.
    pub const LOG_LEN: usize = 1024;

    /// A working stub stamping messages with the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A working stub stamping messages with `clock`.
    #[must_use]
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            failing: AtomicBool::new(false),
            outbox: Mutex::new(Outbox::default()),
        }
    }

    /// A stub whose every send fails with [`SmsError::Unavailable`].
    #[must_use]
    pub fn failing() -> Self {
        let stub = Self::new();
        stub.set_failing(true);
        stub
    }

    /// From now on, fail every send (`true`) or accept it (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The latest message accepted for `to`.
    #[must_use]
    pub fn latest(&self, to: &PhoneNumber) -> Option<SentSms> {
        self.lock().latest.get(to).cloned()
    }

    /// The most recent messages accepted, oldest first.
    #[must_use]
    pub fn messages(&self) -> Vec<SentSms> {
        self.lock().log.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for StubSmsSender {
    fn default() -> Self {
        Self::new()
    }
}

/// The error [`StubSmsSender`] fails with.
#[derive(Debug, thiserror::Error)]
#[error("the stub SMS sender was told to fail")]
pub struct StubFailure;

#[async_trait]
impl SmsSender for StubSmsSender {
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SmsError::Unavailable(Box::new(StubFailure)));
        }
        let sent = SentSms {
            to: sms.to,
            code: sms.code.clone(),
            text: sms.text(),
            sent_at: self.clock.now(),
        };
        let mut outbox = self.lock();
        if outbox.log.len() == Self::LOG_LEN {
            outbox.log.pop_front();
        }
        outbox.log.push_back(sent.clone());
        outbox.latest.insert(sms.to, sent);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otp::OtpLength;

    #[test]
    fn text_names_the_code_and_the_lifetime() {
        let sms = OtpSms {
            to: "+79991234567".parse().unwrap(),
            code: OtpCode::parse("0420", OtpLength::default()).unwrap(),
            expires_in: Duration::from_secs(300),
        };
        assert_eq!(
            sms.text(),
            "Your login code: 0420. It expires in 5 minutes."
        );
        assert!(!format!("{sms:?}").contains("0420"));
    }

    #[tokio::test]
    async fn the_log_is_bounded() {
        let stub = StubSmsSender::new();
        let to: PhoneNumber = "+79991234567".parse().unwrap();
        let code = OtpCode::parse("1234", OtpLength::default()).unwrap();
        let sms = OtpSms {
            to,
            code,
            expires_in: Duration::from_secs(60),
        };
        for _ in 0..StubSmsSender::LOG_LEN + 5 {
            stub.send(&sms).await.unwrap();
        }
        assert_eq!(stub.messages().len(), StubSmsSender::LOG_LEN);
        assert!(SmsError::TimedOut.is_transient());
        assert!(SmsError::Rejected(Box::new(StubFailure)).is_permanent());
        assert!(SmsError::Misconfigured(Box::new(StubFailure)).is_permanent());
    }
}
