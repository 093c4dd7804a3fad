//! Health per subscription and per source over a recent window: what the index knows
//! (attempts, latency, pending deliveries, dead letters, events accepted and quarantined),
//! joined with what only the ingress and workers count, read from Prometheus when
//! `console.prometheus_url` is set (requests by outcome, verification failures by reason,
//! circuit states, consumer lag).
// utoipa's `params(...)` expands to paths it qualifies in full.
#![allow(unused_qualifications)]

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use spillway_core::time::now_ms;
use spillway_index::health::{self, SourceFigures, SubscriptionFigures};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Viewer;
use crate::problem::{ApiError, ErrorAnswer};
use crate::prometheus::Sample;
use crate::state::Shared;

/// The longest window: a week.
const MAX_WINDOW_S: i64 = 7 * 24 * 3600;

/// Which window.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// Seconds back from now, 60 to 604800; 3600 (the last hour) by default.
    window_s: Option<i64>,
}

/// Whether the figures from Prometheus are in the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricsState {
    /// Read from Prometheus.
    Ok,
    /// `console.prometheus_url` is not set.
    NotConfigured,
    /// Prometheus did not answer (the console's log says why).
    Unavailable,
}

/// Every subscription's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionHealthPage {
    pub window_s: i64,
    pub since_ms: i64,
    pub metrics: MetricsState,
    pub subscriptions: Vec<SubscriptionHealth>,
    /// Records not yet consumed per topic, summed over the workers (from Prometheus).
    pub consumer_lag: BTreeMap<String, f64>,
}

/// One subscription's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionHealth {
    #[serde(flatten)]
    pub figures: SubscriptionFigures,
    /// `closed`, `half_open` or `open`: the most open any worker reports (from Prometheus).
    pub circuit: Option<String>,
}

/// Every source's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceHealthPage {
    pub window_s: i64,
    pub since_ms: i64,
    pub metrics: MetricsState,
    pub sources: Vec<SourceHealth>,
}

/// One source's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceHealth {
    #[serde(flatten)]
    pub figures: SourceFigures,
    /// Requests answered in the window by outcome (`accepted`, `duplicate`, `unauthorized`...,
    /// as `spillway_http_requests_total` counts them; from Prometheus).
    pub requests: BTreeMap<String, f64>,
    /// Requests answered as duplicates (from Prometheus).
    pub duplicates: Option<f64>,
    /// Verification failures by reason (`signature_mismatch`, `timestamp_too_old`...; from
    /// Prometheus).
    pub verification_failures: BTreeMap<String, f64>,
}

fn window(params: Result<Query<WindowParams>, QueryRejection>) -> Result<(i64, i64), ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let window_s = params.window_s.unwrap_or(3600);
    if !(60..=MAX_WINDOW_S).contains(&window_s) {
        return Err(ApiError::invalid(format!(
            "window_s must be 60 to {MAX_WINDOW_S}"
        )));
    }
    Ok((window_s, now_ms() as i64 - window_s * 1000))
}

/// Runs `queries` against Prometheus: their answers in order, or why there are none.
async fn ask(state: &Shared, queries: &[String]) -> (MetricsState, Vec<Vec<Sample>>) {
    let Some(prometheus) = &state.prometheus else {
        return (MetricsState::NotConfigured, Vec::new());
    };
    let mut answers = Vec::new();
    for query in queries {
        match prometheus.query(query).await {
            Ok(samples) => answers.push(samples),
            Err(e) => {
                tracing::warn!(error = %e, query, "console: prometheus did not answer");
                return (MetricsState::Unavailable, Vec::new());
            }
        }
    }
    (MetricsState::Ok, answers)
}

fn by<'a>(
    samples: Option<&'a Vec<Sample>>,
    key: &'a str,
) -> impl Iterator<Item = (&'a str, &'a Sample)> {
    samples
        .into_iter()
        .flatten()
        .filter_map(move |s| s.labels.get(key).map(|k| (k.as_str(), s)))
}

