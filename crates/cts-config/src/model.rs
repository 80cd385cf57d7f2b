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

use crate::names::{Currency, InstanceKey, Prefix, ProgramName};

/// A validated configuration: every value in it has passed validation, so the
/// rest of ctsd never re-checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file this configuration was read from (as given, not canonicalised).
    pub source: PathBuf,
    /// Settings of the daemon itself (`ctsd:` section).
    pub daemon: DaemonSettings,
    /// The instances, in the order the file declares them.
    pub instances: Vec<InstanceConfig>,
    /// The `deploy:` section: what `ctsctl deploy` runs besides the instances' release jobs.
    pub deploy: DeploySettings,
}

/// The `deploy:` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploySettings {
    /// `deploy.once`: one-shot jobs (argv each) a deploy runs once, in the release directory,
    /// before any instance moves. Placeholders are rendered for the first instance.
    pub once: Vec<Vec<String>>,
    /// `deploy.job_timeout`: a job (once or release) still running after this is stopped
    /// (SIGTERM, then SIGKILL) and fails the deploy; `None`, no limit.
    pub job_timeout: Option<Duration>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admins {
    /// User names allowed to change state (root always is).
    pub users: Vec<String>,
    /// Group names allowed to change state.
    pub groups: Vec<String>,
}

/// One country instance.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// How the web pool runs: the top-level settings, the only pool that gets the socket.
    pub pool: PoolSpec,
    /// The instance's other programs (`celery`, `beat`), in name order: `defaults.programs`
    /// merged with the instance's own by name.
    pub programs: Vec<ProgramConfig>,
    /// `release`: one-shot jobs (argv each) a deploy runs for this instance, in order, in the
    /// release directory with the instance's environment and user, before any of its
    /// programs moves (`python manage.py migrate`). The instance's list replaces the
    /// defaults'.
    pub release: Vec<Vec<String>>,
}

impl InstanceConfig {
    /// The program called `name`.
    pub fn program(&self, name: &str) -> Option<&ProgramConfig> {
        self.programs.iter().find(|p| p.name.as_str() == name)
    }
}

/// One of an instance's programs besides `web`: it inherits everything of its instance
/// (environment, `env_file`, `cwd`, user, group, umask, limits, logs) and may set its own
/// `command`, `workers`, `env` (merged), `ready`, `stop_timeout`, `restart` and `singleton`. It
/// gets no socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramConfig {
    /// Its name (`celery`).
    pub name: ProgramName,
    /// Never two processes alive: restarts stop the old one before starting the new one, and
    /// `scale` is refused.
    pub singleton: bool,
    /// How its processes run (the instance's settings with the program's over them).
    pub pool: PoolSpec,
}

/// Everything about how an instance's workers run; `defaults:` merged with the
/// instance's own overrides, placeholders already rendered.
///
/// A new setting is a field here, a field of `RawPool` and its entry in `POOL_SETTINGS`
/// (key and reader, `pool.rs`); the compiler then asks for it in `RawPool::over`,
/// `RawPool::build` and the reload diff (`diff.rs`, which decides its reload action). Its
/// documentation is in `packaging/man/ctsd.yaml.5` and the README's table.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `env_file`: a file of `KEY=VALUE` lines (systemd's EnvironmentFile syntax) with the
    /// secrets the workers get, read by [`crate::load`] into [`PoolSpec::secrets`].
    pub env_file: Option<PathBuf>,
    /// The variables of `env_file`, which reach the workers (after `env`) and `ctsctl run`,
    /// and nothing else: their `Debug` hides the values.
    pub secrets: crate::Secrets,
    /// `user` to run workers as.
    pub user: Option<String>,
    /// `group` to run workers as.
    pub group: Option<String>,
    /// `user`/`group` resolved to numeric ids by [`crate::load`] (so a missing user is a
    /// configuration error, reported by `ctsd --check`); `None` when neither is set or the
    /// configuration came from [`crate::parse_str`], which does not consult the system.
    pub accounts: Option<Accounts>,
    /// `umask` for workers (e.g. `0o027`); `None` keeps ctsd's.
    pub umask: Option<u32>,
    /// `limits:` resource limits for workers.
    pub limits: Limits,
    /// Readiness.
    pub ready: ReadySpec,
    /// SIGTERM, then SIGKILL after this.
    pub stop_timeout: Duration,
    /// `rolling.batch` (default 1): how many workers a rolling restart replaces at once. Each
    /// new worker is ready before the old one it replaces stops, so a restart runs up to
    /// `workers + batch` processes and never has fewer than `workers - batch` ready ones.
    pub rolling_batch: u32,
    /// `preload` (default false): `command` is a preload loader (`python -m cts_preload
    /// APP`) that imports the application once and forks the workers on ctsd's request,
    /// instead of a command each worker runs. The web pool only.
    pub preload: bool,
    /// Crash restart policy.
    pub restart: RestartPolicy,
    /// Log settings.
    pub logs: LogSettings,
}

