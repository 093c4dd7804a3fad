//! A bench that guards itself: each figure is measured several times in one run, kept as its
//! median and its noise band (how far the samples strayed from it), and compared with the
//! committed run's (docs/benchmarks.json); a figure whose median moved further than its noise
//! is flagged. Its noise is the widest of the two runs' bands and how far the medians of the
//! committed runs before (its `history`) lay from the committed median: on this shared machine
//! runs differ more than one run's three samples often show (the bare server's CPU per
//! request: 20.8-24.8 µs across six committed runs, 3.4% the committed run's own band).

use serde::{Deserialize, Serialize};

/// One figure of a run: its samples, their median and their band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub samples: Vec<f64>,
    pub median: f64,
    /// The largest distance of a sample from the median, in percent of the median.
    pub band_pct: f64,
    /// The medians of the committed runs before this one, oldest first (kept by
    /// loadtest/report_guard.py in docs/benchmarks.json; empty in a fresh run's figures).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<f64>,
}

impl Figure {
    /// The figure of `samples`, those that are not numbers (a phase with nothing delivered, a
    /// ratio over zero) left out; `None` when none is left, as JSON keeps no NaN.
    pub fn new(name: &str, unit: &str, samples: Vec<f64>) -> Option<Self> {
        let samples: Vec<f64> = samples.into_iter().filter(|s| s.is_finite()).collect();
        let median = median(samples.iter().copied())?;
        Some(Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            band_pct: spread_pct(&samples, median),
            samples,
            median,
            history: Vec::new(),
        })
    }

    /// How far the medians of the committed runs before this one lay from this one's, in
    /// percent of it: the noise between runs. A run that repeats any of them is then within
    /// it. 0 without a history.
    pub fn run_to_run_pct(&self) -> f64 {
        let medians: Vec<f64> = self
            .history
            .iter()
            .copied()
            .filter(|m| m.is_finite())
            .collect();
        spread_pct(&medians, self.median)
    }
}

/// The median of `values`; `None` when there are none.
pub(crate) fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    sorted.sort_by(f64::total_cmp);
    median_of(&sorted)
}

/// The median of `sorted` values; `None` when there are none.
fn median_of(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The largest distance of `values` from `median`, in percent of it.
fn spread_pct(values: &[f64], median: f64) -> f64 {
    values
        .iter()
        .map(|v| percent(v - median, median).abs())
        .fold(0.0, f64::max)
}

/// A figure of this run against the committed run's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub name: String,
    pub unit: String,
    pub committed: f64,
    pub now: f64,
    /// How far the median moved, in percent of the committed median.
    pub change_pct: f64,
    /// The widest of the two runs' bands and the committed runs' spread
    /// ([`Figure::run_to_run_pct`]).
    pub band_pct: f64,
    /// Moved beyond the band: worth a look before the change lands.
    pub moved: bool,
}

/// Each figure of `now` that `committed` has too, compared; figures only one run has are
/// left out (a new figure has nothing to be compared with).
pub fn compare(committed: &[Figure], now: &[Figure]) -> Vec<Comparison> {
    now.iter()
        .filter_map(|n| {
            let c = committed.iter().find(|c| c.name == n.name)?;
            let change_pct = percent(n.median - c.median, c.median);
            let band_pct = c.band_pct.max(n.band_pct).max(c.run_to_run_pct());
            // From a median of zero any change is unmeasurable, and flagged.
            let unmeasurable = c.median == 0.0 && n.median != 0.0;
            Some(Comparison {
                name: n.name.clone(),
                unit: n.unit.clone(),
                committed: c.median,
                now: n.median,
                change_pct,
                band_pct,
                moved: unmeasurable || change_pct.abs() > band_pct,
            })
        })
        .collect()
}

/// The comparison as lines of text, the figures that moved marked.
pub fn describe(comparisons: &[Comparison]) -> Vec<String> {
    comparisons
        .iter()
        .map(|c| {
            format!(
                "{} {:<40} committed {:>9.2} {:<3} now {:>9.2} {:<3} {:>+7.1}% (band ±{:.1}%)",
                if c.moved { "MOVED" } else { "     " },
                c.name,
                c.committed,
                c.unit,
                c.now,
                c.unit,
                c.change_pct,
                c.band_pct
            )
        })
        .collect()
}

