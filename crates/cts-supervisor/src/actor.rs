//! The instance actor: the loop that feeds one pool's [`crate::core::Pool`] its events and carries
//! out its effects. Every decision is the core's; what is here is I/O: spawning, signalling,
//! answering, publishing.

use crate::backoff::Jitter;
use crate::contain::{self, Cgroups, WorkerCgroup};
use crate::core::{Effect, Event, Level, Pool, Request, Settings, Sig, Ticket, WorkerId};
use crate::handle::{Control, Handover, InstanceHandle, Outcome, Summary};
use crate::instance::{spawn_spec, unit, unit_name, Instance, Listen, Output};
use crate::spawn::{self, SpawnSpec};
use crate::watcher::{self, Handed, PidFd, Watched, WorkerEvent};
use cts_config::{InstanceConfig, PoolSpec, ProgramName};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

mod loaders;

/// Starts the actor of one instance on the current runtime and starts its workers.
///
/// The actor stops its workers gracefully when `shutdown` is cancelled and returns once all have
/// exited; cancelling `kill` sends SIGKILL to every worker's process group at once.
pub fn launch(
    instance: Instance,
    shutdown: CancellationToken,
    kill: CancellationToken,
) -> (InstanceHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(32);
    let was_settled = instance.adopt.as_ref().is_some_and(|a| a.snapshot.settled);
    let (settled_tx, settled) = watch::channel(was_settled);
    let (progress_tx, progress) = watch::channel((0, 0));
    let key = unit_name(&instance.config, instance.program.as_ref());
    // The daemon launches a program's actor from the configuration that has it.
    let (spec, settings) = unit(&instance.config, instance.program.as_ref()).unwrap_or_else(|| {
        let web = &instance.config.pool;
        (web.clone(), Settings::program(web, true))
    });
    let mut adopt = instance.adopt;
    let pool = match &adopt {
        Some(a) => Pool::adopt(&key, settings, &a.snapshot, Jitter::new(), Instant::now()),
        None => Pool::new(&key, settings, Jitter::new(), Instant::now()),
    };
    let (summary_tx, summary) = watch::channel(pool.summary());
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let pinned = match &adopt {
        Some(a) => a.release.clone(),
        None => instance
            .release
            .clone()
            .or_else(|| pin(spec.cwd.as_deref())),
    };
    let (release_tx, release) = watch::channel(pinned.clone());
    let actor = Actor {
        spec: spawn_spec(
            &instance.config,
            &in_release(&spec, &pinned),
            &instance.shim,
        ),
        release: pinned,
        release_tx,
        notify_prefix: format!("ctsd/{}/{key}", std::process::id()),
        key,
        shim: instance.shim,
        cfg: instance.config,
        program: instance.program,
        pool_spec: spec,
        listener: instance.listener,
        listen: instance.listen,
        cgroups: instance.cgroups,
        worker_cgroups: HashMap::new(),
        output: instance.output,
        events_tx,
        pool,
        waiting: HashMap::new(),
        next_ticket: 0,
        settled: settled_tx,
        progress: progress_tx,
        summary: summary_tx,
        watchers: HashMap::new(),
        handover: CancellationToken::new(),
        loaders: None,
        root: instance.root,
    };
    let mut actor = actor;
    if let Some(a) = adopt.take() {
        actor.adopt(a.notify.into_iter().collect(), a.pending);
        if let Some((pid, channel)) = a.loader {
            actor.adopt_loader(pid, channel);
        }
    }
    // An adopted pool starts too: that fills only the slots it has no worker for.
    let start_now = instance.start_now;
    let join = tokio::spawn(actor.run(rx, events_rx, shutdown, kill, start_now));
    let handle = InstanceHandle {
        tx,
        settled,
        progress,
        summary,
        release,
    };
    (handle, join)
}

