//! `ctsctl`: the control client of ctsd. A thin main: arguments, one exhaustive `match` that
//! hands each command to its module, and the documented exit codes of
//! `cts_proto::exit_codes`.
//!
//! # Layout
//!
//! - `cli`: the clap definitions (also read by the build script for man pages and completions).
//! - `status`, `act` (start, stop, restart, scale, signal, reopen-logs, shutdown), `logs`,
//!   `reload`, `version`: the commands that talk to ctsd, each
//!   `async fn(&mut Client, …) -> Result<exit code, ClientError>`.
//! - `nginx`, `run`: the commands that read the configuration file instead.
//! - `report`: how outcomes are printed and become an exit code.

mod act;
mod cli;
mod deploy;
mod list;
mod logs;
mod nginx;
mod reload;
mod report;
mod run;
mod status;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};
use cts_client::{Client, ClientError};
use cts_proto::{exit_codes, ErrorKind, Request};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// The configuration file when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/cts/ctsd.yaml";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ctsctl", &mut script);
            let script = String::from_utf8_lossy(&script).into_owned();
            print!("{}", cli::adapt_completion(*shell, script));
            ExitCode::SUCCESS
        }
        Command::List { programs } => {
            let config = cli.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
            online(&cli, |socket| async move {
                list::run(&socket, &config, *programs).await
            })
        }
        Command::NginxConfig {
            server_name,
            listen,
            locations_only,
        } => match read_config(&cli, None, true) {
            Ok(config) => {
                let options = nginx::Options {
                    server_name: server_name.as_deref(),
                    listen,
                    locations_only: *locations_only,
                };
                print!("{}", nginx::render(&config, &options));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run {
            instance,
            env,
            command,
        } => match read_config(&cli, env.as_deref(), false) {
            Ok(config) => {
                let socket = cts_config::control_socket(cli.socket.as_deref(), Some(&config));
                run::run(&config, instance, command, &socket)
            }
            Err(code) => code,
        },
        Command::Version => online(&cli, |socket| async move {
            println!(
                "ctsctl {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                cts_proto::PROTO_VERSION
            );
            let client = Client::connect(&socket).await?;
            let w = client.welcome();
            println!("ctsd {} (protocol {})", w.daemon_version, w.proto);
            Ok(exit_codes::OK)
        }),
        Command::Status {
            instances,
            json,
            quiet,
        } => connected(&cli, |mut c| async move {
            let format = match (*json, *quiet) {
                (true, _) => status::Format::Json,
                (_, true) => status::Format::Quiet,
                _ => status::Format::Table,
            };
            status::run(&mut c, instances, format).await
        }),
        Command::Start(t) => connected(&cli, |mut c| async move {
            act::lifecycle(&mut c, act::Lifecycle::Start, t).await
        }),
        Command::Stop(t) => connected(&cli, |mut c| async move {
            act::lifecycle(&mut c, act::Lifecycle::Stop, t).await
        }),
        Command::Restart(t) => connected(&cli, |mut c| async move {
            act::lifecycle(&mut c, act::Lifecycle::Restart, t).await
        }),
        Command::Scale { instance, workers } => connected(&cli, |mut c| async move {
            act::scale(&mut c, instance, *workers).await
        }),
        Command::Signal { args, all } => connected(&cli, |mut c| async move {
            act::signal(&mut c, args, *all).await
        }),
        Command::Upgrade { binary } => connected(&cli, |mut c| async move {
            act::upgrade(&mut c, binary.as_deref()).await
        }),
        Command::ReopenLogs => connected(&cli, |mut c| async move {
            act::call(&mut c, Request::ReopenLogs, "reopen-logs").await
        }),
        Command::Shutdown => connected(&cli, |mut c| async move {
            act::call(&mut c, Request::Shutdown, "shutdown").await
        }),
        Command::Deploy {
            release,
            instances,
            canary,
            batch,
            dry_run,
        } => connected(&cli, |mut c| async move {
            let args = deploy::Args {
                release,
                instances,
                canary: canary.as_deref(),
                batch: *batch,
                dry_run: *dry_run,
            };
            deploy::run(&mut c, args).await
        }),
        Command::Reload { dry_run } => {
            connected(
                &cli,
                |mut c| async move { reload::run(&mut c, *dry_run).await },
            )
        }
        Command::Logs {
            instance,
            lines,
            follow,
            since,
            stderr,
        } => connected(&cli, |mut c| async move {
            let args = logs::Args {
                instance,
                lines: *lines,
                follow: *follow,
                since: since.as_deref(),
                stderr: *stderr,
            };
            logs::run(&mut c, &args).await
        }),
    }
}

/// Runs `command` with a connection to ctsd.
fn connected<F, Fut>(cli: &Cli, command: F) -> ExitCode
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<u8, ClientError>>,
{
    online(cli, |socket| async move {
        command(Client::connect(&socket).await?).await
    })
}

/// Runs `command` with the control socket's path on a small runtime; prints its error, if any,
/// and turns the result into the exit code.
fn online<F, Fut>(cli: &Cli, command: F) -> ExitCode
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<u8, ClientError>>,
{
    let socket = match socket_path(cli) {
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
    match rt.block_on(command(socket)) {
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
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
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

/// `--socket` > `$CTSD_SOCKET` > the socket of `--config` > the default; the file is read only
/// when neither the flag nor the environment decides.
fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    let flag = cli.socket.as_deref();
    let (false, Some(path)) = (cts_config::socket_given(flag), &cli.config) else {
        return Ok(cts_config::control_socket(flag, None));
    };
    let only_read = cts_config::LoadOptions {
        skip_accounts: true,
        ..cts_config::LoadOptions::default()
    };
    let config = cts_config::load(path, &only_read)
        .map_err(|e| format!("cannot read the socket path from {}:\n{e}", path.display()))?;
    Ok(cts_config::control_socket(flag, Some(&config)))
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
