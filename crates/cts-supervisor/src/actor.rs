//! The instance actor: owns one instance's workers, timers and state; nothing else touches them.

use crate::backoff::{restart_delay, CrashWindow, Jitter};
use crate::handle::{
    Control, InstanceHandle, InstanceState, Outcome, Status, Summary, WorkerInfo, WorkerState,
};
use crate::spawn::{self, Privileges, SpawnSpec};
use cts_config::InstanceConfig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixDatagram;
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where a worker's output and the actor's events about the instance go. The daemon connects
/// this to the instance's log; the supervisor knows nothing about files.
pub trait Output: Send + Sync + 'static {
    /// A worker was started: read its pipes until they close.
    fn attach(&self, slot: u32, pid: u32, stdout: Option<ChildStdout>, stderr: Option<ChildStderr>);
    /// Something happened to the instance that the operator should find in its log.
    fn event(&self, text: &str);
}

/// What it takes to run one instance.
pub struct Instance {
    /// The instance's validated configuration.
    pub config: InstanceConfig,
    /// The instance's listening socket, owned by ctsd for its whole life.
    pub listener: Arc<OwnedFd>,
    /// The ctsd binary, run as exec shim for every worker.
    pub shim: PathBuf,
    /// Where output and events go.
    pub output: Arc<dyn Output>,
}

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
    let (settled_tx, settled_rx) = watch::channel(false);
    let (progress_tx, progress_rx) = watch::channel((0, 0));
    let (summary_tx, summary_rx) = watch::channel(Summary {
        state: InstanceState::Starting,
        ready: 0,
        desired: instance.config.pool.workers,
    });
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let key = instance.config.key.to_string();
    let spec = spawn_spec(&instance.config, &instance.shim);
    let desired = instance.config.pool.workers as usize;
    let actor = Actor {
        shim: instance.shim,
        notify_prefix: format!("ctsd/{}/{key}", std::process::id()),
        key,
        cfg: instance.config,
        spec,
        listener: instance.listener,
        output: instance.output,
        events_tx,
        workers: Vec::new(),
        slots: vec![Slot::default(); desired],
        next_id: 0,
        generation: 0,
        running: true,
        shutting_down: false,
        failing: false,
        crashes: CrashWindow::default(),
        restarts: 0,
        last_exit: None,
        running_since: Some(Instant::now()),
        rolling: None,
        start_waiters: Vec::new(),
        stop_waiters: Vec::new(),
        settled: settled_tx,
        progress: progress_tx,
        summary: summary_tx,
        jitter: Jitter::new(),
    };
    let join = tokio::spawn(actor.run(rx, events_rx, shutdown, kill));
    (
        InstanceHandle {
            tx,
            settled: settled_rx,
            progress: progress_rx,
            summary: summary_rx,
        },
        join,
    )
}

/// Builds the spawn spec once: names, privileges and limits are checked here, not per spawn.
fn spawn_spec(config: &InstanceConfig, shim: &std::path::Path) -> Result<SpawnSpec, String> {
    let pool = &config.pool;
    let privileges = Privileges::for_pool(pool)?;
    Ok(SpawnSpec {
        shim: shim.to_path_buf(),
        argv: pool.command.clone(),
        env: pool
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        fd_name: config.key.to_string(),
        privileges,
    })
}

/// What the per-worker watcher tasks report.
#[derive(Debug)]
enum WorkerEvent {
    /// The worker sent `READY=1`.
    Ready(u64),
    /// The worker exited and was reaped.
    Exited(u64, io::Result<ExitStatus>),
}

/// One live worker.
#[derive(Debug)]
struct Worker {
    /// Unique within the actor; events refer to workers by it (pids get reused).
    id: u64,
    /// Position in the pool; a replacement takes the slot of the worker it replaces.
    slot: u32,
    /// Process id and process group id.
    pid: u32,
    /// Which restart generation started it; a rolling restart replaces older ones.
    generation: u64,
    /// Starting, ready or stopping.
    state: WorkerState,
    /// When it was started.
    started: Instant,
    /// Starting: when it counts as ready (`ready.after`) or fails (`ready.timeout`).
    /// Stopping: when SIGKILL follows SIGTERM. `None`: nothing pending.
    deadline: Option<Instant>,
    /// It missed its readiness deadline and is being stopped for that: its exit is a failure.
    failed_ready: bool,
    /// SIGKILL was sent; no further escalation.
    kill_sent: bool,
}