struct Actor {
    /// `jordan`, or `jordan:celery` for a program.
    key: String,
    /// The ctsd binary (exec shim), to rebuild `spec` on reconfigure.
    shim: PathBuf,
    cfg: InstanceConfig,
    /// The program this actor runs, `None` for web.
    program: Option<ProgramName>,
    /// Its pool's settings (`cfg.pool`, or the program's).
    pool_spec: PoolSpec,
    /// The directory its processes start in: `cwd` resolved when the pool was started (so a
    /// `current` symlink switched later does not move a crash replacement), or the release a
    /// deploy moved it to.
    release: Option<PathBuf>,
    /// Publishes `release` for `status`.
    release_tx: watch::Sender<Option<PathBuf>>,
    /// How to start a worker, or why workers cannot be started (unknown user, ...).
    spec: Result<SpawnSpec, String>,
    /// `None` until its port could be had.
    listener: Option<Arc<OwnedFd>>,
    listen: Listen,
    cgroups: Option<Arc<Cgroups>>,
    /// The cgroup of each live worker that has one.
    worker_cgroups: HashMap<WorkerId, WorkerCgroup>,
    output: Arc<dyn Output>,
    /// Abstract socket name prefix for per-worker notify sockets.
    notify_prefix: String,
    /// Cloned into every watcher task.
    events_tx: mpsc::UnboundedSender<WorkerEvent>,
    /// Every decision.
    pool: Pool,
    /// Requests the pool has not answered yet.
    waiting: HashMap<Ticket, oneshot::Sender<Outcome>>,
    next_ticket: u64,
    /// Tells the daemon the first start has settled.
    settled: watch::Sender<bool>,
    /// Rolling restart progress: (replaced, total), for `ctsctl restart` on a terminal.
    progress: watch::Sender<(u32, u32)>,
    /// State and ready count for the daemon's `STATUS=` line.
    summary: watch::Sender<Summary>,
    /// Each live worker's watcher; it gives back the notify socket on a handover.
    watchers: HashMap<WorkerId, JoinHandle<Option<Handed>>>,
    /// Cancelled to stop every watcher for a handover.
    handover: CancellationToken,
    /// Preload mode (`preload: true`, web only): the loaders its workers are forked from.
    loaders: Option<loaders::Loaders>,
    /// Preload mode: the root its loaders come from, and where module lists are kept.
    root: Option<(Arc<crate::root::Root>, PathBuf)>,
}

/// A pool frozen for a handover: what to do next, and where the pool goes.
type Frozen = (
    oneshot::Receiver<bool>,
    oneshot::Sender<Result<Handover, String>>,
);

/// What woke the actor up.
enum Wake {
    Worker(WorkerEvent),
    Control(Option<Control>),
    Timer,
    Shutdown,
    Kill,
    /// Frozen for a handover: hand over (`true`) or resume.
    Go(bool),
}

