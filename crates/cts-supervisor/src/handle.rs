//! The public face of an instance actor: typed controls, each acknowledged when *done*.

use tokio::sync::{mpsc, oneshot, watch};

/// What an operation reports when it completes: what was done, or why not.
pub use crate::core::Outcome;
pub use crate::core::{InstanceState, Status, Summary, WorkerInfo, WorkerState};

/// A request to an instance actor. Every variant carries the channel its answer goes to; the
/// answer is sent when the operation is finished (all workers ready, all stopped, ...), which is
/// what `ctsctl restart` waits on.
#[derive(Debug)]
pub enum Control {
    /// Start the pool if stopped; answered when every worker is ready (or the instance fails).
    Start(oneshot::Sender<Outcome>),
    /// Stop every worker gracefully; answered when all have exited.
    Stop(oneshot::Sender<Outcome>),
    /// Rolling restart; answered when every worker has been replaced, or when a new worker
    /// failed and the restart stopped with the old workers still serving.
    Restart(oneshot::Sender<Outcome>),
    /// A snapshot of the instance.
    Status(oneshot::Sender<Status>),
    /// Change the number of workers: new slots are filled, slots beyond the number drained
    /// (SIGTERM, highest slots first), other workers untouched; answered when the pool is
    /// running at the new size.
    Scale(u32, oneshot::Sender<Outcome>),
    /// Apply a reloaded configuration: the new settings (and listening socket, when the port
    /// changed) take effect; with `roll`, a rolling restart onto them follows (answered like
    /// [`Control::Restart`]); otherwise answered when the pool runs at its (new) size.
    Reconfigure {
        /// The instance's new configuration.
        config: Box<cts_config::InstanceConfig>,
        /// A new listening socket, when the port changed.
        listener: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
        /// Replace every worker (their command, environment or socket changed).
        roll: bool,
        /// The answer.
        done: oneshot::Sender<Outcome>,
    },
    /// Serve on this listening socket from now on (the port was closed by a stop and bound
    /// again); workers started from now on get it. Answered at once.
    Listen(std::sync::Arc<std::os::fd::OwnedFd>, oneshot::Sender<()>),
    /// Send a signal to every live worker's process group; answered at once.
    Signal(nix::sys::signal::Signal, oneshot::Sender<Outcome>),
    /// Pin the pool to release directory `dir`: every process started from now on, crash
    /// replacements included, starts there. With `roll`, a rolling restart onto it follows
    /// (answered like [`Control::Restart`]); otherwise answered at once.
    Release {
        /// The release directory (the working directory of its processes); `None`: the
        /// pool's `cwd` as configured (what a pool without a release had).
        dir: Option<std::path::PathBuf>,
        /// Replace every process.
        roll: bool,
        /// The answer.
        done: oneshot::Sender<Outcome>,
    },
    /// The first step of handing the pool over to the ctsd that replaces this one (`ctsctl
    /// upgrade`). Refused (`ready` gets why, nothing changes) while the pool is in the middle
    /// of a request. Otherwise the actor answers `ready`, then takes no other control until
    /// `go` says what to do (worker events and timers wait too, and go along with the pool):
    /// `true` hands the pool over (the actor stops watching its workers without stopping or
    /// reaping them, answers `handed` with what the next actor needs, and ends); `false`, or
    /// `go` dropped, resumes as before.
    Freeze {
        /// Whether the pool is frozen (at rest), or why not.
        ready: oneshot::Sender<Result<(), String>>,
        /// Hand over (`true`) or resume (`false`).
        go: oneshot::Receiver<bool>,
        /// The pool, handed over.
        handed: oneshot::Sender<Result<Handover, String>>,
    },
}

/// A pool frozen for a handover; see [`Control::Freeze`]. Dropping it resumes the pool.
#[derive(Debug)]
pub struct Frozen {
    go: oneshot::Sender<bool>,
    handed: oneshot::Receiver<Result<Handover, String>>,
}

impl Frozen {
    /// Hands the pool over; its actor ends.
    ///
    /// # Errors
    ///
    /// Why the pool could not be handed over after all (it then runs on).
    pub async fn hand_over(self) -> Result<Handover, String> {
        let _ = self.go.send(true);
        self.handed
            .await
            .unwrap_or_else(|_| Err("its actor has ended".into()))
    }

    /// Resumes the pool as before.
    pub fn thaw(self) {
        let _ = self.go.send(false);
    }
}