/// `user` and `group` as numeric ids, with the user's supplementary groups (what
/// `initgroups` would set), looked up once when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// The user's id (`None`: only `group` was set).
    pub uid: Option<u32>,
    /// The group: `group` if set, else the user's primary group.
    pub gid: u32,
    /// Supplementary groups of the user (empty when only `group` was set).
    pub groups: Vec<u32>,
}

/// A resource that `limits:` can set. Its key in the file and its `RLIMIT_*` constant are
/// both here, so a new limit is a new variant, and every `match` that does not handle it yet
/// (the key, the constant, the [`Limits`] field) is a compile error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `nofile`: open files (RLIMIT_NOFILE).
    Nofile,
    /// `nproc`: processes of the user (RLIMIT_NPROC).
    Nproc,
    /// `core`: core file size in bytes (RLIMIT_CORE).
    Core,
}

impl Resource {
    /// Every resource, in the order of the file's documentation.
    pub const ALL: [Resource; 3] = [Resource::Nofile, Resource::Nproc, Resource::Core];

    /// Its key under `limits:` (`nofile`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Resource::Nofile => "nofile",
            Resource::Nproc => "nproc",
            Resource::Core => "core",
        }
    }

    /// The `setrlimit(2)` resource it sets.
    pub fn rlimit(self) -> nix::sys::resource::Resource {
        use nix::sys::resource::Resource as R;
        match self {
            Resource::Nofile => R::RLIMIT_NOFILE,
            Resource::Nproc => R::RLIMIT_NPROC,
            Resource::Core => R::RLIMIT_CORE,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `limits:` (`setrlimit`, soft and hard alike); `None` keeps what ctsd has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `nofile`: open files (RLIMIT_NOFILE).
    pub nofile: Option<Limit>,
    /// `nproc`: processes of the user (RLIMIT_NPROC).
    pub nproc: Option<Limit>,
    /// `core`: core file size in bytes (RLIMIT_CORE).
    pub core: Option<Limit>,
}

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A number.
    Value(u64),
    /// `unlimited`.
    Unlimited,
}

impl Limits {
    /// The limit set for `resource`, if any.
    pub fn get(&self, resource: Resource) -> Option<Limit> {
        *self.slot(resource)
    }

    /// Where the limit of `resource` is kept.
    fn slot(&self, resource: Resource) -> &Option<Limit> {
        match resource {
            Resource::Nofile => &self.nofile,
            Resource::Nproc => &self.nproc,
            Resource::Core => &self.core,
        }
    }

    /// Where the limit of `resource` is kept, to set it.
    pub(crate) fn slot_mut(&mut self, resource: Resource) -> &mut Option<Limit> {
        match resource {
            Resource::Nofile => &mut self.nofile,
            Resource::Nproc => &mut self.nproc,
            Resource::Core => &mut self.core,
        }
    }

    /// These limits with those of `defaults` filling the ones not set here.
    pub(crate) fn over(&self, defaults: &Limits) -> Limits {
        let mut merged = *self;
        for r in Resource::ALL {
            let slot = merged.slot_mut(r);
            *slot = slot.or(defaults.get(r));
        }
        merged
    }

    /// The set limits, with their resources.
    pub fn iter(&self) -> impl Iterator<Item = (Resource, Limit)> + '_ {
        Resource::ALL
            .into_iter()
            .filter_map(|r| self.get(r).map(|l| (r, l)))
    }
}

/// `ready:`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadySpec {
    /// Wait for `READY=1` on the worker's `NOTIFY_SOCKET`.
    pub notify: bool,
    /// Without notify, ready after staying up this long.
    pub after: Duration,
    /// Give up waiting for readiness after this long.
    pub timeout: Duration,
}

/// `restart:`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashLoop {
    /// More than this many crashes ...
    pub restarts: u32,
    /// ... within this window marks the instance failing.
    pub within: Duration,
}

