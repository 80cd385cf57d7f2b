//! ctsd as a library: everything the `ctsd` binary does, callable from tests.
//!
//! # Layout
//!
//! Dependencies run one way, from the top of this list to the bottom; no module uses one
//! above it.
//!
//! - this crate root: [`run`], the daemon's main loop: binds, launches every instance, serves
//!   the control socket, handles signals and daemon requests, shuts down.
//! - [`control`]: the control socket server and one handler module per request; it reaches
//!   the main loop only through [`signals::DaemonEvent`]s.
//! - [`systemd`]: what ctsd tells systemd while it runs (status line, watchdog).
//! - [`signals`]: signals (and daemon requests) as typed [`signals::DaemonEvent`]s.
//! - [`reload`]: re-reading the configuration, the plan, and carrying it out.
//! - [`registry`]: the instances ctsd runs, what it owns for each, and the one copy of each
//!   instance's configuration; publishes them to the control handlers.
//! - [`listeners`]: the instances' TCP listening sockets, owned by ctsd.
//! - [`output`]: connects workers' pipes to the instance logs.
//! - [`notify`]: the sd_notify primitives (`NOTIFY_SOCKET`, fd store) and `--ready-fd`.
//! - [`status`]: the supervisor's status and outcomes in the wire's terms.
//!
//! # Theory of operation
//!
//! [`run`] binds the control socket first (so a second ctsd fails before touching any port),
//! then every instance's port, then starts one actor per instance (see `cts-supervisor`) and the
//! control server. The top level owns no instance state: the [`registry`] does, and
//! only the main loop changes it (launching, retiring, reconfiguring, recording a `scale`);
//! control handlers talk to the actors' handles directly and send what concerns the daemon
//! itself to the main loop. Shutdown is one
//! [`CancellationToken`] tree: cancelling the root stops the control server and makes every
//! actor stop its workers gracefully; a second SIGTERM/SIGINT cancels the `kill` token, which
//! makes every actor SIGKILL its workers' process groups. `run` returns only after every actor
//! has ended, every log is flushed and the control socket file is removed, so `main` can return
//! normally and destructors run.

#![warn(missing_docs)]

pub mod control;
pub mod deploy;
pub mod listeners;
pub mod notify;
pub mod output;
pub mod port;
pub mod registry;
pub mod reload;
pub mod signals;
pub mod status;
pub mod systemd;
pub mod upgrade;

pub use reload::ReloadSource;

