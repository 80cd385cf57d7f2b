//! Configuration of ctsd: YAML in, a validated [`Config`] out, or every
//! problem in the file at once.
//!
//! ```no_run
//! use std::path::Path;
//! use cts_config::{load, LoadOptions};
//!
//! match load(Path::new("/etc/ctsd/ctsd.yaml"), &LoadOptions::default()) {
//!     Ok(config) => println!("{}", config.summary()),
//!     Err(errors) => eprintln!("{errors}"), // one `file: key: message` per line
//! }
//! ```
//!
//! # Layout
//!
//! - `lib.rs`: the entry points [`load`] and [`parse_str`], [`LoadOptions`].
//! - `model.rs`: the validated types ([`Config`], [`PoolSpec`], ...) that the
//!   rest of ctsd is written against, with their built-in defaults.
//! - `names.rs`: the checked newtypes [`InstanceKey`], [`Prefix`], [`Currency`].
//! - `units.rs`: [`parse_duration`], [`format_duration`], [`parse_size`], [`ByteSize`]'s
//!   display.
//! - `error.rs`: [`ConfigError`], [`ConfigErrors`], and the collector the walk
//!   records problems into.
//! - `yaml.rs`: typed reads from `serde_yaml::Value` that report instead of
//!   failing, and the "did you mean" suggestions.
//! - `raw.rs`: the walk over the document (top level, `ctsd:`, `instances:`).
//! - `pool.rs`: the pool settings shared by `defaults:` and each instance,
//!   their merge and their defaults.
//! - `template.rs`: `{instance}`-style placeholders.
//! - `pillar.rs`: `instances_file:` (a Salt pillar) and its Jinja check.
//! - `validate.rs`: the cross checks (ports, prefixes, command, backoff), the
//!   dev instance `local`, and assembling the [`Config`].
//!
//! # Theory of operation
//!
//! Loading runs in two passes, raw then validated (as ripgrep turns low-level
//! arguments into high-level ones). The first pass walks the YAML as a
//! `serde_yaml::Value` rather than deriving `Deserialize`: serde stops at the
//! first error, and an operator fixing a config wants every problem in one
//! run, each with its file and key path. So each reader checks one value,
//! records a [`ConfigError`] if it is wrong, and carries on with `None`; each
//! mapping checks its keys against the known ones and suggests the closest
//! for a typo. The result is a set of `Raw*` structs of `Option`s.
//!
//! The second pass relates settings to each other: instance overrides are
//! merged over `defaults:` (scalars and lists replace; `env`, `ready`,
//! `restart`, `crash_loop` and `logs` merge key by key), then over the
//! built-in defaults ([`ReadySpec::default`] and friends). Ports must be
//! unique and prefixes must not overlap, checked in file order so a clash is
//! reported on the later instance. Placeholders were parsed where they were
//! written, so a bad one in `defaults:` is reported once; here they are only
//! rendered, per instance, together with the contract environment variables
//! that the configured `env` may override.
//!
//! Only when the whole walk recorded nothing is a [`Config`] returned: a
//! value of that type has passed every check, and the rest of ctsd never
//! re-checks it. Reload (`ctsctl reload`) calls [`load`] again and compares
//! the new [`Config`] with the running one; an error leaves the running one
//! in place.

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::fs;
use std::path::Path;

mod accounts;
pub mod diff;
mod error;
mod jobs;
mod model;
mod names;
mod pillar;
mod pool;
mod program;
mod programs;
mod raw;
mod secrets;
mod socket;
mod template;
mod units;
mod validate;
mod yaml;

pub use diff::{diff, Action, Change, Plan};
pub use error::{ConfigError, ConfigErrors};
pub use model::{
    Accounts, Admins, ByteSize, Config, CrashLoop, DaemonSettings, DeploySettings, Environment,
    InstanceConfig, Limit, Limits, LogFormat, LogSettings, LogSink, PoolSpec, ProgramConfig,
    ReadySpec, Resource, RestartPolicy, Rotate, StderrLog,
};
pub use names::{Currency, InstanceKey, Prefix, ProgramName};
pub use program::{check_program, find_program, ProgramError};
pub use secrets::Secrets;
pub use socket::{control_socket, socket_given, SOCKET_ENV};
pub use units::{format_duration, parse_duration, parse_size, DurationStyle};
pub use yaml::closest;

