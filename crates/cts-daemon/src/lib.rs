//! ctsd as a library: everything the `ctsd` binary does, callable from tests.
//!
//! # Layout
//!
//! - [`run`]: binds, starts every instance's actor, serves the control socket, shuts down.
//! - [`listeners`]: the instances' TCP listening sockets, owned by ctsd.
//! - [`control`]: the control socket server and one handler module per request.
//! - [`signals`]: signals as typed [`signals::DaemonEvent`]s.
//! - [`output`]: connects workers' pipes to the instance logs.
//! - [`notify`]: readiness to systemd (`NOTIFY_SOCKET`) and to `--ready-fd`.
//! - [`status`]: the supervisor's status in the wire's terms.
//!
//! # Theory of operation
//!
//! [`run`] binds the control socket first (so a second ctsd fails before touching any port),
//! then every instance's port, then starts one actor per instance (see `cts-supervisor`) and the
//! control server. The top level owns no instance state: it routes control requests to the
//! actors' handles and turns signals into actions. Shutdown is one
//! [`CancellationToken`] tree: cancelling the root stops the control server and makes every
//! actor stop its workers gracefully; a second SIGTERM/SIGINT cancels the `kill` token, which
//! makes every actor SIGKILL its workers' process groups. `run` returns only after every actor
//! has ended, every log is flushed and the control socket file is removed, so `main` can return
//! normally and destructors run.

#![warn(missing_docs)]

pub mod control;
pub mod listeners;
pub mod notify;
pub mod output;
pub mod signals;
pub mod status;

use cts_config::{Config, InstanceConfig};
use cts_logs::InstanceLog;
use cts_supervisor::InstanceHandle;
use signals::{DaemonEvent, SignalSource};
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The daemon's version, reported to clients.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long, at the very end, ctsd waits for log pipes to drain (something a worker started
/// may keep a pipe open after the worker is gone).
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run, besides the configuration.
#[derive(Debug)]
pub struct RunOptions {
    /// The control socket path, already resolved (`--socket`, `$CTSD_SOCKET`, config, default).
    pub socket: PathBuf,
    /// The ctsd binary, run as exec shim for workers.
    pub shim: PathBuf,
    /// Written to (one newline) and closed once every instance has settled.
    pub ready_fd: Option<OwnedFd>,
    /// Whether to handle the process's signals.
    pub signals: SignalSource,
}

