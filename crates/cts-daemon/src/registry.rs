//! The instance registry: the instances ctsd runs and what it owns for each (its actor, its
//! log writers, its output plumbing), and the one authoritative copy of each instance's
//! configuration.
//!
//! `Instances` is owned by the daemon's main loop, the only place that launches, retires or
//! reconfigures instances. After every change it publishes [`InstanceEntry`]s to
//! [`Published`], which the control handlers and the systemd status line read.
//!
//! An instance's configuration is one `Arc<InstanceConfig>`, shared by the registry and every
//! entry published from it; a change (a reload, a successful `scale`) replaces that `Arc`, and
//! `Instances::config` assembles the configuration being run from it when a reload needs
//! something to compare the file with. (The instance's actor, in `cts-supervisor`, keeps the
//! settings it runs with; the registry's copy follows what the actor was told, or did.)
//!
//! This module is at the bottom of the daemon: it uses [`output`] and [`listeners`], and
//! nothing above it.

use crate::port::Port;
use crate::{listeners, output};
use cts_config::{Config, DaemonSettings, InstanceConfig, ProgramConfig, ProgramName};
use cts_logs::InstanceLog;
use cts_supervisor::InstanceHandle;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One configured instance as the control handlers see it.
#[derive(Debug, Clone)]
pub struct InstanceEntry {
    /// Its configuration: the registry's own copy, shared.
    pub config: Arc<InstanceConfig>,
    /// Its actor.
    pub handle: InstanceHandle,
    /// Its log: path, drop counter, followers.
    pub log: cts_logs::LogHandle,
    /// Its `stderr.log`, with `logs.stderr: separate`.
    pub err_log: Option<cts_logs::LogHandle>,
    /// Where its workers' output goes (for the sink's drop count).
    pub output: Arc<output::LogOutput>,
    /// Its listening socket.
    pub port: Arc<Port>,
    /// `workers` as the configuration file says (a `scale` may differ until the next reload).
    pub file_workers: u32,
    /// Its other programs, in configuration (name) order.
    pub programs: Vec<ProgramEntry>,
}

impl InstanceEntry {
    /// Bytes its logs could not write.
    pub fn dropped_bytes(&self) -> u64 {
        self.log.dropped_bytes()
            + self.err_log.as_ref().map_or(0, |l| l.dropped_bytes())
            + self.output.sink_dropped()
    }

    /// Its program `name`.
    pub fn program(&self, name: &str) -> Option<&ProgramEntry> {
        self.programs.iter().find(|p| p.name.as_str() == name)
    }

    /// Its pools in the order restarts and deploys take them: web, then the other programs,
    /// then the singletons.
    pub fn pools(&self) -> Vec<PoolRef> {
        let key = self.config.key.as_str();
        let web = PoolRef {
            name: key.to_owned(),
            program: None,
            handle: self.handle.clone(),
            log: self.log.clone(),
            output: self.output.clone(),
        };
        let (singletons, others): (Vec<_>, Vec<_>) =
            self.programs.iter().partition(|p| p.singleton);
        std::iter::once(web)
            .chain(others.into_iter().chain(singletons).map(|p| PoolRef {
                name: format!("{key}:{}", p.name),
                program: Some(p.name.clone()),
                handle: p.handle.clone(),
                log: p.log.clone(),
                output: p.output.clone(),
            }))
            .collect()
    }
}

/// One of an instance's pools (web or a program), as a request acts on it.
#[derive(Debug, Clone)]
pub struct PoolRef {
    /// `jordan` for web, `jordan:celery` for a program.
    pub name: String,
    /// The program, `None` for web.
    pub program: Option<ProgramName>,
    /// Its actor.
    pub handle: InstanceHandle,
    /// Its log (`output.log`, `<program>.log`).
    pub log: cts_logs::LogHandle,
    /// Where its processes' output goes (and the ends of their stderr).
    pub output: Arc<output::LogOutput>,
}