/// Success rate, latency percentiles, backlog, circuit state and dead letters of every
/// subscription.
#[utoipa::path(get, path = "/v1/health/subscriptions", tag = "status",
    params(WindowParams),
    responses(
        (status = 200, body = SubscriptionHealthPage),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn subscriptions(
    State(state): State<Shared>,
    _: Viewer,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Json<SubscriptionHealthPage>, ApiError> {
    let (window_s, since_ms) = window(params)?;
    let indexed = health::subscriptions(&state.pool, since_ms).await?;
    let (metrics, answers) = ask(
        &state,
        &[
            "max by (subscription) (spillway_worker_circuit_state)".into(),
            "sum by (topic) (spillway_consumer_lag_messages)".into(),
        ],
    )
    .await;
    let circuits: BTreeMap<&str, f64> = by(answers.first(), "subscription")
        .map(|(id, s)| (id, s.value))
        .collect();
    let consumer_lag = by(answers.get(1), "topic")
        .map(|(topic, s)| (topic.to_owned(), s.value))
        .collect();
    let mut figures: BTreeMap<String, SubscriptionFigures> = indexed
        .into_iter()
        .map(|f| (f.subscription.clone(), f))
        .collect();
    for s in state.live.snapshot().iter() {
        figures
            .entry(s.id.clone())
            .or_insert_with(|| SubscriptionFigures::empty(&s.id));
    }
    let subscriptions = figures
        .into_values()
        .map(|figures| SubscriptionHealth {
            circuit: circuits
                .get(figures.subscription.as_str())
                .map(|v| circuit_name(*v).to_owned()),
            figures,
        })
        .collect();
    Ok(Json(SubscriptionHealthPage {
        window_s,
        since_ms,
        metrics,
        subscriptions,
        consumer_lag,
    }))
}

fn source_entry<'a>(
    out: &'a mut BTreeMap<String, SourceHealth>,
    name: &str,
) -> &'a mut SourceHealth {
    out.entry(name.to_owned()).or_insert_with(|| SourceHealth {
        figures: SourceFigures {
            source: name.to_owned(),
            accepted: 0,
            quarantined: 0,
        },
        requests: BTreeMap::new(),
        duplicates: None,
        verification_failures: BTreeMap::new(),
    })
}

fn circuit_name(value: f64) -> &'static str {
    if value >= 2.0 {
        "open"
    } else if value >= 1.0 {
        "half_open"
    } else {
        "closed"
    }
}

/// Events accepted and quarantined, requests by outcome, duplicates and verification
/// failures by reason of every source.
#[utoipa::path(get, path = "/v1/health/sources", tag = "status",
    params(WindowParams),
    responses(
        (status = 200, body = SourceHealthPage),
        (status = 400, body = ErrorAnswer), (status = 401, body = ErrorAnswer),
        (status = 503, body = ErrorAnswer)),
    security(("bearer" = [])))]
pub async fn sources(
    State(state): State<Shared>,
    _: Viewer,
    params: Result<Query<WindowParams>, QueryRejection>,
) -> Result<Json<SourceHealthPage>, ApiError> {
    let (window_s, since_ms) = window(params)?;
    let indexed = health::sources(&state.pool, since_ms).await?;
    let (metrics, answers) = ask(
        &state,
        &[
            format!("sum by (source, outcome) (increase(spillway_http_requests_total[{window_s}s]))"),
            format!("sum by (source, reason) (increase(spillway_verification_failures_total[{window_s}s]))"),
        ],
    )
    .await;
    let mut out: BTreeMap<String, SourceHealth> = BTreeMap::new();
    for name in state.config.sources.keys() {
        source_entry(&mut out, name);
    }
    for figures in indexed {
        let name = figures.source.clone();
        source_entry(&mut out, &name).figures = figures;
    }
    for (name, sample) in by(answers.first(), "source") {
        if let Some(outcome) = sample.labels.get("outcome") {
            source_entry(&mut out, name)
                .requests
                .insert(outcome.clone(), sample.value);
        }
    }
    for (name, sample) in by(answers.get(1), "source") {
        if let Some(reason) = sample.labels.get("reason") {
            source_entry(&mut out, name)
                .verification_failures
                .insert(reason.clone(), sample.value);
        }
    }
    if metrics == MetricsState::Ok {
        for source in out.values_mut() {
            source.duplicates = Some(source.requests.get("duplicate").copied().unwrap_or(0.0));
        }
    }
    Ok(Json(SourceHealthPage {
        window_s,
        since_ms,
        metrics,
        sources: out.into_values().collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_states_are_named_as_the_gauge_documents_them() {
        assert_eq!(circuit_name(0.0), "closed");
        assert_eq!(circuit_name(1.0), "half_open");
        assert_eq!(circuit_name(2.0), "open");
    }
}
