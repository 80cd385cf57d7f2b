//! What a request ends with: what was done, or why not, as types the wire and `ctsctl`'s exit
//! codes can tell apart.

/// How a request ended.
pub type Outcome = Result<Done, Refusal>;

/// A request that did what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Done {
    /// The pool runs with every worker ready.
    #[error("{} ready", workers(*.0))]
    Running(u32),
    /// A roll replaced this many workers.
    #[error("{} replaced", workers(*.0))]
    Replaced(u32),
    /// Every worker has exited.
    #[error("stopped")]
    Stopped,
    /// There was nothing to stop.
    #[error("already stopped")]
    AlreadyStopped,
    /// The pool is stopped; it will run this many workers when started.
    #[error("{} when started (the instance is stopped)", workers(*.0))]
    ScaledWhileStopped(u32),
    /// New settings were taken without replacing a worker.
    #[error("settings updated")]
    SettingsUpdated,
    /// New settings were taken; the pool is stopped.
    #[error("settings updated (the instance is stopped)")]
    SettingsUpdatedWhileStopped,
    /// A signal was forwarded to this many workers.
    #[error("sent {name} to {}", workers(*.count))]
    Signalled {
        /// The signal's name.
        name: String,
        /// How many workers got it.
        count: u32,
    },
    /// A job ran to completion with status 0.
    #[error("completed")]
    Completed,
}

/// A request that did not do what was asked, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// ctsd is stopping; nothing new is begun.
    #[error("ctsd is shutting down")]
    ShuttingDown,
    /// The pool is stopped, so it cannot be rolled.
    #[error("{0} is stopped; start it with `ctsctl start {0}`")]
    IsStopped(String),
    /// An operator stopped the pool while the request waited.
    #[error("the instance was stopped")]
    StoppedMeanwhile,
    /// A roll ended early; in a surge pool the old workers keep serving.
    #[error("{0}")]
    RolledBack(String),
    /// An operator started the pool again while the stop waited.
    #[error("the instance was started again before it had stopped")]
    StartedMeanwhile,
    /// The pool is in a crash loop.
    #[error("failing: {0}")]
    Failing(String),
    /// A singleton runs exactly one process.
    #[error("{0} is a singleton: it always runs exactly one process")]
    Singleton(String),
    /// A job ended without success.
    #[error("{0}")]
    JobFailed(String),
    /// The new configuration has no such program (the daemon retires it instead).
    #[error("the configuration no longer has {0}")]
    Gone(String),
    /// The pool takes no such request now (it is frozen for a handover).
    #[error("{0}")]
    Busy(String),
}

/// "1 worker", "3 workers".
pub(crate) fn workers(n: u32) -> String {
    if n == 1 {
        "1 worker".to_owned()
    } else {
        format!("{n} workers")
    }
}