/// One of an instance's programs besides web, as the control handlers see it.
#[derive(Debug, Clone)]
pub struct ProgramEntry {
    /// Its name.
    pub name: ProgramName,
    /// Never two processes alive.
    pub singleton: bool,
    /// Its actor.
    pub handle: InstanceHandle,
    /// Its log, `<program>.log`.
    pub log: cts_logs::LogHandle,
    /// Its `<program>.stderr.log`, with `logs.stderr: separate`.
    pub err_log: Option<cts_logs::LogHandle>,
    /// Where its processes' output goes.
    pub output: Arc<output::LogOutput>,
    /// `workers` as the configuration file says.
    pub file_workers: u32,
}

impl ProgramEntry {
    /// Bytes its log could not write.
    pub fn dropped_bytes(&self) -> u64 {
        self.log.dropped_bytes()
            + self.err_log.as_ref().map_or(0, |l| l.dropped_bytes())
            + self.output.sink_dropped()
    }
}

/// The instances as readers outside the main loop see them (control handlers, the systemd
/// status line): replaced as a whole whenever the registry changes.
#[derive(Debug)]
pub struct Published {
    /// The instances, in configuration order. Never held across an `.await`: readers take a
    /// [`Published::snapshot`].
    entries: RwLock<Vec<InstanceEntry>>,
    /// Bumped whenever `entries` is replaced.
    changed: watch::Sender<u64>,
    /// `deploy.once` of the running configuration.
    deploy: RwLock<cts_config::DeploySettings>,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            deploy: RwLock::new(cts_config::DeploySettings::default()),
            entries: RwLock::new(Vec::new()),
            changed: watch::Sender::new(0),
        }
    }
}

