//! The floor server's steps in `make bench`: topics of its own made, then the floor at the
//! ingress's half rate, each of its round trips alone, and both with the commit after the
//! answer.

use std::time::Duration;

use spillway_kafka::Connection;

use crate::bench::{measure, BenchSettings, Case, Step};
use crate::floor::{FloorSettings, FloorWork};
use crate::headline::{answered_right, repeated};
use crate::server::start_floor;
use crate::signing::SignedSource;

/// The floor's settings, with topics of its own shaped as the sources' (as many, with as many
/// partitions), made here: the sources' topics keep only what `--verify` reconciles.
pub(crate) async fn prepare_floor(
    settings: &BenchSettings,
    connection: &Connection,
    source_topics: usize,
) -> anyhow::Result<FloorSettings> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let topics: Vec<String> = (0..source_topics.max(1))
        .map(|i| format!("floor-{run}-{i}"))
        .collect();
    spillway_kafka::admin::ensure_topics(connection, &topics, settings.partitions, 1).await?;
    let redis_seed = settings
        .redis_nodes
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the floor needs a Redis node"))?;
    Ok(FloorSettings {
        brokers: settings.brokers.clone(),
        redis_seed,
        topics,
        linger: settings.linger,
        work: FloorWork::Both,
    })
}

/// The floor at `half` ([`crate::headline::REPEATS`] times: the median of their CPU per
/// request is returned), then the claim alone, the produce alone, and both with the commit
/// after the answer (steps named "half", "claim only", "produce only" and "committed"). A
/// step with a wrong answer fails the run, as a floor that failed would look cheap.
pub(crate) async fn measure_floor(
    settings: &BenchSettings,
    floor_settings: &FloorSettings,
    sources: &[SignedSource],
    half: f64,
    steps: &mut Vec<Step>,
) -> anyhow::Result<f64> {
    let mut floor_cpu = 0.0;
    for (work, name) in [
        (FloorWork::Both, "half"),
        (FloorWork::Claim, "claim only"),
        (FloorWork::Produce, "produce only"),
        (FloorWork::Committed, "committed"),
    ] {
        let floor_settings = FloorSettings {
            work,
            ..floor_settings.clone()
        };
        let floor = start_floor(&settings.loadgen_bin, &floor_settings).await?;
        let case = |name, duration| Case {
            target: "floor",
            name,
            rate: half,
            duration,
            duplicates: 0.0,
            verify_in: None,
        };
        // A first short step opens the connections and the producer's first batches, as the
        // ingress's sweep did before its half-rate steps; it is not kept.
        let warm_up = case("warm-up", Duration::from_secs(2));
        answered_right(&measure(settings, &floor, sources, warm_up).await?)?;
        if work == FloorWork::Both {
            let medians = repeated(
                settings,
                &floor,
                sources,
                || case(name, settings.step),
                answered_right,
                steps,
            )
            .await;
            floor.stop().await;
            floor_cpu = medians?.cpu_us_per_req;
        } else {
            let step = measure(settings, &floor, sources, case(name, settings.step)).await;
            floor.stop().await;
            let step = step?;
            answered_right(&step)?;
            steps.push(step);
        }
    }
    Ok(floor_cpu)
}
