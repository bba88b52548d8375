//! [`SimulatedSms`]: the example servers' SMS sender.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use referral_core::sms::OtpSms;
use referral_core::{SmsError, SmsSender, StubSmsSender, ThreadRandom};

use crate::settings::SmsDelay;

/// Sends nothing: waits the configured delay on the async runtime (a timer,
/// never a blocked worker thread), records the message in a
/// [`StubSmsSender`] outbox when the dev outbox is on, and logs that an SMS
/// was simulated (never the code). A send taking longer than the timeout
/// fails with [`SmsError::TimedOut`].
#[derive(Debug)]
pub struct SimulatedSms {
    delay: SmsDelay,
    timeout: Duration,
    outbox: Option<Arc<StubSmsSender>>,
}

impl SimulatedSms {
    /// A sender waiting `delay`, giving up after `timeout`, keeping messages
    /// in `outbox` if given.
    #[must_use]
    pub fn new(delay: SmsDelay, timeout: Duration, outbox: Option<Arc<StubSmsSender>>) -> Self {
        Self {
            delay,
            timeout,
            outbox,
        }
    }
}

#[async_trait]
impl SmsSender for SimulatedSms {
    async fn send(&self, sms: &OtpSms) -> Result<(), SmsError> {
        let delay = self.delay.pick(&ThreadRandom);
        let send = async {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(outbox) = &self.outbox {
                outbox.send(sms).await?;
            }
            Ok::<(), SmsError>(())
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(())) => {
                tracing::info!(
                    to = %sms.to,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "SMS simulated (not delivered)"
                );
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SmsError::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use referral_core::{OtpCode, OtpLength, PhoneNumber};

    fn sms() -> OtpSms {
        OtpSms {
            to: "+79991234567".parse::<PhoneNumber>().unwrap(),
            code: OtpCode::parse("1234", OtpLength::default()).unwrap(),
            expires_in: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_then_records() {
        let outbox = Arc::new(StubSmsSender::new());
        let s = SimulatedSms::new(
            SmsDelay::new(1000, 1000).unwrap(),
            Duration::from_secs(5),
            Some(Arc::clone(&outbox)),
        );
        let start = tokio::time::Instant::now();
        s.send(&sms()).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(outbox.messages().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out() {
        let outbox = Arc::new(StubSmsSender::new());
        let s = SimulatedSms::new(
            SmsDelay::new(2000, 2000).unwrap(),
            Duration::from_millis(500),
            Some(Arc::clone(&outbox)),
        );
        assert!(matches!(s.send(&sms()).await, Err(SmsError::TimedOut)));
        assert!(outbox.messages().is_empty());
    }
}
