//! `ctsctl deploy RELEASE_DIR`: moving instances onto a prepared release directory, inside ctsd
//! (the client may go away), one deploy at a time.
//!
//! 1. The `deploy.once` jobs run in the release directory with the first instance's
//!    environment; a failure stops everything before any instance moves.
//! 2. Instance by instance (the canary alone first, then `batch` at a time): its `release`
//!    jobs run in the release directory with its environment and user; then each of its pools
//!    is pinned to the release and rolled, web first and singletons last. A failed job stops
//!    the deploy before anything of that instance moved; a pool that does not become ready
//!    rolls the instance back to the release it had, and stops the deploy. Instances already
//!    moved stay moved (migrations are never undone).
//! 3. When every instance whose `cwd` is a given symlink runs the release, that symlink is
//!    switched to it atomically (a new link renamed over the old).
//!
//! Crash replacements start in the release their pool is pinned to, never in a half-switched
//! one. Restart, reload, scale, start and stop are refused while a deploy runs.

use crate::registry::InstanceEntry;
use cts_proto::{Failure, Outcome};
use cts_supervisor::InstanceHandle;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// At most one deploy: what the one in progress is doing, for the refusals.
#[derive(Debug, Default)]
pub struct DeployLock {
    current: Mutex<Option<String>>,
}

/// Held by the deploy in progress; dropping it ends the deploy for the lock.
#[derive(Debug)]
pub struct DeployGuard(Arc<DeployLock>);

impl Drop for DeployGuard {
    fn drop(&mut self) {
        *self
            .0
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl DeployLock {
    /// Takes the lock for a deploy to `release`.
    ///
    /// # Errors
    ///
    /// The refusal, when another deploy runs.
    pub fn begin(self: &Arc<Self>, release: &Path) -> Result<DeployGuard, String> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(busy) = current.as_ref() {
            return Err(format!("{busy}; one deploy at a time"));
        }
        *current = Some(format!(
            "a deploy to {} is in progress: wait for it to finish (`ctsctl status` shows each \
             instance's release)",
            release.display()
        ));
        Ok(DeployGuard(self.clone()))
    }

    /// Takes the lock for something else that must not overlap a deploy or a change of the
    /// pools (`what`: "an upgrade of ctsd is in progress").
    ///
    /// # Errors
    ///
    /// The refusal, when a deploy (or another such thing) runs.
    pub fn begin_other(self: &Arc<Self>, what: &str) -> Result<DeployGuard, String> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(busy) = current.as_ref() {
            return Err(busy.clone());
        }
        *current = Some(format!("{what}: try again in a moment"));
        Ok(DeployGuard(self.clone()))
    }

    /// Why a change is refused now (a deploy runs), if it is.
    pub fn busy(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What a deploy does, decided before it starts.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The release directory.
    pub release: PathBuf,
    /// The `deploy:` section: the once jobs, the job timeout.
    pub settings: cts_config::DeploySettings,
    /// The instances in the order they move: each inner list moves at once.
    pub batches: Vec<Vec<InstanceEntry>>,
    /// Every instance of the configuration (for the symlink switch).
    pub all: Vec<InstanceEntry>,
    /// The ctsd binary, exec shim of the jobs.
    pub shim: PathBuf,
}

/// Sends progress lines to the client (if it is still there) and to ctsd's log.
#[derive(Clone)]
pub struct Steps(pub UnboundedSender<String>);

impl Steps {
    fn say(&self, text: String) {
        tracing::info!("deploy: {text}");
        let _ = self.0.send(text);
    }
}

impl Plan {
    /// The plan as lines, for `--dry-run`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let release = self.release.display();
        for (i, job) in self.settings.once.iter().enumerate() {
            lines.push(format!("once[{i}]: run `{}` in {release}", job.join(" ")));
        }
        for (n, batch) in self.batches.iter().enumerate() {
            let keys: Vec<&str> = batch.iter().map(|e| e.config.key.as_str()).collect();
            lines.push(format!("batch {}: {}", n + 1, keys.join(", ")));
            for e in batch {
                let key = &e.config.key;
                for (i, job) in e.config.release.iter().enumerate() {
                    lines.push(format!("  {key}: release[{i}]: run `{}`", job.join(" ")));
                }
                let pools: Vec<String> = e.pools().iter().map(label).collect();
                lines.push(format!(
                    "  {key}: roll {} onto {release}",
                    pools.join(", then ")
                ));
            }
        }
        for (link, _) in symlinks(&self.all) {
            lines.push(format!(
                "then switch {} to {release} once every instance using it runs it",
                link.display()
            ));
        }
        lines
    }
}

