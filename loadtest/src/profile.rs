//! Where the ingress's CPU goes, and how its cost scales with cores: the half-rate step with
//! the ingress free to run on both cores, then pinned to one (`taskset`, every thread), then
//! on both again under `perf record` on the software clock (this kind of machine offers no
//! hardware counters). loadtest/report_profile.py sorts the samples into the parts of a
//! request.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::bench::{measure, Case, Step};
use crate::server::{start_ingress, Server};
use crate::stage::{Stage, StageSettings};
use crate::worker::WARM_UP;

/// Samples per second and thread: about a thousand samples from a ten-second step at the half
/// rate, rarely enough that perf (which shares the two cores) disturbs the step little. At
/// 499 Hz with call chains the sampled step fell behind: 503s and a p99 near a second.
pub const SAMPLE_HZ: u32 = 199;

/// What the profile step runs with.
#[derive(Debug, Clone)]
pub struct ProfileSettings {
    pub stage: StageSettings,
    /// The `perf` binary; `None` skips the sampled step.
    pub perf: Option<PathBuf>,
}

/// The steps, each named for how the ingress ran: "two cores", "one core", "sampled".
#[derive(Debug, Clone, Serialize)]
pub struct ProfileResults {
    pub rate: f64,
    /// `perf record`'s sampling frequency.
    pub sample_hz: u32,
    pub steps: Vec<Step>,
    /// The samples of the "sampled" step (`perf record`'s file), when there is one.
    pub perf_data: Option<PathBuf>,
}

pub async fn profile(settings: &ProfileSettings) -> anyhow::Result<ProfileResults> {
    let stage = &settings.stage;
    let prepared = Stage::prepare(stage).await?;
    let ingress = start_ingress(
        &stage.spillway_bin,
        &prepared.config_path,
        &stage.dir.join("ingress.log"),
    )
    .await?;
    let step = |name, duration| Case {
        target: "ingress",
        name,
        rate: stage.rate,
        duration,
        duplicates: 0.0,
        verify_in: Some((&prepared.connection, prepared.topics.as_slice())),
    };
    let run_step = |case| measure(&prepared.bench, &ingress, &prepared.sources, case);
    run_step(step("warm-up", WARM_UP)).await?;
    let mut steps = vec![run_step(step("two cores", stage.step)).await?];
    // Pinned to the first CPU it may use, then given back the set it had.
    let allowed = allowed_cpus(ingress.pid)?;
    let first = allowed
        .split([',', '-'])
        .next()
        .context("the ingress may run on no CPU")?
        .to_owned();
    pin(&ingress, &first)?;
    let one_core = run_step(step("one core", stage.step)).await;
    pin(&ingress, &allowed)?;
    steps.push(one_core?);
    let perf_data = match &settings.perf {
        Some(perf) => {
            let data = stage.dir.join("ingress.perf.data");
            let recorder = Recorder::start(perf, &ingress, &data)?;
            let sampled = run_step(step("sampled", stage.step)).await;
            recorder.finish().await?;
            steps.push(sampled?);
            Some(data)
        }
        None => None,
    };
    ingress.stop().await;
    // One core may not carry the rate two do, and perf takes some of the two cores: those
    // steps are reported as they went (the page shows their wrong answers), while the step
    // on two cores must be right to be a figure at all.
    for step in steps.iter().filter(|s| s.case == "two cores") {
        anyhow::ensure!(
            step.lost.unwrap_or(0) == 0 && step.unexpected + step.errors == 0,
            "the {} step at {}/s answered wrongly ({} unexpected, {} errors, lost {:?}): no figures from it",
            step.case,
            stage.rate,
            step.unexpected,
            step.errors,
            step.lost
        );
    }
    Ok(ProfileResults {
        rate: stage.rate,
        sample_hz: SAMPLE_HZ,
        steps,
        perf_data,
    })
}

/// The CPUs `pid` may run on, as a list (`0-1`, `0,2`), from /proc.
fn allowed_cpus(pid: i32) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
        .context("no Cpus_allowed_list in /proc/<pid>/status")
}

/// Sets the CPUs every thread of the ingress may run on (`taskset -a`: the runtime's workers,
/// librdkafka's threads, the blocking pool).
fn pin(server: &Server, cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &server.pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    anyhow::ensure!(status.success(), "taskset -c {cpus} failed: {status}");
    Ok(())
}

/// `perf record` attached to the ingress, every thread, with kernel call chains (the user
/// part of a chain is unreliable without frame pointers, so only the sampled function and
/// the kernel frames are read).
struct Recorder {
    child: tokio::process::Child,
}

// === impl Recorder ===

impl Recorder {
    fn start(perf: &Path, server: &Server, data: &Path) -> anyhow::Result<Self> {
        let child = tokio::process::Command::new(perf)
            .args(["record", "--quiet", "-e", "cpu-clock", "-g", "-F"])
            .arg(SAMPLE_HZ.to_string())
            .arg("-p")
            .arg(server.pid.to_string())
            .arg("-o")
            .arg(data)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} record", perf.display()))?;
        Ok(Self { child })
    }

    /// Stops the recording as Ctrl-C would, so perf writes its file out (and then ends by
    /// that same signal, which it raises again once the file is complete).
    async fn finish(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().context("perf has exited already")?;
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -INT {pid} failed: {status}");
        let exited = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("perf did not finish its file within 60 s")??;
        anyhow::ensure!(
            exited.success() || exited.signal() == Some(2),
            "perf record exited with {exited}"
        );
        Ok(())
    }
}
