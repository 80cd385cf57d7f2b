//! One-shot jobs that a deploy runs (`deploy.once`, an instance's `release` jobs such as
//! `manage.py migrate`): started like a worker of the instance (its environment and secrets,
//! its user, umask and limits, its own process group, tagged, in a cgroup-free way), but in the
//! release directory, without a socket, and waited for. Each line of its output goes to the
//! instance's log as it comes; the last ones are kept for the error message.

use crate::contain;
use crate::instance::{spawn_spec, Output};
use crate::spawn::{self, Containment};
use cts_config::InstanceConfig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Lines of a job's output kept for its report.
const TAIL: usize = 20;

/// Jobs started so far, for their tags.
static JOBS: AtomicU64 = AtomicU64::new(0);

/// How a job ended.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// It exited with status 0.
    pub ok: bool,
    /// "exited with status 1", "killed by SIGKILL".
    pub exit: String,
    /// Its last lines of output (stdout and stderr as they came).
    pub tail: Vec<String>,
}

/// Kills the job's process group if the job is abandoned (ctsd shutting down mid-deploy); the
/// orphan reaper then reaps it.
struct Abandon(Option<(u32, String)>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some((pid, name)) = self.0.take() {
            tracing::warn!("{name} (pid {pid}) abandoned: ctsd is stopping; killed");
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            contain::reaped(pid);
        }
    }
}

/// SIGTERM, then SIGKILL this much later, to a job past its timeout.
const KILL_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the output of what a finished job left behind is still read.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `argv` as a job of `config`'s instance in `dir`, and waits for it, at most `timeout`
/// (then SIGTERM to its process group, SIGKILL 10 s later). `name` labels its lines in `output`
/// (`release[0] python`).
///
/// # Errors
///
/// Why it could not be started (no such program, unknown user, ...).
pub async fn run_job(
    config: &InstanceConfig,
    argv: &[String],
    dir: &Path,
    shim: &Path,
    name: &str,
    output: Arc<dyn Output>,
    timeout: Option<std::time::Duration>,
) -> Result<JobReport, String> {
    let mut pool = config.pool.clone();
    pool.command = argv.to_vec();
    pool.cwd = Some(dir.to_path_buf());
    cts_config::find_program(&pool).map_err(|e| e.message)?;
    let spec = spawn_spec(config, &pool, shim)?;
    let n = JOBS.fetch_add(1, Ordering::Relaxed);
    // `@` is in no program name: a job's tag never matches a program's worker's.
    let tag = contain::tag(&format!("{}:@job", config.key), n);
    let mut child = spawn::spawn(&spec, None, None, &Containment { tag: &tag })
        .map_err(|e| format!("{}: {e}", spawn::program_name(argv)))?;
    let Some(pid) = child.id() else {
        return Err("the job exited before it could be watched".into());
    };
    contain::watching(pid);
    let mut guard = Abandon(Some((pid, format!("{} {name}", config.key))));
    output.event(&format!("{name} started (pid {pid}): {}", argv.join(" ")));
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
    let out = child
        .stdout
        .take()
        .map(|o| tokio::spawn(lines(o, name.to_owned(), output.clone(), tail.clone())));
    let err = child
        .stderr
        .take()
        .map(|e| tokio::spawn(lines(e, name.to_owned(), output.clone(), tail.clone())));
    let mut timed_out = None;
    let status = match timeout {
        None => child.wait().await,
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                timed_out = Some(limit);
                output.event(&format!(
                    "{name} still running after {}: stopping it",
                    crate::human(limit)
                ));
                let group = Pid::from_raw(pid as i32);
                let _ = killpg(group, Signal::SIGTERM);
                match tokio::time::timeout(KILL_AFTER, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        let _ = killpg(group, Signal::SIGKILL);
                        child.wait().await
                    }
                }
            }
        },
    };
    guard.0 = None;
    contain::reaped(pid);
    // What it left behind goes with it, as a worker's does (its process group, then anything
    // carrying its tag), so that its pipes close and the deploy goes on.
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let key = tag_key(&tag);
    let _ = tokio::task::spawn_blocking(move || contain::kill_orphans_of(&key, n)).await;
    for reader in [out, err].into_iter().flatten() {
        if tokio::time::timeout(DRAIN, reader).await.is_err() {
            output.event(&format!(
                "{name}: output still open after it exited; not read further"
            ));
        }
    }
    let exit = match status {
        Ok(st) => crate::watcher::describe(st),
        Err(e) => return Err(format!("could not be waited for: {e}")),
    };
    let description = match timed_out {
        Some(limit) => format!(
            "timed out after {} (deploy.job_timeout) and was stopped: {}",
            crate::human(limit),
            exit.description
        ),
        None => exit.description,
    };
    output.event(&format!("{name} {description}"));
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(JobReport {
        ok: exit.success && timed_out.is_none(),
        exit: description,
        tail: tail.iter().cloned().collect(),
    })
}

/// The key part of a tag `<pid>:<key>:<n>`.
fn tag_key(tag: &str) -> String {
    let rest = tag.split_once(':').map_or(tag, |(_, r)| r);
    rest.rsplit_once(':').map_or(rest, |(k, _)| k).to_owned()
}

/// Forwards each line of `pipe` to `output` and keeps the last ones in `tail`.
async fn lines(
    pipe: impl AsyncRead + Unpin,
    name: String,
    output: Arc<dyn Output>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = String::from_utf8_lossy(text).into_owned();
        output.event(&format!("{name}: {line}"));
        let mut t = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if t.len() == TAIL {
            t.pop_front();
        }
        t.push_back(line);
    }
}
