//! What a run measured: statuses, errors and an HdrHistogram of latencies, as text (in the
//! manner of wrk, vegeta and oha) or JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::plan::Kind;

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub seq: u64,
    pub kind: Kind,
    pub source: usize,
    /// From the moment the request was due to its answer (or failure).
    pub latency: Duration,
    /// When the answer (or failure) came.
    pub at: std::time::Instant,
    /// The status and a field of the answer's JSON body: `id` (the event id) of a 2xx,
    /// `error` (the error code) of anything else; or why there was no answer.
    pub result: Result<(u16, Option<String>), String>,
}

/// Everything recorded during a run.
#[derive(Debug)]
pub struct Report {
    target_rate: f64,
    duration: Duration,
    latencies_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    by_kind: BTreeMap<Kind, BTreeMap<String, u64>>,
    answers: Vec<Answer>,
    sending: Duration,
    elapsed: Duration,
}

/// The figures of a run, as `--json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target_rate: f64,
    /// Requests sent per second over the sending time.
    pub achieved_rate: f64,
    /// Answers (any status) per second over the whole run.
    pub throughput: f64,
    pub requests: u64,
    pub duration_s: f64,
    pub latency_ms: Latencies,
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer: `timeout`, `connect`, `http`, `body`.
    pub errors: BTreeMap<String, u64>,
    /// For each kind of request, its outcomes (statuses or errors).
    pub kinds: BTreeMap<Kind, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

// === impl Report ===

impl Report {
    pub fn new(target_rate: f64, duration: Duration) -> Result<Self, hdrhistogram::CreationError> {
        Ok(Self {
            target_rate,
            duration,
            // 1 µs to 10 minutes at 3 significant digits; a longer value is clamped.
            latencies_us: Histogram::new_with_bounds(1, 600_000_000, 3)?,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            answers: Vec::new(),
            sending: Duration::ZERO,
            elapsed: Duration::ZERO,
        })
    }

    pub fn record(&mut self, answer: Answer) {
        let micros = u64::try_from(answer.latency.as_micros()).unwrap_or(u64::MAX);
        self.latencies_us.saturating_record(micros.max(1));
        let outcome = match &answer.result {
            Ok((status, field)) => {
                *self.statuses.entry(*status).or_default() += 1;
                crate::plan::outcome_key(*status, field.as_deref())
            }
            Err(e) => {
                *self.errors.entry(e.clone()).or_default() += 1;
                e.clone()
            }
        };
        *self
            .by_kind
            .entry(answer.kind)
            .or_default()
            .entry(outcome)
            .or_default() += 1;
        self.answers.push(answer);
    }

    pub fn sending_took(&mut self, took: Duration) {
        self.sending = took;
    }

    pub fn finished(&mut self, took: Duration) {
        self.elapsed = took;
    }

    /// Every answer, in the order they came.
    pub fn answers(&self) -> &[Answer] {
        &self.answers
    }

    pub fn progress_line(&self, sent: u64, elapsed: Duration) -> String {
        let answered = self.answers.len();
        format!(
            "[{:>6.1}s] sent {sent} ({:.0}/s)  answered {answered}  2xx {}  p99 so far {:.1} ms",
            elapsed.as_secs_f64(),
            sent as f64 / elapsed.as_secs_f64().max(0.001),
            self.statuses
                .iter()
                .filter(|(s, _)| (200..300).contains(*s))
                .map(|(_, n)| n)
                .sum::<u64>(),
            self.latencies_us.value_at_quantile(0.99) as f64 / 1000.0,
        )
    }

    pub fn summary(&self) -> Summary {
        let ms = |q: f64| self.latencies_us.value_at_quantile(q) as f64 / 1000.0;
        let requests = self.answers.len() as u64;
        Summary {
            target_rate: self.target_rate,
            achieved_rate: requests as f64 / self.sending.as_secs_f64().max(0.001),
            throughput: requests as f64 / self.elapsed.as_secs_f64().max(0.001),
            requests,
            duration_s: self.duration.as_secs_f64(),
            latency_ms: Latencies {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                p999: ms(0.999),
                max: self.latencies_us.max() as f64 / 1000.0,
                mean: self.latencies_us.mean() / 1000.0,
            },
            statuses: self.statuses.clone(),
            errors: self.errors.clone(),
            kinds: self.by_kind.clone(),
        }
    }
}

// === impl Summary ===

impl Summary {
    /// The text report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let l = &self.latency_ms;
        out.push_str(&format!(
            "Requests      {} in {:.1} s\nRate          target {:.0}/s, achieved {:.0}/s, throughput {:.0}/s\n",
            self.requests, self.duration_s, self.target_rate, self.achieved_rate, self.throughput
        ));
        out.push_str(&format!(
            "Latency (ms)  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}\n",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        ));
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s} x{n}"))
            .collect();
        out.push_str(&format!("Statuses      {}\n", statuses.join("  ")));
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(e, n)| format!("{e} x{n}"))
                .collect();
            out.push_str(&format!("Errors        {}\n", errors.join("  ")));
        }
        for (kind, outcomes) in &self.kinds {
            let outcomes: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} x{n}")).collect();
            out.push_str(&format!(
                "  {:<10}  {}  (expected {})\n",
                kind.name(),
                outcomes.join("  "),
                kind.expected()
            ));
        }
        out
    }

    /// Threshold failures: empty when the run met them.
    pub fn breaches(&self, max_p99_ms: Option<f64>, min_rate: Option<f64>) -> Vec<String> {
        let mut breaches = Vec::new();
        if let Some(max) = max_p99_ms {
            if self.latency_ms.p99 > max {
                breaches.push(format!(
                    "p99 {:.2} ms is above --max-p99 {max} ms",
                    self.latency_ms.p99
                ));
            }
        }
        if let Some(min) = min_rate {
            if self.achieved_rate < min {
                breaches.push(format!(
                    "achieved {:.0}/s is below --min-rate {min}/s",
                    self.achieved_rate
                ));
            }
        }
        breaches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(seq: u64, millis: u64, result: Result<(u16, Option<String>), String>) -> Answer {
        Answer {
            seq,
            kind: Kind::Valid,
            source: 0,
            latency: Duration::from_millis(millis),
            at: std::time::Instant::now(),
            result,
        }
    }

    #[test]
    fn percentiles_statuses_and_thresholds() {
        let mut report = Report::new(100.0, Duration::from_secs(1)).unwrap();
        for i in 1..=99 {
            report.record(answer(i, 2, Ok((202, Some(format!("id-{i}"))))));
        }
        report.record(answer(100, 80, Err("timeout".into())));
        report.sending_took(Duration::from_secs(1));
        report.finished(Duration::from_secs(2));
        let s = report.summary();
        assert_eq!(s.requests, 100);
        assert_eq!(s.statuses[&202], 99);
        assert_eq!(s.errors["timeout"], 1);
        assert!(
            (s.latency_ms.p50 - 2.0).abs() < 0.01,
            "{}",
            s.latency_ms.p50
        );
        assert!(
            (s.latency_ms.max - 80.0).abs() < 0.1,
            "{}",
            s.latency_ms.max
        );
        assert!((s.achieved_rate - 100.0).abs() < 0.01);
        assert!((s.throughput - 50.0).abs() < 0.01);
        assert!(s.breaches(Some(100.0), Some(90.0)).is_empty());
        assert_eq!(s.breaches(Some(1.0), Some(200.0)).len(), 2);
        assert!(s.text().contains("202 x99"));
    }
}
