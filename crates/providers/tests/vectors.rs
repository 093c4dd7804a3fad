//! Every preset against vectors that Spillway did not make: the provider's published example,
//! a request signed by its official SDK, or one made with an independent implementation of its
//! documented recipe (tests/vectors/ORIGINS.md says which; dev/provider-vectors regenerates
//! them). Each vector is checked both ways: the genuine request verifies and yields the
//! preset's dedupe key and event type, and the same request with one character of the
//! signature, the timestamp or the signed body changed is refused.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use spillway_core::key::KeyInput;
use spillway_providers::Preset;
use spillway_signature::{
    Algorithm, Field, Part, Request, Secret, SecretRing, SignatureFormat, Verifier, VerifyError,
};

#[derive(Debug, Clone, Deserialize)]
struct Vector {
    preset: String,
    origin: String,
    secret: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
    now: i64,
    #[serde(default)]
    expect: Option<Expect>,
}

#[derive(Debug, Clone, Deserialize)]
struct Expect {
    dedupe: Option<String>,
    event_type: Option<String>,
}

fn vectors() -> Vec<(Vector, &'static Preset)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/vectors")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let list: Vec<Vector> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("name");
        assert!(!list.is_empty(), "{stem}: no vector");
        for v in list {
            assert_eq!(v.preset, stem, "{}", path.display());
            let preset = spillway_providers::find(&v.preset)
                .unwrap_or_else(|| panic!("{}: no preset {}", path.display(), v.preset));
            out.push((v, preset));
        }
    }
    out
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn verifier(preset: &Preset, secret: &str) -> Verifier {
    let key = preset
        .scheme
        .decode_secret(secret)
        .unwrap_or_else(|e| panic!("{}: secret: {e}", preset.name));
    let ring = SecretRing::new(vec![Secret {
        id: "k".into(),
        key,
        not_after: None,
    }]);
    let tolerance = preset.tolerance.unwrap_or(Duration::from_secs(300));
    Verifier::new(preset.scheme.clone(), ring, tolerance)
}

fn at(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
}

fn check(v: &Vector, preset: &Preset) -> Result<spillway_signature::Verified, VerifyError> {
    let headers = header_map(&v.headers);
    let request = Request {
        method: &v.method,
        url: &v.url,
        headers: &headers,
        body: v.body.as_bytes(),
    };
    verifier(preset, &v.secret).verify_request(&request, at(v.now))
}

/// `text` with its last letter or digit (before any base64 padding) replaced by another.
fn nudge(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let i = bytes
        .iter()
        .rposition(u8::is_ascii_alphanumeric)
        .expect("something to change");
    bytes[i] = match bytes[i] {
        b'9' => b'0',
        b'0'..=b'8' => bytes[i] + 1,
        b'z' => b'a',
        b'Z' => b'A',
        c => c + 1,
    };
    String::from_utf8(bytes).expect("ascii")
}

