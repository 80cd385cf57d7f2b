//! The validated model: what a [`Config`] holds once every check has passed.
//!
//! These types are the contract with the rest of ctsd; the rest of the crate
//! only exists to build them. The validated newtypes ([`InstanceKey`],
//! [`Prefix`], [`Currency`]) live in `names.rs`, [`ByteSize`]'s parsing and
//! printing in `units.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use crate::names::{Currency, InstanceKey, Prefix};

/// A validated configuration: every value in it has passed validation, so the
/// rest of ctsd never re-checks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from (as given, not canonicalised).
    pub source: PathBuf,
    /// Settings of the daemon itself (`ctsd:` section).
    pub daemon: DaemonSettings,
    /// The instances, in the order the file declares them.
    pub instances: Vec<InstanceConfig>,
}

/// `dev`, `staging` or `production`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Environment {
    /// Developers' machines: with no instances declared, the single instance `local`.
    Dev,
    /// A staging server.
    Staging,
    /// A production server (the default).
    #[default]
    Production,
}

/// The `ctsd:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// `ctsd.environment`, overridden by `ctsd --env`.
    pub environment: Environment,
    /// `ctsd.socket`, relative paths resolved against the config file's directory.
    pub socket: Option<PathBuf>,
    /// `ctsd.socket_mode`, default 0o660.
    pub socket_mode: u32,
    /// `ctsd.socket_group`: members may connect and read status.
    pub socket_group: Option<String>,
    /// `ctsd.admins`: who may change state.
    pub admins: Admins,
    /// `ctsd.log_dir`; `<log_dir>/<instance key>/` per instance.
    pub log_dir: PathBuf,
    /// `ctsd.log_file`: ctsd's own log, besides stderr, when set.
    pub log_file: Option<PathBuf>,
    /// `ctsd.bind`, default 127.0.0.1.
    pub bind: IpAddr,
}

/// `ctsd.admins`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Admins {
    /// User names allowed to change state (root always is).
    pub users: Vec<String>,
    /// Group names allowed to change state.
    pub groups: Vec<String>,
}

/// One country instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceConfig {
    /// The key (`jordan`); a safe path component.
    pub key: InstanceKey,
    /// Display name (`Jordan`), defaults to the key.
    pub name: String,
    /// URL prefix (`/JO`), or empty for none.
    pub prefix: Prefix,
    /// ISO 4217 code (`JOD`).
    pub currency: Currency,
    /// The TCP port ctsd binds for this instance.
    pub port: u16,
    /// How the worker pool runs.
    pub pool: PoolSpec,
}

/// Everything about how an instance's workers run; `defaults:` merged with the
/// instance's own overrides, placeholders already rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    /// Number of workers, at least 1.
    pub workers: u32,
    /// argv, no shell, non-empty, placeholders rendered.
    pub command: Vec<String>,
    /// Working directory (relative paths resolved against the config file's directory).
    pub cwd: Option<PathBuf>,
    /// The worker environment ctsd adds on top of its own: the contract variables
    /// (`CTS_INSTANCE`, `CTS_INSTANCE_NAME`, `CTS_PREFIX`, `CTS_CURRENCY`, `CTS_ENVIRONMENT`,
    /// `PORT`, `SCRIPT_NAME`, `DJANGO_SETTINGS_MODULE=cts.settings.<key>`), overlaid by the
    /// configured `env` (rendered).
    pub env: BTreeMap<String, String>,
    /// `user` to run workers as.
    pub user: Option<String>,
    /// `group` to run workers as.
    pub group: Option<String>,
    /// Readiness.
    pub ready: ReadySpec,
    /// SIGTERM, then SIGKILL after this.
    pub stop_timeout: Duration,
    /// Crash restart policy.
    pub restart: RestartPolicy,
    /// Log settings.
    pub logs: LogSettings,
}

/// `ready:`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadySpec {
    /// Wait for `READY=1` on the worker's `NOTIFY_SOCKET`.
    pub notify: bool,
    /// Without notify, ready after staying up this long.
    pub after: Duration,
    /// Give up waiting for readiness after this long.
    pub timeout: Duration,
}

/// `restart:`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    /// Delay before the second consecutive restart of a slot.
    pub backoff_initial: Duration,
    /// Upper bound of the delay.
    pub backoff_max: Duration,
    /// A worker up this long resets its slot's backoff.
    pub reset_after: Duration,
    /// Crash-loop detection.
    pub crash_loop: CrashLoop,
}

/// `restart.crash_loop:`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrashLoop {
    /// More than this many crashes ...
    pub restarts: u32,
    /// ... within this window marks the instance failing.
    pub within: Duration,
}

/// `logs:`
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSettings {
    /// Time-based rotation.
    pub rotate: Rotate,
    /// Size-based rotation.
    pub max_size: ByteSize,
    /// Rotated files kept.
    pub keep: u32,
}

/// `logs.rotate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotate {
    /// Never by time.
    Never,
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
}

/// A size in bytes, written `64KB`, `100MB`, `1GB` (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);