impl Published {
    /// The instances as they are now.
    pub fn snapshot(&self) -> Vec<InstanceEntry> {
        self.entries.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// The `deploy:` section of the running configuration.
    pub fn deploy(&self) -> cts_config::DeploySettings {
        self.deploy.read().map(|v| v.clone()).unwrap_or_default()
    }

    /// Changes whenever the instances are replaced.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn replace(&self, entries: Vec<InstanceEntry>) {
        if let Ok(mut w) = self.entries.write() {
            *w = entries;
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

/// A log writer that could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{about}: {source}")]
pub struct LaunchError {
    /// What was being done.
    pub about: String,
    /// Why it failed.
    #[source]
    pub source: std::io::Error,
}

/// An instance the daemon runs: its actor and what the daemon owns for it.
struct Running {
    /// The authoritative copy; [`InstanceEntry::config`] shares it.
    config: Arc<InstanceConfig>,
    handle: InstanceHandle,
    /// Cancelling it stops just this instance (a reload removed it).
    token: CancellationToken,
    join: JoinHandle<()>,
    log: InstanceLog,
    /// `stderr.log`, with `logs.stderr: separate`.
    err_log: Option<InstanceLog>,
    /// Where new workers' output goes.
    output: Arc<output::LogOutput>,
    /// Its listening socket.
    port: Arc<Port>,
    /// `workers` as the configuration file says.
    file_workers: u32,
    /// Its other programs, in configuration order.
    programs: Vec<RunningProgram>,
}

/// One of an instance's programs the daemon runs.
struct RunningProgram {
    name: ProgramName,
    singleton: bool,
    handle: InstanceHandle,
    /// A child of its instance's token: cancelling it stops just this program.
    token: CancellationToken,
    join: JoinHandle<()>,
    /// `<program>.log`.
    log: InstanceLog,
    /// `<program>.stderr.log`, with `logs.stderr: separate`.
    err_log: Option<InstanceLog>,
    output: Arc<output::LogOutput>,
    file_workers: u32,
}

impl RunningProgram {
    /// Completes once its processes have exited and its log is flushed.
    async fn finish(self) {
        let RunningProgram {
            join,
            log,
            err_log,
            output,
            ..
        } = self;
        let _ = join.await;
        // The logs close once every sender is gone, the ones in `output` too.
        drop(output);
        for l in std::iter::once(log).chain(err_log) {
            l.close().await;
        }
    }
}

impl Running {
    /// Completes once its actors have ended; returns its logs, to close.
    async fn finish(mut self) -> Vec<InstanceLog> {
        let _ = (&mut self.join).await;
        let mut logs: Vec<InstanceLog> = std::iter::once(self.log).chain(self.err_log).collect();
        for mut p in self.programs {
            let _ = (&mut p.join).await;
            logs.push(p.log);
            logs.extend(p.err_log);
        }
        logs
    }
}

/// What the ctsd this one replaced handed over (`ctsctl upgrade`), taken pool by pool as the
/// instances are launched.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// By pool name (`jordan`, `jordan:celery`): the actor's part and the workers' pipes.
    pub pools:
        std::collections::HashMap<String, (cts_supervisor::Handover, Vec<output::HandedPipe>)>,
}

impl Taken {
    /// The part of pool `name`, its pipes already reading into `output`.
    fn take(&mut self, name: &str, output: &output::LogOutput) -> Option<cts_supervisor::Handover> {
        let (handover, pipes) = self.pools.remove(name)?;
        for p in pipes {
            output.resume(p);
        }
        Some(handover)
    }
}

/// One pool as the registry hands it over: its name and output.
pub(crate) struct HandingOver {
    /// `jordan`, `jordan:celery`.
    pub name: String,
    /// Its actor.
    pub handle: InstanceHandle,
    /// Its pipes.
    pub output: Arc<output::LogOutput>,
}

/// Becomes true once a retired program's processes are gone.
pub(crate) type Gone = watch::Receiver<bool>;

/// The daemon's instances: owned by the main loop, published to the control handlers.
pub(crate) struct Instances {
    /// The file the running configuration came from.
    source: PathBuf,
    /// The `ctsd:` settings of the running configuration (a reload adopts the new ones; those
    /// it cannot apply are reported).
    daemon: DaemonSettings,
    /// The `deploy:` section of the running configuration.
    deploy: cts_config::DeploySettings,
    /// In configuration order.
    running: Vec<Running>,
    root: CancellationToken,
    kill: CancellationToken,
    shim: PathBuf,
    published: Arc<Published>,
    /// Sockets systemd passed that no instance has claimed yet.
    passed: listeners::PassedSockets,
    /// Per-worker cgroups, where the system gives ctsd some.
    cgroups: Option<Arc<cts_supervisor::contain::Cgroups>>,
    /// `stderr.log` writers a reload retired, finishing what their workers still write;
    /// waited for at shutdown.
    retiring: Vec<JoinHandle<()>>,
    /// Programs a reload removed, by `key:program`.
    retiring_programs: std::collections::HashMap<String, Gone>,
    /// Preload mode: one root per group of instances of the same code.
    roots: std::collections::HashMap<String, Arc<cts_supervisor::Root>>,
}

impl Instances {
    /// No instances yet, with `config`'s daemon settings; [`Instances::launch`] adds them.
    pub(crate) fn new(
        config: &Config,
        shim: PathBuf,
        published: Arc<Published>,
        passed: listeners::PassedSockets,
        cgroups: Option<Arc<cts_supervisor::contain::Cgroups>>,
    ) -> Instances {
        Instances {
            cgroups,
            source: config.source.clone(),
            daemon: config.daemon.clone(),
            deploy: config.deploy.clone(),
            running: Vec::new(),
            root: CancellationToken::new(),
            kill: CancellationToken::new(),
            shim,
            published,
            passed,
            retiring: Vec::new(),
            retiring_programs: std::collections::HashMap::new(),
            roots: std::collections::HashMap::new(),
        }
    }

    /// The root `inst`'s loaders come from in preload mode, shared with the instances of the
    /// same command, directory and user, and the directory of the module lists (made here,
    /// writable by the workers' user, who rewrite them).
    fn root_for(&mut self, inst: &InstanceConfig) -> Option<(Arc<cts_supervisor::Root>, PathBuf)> {
        let pool = &inst.pool;
        if !pool.preload {
            return None;
        }
        let group = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}",
            pool.command,
            pool.cwd,
            pool.user,
            pool.group,
            pool.env.get("PYTHONPATH")
        );
        let dir = self.daemon.log_dir.join(".preload");
        prepare_log_dir(&dir, inst);
        let root = self.roots.entry(group).or_default().clone();
        Some((root, dir))
    }

