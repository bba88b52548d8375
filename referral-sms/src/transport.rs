//! What every sender shares: the HTTP client, the retry policy and the loop
//! that applies it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use referral_core::sms::SmsError;
use referral_core::{Clock, Random};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use tokio::time::Instant;

use crate::error::{BuildError, ProviderError};

/// How a sender times out and retries. `RetryPolicy::default()`: 3 attempts,
/// 5 s per request, 2 s to connect, 10 s in all, backoff from 200 ms doubling
/// up to 2 s (with jitter).
///
/// Which failures are retried depends on the provider (see each sender's
/// docs): connection failures before the request was sent, `429` and other
/// answers that say the message was *not* accepted, always; failures after
/// the request was sent only where the provider lets us avoid a second SMS.
/// A `Retry-After` answer is waited out when it fits in the
/// [`budget`](Self::budget); when it does not, the send fails at once.
///
/// ```
/// use std::time::Duration;
/// use referral_sms::RetryPolicy;
///
/// let mut policy = RetryPolicy::default();
/// policy.max_attempts = 2;
/// policy.budget = Duration::from_secs(4);
/// assert_eq!(policy.request_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The longest one request may take, from connecting to the last byte of
    /// the answer.
    pub request_timeout: Duration,
    /// The longest the TCP and TLS connection may take (used when the sender
    /// builds its own client). A connection that times out carried no
    /// request, so it is always safe to retry.
    pub connect_timeout: Duration,
    /// The longest a whole send may take, retries and waits included: keep it
    /// below the host's request timeout.
    pub budget: Duration,
    /// The wait before the first retry; it doubles for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts (a `Retry-After` may ask for
    /// more, up to the budget).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            budget: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.max_attempts == 0 {
            return Err(BuildError::Policy("max_attempts must be at least 1"));
        }
        for (name, d) in [
            ("request_timeout must be positive", self.request_timeout),
            ("connect_timeout must be positive", self.connect_timeout),
            ("budget must be positive", self.budget),
        ] {
            if d.is_zero() {
                return Err(BuildError::Policy(name));
            }
        }
        Ok(())
    }

    /// The wait before retry number `retry` (1 = the first retry), before
    /// jitter.
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The client every sender builds unless given one: rustls (reqwest's
/// default provider, the platform's certificate roots), no redirects (a
/// redirected POST could send twice), the policy's connect timeout.
pub(crate) fn build_client(policy: &RetryPolicy) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(policy.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("referral-sms/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| BuildError::Tls(Box::new(e.without_url())))
}

/// What one answer means.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Accepted for delivery.
    Sent,
    /// Refused for good: retrying the same message cannot help.
    Refused(SmsError),
    /// Definitely not accepted (e.g. `429`): safe to retry with any provider.
    NotAccepted(ProviderError),
    /// The provider may have accepted it (e.g. `500`, or the connection
    /// broke after the request was sent): retried only where a retry cannot
    /// send a second SMS.
    MaybeAccepted(ProviderError),
}

/// The largest answer body read (providers answer a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// Applies a [`RetryPolicy`] to one provider's requests.
pub(crate) struct Transport {
    pub(crate) client: reqwest::Client,
    pub(crate) policy: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
    pub(crate) provider: &'static str,
    /// Whether a retry after a possibly accepted request cannot send a
    /// second SMS (the provider deduplicates).
    pub(crate) idempotent: bool,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("policy", &self.policy)
            .field("idempotent", &self.idempotent)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Sends the request `build` makes until `classify` says it was sent or
    /// refused, or the policy says stop. `build` is called once per attempt
    /// and must make the same request each time.
    pub(crate) async fn send<B, C>(&self, build: B, classify: C) -> Result<(), SmsError>
    where
        B: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        C: Fn(StatusCode, &[u8]) -> Verdict,
    {
        let started = Instant::now();
        let deadline = started + self.policy.budget;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let now = Instant::now();
            let timeout = self
                .policy
                .request_timeout
                .min(deadline.saturating_duration_since(now));
            let (verdict, retry_after) = match build(&self.client).timeout(timeout).send().await {
                Ok(response) => self.answer(response, &classify).await,
                Err(e) => (self.transport_failure(e), None),
            };
            let error = match verdict {
                Verdict::Sent => {
                    if attempt > 1 {
                        tracing::info!(
                            provider = self.provider,
                            attempt,
                            "SMS accepted after a retry"
                        );
                    }
                    return Ok(());
                }
                Verdict::Refused(e) => {
                    tracing::warn!(provider = self.provider, attempt, error = %Chain(&e), "SMS refused by the provider");
                    return Err(e);
                }
                Verdict::NotAccepted(e) => e,
                Verdict::MaybeAccepted(e) if self.idempotent => e,
                Verdict::MaybeAccepted(e) => {
                    tracing::warn!(
                        provider = self.provider,
                        attempt,
                        error = %e,
                        "SMS send failed after the request was sent; not retried (the provider may have accepted it and cannot deduplicate)"
                    );
                    return Err(e.into_sms_error());
                }
            };
            if attempt >= self.policy.max_attempts {
                tracing::warn!(provider = self.provider, attempt, error = %error, "SMS send failed; no attempts left");
                return Err(error.into_sms_error());
            }
            let wait = self.wait(attempt, retry_after);
            if Instant::now() + wait >= deadline {
                tracing::warn!(
                    provider = self.provider,
                    attempt,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    error = %error,
                    "SMS send failed; the next attempt would not fit in the time budget"
                );
                return Err(error.into_sms_error());
            }
            tracing::warn!(
                provider = self.provider,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "SMS send failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Reads an answer (at most [`MAX_BODY`] bytes) and classifies it.
    async fn answer<C>(&self, mut response: Response, classify: &C) -> (Verdict, Option<Duration>)
    where
        C: Fn(StatusCode, &[u8]) -> Verdict,
    {
        let status = response.status();
        let retry_after = self.retry_after(response.headers());
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() == MAX_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                // The body broke off (timeout, dropped connection): the
                // status decides with what was read; a provider that needs
                // the body (SMS.ru) finds it unreadable: maybe accepted.
                Err(_) => break,
            }
        }
        (classify(status, &body), retry_after)
    }

    fn transport_failure(&self, e: reqwest::Error) -> Verdict {
        let e = e.without_url();
        if e.is_connect() {
            // No connection, so no request: safe to retry anywhere.
            return Verdict::NotAccepted(ProviderError::connect(self.provider, e));
        }
        if e.is_timeout() {
            return Verdict::MaybeAccepted(ProviderError::timed_out(self.provider, e));
        }
        Verdict::MaybeAccepted(ProviderError::interrupted(self.provider, e))
    }

    /// The wait before the next attempt: the backoff with jitter (half to
    /// all of it), or the provider's `Retry-After` when longer.
    fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.policy.backoff(attempt);
        let half = backoff / 2;
        let millis = u32::try_from(half.as_millis()).unwrap_or(u32::MAX);
        let jitter = if millis == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(u64::from(self.random.below(millis.saturating_add(1))))
        };
        let wait = half + jitter;
        retry_after.map_or(wait, |r| r.max(wait))
    }

    /// `Retry-After` as seconds or an HTTP date, relative to the clock.
    fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        let at: DateTime<Utc> = httpdate::parse_http_date(value).ok()?.into();
        Some((at - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
    }
}

/// An error and its sources, `: `-separated, for one log line.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(5), Duration::from_secs(2));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn bad_policies_are_refused() {
        assert!(RetryPolicy::default().validate().is_ok());
        let p = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(p.validate().is_err());
        let p = RetryPolicy {
            budget: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert!(p.validate().is_err());
    }
}
