//! The string-to-sign of each scheme, as borrowed pieces fed to the MAC one after another: a
//! body of up to `max_body_bytes` is never copied to be signed or verified.

use std::borrow::Cow;

use crate::scheme::Part;
use crate::{Scheme, SignatureParts};

const DOT: Part = Part::Literal(Cow::Borrowed(b"."));
const COLON: Part = Part::Literal(Cow::Borrowed(b":"));

// The presets written as templates: `id.timestamp.body`, `timestamp.body`, `v0:timestamp:body`
// and the body alone. The one interpreter in `ToSign::pieces` then serves every scheme.
const STANDARD_WEBHOOKS: &[Part] = &[Part::Id, DOT, Part::Timestamp, DOT, Part::Body];
const STRIPE: &[Part] = &[Part::Timestamp, DOT, Part::Body];
const SLACK: &[Part] = &[
    Part::Literal(Cow::Borrowed(b"v0")),
    COLON,
    Part::Timestamp,
    COLON,
    Part::Body,
];
const BODY_ONLY: &[Part] = &[Part::Body];

/// What a scheme signs for one request: the layout, the values it refers to, and the one piece
/// that is not already in memory (the timestamp's decimal text), owned here so the pieces can
/// borrow it.
#[derive(Debug)]
pub(crate) struct ToSign<'a> {
    layout: &'a [Part],
    id: &'a str,
    timestamp: String,
    body: &'a [u8],
}

// === impl ToSign ===

impl<'a> ToSign<'a> {
    /// A missing id or timestamp signs as empty text, as it always has: the schemes that sign
    /// one refuse a request without it before getting here, and `sign` always passes both.
    pub(crate) fn new(scheme: &'a Scheme, parts: &'a SignatureParts, body: &'a [u8]) -> Self {
        let layout = match scheme {
            Scheme::StandardWebhooks => STANDARD_WEBHOOKS,
            Scheme::Stripe => STRIPE,
            Scheme::Slack => SLACK,
            Scheme::Github | Scheme::Shopify | Scheme::None => BODY_ONLY,
            Scheme::Generic(g) => g.template.parts(),
        };
        Self {
            layout,
            id: parts.id.as_deref().unwrap_or_default(),
            timestamp: parts.timestamp.map(|t| t.to_string()).unwrap_or_default(),
            body,
        }
    }

    /// The string-to-sign, piece by piece, in order.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.layout.iter().map(|part| match part {
            Part::Literal(bytes) => bytes.as_ref(),
            Part::Id => self.id.as_bytes(),
            Part::Timestamp => self.timestamp.as_bytes(),
            Part::Body => self.body,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The pieces, joined, against the string-to-sign as it was built before it was split into
    //! pieces (kept here verbatim as the reference), and a check that the body is lent, not
    //! copied.

    use super::*;
    use crate::{Encoding, GenericHmac, Template};

    /// The former `Scheme::string_to_sign` and `Template::render`, unchanged.
    fn concatenated(scheme: &Scheme, parts: &SignatureParts, body: &[u8]) -> Vec<u8> {
        let id = parts.id.as_deref().unwrap_or_default();
        let ts = parts.timestamp.map(|t| t.to_string()).unwrap_or_default();
        let joined = |pieces: &[&[u8]]| pieces.concat();
        match scheme {
            Scheme::StandardWebhooks => joined(&[id.as_bytes(), b".", ts.as_bytes(), b".", body]),
            Scheme::Stripe => joined(&[ts.as_bytes(), b".", body]),
            Scheme::Slack => joined(&[b"v0:", ts.as_bytes(), b":", body]),
            Scheme::Github | Scheme::Shopify | Scheme::None => body.to_vec(),
            Scheme::Generic(g) => {
                let mut out = Vec::with_capacity(body.len() + 64);
                for part in g.template.parts() {
                    match part {
                        Part::Literal(bytes) => out.extend_from_slice(bytes),
                        Part::Id => out.extend_from_slice(id.as_bytes()),
                        Part::Timestamp => {
                            if let Some(ts) = parts.timestamp {
                                out.extend_from_slice(ts.to_string().as_bytes());
                            }
                        }
                        Part::Body => out.extend_from_slice(body),
                    }
                }
                out
            }
        }
    }

    fn generic(template: &str) -> Scheme {
        Scheme::Generic(GenericHmac {
            signature_header: "x-signature".into(),
            prefix: String::new(),
            encoding: Encoding::Hex,
            template: Template::parse(template).expect("test template"),
            id_header: Some("x-id".into()),
            timestamp_header: Some("x-time".into()),
        })
    }

    fn schemes() -> Vec<Scheme> {
        vec![
            Scheme::StandardWebhooks,
            Scheme::Github,
            Scheme::Stripe,
            Scheme::Shopify,
            Scheme::Slack,
            Scheme::None,
            generic("{id}:{timestamp}:{body}"),
            generic("{body}"),
            generic("v1|{timestamp}{body}{id}|end"),
            generic("sha256.{body}!"),
        ]
    }

    #[test]
    fn the_pieces_joined_are_the_former_string_to_sign() {
        let ids = [
            None,
            Some(""),
            Some("evt_1"),
            Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ];
        let timestamps = [None, Some(0), Some(-5), Some(1_614_265_330), Some(i64::MAX)];
        let bodies: [&[u8]; 4] = [b"", b"x", br#"{"test": 2432232314}"#, &[0, 255, b'.', b':']];
        for scheme in schemes() {
            for id in ids {
                for timestamp in timestamps {
                    for body in bodies {
                        let parts = SignatureParts {
                            id: id.map(str::to_owned),
                            timestamp,
                            candidates: Vec::new(),
                        };
                        let joined = ToSign::new(&scheme, &parts, body)
                            .pieces()
                            .collect::<Vec<_>>()
                            .concat();
                        assert_eq!(
                            joined,
                            concatenated(&scheme, &parts, body),
                            "{} {id:?} {timestamp:?} {body:?}",
                            scheme.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_body_piece_is_the_callers_body_not_a_copy() {
        let body = vec![b'x'; 4096];
        let parts = SignatureParts {
            id: Some("evt_1".into()),
            timestamp: Some(1_700_000_000),
            candidates: Vec::new(),
        };
        for scheme in schemes() {
            let to_sign = ToSign::new(&scheme, &parts, &body);
            let lent = to_sign
                .pieces()
                .filter(|piece| std::ptr::eq(piece.as_ptr(), body.as_ptr()))
                .count();
            assert_eq!(lent, 1, "{}", scheme.name());
            // Everything else is small: the body appears once, by reference.
            let rest: usize = to_sign.pieces().map(<[u8]>::len).sum::<usize>() - body.len();
            assert!(rest < 64, "{}: {rest}", scheme.name());
        }
    }
}