use error::Diag;

/// The most workers one instance may have, in `workers:` and in `ctsctl scale`: beyond it a
/// typo (`workers: 40000`) is likelier than intent. Documented as 1-1024 in the README, the
/// man page ctsd.yaml(5) and `ctsctl scale --help` (a test here keeps those in step).
pub const MAX_WORKERS: u32 = 1024;

/// The control socket when neither `--socket`, `$CTSD_SOCKET` nor the
/// config's `ctsd.socket` names one.
pub const DEFAULT_SOCKET: &str = "/run/ctsd/ctsd.sock";

/// What the command line may override in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `ctsd --env`: replaces `ctsd.environment` when set. With `dev` and no
    /// instances declared, the configuration gets the instance `local`.
    pub environment: Option<Environment>,
    /// Leave `user`/`group` unresolved ([`PoolSpec::accounts`] stays `None`): for readers
    /// that do not start processes (`ctsctl` finding the socket, `ctsctl nginx-config`).
    pub skip_accounts: bool,
}

/// Reads, parses and validates the configuration file at `path`.
///
/// # Errors
///
/// Every problem found: the file cannot be read (with the OS error), is not
/// valid YAML (with line and column), or has any number of invalid settings,
/// each reported with its key path.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    match fs::read_to_string(path) {
        Ok(text) => parse_str(&text, path, opts).and_then(|mut config| {
            if !opts.skip_accounts {
                accounts::resolve(&mut config)?;
                secrets::read(&mut config)?;
            }
            Ok(config)
        }),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            message: format!("cannot read the configuration: {e}"),
        }])),
    }
}

/// Parses and validates configuration `text` as if read from `source`.
///
/// `source` names the file in messages and in [`Config::source`]; relative
/// paths in the text (`socket`, `log_dir`, `log_file`, `cwd`,
/// `instances_file`) are resolved against its directory, and
/// `instances_file` is read from there.
///
/// # Errors
///
/// As [`load`], apart from reading `source` itself.
pub fn parse_str(text: &str, source: &Path, opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    let mut diag = Diag::new(source);
    let dir = source.parent().unwrap_or_else(|| Path::new(""));
    let config = yaml::parse_document(text, &mut diag).and_then(|doc| {
        let raw = raw::read_config(&doc, dir, &mut diag, source);
        validate::build(raw, opts.environment, source, dir, &mut diag)
    });
    diag.finish(config)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_sinks_parse_with_their_facility() {
        use crate::LogSink;
        assert_eq!("file".parse(), Ok(LogSink::File));
        assert_eq!("journal".parse(), Ok(LogSink::Journal));
        assert_eq!("syslog".parse(), Ok(LogSink::Syslog(21)));
        assert_eq!("syslog:local0".parse(), Ok(LogSink::Syslog(16)));
        assert_eq!("syslog:daemon".parse(), Ok(LogSink::Syslog(3)));
        assert!("syslog:local9"
            .parse::<LogSink>()
            .is_err_and(|e| e.contains("local9")));
        assert!("stdout".parse::<LogSink>().is_err());
    }

    use super::MAX_WORKERS;

    /// The worker limit is written out where a constant cannot reach (the README, the man
    /// page, the ctsctl help that build.rs renders without this crate): those must say
    /// [`MAX_WORKERS`].
    #[test]
    fn documented_worker_limit_is_max_workers() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let read = |path: &str| std::fs::read_to_string(root.join(path)).expect(path);
        let range = format!("1-{MAX_WORKERS}");
        assert!(read("README.md").contains(&format!("| `workers` | {range} |")));
        let man = read("packaging/man/ctsd.yaml.5");
        assert!(man.contains(&format!("\\fBworkers\\fR (integer 1\\(en{MAX_WORKERS};")));
        assert!(man.contains(&format!(
            "\\fBrolling.batch\\fR (integer 1\\(en{MAX_WORKERS};"
        )));
        assert!(
            read("crates/ctsctl/cli.rs").contains(&format!("/// New number of workers ({range})."))
        );
        assert!(read("crates/cts-proto/src/message.rs")
            .contains(&format!("/// The new number of workers ({range},")));
    }
}
