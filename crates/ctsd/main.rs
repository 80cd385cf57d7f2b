//! `ctsd`: the CTS supervisor daemon. A thin main: arguments, logging, the runtime, then
//! `cts_daemon::run`; every decision lives in the libraries.

mod cli;

use clap::Parser;
use cli::Args;
use cts_config::LoadOptions;
use cts_daemon::{signals::SignalSource, Ended, ReloadSource, RunOptions};
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
    if let Some(file) = &args.handover_check {
        return match cts_config::load(file, &load) {
            Ok(_) => {
                println!(
                    "ctsd-handover {} {}",
                    cts_daemon::upgrade::FORMAT,
                    cts_daemon::VERSION
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        };
    }
    // Taken before anything else opens an fd: the previous ctsd's sockets, workers and pipes.
    let mut handover = match args.handover.map(cts_daemon::upgrade::read).transpose() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("ctsd: cannot take over: {e}");
            return ExitCode::FAILURE;
        }
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
        let file = &args.config.display().to_string();
        let missing: Vec<String> = config
            .instances
            .iter()
            .flat_map(|i| {
                let web = std::iter::once((String::new(), &i.pool));
                let programs = i
                    .programs
                    .iter()
                    .map(|p| (format!("programs.{}.", p.name), &p.pool));
                web.chain(programs).filter_map(move |(at, pool)| {
                    cts_config::check_program(pool).err().map(|e| {
                        format!("{file}: instances.{}.{at}{}: {}", i.key, e.key, e.message)
                    })
                })
            })
            .collect();
        if !missing.is_empty() {
            for m in &missing {
                eprintln!("{m}");
            }
            eprintln!(
                "ctsd: {}: {} program{} cannot start on this machine",
                args.config.display(),
                missing.len(),
                if missing.len() == 1 { "" } else { "s" }
            );
            return ExitCode::from(2);
        }
        println!("{}: ok: {}", args.config.display(), config.summary());
        return ExitCode::SUCCESS;
    }
    let mut log_guard = match init_tracing(
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
    let mut passed = Some(passed);
    let mut ready_fd = ready_fd;
    loop {
        let opts = RunOptions {
            socket: socket.clone(),
            shim: shim.clone(),
            ready_fd: ready_fd.take(),
            signals: SignalSource::Os,
            reload_from: Some(ReloadSource {
                path: args.config.clone(),
                options: load.clone(),
                log_dir: args.log_dir.clone(),
            }),
            passed: passed.take().unwrap_or_default(),
            handover: handover.take(),
        };
        // The current-thread runtime runs every actor on this, the main thread: workers are
        // forked from a thread that lives as long as ctsd, which their parent-death signal
        // requires.
        let ended = runtime.block_on(cts_daemon::run(config, opts, std::future::pending()));
        match ended {
            Ok(Ended::Stopped) => return ExitCode::SUCCESS,
            Ok(Ended::Upgrade {
                handover: h,
                binary,
            }) => {
                // `ctsd.log_file`'s last lines are written before the exec. (Should the exec
                // fail, this process logs to stderr only from here on.)
                drop(log_guard.take());
                // Returns only if the exec failed: then this process takes its own handover
                // back, with the file as it is (the same as what ran: checked before).
                let (mut h, why) = cts_daemon::upgrade::exec(&binary, &args.for_exec(), *h);
                h.failed = Some(why);
                handover = Some(h);
                config = match cts_config::load(&args.config, &load) {
                    Ok(mut c) => {
                        if let Some(dir) = &args.log_dir {
                            c.daemon.log_dir = dir.clone();
                        }
                        c
                    }
                    Err(errors) => {
                        tracing::error!("cannot read the configuration again:\n{errors}");
                        return ExitCode::FAILURE;
                    }
                };
            }
            Err(e) => {
                // Once: the log goes to stderr (and to `ctsd.log_file` when set).
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let stderr: Box<dyn Layer<_> + Send + Sync> = if journal_on_stderr() {
        // One journal entry per event, at the event's priority.
        tracing_subscriber::fmt::layer()
            .event_format(JournalLine)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .boxed()
    };
    let (file_layer, guard) = match file {
        None => (None, None),
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
            let layer = tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(writer);
            (Some(layer), Some(guard))
        }
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::from_level(level))
        .with(stderr)
        .with(file_layer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    Ok(guard)
}

/// Whether stderr is connected to the journal: systemd says so in `JOURNAL_STREAM`
/// (`<device>:<inode>` of the stream), which must match stderr itself (a program started from
/// a shell in a service inherits the variable, not the stream).
fn journal_on_stderr() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    value.to_str() == Some(format!("{}:{}", stat.dev(), stat.ino()).as_str())
}

/// ctsd's events as the journal reads its stderr: `<N>` (the sd-daemon priority: 3 error,
/// 4 warning, 6 info, 7 debug) then the message on one line, no timestamp (the journal has
/// its own). A message of several lines (a rejected reload's errors) stays one entry, its
/// lines joined with ` | `.
struct JournalLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JournalLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            tracing::Level::DEBUG | tracing::Level::TRACE => 7,
        };
        let mut text = String::new();
        ctx.field_format().format_fields(
            tracing_subscriber::fmt::format::Writer::new(&mut text),
            event,
        )?;
        let one_line: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        writeln!(writer, "<{priority}>{}", one_line.join(" | "))
    }
}
