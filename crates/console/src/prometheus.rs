//! Instant queries to Prometheus's HTTP API, for the health figures only the ingress and the
//! workers count (requests by outcome, verification failures, circuit states, consumer lag):
//! those processes keep no state the console could read, and Prometheus already scrapes them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// How long one query may take: the health page waits for it.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A Prometheus to ask.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: reqwest::Client,
    query_url: reqwest::Url,
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("console.prometheus_url: {0}")]
    Url(#[source] url::ParseError),
    #[error("prometheus could not be asked: {0}")]
    Http(#[source] reqwest::Error),
    #[error("prometheus answered {status}: {error}")]
    Refused { status: u16, error: String },
    #[error("prometheus's answer is not an instant vector: {0}")]
    Answer(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Prometheus {
    /// A client of the Prometheus at `base` (`http://prometheus:9090`).
    pub fn new(base: &str) -> Result<Self, PrometheusError> {
        // reqwest is built without a crypto provider of its own: the process uses ring for
        // every TLS connection. Installing fails only when one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A Prometheus under a path prefix (`https://host/prometheus`) keeps it: joining a
        // relative path replaces the last segment unless the base ends in a slash.
        let base = format!("{}/", base.trim_end_matches('/'));
        let query_url = reqwest::Url::parse(&base)
            .and_then(|u| u.join("api/v1/query"))
            .map_err(PrometheusError::Url)?;
        let client = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .build()
            .map_err(PrometheusError::Http)?;
        Ok(Self { client, query_url })
    }

    /// The instant vector of `expr` now.
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>, PrometheusError> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut().append_pair("query", expr);
        let reply = self
            .client
            .get(url)
            .send()
            .await
            .map_err(PrometheusError::Http)?;
        let status = reply.status().as_u16();
        let body = reply.bytes().await.map_err(PrometheusError::Http)?;
        parse(status, &body)
    }
}

fn parse(status: u16, body: &[u8]) -> Result<Vec<Sample>, PrometheusError> {
    let answer: Answer = serde_json::from_slice(body).map_err(PrometheusError::Answer)?;
    match (answer.status.as_str(), answer.data) {
        ("success", Some(data)) => Ok(data
            .result
            .into_iter()
            .map(|s| Sample {
                labels: s.metric,
                // Prometheus writes NaN and ±Inf as strings too; they parse.
                value: s.value.1.parse().unwrap_or(f64::NAN),
            })
            .collect()),
        _ => Err(PrometheusError::Refused {
            status,
            error: answer.error.unwrap_or_else(|| "no data".into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Prometheus's documented instant-query answer
    /// (prometheus.io/docs/prometheus/latest/querying/api/#instant-queries).
    #[test]
    fn an_instant_vector_is_read_with_its_labels() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"prometheus","instance":"localhost:9090"},"value":[1435781451.781,"1"]},
            {"metric":{"source":"stripe"},"value":[1435781451.781,"12.5"]}]}}"#;
        let samples = parse(200, body).expect("parsed");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].labels["job"], "prometheus");
        assert_eq!(samples[1].value, 12.5);
    }

    #[test]
    fn a_path_prefix_is_kept() {
        for (base, query) in [
            (
                "http://prometheus:9090",
                "http://prometheus:9090/api/v1/query",
            ),
            ("https://host/prom", "https://host/prom/api/v1/query"),
            ("https://host/prom/", "https://host/prom/api/v1/query"),
        ] {
            let prometheus = Prometheus::new(base).expect("a client");
            assert_eq!(prometheus.query_url.as_str(), query, "{base}");
        }
    }

    #[test]
    fn an_error_answer_is_an_error() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        let e = parse(400, body).expect_err("refused");
        assert!(e.to_string().contains("parse error"), "{e}");
    }
}
