//! `ctsctl`: the control client of ctsd. A thin main: arguments, one call through
//! `cts_client`, output as a table or JSON, and the documented exit codes of
//! `cts_proto::exit_codes`.

mod cli;
mod nginx;
mod run;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, TargetArgs};
use cts_client::{Client, ClientError};
use cts_proto::{
    exit_codes, ErrorKind, InstanceStatus, Request, ScaleRequest, SignalRequest, StatusReport,
    Target, WorkerSignal,
};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

impl TargetArgs {
    fn target(&self) -> Target {
        if self.all {
            Target::All
        } else {
            Target::Instances(self.instances.iter().map(|s| s.as_str().into()).collect())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "ctsctl",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if let Command::NginxConfig {
        server_name,
        listen,
        locations_only,
    } = &cli.command
    {
        let config = match read_config(&cli, None, true) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let text = nginx::render(
            &config,
            &nginx::Options {
                server_name: server_name.as_deref(),
                listen,
                locations_only: *locations_only,
            },
        );
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    if let Command::Run {
        instance,
        env,
        command,
    } = &cli.command
    {
        let config = match read_config(&cli, env.as_deref(), false) {
            Ok(c) => c,
            Err(code) => return code,
        };
        let socket = configured_socket(&cli, Some(&config));
        return run::run(&config, instance, command, &socket);
    }
    let socket = match socket_path(&cli) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("ctsctl: {msg}");
            return ExitCode::from(exit_codes::USAGE);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ctsctl: cannot start: {e}");
            return ExitCode::from(exit_codes::FAILED);
        }
    };
    match rt.block_on(execute(&cli.command, &socket)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ctsctl: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The configuration file of `--config` (default `/etc/cts/ctsd.yaml`), with `env` as `ctsd
/// --env`; users and groups looked up unless `skip_accounts`. Errors are printed.
fn read_config(
    cli: &Cli,
    env: Option<&str>,
    skip_accounts: bool,
) -> Result<cts_config::Config, ExitCode> {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/cts/ctsd.yaml"));
    let opts = cts_config::LoadOptions {
        environment: env.and_then(|e| e.parse().ok()),
        skip_accounts,
    };
    cts_config::load(&path, &opts).map_err(|errors| {
        eprintln!("{errors}");
        eprintln!("ctsctl: {} is not valid", path.display());
        ExitCode::from(exit_codes::USAGE)
    })
}

/// `--socket` > `$CTSD_SOCKET` > the socket of `--config` > the default.
fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    if cli.socket.is_some() || std::env::var_os("CTSD_SOCKET").is_some_and(|s| !s.is_empty()) {
        return Ok(configured_socket(cli, None));
    }
    let Some(path) = &cli.config else {
        return Ok(configured_socket(cli, None));
    };
    let only_read = cts_config::LoadOptions {
        skip_accounts: true,
        ..cts_config::LoadOptions::default()
    };
    let config = cts_config::load(path, &only_read)
        .map_err(|e| format!("cannot read the socket path from {}:\n{e}", path.display()))?;
    Ok(configured_socket(cli, Some(&config)))
}

/// The socket path from what is already known: `--socket` > `$CTSD_SOCKET` > `config`'s >
/// the default.
fn configured_socket(cli: &Cli, config: Option<&cts_config::Config>) -> PathBuf {
    cli.socket
        .clone()
        .or_else(|| {
            std::env::var_os("CTSD_SOCKET")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| config.and_then(|c| c.daemon.socket.clone()))
        .unwrap_or_else(|| cts_config::DEFAULT_SOCKET.into())
}

fn exit_code(e: &ClientError) -> u8 {
    match e {
        ClientError::Usage(_) => exit_codes::USAGE,
        ClientError::NotFound(_)
        | ClientError::Refused(_)
        | ClientError::Timeout(_)
        | ClientError::Io { .. } => exit_codes::UNREACHABLE,
        ClientError::PermissionDenied(_) => exit_codes::PERMISSION_DENIED,
        ClientError::ProtocolMismatch(_) => exit_codes::PROTOCOL_MISMATCH,
        ClientError::Daemon(r) if r.kind == ErrorKind::UnknownInstance => {
            exit_codes::UNKNOWN_INSTANCE
        }
        _ => exit_codes::FAILED,
    }
}

async fn execute(command: &Command, socket: &std::path::Path) -> Result<u8, ClientError> {
    if let Command::Version = command {
        println!(
            "ctsctl {} (protocol {})",
            env!("CARGO_PKG_VERSION"),
            cts_proto::PROTO_VERSION
        );
        let client = Client::connect(socket).await?;
        let w = client.welcome();
        println!("ctsd {} (protocol {})", w.daemon_version, w.proto);
        return Ok(exit_codes::OK);
    }
    let mut client = Client::connect(socket).await?;
    if let Command::Logs {
        instance,
        lines,
        follow,
        since,
        stderr,
    } = command
    {
        let since_ms = since
            .as_deref()
            .map(since_millis)
            .transpose()
            .map_err(ClientError::Usage)?;
        let req = Request::Logs(cts_proto::LogsRequest {
            instance: instance.as_str().into(),
            lines: *lines,
            follow: *follow,
            since_ms,
            stderr: *stderr,
        });
        client
            .stream_logs(&req, |data| {
                let mut out = std::io::stdout().lock();
                out.write_all(data.as_bytes())
                    .and_then(|()| out.flush())
                    .is_ok()
            })
            .await?;
        return Ok(exit_codes::OK);
    }
    if let Command::Reload { dry_run } = command {
        let req = Request::Reload(cts_proto::ReloadRequest { dry_run: *dry_run });
        return match client.call(&req).await? {
            cts_proto::Response::Reload(r) => Ok(print_reload(&r)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        };
    }
    let simple = match command {
        Command::Scale { instance, workers } => Some((
            Request::Scale(ScaleRequest {
                instance: instance.as_str().into(),
                workers: *workers,
            }),
            "scale",
        )),
        Command::Signal { args, all } => {
            let (target, signal) = signal_args(args, *all).map_err(ClientError::Usage)?;
            Some((Request::Signal(SignalRequest { target, signal }), "signal"))
        }
        Command::ReopenLogs => Some((Request::ReopenLogs, "reopen-logs")),
        Command::Shutdown => Some((Request::Shutdown, "shutdown")),
        _ => None,
    };
    if let Some((req, verb)) = simple {
        return match client.call(&req).await? {
            cts_proto::Response::Outcomes(o) => Ok(report(o.results, verb)),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        };
    }
    let (make, args, verb): (fn(_) -> Request, &TargetArgs, _) = match command {
        Command::Status { instances, json } => {
            let names: Vec<&str> = instances.iter().map(String::as_str).collect();
            let report = client.status(&names).await?;
            let out = if *json {
                serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
            } else {
                render_table(&report, std::io::stdout().is_terminal())
            };
            let _ = std::io::stdout().write_all(out.as_bytes());
            return Ok(exit_codes::OK);
        }
        Command::Start(t) => (Request::Start as fn(_) -> Request, t, "start"),
        Command::Stop(t) => (Request::Stop as fn(_) -> Request, t, "stop"),
        Command::Restart(t) => (Request::Restart as fn(_) -> Request, t, "restart"),
        _ => unreachable!("handled above"),
    };
    // Progress (`jordan: 2/4 workers replaced`) only for a person watching a terminal.
    let progress = std::io::stderr().is_terminal() && !args.no_wait;
    let req = make(cts_proto::TargetRequest {
        target: args.target(),
        no_wait: args.no_wait,
        progress,
    });
    let mut shown = false;
    let outcomes = client
        .act_with(req, |p| {
            shown = true;
            eprint!(
                "\r\x1b[K{}: {}/{} workers replaced",
                p.instance, p.replaced, p.total
            );
        })
        .await;
    if shown {
        eprintln!();
    }
    Ok(report(outcomes?, verb))
}

/// `--since`: a duration ago (`10m`) or a UTC time, as milliseconds since the epoch.
fn since_millis(text: &str) -> Result<u64, String> {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = match cts_config::parse_duration(text) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("--since {text}: too long ago"))?,
        Err(_) => cts_logs::time::parse_utc(text).ok_or_else(|| {
            format!(
                "--since {text:?}: give a duration ago (10m, 2h, 1d) or a UTC time \
                 (2026-11-24T17:00, 2026-11-24 17:00:05, 2026-11-24)"
            )
        })?,
    };
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// The plan (`jordan: rolling restart (command, env)`), then each instance's outcome.
fn print_reload(r: &cts_proto::ReloadReport) -> u8 {
    println!(
        "{}:",
        if r.applied {
            "reload plan"
        } else {
            "reload plan (dry run, nothing applied)"
        }
    );
    for e in &r.plan {
        if e.fields.is_empty() {
            println!("  {}: {}", e.instance, e.action.as_str());
        } else {
            println!(
                "  {}: {} ({})",
                e.instance,
                e.action.as_str(),
                e.fields.join(", ")
            );
        }
    }
    for w in &r.not_applied {
        eprintln!("ctsctl: warning: {w}");
    }
    report(r.results.clone(), "reload")
}

/// `INSTANCE… SIGNAL` or, with `--all`, just `SIGNAL`.
fn signal_args(args: &[String], all: bool) -> Result<(Target, WorkerSignal), String> {
    let (signal, instances) = args.split_last().ok_or("name the signal")?;
    let signal: WorkerSignal = signal.parse()?;
    match (all, instances.is_empty()) {
        (true, true) => Ok((Target::All, signal)),
        (false, false) => Ok((
            Target::Instances(instances.iter().map(|s| s.as_str().into()).collect()),
            signal,
        )),
        (true, false) => Err("name instances or --all, not both".into()),
        (false, true) => Err("name the instances (or --all) before the signal".into()),
    }
}

/// Prints one line per outcome; the exit code is that of the first failure's kind
/// (`rolled back`, `failing`, `stopped`, `shutting down`, else FAILED), OK when none failed.
fn report(outcomes: Vec<cts_proto::Outcome>, verb: &str) -> u8 {
    let mut code = exit_codes::OK;
    for o in outcomes {
        if o.ok {
            println!("{}: {}", o.instance, o.message);
        } else {
            eprintln!("ctsctl: {}: {verb} failed: {}", o.instance, o.message);
            if code == exit_codes::OK {
                code = exit_codes::of_failure(o.failure);
            }
        }
    }
    code
}

/// The human `status` table; colour only when `colour` (stdout is a terminal).
fn render_table(report: &StatusReport, colour: bool) -> String {
    let header = [
        "INSTANCE",
        "STATE",
        "PORT",
        "PREFIX",
        "READY",
        "PIDS",
        "UPTIME",
        "RESTARTS",
        "LAST EXIT",
    ];
    let rows: Vec<[String; 9]> = report.instances.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String, state_colour: Option<&str>| {
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            let pad = if last {
                0
            } else {
                widths[i] - cell.chars().count() + 2
            };
            match (i, state_colour) {
                (1, Some(c)) => out.push_str(&format!("\x1b[{c}m{cell}\x1b[0m")),
                _ => out.push_str(cell),
            }
            out.push_str(&" ".repeat(pad));
        }
        out.push('\n');
    };
    line(&header.map(String::from), &mut out, None);
    for (r, inst) in rows.iter().zip(&report.instances) {
        let c = colour.then(|| match inst.state.as_str() {
            "running" => "32",
            "failing" => "31",
            "stopped" => "2",
            _ => "33",
        });
        line(r, &mut out, c);
    }
    for inst in report.instances.iter().filter(|i| i.log_dropped_bytes > 0) {
        out.push_str(&format!(
            "warning: {}: {} bytes of output could not be written to its log (disk full or directory not writable)\n",
            inst.key, inst.log_dropped_bytes
        ));
    }
    out
}

fn row(i: &InstanceStatus) -> [String; 9] {
    let pids: Vec<String> = i.workers.iter().map(|w| w.pid.to_string()).collect();
    [
        i.key.to_string(),
        i.state.as_str().to_owned(),
        i.port.to_string(),
        if i.prefix.is_empty() {
            "-".into()
        } else {
            i.prefix.clone()
        },
        format!("{}/{}", i.ready_workers, i.desired_workers),
        if pids.is_empty() {
            "-".into()
        } else {
            pids.join(",")
        },
        i.uptime_secs.map_or_else(|| "-".into(), uptime),
        i.restarts.to_string(),
        i.last_exit.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn uptime(s: u64) -> String {
    match (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m{s}s"),
        (0, h, m, _) => format!("{h}h{m}m"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cts_proto::{InstanceState, WorkerState, WorkerStatus};

    #[test]
    fn table_snapshot() {
        let inst = |key: &str, state, pids: &[u32], last: Option<&str>| InstanceStatus {
            key: key.into(),
            name: key.to_uppercase(),
            port: 8003,
            prefix: "/JO".into(),
            currency: "JOD".into(),
            state,
            desired_workers: 2,
            ready_workers: pids.len() as u32,
            restarts: 3,
            uptime_secs: Some(3725),
            last_exit: last.map(str::to_owned),
            workers: pids
                .iter()
                .enumerate()
                .map(|(slot, &pid)| WorkerStatus {
                    pid,
                    slot: slot as u32,
                    state: WorkerState::Ready,
                    uptime_secs: 10,
                })
                .collect(),
            log_dropped_bytes: 0,
        };
        let report = StatusReport {
            daemon_version: "0.1.0".into(),
            pid: 1,
            uptime_secs: 5,
            instances: vec![
                inst("jordan", InstanceState::Running, &[101, 102], None),
                inst(
                    "iraq",
                    InstanceState::Failing,
                    &[],
                    Some("worker 0 pid 7 exited with status 3"),
                ),
            ],
        };
        let expected = "\
INSTANCE  STATE    PORT  PREFIX  READY  PIDS     UPTIME  RESTARTS  LAST EXIT
jordan    running  8003  /JO     2/2    101,102  1h2m    3         -
iraq      failing  8003  /JO     0/2    -        1h2m    3         worker 0 pid 7 exited with status 3
";
        assert_eq!(render_table(&report, false), expected);
        assert!(render_table(&report, true).contains("\x1b[31mfailing\x1b[0m"));
    }

    #[test]
    fn uptimes_read_like_durations() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(65), "1m5s");
        assert_eq!(uptime(7260), "2h1m");
        assert_eq!(uptime(90_000), "1d1h");
    }
}
