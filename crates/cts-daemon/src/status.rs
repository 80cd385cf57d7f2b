//! The supervisor's answers in the wire's terms: an instance's status, and the outcome of an
//! operation on it. Used by the control handlers and by reload; uses nothing of the daemon.

use cts_config::InstanceConfig;
use cts_proto as proto;
use cts_supervisor as sup;

/// What the daemon knows of an instance besides its actor's status.
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    /// Bytes its logs could not write.
    pub log_dropped_bytes: u64,
    /// Whether its port accepts connections.
    pub listening: bool,
    /// The file's `workers`.
    pub file_workers: u32,
}

/// The wire form of one instance's status; `None` (the actor has ended) reads as stopped.
pub fn to_proto(
    cfg: &InstanceConfig,
    status: Option<&sup::Status>,
    extra: Extra,
) -> proto::InstanceStatus {
    let base = proto::InstanceStatus {
        key: cfg.key.as_str().into(),
        name: cfg.name.clone(),
        port: cfg.port,
        prefix: cfg.prefix.as_str().to_owned(),
        currency: cfg.currency.as_str().to_owned(),
        state: proto::InstanceState::Stopped,
        desired_workers: cfg.pool.workers,
        ready_workers: 0,
        restarts: 0,
        uptime_secs: None,
        last_exit: None,
        workers: Vec::new(),
        log_dropped_bytes: extra.log_dropped_bytes,
        strays: 0,
        listening: extra.listening,
        file_workers: (extra.file_workers != cfg.pool.workers).then_some(extra.file_workers),
        programs: Vec::new(),
        release: None,
    };
    let Some(s) = status else { return base };
    proto::InstanceStatus {
        file_workers: (extra.file_workers != s.desired).then_some(extra.file_workers),
        state: state(s.state),
        desired_workers: s.desired,
        ready_workers: s.ready,
        restarts: s.restarts,
        uptime_secs: s.running_since.map(|t| t.elapsed().as_secs()),
        last_exit: s.last_exit.clone(),
        workers: workers(s),
        ..base
    }
}

/// The wire form of one program's status; `None` (its actor has ended) reads as stopped.
pub fn program_to_proto(
    program: &cts_config::ProgramConfig,
    status: Option<&sup::Status>,
    log_dropped_bytes: u64,
    file_workers: u32,
) -> proto::ProgramStatus {
    let desired = status.map_or(program.pool.workers, |s| s.desired);
    proto::ProgramStatus {
        name: program.name.to_string(),
        singleton: program.singleton,
        state: status.map_or(proto::InstanceState::Stopped, |s| state(s.state)),
        desired_workers: desired,
        ready_workers: status.map_or(0, |s| s.ready),
        restarts: status.map_or(0, |s| s.restarts),
        uptime_secs: status.and_then(|s| s.running_since.map(|t| t.elapsed().as_secs())),
        last_exit: status.and_then(|s| s.last_exit.clone()),
        workers: status.map(workers).unwrap_or_default(),
        log_dropped_bytes,
        file_workers: (file_workers != desired).then_some(file_workers),
        release: None,
        strays: 0,
    }
}

fn state(s: sup::InstanceState) -> proto::InstanceState {
    match s {
        sup::InstanceState::Starting => proto::InstanceState::Starting,
        sup::InstanceState::Running => proto::InstanceState::Running,
        sup::InstanceState::Stopping => proto::InstanceState::Stopping,
        sup::InstanceState::Stopped => proto::InstanceState::Stopped,
        sup::InstanceState::Failing => proto::InstanceState::Failing,
    }
}

fn workers(s: &sup::Status) -> Vec<proto::WorkerStatus> {
    s.workers
        .iter()
        .map(|w| proto::WorkerStatus {
            pid: w.pid,
            slot: w.slot,
            state: match w.state {
                sup::WorkerState::Starting => proto::WorkerState::Starting,
                sup::WorkerState::Ready => proto::WorkerState::Ready,
                sup::WorkerState::Stopping => proto::WorkerState::Stopping,
            },
            uptime_secs: w.started.elapsed().as_secs(),
            rss_kib: None,
            pss_kib: None,
        })
        .collect()
}