/// `logs:`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Time-based rotation.
    pub rotate: Rotate,
    /// Size-based rotation.
    pub max_size: ByteSize,
    /// Rotated files kept.
    pub keep: u32,
    /// Rotated files older than this are deleted too.
    pub max_age: Option<Duration>,
    /// gzip rotated files.
    pub compress: bool,
    /// Lines as written, or prefixed with a timestamp and the worker.
    pub format: LogFormat,
    /// Where the workers' stderr goes.
    pub stderr: StderrLog,
    /// Where the workers' lines go: the files, the journal or syslog.
    pub sink: LogSink,
    /// `logs.socket`: the journal's or syslog's socket, when not the usual one.
    pub socket: Option<PathBuf>,
}

/// `logs.sink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogSink {
    /// `<log_dir>/<instance>/output.log`, rotated (`ctsctl logs` reads it).
    #[default]
    File,
    /// The journal, one entry per line, with the instance, worker and stream as fields.
    Journal,
    /// syslog (RFC 5424 on `/dev/log`), one message per line, with this facility (0-23;
    /// `local5` is 21).
    Syslog(u8),
}

impl LogSink {
    /// The facility names syslog(3) knows, with their numbers.
    const FACILITIES: [(&'static str, u8); 12] = [
        ("user", 1),
        ("daemon", 3),
        ("local0", 16),
        ("local1", 17),
        ("local2", 18),
        ("local3", 19),
        ("local4", 20),
        ("local5", 21),
        ("local6", 22),
        ("local7", 23),
        ("syslog", 5),
        ("mail", 2),
    ];
}

impl std::str::FromStr for LogSink {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "file" => Ok(LogSink::File),
            None if s == "journal" => Ok(LogSink::Journal),
            None if s == "syslog" => Ok(LogSink::Syslog(21)),
            Some(("syslog", facility)) => LogSink::FACILITIES
                .iter()
                .find(|(n, _)| *n == facility)
                .map(|(_, f)| LogSink::Syslog(*f))
                .ok_or_else(|| {
                    format!(
                        "unknown syslog facility {facility:?}: one of user, daemon, local0 .. local7"
                    )
                }),
            _ => Err(format!(
                "{s:?}: give file, journal, syslog or syslog:FACILITY (syslog:local5)"
            )),
        }
    }
}

/// `logs.stderr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StderrLog {
    /// Into `output.log` with stdout, interleaved line by line in the order they were read.
    #[default]
    Merged,
    /// Into its own `stderr.log`, rotated and kept by the same settings.
    Separate,
}

impl std::str::FromStr for StderrLog {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "merged" => Ok(StderrLog::Merged),
            "separate" => Ok(StderrLog::Separate),
            other => Err(format!(
                "`{other}` is not a choice for stderr; use merged or separate"
            )),
        }
    }
}

/// `logs.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogFormat {
    /// Lines exactly as the workers wrote them.
    #[default]
    Raw,
    /// `2026-11-24T17:28:09.123Z <slot>/<pid> <stream> ` before each line.
    Timestamped,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(LogFormat::Raw),
            "timestamped" => Ok(LogFormat::Timestamped),
            other => Err(format!(
                "`{other}` is not a log format; use raw or timestamped"
            )),
        }
    }
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

impl Config {
    /// The instance called `key`, if the configuration has one.
    pub fn instance(&self, key: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.key.as_str() == key)
    }

    /// One line for ctsd's start-up log and `ctsd --check`:
    /// `3 instances (turkey :8001 /TR, iraq :8002 /IQ, jordan :8003 /JO),
    /// 16 workers, control socket /run/ctsd/ctsd.sock, logs in /var/www/cts/log`.
    /// The socket shows [`DEFAULT_SOCKET`](crate::DEFAULT_SOCKET) when unset.
    pub fn summary(&self) -> String {
        let listed: Vec<String> = self
            .instances
            .iter()
            .map(|i| {
                if i.prefix.is_empty() {
                    format!("{} :{}", i.key, i.port)
                } else {
                    format!("{} :{} {}", i.key, i.port, i.prefix)
                }
            })
            .collect();
        let workers: u64 = self
            .instances
            .iter()
            .map(|i| u64::from(i.pool.workers))
            .sum();
        let others: u64 = self
            .instances
            .iter()
            .flat_map(|i| &i.programs)
            .map(|p| u64::from(p.pool.workers))
            .sum();
        let socket = self
            .daemon
            .socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_SOCKET));
        let programs = if others == 0 {
            String::new()
        } else {
            format!(" and {} of other programs", plural(others, "process"))
        };
        format!(
            "{} ({}), {}{programs}, control socket {}, logs in {}",
            plural(self.instances.len() as u64, "instance"),
            listed.join(", "),
            plural(workers, "worker"),
            socket.display(),
            self.daemon.log_dir.display(),
        )
    }
}

