//! `make bench-quick`, and the noise bands of `make bench`: the ingress at one rate (the half
//! rate of the committed run), the bare and floor servers at the same rate, and the worker's
//! live phase (202 to receipt), each step repeated, turned into figures with their bands
//! ([`guard`]) and compared with the committed run's figures.
//!
//! [`guard`]: crate::guard

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bench::{measure, Case, Step};
use crate::floor_steps::prepare_floor;
use crate::guard::{compare, Comparison, Figure};
use crate::headline::answered_right;
use crate::server::{start_bare, start_floor, start_ingress};
use crate::stage::{Stage, StageSettings};
use crate::worker::{Live, Protocol, Rig, WARM_UP};

/// What the quick form runs with: the stage (at the committed run's half rate, so figures
/// compare), how often each step repeats, and the committed figures.
#[derive(Debug, Clone)]
pub struct QuickSettings {
    pub stage: StageSettings,
    pub repeats: usize,
    /// docs/benchmarks.json: the figures this run is compared with, if it has any.
    pub committed: Option<PathBuf>,
}

/// The figures, their steps, and the comparison with the committed run.
#[derive(Debug, Clone, Serialize)]
pub struct QuickResults {
    pub rate: f64,
    pub repeats: usize,
    pub figures: Vec<Figure>,
    pub comparison: Vec<Comparison>,
    pub steps: Vec<Step>,
    pub live: Vec<Live>,
}

pub async fn quick(settings: &QuickSettings) -> anyhow::Result<QuickResults> {
    let Stage {
        bench,
        config_path,
        connection,
        topics,
        sources,
    } = Stage::prepare(&settings.stage).await?;
    let stage = &settings.stage;
    // The three servers run throughout, and each repeat measures one after the other, so that
    // the i-th ratios compare steps a few seconds apart; a server's first step is thrown away
    // (connections, the producer's and the cluster client's first round trips).
    let ingress = start_ingress(
        &stage.spillway_bin,
        &config_path,
        &stage.dir.join("ingress.log"),
    )
    .await?;
    let bare = start_bare(&stage.loadgen_bin).await?;
    let floor_settings = prepare_floor(&bench, &connection, topics.len()).await?;
    let floor = start_floor(&stage.loadgen_bin, &floor_settings).await?;
    let mut steps = Vec::new();
    for repeat in 0..=settings.repeats {
        let duration = if repeat == 0 { WARM_UP } else { stage.step };
        for (target, server, verify_in) in [
            ("ingress", &ingress, Some((&connection, topics.as_slice()))),
            ("bare", &bare, None),
            ("floor", &floor, None),
        ] {
            let case = Case {
                target,
                name: "quick",
                rate: stage.rate,
                duration,
                duplicates: 0.0,
                verify_in,
            };
            let step = measure(&bench, server, &sources, case).await?;
            answered_right(&step)?;
            if repeat > 0 {
                steps.push(step);
            }
        }
    }
    ingress.stop().await;
    bare.stop().await;
    floor.stop().await;

    let rig = Rig::start(
        &stage.spillway_bin,
        &stage.brokers,
        &stage.redis_nodes,
        &stage.dir.join("worker"),
        Protocol::Http1,
    )
    .await?;
    let mut worker = rig.spawn_worker("worker-live");
    worker.admin_addr().await;
    let pid = i32::try_from(worker.pid())?;
    rig.live(pid, stage.rate, WARM_UP, 99).await?;
    let mut live = Vec::new();
    for seed in 0..settings.repeats {
        live.push(rig.live(pid, stage.rate, stage.step, seed as u64).await?);
    }
    let _ = worker.terminate_and_wait();
    rig.stop().await;

    let figures = figures(&steps, &live);
    let comparison = match &settings.committed {
        Some(path) if path.exists() => compare(&committed_figures(path)?, &figures),
        _ => Vec::new(),
    };
    Ok(QuickResults {
        rate: stage.rate,
        repeats: settings.repeats,
        figures,
        comparison,
        steps,
        live,
    })
}

/// The guarded figures from the repeated steps: the i-th ingress, bare and floor steps pair
/// up for the ratios.
pub fn figures(steps: &[Step], live: &[Live]) -> Vec<Figure> {
    let of = |target: &str, value: fn(&Step) -> f64| -> Vec<f64> {
        steps
            .iter()
            .filter(|s| s.target == target)
            .map(value)
            .collect()
    };
    let ratio = |over: &[f64], under: &[f64]| -> Vec<f64> {
        over.iter().zip(under).map(|(o, u)| o / u).collect()
    };
    let ingress_cpu = of("ingress", |s| s.cpu_us_per_req);
    let bare_cpu = of("bare", |s| s.cpu_us_per_req);
    let floor_cpu = of("floor", |s| s.cpu_us_per_req);
    [
        Figure::new(
            "ingress CPU / bare CPU",
            "x",
            ratio(&ingress_cpu, &bare_cpu),
        ),
        Figure::new("floor CPU / bare CPU", "x", ratio(&floor_cpu, &bare_cpu)),
        Figure::new(
            "ingress CPU / floor CPU",
            "x",
            ratio(&ingress_cpu, &floor_cpu),
        ),
        Figure::new("ingress CPU per request", "µs", ingress_cpu),
        Figure::new("bare CPU per request", "µs", bare_cpu),
        Figure::new("floor CPU per request", "µs", floor_cpu),
        Figure::new("ingress p99", "ms", of("ingress", |s| s.p99_ms)),
        Figure::new(
            "202 to receipt p50",
            "ms",
            live.iter().map(|l| l.p50_ms).collect(),
        ),
        Figure::new(
            "202 to receipt p99",
            "ms",
            live.iter().map(|l| l.p99_ms).collect(),
        ),
        Figure::new(
            "worker CPU per delivery",
            "µs",
            live.iter().map(|l| l.cpu_us_per_delivery).collect(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The figures of docs/benchmarks.json (none if it has none yet).
pub fn committed_figures(path: &Path) -> anyhow::Result<Vec<Figure>> {
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    Ok(match value.get("figures") {
        Some(figures) => serde_json::from_value(figures.clone())?,
        None => Vec::new(),
    })
}