/// One instance's outcome on the wire, from the actor's `Ok(what was done)` or
/// `Err(why not)`; the refusal's kind becomes the wire's [`proto::Failure`].
pub fn outcome(instance: &str, r: sup::Outcome) -> proto::Outcome {
    use proto::Failure;
    use sup::Refusal;
    match r {
        Ok(done) => proto::Outcome::done(instance, done.to_string()),
        Err(why) => {
            let failure = match why {
                Refusal::ShuttingDown => Failure::ShuttingDown,
                Refusal::IsStopped(_) | Refusal::StoppedMeanwhile => Failure::Stopped,
                Refusal::RolledBack(_) => Failure::RolledBack,
                Refusal::Failing(_) => Failure::Failing,
                Refusal::StartedMeanwhile
                | Refusal::Singleton(_)
                | Refusal::JobFailed(_)
                | Refusal::Gone(_)
                | Refusal::Busy(_) => Failure::Other,
            };
            proto::Outcome::failed(instance, failure, why.to_string())
        }
    }
}

/// Lines of a log appended to a failed restart's or deploy's message.
const TAIL_LINES: usize = 10;

/// `message`, then the last lines of the log at `path` (read backwards, off the runtime
/// thread).
pub async fn with_log_tail(
    message: String,
    path: &std::path::Path,
    tails: &crate::output::Tails,
) -> String {
    let tail = log_tail(&message, path, tails).await;
    message + &tail
}

/// What [`with_log_tail`] appends to `message`: the failed worker's own stderr when the message
/// names it and it wrote some (under load the log ends with other workers' request lines),
/// else the last lines of the log at `path`; empty when there are none.
pub async fn log_tail(
    message: &str,
    path: &std::path::Path,
    tails: &crate::output::Tails,
) -> String {
    let own = failed_pid(message).and_then(|p| Some((p, tails.lines(p, TAIL_LINES)?)));
    if let Some((pid, lines)) = own {
        let lines: Vec<String> = lines.iter().map(|l| format!("  {l}")).collect();
        return format!(
            "\nlast lines pid {pid} wrote to stderr:\n{}",
            lines.join("\n")
        );
    }
    let owned = path.to_path_buf();
    let tail = tokio::task::spawn_blocking(move || cts_logs::tail::tail(&owned, TAIL_LINES))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    if tail.is_empty() {
        return tail;
    }
    format!("\nlast lines of {}:\n{tail}", path.display())
}

/// The pid a failure message names (`new worker 0 pid 4711 exited ...`).
fn failed_pid(message: &str) -> Option<u32> {
    let mut words = message.split_whitespace();
    while let Some(w) = words.next() {
        if w == "pid" {
            return words.next()?.trim_end_matches([',', ';', ':']).parse().ok();
        }
    }
    None
}

/// Fills in what `/proc` tells, off the runtime thread (the kernel walks each process's
/// mappings; the strays take one scan of every process): every worker's RSS and PSS, and each
/// pool's strays.
pub async fn with_proc_figures(
    mut report: Vec<proto::InstanceStatus>,
) -> Vec<proto::InstanceStatus> {
    tokio::task::spawn_blocking(move || {
        let strays = cts_supervisor::contain::strays();
        let count = |key: &str| strays.get(key).copied().unwrap_or(0);
        for inst in &mut report {
            inst.strays = count(&inst.key.0);
            for p in &mut inst.programs {
                p.strays = count(&format!("{}:{}", inst.key, p.name));
            }
            let pools = std::iter::once(&mut inst.workers)
                .chain(inst.programs.iter_mut().map(|p| &mut p.workers));
            for w in pools.flatten() {
                if let Some((rss, pss)) = memory(w.pid) {
                    (w.rss_kib, w.pss_kib) = (Some(rss), Some(pss));
                }
            }
        }
        report
    })
    .await
    .unwrap_or_default()
}

/// `Rss` and `Pss` of `pid`, KiB.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_failed_pid_is_read_from_the_message() {
        let m = "new worker 0 pid 4711 exited with status 1 before it was ready; restart stopped";
        assert_eq!(super::failed_pid(m), Some(4711));
        assert_eq!(super::failed_pid("no worker named"), None);
    }
}
