//! The catalogue's own promises: enough presets, every family, unique names, and presets that
//! are consistent (every value a template signs has a place to come from, every header name is
//! one).

use std::collections::HashSet;

use super::*;

#[test]
fn at_least_sixty_presets_with_unique_lowercase_names() {
    assert!(all().len() >= 60, "{} presets", all().len());
    let mut seen = HashSet::new();
    for preset in all() {
        assert!(seen.insert(preset.name), "{} twice", preset.name);
        assert!(
            preset
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{}",
            preset.name
        );
        assert_eq!(preset.scheme.name(), preset.name);
        assert!(
            !preset.display.is_empty() && preset.docs.starts_with("https://"),
            "{}",
            preset.name
        );
        assert!(
            !["hmac", "none"].contains(&preset.name),
            "{} is a built-in scheme",
            preset.name
        );
    }
}

#[test]
fn every_family_is_in_the_catalogue() {
    let families: HashSet<&str> = all().iter().map(|p| p.scheme.family()).collect();
    for family in [
        "hmac-sha1",
        "hmac-sha256",
        "hmac-sha512",
        "ed25519",
        "ecdsa-p256",
        "token",
        "basic",
    ] {
        assert!(families.contains(family), "no {family} preset");
    }
}

#[test]
fn every_preset_is_consistent() {
    for preset in all() {
        let scheme = &preset.scheme;
        assert_eq!(scheme.check(), Ok(()), "{}", preset.name);
        for header in preset.forward_headers() {
            assert!(
                http::HeaderName::from_bytes(header.as_bytes()).is_ok()
                    && header == header.to_ascii_lowercase(),
                "{}: {header:?}",
                preset.name
            );
        }
        for name in &scheme.signature_headers {
            assert!(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "{}: {name:?}",
                preset.name
            );
        }
        let header_keys = [&preset.dedupe, &preset.event_type];
        for key in header_keys.into_iter().flatten() {
            match key {
                KeySource::Header { name } => assert!(
                    preset
                        .forward_headers()
                        .contains(&name.to_ascii_lowercase()),
                    "{}: {name} is read by the workers, so it is forwarded",
                    preset.name
                ),
                KeySource::JsonPointer { pointer } => {
                    assert!(pointer.starts_with('/'), "{}", preset.name)
                }
                KeySource::SignedId => assert!(scheme.signs_id(), "{}", preset.name),
                other => panic!("{}: {other:?}", preset.name),
            }
        }
    }
}

#[test]
fn token_schemes_do_not_forward_their_secret() {
    for preset in all()
        .iter()
        .filter(|p| p.scheme.algorithm == spillway_signature::Algorithm::Token)
    {
        for header in &preset.scheme.signature_headers {
            assert!(
                !preset.forward_headers().contains(&header.to_string()),
                "{}",
                preset.name
            );
        }
    }
}

#[test]
fn at_least_eight_handshakes_each_on_some_preset() {
    for handshake in Handshake::ALL {
        assert!(
            all().iter().any(|p| p.handshake == Some(handshake)),
            "{} is on no preset",
            handshake.name()
        );
    }
    assert!(Handshake::ALL.len() >= 8);
}

#[test]
fn lookup_and_suggestions() {
    assert_eq!(find("stripe").map(|p| p.display), Some("Stripe"));
    assert!(find("Stripe").is_none());
    assert!(suggestions("strip").contains(&"stripe"));
}

#[test]
fn providers_doc_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/providers.md");
    let want = listing::markdown();
    if std::env::var_os("SPILLWAY_BLESS").is_some() {
        std::fs::write(path, &want).expect("write docs/providers.md");
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/providers.md is stale: run `SPILLWAY_BLESS=1 cargo test -p spillway-providers providers_doc`"
    );
}

#[test]
fn the_json_listing_names_every_preset_and_family() {
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listing::json()).expect("JSON");
    assert_eq!(listed.len(), all().len());
    assert_eq!(listed[0]["name"], all()[0].name);
    assert!(listed
        .iter()
        .all(|r| r["family"].is_string() && r["dedupe"].is_string()));
}
