//! The command line of `ctsd`: clap definitions only, also read by the build script that
//! generates the man page.

use clap::Parser;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// Supervisor of the CTS country instances.
///
/// One pre-fork worker pool per instance, on the instance's own port, with per-instance logs
/// and a control socket for `ctsctl`. SIGTERM or SIGINT stops gracefully (a second one kills),
/// SIGHUP reloads the configuration, SIGUSR1 reopens the logs. Exit status: 0 stopped (or
/// `--check`: valid), 1 start-up failed, 2 invalid configuration or usage. See ctsd(8).
#[derive(Debug, Parser)]
#[command(name = "ctsd", version)]
pub struct Args {
    /// The configuration file.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        default_value = "/etc/cts/ctsd.yaml"
    )]
    pub config: PathBuf,
    /// Control socket path (default: $CTSD_SOCKET, then the config's `ctsd.socket`, then
    /// /run/ctsd/ctsd.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Directory for the instances' logs, overriding `ctsd.log_dir`.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Environment, overriding `ctsd.environment`: dev, staging or production.
    #[arg(long, value_name = "ENV", value_parser = ["dev", "staging", "production"])]
    pub env: Option<String>,
    /// Validate the configuration, print what would run, and exit.
    #[arg(long)]
    pub check: bool,
    /// Write a newline to this inherited fd once every instance has started, then close it.
    #[arg(long, value_name = "FD")]
    pub ready_fd: Option<RawFd>,
    /// Log level of ctsd's own messages: error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,
    /// Take over from the ctsd this process was before `ctsctl upgrade` exec'd it: the
    /// handover (JSON in this inherited fd) names the sockets, workers and pipes.
    #[arg(long, value_name = "FD", hide = true)]
    pub handover: Option<RawFd>,
    /// Load this configuration file and print the handover format this binary reads (what
    /// `ctsctl upgrade` asks of a new binary before it execs it).
    #[arg(long, value_name = "FILE", hide = true)]
    pub handover_check: Option<PathBuf>,
}

impl Args {
    /// The arguments a re-exec of ctsd passes on (`ctsctl upgrade`): the configuration and
    /// the overrides, not the one-time `--ready-fd`.
    pub fn for_exec(&self) -> Vec<String> {
        let mut args = vec!["--config".to_owned(), self.config.display().to_string()];
        if let Some(s) = &self.socket {
            args.extend(["--socket".to_owned(), s.display().to_string()]);
        }
        if let Some(d) = &self.log_dir {
            args.extend(["--log-dir".to_owned(), d.display().to_string()]);
        }
        if let Some(e) = &self.env {
            args.extend(["--env".to_owned(), e.clone()]);
        }
        args.extend(["--log-level".to_owned(), self.log_level.clone()]);
        args
    }
}
