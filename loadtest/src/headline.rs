//! The headline's CPU figures: the ingress, the floor and the bare server each measured
//! [`REPEATS`] times at the ingress's half rate, and the medians compared. One step of a
//! shared machine is noisy (in one run the ingress's sweep cost 145 µs per request at 3,000/s
//! and 95 µs at 4,000/s), and CPU per request falls as the rate rises, so the servers are
//! compared at the same rate and on medians, not on single steps at neighbouring rates.

use crate::bench::{measure, BenchSettings, Case, Step};
use crate::guard::median;
use crate::server::Server;
use crate::signing::SignedSource;

/// Steps of each server at the half rate whose medians the headline takes.
pub(crate) const REPEATS: usize = 3;

/// The medians of one server's repeated steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Medians {
    pub(crate) cpu_us_per_req: f64,
    pub(crate) p99_ms: f64,
}

/// [`REPEATS`] steps of `case` on `server`, each passed to `check` (an error ends the run)
/// and kept in `steps`, and their medians.
pub(crate) async fn repeated<'a>(
    settings: &BenchSettings,
    server: &Server,
    sources: &[SignedSource],
    case: impl Fn() -> Case<'a>,
    check: impl Fn(&Step) -> anyhow::Result<()>,
    steps: &mut Vec<Step>,
) -> anyhow::Result<Medians> {
    let mut measured = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let step = measure(settings, server, sources, case()).await?;
        check(&step)?;
        measured.push(step);
    }
    let medians = medians_of(&measured);
    steps.extend(measured);
    Ok(medians)
}

/// Every request of `step` got the right answer and nothing it wrote is missing from Kafka
/// (`lost` is `None` where nothing is reconciled: the floor, the bare server). A step that
/// answered wrongly or lost events would look cheap, so no figures are taken from it.
pub(crate) fn answered_right(step: &Step) -> anyhow::Result<()> {
    anyhow::ensure!(
        step.lost.unwrap_or(0) == 0 && step.unexpected + step.errors == 0,
        "the {}'s {} step at {}/s answered wrongly ({} unexpected, {} errors, lost {:?}: {:?}): no figures from it",
        step.target,
        step.case,
        step.rate,
        step.unexpected,
        step.errors,
        step.lost,
        step.answers
    );
    Ok(())
}

fn medians_of(steps: &[Step]) -> Medians {
    Medians {
        cpu_us_per_req: median(steps.iter().map(|s| s.cpu_us_per_req)).unwrap_or_default(),
        p99_ms: median(steps.iter().map(|s| s.p99_ms)).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(cpu_us_per_req: f64, p99_ms: f64) -> Step {
        Step {
            target: "ingress".into(),
            case: "half".into(),
            rate: 3500.0,
            achieved: 3500.0,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms,
            p999_ms: 4.0,
            max_ms: 5.0,
            requests: 35_000,
            unexpected: 0,
            errors: 0,
            lost: Some(0),
            cpu_us_per_req,
            rss_mib: 40.0,
            held: true,
            answers: Default::default(),
        }
    }

    #[test]
    fn an_outlying_step_does_not_move_the_medians() {
        let steps = [step(96.0, 14.6), step(145.3, 9.9), step(94.5, 11.0)];
        assert_eq!(
            medians_of(&steps),
            Medians {
                cpu_us_per_req: 96.0,
                p99_ms: 11.0
            }
        );
    }
}
