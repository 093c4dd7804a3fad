//! The bench's overload step: twice the highest rate held, then half of it, each for a while,
//! with what an overloaded receiver owes its senders measured from the answers: the share
//! answered (admitted or refused) within one second, the p99 of the requests admitted, the
//! share refused, and how long after the load drops the answers are fast and accepted again.

use std::time::Duration;

use serde::Serialize;

use crate::bench::BenchSettings;
use crate::plan::{Mix, Planner};
use crate::report::Answer;
use crate::run::Settings;
use crate::server::Server;
use crate::signing::SignedSource;

/// An answer later than this counts as not answered in time by a sender's clock.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);
/// The step's goals: this share answered within [`ANSWERED_WITHIN`] during the overload, and
/// recovered within [`RECOVERED_WITHIN_S`] seconds after it.
const ANSWERED_GOAL: f64 = 0.95;
const RECOVERED_WITHIN_S: f64 = 10.0;

/// The overload step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Overload {
    /// Offered during the overload (twice the highest rate held).
    pub rate: f64,
    pub seconds: f64,
    /// Requests answered, 202 or 503 alike, within one second of being due.
    pub answered_within_1s: f64,
    /// p99 of the requests answered 202, in ms.
    pub p99_accepted_ms: f64,
    /// Share answered 503.
    pub refused: f64,
    /// CPU per request during the overload, µs.
    pub cpu_us_per_req: f64,
    /// Seconds after the load dropped to half until every one-second window of answers was
    /// accepted (no 503, no failure) with its p99 within the bound a held rate meets; None
    /// when it never was.
    pub recovered_after_s: Option<f64>,
    /// The overload, second by second (by when its requests were due): whether a miss built
    /// up over the step (more offered than answered) or came at once (a stall).
    pub during_windows: Vec<Window>,
    /// The phase after the overload, second by second (by when its requests were due): what
    /// kept it from counting as recovered, where it did not at once.
    pub after_windows: Vec<Window>,
    /// The first try's figures when it missed a goal and the step was measured once more
    /// (as the sweep measures a missed rate once more): both are on the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_try: Option<Box<Overload>>,
}

impl Overload {
    /// Whether the step met its goals: answered in time, and recovered in time.
    pub fn met(&self) -> bool {
        self.answered_enough() && self.recovered_in_time()
    }

    /// Whether [`ANSWERED_GOAL`] of the overload's requests were answered within 1 s.
    pub fn answered_enough(&self) -> bool {
        self.answered_within_1s >= ANSWERED_GOAL
    }

    /// Whether it recovered within [`RECOVERED_WITHIN_S`] seconds after the overload.
    pub fn recovered_in_time(&self) -> bool {
        self.recovered_after_s
            .is_some_and(|s| s <= RECOVERED_WITHIN_S)
    }

    /// The windows of the phase after the overload before it counted as recovered: all of
    /// them when it never did.
    pub fn unrecovered(&self) -> &[Window] {
        let until = self
            .recovered_after_s
            .map_or(self.after_windows.len(), |s| s as usize);
        &self.after_windows[..until.min(self.after_windows.len())]
    }
}

/// One second's answers, during the overload or in the phase after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// Seconds from the phase's first request.
    pub second: usize,
    /// Answered 2xx.
    pub accepted: usize,
    /// Answered 503.
    pub refused: usize,
    /// Any other status, or no answer (a timeout, a broken connection).
    pub failed: usize,
    /// Answered (any status) within one second of being due.
    pub within_1s: usize,
    /// p99 of all its answers, in ms.
    pub p99_ms: f64,
}

impl Window {
    /// The window as the bench prints it.
    fn line(&self) -> String {
        format!(
            "accepted {:>6}  refused {:>6}  failed {:>6}  within 1 s {:>6}  p99 {:.0} ms",
            self.accepted, self.refused, self.failed, self.within_1s, self.p99_ms
        )
    }

