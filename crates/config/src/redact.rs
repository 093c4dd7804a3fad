//! Keeping secret values out of what the config crate prints: `Debug` of the sections that hold
//! librdkafka properties or Redis URLs, and the load errors figment builds from a value.
//!
//! A property is secret when its key looks secret ([`is_secret_key`]); a URL's credentials are
//! its user-info (`redis://:password@host`), replaced wherever a URL appears in text.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use figment::error::{Actual, Kind};

/// What a redacted value is shown as.
pub(crate) const REDACTED: &str = "<redacted>";

/// Key fragments of secret librdkafka (and other) properties: `sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`, `sasl.oauthbearer.client.secret`, tokens.
const SECRET_KEY_PARTS: &[&str] = &["password", "secret", "token", "credential"];

/// Secret properties whose key names no such fragment: an OAUTHBEARER config string (it may
/// carry a client secret), a private key in PEM, a JAAS line with a password.
const SECRET_KEYS: &[&str] = &["sasl.oauthbearer.config", "ssl.key.pem", "sasl.jaas.config"];

/// Whether the value of property `key` must not be printed (case-insensitive).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part)) || SECRET_KEYS.contains(&key.as_str())
}

/// `text` with the user-info of every URL in it (`scheme://user:password@host`) replaced by
/// [`REDACTED`]. A URL ends at whitespace, a quote, a comma or a bracket; its user-info ends at
/// the last `@` before that, so a password holding `/` or `@` is hidden whole.
pub fn redact_url_credentials(text: &str) -> Cow<'_, str> {
    if !text.contains("://") || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || "\"'`,;[]<>(){}".contains(c))
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(user_info_end) => {
                out.push_str(REDACTED);
                rest = &tail[user_info_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `Debug` of a property map with the values of secret keys redacted.
pub(crate) struct Properties<'a>(pub(crate) &'a BTreeMap<String, String>);

impl fmt::Debug for Properties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in self.0 {
            if is_secret_key(key) {
                map.entry(key, &format_args!("{REDACTED}"));
            } else {
                map.entry(key, &redact_url_credentials(value));
            }
        }
        map.finish()
    }
}

/// `Debug` of a list of URLs with their credentials redacted.
pub(crate) struct Urls<'a>(pub(crate) &'a [String]);

impl fmt::Debug for Urls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|url| redact_url_credentials(url)))
            .finish()
    }
}

/// `error` (a chain of figment errors) with no secret value left in it: a value under a key
/// that looks secret is replaced whole, and the credentials of URLs in any value or message are
/// redacted. A mistyped `SPILLWAY_REDIS__NODES` holding `redis://:password@host` must not put
/// the password on stderr.
pub(crate) fn figment_error(error: figment::Error) -> figment::Error {
    let mut redacted: Vec<figment::Error> = error.into_iter().map(redact_one).collect();
    // `into_iter` yields the outermost error first; `a.chain(b)` makes `b` the outer one.
    let mut chain = redacted.pop();
    while let Some(outer) = redacted.pop() {
        chain = chain.map(|inner| inner.chain(outer));
    }
    chain.unwrap_or_else(|| figment::Error::from(REDACTED))
}

fn redact_one(mut error: figment::Error) -> figment::Error {
    let secret_path =
        error.path.iter().any(|part| is_secret_key(part)) || is_secret_key(&error.path.join("."));
    error.kind = match error.kind {
        Kind::Message(text) => Kind::Message(redact_url_credentials(&text).into_owned()),
        Kind::InvalidType(actual, expected) => {
            Kind::InvalidType(redact_actual(actual, secret_path), expected)
        }
        Kind::InvalidValue(actual, expected) => {
            Kind::InvalidValue(redact_actual(actual, secret_path), expected)
        }
        Kind::UnknownVariant(_, expected) if secret_path => {
            Kind::UnknownVariant(REDACTED.into(), expected)
        }
        Kind::UnknownVariant(found, expected) => {
            Kind::UnknownVariant(redact_url_credentials(&found).into_owned(), expected)
        }
        Kind::Unsupported(actual) => Kind::Unsupported(redact_actual(actual, secret_path)),
        other => other,
    };
    error
}

/// A value figment names in an error: replaced whole under a secret key, else with its URL
/// credentials redacted.
fn redact_actual(actual: Actual, secret_path: bool) -> Actual {
    match actual {
        Actual::Str(_)
        | Actual::Other(_)
        | Actual::Bytes(_)
        | Actual::Char(_)
        | Actual::Unsigned(_)
        | Actual::Signed(_)
        | Actual::Float(_)
            if secret_path =>
        {
            Actual::Other(format!("a value ({REDACTED})"))
        }
        Actual::Str(text) => Actual::Str(redact_url_credentials(&text).into_owned()),
        Actual::Other(text) => Actual::Other(redact_url_credentials(&text).into_owned()),
        other => other,
    }
}