    /// The configuration being run, assembled from the instances' own copies (what a reload
    /// compares the file with).
    pub(crate) fn config(&self) -> Config {
        Config {
            source: self.source.clone(),
            daemon: self.daemon.clone(),
            deploy: self.deploy.clone(),
            instances: self
                .running
                .iter()
                .map(|r| InstanceConfig::clone(&r.config))
                .collect(),
        }
    }

    /// Sockets systemd passed that no instance has claimed yet.
    pub(crate) fn passed(&mut self) -> &mut listeners::PassedSockets {
        &mut self.passed
    }

    /// Starts the actor of `inst` on `listener` (`own`: ctsd bound it, systemd did not pass
    /// it); without one (its port is held by another process) the actor binds it before it
    /// spawns, retrying with its backoff.
    pub(crate) fn launch(
        &mut self,
        inst: &InstanceConfig,
        listener: Option<OwnedFd>,
        own: bool,
        taken: &mut Taken,
    ) -> Result<InstanceHandle, LaunchError> {
        let dir = self.daemon.log_dir.join(inst.key.as_str());
        prepare_log_dir(&dir, inst);
        let log = InstanceLog::open_with(
            &dir,
            &format!("log-{}", inst.key),
            log_options(&inst.pool.logs),
        )
        .map_err(|source| LaunchError {
            about: format!("starting the log writer of {}", inst.key),
            source,
        })?;
        let err_log = open_err_log(&dir, &err_file(None), inst, &inst.pool.logs)?;
        let output = Arc::new(output::LogOutput {
            log: log.sender(),
            err: std::sync::Mutex::new(err_log.as_ref().map(InstanceLog::sender)),
            sink: std::sync::Mutex::new(output::sink_for(
                inst.key.as_str(),
                "web",
                &inst.pool.logs,
            )),
            tails: output::Tails::default(),
            pumps: output::Pumps::default(),
        });
        let adopt = taken.take(inst.key.as_str(), &output);
        let token = self.root.child_token();
        let listener = listener.map(Arc::new);
        let addr = std::net::SocketAddr::new(self.daemon.bind, inst.port);
        let port = Port::new(addr, listener.clone(), own);
        let listen: cts_supervisor::Listen = {
            let (port, key) = (port.clone(), inst.key.to_string());
            Arc::new(move || {
                let fd = port
                    .listen_now()
                    .map_err(|e| format!("cannot listen on {}: {}", e.addr, e.source))?;
                crate::notify::fd_store(&key, &fd);
                Ok(fd)
            })
        };
        let (handle, join) = cts_supervisor::launch(
            cts_supervisor::Instance {
                config: inst.clone(),
                program: None,
                listener,
                listen,
                cgroups: self.cgroups.clone(),
                shim: self.shim.clone(),
                output: output.clone(),
                release: None,
                start_now: true,
                adopt,
                root: self.root_for(inst),
            },
            token.clone(),
            self.kill.clone(),
        );
        let mut programs = Vec::with_capacity(inst.programs.len());
        let mut config = inst.clone();
        for p in &inst.programs {
            let name = format!("{}:{}", inst.key, p.name);
            match self.start_program(
                inst,
                p,
                &token,
                handle.release(),
                true,
                Some((&name, taken)),
            ) {
                Ok(running) => programs.push(running),
                Err(e) => {
                    // The web pool runs; the program is reported, and left out of the running
                    // configuration, so that the next reload starts it.
                    tracing::warn!(instance = %inst.key, "{e}");
                    config.programs.retain(|q| q.name != p.name);
                }
            }
        }
        self.running.push(Running {
            config: Arc::new(config),
            handle: handle.clone(),
            token,
            join,
            log,
            err_log,
            output,
            port,
            file_workers: inst.pool.workers,
            programs,
        });
        self.publish();
        Ok(handle)
    }