fn percent(delta: f64, of: f64) -> f64 {
    if of == 0.0 {
        0.0
    } else {
        delta / of * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_band_of_samples() {
        let f = Figure::new("cpu", "µs", vec![100.0, 90.0, 120.0, f64::NAN]).expect("figure");
        assert_eq!(f.samples.len(), 3, "NaN is no sample");
        assert_eq!(f.median, 100.0);
        assert!((f.band_pct - 20.0).abs() < 1e-9, "{}", f.band_pct);
        let even = Figure::new("cpu", "µs", vec![10.0, 20.0]).expect("figure");
        assert_eq!(even.median, 15.0);
        let steady = Figure::new("cpu", "µs", vec![50.0, 50.0, 50.0]).expect("figure");
        assert_eq!(steady.band_pct, 0.0);
        assert_eq!(
            Figure::new("none", "ms", vec![f64::NAN, f64::INFINITY]),
            None
        );
    }

    #[test]
    fn a_figure_is_flagged_only_past_the_wider_band() {
        let figure =
            |name: &str, samples: Vec<f64>| Figure::new(name, "µs", samples).expect("figure");
        let committed = [
            figure("cpu", vec![100.0, 95.0, 105.0]),
            figure("p99", vec![10.0, 10.0, 10.0]),
            figure("gone", vec![1.0]),
            figure("zero", vec![0.0, 0.0]),
        ];
        let now = [
            // 8% slower, past both runs' bands (±5% and ±1%): flagged.
            figure("cpu", vec![108.0, 107.0, 109.0]),
            // 10% better, but this run's own samples strayed 30%: within the band.
            figure("p99", vec![9.0, 6.3, 11.7]),
            figure("new", vec![1.0]),
            figure("zero", vec![3.0, 3.0]),
        ];
        let compared = compare(&committed, &now);
        assert_eq!(compared.len(), 3, "only figures both runs have");
        assert!(compared[2].moved, "anything from zero is flagged");
        assert!(compared[0].moved, "{:?}", compared[0]);
        assert!((compared[0].change_pct - 8.0).abs() < 1e-9);
        assert!(!compared[1].moved, "{:?}", compared[1]);
        let lines = describe(&compared);
        assert!(lines[0].starts_with("MOVED cpu"), "{}", lines[0]);
        assert!(lines[1].starts_with("      p99"), "{}", lines[1]);
    }

    #[test]
    fn the_committed_runs_spread_widens_the_band() {
        let mut committed = Figure::new("bare", "µs", vec![23.6, 23.4, 23.8]).expect("figure");
        let now = Figure::new("bare", "µs", vec![24.8, 24.7, 24.9]).expect("figure");
        // 5% slower, past both runs' bands (under 1%): flagged without a history.
        assert!(compare(std::slice::from_ref(&committed), std::slice::from_ref(&now))[0].moved);
        // The committed medians before it (docs/benchmarks.json on 2026-12-05) ran from 20.8
        // to 24.8: 20.8 lay 11.9% from the committed 23.6.
        committed.history = vec![21.2, 22.8, 20.8, 21.6, 24.8];
        let spread = committed.run_to_run_pct();
        assert!((spread - 2.8 / 23.6 * 100.0).abs() < 1e-9, "{spread}");
        // A run that repeats one of them is within the noise.
        let repeat = Figure::new("bare", "µs", vec![20.8, 20.8, 20.8]).expect("figure");
        assert!(!compare(std::slice::from_ref(&committed), &[repeat])[0].moved);
        let compared = compare(std::slice::from_ref(&committed), std::slice::from_ref(&now));
        assert!(!compared[0].moved, "{:?}", compared[0]);
        assert!((compared[0].band_pct - committed.run_to_run_pct()).abs() < 1e-9);
        // Past the runs' spread too: flagged.
        let slower = Figure::new("bare", "µs", vec![27.0, 27.0, 27.0]).expect("figure");
        assert!(compare(&[committed.clone()], &[slower])[0].moved);
        // A history without a number in it is no spread.
        committed.history = vec![f64::NAN];
        assert_eq!(committed.run_to_run_pct(), 0.0);
    }
}
