//! The catalog held to its rules (names, units, labels) and docs/metrics.md kept in step.

use super::*;

/// The units a name may end in (before `_total`), each a plural or a base unit.
const UNITS: &[&str] = &[
    "seconds",
    "bytes",
    "clients",
    "messages",
    "events",
    "records",
    "requests",
    "claims",
    "hits",
    "failures",
    "errors",
    "commands",
    "fallbacks",
    "letters",
    "retries",
    "deliveries",
    "reloads",
    "state",
    "info",
];
/// Labels a client could grow without bound; none may ever appear.
const UNBOUNDED: &[&str] = &[
    "event_id",
    "id",
    "key",
    "ip",
    "client",
    "client_ip",
    "url",
    "path",
    "host",
    "user_agent",
];

#[test]
fn names_follow_the_template() {
    let mut seen = std::collections::HashSet::new();
    for def in CATALOG {
        assert!(seen.insert(def.name), "{} declared twice", def.name);
        let rest = def
            .name
            .strip_prefix("spillway_")
            .unwrap_or_else(|| panic!("{} lacks the spillway_ prefix", def.name));
        assert!(
            rest.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{}",
            def.name
        );
        let is_counter = def.kind == Kind::Counter;
        assert_eq!(
            def.name.ends_with("_total"),
            is_counter,
            "{}: counters and only counters end in _total",
            def.name
        );
        let stem = rest.strip_suffix("_total").unwrap_or(rest);
        let unit = stem.rsplit('_').next().unwrap_or_default();
        assert!(
            UNITS.contains(&unit) && stem.contains('_'),
            "{}: `{unit}` is not a unit (spillway_<name>_<unit>)",
            def.name
        );
        if let Kind::Histogram(_) = def.kind {
            assert!(
                unit == "seconds" || unit == "bytes",
                "{}: histograms measure seconds or bytes",
                def.name
            );
        }
        assert!(
            !def.help.is_empty() && def.help.ends_with('.'),
            "{}",
            def.name
        );
    }
}

#[test]
fn labels_are_bounded_and_documented() {
    for def in CATALOG {
        for l in def.labels {
            assert!(
                !UNBOUNDED.contains(&l.name),
                "{}: label {} is unbounded",
                def.name,
                l.name
            );
            assert!(
                !l.values.is_empty(),
                "{}: {} undocumented",
                def.name,
                l.name
            );
        }
    }
}

#[test]
fn histogram_buckets_ascend() {
    for def in CATALOG {
        if let Kind::Histogram(b) = def.kind {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{}", def.name);
        }
    }
    assert!(ANSWER_BUCKETS.contains(&0.1), "the latency SLO bound");
}

#[test]
fn metrics_doc_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let want = markdown();
    if std::env::var_os("SPILLWAY_BLESS").is_some() {
        std::fs::write(path, &want).expect("write docs/metrics.md");
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/metrics.md is stale: run `SPILLWAY_BLESS=1 cargo test -p spillway-telemetry metrics_doc`"
    );
}

/// Every `spillway_*` series the chart's alerts and dashboards query is in the catalog.
#[test]
fn alerts_and_dashboards_query_only_catalogued_metrics() {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../../helm/spillway");
    let mut files = vec![format!("{chart}/files/alerts.yaml")];
    for entry in std::fs::read_dir(format!("{chart}/dashboards")).expect("dashboards") {
        files.push(entry.expect("entry").path().display().to_string());
    }
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for (at, _) in text.match_indices("spillway_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let known = CATALOG.iter().any(|d| match d.kind {
                Kind::Histogram(_) => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name == format!("{}{s}", d.name)),
                _ => name == d.name,
            });
            assert!(known, "{file} queries {name}, which is not in the catalog");
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} metric references found");
}