    /// Starts the actor of `program` of `inst` (its log is `<program>.log`), under `parent`,
    /// in `release` (its instance's), its workers at once or with `start_now` false on the
    /// first `start`.
    fn start_program(
        &self,
        inst: &InstanceConfig,
        program: &ProgramConfig,
        parent: &CancellationToken,
        release: Option<PathBuf>,
        start_now: bool,
        taken: Option<(&str, &mut Taken)>,
    ) -> Result<RunningProgram, LaunchError> {
        let dir = self.daemon.log_dir.join(inst.key.as_str());
        let name = &program.name;
        let log = InstanceLog::open_file(
            &dir,
            &format!("{name}.log"),
            &format!("log-{}-{name}", inst.key),
            log_options(&program.pool.logs),
        )
        .map_err(|source| LaunchError {
            about: format!("starting the log writer of {}:{name}", inst.key),
            source,
        })?;
        let err_log = open_err_log(&dir, &err_file(Some(name)), inst, &program.pool.logs)?;
        let output = Arc::new(output::LogOutput {
            log: log.sender(),
            err: std::sync::Mutex::new(err_log.as_ref().map(InstanceLog::sender)),
            sink: std::sync::Mutex::new(output::sink_for(
                inst.key.as_str(),
                name.as_str(),
                &program.pool.logs,
            )),
            tails: output::Tails::default(),
            pumps: output::Pumps::default(),
        });
        let adopt = taken.and_then(|(name, t)| t.take(name, &output));
        let token = parent.child_token();
        let no_socket: cts_supervisor::Listen =
            Arc::new(|| Err("a program other than web has no socket".to_owned()));
        let (handle, join) = cts_supervisor::launch(
            cts_supervisor::Instance {
                config: inst.clone(),
                program: Some(name.clone()),
                listener: None,
                listen: no_socket,
                cgroups: self.cgroups.clone(),
                shim: self.shim.clone(),
                output: output.clone(),
                release,
                start_now,
                adopt,
                root: None,
            },
            token.clone(),
            self.kill.clone(),
        );
        Ok(RunningProgram {
            name: name.clone(),
            singleton: program.singleton,
            handle,
            token,
            join,
            log,
            err_log,
            output,
            file_workers: program.pool.workers,
        })
    }

    /// Starts `program` of the running instance `key` (a reload added it), in the release of
    /// the instance's web pool; `None` when the instance is not running. With the predecessor
    /// of the same name still stopping (removed by an earlier reload), its workers wait for a
    /// `start`, to be sent once the receiver returned says the predecessor is gone: a
    /// singleton never has two processes alive, not even across two reloads.
    pub(crate) fn launch_program(
        &mut self,
        key: &str,
        program: &ProgramName,
    ) -> Option<Result<(InstanceHandle, Option<Gone>), LaunchError>> {
        let i = self
            .running
            .iter()
            .position(|r| r.config.key.as_str() == key)?;
        let inst = self.running[i].config.clone();
        let p = inst.program(program.as_str())?;
        let name = format!("{key}:{program}");
        let predecessor = self
            .retiring_programs
            .get(&name)
            .filter(|gone| !*gone.borrow())
            .cloned();
        let release = self.running[i].handle.release();
        let started = self.start_program(
            &inst,
            p,
            &self.running[i].token,
            release,
            predecessor.is_none(),
            None,
        );
        let r = match started {
            Ok(running) => {
                let handle = running.handle.clone();
                let programs = &mut self.running[i].programs;
                programs.push(running);
                programs.sort_by(|a, b| a.name.cmp(&b.name));
                Ok((handle, predecessor))
            }
            Err(e) => {
                // Out of the running configuration, so that the next reload starts it.
                Arc::make_mut(&mut self.running[i].config)
                    .programs
                    .retain(|q| q.name != *program);
                Err(e)
            }
        };
        self.publish();
        Some(r)
    }

    /// Stops and forgets `program` of `key`; the future completes once its processes have
    /// exited and its log is flushed.
    pub(crate) fn retire_program(
        &mut self,
        key: &str,
        program: &str,
    ) -> Option<impl Future<Output = ()>> {
        let r = self
            .running
            .iter_mut()
            .find(|r| r.config.key.as_str() == key)?;
        let i = r.programs.iter().position(|p| p.name.as_str() == program)?;
        let p = r.programs.remove(i);
        let (gone, watcher) = watch::channel(false);
        self.retiring_programs.retain(|_, w| !*w.borrow());
        self.retiring_programs
            .insert(format!("{key}:{program}"), watcher);
        self.publish();
        p.token.cancel();
        Some(async move {
            p.finish().await;
            gone.send_replace(true);
        })
    }