/// The symlinks among the instances' `cwd`s, each with the instances that use it.
fn symlinks(all: &[InstanceEntry]) -> Vec<(PathBuf, Vec<InstanceEntry>)> {
    let mut links: Vec<(PathBuf, Vec<InstanceEntry>)> = Vec::new();
    for e in all {
        let Some(cwd) = e.config.pool.cwd.clone() else {
            continue;
        };
        if !std::fs::symlink_metadata(&cwd).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        match links.iter_mut().find(|(l, _)| *l == cwd) {
            Some((_, users)) => users.push(e.clone()),
            None => links.push((cwd, vec![e.clone()])),
        }
    }
    links
}

/// Runs `plan`; one outcome per instance that was to move (and `deploy` for what concerns the
/// whole: the once jobs, the symlink).
pub async fn run(plan: Plan, steps: Steps) -> Vec<Outcome> {
    let started = Instant::now();
    let release = plan.release.clone();
    let mut outcomes = Vec::new();
    if let Some(first) = plan.all.first() {
        for (i, job) in plan.settings.once.iter().enumerate() {
            let name = format!("once[{i}]");
            if let Err(why) = job_step(first, job, &plan, &name, &steps).await {
                outcomes.push(Outcome::failed("deploy", Failure::Other, why));
                for e in plan.batches.iter().flatten() {
                    outcomes.push(not_moved(e));
                }
                return outcomes;
            }
        }
    }
    let mut stopped = false;
    for batch in &plan.batches {
        if stopped {
            outcomes.extend(batch.iter().map(not_moved));
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for (order, e) in batch.iter().enumerate() {
            let (e, plan, steps) = (e.clone(), plan.clone(), steps.clone());
            set.spawn(async move { (order, move_instance(&e, &plan, &steps).await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => {
                    let why = format!("an instance's deploy ended abnormally: {e}");
                    steps.say(why.clone());
                    results.push((usize::MAX, Outcome::failed("deploy", Failure::Other, why)));
                }
            }
        }
        results.sort_by_key(|(order, _)| *order);
        stopped = results.iter().any(|(_, r)| !r.ok);
        outcomes.extend(results.into_iter().map(|(_, r)| r));
    }
    if !stopped {
        for (link, users) in symlinks(&plan.all) {
            let behind: Vec<&str> = users
                .iter()
                .filter(|e| e.handle.release().as_deref() != Some(release.as_path()))
                .map(|e| e.config.key.as_str())
                .collect();
            if !behind.is_empty() {
                steps.say(format!(
                    "{} not switched: {} still run another release",
                    link.display(),
                    behind.join(", ")
                ));
                continue;
            }
            match switch(&link, &release) {
                Ok(()) => steps.say(format!("{} → {}", link.display(), release.display())),
                Err(e) => {
                    let why = format!("cannot switch {}: {e}", link.display());
                    steps.say(why.clone());
                    outcomes.push(Outcome::failed("deploy", Failure::Other, why));
                }
            }
        }
        for e in plan.batches.iter().flatten() {
            let cwd = e.config.pool.cwd.as_ref();
            if cwd.is_some_and(|c| !std::fs::symlink_metadata(c).is_ok_and(|m| m.is_symlink())) {
                steps.say(format!(
                    "{}: cwd {} is not a symlink: it runs {} until ctsd restarts",
                    e.config.key,
                    cwd.map_or(String::new(), |c| c.display().to_string()),
                    release.display()
                ));
            }
        }
    }
    steps.say(format!(
        "{} after {:.1} s",
        if outcomes.iter().all(|o| o.ok) {
            "done"
        } else {
            "stopped"
        },
        started.elapsed().as_secs_f64()
    ));
    outcomes
}

/// An instance the deploy did not get to.
fn not_moved(e: &InstanceEntry) -> Outcome {
    Outcome::failed(
        e.config.key.as_str(),
        Failure::Other,
        "not moved: the deploy stopped before it",
    )
}

/// Runs one job of `e` in the release; `Err` with the sentence to report when it fails.
async fn job_step(
    e: &InstanceEntry,
    job: &[String],
    plan: &Plan,
    name: &str,
    steps: &Steps,
) -> Result<(), String> {
    let key = e.config.key.as_str();
    let t = Instant::now();
    steps.say(format!("{key}: {name}: `{}` …", job.join(" ")));
    let output: Arc<dyn cts_supervisor::Output> = e.output.clone();
    let report = cts_supervisor::job::run_job(
        &e.config,
        job,
        &plan.release,
        &plan.shim,
        name,
        output,
        plan.settings.job_timeout,
    )
    .await
    .map_err(|why| format!("{name} `{}` could not start: {why}", job.join(" ")))?;
    let secs = t.elapsed().as_secs_f64();
    if report.ok {
        steps.say(format!("{key}: {name}: ok ({secs:.1} s)"));
        return Ok(());
    }
    let tail: Vec<String> = report.tail.iter().map(|l| format!("  {l}")).collect();
    let why = format!(
        "{name} `{}` {} after {secs:.1} s; its last lines:\n{}",
        job.join(" "),
        report.exit,
        tail.join("\n")
    );
    steps.say(format!("{key}: {name}: {}", report.exit));
    Err(why)
}

/// Release jobs, then every pool of `e` onto the release; rolled back when a pool fails.
async fn move_instance(e: &InstanceEntry, plan: &Plan, steps: &Steps) -> Outcome {
    let key = e.config.key.as_str();
    let t = Instant::now();
    for (i, job) in e.config.release.iter().enumerate() {
        if let Err(why) = job_step(e, job, plan, &format!("release[{i}]"), steps).await {
            return Outcome::failed(
                key,
                Failure::Other,
                format!("{why}\nnothing of {key} was moved"),
            );
        }
    }
    let mut moved: Vec<(String, InstanceHandle, Option<PathBuf>)> = Vec::new();
    for pool in e.pools() {
        let (name, handle) = (label(&pool), pool.handle.clone());
        let before = handle.release();
        let rolled = Instant::now();
        let r = handle.release_to(Some(plan.release.clone()), true).await;
        match r {
            Ok(done) => {
                let secs = rolled.elapsed().as_secs_f64();
                steps.say(format!("{name}: {done} ({secs:.1} s)"));
                moved.push((name, handle, before));
            }
            Err(why) => {
                steps.say(format!("{name}: {why}; rolling {key} back"));
                // Read now: the roll back writes more lines after the failed worker's.
                let tail =
                    crate::status::log_tail(&why.to_string(), pool.log.path(), &pool.output.tails)
                        .await;
                // The failed pool first (a surge pool's old workers still serve, but it may
                // have replaced some; a singleton's old process was stopped), then the ones
                // already moved, in reverse.
                let failed = std::iter::once((name.clone(), handle, before));
                let mut back = Vec::new();
                for (n, h, old) in failed.chain(moved.into_iter().rev()) {
                    let r = h.release_to(old.clone(), true).await;
                    back.push(match r {
                        Ok(_) => format!("{n} back on {}", show(old.as_deref())),
                        Err(e) => format!("{n} not rolled back: {e}"),
                    });
                }
                let failure = match why {
                    cts_supervisor::Refusal::ShuttingDown => Failure::ShuttingDown,
                    _ => Failure::RolledBack,
                };
                let message = format!(
                    "{name} did not become ready on {}: {why}; {}{tail}",
                    plan.release.display(),
                    back.join(", ")
                );
                return Outcome::failed(key, failure, message);
            }
        }
    }
    Outcome::done(
        key,
        format!(
            "on {} after {:.1} s",
            plan.release.display(),
            t.elapsed().as_secs_f64()
        ),
    )
}

/// How a deploy names a pool: `jordan:web`, `jordan:celery`.
fn label(pool: &crate::registry::PoolRef) -> String {
    match pool.program {
        None => format!("{}:web", pool.name),
        Some(_) => pool.name.clone(),
    }
}

fn show(p: Option<&Path>) -> String {
    p.map_or_else(|| "its cwd".to_owned(), |p| p.display().to_string())
}

/// Points the symlink `link` at `target` atomically: a new link beside it, renamed over it.
fn switch(link: &Path, target: &Path) -> std::io::Result<()> {
    let name = link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.ctsd-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