/// The vector with the value at `field` nudged, wherever it travels.
fn tampered(v: &Vector, preset: &Preset, field: &Field) -> Vector {
    let mut t = v.clone();
    match field {
        Field::Header(name) => {
            let h = t
                .headers
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .unwrap_or_else(|| panic!("{}: no header {name}", v.preset));
            h.1 = nudge(&h.1);
        }
        Field::Param(key) => {
            let name = &preset.scheme.signature_headers[0];
            let h = t
                .headers
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .expect("signature header");
            let start = h.1.find(&format!("{key}=")).expect("param") + key.len() + 1;
            let end = h.1[start..]
                .find([',', ';', ' '])
                .map_or(h.1.len(), |e| start + e);
            h.1 = format!(
                "{}{}{}",
                &h.1[..start],
                nudge(&h.1[start..end]),
                &h.1[end..]
            );
        }
        Field::Json(pointer) => {
            let json: serde_json::Value = serde_json::from_str(&v.body).expect("JSON body");
            let value = match json.pointer(pointer).expect("pointer") {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            t.body = v.body.replacen(&value, &nudge(&value), 1);
        }
    }
    t
}

/// The vector with every signature it offers changed by one character (a header may carry
/// several, any of which would do).
fn every_signature_changed(v: &Vector, preset: &Preset, at: &Field) -> Vector {
    let Field::Header(name) = at else {
        return tampered(v, preset, at);
    };
    let mut t = v.clone();
    let h = t
        .headers
        .iter_mut()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("{}: no header {name}", v.preset));
    h.1 = match &preset.scheme.format {
        SignatureFormat::Plain { .. } => nudge(&h.1),
        SignatureFormat::List { separator, label } => {
            h.1.split(*separator)
                .map(|item| {
                    if item.starts_with(label.as_ref()) {
                        nudge(item)
                    } else {
                        item.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(&separator.to_string())
        }
        SignatureFormat::Params { separator, key } => {
            h.1.split(*separator)
                .map(|item| {
                    if item.trim().starts_with(&format!("{key}=")) {
                        nudge(item)
                    } else {
                        item.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(&separator.to_string())
        }
    };
    t
}

#[test]
fn every_preset_has_a_vector() {
    let mut covered: Vec<String> = vectors().into_iter().map(|(v, _)| v.preset).collect();
    // SNS messages carry their own key's URL: their vectors (real AWS messages with AWS's
    // certificates) are checked by spillway-signature's tests/sns.rs.
    let sns = concat!(env!("CARGO_MANIFEST_DIR"), "/../signature/tests/sns");
    let sns_vectors = std::fs::read_dir(sns).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count()
    });
    if sns_vectors > 0 {
        covered.push("aws-sns".into());
    }
    let missing: Vec<&str> = spillway_providers::all()
        .iter()
        .map(|p| p.name)
        .filter(|name| !covered.iter().any(|c| c == name))
        .collect();
    assert!(missing.is_empty(), "presets without a vector: {missing:?}");
}

#[test]
fn genuine_requests_verify_and_yield_the_presets_keys() {
    for (v, preset) in vectors() {
        let verified =
            check(&v, preset).unwrap_or_else(|e| panic!("{} ({}): {e}", v.preset, v.origin));
        let Some(expect) = &v.expect else { continue };
        let headers = header_map(&v.headers);
        let input = KeyInput::new(&headers, v.body.as_bytes(), verified.signed_id.as_deref());
        let key = |source: &Option<spillway_core::key::KeySource>| {
            source
                .as_ref()
                .and_then(|s| s.extract(&input).ok().flatten())
        };
        assert_eq!(key(&preset.dedupe), expect.dedupe, "{} dedupe", v.preset);
        assert_eq!(
            key(&preset.event_type),
            expect.event_type,
            "{} event type",
            v.preset
        );
    }
}

#[test]
fn one_changed_character_is_refused() {
    for (v, preset) in vectors() {
        let scheme = &preset.scheme;
        let mut changes: Vec<(&str, Vector)> = Vec::new();
        let signature = match &scheme.signature_pointer {
            Some(pointer) => Field::Json(pointer.clone()),
            None => {
                let present = scheme
                    .signature_headers
                    .iter()
                    .find(|h| v.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(h)))
                    .or_else(|| scheme.signature_headers.first())
                    .expect("a signature header");
                let aliased = v
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case(present));
                match (&scheme.header_alias, aliased) {
                    (Some((from, to)), false) => {
                        Field::Header(present.replacen(from.as_ref(), to, 1).into())
                    }
                    _ => Field::Header(present.clone()),
                }
            }
        };
        changes.push(("signature", every_signature_changed(&v, preset, &signature)));
        if let Some(ts) = &scheme.timestamp {
            if scheme.template.uses(&Part::Timestamp) {
                let at = match (&ts.at, &scheme.header_alias) {
                    (Field::Header(h), Some((from, to)))
                        if !v.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(h)) =>
                    {
                        Field::Header(h.replacen(from.as_ref(), to, 1).into())
                    }
                    (other, _) => other.clone(),
                };
                changes.push(("timestamp", tampered(&v, preset, &at)));
            }
        }
        let signs_body = scheme.template.uses(&Part::Body) || scheme.template.uses(&Part::Form);
        if signs_body && scheme.algorithm != Algorithm::Token {
            let mut t = v.clone();
            let mid = t.body.len() / 2;
            let i = t.body[mid..]
                .find(|c: char| c.is_ascii_alphanumeric())
                .map_or_else(
                    || {
                        t.body
                            .find(|c: char| c.is_ascii_alphanumeric())
                            .expect("a letter")
                    },
                    |i| mid + i,
                );
            t.body.replace_range(i..=i, &nudge(&t.body[i..=i]));
            changes.push(("body", t));
        }
        for (what, t) in changes {
            assert!(
                check(&t, preset).is_err(),
                "{} ({}): a changed {what} still verifies",
                v.preset,
                v.origin
            );
        }
    }
}

/// The vector verified as a streamed body fed in `chunk`-byte pieces; None when its scheme
/// does not stream.
fn check_streamed(
    v: &Vector,
    preset: &Preset,
    chunk: usize,
) -> Option<Result<spillway_signature::Verified, VerifyError>> {
    let headers = header_map(&v.headers);
    let request = Request {
        method: &v.method,
        url: &v.url,
        headers: &headers,
        body: &[],
    };
    let verifier = verifier(preset, &v.secret);
    let mut check = match verifier.begin_streamed(&request, at(v.now))? {
        Ok(check) => check,
        Err(e) => return Some(Err(e)),
    };
    for piece in v.body.as_bytes().chunks(chunk.max(1)) {
        check.update(piece);
    }
    Some(check.finish(&verifier))
}

#[test]
fn a_streamed_body_verifies_as_the_whole_body_does() {
    let mut streamed = std::collections::BTreeSet::new();
    for (v, preset) in vectors() {
        let whole = check(&v, preset);
        for chunk in [1, 7, v.body.len()] {
            let Some(pieces) = check_streamed(&v, preset, chunk) else {
                continue;
            };
            streamed.insert(v.preset.clone());
            assert_eq!(
                pieces, whole,
                "{} ({}) in {chunk}-byte pieces",
                v.preset, v.origin
            );
        }
        let signs_body = preset.scheme.template.uses(&Part::Body);
        if signs_body && preset.scheme.algorithm != Algorithm::Token && !v.body.is_empty() {
            let mut changed = v.clone();
            let last = changed.body.pop().expect("a byte");
            changed.body.push(if last == 'x' { 'y' } else { 'x' });
            if let Some(result) = check_streamed(&changed, preset, 3) {
                assert!(
                    result.is_err(),
                    "{}: a changed body still verifies",
                    v.preset
                );
            }
        }
    }
    // Every HMAC preset whose values travel in headers streams; the public-key ones, those
    // signing form parameters and those reading the body's JSON do not.
    assert!(
        streamed.len() >= 50,
        "only {} presets stream: {streamed:?}",
        streamed.len()
    );
    for never in ["discord", "twilio", "mailgun", "sendgrid"] {
        assert!(!streamed.contains(never), "{never} cannot stream");
    }
}