/// Errors that stop ctsd (a worker crash never is one).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The control socket could not be set up.
    #[error(transparent)]
    Control(#[from] control::ControlError),
    /// Some ports could not be bound.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Bind(Vec<listeners::BindError>),
    /// Something else at start-up.
    #[error("{about}: {source}")]
    Io {
        /// What was being done.
        about: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// One configured instance as the control handlers see it.
#[derive(Debug)]
pub struct InstanceEntry {
    /// Its configuration.
    pub config: InstanceConfig,
    /// Its actor.
    pub handle: InstanceHandle,
}

/// What control connections share: read-only after start-up.
#[derive(Debug)]
pub struct Shared {
    /// The instances, in configuration order.
    pub instances: Vec<InstanceEntry>,
    /// When ctsd started.
    pub started: Instant,
    /// Who may do what.
    pub access: control::access::Access,
    /// Requests that act on the daemon itself (`shutdown`, `reopen-logs`) go to its main loop.
    pub events: tokio::sync::mpsc::Sender<DaemonEvent>,
}

/// Runs ctsd until `shutdown` completes or a SIGTERM/SIGINT arrives (with
/// [`SignalSource::Os`]).
///
/// # Errors
///
/// Only start-up failures: the control socket, a port, a log thread. Once running, failures of
/// workers are events, not errors.
pub async fn run(
    config: Config,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    let control = control::bind(
        &opts.socket,
        config.daemon.socket_mode,
        config.daemon.socket_group.as_deref(),
    )?;
    let remove_socket = SocketFileGuard(opts.socket.clone());
    let listeners = listeners::bind_all(&config).map_err(DaemonError::Bind)?;
    let (events_tx, mut events) = tokio::sync::mpsc::channel(8);
    signals::spawn(opts.signals, events_tx.clone()).map_err(|source| DaemonError::Io {
        about: "installing signal handlers".into(),
        source,
    })?;
    let access = control::access::Access::resolve(&config.daemon);

    let root = CancellationToken::new();
    let kill = CancellationToken::new();
    let mut logs = Vec::new();
    let mut actors = Vec::new();
    let mut instances = Vec::new();
    for (inst, listener) in config.instances.iter().zip(listeners) {
        let dir = config.daemon.log_dir.join(inst.key.as_str());
        let log = InstanceLog::open(&dir, &format!("log-{}", inst.key)).map_err(|source| {
            DaemonError::Io {
                about: format!("starting the log writer of {}", inst.key),
                source,
            }
        })?;
        let output = Arc::new(output::LogOutput { log: log.sender() });
        let (handle, join) = cts_supervisor::launch(
            cts_supervisor::Instance {
                config: inst.clone(),
                listener: Arc::new(listener),
                shim: opts.shim.clone(),
                output,
            },
            root.child_token(),
            kill.clone(),
        );
        logs.push(log);
        actors.push(join);
        instances.push(InstanceEntry {
            config: inst.clone(),
            handle,
        });
    }
    let shared = Arc::new(Shared {
        instances,
        started,
        access,
        events: events_tx,
    });
    // The control server outlives the actors' shutdown, so that `ctsctl status` shows the
    // instances stopping; it is cancelled once they are all gone.
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(control::serve(control, shared.clone(), server_stop.clone()));
    tracing::info!(
        "ctsd {VERSION} running {} (control socket {})",
        config.summary(),
        opts.socket.display()
    );

    let ready = {
        let shared = shared.clone();
        let ready_fd = opts.ready_fd;
        tokio::spawn(async move {
            for i in &shared.instances {
                i.handle.settled().await;
            }
            notify::sd_notify(&format!(
                "READY=1\nSTATUS={} instances started",
                shared.instances.len()
            ));
            if let Some(fd) = ready_fd {
                notify::ready_fd(fd);
            }
            tracing::info!("ready");
        })
    };

    tokio::pin!(shutdown);
    loop {
        let ev = tokio::select! {
            () = &mut shutdown => DaemonEvent::Shutdown,
            Some(ev) = events.recv() => ev,
        };
        match ev {
            DaemonEvent::Shutdown => break,
            DaemonEvent::Reload => {
                tracing::warn!("SIGHUP: reloading the configuration is not supported yet; restart ctsd to apply changes")
            }
            DaemonEvent::ReopenLogs => {
                for l in &logs {
                    l.reopen();
                }
                tracing::info!("log files reopened");
            }
        }
    }

    tracing::info!("shutting down: stopping every worker");
    notify::sd_notify("STOPPING=1");
    ready.abort();
    root.cancel();
    let all_stopped = async {
        for a in actors {
            let _ = a.await;
        }
    };
    tokio::pin!(all_stopped);
    loop {
        tokio::select! {
            () = &mut all_stopped => break,
            Some(ev) = events.recv() => if ev == DaemonEvent::Shutdown && !kill.is_cancelled() {
                tracing::warn!("second stop signal: killing every worker now");
                kill.cancel();
            },
        }
    }
    server_stop.cancel();
    let _ = server.await;
    drop(shared);
    let flush = async {
        for l in logs {
            l.close().await;
        }
    };
    if tokio::time::timeout(LOG_DRAIN_TIMEOUT, flush)
        .await
        .is_err()
    {
        tracing::warn!(
            "some worker output pipes were still open after the workers exited; stopped waiting"
        );
    }
    drop(remove_socket);
    tracing::info!("stopped");
    Ok(())
}

/// Removes the control socket file when ctsd stops, also on a start-up error after binding.
struct SocketFileGuard(PathBuf);

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
