//! One pool's decisions: start, respawn with backoff and crash loop, roll, scale, stop with
//! SIGKILL escalation, reconfigure, shutdown.

use super::outcome::workers;
use super::{
    human, Done, Effect, Event, Exit, Level, Outcome, Refusal, Request, Sig, Ticket, WorkerId,
};
use super::{InstanceState, Status, Summary, WorkerInfo, WorkerState};
use crate::backoff::{restart_delay, CrashWindow, Jitter};
use cts_config::{ReadySpec, RestartPolicy};
use std::time::{Duration, Instant};

mod handover;
pub use handover::{Snapshot, SnapshotMode, SnapshotPhase, SnapshotSlot, SnapshotWorker};

/// What kind of pool: whether it holds the socket, and how a roll replaces a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Its workers get the instance's listening socket on fd 3 (the web pool).
    pub socket: bool,
    /// Never two processes alive at once: respawns and rolls wait for the old process to have
    /// exited (stop-first); scaling is refused. Otherwise a roll surges: the new worker is
    /// ready before the old one stops.
    pub singleton: bool,
}

/// The settings decisions depend on; the rest of the configuration is the caller's.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Socket and replacement kind.
    pub kind: Kind,
    /// How many workers the pool runs.
    pub workers: u32,
    /// When a starting worker counts as ready, or as failed.
    pub ready: ReadySpec,
    /// SIGTERM, then SIGKILL after this.
    pub stop_timeout: Duration,
    /// How many workers a surge roll replaces at once (at least 1).
    pub batch: u32,
    /// Backoff and crash loop.
    pub restart: RestartPolicy,
}

impl Settings {
    /// The decision settings of an instance's web pool.
    pub fn web(pool: &cts_config::PoolSpec) -> Self {
        Settings {
            kind: Kind {
                socket: true,
                singleton: false,
            },
            workers: pool.workers,
            ready: pool.ready,
            stop_timeout: pool.stop_timeout,
            batch: pool.rolling_batch,
            restart: pool.restart,
        }
    }

    /// The decision settings of one of an instance's other programs: no socket; a singleton
    /// never has two processes alive.
    pub fn program(pool: &cts_config::PoolSpec, singleton: bool) -> Self {
        Settings {
            kind: Kind {
                socket: false,
                singleton,
            },
            ..Settings::web(pool)
        }
    }
}

/// What the operator wants of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Running since `since`; `failing` while in a crash loop.
    Up { since: Instant, failing: bool },
    /// Stopped by the operator.
    Down,
    /// ctsd is stopping; the pool ends when its last worker has exited.
    ShuttingDown,
}

/// Why a worker is being stopped: the exit that follows is expected, except after `NotReady`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// The pool is stopping (operator or shutdown).
    Down,
    /// A roll replaces it.
    Replaced,
    /// Its slot was scaled away.
    Surplus,
    /// It was started by a roll that failed.
    Abandoned,
    /// It missed its readiness deadline: its exit is a failure.
    NotReady,
}

/// A worker's phase, with the data that phase needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// [`Effect::Spawn`] was emitted; the pid is not known yet.
    Spawning,
    /// Running, not ready; at `until` it counts as ready (no notify) or as failed (notify).
    Starting { until: Instant },
    /// Ready.
    Ready,
    /// Asked to stop; SIGKILL follows at `kill_at` (`None`: already sent).
    Stopping {
        cause: StopCause,
        kill_at: Option<Instant>,
    },
}

#[derive(Debug, Clone)]
struct Worker {
    id: WorkerId,
    slot: u32,
    /// Known once spawned; the process group too.
    pid: Option<u32>,
    /// Which roll started it; a roll replaces older ones.
    generation: u64,
    phase: Phase,
    /// When it was spawned.
    started: Instant,
}

impl Worker {
    fn stopping(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
    }

