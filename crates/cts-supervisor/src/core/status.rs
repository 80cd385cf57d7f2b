//! What a pool reports about itself: its state, a summary for systemd's `STATUS=`, and a
//! snapshot for `status`.

use std::time::Instant;

/// State of an instance (the names of the `status --json` contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Workers being started, not all ready.
    Starting,
    /// Every desired worker ready.
    Running,
    /// Workers being stopped.
    Stopping,
    /// No workers, by request.
    Stopped,
    /// Crash loop: retrying at the slow rate.
    Failing,
}

/// State of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not ready.
    Starting,
    /// Ready.
    Ready,
    /// Asked to stop.
    Stopping,
}

/// The gist of an instance's status, published on every change (for systemd's `STATUS=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The instance's state.
    pub state: InstanceState,
    /// Ready workers.
    pub ready: u32,
    /// Workers the pool should have.
    pub desired: u32,
}

/// A snapshot of an instance, for `status`.
#[derive(Debug, Clone)]
pub struct Status {
    /// The instance's state.
    pub state: InstanceState,
    /// Workers the pool should have.
    pub desired: u32,
    /// Ready workers.
    pub ready: u32,
    /// Unexpected worker exits since ctsd started.
    pub restarts: u64,
    /// When the instance was last started (None when stopped).
    pub running_since: Option<Instant>,
    /// The last unexpected exit, as a sentence.
    pub last_exit: Option<String>,
    /// Live workers, by slot.
    pub workers: Vec<WorkerInfo>,
}

/// One worker in a [`Status`].
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// Slot in the pool.
    pub slot: u32,
    /// Pid, also the process group id.
    pub pid: u32,
    /// State.
    pub state: WorkerState,
    /// When it was started.
    pub started: Instant,
}
