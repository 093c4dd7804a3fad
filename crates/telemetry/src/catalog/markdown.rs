//! docs/metrics.md, written from the catalog (a test keeps the file in step).

use super::{Kind, Process, CATALOG};

/// docs/metrics.md, generated from the catalog.
pub fn markdown() -> String {
    let mut out = String::from(
        "<!-- Generated from crates/telemetry/src/catalog.rs by \
         `SPILLWAY_BLESS=1 cargo test -p spillway-telemetry metrics_doc`; do not edit. -->\n\
         # Metrics\n\n\
         Every Spillway process serves its metrics in the Prometheus text format on its admin \
         port at `/metrics`: the ingress on `admin.listen` (default `127.0.0.1:9090`), the worker on \
         `worker.admin_listen` (default `127.0.0.1:9095`). Names follow \
         `spillway_<name>_<unit>[_total]`; only counters end in `_total`. Every label holds a \
         bounded set of values: configured names or fixed codes, never an event id, a key, a URL \
         or a client address, so a sender cannot grow the number of series.\n\n\
         Histograms also export `_bucket`, `_sum` and `_count` series.\n",
    );
    for (title, process) in [
        ("Ingress", Process::Ingress),
        ("Worker", Process::Worker),
        ("Both processes", Process::Both),
    ] {
        out.push_str(&format!(
            "\n## {title}\n\n| metric | type | labels | meaning |\n|---|---|---|---|\n"
        ));
        for def in CATALOG.iter().filter(|d| d.process == process) {
            let kind = match def.kind {
                Kind::Counter => "counter".to_owned(),
                Kind::Gauge => "gauge".to_owned(),
                Kind::Histogram(b) => format!(
                    "histogram ({})",
                    b.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            let labels = def
                .labels
                .iter()
                .map(|l| format!("`{}`", l.name))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "| `{}` | {kind} | {labels} | {} |\n",
                def.name, def.help
            ));
        }
    }
    out.push_str("\n## Label values\n\n| metric | label | values |\n|---|---|---|\n");
    for def in CATALOG {
        for l in def.labels {
            out.push_str(&format!(
                "| `{}` | `{}` | {} |\n",
                def.name, l.name, l.values
            ));
        }
    }
    out
}