impl Actor {
    async fn run(
        mut self,
        mut controls: mpsc::Receiver<Control>,
        mut events: mpsc::UnboundedReceiver<WorkerEvent>,
        shutdown: CancellationToken,
        kill: CancellationToken,
        start_now: bool,
    ) {
        if let Err(e) = &self.spec {
            self.note(&format!("cannot start workers: {e}"));
        }
        if start_now {
            let now = Instant::now();
            let first = self.pool.start(now);
            self.apply(first, now);
        }
        let (mut controls_open, mut shutting_down, mut killed) = (true, false, false);
        // The worker that just exited, whose leftovers go once its exit is handled.
        let mut gone = None;
        // Frozen for a handover: what to do next, and where the pool goes.
        let mut frozen: Option<Frozen> = None;
        while !self.pool.finished() {
            // The pool's next deadline, or a preload loader's.
            let deadline = match (self.pool.deadline(), self.loader_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let wake = tokio::select! {
                // A worker became ready or exited: the common wake-up.
                // (While frozen for a handover, they wait: they go along with the pool.)
                Some(ev) = events.recv(), if frozen.is_none() => Wake::Worker(ev),
                // An operator's request (or every handle dropped); while frozen, only those
                // that change nothing are taken.
                c = controls.recv(), if controls_open => Wake::Control(c),
                // Frozen: hand over, or resume.
                go = async { (&mut frozen.as_mut().expect("guarded").0).await }, if frozen.is_some() => {
                    Wake::Go(go.unwrap_or(false))
                }
                // The earliest deadline: readiness, SIGKILL escalation, backoff, reset.
                () = sleep_until(deadline), if deadline.is_some() && frozen.is_none() => Wake::Timer,
                // ctsd is shutting down: stop gracefully.
                () = shutdown.cancelled(), if !shutting_down => Wake::Shutdown,
                // A second signal: kill now.
                () = kill.cancelled(), if !killed => Wake::Kill,
            };
            let event = match wake {
                Wake::Worker(WorkerEvent::Loader(ev)) => {
                    for event in self.on_loader(ev) {
                        let now = Instant::now();
                        let effects = self.pool.handle(event, now);
                        self.apply(effects, now);
                    }
                    self.close_idle_loader();
                    continue;
                }
                Wake::Worker(WorkerEvent::Ready(id)) => Event::Ready(id),
                Wake::Worker(WorkerEvent::Exited(id, exit)) => {
                    gone = Some(id);
                    self.watchers.remove(&id);
                    Event::Exited(id, exit)
                }
                Wake::Control(Some(Control::Freeze { ready, go, handed })) => {
                    let busy = self.loaders.as_ref().and_then(|l| l.busy());
                    let at_rest = match busy {
                        Some(b) => Err(format!("{}: {b}", self.key)),
                        None => self.pool.snapshot(Instant::now()).map(drop),
                    };
                    match at_rest {
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                        Ok(_) => {
                            let _ = ready.send(Ok(()));
                            frozen = Some((go, handed));
                        }
                    }
                    continue;
                }
                Wake::Go(go) => {
                    let Some((_, handed)) = frozen.take() else {
                        continue;
                    };
                    if !go {
                        continue;
                    }
                    match self.hand_over(&mut events).await {
                        Ok(h) => {
                            self.note("handed over to the new ctsd");
                            let _ = handed.send(Ok(h));
                            return;
                        }
                        Err(e) => {
                            let _ = handed.send(Err(e));
                            continue;
                        }
                    }
                }
                Wake::Control(Some(c)) if frozen.is_some() && !harmless(&c) => {
                    refuse_frozen(c);
                    continue;
                }
                Wake::Control(Some(c)) => match self.request(c) {
                    // New code is loaded before a roll of a preload pool.
                    Some(Event::Request(ticket, r)) if self.preloads() && loaders::rolls(&r) => {
                        self.roll_preloaded(ticket, r);
                        continue;
                    }
                    Some(e) => e,
                    None => continue,
                },
                Wake::Control(None) => {
                    controls_open = false;
                    shutting_down = true;
                    Event::Shutdown
                }
                Wake::Timer => {
                    let now = Instant::now();
                    for event in self.loader_timeouts(now) {
                        let effects = self.pool.handle(event, now);
                        self.apply(effects, now);
                    }
                    Event::Tick
                }
                Wake::Shutdown => {
                    shutting_down = true;
                    Event::Shutdown
                }
                Wake::Kill => {
                    (shutting_down, killed) = (true, true);
                    Event::Kill
                }
            };
            let now = Instant::now();
            let effects = self.pool.handle(event, now);
            self.apply(effects, now);
            self.close_idle_loader();
            if let Some(id) = gone.take() {
                // What the worker started goes with it, also what left its process group;
                // after its replacement was spawned, which is what clients wait for.
                if let (Some(c), Some(cg)) = (&self.cgroups, self.worker_cgroups.remove(&id)) {
                    c.retire(cg);
                }
                // A scan of /proc (every process's environment): off the runtime thread.
                let key = self.key.clone();
                tokio::task::spawn_blocking(move || contain::kill_orphans_of(&key, id));
                if let Some(c) = &self.cgroups {
                    c.prepare();
                }
            }
        }
        self.close_loaders(killed);
        self.note("all workers stopped");
    }

    /// Whether its workers are forked by a preload loader.
    fn preloads(&self) -> bool {
        self.pool_spec.preload && self.program.is_none()
    }

    /// Turns a control into the pool's event; answers what needs no decision (a status).
    fn request(&mut self, control: Control) -> Option<Event> {
        let (request, tx) = match control {
            Control::Status(tx) => {
                let _ = tx.send(self.pool.status());
                return None;
            }
            Control::Freeze { ready, .. } => {
                let _ = ready.send(Err("a handover is handled by the actor's loop".into()));
                return None;
            }
            Control::Listen(listener, tx) => {
                self.listener = Some(listener);
                let _ = tx.send(());
                return None;
            }
            Control::Release { dir, roll, done } => {
                self.set_release(dir);
                self.respec();
                if !roll {
                    let _ = done.send(Ok(crate::core::Done::SettingsUpdated));
                    return None;
                }
                let settings = self.pool.settings().clone();
                (Request::Reconfigure { settings, roll }, done)
            }
            Control::Start(tx) => (Request::Start, tx),
            Control::Stop(tx) => (Request::Stop, tx),
            Control::Restart(tx) => (Request::Restart, tx),
            Control::Scale(n, tx) => (Request::Scale(n), tx),
            Control::Signal(sig, tx) => {
                let (number, name) = (sig as i32, sig.as_str().to_owned());
                (Request::Signal { number, name }, tx)
            }
            Control::Reconfigure {
                config,
                listener,
                roll,
                done,
            } => {
                let Some((spec, settings)) = unit(&config, self.program.as_ref()) else {
                    // The daemon retires a program the file no longer has instead.
                    let _ = done.send(Err(crate::core::Refusal::Gone(self.key.clone())));
                    return None;
                };
                if spec.cwd != self.pool_spec.cwd {
                    // Another directory in the file: pinned anew.
                    self.set_release(pin(spec.cwd.as_deref()));
                }
                self.cfg = *config;
                self.pool_spec = spec;
                if let Some(l) = listener {
                    // Old workers keep their own copy of the old socket until they stop.
                    self.listener = Some(l);
                }
                self.respec();
                (Request::Reconfigure { settings, roll }, done)
            }
        };
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.waiting.insert(ticket, tx);
        Some(Event::Request(ticket, request))
    }

    /// Carries out `effects` in order; a spawn's answer goes back to the pool at once.
    fn apply(&mut self, effects: Vec<Effect>, now: Instant) {
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Spawn {
                    worker,
                    slot,
                    socket,
                } => {
                    let answer = match self.spawn(worker, slot, socket) {
                        Ok(Some(pid)) => Event::Spawned(worker, pid),
                        // A preload loader answers later.
                        Ok(None) => continue,
                        Err(e) => Event::SpawnFailed(worker, e),
                    };
                    queue.extend(self.pool.handle(answer, now));
                }
                Effect::Signal { pid, signal } => {
                    let signal = match signal {
                        Sig::Term => Some(Signal::SIGTERM),
                        Sig::Kill => Some(Signal::SIGKILL),
                        Sig::Other(n) => Signal::try_from(n).ok(),
                    };
                    if let Some(s) = signal {
                        let _ = killpg(Pid::from_raw(pid as i32), s);
                    }
                }
                Effect::Reply(ticket, outcome) => {
                    if let Some(tx) = self.waiting.remove(&ticket) {
                        let _ = tx.send(outcome);
                    }
                }
                Effect::Note(Level::Info, text) => self.note(&text),
                Effect::Note(Level::Warning, text) => {
                    tracing::warn!(instance = %self.key, "{text}");
                    self.output.event(&text);
                }
                Effect::Progress { replaced, total } => {
                    let _ = self.progress.send((replaced, total));
                }
                Effect::Settled => {
                    self.settled.send_replace(true);
                }
            }
        }
        // Receivers wake only when state or ready count changed.
        let now = self.pool.summary();
        self.summary.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }

    /// Starts worker `id`'s process; returns its pid, or `None` when a preload loader forks
    /// it and answers later.
    fn spawn(&mut self, id: WorkerId, slot: u32, socket: bool) -> Result<Option<u32>, String> {
        if self.preloads() {
            return self.spawn_preloaded(id, slot);
        }
        if let Err(e) = &self.spec {
            return Err(e.clone());
        }
        // What the exec shim would fail on, said here so that `status` gives the reason (the
        // shim's own message only reaches the log).
        cts_config::find_program(&in_release(&self.pool_spec, &self.release))
            .map_err(|e| e.message)?;
        let notify = if self.pool_spec.ready.notify {
            let name = format!("{}/{id}", self.notify_prefix);
            let made = spawn::notify_socket(&name)
                .map_err(|e| format!("cannot create the notify socket: {e}"))?;
            Some(made)
        } else {
            None
        };
        let listener = self.listener_fd(socket)?;
        let spec = self.spec.as_ref().map_err(Clone::clone)?;
        let cgroup = self.cgroups.as_ref().and_then(|c| c.worker().ok());
        let tag = contain::tag(&self.key, id);
        let containment = spawn::Containment { tag: &tag };
        let notify_name = notify.as_ref().map(|(_, n)| n.as_str());
        let mut child = spawn::spawn(spec, listener, notify_name, &containment)
            .map_err(|e| format!("{}: {e}", spawn::program_name(&spec.argv)))?;
        let Some(pid) = child.id() else {
            return Err("the worker exited before it could be watched".into());
        };
        contain::watching(pid);
        if let (Some(cgroups), Some(cg)) = (&self.cgroups, cgroup) {
            cgroups.enter(pid, &cg);
            self.worker_cgroups.insert(id, cg);
        }
        self.output
            .attach(slot, pid, child.stdout.take(), child.stderr.take());
        self.watch(id, Watched::Child(child), notify.map(|(sock, _)| sock));
        Ok(Some(pid))
    }

    /// Starts the task that watches worker `id` (reaps it, forwards `READY=1` and its exit).
    fn watch(&mut self, id: WorkerId, process: Watched, notify: Option<tokio::net::UnixDatagram>) {
        let watch = watcher::watch(
            id,
            process,
            notify,
            self.events_tx.clone(),
            self.handover.clone(),
        );
        self.watchers.insert(id, tokio::spawn(watch));
    }

    /// The listening socket's fd when `socket` (bound now if the port could not be had
    /// before), for fd 3 of a new process.
    fn listener_fd(&mut self, socket: bool) -> Result<Option<std::os::fd::RawFd>, String> {
        Ok(match (socket, &self.listener) {
            (false, _) => None,
            (true, Some(l)) => Some(l.as_raw_fd()),
            (true, None) => {
                let l = (self.listen)()?;
                self.note("listening on its port now");
                let fd = l.as_raw_fd();
                self.listener = Some(l);
                Some(fd)
            }
        })
    }

    /// Watches the pool's workers, which this actor did not spawn: they were handed over by
    /// the ctsd this one replaced (or by this actor's own failed handover). A worker that
    /// cannot be watched any more (it is not this process's child) is reported as exited.
    fn adopt(
        &mut self,
        mut notify: HashMap<WorkerId, OwnedFd>,
        pending: Vec<(WorkerId, Option<crate::core::Exit>)>,
    ) {
        self.handover = CancellationToken::new();
        // Decided on first, before anything else happens: their exits were reaped already.
        let exited: std::collections::HashSet<WorkerId> = pending
            .iter()
            .filter(|(_, e)| e.is_some())
            .map(|(id, _)| *id)
            .collect();
        for (id, exit) in pending {
            let ev = match exit {
                Some(exit) => WorkerEvent::Exited(id, exit),
                None => WorkerEvent::Ready(id),
            };
            let _ = self.events_tx.send(ev);
        }
        for w in self.pool.status().workers {
            let Some(id) = self.pool.worker_id(w.pid).filter(|id| !exited.contains(id)) else {
                continue;
            };
            contain::watching(w.pid);
            if let Some(c) = &self.cgroups {
                if let Some(cg) = c.of(w.pid) {
                    self.worker_cgroups.insert(id, cg);
                }
            }
            let sock = notify.remove(&id).and_then(|fd| {
                let std = std::os::unix::net::UnixDatagram::from(fd);
                std.set_nonblocking(true).ok()?;
                tokio::net::UnixDatagram::from_std(std).ok()
            });
            match PidFd::open(w.pid) {
                Ok(pidfd) => self.watch(id, Watched::Adopted(pidfd), sock),
                Err(e) => {
                    contain::reaped(w.pid);
                    let exit = crate::core::Exit {
                        success: false,
                        description: format!("could not be watched after the handover: {e}"),
                        killed: false,
                    };
                    let _ = self.events_tx.send(WorkerEvent::Exited(id, exit));
                }
            }
        }
    }

    /// Stops watching every worker and returns the pool as data for the next ctsd; on a
    /// refusal (the pool is busy), nothing has changed.
    async fn hand_over(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<WorkerEvent>,
    ) -> Result<Handover, String> {
        self.pool.snapshot(Instant::now())?;
        self.handover.cancel();
        let mut notify = HashMap::new();
        for (_, join) in self.watchers.drain() {
            if let Ok(Some(h)) = join.await {
                if let Some(fd) = h.notify {
                    notify.insert(h.id, fd);
                }
            }
        }
        // What the watchers reported since the pool froze is not decided on here (a crash
        // would spawn a replacement): it goes along, for the next actor to decide on first.
        let mut pending = Vec::new();
        while let Ok(ev) = events.try_recv() {
            match ev {
                WorkerEvent::Ready(id) => pending.push((id, None)),
                WorkerEvent::Exited(id, exit) => {
                    notify.remove(&id);
                    pending.push((id, Some(exit)));
                }
                // A loader that said something now: the next actor starts one if it must.
                WorkerEvent::Loader(_) => {}
            }
        }
        // A preload pool's ready loader goes along: workers are forked from it again.
        let loader = self.hand_over_loader().await;
        match self.pool.snapshot(Instant::now()) {
            Ok(snapshot) => Ok(Handover {
                snapshot,
                release: self.release.clone(),
                notify: notify.into_iter().collect(),
                loader,
                pending,
            }),
            Err(e) => {
                // Cannot happen (nothing was decided since the pool froze at rest); should it,
                // the pool goes on here.
                self.adopt(notify, pending);
                if let Some((pid, channel)) = loader {
                    self.adopt_loader(pid, channel);
                }
                Err(e)
            }
        }
    }

    /// Rebuilds the spawn spec from the configuration and the release.
    fn respec(&mut self) {
        let pool = in_release(&self.pool_spec, &self.release);
        self.spec = spawn_spec(&self.cfg, &pool, &self.shim);
        if let Err(e) = &self.spec {
            self.note(&format!("cannot start workers: {e}"));
        }
    }

    fn set_release(&mut self, release: Option<PathBuf>) {
        if release != self.release {
            if let Some(r) = &release {
                self.note(&format!("release {}", r.display()));
            }
            self.release = release;
            self.release_tx.send_replace(self.release.clone());
        }
    }

    fn note(&self, text: &str) {
        tracing::info!(instance = %self.key, "{text}");
        self.output.event(text);
    }
}

