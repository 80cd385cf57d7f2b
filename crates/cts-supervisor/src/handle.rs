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
