//! ctsd as a library: everything the `ctsd` binary does, callable from tests.
//!
//! # Layout
//!
//! - [`run`]: binds, starts every instance's actor, serves the control socket, shuts down.
//! - [`listeners`]: the instances' TCP listening sockets, owned by ctsd.
//! - [`control`]: the control socket server and one handler module per request.
//! - [`signals`]: signals as typed [`signals::DaemonEvent`]s.
//! - [`output`]: connects workers' pipes to the instance logs.
//! - [`notify`]: readiness to systemd (`NOTIFY_SOCKET`) and to `--ready-fd`.
//! - [`status`]: the supervisor's status in the wire's terms.
//!
//! # Theory of operation
//!
//! [`run`] binds the control socket first (so a second ctsd fails before touching any port),
//! then every instance's port, then starts one actor per instance (see `cts-supervisor`) and the
//! control server. The top level owns no instance state: it routes control requests to the
//! actors' handles and turns signals into actions. Shutdown is one
//! [`CancellationToken`] tree: cancelling the root stops the control server and makes every
//! actor stop its workers gracefully; a second SIGTERM/SIGINT cancels the `kill` token, which
//! makes every actor SIGKILL its workers' process groups. `run` returns only after every actor
//! has ended, every log is flushed and the control socket file is removed, so `main` can return
//! normally and destructors run.

#![warn(missing_docs)]

pub mod control;
pub mod listeners;
pub mod notify;
pub mod output;
pub mod reload;
pub mod signals;
pub mod status;

use cts_config::{Config, InstanceConfig, LoadOptions};
use cts_logs::InstanceLog;
use cts_supervisor::InstanceHandle;
use signals::{DaemonEvent, SignalSource};
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The daemon's version, reported to clients.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
}

/// How to re-read the configuration on reload, the same way `ctsd` read it at start.
#[derive(Debug, Clone)]
pub struct ReloadSource {
    /// The configuration file.
    pub path: PathBuf,
    /// `--env`.
    pub options: LoadOptions,
    /// `--log-dir`, which overrides the file's `ctsd.log_dir`.
    pub log_dir: Option<PathBuf>,
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

/// One configured instance as the control handlers see it.
#[derive(Debug, Clone)]
pub struct InstanceEntry {
    /// Its configuration.
    pub config: InstanceConfig,
    /// Its actor.
    pub handle: InstanceHandle,
    /// Its log: path, drop counter, followers.
    pub log: cts_logs::LogHandle,
    /// Its `stderr.log`, with `logs.stderr: separate`.
    pub err_log: Option<cts_logs::LogHandle>,
}

impl InstanceEntry {
    /// Bytes its logs could not write.
    pub fn dropped_bytes(&self) -> u64 {
        self.log.dropped_bytes() + self.err_log.as_ref().map_or(0, |l| l.dropped_bytes())
    }
}

/// What control connections share.
#[derive(Debug)]
pub struct Shared {
    /// The instances, in configuration order; replaced as a whole by a reload. Never held
    /// across an `.await`: handlers take a [`Shared::snapshot`].
    pub instances: RwLock<Vec<InstanceEntry>>,
    /// When ctsd started.
    pub started: Instant,
    /// Who may do what.
    pub access: control::access::Access,
    /// Requests that act on the daemon itself (`shutdown`, `reopen-logs`, `reload`) go to its
    /// main loop.
    pub events: mpsc::Sender<DaemonEvent>,
    /// Bumped whenever `instances` is replaced (for the systemd status line).
    pub changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// The instances as they are now.
    pub fn snapshot(&self) -> Vec<InstanceEntry> {
        self.instances.read().map(|v| v.clone()).unwrap_or_default()
    }
}

/// An instance the daemon runs: its actor and what the daemon owns for it.
struct Running {
    config: InstanceConfig,
    handle: InstanceHandle,
    /// Cancelling it stops just this instance (a reload removed it).
    token: CancellationToken,
    join: JoinHandle<()>,
    log: InstanceLog,
    /// `stderr.log`, with `logs.stderr: separate`.
    err_log: Option<InstanceLog>,
    /// Where new workers' output goes.
    output: Arc<output::LogOutput>,
}

impl Running {
    /// Both logs, to close.
    fn logs(self) -> impl Iterator<Item = InstanceLog> {
        std::iter::once(self.log).chain(self.err_log)
    }
}

/// The daemon's instances: owned by the main loop, published to the control handlers.
pub(crate) struct Instances {
    config: Config,
    running: Vec<Running>,
    root: CancellationToken,
    kill: CancellationToken,
    shim: PathBuf,
    shared: Arc<Shared>,
    /// Sockets systemd passed that no instance has claimed yet.
    passed: listeners::PassedSockets,
    /// `stderr.log` writers a reload retired, finishing what their workers still write;
    /// waited for at shutdown.
    retiring: Vec<JoinHandle<()>>,
}

impl Instances {
    /// Starts the actor of `inst` on `listener`.
    fn launch(
        &mut self,
        inst: &InstanceConfig,
        listener: OwnedFd,
    ) -> Result<InstanceHandle, DaemonError> {
        let dir = self.config.daemon.log_dir.join(inst.key.as_str());
        prepare_log_dir(&dir, inst);
        let log = InstanceLog::open_with(
            &dir,
            &format!("log-{}", inst.key),
            log_options(&inst.pool.logs),
        )
        .map_err(|source| DaemonError::Io {
            about: format!("starting the log writer of {}", inst.key),
            source,
        })?;
        let err_log = open_err_log(&dir, inst)?;
        let output = Arc::new(output::LogOutput {
            log: log.sender(),
            err: std::sync::Mutex::new(err_log.as_ref().map(InstanceLog::sender)),
        });
        let token = self.root.child_token();
        let (handle, join) = cts_supervisor::launch(
            cts_supervisor::Instance {
                config: inst.clone(),
                listener: Arc::new(listener),
                shim: self.shim.clone(),
                output: output.clone(),
            },
            token.clone(),
            self.kill.clone(),
        );
        self.running.push(Running {
            config: inst.clone(),
            handle: handle.clone(),
            token,
            join,
            log,
            err_log,
            output,
        });
        self.publish();
        Ok(handle)
    }