    /// The actor of `program` of `key`.
    pub(crate) fn program_handle(&self, key: &str, program: &str) -> Option<InstanceHandle> {
        self.running
            .iter()
            .find(|r| r.config.key.as_str() == key)?
            .programs
            .iter()
            .find(|p| p.name.as_str() == program)
            .map(|p| p.handle.clone())
    }

    /// Stops and forgets `key`; the returned future completes once its workers have exited
    /// and its log is flushed.
    pub(crate) fn retire(&mut self, key: &str) -> Option<impl Future<Output = ()>> {
        let i = self
            .running
            .iter()
            .position(|r| r.config.key.as_str() == key)?;
        let r = self.running.remove(i);
        self.publish();
        r.token.cancel();
        Some(async move {
            for l in r.finish().await {
                l.close().await;
            }
        })
    }

    /// The actor of `key`.
    pub(crate) fn handle(&self, key: &str) -> Option<InstanceHandle> {
        self.running
            .iter()
            .find(|r| r.config.key.as_str() == key)
            .map(|r| r.handle.clone())
    }

    /// Every actor with its name (`jordan`, `jordan:celery`), in configuration order.
    pub(crate) fn handles(&self) -> impl Iterator<Item = (String, &InstanceHandle)> {
        self.running.iter().flat_map(|r| {
            let key = r.config.key.as_str();
            std::iter::once((key.to_owned(), &r.handle)).chain(
                r.programs
                    .iter()
                    .map(move |p| (format!("{key}:{}", p.name), &p.handle)),
            )
        })
    }

    /// Makes `inst` the configuration of the running instance of the same key (a reload
    /// changed it; the caller tells the actor, and [`Instances::adopt`] publishes).
    pub(crate) fn set_config(&mut self, inst: InstanceConfig) {
        if let Some(r) = self.running.iter_mut().find(|r| r.config.key == inst.key) {
            r.file_workers = inst.pool.workers;
            for p in &mut r.programs {
                if let Some(new) = inst.program(p.name.as_str()) {
                    p.file_workers = new.pool.workers;
                    p.singleton = new.singleton;
                }
            }
            r.config = Arc::new(inst);
        }
    }

    /// A reload gave `key` a new listening socket (`own`: bound by ctsd).
    pub(crate) fn set_listener(
        &mut self,
        key: &str,
        addr: std::net::SocketAddr,
        fd: Arc<OwnedFd>,
        own: bool,
    ) {
        if let Some(r) = self.running.iter().find(|r| r.config.key.as_str() == key) {
            r.port.replace(addr, fd, own);
        }
    }

    /// Records that the actor of `key` now runs `workers` workers (a `scale` it carried out),
    /// so that the next reload compares the file with that.
    pub(crate) fn set_workers(&mut self, key: &str, program: Option<&str>, workers: u32) {
        let Some(r) = self
            .running
            .iter_mut()
            .find(|r| r.config.key.as_str() == key)
        else {
            return;
        };
        // Published entries keep the copy they have; the next publish hands out this one.
        let config = Arc::make_mut(&mut r.config);
        let pool = match program {
            None => Some(&mut config.pool),
            Some(name) => config
                .programs
                .iter_mut()
                .find(|p| p.name.as_str() == name)
                .map(|p| &mut p.pool),
        };
        if let Some(pool) = pool.filter(|p| p.workers != workers) {
            pool.workers = workers;
            self.publish();
        }
    }

