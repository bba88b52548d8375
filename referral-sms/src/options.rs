//! The settings every sender's builder shares.

use std::sync::Arc;

use referral_core::{Clock, Random, SystemClock, ThreadRandom};

use crate::error::BuildError;
use crate::template::MessageTemplate;
use crate::transport::{RetryPolicy, Transport, build_client};

/// The shared part of each builder.
pub(crate) struct Options {
    pub(crate) template: MessageTemplate,
    pub(crate) policy: RetryPolicy,
    pub(crate) client: Option<reqwest::Client>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            template: MessageTemplate::default(),
            policy: RetryPolicy::default(),
            client: None,
            clock: Arc::new(SystemClock),
            random: Arc::new(ThreadRandom),
        }
    }
}

impl Options {
    pub(crate) fn transport(
        self,
        provider: &'static str,
        idempotent: bool,
    ) -> Result<(Transport, MessageTemplate), BuildError> {
        self.policy.validate()?;
        let client = match self.client {
            Some(client) => client,
            None => build_client(&self.policy)?,
        };
        Ok((
            Transport {
                client,
                policy: self.policy,
                clock: self.clock,
                random: self.random,
                provider,
                idempotent,
            },
            self.template,
        ))
    }
}

/// Parses a base URL setting: `http` or `https`, no query or fragment.
pub(crate) fn base_url(name: &str, input: &str) -> Result<reqwest::Url, BuildError> {
    let url = reqwest::Url::parse(input)
        .map_err(|_| BuildError::Setting(format!("{name}: not a URL")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(BuildError::Setting(format!("{name}: not an http(s) URL")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(BuildError::Setting(format!(
            "{name}: a base URL takes no query or fragment"
        )));
    }
    Ok(url)
}

/// `base` with `path` (starting `/`) appended below its own path.
pub(crate) fn join(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

/// The builder methods every sender has.
macro_rules! option_methods {
    () => {
        /// The message text (default: [`MessageTemplate::default`](crate::MessageTemplate::default), English).
        pub fn template(mut self, template: $crate::MessageTemplate) -> Self {
            self.options.template = template;
            self
        }

        /// Timeouts and retries (default: [`RetryPolicy::default`](crate::RetryPolicy::default)).
        pub fn retry_policy(mut self, policy: $crate::RetryPolicy) -> Self {
            self.options.policy = policy;
            self
        }

        /// An HTTP client of your own (proxies, your TLS roots, tracing
        /// middleware…). Its redirects should be off: a redirected `POST`
        /// can send twice. Default: a rustls client the sender builds, with
        /// the policy's connect timeout and no redirects.
        pub fn client(mut self, client: reqwest::Client) -> Self {
            self.options.client = Some(client);
            self
        }

        /// The clock `Retry-After` dates are read against (default: the
        /// system clock).
        pub fn clock(mut self, clock: std::sync::Arc<dyn referral_core::Clock>) -> Self {
            self.options.clock = clock;
            self
        }

        /// The random source of the backoff jitter (and, for the webhook,
        /// the idempotency keys). Default: the thread's CSPRNG.
        pub fn random(mut self, random: std::sync::Arc<dyn referral_core::Random>) -> Self {
            self.options.random = random;
            self
        }
    };
}

pub(crate) use option_methods;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_their_path() {
        let b = base_url("X", "http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            join(&b, "/sms/send").as_str(),
            "http://127.0.0.1:9/prefix/sms/send"
        );
        let b = base_url("X", "https://sms.ru").unwrap();
        assert_eq!(join(&b, "/sms/send").as_str(), "https://sms.ru/sms/send");
        assert!(base_url("X", "ftp://a").is_err());
        assert!(base_url("X", "https://a/?k=v").is_err());
        assert!(base_url("X", "nonsense").is_err());
    }
}