    /// Stops and forgets `key`; the returned future completes once its workers have exited
    /// and its log is flushed.
    fn retire(&mut self, key: &str) -> Option<impl Future<Output = ()>> {
        let i = self
            .running
            .iter()
            .position(|r| r.config.key.as_str() == key)?;
        let r = self.running.remove(i);
        self.publish();
        r.token.cancel();
        Some(async move {
            let mut r = r;
            let _ = (&mut r.join).await;
            for l in r.logs() {
                l.close().await;
            }
        })
    }

    fn handle(&self, key: &str) -> Option<InstanceHandle> {
        self.running
            .iter()
            .find(|r| r.config.key.as_str() == key)
            .map(|r| r.handle.clone())
    }

    fn set_config(&mut self, inst: InstanceConfig) {
        if let Some(r) = self.running.iter_mut().find(|r| r.config.key == inst.key) {
            r.config = inst;
        }
    }

    /// Applies `inst`'s `logs:` settings to the running instance's writers: rotation, retention
    /// and format at once; a change of `logs.stderr` opens or retires `stderr.log` for the
    /// workers started from now on (the reload rolls them).
    fn apply_log_settings(&mut self, inst: &InstanceConfig) {
        let log_dir = self.config.daemon.log_dir.clone();
        let Some(r) = self.running.iter_mut().find(|r| r.config.key == inst.key) else {
            return;
        };
        let options = log_options(&inst.pool.logs);
        r.log.reconfigure(options.clone());
        let separate = inst.pool.logs.stderr == cts_config::StderrLog::Separate;
        match (separate, r.err_log.take()) {
            (true, Some(l)) => {
                l.reconfigure(options);
                r.err_log = Some(l);
            }
            (true, None) => match open_err_log(&log_dir.join(inst.key.as_str()), inst) {
                Ok(l) => r.err_log = l,
                Err(e) => tracing::warn!(instance = %inst.key, "{e}"),
            },
            // Running workers keep writing through their readers' senders until they exit.
            (false, Some(l)) => self.retiring.push(tokio::spawn(l.close())),
            (false, None) => {}
        }
        if let Ok(mut err) = r.output.err.lock() {
            *err = r.err_log.as_ref().map(InstanceLog::sender);
        }
    }