/// Whether `c` may be taken while the pool is frozen for a handover: it changes nothing the
/// handover carries.
fn harmless(c: &Control) -> bool {
    matches!(c, Control::Status(_) | Control::Signal(..))
}

/// Refuses `c`: the pool is frozen for a handover.
fn refuse_frozen(c: Control) {
    let why = || crate::core::Refusal::Busy("ctsd is being upgraded: try again in a moment".into());
    match c {
        Control::Start(tx)
        | Control::Stop(tx)
        | Control::Restart(tx)
        | Control::Scale(_, tx)
        | Control::Signal(_, tx) => {
            let _ = tx.send(Err(why()));
        }
        Control::Reconfigure { done, .. } | Control::Release { done, .. } => {
            let _ = done.send(Err(why()));
        }
        Control::Freeze { ready, .. } => {
            let _ = ready.send(Err("already frozen for a handover".into()));
        }
        // Answered by the next ctsd's actor once it has the socket; dropping it says "gone".
        Control::Listen(..) | Control::Status(_) => {}
    }
}

/// The directory `cwd` stands for now (a `current` symlink resolved), or `cwd` itself when it
/// cannot be resolved (it is reported when a worker fails to start there).
fn pin(cwd: Option<&std::path::Path>) -> Option<PathBuf> {
    cwd.map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.to_path_buf()))
}

/// `pool` with its processes starting in `release`.
fn in_release(pool: &PoolSpec, release: &Option<PathBuf>) -> PoolSpec {
    PoolSpec {
        cwd: release.clone().or_else(|| pool.cwd.clone()),
        ..pool.clone()
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
