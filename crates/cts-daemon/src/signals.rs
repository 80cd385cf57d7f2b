//! Signals become typed events on a channel; no logic runs in a signal handler.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonEvent {
    /// SIGTERM or SIGINT: stop gracefully; a second one kills every worker at once.
    Shutdown,
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGUSR1: reopen log files (after an external logrotate).
    ReopenLogs,
}

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