    /// Takes `new` as the running configuration, in its instance order.
    fn adopt(&mut self, new: Config) {
        let order = |key: &str| {
            new.instances
                .iter()
                .position(|i| i.key.as_str() == key)
                .unwrap_or(usize::MAX)
        };
        self.running.sort_by_key(|r| order(r.config.key.as_str()));
        self.config = new;
        self.publish();
    }

    fn publish(&self) {
        let entries = self
            .running
            .iter()
            .map(|r| InstanceEntry {
                config: r.config.clone(),
                handle: r.handle.clone(),
                log: r.log.handle(),
                err_log: r.err_log.as_ref().map(InstanceLog::handle),
            })
            .collect();
        if let Ok(mut w) = self.shared.instances.write() {
            *w = entries;
        }
        self.shared.changed.send_modify(|n| *n += 1);
    }
}

/// Creates the instance's log directory (mode 0750) and, when workers run as another user,
/// gives it to that user, so that the application can write its own files there too. Failures
/// are logged, never fatal: the writer reports what it cannot write.
fn prepare_log_dir(dir: &std::path::Path, inst: &InstanceConfig) {
    use std::os::unix::fs::DirBuilderExt;
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
    {
        tracing::warn!(instance = %inst.key, "cannot create log directory {}: {e}", dir.display());
        return;
    }
    let Some(user) = &inst.pool.user else { return };
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => {
            let gid = inst
                .pool
                .group
                .as_ref()
                .and_then(|g| nix::unistd::Group::from_name(g).ok().flatten())
                .map_or(u.gid, |g| g.gid);
            if let Err(e) = nix::unistd::chown(dir, Some(u.uid), Some(gid)) {
                tracing::warn!(instance = %inst.key, "cannot give {} to {user}: {e}", dir.display());
            }
        }
        _ => tracing::warn!(instance = %inst.key, "no user `{user}` to own {}", dir.display()),
    }
}

/// The instance's `stderr.log` writer when `logs.stderr` is `separate`.
fn open_err_log(
    dir: &std::path::Path,
    inst: &InstanceConfig,
) -> Result<Option<InstanceLog>, DaemonError> {
    if inst.pool.logs.stderr != cts_config::StderrLog::Separate {
        return Ok(None);
    }
    InstanceLog::open_file(
        dir,
        cts_logs::writer::STDERR_FILE,
        &format!("err-{}", inst.key),
        log_options(&inst.pool.logs),
    )
    .map(Some)
    .map_err(|source| DaemonError::Io {
        about: format!("starting the stderr log writer of {}", inst.key),
        source,
    })
}