    /// All accepted, with a p99 within `bound`: the test a rate passes to count as held.
    fn good(&self, bound: Duration) -> bool {
        self.refused == 0 && self.failed == 0 && self.p99_ms <= bound.as_secs_f64() * 1e3
    }
}

/// Twice `max_rate` for the overload step, then half of it for as long, with their figures.
pub async fn run(
    settings: &BenchSettings,
    server: &Server,
    sources: &[SignedSource],
    max_rate: f64,
) -> anyhow::Result<Overload> {
    let (high, low) = (2.0 * max_rate, (max_rate / 2.0).max(100.0));
    let cpu_before = crate::cpu::cpu_time(server.pid)?;
    let during = open_run(settings, server, sources, high).await?;
    let cpu = crate::cpu::cpu_time(server.pid)? - cpu_before;
    let after = open_run(settings, server, sources, low).await?;
    let cpu_us = cpu.as_secs_f64() * 1e6 / (during.answers().len().max(1) as f64);
    let figures = figures(
        high,
        settings.overload_step.as_secs_f64(),
        during.answers(),
        low,
        after.answers(),
        Duration::from_secs_f64(settings.p99_bound_ms / 1e3),
        cpu_us,
    );
    eprintln!(
        "overload      {high:>7.0}/s  answered within 1 s {:.1}%  refused {:.1}%  p99 of 202s {:.0} ms  {cpu_us:.0} us/req  recovered after {:?} s at {low:.0}/s",
        figures.answered_within_1s * 100.0,
        figures.refused * 100.0,
        figures.p99_accepted_ms,
        figures.recovered_after_s,
    );
    if !figures.answered_enough() {
        for w in &figures.during_windows {
            eprintln!("  during +{:>2} s  {}", w.second, w.line());
        }
    }
    for w in figures.unrecovered() {
        eprintln!("  after +{:>2} s  {}", w.second, w.line());
    }
    Ok(figures)
}

/// One open-model run at `rate` for the overload step's length, new events only.
async fn open_run(
    settings: &BenchSettings,
    server: &Server,
    sources: &[SignedSource],
    rate: f64,
) -> anyhow::Result<crate::report::Report> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mix = Mix {
        duplicates: 0.0,
        tampered: 0.0,
        stale: 0.0,
        body_sizes: "1024".parse().map_err(anyhow::Error::msg)?,
    };
    let planner = Planner::new(sources.to_vec(), mix, &run_id, 11);
    crate::run::run(
        &Settings {
            target: server.base.clone(),
            rate,
            duration: settings.overload_step,
            connections: settings.overload_connections,
            http2: false,
            timeout: Duration::from_secs(10),
            progress: false,
        },
        planner,
    )
    .await
    .map_err(anyhow::Error::from)
}

/// The overload figures of `during` (answers to `rate` requests/s) and `after` (answers to
/// `after_rate` requests/s that followed at once).
pub fn figures(
    rate: f64,
    seconds: f64,
    during: &[Answer],
    after_rate: f64,
    after: &[Answer],
    p99_bound: Duration,
    cpu_us_per_req: f64,
) -> Overload {
    let n = during.len().max(1) as f64;
    let within = during.iter().filter(|a| answered_in_time(a)).count() as f64;
    let refused = during
        .iter()
        .filter(|a| matches!(a.result, Ok((503, _))))
        .count() as f64;
    let mut accepted: Vec<Duration> = during
        .iter()
        .filter(|a| matches!(a.result, Ok((202, _))))
        .map(|a| a.latency)
        .collect();
    let p99 = p99(&mut accepted);
    let after_windows = windows(after, after_rate);
    Overload {
        during_windows: windows(during, rate),
        first_try: None,
        rate,
        seconds,
        answered_within_1s: within / n,
        p99_accepted_ms: p99.as_secs_f64() * 1e3,
        refused: refused / n,
        cpu_us_per_req,
        recovered_after_s: recovered_after(&after_windows, p99_bound),
        after_windows,
    }
}