use cts_config::Config;
use registry::{Instances, Published};
use reload::reload_now;
use signals::{DaemonEvent, SignalSource};
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The daemon's version, reported to clients.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long a handover waits for control requests in hand to be answered.
const CONNECTION_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How long, at the very end, ctsd waits for log pipes to drain (something a worker started
/// may keep a pipe open after the worker is gone).
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run, besides the configuration.
#[derive(Debug)]
pub struct RunOptions {
    /// The control socket path, already resolved (`--socket`, `$CTSD_SOCKET`, config, default).
    pub socket: PathBuf,
    /// The ctsd binary, run as exec shim for workers.
    pub shim: PathBuf,
    /// Written to (one newline) and closed once every instance has settled.
    pub ready_fd: Option<OwnedFd>,
    /// Whether to handle the process's signals.
    pub signals: SignalSource,
    /// Where `reload` re-reads the configuration from; `None`: reload is refused.
    pub reload_from: Option<ReloadSource>,
    /// Listening sockets passed by systemd (`LISTEN_FDS`), used instead of binding.
    pub passed: listeners::PassedSockets,
    /// What the ctsd this one replaces handed over (`ctsctl upgrade`): its control socket,
    /// listeners, workers and pipes, taken instead of binding and spawning.
    pub handover: Option<upgrade::Handover>,
}

/// How [`run`] ended.
#[derive(Debug)]
pub enum Ended {
    /// Every worker was stopped.
    Stopped,
    /// `ctsctl upgrade`: every pool was handed over; the caller `exec`s `binary` with it (see
    /// [`upgrade::exec`]), or, when that fails, runs [`run`] again with it.
    Upgrade {
        /// What to hand over.
        handover: Box<upgrade::Handover>,
        /// The binary to run.
        binary: PathBuf,
    },
}

/// Errors that stop ctsd (a worker crash never is one).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// Some ports could not be bound.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Bind(Vec<listeners::BindError>),
    /// Something else at start-up.
    #[error("{about}: {source}")]
    Io {
        /// What was being done.
        about: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl From<registry::LaunchError> for DaemonError {
    fn from(e: registry::LaunchError) -> Self {
        DaemonError::Io {
            about: e.about,
            source: e.source,
        }
    }
}

/// Runs ctsd until `shutdown` completes or a SIGTERM/SIGINT arrives (with
/// [`SignalSource::Os`]).
///
/// # Errors
///
/// Only start-up failures: the control socket, a port, a log thread. Once running, failures of
/// workers are events, not errors.
pub async fn run(
    config: Config,
    mut opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Ended, DaemonError> {
    let handover = opts.handover.take();
    let started = handover
        .as_ref()
        .and_then(|h| Instant::now().checked_sub(Duration::from_millis(h.uptime_ms)))
        .unwrap_or_else(Instant::now);
    let control = match &handover {
        Some(h) => h.control.try_clone().and_then(|fd| {
            let l = std::os::unix::net::UnixListener::from(fd);
            l.set_nonblocking(true)?;
            tokio::net::UnixListener::from_std(l)
        }),
        None => Ok(control::bind(
            &opts.socket,
            config.daemon.socket_mode,
            config.daemon.socket_group.as_deref(),
        )?),
    }
    .map_err(|source| DaemonError::Io {
        about: "taking over the control socket".into(),
        source,
    })?;
    // What a handover passes on: the control socket as a duplicate (the server owns its own).
    let control_fd = control_dup(&control).map_err(|source| DaemonError::Io {
        about: "duplicating the control socket".into(),
        source,
    })?;
    let remove_socket = SocketFileGuard(Some(opts.socket.clone()));
    // Off the runtime thread: it may wait (up to 5 s) for a dead ctsd's leftovers to go.
    let cgroups = tokio::task::spawn_blocking(contain_workers)
        .await
        .unwrap_or(None);
    let mut passed = opts.passed;
    let mut taken = registry::Taken::default();
    let mut handed_listeners = std::collections::HashMap::new();
    let mut reply = None;
    let mut inherited_connections = Vec::new();
    if let Some(h) = handover {
        let (workers, pipes) = (h.workers(), h.pipes());
        for (key, fd, own) in h.listeners {
            handed_listeners.insert(key, (fd, own));
        }
        for (name, pool, pipes) in h.pools {
            taken.pools.insert(name, (pool, pipes));
        }
        let response = match &h.failed {
            Some(why) => {
                tracing::error!("upgrade failed, this ctsd keeps running: {why}");
                cts_proto::ErrorReply::new(
                    cts_proto::ErrorKind::Failed,
                    format!("{why}; ctsd {VERSION} kept running, no worker was restarted"),
                )
                .into()
            }
            None => {
                tracing::info!(
                    "ctsd {VERSION} took over from ctsd {}: {workers} worker(s) and {pipes} pipe(s) kept",
                    h.from_version
                );
                cts_proto::Response::Upgraded(cts_proto::UpgradeReport {
                    from_version: h.from_version.clone(),
                    to_version: VERSION.to_owned(),
                    binary: opts.shim.display().to_string(),
                    pid: std::process::id(),
                    workers,
                    pipes,
                    pause_ms: 0,
                })
            }
        };
        reply = h.reply.map(|fd| (fd, response, h.paused_at_ms));
        inherited_connections = h.connections;
    }
    // A socket systemd passed that does not fit is a configuration error and stops ctsd; a
    // port another process holds does not: the other instances are served, and that one's
    // actor keeps trying to bind it with its backoff (and says why in `status`).
    let mut listeners = Vec::new();
    let mut misfits = Vec::new();
    let to_bind = Config {
        instances: config
            .instances
            .iter()
            .filter(|i| !handed_listeners.contains_key(i.key.as_str()))
            .cloned()
            .collect(),
        ..config.clone()
    };
    let mut bound = to_bind
        .instances
        .iter()
        .map(|i| i.key.to_string())
        .zip(listeners::bind_each(&to_bind, &mut passed))
        .collect::<std::collections::HashMap<_, _>>();
    for inst in &config.instances {
        let got = match handed_listeners.remove(inst.key.as_str()) {
            Some((fd, own)) => {
                listeners.push((Some(fd), own));
                continue;
            }
            None => bound.remove(inst.key.as_str()).expect("bound above"),
        };
        match got {
            Ok(l) => {
                // Only what ctsd bound itself: systemd keeps what it passed.
                if l.fresh {
                    notify::fd_store(inst.key.as_str(), &l.fd);
                }
                listeners.push((Some(l.fd), l.fresh));
            }
            Err(e) if e.source.kind() == std::io::ErrorKind::InvalidInput => misfits.push(e),
            Err(e) => {
                tracing::warn!("{e}; serving the other instances and retrying");
                listeners.push((None, true));
            }
        }
    }
    if !misfits.is_empty() {
        return Err(DaemonError::Bind(misfits));
    }
    passed.report_unclaimed();
    let (events_tx, mut events) = mpsc::channel(8);
    signals::spawn(opts.signals, events_tx.clone()).map_err(|source| DaemonError::Io {
        about: "installing signal handlers".into(),
        source,
    })?;
    let published = Arc::new(Published::default());
    let deploying = Arc::new(deploy::DeployLock::default());
    let shared = Arc::new(control::Shared {
        instances: published.clone(),
        started,
        access: control::access::Access::resolve(&config.daemon),
        events: events_tx,
        deploying: deploying.clone(),
        shim: opts.shim.clone(),
        config_file: opts.reload_from.as_ref().map(|r| r.path.clone()),
    });
    let summary = config.summary();
    let mut instances = Instances::new(
        &config,
        opts.shim.clone(),
        published.clone(),
        passed,
        cgroups.clone(),
    );
    let reaper = tokio::spawn(reap_orphans());
    let took_over = !taken.pools.is_empty();
    for (inst, listener) in config.instances.iter().zip(listeners) {
        instances.launch(inst, listener.0, listener.1, &mut taken)?;
    }
    if took_over {
        // Orphans that exited while ctsd was being replaced sent their SIGCHLD to the old one;
        // the adopted workers are registered by now, and left to their watchers.
        cts_supervisor::contain::reap_orphans();
    }
    if !taken.pools.is_empty() {
        let left: Vec<&String> = taken.pools.keys().collect();
        tracing::warn!("pools handed over that the configuration does not have: {left:?}");
    }

    // The control server outlives the actors' shutdown, so that `ctsctl status` shows the
    // instances stopping; it is cancelled once they are all gone.
    let server_stop = CancellationToken::new();
    let server_handover = CancellationToken::new();
    let mut server = tokio::spawn(control::serve_handing_over(
        control,
        shared.clone(),
        server_stop.clone(),
        server_handover.clone(),
        inherited_connections,
    ));
    if let Some((fd, mut response, paused_at)) = reply {
        if let cts_proto::Response::Upgraded(r) = &mut response {
            r.pause_ms = upgrade::monotonic_ms().saturating_sub(paused_at);
        }
        tokio::spawn(async move { upgrade::answer(fd, &response).await });
    }
    let configured = config
        .daemon
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(cts_config::DEFAULT_SOCKET));
    if configured == opts.socket {
        tracing::info!("ctsd {VERSION} running {summary}");
    } else {
        tracing::info!(
            "ctsd {VERSION} running {summary}; the control socket is {} instead (--socket or $CTSD_SOCKET)",
            opts.socket.display()
        );
    }

    let ready = {
        let first = shared.snapshot();
        let ready_fd = opts.ready_fd;
        tokio::spawn(async move {
            for i in &first {
                i.handle.settled().await;
            }
            notify::sd_notify("READY=1");
            if let Some(fd) = ready_fd {
                notify::ready_fd(fd);
            }
            tracing::info!("ready");
        })
    };

    let status_stop = CancellationToken::new();
    if notify::enabled() {
        tokio::spawn(systemd::report_status(
            published.clone(),
            status_stop.clone(),
        ));
    }
    // The one timer an idle ctsd may have, and only when systemd asks for it. It runs in this
    // loop, after asking every actor for its status: a wedged loop or actor stops the pings.
    let mut watchdog = notify::watchdog_interval().map(|every| {
        tracing::info!(
            "systemd watchdog: pinging every {}",
            cts_supervisor::human(every)
        );
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (t, every)
    });

    tokio::pin!(shutdown);
    let mut upgrading = None;
    loop {
        let ev = tokio::select! {
            // The embedding program (tests) asks to stop.
            () = &mut shutdown => DaemonEvent::Shutdown,
            // A signal, or a control request for the daemon itself.
            Some(ev) = events.recv() => ev,
            // systemd's watchdog is due.
            _ = async { watchdog.as_mut().expect("guarded").0.tick().await }, if watchdog.is_some() => {
                let every = watchdog.as_ref().map_or(Duration::ZERO, |w| w.1);
                systemd::watchdog_ping(&instances, every / 2).await;
                continue;
            }
        };
        match ev {
            DaemonEvent::Shutdown => break,
            DaemonEvent::Upgrade {
                binary,
                client,
                refused,
            } => match freeze_all(&instances, &deploying, opts.reload_from.as_ref()).await {
                Ok((guard, frozen)) => {
                    upgrading = Some((binary, client, guard, frozen));
                    break;
                }
                Err(why) => {
                    tracing::warn!("upgrade refused: {why}");
                    let _ = refused.send(why);
                }
            },
            DaemonEvent::ReopenLogs => {
                instances.reopen_logs();
                tracing::info!("log files reopened");
            }
            DaemonEvent::Scaled {
                instance,
                program,
                workers,
            } => instances.set_workers(&instance, program.as_deref(), workers),
            DaemonEvent::Reload if deploying.busy().is_some() => {
                let busy = deploying.busy().unwrap_or_default();
                tracing::warn!("SIGHUP: the configuration was not reloaded: {busy}");
            }
            DaemonEvent::Reload => {
                // SIGHUP: apply, and log the outcome when every action has finished.
                match reload_now(&mut instances, opts.reload_from.as_ref(), false).await {
                    Ok((_, Some(mut pending))) => {
                        tokio::spawn(async move {
                            while let Some(Ok((_, r))) = pending.join_next().await {
                                let (key, m) = (&r.instance, &r.message);
                                if r.ok {
                                    tracing::info!(instance = %key, "reload: {m}");
                                } else {
                                    tracing::warn!(instance = %key, "reload failed: {m}");
                                }
                            }
                        });
                    }
                    Ok((_, None)) => {}
                    Err(e) => tracing::error!("reload rejected, nothing changed:\n{e}"),
                }
            }
            DaemonEvent::ReloadRequest { dry_run, reply } => {
                let r = reload_now(&mut instances, opts.reload_from.as_ref(), dry_run).await;
                // Also in ctsd's own log (the journal), not only for the client that asked.
                if let (Err(e), false) = (&r, dry_run) {
                    tracing::error!("reload rejected, nothing changed:\n{e}");
                }
                let _ = reply.send(r);
            }
        }
    }

    if let Some((binary, client, _guard, frozen)) = upgrading {
        status_stop.cancel();
        ready.abort();
        // First the control connections: those between two requests are handed over; a
        // request in hand is answered first (the frozen pools answer `status`), within a
        // bound (a `logs -f` would never end: it is cut).
        let paused_at_ms = upgrade::monotonic_ms();
        server_handover.cancel();
        let connections = match tokio::time::timeout(CONNECTION_DRAIN_TIMEOUT, &mut server).await {
            Ok(r) => r.unwrap_or_default(),
            Err(_) => {
                server_stop.cancel();
                (&mut server).await.unwrap_or_default()
            }
        };
        let pools = instances.pools_to_hand_over();
        let mut handed = Vec::with_capacity(pools.len());
        let mut refused = Vec::new();
        for (p, f) in pools.into_iter().zip(frozen) {
            match f.hand_over().await {
                Ok(h) => handed.push((p.name, h, p.output)),
                Err(e) => refused.push(format!("{}: {e}", p.name)),
            }
        }
        if !refused.is_empty() {
            // At rest and frozen, a pool always hands over. Should one not, ctsd cannot go
            // on with the others' workers unwatched: it stops every worker and exits with an
            // error (systemd starts it again; the fd store keeps the ports).
            tracing::error!(
                "upgrade aborted, stopping every worker: {}",
                refused.join("; ")
            );
            let (_, all_stopped) = instances.stop_all();
            for l in all_stopped.await {
                l.close().await;
            }
            if let Some(c) = &cgroups {
                c.remove();
            }
            return Err(DaemonError::Io {
                about: "upgrading".into(),
                source: std::io::Error::other(refused.join("; ")),
            });
        }
        let mut pools = Vec::with_capacity(handed.len());
        for (name, h, output) in handed {
            let pipes = output.hand_over().await;
            pools.push((name, h, pipes));
        }
        let listeners = instances.listeners();
        for l in instances.handed_over().await {
            l.close().await;
        }
        reaper.abort();
        // The socket file stays: the new ctsd answers on it.
        std::mem::forget(remove_socket);
        tracing::info!("handing over to {}", binary.display());
        let handover = upgrade::Handover {
            from_version: VERSION.to_owned(),
            uptime_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            control: control_fd,
            reply: Some(client),
            paused_at_ms,
            listeners,
            pools,
            connections,
            failed: None,
        };
        return Ok(Ended::Upgrade {
            handover: Box::new(handover),
            binary,
        });
    }
    tracing::info!("shutting down: stopping every worker");
    notify::sd_notify("STOPPING=1\nSTATUS=stopping every worker");
    status_stop.cancel();
    ready.abort();
    let (kill, all_stopped) = instances.stop_all();
    tokio::pin!(all_stopped);
    let logs = loop {
        tokio::select! {
            logs = &mut all_stopped => break logs,
            Some(ev) = events.recv() => if matches!(ev, DaemonEvent::Shutdown) && !kill.is_cancelled() {
                tracing::warn!("second stop signal: killing every worker now");
                kill.cancel();
            },
        }
    };
    server_stop.cancel();
    let _ = server.await;
    // What escaped its worker's process group goes too, before the pipes are drained.
    cts_supervisor::contain::kill_all_orphans();
    if let Some(c) = &cgroups {
        c.remove();
    }
    reaper.abort();
    let retiring = instances.take_retiring();
    drop(instances);
    drop(shared);
    drop(published);
    let flush = async {
        for l in logs {
            l.close().await;
        }
        for r in retiring {
            let _ = r.await;
        }
    };
    if tokio::time::timeout(LOG_DRAIN_TIMEOUT, flush)
        .await
        .is_err()
    {
        tracing::warn!(
            "some worker output pipes were still open after the workers exited; stopped waiting"
        );
    }
    drop(remove_socket);
    tracing::info!("stopped");
    Ok(Ended::Stopped)
}

/// Takes the lock deploys take and freezes every pool for a handover, or says why not (and
/// nothing changed): a deploy runs, the file differs from what runs, a reload's leftovers are
/// stopping, or a pool is busy with a request.
async fn freeze_all(
    instances: &Instances,
    deploying: &Arc<deploy::DeployLock>,
    source: Option<&ReloadSource>,
) -> Result<(deploy::DeployGuard, Vec<cts_supervisor::Frozen>), String> {
    let guard = deploying.begin_other("an upgrade of ctsd is in progress")?;
    if let Some(busy) = instances.busy() {
        return Err(format!("{busy}; try again in a moment"));
    }
    if let Some(source) = source {
        let source = source.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            cts_config::load(&source.path, &source.options).map(|mut c| {
                if let Some(d) = source.log_dir {
                    c.daemon.log_dir = d;
                }
                c
            })
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the configuration file is not valid:\n{e}"))?;
        let plan = cts_config::diff(&instances.config(), &loaded);
        let changed: Vec<String> = plan
            .changes
            .iter()
            .filter(|c| c.action != cts_config::Action::None)
            .map(|c| format!("{}: {}", c.name(), c.action.as_str()))
            .chain(plan.not_applied.iter().cloned())
            .collect();
        if !changed.is_empty() {
            return Err(format!(
                "the configuration file differs from what runs ({}); apply it first with \
                 `ctsctl reload`, or undo the change",
                changed.join(", ")
            ));
        }
    }
    let mut frozen = Vec::new();
    for p in instances.pools_to_hand_over() {
        match p.handle.freeze().await {
            Ok(f) => frozen.push(f),
            Err(why) => {
                // Dropping the others resumes them.
                return Err(format!("{why}; try again when it is done"));
            }
        }
    }
    Ok((guard, frozen))
}

/// A duplicate of the control socket's fd, for a handover.
fn control_dup(l: &tokio::net::UnixListener) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsFd;
    l.as_fd().try_clone_to_owned()
}

/// Sets up containment (see `cts_supervisor::contain`): ctsd becomes the subreaper of its
/// workers' descendants, kills what a ctsd that was SIGKILLed left behind, and returns its
/// per-worker cgroups when the system gives it a writable cgroup v2.
fn contain_workers() -> Option<Arc<cts_supervisor::contain::Cgroups>> {
    use cts_supervisor::contain;
    if let Err(e) = contain::become_subreaper() {
        tracing::warn!("cannot become the subreaper of the workers' descendants: {e}");
    }
    let left = contain::kill_leftovers();
    if left > 0 {
        tracing::warn!("killed {left} process(es) left running by a ctsd that is gone");
    }
    let cgroups = contain::Cgroups::detect();
    match &cgroups {
        Some(c) => tracing::info!(
            "each worker runs in a cgroup of its own under {}",
            c.root().display()
        ),
        None => tracing::info!(
            "no writable cgroup v2 (under systemd: Delegate=yes): workers are contained by \
             process group and CTS_WORKER tag"
        ),
    }
    cgroups.map(Arc::new)
}

/// Reaps the orphaned descendants of workers that ctsd adopted as subreaper, whenever a child
/// exits (SIGCHLD); the workers themselves are reaped by their watchers.
async fn reap_orphans() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut sigchld) = signal(SignalKind::child()) else {
        return;
    };
    // On the runtime thread, not a blocking one: a worker is registered right after its fork
    // on this same thread, so the reaper can never take a fresh worker for an orphan.
    while sigchld.recv().await.is_some() {
        cts_supervisor::contain::reap_orphans();
    }
}

/// Removes the control socket file when ctsd stops, also on a start-up error after binding.
struct SocketFileGuard(Option<PathBuf>);

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}