/// The log writer's options from the instance's `logs:` settings.
fn log_options(l: &cts_config::LogSettings) -> cts_logs::LogOptions {
    cts_logs::LogOptions {
        max_size: l.max_size.0,
        rotate: match l.rotate {
            cts_config::Rotate::Never => cts_logs::Rotation::Never,
            cts_config::Rotate::Hourly => cts_logs::Rotation::Hourly,
            cts_config::Rotate::Daily => cts_logs::Rotation::Daily,
        },
        keep: l.keep,
        max_age: l.max_age,
        compress: l.compress,
        format: match l.format {
            cts_config::LogFormat::Raw => cts_logs::LineFormat::Raw,
            cts_config::LogFormat::Timestamped => cts_logs::LineFormat::Timestamped,
        },
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
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    let control = control::bind(
        &opts.socket,
        config.daemon.socket_mode,
        config.daemon.socket_group.as_deref(),
    )?;
    let remove_socket = SocketFileGuard(opts.socket.clone());
    let mut passed = opts.passed;
    let listeners = listeners::bind_all(&config, &mut passed).map_err(DaemonError::Bind)?;
    passed.report_unclaimed();
    // Only what ctsd bound itself: systemd keeps what it passed (socket units, or the store).
    for (inst, l) in config.instances.iter().zip(&listeners) {
        if l.fresh {
            notify::fd_store(inst.key.as_str(), &l.fd);
        }
    }
    let (events_tx, mut events) = mpsc::channel(8);
    signals::spawn(opts.signals, events_tx.clone()).map_err(|source| DaemonError::Io {
        about: "installing signal handlers".into(),
        source,
    })?;
    let shared = Arc::new(Shared {
        instances: RwLock::new(Vec::new()),
        started,
        access: control::access::Access::resolve(&config.daemon),
        events: events_tx,
        changed: tokio::sync::watch::Sender::new(0),
    });
    let summary = config.summary();
    let mut instances = Instances {
        config: config.clone(),
        running: Vec::new(),
        root: CancellationToken::new(),
        kill: CancellationToken::new(),
        shim: opts.shim.clone(),
        shared: shared.clone(),
        passed,
        retiring: Vec::new(),
    };
    for (inst, listener) in config.instances.iter().zip(listeners) {
        instances.launch(inst, listener.fd)?;
    }
    // The control server outlives the actors' shutdown, so that `ctsctl status` shows the
    // instances stopping; it is cancelled once they are all gone.
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(control::serve(control, shared.clone(), server_stop.clone()));
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
        tokio::spawn(systemd_status(shared.clone(), status_stop.clone()));
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
    loop {
        let ev = tokio::select! {
            // The embedding program (tests) asks to stop.
            () = &mut shutdown => DaemonEvent::Shutdown,
            // A signal, or a control request for the daemon itself.
            Some(ev) = events.recv() => ev,
            // systemd's watchdog is due.
            _ = async { watchdog.as_mut().expect("guarded").0.tick().await }, if watchdog.is_some() => {
                let every = watchdog.as_ref().map_or(Duration::ZERO, |w| w.1);
                watchdog_ping(&instances, every / 2).await;
                continue;
            }
        };
        match ev {
            DaemonEvent::Shutdown => break,
            DaemonEvent::ReopenLogs => {
                for r in &instances.running {
                    r.log.reopen();
                    if let Some(l) = &r.err_log {
                        l.reopen();
                    }
                }
                tracing::info!("log files reopened");
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
                let _ = reply.send(r);
            }
        }
    }

    tracing::info!("shutting down: stopping every worker");
    notify::sd_notify("STOPPING=1\nSTATUS=stopping every worker");
    status_stop.cancel();
    ready.abort();
    instances.root.cancel();
    let kill = instances.kill.clone();
    let running = std::mem::take(&mut instances.running);
    let all_stopped = async {
        let mut logs = Vec::new();
        for mut r in running {
            let _ = (&mut r.join).await;
            logs.extend(r.logs());
        }
        logs
    };
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
    let retiring = std::mem::take(&mut instances.retiring);
    drop(instances);
    drop(shared);
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
    Ok(())
}

/// Sends `WATCHDOG=1` if every actor answers a status request within `within` (asked all at
/// once); otherwise names the ones that did not, or whose actor is gone, and skips the ping,
/// so that systemd restarts a wedged ctsd.
async fn watchdog_ping(instances: &Instances, within: Duration) {
    let mut asked = tokio::task::JoinSet::new();
    for r in &instances.running {
        let (handle, key) = (r.handle.clone(), r.config.key.to_string());
        asked.spawn(async move { (key, handle.status().await.is_some()) });
    }
    let mut stuck: Vec<String> = instances
        .running
        .iter()
        .map(|r| r.config.key.to_string())
        .collect();
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok((key, alive))) = asked.join_next().await {
            if alive {
                stuck.retain(|k| *k != key);
            }
        }
    })
    .await;
    asked.abort_all();
    if stuck.is_empty() {
        notify::sd_notify("WATCHDOG=1");
    } else {
        tracing::error!(
            "watchdog: no answer from instance(s) {} within {}; not telling systemd all is well",
            stuck.join(", "),
            cts_supervisor::human(within)
        );
    }
}

