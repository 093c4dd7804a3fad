//! The string-to-sign of a request, as borrowed pieces fed to the algorithm one after another:
//! a body of up to `max_body_bytes` is never copied to be signed or verified with a MAC.

use crate::extract::SignatureParts;
use crate::template::Part;
use crate::{Request, Scheme, VerifyError};

/// What a scheme signs for one request: the layout, the values it refers to, and the pieces
/// that are not already in memory as they are signed (the sorted form parameters).
#[derive(Debug)]
pub(crate) struct Message<'a> {
    layout: &'a [Part],
    id: &'a str,
    timestamp: &'a str,
    request: &'a Request<'a>,
    form: Vec<u8>,
}

// === impl Message ===

impl<'a> Message<'a> {
    /// A missing id or timestamp signs as empty text: the schemes that sign one refuse a
    /// request without it before getting here.
    pub(crate) fn new(
        scheme: &'a Scheme,
        parts: &'a SignatureParts,
        request: &'a Request<'a>,
    ) -> Result<Self, VerifyError> {
        let layout = scheme.template.parts();
        let form = if layout.contains(&Part::Form) {
            sorted_form(request.body)?
        } else {
            Vec::new()
        };
        Ok(Self {
            layout,
            id: parts.id.as_deref().unwrap_or_default(),
            timestamp: parts
                .timestamp
                .as_ref()
                .map(|(text, _)| text.as_str())
                .unwrap_or_default(),
            request,
            form,
        })
    }

    /// The string-to-sign, piece by piece, in order.
    pub(crate) fn pieces(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.layout.iter().map(|part| match part {
            Part::Literal(bytes) => bytes.as_ref(),
            Part::Id => self.id.as_bytes(),
            Part::Timestamp => self.timestamp.as_bytes(),
            Part::Body => self.request.body,
            Part::Url => self.request.url.as_bytes(),
            Part::Method => self.request.method.as_bytes(),
            Part::Form => &self.form,
        })
    }

    /// The string-to-sign in one buffer, for the public-key algorithms, which take it whole.
    pub(crate) fn joined(&self) -> Vec<u8> {
        self.pieces().collect::<Vec<_>>().concat()
    }
}

/// Most form parameters signed: Twilio sends a few dozen. More is refused before anything is
/// sorted, so that an unauthenticated body cannot make the check costly.
const MAX_FORM_PARAMS: usize = 1000;

/// Twilio's form rule: the parameters sorted by name, and a repeated name's values sorted too
/// (as twilio's own validator does), each appended as name then value, percent-decoded.
fn sorted_form(body: &[u8]) -> Result<Vec<u8>, VerifyError> {
    if body.split(|b| *b == b'&').count() > MAX_FORM_PARAMS {
        return Err(crate::extract::malformed(
            "body",
            "has more form parameters than any provider signs",
        ));
    }
    // Borrowed where no percent-decoding was needed.
    let mut pairs: Vec<_> = form_urlencoded::parse(body).collect();
    pairs.sort();
    let mut out = Vec::with_capacity(body.len());
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::scheme::{Algorithm, Field, TimestampFormat};
    use crate::Template;

    fn scheme(template: &str) -> Scheme {
        Scheme::new("t", Algorithm::HmacSha256, "x-signature")
            .id(Field::Header("x-id".into()))
            .timestamp(Field::Header("x-time".into()), TimestampFormat::Seconds)
            .template(Template::parse(template).expect("test template"))
    }

    #[test]
    fn the_pieces_follow_the_template_with_the_values_as_sent() {
        let headers = HeaderMap::new();
        let request = Request {
            method: "POST",
            url: "https://h.example/p?q=1",
            headers: &headers,
            body: b"b=2&a=1&a=0",
        };
        let parts = SignatureParts {
            id: Some("evt_1".into()),
            timestamp: Some(("2026-12-02T10:00:00Z".into(), 0)),
            candidates: Vec::new(),
        };
        let cases = [
            (
                "{id}.{timestamp}.{body}",
                "evt_1.2026-12-02T10:00:00Z.b=2&a=1&a=0",
            ),
            (
                "{method}{url}{body}",
                "POSThttps://h.example/p?q=1b=2&a=1&a=0",
            ),
            ("{url}{form}", "https://h.example/p?q=1a0a1b2"),
        ];
        for (template, expected) in cases {
            let s = scheme(template);
            let joined = Message::new(&s, &parts, &request)
                .expect("message")
                .joined();
            assert_eq!(
                String::from_utf8(joined).expect("utf-8"),
                expected,
                "{template}"
            );
        }
    }

    #[test]
    fn the_body_piece_is_the_callers_body_not_a_copy() {
        let body = vec![b'x'; 4096];
        let headers = HeaderMap::new();
        let request = Request {
            method: "POST",
            url: "",
            headers: &headers,
            body: &body,
        };
        let parts = SignatureParts::default();
        let s = scheme("{id}:{timestamp}:{body}");
        let message = Message::new(&s, &parts, &request).expect("message");
        let lent = message
            .pieces()
            .filter(|piece| std::ptr::eq(piece.as_ptr(), body.as_ptr()))
            .count();
        assert_eq!(lent, 1);
    }
}
