//! What the daemon gives an instance's actor: its configuration, its socket (or how to bind
//! it), where output goes, and the cgroups to contain its workers in.

use crate::contain::Cgroups;
use crate::core::Settings;
use crate::spawn::{Privileges, SpawnSpec};
use cts_config::{InstanceConfig, PoolSpec, ProgramName};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::process::{ChildStderr, ChildStdout};

/// Where a worker's output and the actor's events about the instance go. The daemon connects
/// this to the instance's log; the supervisor knows nothing about files.
pub trait Output: Send + Sync + 'static {
    /// A worker was started: read its pipes until they close.
    fn attach(&self, slot: u32, pid: u32, stdout: Option<ChildStdout>, stderr: Option<ChildStderr>);
    /// As [`Output::attach`], for a worker whose pipes ctsd made itself (a preload loader
    /// forked it): their read ends.
    fn attach_pipes(&self, slot: u32, pid: u32, stdout: OwnedFd, stderr: OwnedFd);
    /// Something happened to the instance that the operator should find in its log.
    fn event(&self, text: &str);
}

/// What it takes to run one instance.
pub struct Instance {
    /// The instance's validated configuration.
    pub config: InstanceConfig,
    /// Which of its pools this actor runs: `None` for web (the one with the socket), or one of
    /// its `programs`.
    pub program: Option<ProgramName>,
    /// The instance's listening socket, owned by ctsd for its whole life (web only); `None`
    /// for a program, or when its port could not be had at start (another process holds it): then `listen` is tried
    /// before each spawn, and its error is the spawn's, with the usual backoff.
    pub listener: Option<Arc<OwnedFd>>,
    /// Binds the instance's port (again); the daemon's, which also records the new socket.
    pub listen: Listen,
    /// The ctsd binary, run as exec shim for every worker.
    pub shim: PathBuf,
    /// Where output and events go.
    pub output: Arc<dyn Output>,
    /// Per-worker cgroups, where the system gives ctsd some.
    pub cgroups: Option<Arc<Cgroups>>,
    /// The release directory its processes start in, when not its `cwd` resolved now: a
    /// program added to a running instance starts in the release of the instance's web pool.
    pub release: Option<std::path::PathBuf>,
    /// Start the workers at once; otherwise on the first `start` request (a program whose
    /// predecessor of the same name is still stopping).
    pub start_now: bool,
    /// The workers it takes over from the ctsd this one replaced, instead of starting its own.
    pub adopt: Option<crate::handle::Handover>,
    /// Preload mode: the root its loaders are forked from (shared with the instances of the
    /// same code), and the directory of the roots' module lists.
    pub root: Option<(Arc<crate::root::Root>, PathBuf)>,
}

/// How an actor gets a listening socket it does not have: bind the instance's port, or say
/// why not (`cannot listen on 127.0.0.1:8003: Address in use; held by pid 4242 (...)`).
pub type Listen = Arc<dyn Fn() -> Result<Arc<OwnedFd>, String> + Send + Sync>;

/// The pool an actor runs and its decision settings: the instance's web pool, or its program
/// `program`; `None` when the configuration has no such program.
pub(crate) fn unit(
    config: &InstanceConfig,
    program: Option<&ProgramName>,
) -> Option<(PoolSpec, Settings)> {
    match program {
        None => Some((config.pool.clone(), Settings::web(&config.pool))),
        Some(name) => config
            .program(name.as_str())
            .map(|p| (p.pool.clone(), Settings::program(&p.pool, p.singleton))),
    }
}

/// `jordan` for the web pool, `jordan:celery` for a program: how notes, tags and `status` name
/// the pool.
pub fn unit_name(config: &InstanceConfig, program: Option<&ProgramName>) -> String {
    match program {
        None => config.key.to_string(),
        Some(p) => format!("{}:{p}", config.key),
    }
}

/// Builds the spawn spec once: names, privileges and limits are checked here, not per spawn.
pub(crate) fn spawn_spec(
    config: &InstanceConfig,
    pool: &PoolSpec,
    shim: &std::path::Path,
) -> Result<SpawnSpec, String> {
    Ok(SpawnSpec {
        shim: shim.to_path_buf(),
        argv: pool.command.clone(),
        env: pool.env.clone().into_iter().collect(),
        secrets: pool.secrets.clone(),
        fd_name: config.key.to_string(),
        privileges: Privileges::for_pool(pool)?,
    })
}