/// Whether `a` was answered, with any status, within [`ANSWERED_WITHIN`] of being due.
fn answered_in_time(a: &Answer) -> bool {
    a.result.is_ok() && a.latency <= ANSWERED_WITHIN
}

/// `answers` to `rate` requests/s in one-second windows, by when each request was due.
fn windows(answers: &[Answer], rate: f64) -> Vec<Window> {
    let window_of = |a: &Answer| (a.seq as f64 / rate.max(1.0)) as usize;
    let Some(last) = answers.iter().map(window_of).max() else {
        return Vec::new();
    };
    let mut latencies = vec![Vec::new(); last + 1];
    let mut windows: Vec<Window> = (0..=last)
        .map(|second| Window {
            second,
            accepted: 0,
            refused: 0,
            failed: 0,
            within_1s: 0,
            p99_ms: 0.0,
        })
        .collect();
    for a in answers {
        let w = window_of(a);
        match a.result {
            Ok((status, _)) if status < 300 => windows[w].accepted += 1,
            Ok((503, _)) => windows[w].refused += 1,
            _ => windows[w].failed += 1,
        }
        if answered_in_time(a) {
            windows[w].within_1s += 1;
        }
        latencies[w].push(a.latency);
    }
    for (window, latencies) in windows.iter_mut().zip(&mut latencies) {
        window.p99_ms = p99(latencies).as_secs_f64() * 1e3;
    }
    windows
}

/// The start (in seconds from the first request) of the first one-second window from which
/// on every window's answers are all accepted (no 503, no failure) with a p99 within `bound`:
/// the test a rate passes to count as held. Not the slowest answer: one slow outlier comes
/// at any rate on a shared machine, and would date the recovery to the last such outlier.
fn recovered_after(windows: &[Window], bound: Duration) -> Option<f64> {
    match windows.iter().rposition(|w| !w.good(bound)) {
        None if windows.is_empty() => None,
        None => Some(0.0),
        Some(last) if last + 1 < windows.len() => Some((last + 1) as f64),
        Some(_) => None,
    }
}

