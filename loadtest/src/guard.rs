//! A bench that guards itself: each figure is measured several times in one run, kept as its
//! median and its noise band (how far the samples strayed from it), and compared with the
//! committed run's (docs/benchmarks.json); a figure whose median moved further than either
//! run's band is flagged.

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
}

impl Figure {
    /// The figure of `samples`, those that are not numbers (a phase with nothing delivered, a
    /// ratio over zero) left out; `None` when none is left, as JSON keeps no NaN.
    pub fn new(name: &str, unit: &str, samples: Vec<f64>) -> Option<Self> {
        let samples: Vec<f64> = samples.into_iter().filter(|s| s.is_finite()).collect();
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => return None,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        let band_pct = sorted
            .iter()
            .map(|s| percent(s - median, median).abs())
            .fold(0.0, f64::max);
        Some(Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            samples,
            median,
            band_pct,
        })
    }
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
    /// The wider of the two runs' bands.
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
            let band_pct = c.band_pct.max(n.band_pct);
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
}
