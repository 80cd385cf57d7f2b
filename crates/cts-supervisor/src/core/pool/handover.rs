//! A pool handed to the ctsd that takes over from this one (`ctsctl upgrade`): its workers and
//! counters as data, and the pool rebuilt from them.
//!
//! Only a pool at rest is handed over: no roll, no request waiting for an answer, no spawn whose
//! pid is not known yet. Everything else is data: a worker still starting keeps its readiness
//! deadline, one stopping keeps its SIGKILL deadline, a slot backing off keeps its delay, and
//! the crash-loop window keeps its crashes. Times travel as durations relative to the moment of
//! the snapshot, so the new process needs no shared clock origin (both read the same monotonic
//! clock anyway).

use super::{Mode, Phase, Pool, Slot, StopCause, Worker};
use crate::backoff::{CrashWindow, Jitter};
use crate::core::{Settings, WorkerId};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Everything a pool decides with, besides its settings and pending requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `workers` as the pool runs it (a `scale` may differ from the file).
    pub workers_wanted: u32,
    /// Running (since when, failing or not) or stopped by the operator.
    pub mode: SnapshotMode,
    /// Every live worker.
    pub workers: Vec<SnapshotWorker>,
    /// Respawn bookkeeping per slot.
    pub slots: Vec<SnapshotSlot>,
    /// The next worker id.
    pub next_id: WorkerId,
    /// The current generation.
    pub generation: u64,
    /// Crashes in the crash-loop window, how long ago (milliseconds), oldest first.
    pub crashes_ago_ms: Vec<u64>,
    /// Unexpected exits so far.
    pub restarts: u64,
    /// The last exit, as `status` shows it.
    pub last_exit: Option<String>,
    /// The first start has settled.
    pub settled: bool,
}

/// The operator's wish for the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Running for `uptime_ms`; `failing` in a crash loop.
    Up {
        /// Since the pool was started, in milliseconds.
        uptime_ms: u64,
        /// In a crash loop.
        failing: bool,
    },
    /// Stopped by the operator.
    Down,
}

/// One live worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotWorker {
    /// Its id within the pool.
    pub id: WorkerId,
    /// Its slot.
    pub slot: u32,
    /// Its pid (and process group).
    pub pid: u32,
    /// The roll that started it.
    pub generation: u64,
    /// How long ago it was spawned, in milliseconds.
    pub age_ms: u64,
    /// What it is doing.
    pub phase: SnapshotPhase,
}

/// A worker's phase, deadlines relative to the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPhase {
    /// Not ready yet; the readiness deadline is due in `due_in_ms`.
    Starting {
        /// Milliseconds until it counts as ready (or failed).
        due_in_ms: u64,
    },
    /// Ready.
    Ready,
    /// Asked to stop; SIGKILL in `kill_in_ms` (`None`: already sent).
    Stopping {
        /// Why it is being stopped.
        cause: StopCause,
        /// Milliseconds until SIGKILL.
        kill_in_ms: Option<u64>,
    },
}

/// One slot's respawn bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSlot {
    /// Failures without a stable run in between.
    pub consecutive: u32,
    /// Backoff: the slot may be respawned in this many milliseconds.
    pub next_spawn_in_ms: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ago(now: Instant, ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(ms)).unwrap_or(now)
}

fn within(now: Instant, ms: u64) -> Instant {
    now + Duration::from_millis(ms)
}

impl Pool {
    /// The id of the live worker with `pid`.
    pub fn worker_id(&self, pid: u32) -> Option<WorkerId> {
        self.workers
            .iter()
            .find(|w| w.pid == Some(pid))
            .map(|w| w.id)
    }