    /// Applies `inst`'s `logs:` settings to the running instance's writers: rotation, retention
    /// and format at once; a change of `logs.stderr` opens or retires `stderr.log` for the
    /// workers started from now on (the reload rolls them).
    pub(crate) fn apply_log_settings(&mut self, inst: &InstanceConfig) {
        let Some(r) = self.running.iter_mut().find(|r| r.config.key == inst.key) else {
            return;
        };
        let dir = self.daemon.log_dir.join(inst.key.as_str());
        r.log.reconfigure(log_options(&inst.pool.logs));
        let retired = apply_err_log(&mut r.err_log, &r.output, &dir, None, inst, &inst.pool.logs);
        self.retiring.extend(retired);
        if let Ok(mut sink) = r.output.sink.lock() {
            *sink = output::sink_for(inst.key.as_str(), "web", &inst.pool.logs);
        }
        for p in &mut r.programs {
            let Some(new) = inst.program(p.name.as_str()) else {
                continue;
            };
            p.log.reconfigure(log_options(&new.pool.logs));
            let name = Some(&p.name);
            let retired =
                apply_err_log(&mut p.err_log, &p.output, &dir, name, inst, &new.pool.logs);
            self.retiring.extend(retired);
            if let Ok(mut sink) = p.output.sink.lock() {
                *sink = output::sink_for(inst.key.as_str(), p.name.as_str(), &new.pool.logs);
            }
        }
    }

    /// Takes `new`'s daemon settings and instance order as the running configuration's (the
    /// instances themselves were launched, retired or changed one by one).
    pub(crate) fn adopt(&mut self, new: Config) {
        let order = |key: &str| {
            new.instances
                .iter()
                .position(|i| i.key.as_str() == key)
                .unwrap_or(usize::MAX)
        };
        self.running.sort_by_key(|r| order(r.config.key.as_str()));
        self.source = new.source;
        self.daemon = new.daemon;
        self.deploy = new.deploy;
        self.publish();
    }

    /// Reopens every log file (after an external logrotate).
    pub(crate) fn reopen_logs(&self) {
        for r in &self.running {
            r.log.reopen();
            if let Some(l) = &r.err_log {
                l.reopen();
            }
            for p in &r.programs {
                p.log.reopen();
                if let Some(l) = &p.err_log {
                    l.reopen();
                }
            }
        }
    }

    /// Tells every actor to stop its workers gracefully. Returns the token that makes them
    /// SIGKILL their workers instead, and a future that completes, with the logs to close,
    /// once every actor has ended.
    pub(crate) fn stop_all(
        &mut self,
    ) -> (CancellationToken, impl Future<Output = Vec<InstanceLog>>) {
        self.root.cancel();
        let running = std::mem::take(&mut self.running);
        let all_stopped = async move {
            let mut logs = Vec::new();
            for r in running {
                logs.extend(r.finish().await);
            }
            logs
        };
        (self.kill.clone(), all_stopped)
    }

    /// Why the instances cannot be handed to another ctsd now, if they cannot: something a
    /// reload retired is still stopping.
    pub(crate) fn busy(&self) -> Option<String> {
        if self.retiring.iter().any(|r| !r.is_finished()) {
            return Some("a stderr.log a reload retired is still being written".into());
        }
        self.retiring_programs
            .iter()
            .find(|(_, gone)| !*gone.borrow())
            .map(|(name, _)| format!("{name}, removed by a reload, is still stopping"))
    }

    /// Every pool, in launch order, for a handover.
    pub(crate) fn pools_to_hand_over(&self) -> Vec<HandingOver> {
        self.running
            .iter()
            .flat_map(|r| {
                let key = r.config.key.as_str();
                std::iter::once(HandingOver {
                    name: key.to_owned(),
                    handle: r.handle.clone(),
                    output: r.output.clone(),
                })
                .chain(r.programs.iter().map(move |p| HandingOver {
                    name: format!("{key}:{}", p.name),
                    handle: p.handle.clone(),
                    output: p.output.clone(),
                }))
            })
            .collect()
    }

    /// Each instance's listening socket (a duplicate), for a handover: `(key, fd, own)`.
    pub(crate) fn listeners(&self) -> Vec<(String, OwnedFd, bool)> {
        self.running
            .iter()
            .filter_map(|r| {
                let (fd, own) = r.port.current()?;
                Some((r.config.key.to_string(), fd.try_clone().ok()?, own))
            })
            .collect()
    }