/// Restart bookkeeping of one slot.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Crashes without a stable run in between.
    consecutive: u32,
    /// Backoff: do not start this slot's next worker before this.
    next_spawn: Option<Instant>,
}

/// A rolling restart in progress.
#[derive(Debug)]
struct Rolling {
    /// Workers of an older generation are replaced.
    target: u64,
    /// The new workers starting now, each with the old one it replaces once ready (at most
    /// `rolling.batch` pairs).
    current: Vec<(u64, u64)>,
    /// Workers to replace when the restart began (for progress).
    total: u32,
    /// Workers replaced so far.
    replaced: u32,
    /// Who waits for the end.
    waiters: Vec<oneshot::Sender<Outcome>>,
}

struct Actor {
    key: String,
    /// The ctsd binary (exec shim), to rebuild `spec` on reconfigure.
    shim: PathBuf,
    cfg: InstanceConfig,
    /// How to start a worker, or why workers cannot be started (unknown user, ...).
    spec: Result<SpawnSpec, String>,
    listener: Arc<OwnedFd>,
    output: Arc<dyn Output>,
    /// Abstract socket name prefix for per-worker notify sockets.
    notify_prefix: String,
    /// Cloned into every watcher task.
    events_tx: mpsc::UnboundedSender<WorkerEvent>,
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    next_id: u64,
    /// Generation new workers get.
    generation: u64,
    /// The operator wants this instance up.
    running: bool,
    /// ctsd is stopping: stop everything and end.
    shutting_down: bool,
    /// Crash loop detected.
    failing: bool,
    crashes: CrashWindow,
    restarts: u64,
    last_exit: Option<String>,
    running_since: Option<Instant>,
    rolling: Option<Rolling>,
    /// Answered when the instance is running (or fails).
    start_waiters: Vec<oneshot::Sender<Outcome>>,
    /// Answered when no worker is left.
    stop_waiters: Vec<oneshot::Sender<Outcome>>,
    /// Tells the daemon the first start has settled.
    settled: watch::Sender<bool>,
    /// Rolling restart progress: (replaced, total), for `ctsctl restart` on a terminal.
    progress: watch::Sender<(u32, u32)>,
    /// State and ready count for the daemon's `STATUS=` line.
    summary: watch::Sender<Summary>,
    jitter: Jitter,
}

/// What woke the actor up.
enum Wake {
    Event(WorkerEvent),
    Control(Option<Control>),
    Timer,
    Shutdown,
    Kill,
}

impl Actor {
    async fn run(
        mut self,
        mut controls: mpsc::Receiver<Control>,
        mut events: mpsc::UnboundedReceiver<WorkerEvent>,
        shutdown: CancellationToken,
        kill: CancellationToken,
    ) {
        if let Err(e) = &self.spec {
            self.note(&format!("cannot start workers: {e}"));
        }
        self.reconcile(Instant::now());
        let mut controls_open = true;
        let mut killed = false;
        while !(self.shutting_down && self.workers.is_empty()) {
            let deadline = self.next_deadline();
            let wake = tokio::select! {
                // A worker became ready or exited: the common wake-up.
                Some(ev) = events.recv() => Wake::Event(ev),
                // An operator's request (or every handle dropped).
                c = controls.recv(), if controls_open => Wake::Control(c),
                // The earliest pending deadline: readiness, SIGKILL escalation, backoff, reset.
                () = sleep_until(deadline), if deadline.is_some() => Wake::Timer,
                // ctsd is shutting down: stop gracefully.
                () = shutdown.cancelled(), if !self.shutting_down => Wake::Shutdown,
                // A second signal: kill now.
                () = kill.cancelled(), if !killed => Wake::Kill,
            };
            let now = Instant::now();
            match wake {
                Wake::Event(WorkerEvent::Ready(id)) => {
                    if let Some(i) = self.index(id) {
                        if self.workers[i].state == WorkerState::Starting {
                            self.mark_ready(i);
                        }
                    }
                }
                Wake::Event(WorkerEvent::Exited(id, status)) => self.on_exit(id, status, now),
                Wake::Control(Some(c)) => self.on_control(c, now),
                Wake::Control(None) => {
                    controls_open = false;
                    self.begin_shutdown();
                }
                Wake::Timer => self.on_timers(now),
                Wake::Shutdown => self.begin_shutdown(),
                Wake::Kill => {
                    killed = true;
                    self.begin_shutdown();
                    self.kill_all();
                }
            }
            self.reconcile(Instant::now());
            self.publish_summary();
        }
        self.publish_summary();
        self.note("all workers stopped");
    }

