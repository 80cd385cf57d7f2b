//! The decisions of one pool, and of one one-shot job, as pure state machines.
//!
//! Nothing here performs I/O, reads a clock, or knows tokio or nix: every entry point takes
//! the current time as an argument and returns [`Effect`]s for the caller (the actor in
//! [`crate::actor`]) to carry out. That is what makes the most important logic of ctsd testable
//! as tables of (events in, effects out), in `tests.rs` beside this file, without a process.
//!
//! # Vocabulary
//!
//! - A **pool** runs `workers` copies of one program, each in a numbered *slot*.
//! - **Respawn**: a worker of a running pool that exits unexpectedly is *crashed*; its slot is
//!   respawned, at once the first time, then after a growing backoff.
//! - **Roll**: the operator's rolling restart (also a reload that changes the command): every
//!   worker of an older *generation* is replaced by one of the new generation.
//! - **Surge** and **stop-first** are the two ways a roll replaces a worker: a surge pool starts
//!   the new worker and stops the old one once the new one is ready (the web pool, which must
//!   answer throughout); a stop-first pool (a singleton such as celery beat) waits until the old
//!   process has exited before it spawns the new one, so that two are never alive at once.
//! - A **job** runs once to completion (a migration): success or failure with its exit.
//!
//! # Driving a machine
//!
//! Feed [`Event`]s to [`Pool::handle`] (or [`Job::handle`]) with the time they were observed,
//! carry out the returned effects in order, and wake the machine again with [`Event::Tick`] at
//! [`Pool::deadline`]. An [`Effect::Spawn`] is answered with [`Event::Spawned`] or
//! [`Event::SpawnFailed`]: at once when the caller exec'd the worker itself, or later, after
//! other events, when a preload loader forks it. Meanwhile the worker is *spawning*: it holds
//! its slot, and a stop asked before its pid is known is sent once it is.

mod job;
mod outcome;
mod pool;
mod status;
#[cfg(test)]
mod tests;

pub use job::Job;
pub use outcome::{Done, Outcome, Refusal};
pub use pool::{
    Kind, Pool, Settings, Snapshot, SnapshotMode, SnapshotPhase, SnapshotSlot, SnapshotWorker,
    StopCause,
};
pub use status::{InstanceState, Status, Summary, WorkerInfo, WorkerState};

use std::time::Duration;

/// Identifies a worker within its pool for its whole life (pids get reused, these do not).
pub type WorkerId = u64;

/// Identifies a request whose answer is an [`Effect::Reply`]; chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// A signal, as far as decisions go: the two the machine sends itself, and any other an
/// operator forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM: please stop.
    Term,
    /// SIGKILL: stop now.
    Kill,
    /// Another signal, by number (an operator's `ctsctl signal`).
    Other(i32),
}

/// How a process ended, as the caller observed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    /// It exited with status 0.
    pub success: bool,
    /// For people: "exited with status 1", "killed by SIGKILL".
    pub description: String,
    /// Ended by a signal that stops a healthy program from outside (SIGKILL, SIGTERM, SIGINT),
    /// not by a failure of its own (an exit status, SIGSEGV, SIGABRT, ...).
    pub killed: bool,
}

impl Exit {
    /// An exit with status `code`.
    pub fn code(code: i32) -> Self {
        Exit {
            success: code == 0,
            description: format!("exited with status {code}"),
            killed: false,
        }
    }

    /// Killed by the signal named `name` (`SIGKILL`).
    pub fn signaled(name: &str) -> Self {
        Exit {
            success: false,
            description: format!("killed by {name}"),
            killed: matches!(name, "SIGKILL" | "SIGTERM" | "SIGINT"),
        }
    }
}

/// An operator's request to a pool; answered by an [`Effect::Reply`] carrying its ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Start the pool if stopped; answered when every worker is ready (or the pool fails).
    Start,
    /// Stop every worker gracefully; answered when all have exited.
    Stop,
    /// Roll every worker onto the current settings; answered when all are replaced, or when a
    /// new worker failed (and, in a surge pool, the old ones keep serving).
    Restart,
    /// Change the number of workers; answered when the pool runs at the new size.
    Scale(u32),
    /// Forward a signal to every live worker's process group; answered at once.
    Signal {
        /// The signal's number.
        number: i32,
        /// Its name, for the answer (`SIGHUP`).
        name: String,
    },
    /// Take new settings; with `roll`, roll every worker onto them.
    Reconfigure {
        /// The new settings.
        settings: Settings,
        /// Replace every worker (its command, environment or socket changed).
        roll: bool,
    },
}

/// Something that happened, fed to a machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An operator's request.
    Request(Ticket, Request),
    /// The answer to [`Effect::Spawn`]: the worker runs with this pid (also its process group).
    Spawned(WorkerId, u32),
    /// The answer to [`Effect::Spawn`]: the worker could not be started.
    SpawnFailed(WorkerId, String),
    /// The worker said `READY=1`.
    Ready(WorkerId),
    /// The worker exited and was reaped.
    Exited(WorkerId, Exit),
    /// Time passed: a deadline from [`Pool::deadline`] may be due.
    Tick,
    /// ctsd is stopping: stop every worker gracefully.
    Shutdown,
    /// ctsd was asked to stop a second time: SIGKILL everything now.
    Kill,
}

/// How much a [`Effect::Note`] matters (its priority in the journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The ordinary course of things: started, ready, stopped, replaced.
    Info,
    /// Something failed: a crash, a worker not ready, a SIGKILL, a crash loop.
    Warning,
}

/// What a machine asks its caller to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Start a worker in `slot`; answer with [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn {
        /// Its id, for the answer and every later event.
        worker: WorkerId,
        /// Its slot (for the log).
        slot: u32,
        /// Whether it gets the instance's listening socket on fd 3.
        socket: bool,
    },
    /// Send `signal` to the process group `pid`.
    Signal {
        /// The process group (the worker's pid).
        pid: u32,
        /// Which signal.
        signal: Sig,
    },
    /// Answer the request `ticket`.
    Reply(Ticket, Outcome),
    /// Something the operator should find in the instance's log, and how much it matters.
    Note(Level, String),
    /// A roll's progress: `replaced` of `total` workers.
    Progress {
        /// Workers replaced so far.
        replaced: u32,
        /// Workers the roll replaces.
        total: u32,
    },
    /// The first start has settled (every worker ready, or a first failure); emitted once.
    Settled,
}

/// `100ms`, `2s`, `1m30s`: durations as the config file writes them
/// ([`cts_config::format_duration`] in [`cts_config::DurationStyle::Setting`]).
pub fn human(d: Duration) -> String {
    cts_config::format_duration(d, cts_config::DurationStyle::Setting)
}