    /// The pool as data for the ctsd taking over, or why it cannot be handed over now (it is
    /// in the middle of something an operator asked for).
    ///
    /// # Errors
    ///
    /// A roll, a start or stop waiting for its answer, a shutdown, or a spawn in flight.
    pub fn snapshot(&self, now: Instant) -> Result<Snapshot, String> {
        if self.roll.is_some() {
            return Err(format!("{}: a restart is in progress", self.key));
        }
        if !self.start_waiters.is_empty() || !self.stop_waiters.is_empty() {
            return Err(format!("{}: a start or stop is in progress", self.key));
        }
        let mode = match self.mode {
            Mode::Up { since, failing } => SnapshotMode::Up {
                uptime_ms: ms(now.saturating_duration_since(since)),
                failing,
            },
            Mode::Down => SnapshotMode::Down,
            Mode::ShuttingDown => return Err(format!("{}: shutting down", self.key)),
        };
        let mut workers = Vec::with_capacity(self.workers.len());
        for w in &self.workers {
            let (Some(pid), phase) = (w.pid, w.phase) else {
                return Err(format!("{}: a worker is being spawned", self.key));
            };
            let phase = match phase {
                Phase::Spawning => {
                    return Err(format!("{}: a worker is being spawned", self.key));
                }
                Phase::Starting { until } => SnapshotPhase::Starting {
                    due_in_ms: ms(until.saturating_duration_since(now)),
                },
                Phase::Ready => SnapshotPhase::Ready,
                Phase::Stopping { cause, kill_at } => SnapshotPhase::Stopping {
                    cause,
                    kill_in_ms: kill_at.map(|t| ms(t.saturating_duration_since(now))),
                },
            };
            workers.push(SnapshotWorker {
                id: w.id,
                slot: w.slot,
                pid,
                generation: w.generation,
                age_ms: ms(now.saturating_duration_since(w.started)),
                phase,
            });
        }
        Ok(Snapshot {
            workers_wanted: self.settings.workers,
            mode,
            workers,
            slots: self
                .slots
                .iter()
                .map(|s| SnapshotSlot {
                    consecutive: s.consecutive,
                    next_spawn_in_ms: s.next_spawn.map(|t| ms(t.saturating_duration_since(now))),
                })
                .collect(),
            next_id: self.next_id,
            generation: self.generation,
            crashes_ago_ms: self.crashes.ages(now).into_iter().map(ms).collect(),
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            settled: self.settled,
        })
    }

    /// The pool `snapshot` describes, deciding with `settings` (their `workers` replaced by the
    /// snapshot's, which a `scale` may have changed). Its workers are the snapshot's; nothing
    /// is spawned or signalled until the next event.
    pub fn adopt(
        key: impl Into<String>,
        mut settings: Settings,
        snapshot: &Snapshot,
        jitter: Jitter,
        now: Instant,
    ) -> Self {
        settings.workers = snapshot.workers_wanted;
        let mut pool = Pool::new(key, settings, jitter, now);
        pool.mode = match snapshot.mode {
            SnapshotMode::Up { uptime_ms, failing } => Mode::Up {
                since: ago(now, uptime_ms),
                failing,
            },
            SnapshotMode::Down => Mode::Down,
        };
        pool.workers = snapshot
            .workers
            .iter()
            .map(|w| Worker {
                id: w.id,
                slot: w.slot,
                pid: Some(w.pid),
                generation: w.generation,
                started: ago(now, w.age_ms),
                phase: match w.phase {
                    SnapshotPhase::Starting { due_in_ms } => Phase::Starting {
                        until: within(now, due_in_ms),
                    },
                    SnapshotPhase::Ready => Phase::Ready,
                    SnapshotPhase::Stopping { cause, kill_in_ms } => Phase::Stopping {
                        cause,
                        kill_at: kill_in_ms.map(|m| within(now, m)),
                    },
                },
            })
            .collect();
        for (slot, s) in pool.slots.iter_mut().zip(&snapshot.slots) {
            *slot = Slot {
                consecutive: s.consecutive,
                next_spawn: s.next_spawn_in_ms.map(|m| within(now, m)),
            };
        }
        let ages: Vec<Duration> = snapshot
            .crashes_ago_ms
            .iter()
            .map(|m| Duration::from_millis(*m))
            .collect();
        pool.crashes = CrashWindow::from_ages(&ages, now);
        pool.next_id = snapshot.next_id;
        pool.generation = snapshot.generation;
        pool.restarts = snapshot.restarts;
        pool.last_exit = snapshot.last_exit.clone();
        pool.settled = snapshot.settled;
        pool
    }
}
