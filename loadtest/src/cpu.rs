//! CPU time of a process (user + system) from /proc: the cost per request that other processes
//! sharing the cores (the broker, Redis, the generator itself) do not distort the way they
//! distort throughput; and its resident memory, now and at its peak.

use std::time::Duration;

/// CPU time `pid` has used so far.
pub fn cpu_time(pid: i32) -> Result<Duration, procfs::ProcError> {
    let stat = procfs::process::Process::new(pid)?.stat()?;
    let ticks = stat.utime + stat.stime;
    Ok(Duration::from_secs_f64(
        ticks as f64 / procfs::ticks_per_second() as f64,
    ))
}

/// Resident memory of `pid`, in bytes.
pub fn resident_bytes(pid: i32) -> Result<u64, procfs::ProcError> {
    let stat = procfs::process::Process::new(pid)?.stat()?;
    Ok(stat.rss * procfs::page_size())
}

/// Peak resident memory of `pid` so far (VmHWM), in bytes.
pub fn peak_resident_bytes(pid: i32) -> Result<u64, procfs::ProcError> {
    let status = procfs::process::Process::new(pid)?.status()?;
    Ok(status.vmhwm.unwrap_or_default() * 1024)
}
