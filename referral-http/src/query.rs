//! Query strings, read the way API.md writes them.

use percent_encoding::percent_decode_str;

/// A parsed query string: `name=value` pairs, decoded as HTML forms encode
/// them (`%XX`, and `+` for a space) with one exception: a `+` that starts a
/// value stays a `+`, so `?phone=+79991234567` means the phone `+79991234567`
/// as API.md writes it (`%2B` works too, and `+7+999+123` is `+7 999 123`).
/// The first of repeated names wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string (without the `?`).
    #[must_use]
    pub fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let (lead, rest) = match value.strip_prefix('+') {
                    Some(rest) => ("+", rest),
                    None => ("", value),
                };
                (decode(name), format!("{lead}{}", decode(rest)))
            })
            .collect();
        Self(pairs)
    }

    /// The value of `name`, if present.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_kept() {
        let q = Query::parse("phone=+79991234567&limit=5&limit=6&flag");
        assert_eq!(q.get("phone"), Some("+79991234567"));
        assert_eq!(q.get("limit"), Some("5"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("cursor"), None);
        assert_eq!(
            Query::parse("phone=%2B7%20999").get("phone"),
            Some("+7 999")
        );
    }
}