/// Keeps systemd's `STATUS=` line current (`3/3 instances running, 12/12 workers ready`, or
/// what is not), woken by the actors' summaries and by reloads, never by a timer.
async fn systemd_status(shared: Arc<Shared>, stop: CancellationToken) {
    let mut set = shared.changed.subscribe();
    let mut last = String::new();
    loop {
        set.borrow_and_update();
        let entries = shared.snapshot();
        let poke = Arc::new(tokio::sync::Notify::new());
        let mut watchers = tokio::task::JoinSet::new();
        let mut summaries = Vec::new();
        for e in &entries {
            let mut rx = e.handle.summary();
            summaries.push((e.config.key.to_string(), rx.clone()));
            let poke = poke.clone();
            watchers.spawn(async move {
                while rx.changed().await.is_ok() {
                    poke.notify_one();
                }
            });
        }
        loop {
            let line = status_line(summaries.iter().map(|(k, rx)| (k.as_str(), *rx.borrow())));
            if line != last {
                notify::sd_notify(&format!("STATUS={line}"));
                last = line;
            }
            tokio::select! {
                // Nothing after STOPPING=1's status line.
                biased;
                () = stop.cancelled() => return,
                () = poke.notified() => {}
                r = set.changed() => if r.is_ok() { break } else { return },
            }
        }
    }
}

/// `3/3 instances running, 12/12 workers ready`, followed by the instances that are not
/// running (`; jordan failing, iraq starting`).
fn status_line<'a>(summaries: impl Iterator<Item = (&'a str, cts_supervisor::Summary)>) -> String {
    use cts_supervisor::InstanceState as S;
    let (mut running, mut total, mut ready, mut desired) = (0, 0, 0, 0);
    let mut others = Vec::new();
    for (key, s) in summaries {
        total += 1;
        ready += s.ready;
        desired += s.desired;
        let state = match s.state {
            S::Running => {
                running += 1;
                continue;
            }
            S::Starting => "starting",
            S::Stopping => "stopping",
            S::Stopped => "stopped",
            S::Failing => "failing",
        };
        others.push(format!("{key} {state}"));
    }
    let mut line = format!("{running}/{total} instances running, {ready}/{desired} workers ready");
    if !others.is_empty() {
        line.push_str("; ");
        line.push_str(&others.join(", "));
    }
    line
}

/// Re-reads the configuration and, unless `dry_run`, applies the plan. Returns the report and
/// the tasks waiting for each instance's action (none for a dry run or an empty plan).
async fn reload_now(
    instances: &mut Instances,
    source: Option<&ReloadSource>,
    dry_run: bool,
) -> Result<(cts_proto::ReloadReport, Option<reload::Pending>), String> {
    let Some(source) = source.cloned() else {
        return Err("this ctsd was started without a configuration file to reload".into());
    };
    notify::sd_notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    let loaded = tokio::task::spawn_blocking(move || {
        cts_config::load(&source.path, &source.options).map(|mut c| {
            if let Some(d) = source.log_dir {
                c.daemon.log_dir = d;
            }
            c
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let result = match loaded {
        Err(e) => Err(e),
        Ok(new) => {
            let plan = cts_config::diff(&instances.config, &new);
            if dry_run {
                Ok((reload::report(&plan, false), None))
            } else {
                for c in plan
                    .changes
                    .iter()
                    .filter(|c| c.action != cts_config::Action::None)
                {
                    tracing::info!(instance = %c.key, "reload: {} ({})", c.action.as_str(), c.fields.join(", "));
                }
                reload::apply(instances, new, &plan)
                    .map(|pending| (reload::report(&plan, true), Some(pending)))
            }
        }
    };
    notify::sd_notify("READY=1");
    result
}

/// CLOCK_MONOTONIC in microseconds, for systemd's `RELOADING=1` protocol.
fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0)
}

/// Removes the control socket file when ctsd stops, also on a start-up error after binding.
struct SocketFileGuard(PathBuf);

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