    fn ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    fn label(&self) -> String {
        match self.pid {
            Some(pid) => format!("worker {} pid {pid}", self.slot),
            None => format!("worker {}", self.slot),
        }
    }
}

/// Respawn bookkeeping of one slot.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Failures without a stable run in between.
    consecutive: u32,
    /// Backoff: do not respawn this slot before this.
    next_spawn: Option<Instant>,
}

/// One worker being replaced by a roll.
#[derive(Debug, Clone, Copy)]
struct Step {
    slot: u32,
    old: WorkerId,
    /// Surge: spawned at once. Stop-first: spawned once `old` has exited.
    new: Option<WorkerId>,
}

/// A roll in progress.
#[derive(Debug)]
struct Roll {
    /// Workers of an older generation are replaced.
    target: u64,
    steps: Vec<Step>,
    /// Workers to replace when it began (for progress).
    total: u32,
    replaced: u32,
    waiters: Vec<Ticket>,
}

/// The state of one pool. See the module docs of [`crate::core`].
#[derive(Debug)]
pub struct Pool {
    /// The instance key (or `key:program`), for messages.
    key: String,
    settings: Settings,
    mode: Mode,
    workers: Vec<Worker>,
    slots: Vec<Slot>,
    next_id: WorkerId,
    generation: u64,
    crashes: CrashWindow,
    /// Unexpected exits (and failed spawns) since the pool was created.
    restarts: u64,
    last_exit: Option<String>,
    roll: Option<Roll>,
    /// Answered when the pool runs (or fails).
    start_waiters: Vec<Ticket>,
    /// Answered when no worker is left.
    stop_waiters: Vec<Ticket>,
    settled: bool,
    jitter: Jitter,
    effects: Vec<Effect>,
}

impl Pool {
    /// A pool that starts its workers on the first event (or [`Pool::start`]).
    pub fn new(key: impl Into<String>, settings: Settings, jitter: Jitter, now: Instant) -> Self {
        Pool {
            key: key.into(),
            slots: vec![Slot::default(); settings.workers as usize],
            settings,
            mode: Mode::Up {
                since: now,
                failing: false,
            },
            workers: Vec::new(),
            next_id: 0,
            generation: 0,
            crashes: CrashWindow::default(),
            restarts: 0,
            last_exit: None,
            roll: None,
            start_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            settled: false,
            jitter,
            effects: Vec::new(),
        }
    }

    /// Spawns the first workers.
    pub fn start(&mut self, now: Instant) -> Vec<Effect> {
        self.reconcile(now);
        std::mem::take(&mut self.effects)
    }