    /// Publishes state and ready count if they changed (receivers wake only then).
    fn publish_summary(&self) {
        let now = Summary {
            state: self.state(),
            ready: self.ready_count(),
            desired: self.desired(),
        };
        self.summary.send_if_modified(|s| {
            let changed = *s != now;
            *s = now;
            changed
        });
    }

    fn note(&self, text: &str) {
        tracing::info!(instance = %self.key, "{text}");
        self.output.event(text);
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.workers.iter().position(|w| w.id == id)
    }

    fn ready_count(&self) -> u32 {
        self.workers
            .iter()
            .filter(|w| w.state == WorkerState::Ready)
            .count() as u32
    }

    fn desired(&self) -> u32 {
        self.cfg.pool.workers
    }

    /// A slot is occupied while it has a worker that is not stopping.
    fn slot_occupied(&self, slot: u32) -> bool {
        self.workers
            .iter()
            .any(|w| w.slot == slot && w.state != WorkerState::Stopping)
    }

    fn state(&self) -> InstanceState {
        if self.shutting_down || !self.running {
            if self.workers.is_empty() {
                InstanceState::Stopped
            } else {
                InstanceState::Stopping
            }
        } else if self.failing {
            InstanceState::Failing
        } else if (0..self.desired()).all(|s| {
            self.workers
                .iter()
                .any(|w| w.slot == s && w.state == WorkerState::Ready)
        }) {
            InstanceState::Running
        } else {
            InstanceState::Starting
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let reset_after = self.cfg.pool.restart.reset_after;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for w in &self.workers {
            if let Some(d) = w.deadline {
                consider(d);
            }
            let slot_backing_off = self
                .slots
                .get(w.slot as usize)
                .is_some_and(|s| s.consecutive > 0);
            if w.state == WorkerState::Ready && slot_backing_off {
                consider(w.started + reset_after);
            }
        }
        if self.running && !self.shutting_down {
            for (slot, s) in self.slots.iter().enumerate() {
                if let Some(t) = s.next_spawn {
                    if !self.slot_occupied(slot as u32) {
                        consider(t);
                    }
                }
            }
        }
        next
    }

    fn on_control(&mut self, control: Control, now: Instant) {
        match control {
            Control::Status(tx) => {
                let _ = tx.send(self.status());
            }
            Control::Start(tx) => {
                if self.shutting_down {
                    let _ = tx.send(Err("ctsd is shutting down".into()));
                    return;
                }
                if !self.running {
                    self.note("starting");
                    self.running = true;
                    self.running_since = Some(now);
                }
                // An explicit start is also "try again now" for a failing instance.
                self.clear_failures();
                self.start_waiters.push(tx);
            }
            Control::Stop(tx) => {
                if !self.running && self.workers.is_empty() {
                    let _ = tx.send(Ok("already stopped".into()));
                    return;
                }
                if self.running {
                    self.note("stopping");
                }
                self.running = false;
                self.running_since = None;
                self.fail_rolling("the instance was stopped");
                for w in self.start_waiters.drain(..) {
                    let _ = w.send(Err("the instance was stopped".into()));
                }
                self.stop_waiters.push(tx);
            }
            Control::Scale(n, tx) => {
                if self.shutting_down {
                    let _ = tx.send(Err("ctsd is shutting down".into()));
                    return;
                }
                let from = self.desired();
                self.cfg.pool.workers = n;
                self.slots.resize(n as usize, Slot::default());
                self.note(&format!("scaling from {from} to {n} workers"));
                if self.running {
                    self.start_waiters.push(tx);
                } else {
                    let _ = tx.send(Ok(format!(
                        "{n} workers when started (the instance is stopped)"
                    )));
                }
            }
            Control::Signal(sig, tx) => {
                let mut sent = 0;
                for w in self
                    .workers
                    .iter()
                    .filter(|w| w.state != WorkerState::Stopping)
                {
                    if killpg(Pid::from_raw(w.pid as i32), sig).is_ok() {
                        sent += 1;
                    }
                }
                self.note(&format!("sent {} to {sent} workers", sig.as_str()));
                let _ = tx.send(Ok(format!("sent {} to {sent} workers", sig.as_str())));
            }
            Control::Restart(tx) => {
                if self.shutting_down {
                    let _ = tx.send(Err("ctsd is shutting down".into()));
                    return;
                }
                if !self.running {
                    let _ = tx.send(Err(format!(
                        "{} is stopped; start it with `ctsctl start {}`",
                        self.key, self.key
                    )));
                    return;
                }
                self.begin_rolling(tx);
            }
            Control::Reconfigure {
                config,
                listener,
                roll,
                done,
            } => {
                if self.shutting_down {
                    let _ = done.send(Err("ctsd is shutting down".into()));
                    return;
                }
                let resized = config.pool.workers != self.desired();
                self.cfg = *config;
                self.slots
                    .resize(self.cfg.pool.workers as usize, Slot::default());
                if let Some(l) = listener {
                    // Old workers keep their own copy of the old socket until they stop.
                    self.listener = l;
                }
                self.spec = spawn_spec(&self.cfg, &self.shim);
                if let Err(e) = &self.spec {
                    self.note(&format!("cannot start workers: {e}"));
                }
                self.note("configuration reloaded");
                if !self.running {
                    let _ = done.send(Ok("settings updated (the instance is stopped)".into()));
                } else if roll {
                    self.begin_rolling(done);
                } else if resized {
                    self.start_waiters.push(done);
                } else {
                    let _ = done.send(Ok("settings updated".into()));
                }
            }
        }
    }

    /// Starts (or merges into) a rolling restart answered on `tx`.
    fn begin_rolling(&mut self, tx: oneshot::Sender<Outcome>) {
        self.generation += 1;
        self.clear_failures();
        let live = self
            .workers
            .iter()
            .filter(|w| w.state != WorkerState::Stopping)
            .count();
        match &mut self.rolling {
            // Merge with the restart in progress: it now also replaces what it started.
            Some(r) => {
                r.target = self.generation;
                r.waiters.push(tx);
            }
            None => {
                self.rolling = Some(Rolling {
                    target: self.generation,
                    current: Vec::new(),
                    replaced: 0,
                    total: live as u32,
                    waiters: vec![tx],
                });
                let _ = self.progress.send((0, live as u32));
            }
        }
        self.note(&format!("rolling restart of {live} workers"));
    }

    fn clear_failures(&mut self) {
        if self.failing {
            self.note("crash-loop state cleared by the operator");
        }
        self.failing = false;
        self.crashes.clear();
        for s in &mut self.slots {
            *s = Slot::default();
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.fail_rolling("ctsd is shutting down");
        for w in self.start_waiters.drain(..) {
            let _ = w.send(Err("ctsd is shutting down".into()));
        }
    }

    fn kill_all(&mut self) {
        for w in &mut self.workers {
            let _ = killpg(Pid::from_raw(w.pid as i32), Signal::SIGKILL);
            w.kill_sent = true;
            w.state = WorkerState::Stopping;
            w.deadline = None;
        }
    }

    fn fail_rolling(&mut self, why: &str) {
        let Some(r) = self.rolling.take() else { return };
        for (new, _) in &r.current {
            // The extra new workers go; the old ones they would have replaced stay.
            if let Some(i) = self.index(*new) {
                self.begin_stop(i, Instant::now());
            }
        }
        for w in r.waiters {
            let _ = w.send(Err(why.to_owned()));
        }
    }

    fn mark_ready(&mut self, i: usize) {
        let w = &mut self.workers[i];
        w.state = WorkerState::Ready;
        w.deadline = None;
        let (id, slot, pid) = (w.id, w.slot, w.pid);
        self.note(&format!("worker {slot} pid {pid} ready"));
        let Some(r) = &mut self.rolling else { return };
        let Some(pos) = r.current.iter().position(|(new, _)| *new == id) else {
            return;
        };
        let (_, old) = r.current.remove(pos);
        r.replaced += 1;
        let _ = self.progress.send((r.replaced, r.total));
        if let Some(j) = self.index(old) {
            let old_pid = self.workers[j].pid;
            self.note(&format!(
                "worker {slot} pid {old_pid} replaced by pid {pid}"
            ));
            self.begin_stop(j, Instant::now());
        }
    }

    fn begin_stop(&mut self, i: usize, now: Instant) {
        let timeout = self.cfg.pool.stop_timeout;
        let w = &mut self.workers[i];
        if w.state == WorkerState::Stopping {
            return;
        }
        w.state = WorkerState::Stopping;
        w.deadline = Some(now + timeout);
        let _ = killpg(Pid::from_raw(w.pid as i32), Signal::SIGTERM);
    }

    fn on_timers(&mut self, now: Instant) {
        let ready = self.cfg.pool.ready;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            let due = w.deadline.is_some_and(|d| d <= now);
            if !due {
                continue;
            }
            match w.state {
                WorkerState::Starting if ready.notify => {
                    let (slot, pid) = (w.slot, w.pid);
                    self.note(&format!(
                        "worker {slot} pid {pid} not ready after {}; stopping it",
                        human(ready.timeout)
                    ));
                    self.workers[i].failed_ready = true;
                    self.begin_stop(i, now);
                }
                WorkerState::Starting => self.mark_ready(i),
                WorkerState::Stopping => {
                    let (slot, pid) = (w.slot, w.pid);
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    let w = &mut self.workers[i];
                    w.kill_sent = true;
                    w.deadline = None;
                    self.note(&format!(
                        "worker {slot} pid {pid} did not stop within {}; sent SIGKILL",
                        human(self.cfg.pool.stop_timeout)
                    ));
                }
                WorkerState::Ready => self.workers[i].deadline = None,
            }
        }
        // A worker that stayed up `reset_after` resets its slot's backoff.
        let reset_after = self.cfg.pool.restart.reset_after;
        for w in &self.workers {
            if w.state == WorkerState::Ready
                && now.saturating_duration_since(w.started) >= reset_after
            {
                if let Some(s) = self.slots.get_mut(w.slot as usize) {
                    s.consecutive = 0;
                }
            }
        }
    }

    fn on_exit(&mut self, id: u64, status: io::Result<ExitStatus>, now: Instant) {
        let Some(i) = self.index(id) else { return };
        let w = self.workers.remove(i);
        // Whatever the worker left behind in its process group goes with it.
        let _ = killpg(Pid::from_raw(w.pid as i32), Signal::SIGKILL);
        let reason = match &status {
            Ok(st) => describe(*st),
            Err(e) => format!("could not be waited for: {e}"),
        };
        let what = if w.failed_ready {
            format!(
                "was not ready within {}",
                human(self.cfg.pool.ready.timeout)
            )
        } else {
            reason.clone()
        };
        let (slot, pid) = (w.slot, w.pid);
        if w.state == WorkerState::Stopping && !w.failed_ready {
            self.note(&format!("worker {slot} pid {pid} stopped ({reason})"));
            return;
        }
        let rolling_new = self
            .rolling
            .as_ref()
            .is_some_and(|r| r.current.iter().any(|(new, _)| *new == id));
        self.last_exit = Some(format!("worker {slot} pid {pid} {what}"));
        if rolling_new {
            let msg = format!(
                "new worker {slot} pid {pid} {what} before it was ready; restart stopped, the old workers keep serving"
            );
            self.note(&msg);
            self.fail_rolling(&msg);
            return;
        }
        self.restarts += 1;
        let policy = self.cfg.pool.restart;
        let crashes = self.crashes.record(now, policy.crash_loop.within);
        if crashes > policy.crash_loop.restarts as usize && !self.failing {
            self.failing = true;
            self.note(&format!(
                "failing: {crashes} crashes within {}; retrying every {}",
                human(policy.crash_loop.within),
                human(policy.backoff_max)
            ));
        }
        let Some(s) = self.slots.get_mut(slot as usize) else {
            self.note(&format!("worker {slot} pid {pid} {what}"));
            return;
        };
        if now.saturating_duration_since(w.started) >= policy.reset_after {
            s.consecutive = 0;
        }
        s.consecutive += 1;
        let delay = restart_delay(&policy, s.consecutive, self.failing, self.jitter.sample());
        s.next_spawn = Some(now + delay);
        let when = if delay.is_zero() {
            "restarting it now".to_owned()
        } else {
            format!("restarting it in {}", human(delay))
        };
        self.note(&format!("worker {slot} pid {pid} {what}; {when}"));
    }

    /// Brings the pool towards what is wanted; called after every wake-up.
    fn reconcile(&mut self, now: Instant) {
        if self.shutting_down || !self.running {
            for i in 0..self.workers.len() {
                self.begin_stop(i, now);
            }
            if self.workers.is_empty() {
                for w in self.stop_waiters.drain(..) {
                    let _ = w.send(Ok("stopped".into()));
                }
            }
            return;
        }
        let desired = self.desired();
        for i in 0..self.workers.len() {
            if self.workers[i].slot >= desired {
                self.begin_stop(i, now);
            }
        }
        self.step_rolling(now);
        for slot in 0..desired {
            if self.slot_occupied(slot) {
                continue;
            }
            let s = &mut self.slots[slot as usize];
            if s.next_spawn.is_some_and(|t| t > now) {
                continue;
            }
            s.next_spawn = None;
            if let Err(e) = self.spawn_into(slot, self.generation, now) {
                self.on_spawn_error(slot, &e, now);
            }
        }
        if self.failing && self.slots.iter().all(|s| s.consecutive == 0) && self.all_slots_ready() {
            self.failing = false;
            self.crashes.clear();
            self.note("recovered: every worker has stayed up");
        }
        match self.state() {
            InstanceState::Running => {
                for w in self.start_waiters.drain(..) {
                    let _ = w.send(Ok(format!("{desired} workers ready")));
                }
                self.settled
                    .send_if_modified(|s| !std::mem::replace(s, true));
            }
            InstanceState::Failing => {
                let why = self
                    .last_exit
                    .clone()
                    .unwrap_or_else(|| "workers keep failing".into());
                for w in self.start_waiters.drain(..) {
                    let _ = w.send(Err(format!("failing: {why}")));
                }
                self.settled
                    .send_if_modified(|s| !std::mem::replace(s, true));
            }
            _ if self.last_exit.is_some() => {
                // A failed first start also settles it: ctsd is up, the instance is not.
                self.settled
                    .send_if_modified(|s| !std::mem::replace(s, true));
            }
            _ => {}
        }
    }

    fn all_slots_ready(&self) -> bool {
        (0..self.desired()).all(|s| {
            self.workers
                .iter()
                .any(|w| w.slot == s && w.state == WorkerState::Ready)
        })
    }

    fn step_rolling(&mut self, now: Instant) {
        let batch = self.cfg.pool.rolling_batch.max(1) as usize;
        let desired = self.desired();
        loop {
            let Some(r) = &self.rolling else { return };
            if r.current.len() >= batch {
                return;
            }
            let target = r.target;
            let in_flight: Vec<u64> = r.current.iter().map(|(_, old)| *old).collect();
            let old = self
                .workers
                .iter()
                .filter(|w| {
                    w.state != WorkerState::Stopping
                        && w.generation < target
                        && w.slot < desired
                        && !in_flight.contains(&w.id)
                })
                .min_by_key(|w| w.slot)
                .map(|w| (w.id, w.slot));
            match old {
                None if in_flight.is_empty() => {
                    if let Some(r) = self.rolling.take() {
                        self.note(&format!(
                            "rolling restart done: {} workers replaced",
                            r.replaced
                        ));
                        for w in r.waiters {
                            let _ = w.send(Ok(format!("{} workers replaced", r.replaced)));
                        }
                    }
                    return;
                }
                None => return,
                Some((old_id, slot)) => match self.spawn_into(slot, target, now) {
                    Ok(new_id) => {
                        if let Some(r) = &mut self.rolling {
                            r.current.push((new_id, old_id));
                        }
                    }
                    Err(e) => {
                        self.fail_rolling(&format!("could not start a new worker: {e}"));
                        return;
                    }
                },
            }
        }
    }

    fn on_spawn_error(&mut self, slot: u32, e: &str, now: Instant) {
        self.restarts += 1;
        self.last_exit = Some(format!("worker {slot} could not be started: {e}"));
        let policy = self.cfg.pool.restart;
        let crashes = self.crashes.record(now, policy.crash_loop.within);
        if crashes > policy.crash_loop.restarts as usize && !self.failing {
            self.failing = true;
            self.note(&format!(
                "failing: {crashes} failed starts within {}",
                human(policy.crash_loop.within)
            ));
        }
        let s = &mut self.slots[slot as usize];
        s.consecutive += 1;
        // Never retry a failed spawn immediately: that would spin.
        let delay = restart_delay(
            &policy,
            s.consecutive.max(2),
            self.failing,
            self.jitter.sample(),
        );
        s.next_spawn = Some(now + delay);
        self.note(&format!(
            "worker {slot} could not be started: {e}; retrying in {}",
            human(delay)
        ));
    }

    /// Starts a worker in `slot`; returns its id.
    fn spawn_into(&mut self, slot: u32, generation: u64, now: Instant) -> Result<u64, String> {
        let spec = self.spec.as_ref().map_err(Clone::clone)?;
        let id = self.next_id;
        self.next_id += 1;
        let ready = self.cfg.pool.ready;
        let notify = if ready.notify {
            let name = format!("{}/{id}", self.notify_prefix);
            Some(
                spawn::notify_socket(&name)
                    .map_err(|e| format!("cannot create the notify socket: {e}"))?,
            )
        } else {
            None
        };
        let mut child = spawn::spawn(
            spec,
            self.listener.as_raw_fd(),
            notify.as_ref().map(|(_, n)| n.as_str()),
        )
        .map_err(|e| format!("{}: {e}", spawn::program_name(&spec.argv)))?;
        let Some(pid) = child.id() else {
            return Err("the worker exited before it could be watched".into());
        };
        self.output
            .attach(slot, pid, child.stdout.take(), child.stderr.take());
        tokio::spawn(watch_worker(
            id,
            child,
            notify.map(|(s, _)| s),
            self.events_tx.clone(),
        ));
        let deadline = now
            + if ready.notify {
                ready.timeout
            } else {
                ready.after
            };
        self.workers.push(Worker {
            id,
            slot,
            pid,
            generation,
            state: WorkerState::Starting,
            started: now,
            deadline: Some(deadline),
            failed_ready: false,
            kill_sent: false,
        });
        self.note(&format!("worker {slot} pid {pid} started"));
        Ok(id)
    }

    fn status(&self) -> Status {
        let mut workers: Vec<WorkerInfo> = self
            .workers
            .iter()
            .map(|w| WorkerInfo {
                slot: w.slot,
                pid: w.pid,
                state: w.state,
                started: w.started,
            })
            .collect();
        workers.sort_by_key(|w| (w.slot, w.started));
        Status {
            state: self.state(),
            desired: self.desired(),
            ready: self.ready_count(),
            restarts: self.restarts,
            running_since: self.running_since,
            last_exit: self.last_exit.clone(),
            workers,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Owns one worker's `Child` and notify socket: reaps the child (so it never lingers as a
/// zombie) and forwards `READY=1` and the exit to the actor.
async fn watch_worker(
    id: u64,
    mut child: Child,
    mut notify: Option<UnixDatagram>,
    events: mpsc::UnboundedSender<WorkerEvent>,
) {
    enum Step {
        Exited(io::Result<ExitStatus>),
        Notified(io::Result<bool>),
    }
    let mut buf = vec![0u8; 4096];
    let mut ready_sent = false;
    let status = loop {
        let step = tokio::select! {
            status = child.wait() => Step::Exited(status),
            r = recv_ready(notify.as_ref(), &mut buf) => Step::Notified(r),
        };
        match step {
            Step::Exited(status) => break status,
            Step::Notified(Ok(true)) if !ready_sent => {
                ready_sent = true;
                let _ = events.send(WorkerEvent::Ready(id));
            }
            // Later messages (STATUS=, STOPPING=1) are read and dropped: the socket stays open
            // for the worker's life so that its sd_notify calls keep succeeding.
            Step::Notified(Ok(_)) => {}
            Step::Notified(Err(_)) => notify = None,
        }
    };
    let _ = events.send(WorkerEvent::Exited(id, status));
}

/// Waits for one datagram on `sock` and tells whether it says `READY=1`; pends forever without
/// a socket.
async fn recv_ready(sock: Option<&UnixDatagram>, buf: &mut [u8]) -> io::Result<bool> {
    let Some(sock) = sock else {
        return std::future::pending().await;
    };
    let n = sock.recv(buf).await?;
    Ok(buf[..n].split(|&b| b == b'\n').any(|l| l == b"READY=1"))
}

/// "exited with status 1", "killed by SIGKILL".
fn describe(st: ExitStatus) -> String {
    if let Some(code) = st.code() {
        return format!("exited with status {code}");
    }
    match st.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => format!("ended ({st})"),
    }
}

/// `100ms`, `2s`, `1m30s`: durations as the config file writes them.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 1000 != 0 && ms < 10_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        match (s / 3600, s / 60 % 60, s % 60) {
            (0, 0, s) => format!("{s}s"),
            (0, m, 0) => format!("{m}m"),
            (0, m, s) => format!("{m}m{s}s"),
            (h, m, _) => format!("{h}h{m}m"),
        }
    }
}
