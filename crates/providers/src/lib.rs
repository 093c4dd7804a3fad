//! The catalogue of webhook providers. Each [`Preset`] is data: a [`Scheme`] (one of the
//! signature families of `spillway-signature`), where the provider puts its own delivery or
//! event id (the dedupe key) and its event type, and which of its headers are worth copying
//! into the Kafka record. A source names a preset with `verify: { scheme: <name> }`.

mod catalogue;
mod handshake;
pub mod listing;
mod shapes;

use std::sync::LazyLock;
use std::time::Duration;

use spillway_core::key::KeySource;
use spillway_signature::{Field, Scheme};

pub use handshake::Handshake;
pub use shapes::*;

/// One provider.
#[derive(Debug, Clone)]
pub struct Preset {
    /// The lower-case name a source's `verify.scheme` uses.
    pub name: &'static str,
    /// The provider's own name, for people.
    pub display: &'static str,
    pub scheme: Scheme,
    /// The provider's delivery or event id; `None`: it sends none, and the body's hash is the
    /// key.
    pub dedupe: Option<KeySource>,
    /// Where the provider says what kind of event it sent.
    pub event_type: Option<KeySource>,
    /// Provider headers worth keeping beside the signature headers.
    extra_headers: Vec<&'static str>,
    /// The replay window the provider recommends, for schemes that sign a timestamp.
    pub tolerance: Option<Duration>,
    /// What the secret is and where the provider shows it.
    pub secret: &'static str,
    /// The provider's page on verifying its webhooks.
    pub docs: &'static str,
    /// Something a user must know: what is not signed, what is not supported.
    pub note: &'static str,
    /// The registration handshake the ingress answers for this provider.
    pub handshake: Option<Handshake>,
}

// === impl Preset ===

impl Preset {
    /// A preset of `scheme`, which takes the preset's name.
    pub fn new(name: &'static str, display: &'static str, scheme: Scheme) -> Self {
        Self {
            name,
            display,
            scheme: scheme.named(name),
            dedupe: None,
            event_type: None,
            extra_headers: Vec::new(),
            tolerance: None,
            secret: "the signing secret's text",
            docs: "",
            note: "",
            handshake: None,
        }
    }

    pub fn dedupe_header(mut self, name: &'static str) -> Self {
        self.dedupe = Some(KeySource::Header { name: name.into() });
        self
    }

    pub fn dedupe_json(mut self, pointer: &'static str) -> Self {
        self.dedupe = Some(KeySource::JsonPointer {
            pointer: pointer.into(),
        });
        self
    }

    /// The id the signature covers.
    pub fn dedupe_signed_id(mut self) -> Self {
        self.dedupe = Some(KeySource::SignedId);
        self
    }

    pub fn event_header(mut self, name: &'static str) -> Self {
        self.event_type = Some(KeySource::Header { name: name.into() });
        self
    }

    pub fn event_json(mut self, pointer: &'static str) -> Self {
        self.event_type = Some(KeySource::JsonPointer {
            pointer: pointer.into(),
        });
        self
    }

    pub fn forward(mut self, headers: &[&'static str]) -> Self {
        self.extra_headers.extend_from_slice(headers);
        self
    }

    pub fn tolerance_secs(mut self, secs: u64) -> Self {
        self.tolerance = Some(Duration::from_secs(secs));
        self
    }

    pub fn secret(mut self, text: &'static str) -> Self {
        self.secret = text;
        self
    }

    pub fn docs(mut self, url: &'static str) -> Self {
        self.docs = url;
        self
    }

    pub fn handshake(mut self, handshake: Handshake) -> Self {
        self.handshake = Some(handshake);
        self
    }

    pub fn note(mut self, text: &'static str) -> Self {
        self.note = text;
        self
    }

    /// The headers copied into the record by default, lower case, each once: the signature,
    /// id and timestamp headers (so consumers can verify again), the dedupe and event-type
    /// headers, and the provider's other useful ones. Token schemes' headers are left out: a
    /// token is the secret itself.
    pub fn forward_headers(&self) -> Vec<String> {
        let scheme = &self.scheme;
        let mut names: Vec<String> = Vec::new();
        let secret_in_header = scheme.algorithm == spillway_signature::Algorithm::Token;
        if !secret_in_header {
            names.extend(scheme.signature_headers.iter().map(|h| h.to_string()));
        }
        let header_of = |f: &Option<Field>| match f {
            Some(Field::Header(h)) => Some(h.to_string()),
            _ => None,
        };
        names.extend(header_of(&scheme.id));
        names.extend(header_of(&scheme.timestamp.as_ref().map(|t| t.at.clone())));
        for key in [&self.dedupe, &self.event_type].into_iter().flatten() {
            if let KeySource::Header { name } = key {
                names.push(name.clone());
            }
        }
        names.extend(self.extra_headers.iter().map(|h| (*h).to_owned()));
        if let Some((from, to)) = &scheme.header_alias {
            let aliased: Vec<String> = names
                .iter()
                .filter_map(|n| {
                    n.strip_prefix(from.as_ref())
                        .map(|rest| format!("{to}{rest}"))
                })
                .collect();
            names.extend(aliased);
        }
        let mut seen = Vec::new();
        for name in names {
            let lower = name.to_ascii_lowercase();
            if !seen.contains(&lower) {
                seen.push(lower);
            }
        }
        seen
    }
}

static CATALOGUE: LazyLock<Vec<Preset>> = LazyLock::new(catalogue::all);

/// Every preset, in the catalogue's order (by family, then name).
pub fn all() -> &'static [Preset] {
    &CATALOGUE
}

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    all().iter().find(|p| p.name == name)
}

/// The preset names closest to `name`, for an error message: those sharing its first letter.
pub fn suggestions(name: &str) -> Vec<&'static str> {
    let first = name.chars().next();
    all()
        .iter()
        .filter(|p| p.name.chars().next() == first)
        .map(|p| p.name)
        .collect()
}

#[cfg(test)]
mod tests;