    /// Feeds one event observed at `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        match event {
            Event::Request(ticket, request) => self.on_request(ticket, request, now),
            Event::Spawned(id, pid) => self.on_spawned(id, pid, now),
            Event::SpawnFailed(id, error) => self.on_spawn_failed(id, &error, now),
            Event::Ready(id) => {
                if let Some(i) = self.index(id) {
                    if matches!(self.workers[i].phase, Phase::Starting { .. }) {
                        self.mark_ready(i, now);
                    }
                }
            }
            Event::Exited(id, exit) => self.on_exit(id, &exit, now),
            Event::Tick => self.on_tick(now),
            Event::Shutdown => self.begin_shutdown(now),
            Event::Kill => {
                self.begin_shutdown(now);
                for w in &mut self.workers {
                    if let Some(pid) = w.pid {
                        self.effects.push(Effect::Signal {
                            pid,
                            signal: Sig::Kill,
                        });
                    }
                    w.phase = Phase::Stopping {
                        cause: StopCause::Down,
                        kill_at: None,
                    };
                }
            }
        }
        self.reconcile(now);
        std::mem::take(&mut self.effects)
    }

    /// The earliest time something is due: a readiness deadline, a SIGKILL escalation, a
    /// backoff ending, a slot's backoff reset. `None`: nothing until the next event.
    pub fn deadline(&self) -> Option<Instant> {
        let reset_after = self.settings.restart.reset_after;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for w in &self.workers {
            match w.phase {
                Phase::Starting { until } => consider(until),
                Phase::Stopping {
                    kill_at: Some(t), ..
                } => consider(t),
                Phase::Ready if self.backing_off(w.slot) => consider(w.started + reset_after),
                _ => {}
            }
        }
        if matches!(self.mode, Mode::Up { .. }) {
            for (slot, s) in self.slots.iter().enumerate() {
                if let Some(t) = s.next_spawn {
                    if !self.occupied(slot as u32) {
                        consider(t);
                    }
                }
            }
        }
        next
    }

    /// The pool has been shut down and its last worker has exited.
    pub fn finished(&self) -> bool {
        self.mode == Mode::ShuttingDown && self.workers.is_empty()
    }

    /// The pool's state (the names of the `status --json` contract).
    pub fn state(&self) -> InstanceState {
        match self.mode {
            Mode::Down | Mode::ShuttingDown if self.workers.is_empty() => InstanceState::Stopped,
            Mode::Down | Mode::ShuttingDown => InstanceState::Stopping,
            Mode::Up { failing: true, .. } => InstanceState::Failing,
            Mode::Up { .. } if self.all_slots_ready() => InstanceState::Running,
            Mode::Up { .. } => InstanceState::Starting,
        }
    }

    /// The settings it decides with now (a `scale` changes `workers`).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// State and ready count, for systemd's `STATUS=`.
    pub fn summary(&self) -> Summary {
        Summary {
            state: self.state(),
            ready: self.ready_count(),
            desired: self.settings.workers,
        }
    }

    /// A snapshot for `status`.
    pub fn status(&self) -> Status {
        let mut workers: Vec<WorkerInfo> = self
            .workers
            .iter()
            .filter_map(|w| {
                Some(WorkerInfo {
                    slot: w.slot,
                    pid: w.pid?,
                    state: match w.phase {
                        Phase::Spawning | Phase::Starting { .. } => WorkerState::Starting,
                        Phase::Ready => WorkerState::Ready,
                        Phase::Stopping { .. } => WorkerState::Stopping,
                    },
                    started: w.started,
                })
            })
            .collect();
        workers.sort_by_key(|w| (w.slot, w.started));
        Status {
            state: self.state(),
            desired: self.settings.workers,
            ready: self.ready_count(),
            restarts: self.restarts,
            running_since: match self.mode {
                Mode::Up { since, .. } => Some(since),
                _ => None,
            },
            last_exit: self.last_exit.clone(),
            workers,
        }
    }

    fn note(&mut self, text: String) {
        self.effects.push(Effect::Note(Level::Info, text));
    }

    fn warn(&mut self, text: String) {
        self.effects.push(Effect::Note(Level::Warning, text));
    }

    fn reply(&mut self, ticket: Ticket, outcome: Outcome) {
        self.effects.push(Effect::Reply(ticket, outcome));
    }

    fn index(&self, id: WorkerId) -> Option<usize> {
        self.workers.iter().position(|w| w.id == id)
    }

    fn ready_count(&self) -> u32 {
        self.workers.iter().filter(|w| w.ready()).count() as u32
    }

    fn all_slots_ready(&self) -> bool {
        (0..self.settings.workers).all(|s| self.workers.iter().any(|w| w.slot == s && w.ready()))
    }

    fn backing_off(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.consecutive > 0)
    }

    /// Whether `slot` needs no new worker: it has one that is not stopping; in a singleton pool,
    /// whether any process at all is alive (one of a slot a reload removed, still stopping,
    /// too).
    fn occupied(&self, slot: u32) -> bool {
        if self.settings.kind.singleton {
            return !self.workers.is_empty();
        }
        self.workers.iter().any(|w| w.slot == slot && !w.stopping())
    }

    fn on_request(&mut self, ticket: Ticket, request: Request, now: Instant) {
        match request {
            Request::Start => match self.mode {
                Mode::ShuttingDown => self.reply(ticket, Err(Refusal::ShuttingDown)),
                Mode::Down | Mode::Up { .. } => {
                    if self.mode == Mode::Down {
                        self.note("starting".into());
                        self.mode = Mode::Up {
                            since: now,
                            failing: false,
                        };
                    }
                    // An explicit start is also "try again now" for a failing pool.
                    self.clear_failures();
                    for t in std::mem::take(&mut self.stop_waiters) {
                        self.reply(t, Err(Refusal::StartedMeanwhile));
                    }
                    self.start_waiters.push(ticket);
                }
            },
            Request::Stop => {
                if self.mode == Mode::Down && self.workers.is_empty() {
                    self.reply(ticket, Ok(Done::AlreadyStopped));
                    return;
                }
                if let Mode::Up { .. } = self.mode {
                    self.note("stopping".into());
                    self.mode = Mode::Down;
                }
                self.fail_roll(Refusal::StoppedMeanwhile, now);
                for t in std::mem::take(&mut self.start_waiters) {
                    self.reply(t, Err(Refusal::StoppedMeanwhile));
                }
                self.stop_waiters.push(ticket);
            }
            Request::Restart => match self.mode {
                Mode::ShuttingDown => self.reply(ticket, Err(Refusal::ShuttingDown)),
                Mode::Down => self.reply(ticket, Err(Refusal::IsStopped(self.key.clone()))),
                Mode::Up { .. } => self.begin_roll(ticket),
            },
            Request::Scale(n) => {
                if self.mode == Mode::ShuttingDown {
                    self.reply(ticket, Err(Refusal::ShuttingDown));
                } else if self.settings.kind.singleton && n != 1 {
                    self.reply(ticket, Err(Refusal::Singleton(self.key.clone())));
                } else {
                    let from = self.settings.workers;
                    self.resize(n);
                    self.note(format!("scaling from {from} to {}", workers(n)));
                    self.answer_when_running(ticket, Done::ScaledWhileStopped(n));
                }
            }
            Request::Signal { number, name } => {
                let mut count = 0;
                for w in self.workers.iter().filter(|w| !w.stopping()) {
                    if let Some(pid) = w.pid {
                        self.effects.push(Effect::Signal {
                            pid,
                            signal: Sig::Other(number),
                        });
                        count += 1;
                    }
                }
                let done = Done::Signalled { name, count };
                self.note(done.to_string());
                self.reply(ticket, Ok(done));
            }
            Request::Reconfigure { settings, roll } => {
                if self.mode == Mode::ShuttingDown {
                    self.reply(ticket, Err(Refusal::ShuttingDown));
                    return;
                }
                let resized = settings.workers != self.settings.workers;
                let workers = settings.workers;
                self.settings = settings;
                self.resize(workers);
                self.note("configuration reloaded".into());
                if self.mode == Mode::Down {
                    self.reply(ticket, Ok(Done::SettingsUpdatedWhileStopped));
                } else if roll {
                    self.begin_roll(ticket);
                } else if resized {
                    self.start_waiters.push(ticket);
                } else {
                    self.reply(ticket, Ok(Done::SettingsUpdated));
                }
            }
        }
    }

    fn resize(&mut self, workers: u32) {
        self.settings.workers = workers;
        self.slots.resize(workers as usize, Slot::default());
    }

    /// Answers `ticket` once the pool runs, or at once with `stopped` when it is stopped.
    fn answer_when_running(&mut self, ticket: Ticket, stopped: Done) {
        match self.mode {
            Mode::Up { .. } => self.start_waiters.push(ticket),
            _ => self.reply(ticket, Ok(stopped)),
        }
    }

    /// Starts a roll answered on `ticket`, or merges into the one in progress (which then also
    /// replaces what it started itself).
    fn begin_roll(&mut self, ticket: Ticket) {
        self.generation += 1;
        self.clear_failures();
        let live = self.workers.iter().filter(|w| !w.stopping()).count() as u32;
        match &mut self.roll {
            Some(r) => {
                r.target = self.generation;
                r.waiters.push(ticket);
            }
            None => {
                self.roll = Some(Roll {
                    target: self.generation,
                    steps: Vec::new(),
                    total: live,
                    replaced: 0,
                    waiters: vec![ticket],
                });
                self.effects.push(Effect::Progress {
                    replaced: 0,
                    total: live,
                });
            }
        }
        self.note(format!("rolling restart of {}", workers(live)));
    }

    fn clear_failures(&mut self) {
        if let Mode::Up { since, failing } = self.mode {
            if failing {
                self.note("crash-loop state cleared by the operator".into());
            }
            self.mode = Mode::Up {
                since,
                failing: false,
            };
        }
        self.crashes.clear();
        self.slots.fill(Slot::default());
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.mode == Mode::ShuttingDown {
            return;
        }
        self.mode = Mode::ShuttingDown;
        self.fail_roll(Refusal::ShuttingDown, now);
        for t in std::mem::take(&mut self.start_waiters) {
            self.reply(t, Err(Refusal::ShuttingDown));
        }
    }

    /// Ends the roll in progress with `why`. A surge roll's new workers that are not ready yet
    /// are stopped: the old ones they would have replaced stay.
    fn fail_roll(&mut self, why: Refusal, now: Instant) {
        let Some(r) = self.roll.take() else { return };
        if !self.settings.kind.singleton {
            for id in r.steps.iter().filter_map(|s| s.new) {
                self.stop(id, StopCause::Abandoned, now);
            }
        }
        for t in r.waiters {
            self.reply(t, Err(why.clone()));
        }
    }

    /// SIGTERMs the worker `id` (once) and arms its SIGKILL.
    fn stop(&mut self, id: WorkerId, cause: StopCause, now: Instant) {
        let Some(i) = self.index(id) else { return };
        self.stop_at(i, cause, now);
    }

    fn stop_at(&mut self, i: usize, cause: StopCause, now: Instant) {
        let timeout = self.settings.stop_timeout;
        let w = &mut self.workers[i];
        if w.stopping() {
            return;
        }
        // The SIGKILL deadline counts from the SIGTERM; a worker still spawning gets both
        // once its pid is known.
        w.phase = Phase::Stopping {
            cause,
            kill_at: w.pid.map(|_| now + timeout),
        };
        if let Some(pid) = w.pid {
            self.effects.push(Effect::Signal {
                pid,
                signal: Sig::Term,
            });
        }
    }

    fn on_spawned(&mut self, id: WorkerId, pid: u32, now: Instant) {
        let ready = self.settings.ready;
        let until = now
            + if ready.notify {
                ready.timeout
            } else {
                ready.after
            };
        let timeout = self.settings.stop_timeout;
        let Some(w) = self.workers.iter_mut().find(|w| w.id == id) else {
            return;
        };
        w.pid = Some(pid);
        w.started = now;
        match &mut w.phase {
            Phase::Spawning => w.phase = Phase::Starting { until },
            // Stopped before its pid was known: it gets its SIGTERM now.
            Phase::Stopping { kill_at, .. } => {
                *kill_at = Some(now + timeout);
                self.effects.push(Effect::Signal {
                    pid,
                    signal: Sig::Term,
                });
            }
            Phase::Starting { .. } | Phase::Ready => return,
        }
        let label = format!("worker {} pid {pid} started", w.slot);
        self.note(label);
    }

    fn on_spawn_failed(&mut self, id: WorkerId, error: &str, now: Instant) {
        let Some(i) = self.index(id) else { return };
        let w = self.workers.remove(i);
        let what = format!("worker {} could not be started: {error}", w.slot);
        if w.stopping() {
            self.forget_step(id);
            self.note(what);
            return;
        }
        self.last_exit = Some(what.clone());
        if self.roll_step_of_new(id) {
            let why = format!("could not start a new worker: {error}");
            self.fail_roll(Refusal::RolledBack(why), now);
            if !self.settings.kind.singleton {
                // The old worker keeps its slot.
                self.note(what);
                return;
            }
        }
        // Never retry a failed spawn immediately: that would spin.
        self.record_failure(w.slot, None, now, 2, &what, true);
    }

    fn roll_step_of_new(&self, id: WorkerId) -> bool {
        self.roll
            .as_ref()
            .is_some_and(|r| r.steps.iter().any(|s| s.new == Some(id)))
    }

    fn on_exit(&mut self, id: WorkerId, exit: &Exit, now: Instant) {
        let Some(i) = self.index(id) else { return };
        let w = self.workers.remove(i);
        // Whatever the worker left behind in its process group goes with it.
        if let Some(pid) = w.pid {
            self.effects.push(Effect::Signal {
                pid,
                signal: Sig::Kill,
            });
        }
        let label = w.label();
        let reason = &exit.description;
        let what = match w.phase {
            Phase::Stopping {
                cause: StopCause::NotReady,
                ..
            } => format!(
                "was not ready within {}",
                human(self.settings.ready.timeout)
            ),
            Phase::Stopping { .. } => {
                self.note(format!("{label} stopped ({reason})"));
                self.forget_step(id);
                return;
            }
            _ => reason.clone(),
        };
        self.last_exit = Some(format!("{label} {what}"));
        if self.roll_step_of_new(id) {
            let rest = if self.settings.kind.singleton {
                "restart stopped"
            } else {
                "restart stopped, the old workers keep serving"
            };
            let msg = format!("new {label} {what} before it was ready; {rest}");
            self.warn(msg.clone());
            self.fail_roll(Refusal::RolledBack(msg), now);
            if !self.settings.kind.singleton {
                return;
            }
        }
        if w.ready() && exit.killed {
            // It booted and served; something outside killed it (an operator, the OOM killer,
            // a kill storm). Its code did not fail: it is replaced at once, without growing
            // the slot's backoff or the crash loop, so a pool of bootable code never sits
            // empty behind a backoff.
            self.restarts += 1;
            self.warn(format!("{label} {what}; restarting it now"));
            return;
        }
        let ran = now.saturating_duration_since(w.started);
        self.record_failure(w.slot, Some(ran), now, 1, &format!("{label} {what}"), false);
    }

    /// A worker stopped on purpose: a roll no longer waits for it.
    fn forget_step(&mut self, id: WorkerId) {
        if let Some(r) = &mut self.roll {
            r.steps.retain(|s| s.new != Some(id));
        }
    }

    /// Counts a failure of `slot` (a crash that ran for `ran`, or a failed spawn) toward the
    /// crash loop and backs the slot off; `floor` is the least consecutive count to use.
    fn record_failure(
        &mut self,
        slot: u32,
        ran: Option<Duration>,
        now: Instant,
        floor: u32,
        what: &str,
        spawn: bool,
    ) {
        self.restarts += 1;
        let policy = self.settings.restart;
        let Mode::Up { since, failing } = self.mode else {
            self.note(what.to_owned());
            return;
        };
        let crashes = self.crashes.record(now, policy.crash_loop.within);
        let failing = failing || crashes > policy.crash_loop.restarts as usize;
        if failing && self.mode != (Mode::Up { since, failing }) {
            self.mode = Mode::Up { since, failing };
            let (kind, retry) = if spawn {
                ("failed starts", String::new())
            } else {
                (
                    "crashes",
                    format!("; retrying every {}", human(policy.backoff_max)),
                )
            };
            self.warn(format!(
                "failing: {crashes} {kind} within {}{retry}",
                human(policy.crash_loop.within)
            ));
        }
        let jitter = self.jitter.sample();
        let Some(s) = self.slots.get_mut(slot as usize) else {
            self.note(what.to_owned());
            return;
        };
        if ran.is_some_and(|ran| ran >= policy.reset_after) {
            s.consecutive = 0;
        }
        s.consecutive += 1;
        let delay = restart_delay(&policy, s.consecutive.max(floor), failing, jitter);
        s.next_spawn = Some(now + delay);
        let when = match (spawn, delay.is_zero()) {
            (false, true) => "restarting it now".to_owned(),
            (false, false) => format!("restarting it in {}", human(delay)),
            (true, _) => format!("retrying in {}", human(delay)),
        };
        self.warn(format!("{what}; {when}"));
    }

    fn mark_ready(&mut self, i: usize, now: Instant) {
        let w = &mut self.workers[i];
        w.phase = Phase::Ready;
        let (id, label) = (w.id, w.label());
        self.note(format!("{label} ready"));
        let singleton = self.settings.kind.singleton;
        let Some(r) = &mut self.roll else { return };
        let Some(pos) = r.steps.iter().position(|s| s.new == Some(id)) else {
            return;
        };
        let step = r.steps.remove(pos);
        r.replaced += 1;
        let progress = Effect::Progress {
            replaced: r.replaced,
            total: r.total,
        };
        self.effects.push(progress);
        if singleton {
            return;
        }
        if let Some(j) = self.index(step.old) {
            let old = self.workers[j]
                .pid
                .map_or_else(String::new, |p| format!(" pid {p}"));
            let new = self.workers[i]
                .pid
                .map_or_else(String::new, |p| format!(" by pid {p}"));
            self.note(format!("worker {}{old} replaced{new}", step.slot));
            self.stop_at(j, StopCause::Replaced, now);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let ready = self.settings.ready;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            match w.phase {
                Phase::Starting { until } if until <= now => {
                    if ready.notify {
                        self.warn(format!(
                            "{} not ready after {}; stopping it",
                            w.label(),
                            human(ready.timeout)
                        ));
                        self.stop_at(i, StopCause::NotReady, now);
                    } else {
                        self.mark_ready(i, now);
                    }
                }
                Phase::Stopping {
                    cause,
                    kill_at: Some(t),
                } if t <= now => {
                    let label = w.label();
                    if let Some(pid) = w.pid {
                        self.effects.push(Effect::Signal {
                            pid,
                            signal: Sig::Kill,
                        });
                    }
                    self.workers[i].phase = Phase::Stopping {
                        cause,
                        kill_at: None,
                    };
                    self.warn(format!(
                        "{label} did not stop within {}; sent SIGKILL",
                        human(self.settings.stop_timeout)
                    ));
                }
                _ => {}
            }
        }
        // A worker that stayed up `reset_after` resets its slot's backoff.
        let reset_after = self.settings.restart.reset_after;
        for w in &self.workers {
            if w.ready() && now.saturating_duration_since(w.started) >= reset_after {
                if let Some(s) = self.slots.get_mut(w.slot as usize) {
                    s.consecutive = 0;
                }
            }
        }
    }

    /// Brings the pool towards what is wanted; runs after every event.
    fn reconcile(&mut self, now: Instant) {
        if !matches!(self.mode, Mode::Up { .. }) {
            for i in 0..self.workers.len() {
                self.stop_at(i, StopCause::Down, now);
            }
            if self.workers.is_empty() {
                for t in std::mem::take(&mut self.stop_waiters) {
                    self.reply(t, Ok(Done::Stopped));
                }
            }
            self.settle();
            return;
        }
        let desired = self.settings.workers;
        for i in 0..self.workers.len() {
            if self.workers[i].slot >= desired {
                let id = self.workers[i].id;
                self.forget_step(id);
                self.stop_at(i, StopCause::Surplus, now);
            }
        }
        self.step_roll(now);
        for slot in 0..desired {
            if self.occupied(slot) {
                continue;
            }
            let s = &mut self.slots[slot as usize];
            if s.next_spawn.is_some_and(|t| t > now) {
                continue;
            }
            s.next_spawn = None;
            let id = self.spawn(slot, self.generation, now);
            // A stop-first roll's new worker is the one that fills the slot the old one left.
            if let Some(step) = self.roll.as_mut().and_then(|r| {
                r.steps
                    .iter_mut()
                    .find(|s| s.slot == slot && s.new.is_none())
            }) {
                step.new = Some(id);
            }
        }
        if let Mode::Up {
            since,
            failing: true,
        } = self.mode
        {
            if self.slots.iter().all(|s| s.consecutive == 0) && self.all_slots_ready() {
                self.mode = Mode::Up {
                    since,
                    failing: false,
                };
                self.crashes.clear();
                self.note("recovered: every worker has stayed up".into());
            }
        }
        match self.state() {
            InstanceState::Running => {
                for t in std::mem::take(&mut self.start_waiters) {
                    self.reply(t, Ok(Done::Running(desired)));
                }
            }
            InstanceState::Failing => {
                let why = self
                    .last_exit
                    .clone()
                    .unwrap_or_else(|| "workers keep failing".into());
                for t in std::mem::take(&mut self.start_waiters) {
                    self.reply(t, Err(Refusal::Failing(why.clone())));
                }
            }
            _ => {}
        }
        self.settle();
    }

    /// Emits [`Effect::Settled`] once: when the pool first runs or fails, or once any worker
    /// has failed (ctsd is up, the pool is not).
    fn settle(&mut self) {
        let settled = matches!(
            self.state(),
            InstanceState::Running | InstanceState::Failing
        ) || self.last_exit.is_some();
        if settled && !self.settled {
            self.settled = true;
            self.effects.push(Effect::Settled);
        }
    }

    /// One roll step at a time, up to `batch` in flight: pick the live worker of an older
    /// generation with the lowest slot; a surge pool spawns its replacement beside it, a
    /// stop-first pool stops it (the slot is refilled once it has exited).
    fn step_roll(&mut self, now: Instant) {
        let singleton = self.settings.kind.singleton;
        let batch = if singleton {
            1
        } else {
            self.settings.batch.max(1) as usize
        };
        let desired = self.settings.workers;
        loop {
            let Some(r) = &self.roll else { return };
            if r.steps.len() >= batch {
                return;
            }
            let target = r.target;
            let old = self
                .workers
                .iter()
                .filter(|w| {
                    !w.stopping()
                        && w.generation < target
                        && w.slot < desired
                        && !r.steps.iter().any(|s| s.old == w.id)
                })
                .min_by_key(|w| w.slot)
                .map(|w| (w.id, w.slot));
            match old {
                None if r.steps.is_empty() => {
                    if let Some(r) = self.roll.take() {
                        self.note(format!(
                            "rolling restart done: {} replaced",
                            workers(r.replaced)
                        ));
                        for t in r.waiters {
                            self.reply(t, Ok(Done::Replaced(r.replaced)));
                        }
                    }
                    return;
                }
                None => return,
                Some((old, slot)) => {
                    let new = if singleton {
                        self.stop(old, StopCause::Replaced, now);
                        None
                    } else {
                        Some(self.spawn(slot, target, now))
                    };
                    if let Some(r) = &mut self.roll {
                        r.steps.push(Step { slot, old, new });
                    }
                }
            }
        }
    }

    /// Emits the spawn of a worker in `slot`; returns its id.
    fn spawn(&mut self, slot: u32, generation: u64, now: Instant) -> WorkerId {
        let id = self.next_id;
        self.next_id += 1;
        self.workers.push(Worker {
            id,
            slot,
            pid: None,
            generation,
            phase: Phase::Spawning,
            started: now,
        });
        self.effects.push(Effect::Spawn {
            worker: id,
            slot,
            socket: self.settings.kind.socket,
        });
        id
    }
}