/// The 99th percentile of `latencies` (sorted in place), by nearest rank (the answer at rank
/// ceil(0.99 n), as the held test's histogram takes it): one slow answer in 100 is allowed.
/// Zero when there are none.
fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort_unstable();
    let rank = (latencies.len() as f64 * 0.99).ceil() as usize;
    latencies
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Kind;

    fn answer(seq: u64, status: u16, ms: u64) -> Answer {
        Answer {
            seq,
            kind: Kind::Valid,
            source: 0,
            latency: Duration::from_millis(ms),
            at: std::time::Instant::now(),
            result: Ok((status, None)),
        }
    }

    #[test]
    fn figures_count_refusals_as_answers_and_find_the_recovery() {
        let during = [
            answer(0, 202, 100),
            answer(1, 503, 1),
            answer(2, 503, 1),
            answer(3, 202, 3000),
        ];
        // At 2/s: window 0 slow, window 1 refused, windows 2 and 3 fine.
        let after = [
            answer(0, 202, 900),
            answer(1, 202, 10),
            answer(2, 503, 1),
            answer(3, 202, 10),
            answer(4, 202, 10),
            answer(5, 202, 10),
            answer(6, 202, 10),
            answer(7, 202, 10),
        ];
        let o = figures(
            4.0,
            1.0,
            &during,
            2.0,
            &after,
            Duration::from_millis(50),
            10.0,
        );
        assert_eq!(o.answered_within_1s, 0.75);
        assert_eq!(o.refused, 0.5);
        assert_eq!(o.p99_accepted_ms, 3000.0);
        assert_eq!(o.recovered_after_s, Some(2.0));
        assert_eq!(o.unrecovered().len(), 2);
        let window = |second, accepted, refused, within_1s, p99_ms| Window {
            second,
            accepted,
            refused,
            failed: 0,
            within_1s,
            p99_ms,
        };
        assert_eq!(
            o.after_windows,
            [
                window(0, 2, 0, 2, 900.0),
                window(1, 1, 1, 2, 10.0),
                window(2, 2, 0, 2, 10.0),
                window(3, 2, 0, 2, 10.0),
            ]
        );
        // At 4/s the four answers of the overload are its one second; the 202 after 3 s was
        // not answered in time.
        assert_eq!(o.during_windows, [window(0, 2, 2, 3, 3000.0)]);
        assert!(!o.met(), "75% answered in time is short of 95%");
        let never = [answer(0, 202, 10), answer(1, 503, 1)];
        assert_eq!(
            recovered_after(&windows(&never, 1.0), Duration::from_millis(50)),
            None
        );
        assert_eq!(recovered_after(&[], Duration::from_millis(50)), None);
    }

    #[test]
    fn the_step_is_met_only_when_answered_in_time_and_recovered_in_time() {
        let fast: Vec<Answer> = (0..100).map(|seq| answer(seq, 202, 10)).collect();
        let bound = Duration::from_millis(50);
        let met = figures(100.0, 1.0, &fast, 100.0, &fast, bound, 10.0);
        assert!(met.met());
        // 94 of 100 in time: short of 95%.
        let mut late = fast.clone();
        for a in &mut late[..6] {
            a.latency = Duration::from_millis(1001);
        }
        assert!(!figures(100.0, 1.0, &late, 100.0, &fast, bound, 10.0).met());
        // Never recovered, or after more than 10 s.
        let refused: Vec<Answer> = (0..100).map(|seq| answer(seq, 503, 1)).collect();
        assert!(!figures(100.0, 1.0, &fast, 100.0, &refused, bound, 10.0).met());
        let mut slow_recovery = met.clone();
        slow_recovery.recovered_after_s = Some(11.0);
        assert!(!slow_recovery.met());
        slow_recovery.recovered_after_s = Some(10.0);
        assert!(slow_recovery.met());
    }

    #[test]
    fn a_request_without_an_answer_fails_its_window() {
        let mut lost = answer(1, 202, 10);
        lost.result = Err("timed out".into());
        let after = [
            answer(0, 202, 10),
            lost,
            answer(2, 400, 10),
            answer(3, 202, 10),
        ];
        let w = windows(&after, 2.0);
        assert_eq!((w[0].accepted, w[0].failed), (1, 1));
        assert_eq!((w[1].accepted, w[1].failed), (1, 1));
        assert_eq!(recovered_after(&w, Duration::from_millis(50)), None);
    }

    #[test]
    fn recovery_judges_each_window_by_its_p99_not_its_slowest_answer() {
        // At 200/s: window 0 has 3 slow answers in 200 (its p99 is slow), window 1 one (its
        // p99 is not), window 2 none.
        let slow = |seq: u64| matches!(seq, 10 | 20 | 30 | 210);
        let after: Vec<Answer> = (0..600)
            .map(|seq| answer(seq, 202, if slow(seq) { 900 } else { 10 }))
            .collect();
        let bound = Duration::from_millis(50);
        assert_eq!(recovered_after(&windows(&after, 200.0), bound), Some(1.0));
    }

    #[test]
    fn the_p99_allows_one_slow_answer_in_a_hundred() {
        let mut hundred: Vec<Duration> =
            (0..100).map(|n| Duration::from_millis(n.min(98))).collect();
        hundred[99] = Duration::from_secs(9);
        assert_eq!(p99(&mut hundred), Duration::from_millis(98));
        let mut two_hundred = vec![Duration::from_millis(10); 200];
        two_hundred[0] = Duration::from_secs(9);
        two_hundred[1] = Duration::from_secs(9);
        assert_eq!(p99(&mut two_hundred), Duration::from_millis(10));
        two_hundred[2] = Duration::from_secs(9);
        assert_eq!(p99(&mut two_hundred), Duration::from_secs(9));
        assert_eq!(p99(&mut []), Duration::ZERO);
    }
}
