//! `ctsd`: the CTS supervisor daemon. A thin main: arguments, logging, the runtime, then
//! `cts_daemon::run`; every decision lives in the libraries.

mod cli;

use clap::Parser;
use cli::Args;
use cts_config::LoadOptions;
use cts_daemon::{signals::SignalSource, ReloadSource, RunOptions};
use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    if argv.nth(1).as_deref() == Some(cts_supervisor::EXEC_WORKER_ARG.as_ref()) {
        return exec_worker(argv.collect());
    }
    // systemd's sockets (LISTEN_FDS), taken before anything else opens an fd or a thread starts.
    let passed = cts_daemon::listeners::PassedSockets::from_env();
    let args = Args::parse();
    let load = LoadOptions {
        environment: args.env.as_deref().and_then(|e| e.parse().ok()),
        skip_accounts: false,
    };
    let mut config = match cts_config::load(&args.config, &load) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "ctsd: {} is not valid ({} error{}){}",
                args.config.display(),
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" },
                // A check starts nothing anyway.
                if args.check {
                    ""
                } else {
                    "; nothing was started"
                }
            );
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &args.log_dir {
        config.daemon.log_dir = dir.clone();
    }
    let socket = cts_config::control_socket(args.socket.as_deref(), Some(&config));
    if args.check {
        // What the file alone cannot tell: whether each program and cwd are there for the
        // workers' user. A running ctsd reports the same per instance, without stopping
        // the others.
        let missing: Vec<String> = config
            .instances
            .iter()
            .filter_map(|i| {
                cts_config::check_program(&i.pool).err().map(|e| {
                    format!(
                        "{}: instances.{}.{}: {}",
                        args.config.display(),
                        i.key,
                        e.key,
                        e.message
                    )
                })
            })
            .collect();
        if !missing.is_empty() {
            for m in &missing {
                eprintln!("{m}");
            }
            eprintln!(
                "ctsd: {}: {} instance{} cannot start on this machine",
                args.config.display(),
                missing.len(),
                if missing.len() == 1 { "" } else { "s" }
            );
            return ExitCode::from(2);
        }
        println!("{}: ok: {}", args.config.display(), config.summary());
        return ExitCode::SUCCESS;
    }
    let _log_guard = match init_tracing(
        args.log_level.parse().unwrap_or(tracing::Level::INFO),
        config.daemon.log_file.as_deref(),
    ) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("ctsd: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let ready_fd = match args.ready_fd.map(take_fd).transpose() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ctsd: --ready-fd: {e}");
            return ExitCode::from(2);
        }
    };
    let shim = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ctsd: cannot find its own binary to start workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    close_inherited_fds_on_exec();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ctsd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = RunOptions {
        socket,
        shim,
        ready_fd,
        signals: SignalSource::Os,
        reload_from: Some(ReloadSource {
            path: args.config.clone(),
            options: load,
            log_dir: args.log_dir,
        }),
        passed,
    };
    // The current-thread runtime runs every actor on this, the main thread: workers are forked
    // from a thread that lives as long as ctsd, which their parent-death signal requires.
    match runtime.block_on(cts_daemon::run(config, opts, std::future::pending())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: the log goes to stderr (and to `ctsd.log_file` when set).
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `ctsd __exec-worker -- argv…`: become the worker (see `cts_supervisor::spawn`).
fn exec_worker(rest: Vec<OsString>) -> ExitCode {
    let args = match rest.split_first() {
        Some((dashes, args)) if dashes == "--" => args,
        _ => &rest[..],
    };
    let err = cts_supervisor::exec_worker(args);
    let program = args
        .first()
        .map(|p| p.to_string_lossy())
        .unwrap_or_default();
    eprintln!("ctsd: cannot run worker command `{program}`: {err}");
    ExitCode::from(127)
}

/// Takes ownership of an inherited fd, checking that it is open.
fn take_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).map_err(std::io::Error::from)?;
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: the fd is open (checked above) and nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every fd ctsd inherited above stderr close-on-exec, so that nothing ctsd's own parent
/// leaked reaches the workers; a worker gets exactly fds 0-3.
fn close_inherited_fds_on_exec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
}

/// ctsd's own log: stderr (the journal under systemd) and, when `ctsd.log_file` is set, that
/// file too, rotated daily by tracing-appender (`ctsd.log.YYYY-MM-DD`). The returned guard flushes the file writer when `main` returns.
fn init_tracing(
    level: tracing::Level,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match file {
        None => {
            builder.with_ansi(ansi).with_writer(std::io::stderr).init();
            Ok(None)
        }
        Some(path) => {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(".".as_ref());
            let name = path
                .file_name()
                .ok_or_else(|| anyhow::anyhow!("ctsd.log_file {} names no file", path.display()))?;
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            let (writer, guard) =
                tracing_appender::non_blocking(tracing_appender::rolling::daily(dir, name));
            builder
                .with_ansi(false)
                .with_writer(std::io::stderr.and(writer))
                .init();
            Ok(Some(guard))
        }
    }
}