    /// Once every actor has handed its pool over (and so ended): the logs, to flush and close.
    pub(crate) async fn handed_over(&mut self) -> Vec<InstanceLog> {
        let running = std::mem::take(&mut self.running);
        // The published entries hold the logs' senders too.
        self.publish();
        let mut logs = Vec::new();
        for r in running {
            logs.extend(r.finish().await);
        }
        logs
    }

    /// The `stderr.log` writers reloads retired, still finishing.
    pub(crate) fn take_retiring(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.retiring)
    }

    fn publish(&self) {
        if let Ok(mut deploy) = self.published.deploy.write() {
            deploy.clone_from(&self.deploy);
        }
        let entries = self
            .running
            .iter()
            .map(|r| InstanceEntry {
                config: r.config.clone(),
                handle: r.handle.clone(),
                log: r.log.handle(),
                err_log: r.err_log.as_ref().map(InstanceLog::handle),
                output: r.output.clone(),
                port: r.port.clone(),
                file_workers: r.file_workers,
                programs: r
                    .programs
                    .iter()
                    .map(|p| ProgramEntry {
                        name: p.name.clone(),
                        singleton: p.singleton,
                        handle: p.handle.clone(),
                        log: p.log.handle(),
                        err_log: p.err_log.as_ref().map(InstanceLog::handle),
                        output: p.output.clone(),
                        file_workers: p.file_workers,
                    })
                    .collect(),
            })
            .collect();
        self.published.replace(entries);
    }
}

/// Creates the instance's log directory (mode 0750) and, when workers run as another user,
/// gives it to that user, so that the application can write its own files there too. Failures
/// are logged, never fatal: the writer reports what it cannot write.
fn prepare_log_dir(dir: &Path, inst: &InstanceConfig) {
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

/// The file a pool's stderr goes to with `logs.stderr: separate`: web's `stderr.log`, a
/// program's `<program>.stderr.log`.
fn err_file(program: Option<&ProgramName>) -> String {
    match program {
        None => cts_logs::writer::STDERR_FILE.to_owned(),
        Some(p) => format!("{p}.stderr.log"),
    }
}

/// The stderr log writer (`file` in `dir`) of a pool of `inst` when its `logs.stderr` is
/// `separate`.
fn open_err_log(
    dir: &Path,
    file: &str,
    inst: &InstanceConfig,
    logs: &cts_config::LogSettings,
) -> Result<Option<InstanceLog>, LaunchError> {
    if logs.stderr != cts_config::StderrLog::Separate {
        return Ok(None);
    }
    InstanceLog::open_file(
        dir,
        file,
        &format!("err-{}-{file}", inst.key),
        log_options(logs),
    )
    .map(Some)
    .map_err(|source| LaunchError {
        about: format!("starting the stderr log writer {file} of {}", inst.key),
        source,
    })
}

/// Applies a pool's new `logs:` to its stderr log: reconfigured, opened, or retired (the writer
/// is returned, finishing what the running workers still write); workers started from now on
/// get it (a change of `logs.stderr` rolls them).
fn apply_err_log(
    err_log: &mut Option<InstanceLog>,
    output: &output::LogOutput,
    dir: &Path,
    program: Option<&ProgramName>,
    inst: &InstanceConfig,
    logs: &cts_config::LogSettings,
) -> Option<JoinHandle<()>> {
    let separate = logs.stderr == cts_config::StderrLog::Separate;
    let mut retired = None;
    match (separate, err_log.take()) {
        (true, Some(l)) => {
            l.reconfigure(log_options(logs));
            *err_log = Some(l);
        }
        (true, None) => match open_err_log(dir, &err_file(program), inst, logs) {
            Ok(l) => *err_log = l,
            Err(e) => tracing::warn!(instance = %inst.key, "{e}"),
        },
        // Running workers keep writing through their readers' senders until they exit.
        (false, Some(l)) => retired = Some(tokio::spawn(l.close())),
        (false, None) => {}
    }
    if let Ok(mut err) = output.err.lock() {
        *err = err_log.as_ref().map(InstanceLog::sender);
    }
    retired
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
