//! Signals become typed events on a channel; no logic runs in a signal handler. The same
//! channel carries the control requests that act on the daemon itself to its main loop.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What a signal (or a control request for the daemon itself) asks of the daemon's main loop.
#[derive(Debug)]
pub enum DaemonEvent {
    /// SIGTERM or SIGINT: stop gracefully; a second one kills every worker at once.
    Shutdown,
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGUSR1: reopen log files (after an external logrotate).
    ReopenLogs,
    /// `ctsctl reload [--dry-run]`: the answer carries the plan and the pending actions, or
    /// the configuration's errors.
    ReloadRequest {
        /// Only compute the plan.
        dry_run: bool,
        /// Where the answer goes.
        reply: tokio::sync::oneshot::Sender<ReloadAnswer>,
    },
    /// `ctsctl upgrade`: hand everything over to `binary` (which passed the preflight) and
    /// exec it.
    Upgrade {
        /// The new binary.
        binary: std::path::PathBuf,
        /// The connection of the client that asked: the ctsd that takes over answers on it.
        client: std::os::fd::OwnedFd,
        /// Why not, when ctsd refuses before anything changed.
        refused: tokio::sync::oneshot::Sender<String>,
    },
    /// `ctsctl scale` succeeded: the instance's actor now runs `workers` workers; the
    /// registry's configuration of it is to say so.
    Scaled {
        /// The instance key.
        instance: String,
        /// The program, `None` for web.
        program: Option<String>,
        /// Its number of workers now.
        workers: u32,
    },
}

/// What a reload request gets back from the main loop.
pub type ReloadAnswer = Result<(cts_proto::ReloadReport, Option<crate::reload::Pending>), String>;

/// Where daemon events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalSource {
    /// The process's signals (ctsd itself).
    Os,
    /// None: an embedding test drives shutdown through the future given to `run`.
    Noop,
}

/// Starts a task that turns signals into [`DaemonEvent`]s sent to `tx` (the same channel the
/// control handlers use for `shutdown` and `reopen-logs`).
///
/// # Errors
///
/// When a signal handler cannot be installed.
pub fn spawn(source: SignalSource, tx: mpsc::Sender<DaemonEvent>) -> std::io::Result<()> {
    if source == SignalSource::Noop {
        return Ok(());
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                Some(()) = term.recv() => DaemonEvent::Shutdown,
                Some(()) = int.recv() => DaemonEvent::Shutdown,
                Some(()) = hup.recv() => DaemonEvent::Reload,
                Some(()) = usr1.recv() => DaemonEvent::ReopenLogs,
                else => break,
            };
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    Ok(())
}