/// A pool handed over: see [`Control::Handover`].
#[derive(Debug)]
pub struct Handover {
    /// Its workers and counters.
    pub snapshot: crate::core::Snapshot,
    /// The release directory its processes start in.
    pub release: Option<std::path::PathBuf>,
    /// Each worker's notify socket, by worker id.
    pub notify: Vec<(crate::core::WorkerId, std::os::fd::OwnedFd)>,
    /// Preload mode: the loader (its pid and ctsd's end of its channel), when it was ready.
    pub loader: Option<(u32, std::os::fd::OwnedFd)>,
    /// What the workers' watchers reported while the pool was frozen, not decided on yet: a
    /// worker became ready (`None`), or exited (and was reaped).
    pub pending: Vec<(crate::core::WorkerId, Option<crate::core::Exit>)>,
}

/// Handle to one instance actor. Cheap to clone.
#[derive(Debug, Clone)]
pub struct InstanceHandle {
    /// Controls go here.
    pub(crate) tx: mpsc::Sender<Control>,
    /// Becomes true once the first start has settled: every worker ready, or a worker failed.
    pub(crate) settled: watch::Receiver<bool>,
    /// Progress of the rolling restart in progress: (replaced, total).
    pub(crate) progress: watch::Receiver<(u32, u32)>,
    /// State and ready count, as they change.
    pub(crate) summary: watch::Receiver<Summary>,
    /// The release directory its processes start in (the resolved `cwd`, or what a deploy
    /// pinned).
    pub(crate) release: watch::Receiver<Option<std::path::PathBuf>>,
}

impl InstanceHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Starts the instance; see [`Control::Start`].
    pub async fn start(&self) -> Outcome {
        self.ask(Control::Start).await.unwrap_or_else(gone)
    }

    /// Stops the instance; see [`Control::Stop`].
    pub async fn stop(&self) -> Outcome {
        self.ask(Control::Stop).await.unwrap_or_else(gone)
    }

    /// Rolling restart; see [`Control::Restart`].
    pub async fn restart(&self) -> Outcome {
        self.ask(Control::Restart).await.unwrap_or_else(gone)
    }

    /// Scales the pool; see [`Control::Scale`].
    pub async fn scale(&self, workers: u32) -> Outcome {
        self.ask(|tx| Control::Scale(workers, tx))
            .await
            .unwrap_or_else(gone)
    }

    /// Applies a reloaded configuration; see [`Control::Reconfigure`].
    pub async fn reconfigure(
        &self,
        config: cts_config::InstanceConfig,
        listener: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
        roll: bool,
    ) -> Outcome {
        self.ask(|done| Control::Reconfigure {
            config: Box::new(config),
            listener,
            roll,
            done,
        })
        .await
        .unwrap_or_else(gone)
    }

    /// Hands the actor a new listening socket; see [`Control::Listen`].
    pub async fn listen(&self, listener: std::sync::Arc<std::os::fd::OwnedFd>) {
        let _ = self.ask(|tx| Control::Listen(listener, tx)).await;
    }

    /// Signals every worker; see [`Control::Signal`].
    pub async fn signal(&self, signal: nix::sys::signal::Signal) -> Outcome {
        self.ask(|tx| Control::Signal(signal, tx))
            .await
            .unwrap_or_else(gone)
    }

    /// Pins the pool to `dir`; see [`Control::Release`].
    pub async fn release_to(&self, dir: Option<std::path::PathBuf>, roll: bool) -> Outcome {
        self.ask(|done| Control::Release { dir, roll, done })
            .await
            .unwrap_or_else(gone)
    }

    /// Freezes the pool for a handover; see [`Control::Freeze`].
    ///
    /// # Errors
    ///
    /// Why the pool cannot be handed over now.
    pub async fn freeze(&self) -> Result<Frozen, String> {
        let (go_tx, go) = oneshot::channel();
        let (handed, handed_rx) = oneshot::channel();
        let frozen = self
            .ask(|ready| Control::Freeze { ready, go, handed })
            .await
            .unwrap_or_else(|| Err("its actor has ended".into()));
        frozen.map(|()| Frozen {
            go: go_tx,
            handed: handed_rx,
        })
    }

    /// The release directory its processes start in.
    pub fn release(&self) -> Option<std::path::PathBuf> {
        self.release.borrow().clone()
    }

    /// A status snapshot; `None` once the actor has ended (ctsd is shutting down).
    pub async fn status(&self) -> Option<Status> {
        self.ask(Control::Status).await
    }

    /// State and ready count, changed whenever they change (for systemd's `STATUS=`).
    pub fn summary(&self) -> watch::Receiver<Summary> {
        self.summary.clone()
    }

    /// Progress of rolling restarts: `(replaced, total)`, changed at each replacement.
    pub fn progress(&self) -> watch::Receiver<(u32, u32)> {
        self.progress.clone()
    }

    /// Waits until the instance's first start has settled (every worker ready, or one failed).
    pub async fn settled(&self) {
        let mut rx = self.settled.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

fn gone() -> Outcome {
    Err(crate::core::Refusal::ShuttingDown)
}