/// `1 worker`, `16 workers`.
fn plural(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ if noun.ends_with('s') => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

impl Environment {
    /// `dev`, `staging` or `production`, as written in the config and passed
    /// to workers as `CTS_ENVIRONMENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;

    /// Parses `dev`, `staging` or `production` (what `ctsd --env` takes).
    fn from_str(s: &str) -> Result<Environment, String> {
        match s {
            "dev" => Ok(Environment::Dev),
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            other => Err(format!(
                "unknown environment {other:?}: use dev, staging or production"
            )),
        }
    }
}

impl Rotate {
    /// `never`, `hourly` or `daily`, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Rotate::Never => "never",
            Rotate::Hourly => "hourly",
            Rotate::Daily => "daily",
        }
    }
}

impl fmt::Display for Rotate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rotate {
    type Err = String;

    /// Parses `never`, `hourly` or `daily`.
    fn from_str(s: &str) -> Result<Rotate, String> {
        match s {
            "never" => Ok(Rotate::Never),
            "hourly" => Ok(Rotate::Hourly),
            "daily" => Ok(Rotate::Daily),
            other => Err(format!(
                "unknown rotation {other:?}: use never, hourly or daily"
            )),
        }
    }
}

impl Default for ReadySpec {
    /// `{notify: false, after: 1s, timeout: 60s}`.
    fn default() -> ReadySpec {
        ReadySpec {
            notify: false,
            after: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        }
    }
}

impl Default for RestartPolicy {
    /// `{backoff_initial: 100ms, backoff_max: 30s, reset_after: 10s,
    /// crash_loop: {restarts: 5, within: 60s}}`.
    fn default() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
            crash_loop: CrashLoop::default(),
        }
    }
}

impl Default for CrashLoop {
    /// `{restarts: 5, within: 60s}`.
    fn default() -> CrashLoop {
        CrashLoop {
            restarts: 5,
            within: Duration::from_secs(60),
        }
    }
}

impl Default for LogSettings {
    /// `{rotate: daily, max_size: 100MB, keep: 14, compress: false, format: raw}`.
    fn default() -> LogSettings {
        LogSettings {
            rotate: Rotate::Daily,
            max_size: ByteSize(100 << 20),
            keep: 14,
            max_age: None,
            compress: false,
            format: LogFormat::Raw,
            stderr: StderrLog::Merged,
            sink: LogSink::File,
            socket: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_round_trips() {
        for env in [
            Environment::Dev,
            Environment::Staging,
            Environment::Production,
        ] {
            assert_eq!(env.as_str().parse::<Environment>(), Ok(env));
            assert_eq!(env.to_string(), env.as_str());
        }
        assert!("prod"
            .parse::<Environment>()
            .unwrap_err()
            .contains("dev, staging or production"));
        assert_eq!(Environment::default(), Environment::Production);
    }

    #[test]
    fn rotate_round_trips() {
        for rotate in [Rotate::Never, Rotate::Hourly, Rotate::Daily] {
            assert_eq!(rotate.as_str().parse::<Rotate>(), Ok(rotate));
        }
        assert!("weekly".parse::<Rotate>().is_err());
    }

    #[test]
    fn every_resource_has_its_own_key_slot_and_rlimit() {
        let mut limits = Limits::default();
        for (i, r) in Resource::ALL.into_iter().enumerate() {
            *limits.slot_mut(r) = Some(Limit::Value(i as u64));
        }
        let set: Vec<(Resource, Limit)> = limits.iter().collect();
        assert_eq!(set.len(), Resource::ALL.len());
        for (i, (r, l)) in set.into_iter().enumerate() {
            assert_eq!((r, l), (Resource::ALL[i], Limit::Value(i as u64)));
            assert_eq!(r.to_string(), r.name());
        }
        let names: std::collections::BTreeSet<_> = Resource::ALL.map(Resource::name).into();
        let rlimits: std::collections::BTreeSet<_> =
            Resource::ALL.map(|r| r.rlimit() as i64).into();
        assert_eq!((names.len(), rlimits.len()), (3, 3));
        let only_core = Limits {
            core: Some(Limit::Unlimited),
            ..Limits::default()
        };
        let merged = only_core.over(&limits);
        assert_eq!(merged.core, Some(Limit::Unlimited));
        assert_eq!(merged.nofile, limits.nofile);
    }
}
