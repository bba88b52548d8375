//! [`MessageTemplate`]: the text of a login-code SMS.

use std::fmt;

use referral_core::sms::OtpSms;

/// The text of the SMS, with `{code}` and `{minutes}` placeholders.
///
/// The default is the core's English text,
/// `"Your login code: 1234. It expires in 5 minutes."` (see
/// [`OtpSms::text`]). `{minutes}` is the code's lifetime in whole minutes,
/// rounded up, at least 1.
///
/// ```
/// use std::time::Duration;
/// use referral_core::sms::OtpSms;
/// use referral_core::{OtpCode, OtpLength};
/// use referral_sms::MessageTemplate;
///
/// let template = MessageTemplate::parse("Код входа: {code}. Действует {minutes} мин.").unwrap();
/// let sms = OtpSms {
///     to: "+79991234567".parse().unwrap(),
///     code: OtpCode::parse("0420", OtpLength::default()).unwrap(),
///     expires_in: Duration::from_secs(300),
/// };
/// assert_eq!(template.render(&sms), "Код входа: 0420. Действует 5 мин.");
/// assert!(MessageTemplate::parse("no code here").is_err());
/// assert!(MessageTemplate::parse("{code} {hours}").is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessageTemplate {
    /// `None`: the core's default English text.
    parts: Option<Vec<Part>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Code,
    Minutes,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template has no `{code}`: the SMS would not carry the code.
    #[error("the template has no {{code}} placeholder")]
    NoCode,
    /// A `{…}` other than `{code}` and `{minutes}`.
    #[error("unknown placeholder {{{0}}} (only {{code}} and {{minutes}})")]
    UnknownPlaceholder(String),
    /// A `{` without its `}`.
    #[error("a '{{' is not closed")]
    Unclosed,
}

impl MessageTemplate {
    /// Parses a template: text with `{code}` (required) and `{minutes}`.
    ///
    /// # Errors
    /// [`TemplateError`] for a template without `{code}`, with another
    /// placeholder, or with an unclosed `{`.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            parts.push(match &after[..close] {
                "code" => Part::Code,
                "minutes" => Part::Minutes,
                other => return Err(TemplateError::UnknownPlaceholder(other.to_owned())),
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if !parts.contains(&Part::Code) {
            return Err(TemplateError::NoCode);
        }
        Ok(Self { parts: Some(parts) })
    }

    /// The text for `sms`. It contains the code: never log it.
    #[must_use]
    pub fn render(&self, sms: &OtpSms) -> String {
        let Some(parts) = &self.parts else {
            return sms.text();
        };
        let minutes = sms.expires_in.as_secs().div_ceil(60).max(1);
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Code => out.push_str(sms.code.expose()),
                Part::Minutes => out.push_str(&minutes.to_string()),
            }
        }
        out
    }
}

impl fmt::Debug for MessageTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(parts) = &self.parts else {
            return f.write_str("MessageTemplate(default)");
        };
        let mut s = String::new();
        for part in parts {
            match part {
                Part::Text(t) => s.push_str(t),
                Part::Code => s.push_str("{code}"),
                Part::Minutes => s.push_str("{minutes}"),
            }
        }
        f.debug_tuple("MessageTemplate").field(&s).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use referral_core::{OtpCode, OtpLength};
    use std::time::Duration;

    fn sms(secs: u64) -> OtpSms {
        OtpSms {
            to: "+79991234567".parse().unwrap(),
            code: OtpCode::parse("9876", OtpLength::default()).unwrap(),
            expires_in: Duration::from_secs(secs),
        }
    }

    #[test]
    fn default_is_the_core_text() {
        let t = MessageTemplate::default();
        assert_eq!(t.render(&sms(300)), sms(300).text());
    }

    #[test]
    fn placeholders_are_filled_and_minutes_round_up() {
        let t = MessageTemplate::parse("{code}/{minutes}/{code}").unwrap();
        assert_eq!(t.render(&sms(61)), "9876/2/9876");
        assert_eq!(t.render(&sms(1)), "9876/1/9876");
        assert_eq!(
            format!("{t:?}"),
            "MessageTemplate(\"{code}/{minutes}/{code}\")"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(
            MessageTemplate::parse("{minutes} only"),
            Err(TemplateError::NoCode)
        );
        assert_eq!(
            MessageTemplate::parse("{code} {x}"),
            Err(TemplateError::UnknownPlaceholder("x".into()))
        );
        assert_eq!(
            MessageTemplate::parse("{code} {"),
            Err(TemplateError::Unclosed)
        );
    }
}
