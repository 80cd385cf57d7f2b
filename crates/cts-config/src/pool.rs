//! Pool settings: the keys that may appear in `defaults:` and, as overrides,
//! in each instance.
//!
//! [`read_pool`] turns a mapping into a [`RawPool`] of `Option`s (absent or
//! invalid settings are `None`; the invalid ones have been reported).
//! [`RawPool::over`] merges an instance's overrides over the defaults key by
//! key, nested mappings included; [`RawPool::build`] fills the remaining gaps
//! with the built-in defaults and renders the placeholders for one instance.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use crate::error::{child, index, Diag};
use crate::model::{
    ByteSize, CrashLoop, Limit, Limits, LogFormat, LogSettings, PoolSpec, ReadySpec, Resource,
    RestartPolicy, Rotate, StderrLog,
};
use crate::template::{Template, Vars};
use crate::yaml::{
    read_bool, read_duration, read_int, read_list, read_scalar, read_size, read_str, read_u32_in,
    Map,
};
use crate::MAX_WORKERS;

/// How one pool setting is read into a [`RawPool`]: its value, its key path, the collector
/// of problems.
type ReadSetting = fn(&Value, &str, &mut Diag, &mut RawPool);

/// The pool settings, valid in `defaults:` and in every instance, each with its reader: the
/// one list of them, from which [`POOL_KEYS`] is taken. Nested sections (`ready`, `restart`,
/// `logs`, `limits`) check their own keys.
const POOL_SETTINGS: &[(&str, ReadSetting)] = &[
    ("workers", |v, path, diag, pool| {
        pool.workers = read_u32_in(v, path, diag, 1, MAX_WORKERS);
    }),
    ("command", |v, path, diag, pool| {
        pool.command_written = true;
        pool.command = read_command(v, path, diag);
    }),
    ("cwd", |v, path, diag, pool| {
        pool.cwd = read_cwd(v, path, diag)
    }),
    ("env_file", |v, path, diag, pool| {
        pool.env_file = read_cwd(v, path, diag)
    }),
    ("env", |v, path, diag, pool| {
        pool.env = read_env(v, path, diag)
    }),
    ("user", |v, path, diag, pool| {
        pool.user = read_name(v, path, diag)
    }),
    ("group", |v, path, diag, pool| {
        pool.group = read_name(v, path, diag)
    }),
    ("ready", read_ready),
    ("stop_timeout", |v, path, diag, pool| {
        pool.stop_timeout = read_duration(v, path, diag);
    }),
    ("restart", read_restart),
    ("logs", read_logs),
    ("rolling", read_rolling),
    ("umask", |v, path, diag, pool| {
        pool.umask = read_umask(v, path, diag)
    }),
    ("limits", read_limits),
    ("preload", |v, path, diag, pool| {
        pool.preload = read_bool(v, path, diag)
    }),
];

/// The keys of [`POOL_SETTINGS`], in its order.
pub(crate) const POOL_KEYS: &[&str] = &{
    let mut keys = [""; POOL_SETTINGS.len()];
    let mut i = 0;
    while i < keys.len() {
        keys[i] = POOL_SETTINGS[i].0;
        i += 1;
    }
    keys
};

/// Default number of workers per instance.
const DEFAULT_WORKERS: u32 = 2;
/// Default grace between SIGTERM and SIGKILL.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Variables ctsd itself sets for each worker; configuring them would break
/// socket activation or readiness.
const RESERVED_ENV: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

/// Pool settings as written in one place, before merging.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawPool {
    /// `workers`.
    pub(crate) workers: Option<u32>,
    /// `command`, parsed into templates.
    pub(crate) command: Option<Vec<Template>>,
    /// Whether `command` was written at all (even if invalid), so a bad
    /// command is not also reported as a missing one.
    pub(crate) command_written: bool,
    /// `cwd`, a template.
    pub(crate) cwd: Option<Template>,
    /// `env_file`, a template.
    pub(crate) env_file: Option<Template>,
    /// `env`, merged by variable name.
    pub(crate) env: BTreeMap<String, Template>,
    /// `user`.
    pub(crate) user: Option<String>,
    /// `group`.
    pub(crate) group: Option<String>,
    /// `ready.notify`.
    pub(crate) notify: Option<bool>,
    /// `ready.after`.
    pub(crate) after: Option<Duration>,
    /// `ready.timeout`.
    pub(crate) timeout: Option<Duration>,
    /// `stop_timeout`.
    pub(crate) stop_timeout: Option<Duration>,
    /// `rolling.batch`.
    pub(crate) rolling_batch: Option<u32>,
    /// `restart.backoff_initial`.
    pub(crate) backoff_initial: Option<Duration>,
    /// `restart.backoff_max`.
    pub(crate) backoff_max: Option<Duration>,
    /// `restart.reset_after`.
    pub(crate) reset_after: Option<Duration>,
    /// `restart.crash_loop.restarts`.
    pub(crate) restarts: Option<u32>,
    /// `restart.crash_loop.within`.
    pub(crate) within: Option<Duration>,
    /// `logs.rotate`.
    pub(crate) rotate: Option<Rotate>,
    /// `logs.max_size`.
    pub(crate) max_size: Option<ByteSize>,
    /// `logs.keep`.
    pub(crate) keep: Option<u32>,
    /// `logs.compress`.
    pub(crate) compress: Option<bool>,
    /// `logs.format`.
    pub(crate) format: Option<LogFormat>,
    /// `logs.max_age`.
    pub(crate) max_age: Option<Duration>,
    /// `logs.stderr`.
    pub(crate) stderr: Option<StderrLog>,
    /// `logs.sink`.
    pub(crate) sink: Option<crate::model::LogSink>,
    /// `logs.socket`.
    pub(crate) sink_socket: Option<Template>,
    /// `umask`.
    pub(crate) umask: Option<u32>,
    /// `limits`, merged by resource.
    pub(crate) limits: Limits,
    /// `preload`.
    pub(crate) preload: Option<bool>,
}

/// Reads the pool settings of `map` in file order (the caller checks for unknown keys,
/// since instances allow more).
pub(crate) fn read_pool(map: &Map<'_>, diag: &mut Diag) -> RawPool {
    let mut pool = RawPool::default();
    for (key, value) in map.entries() {
        if let Some((_, read)) = POOL_SETTINGS.iter().find(|(k, _)| *k == key) {
            read(value, &map.path_of(key), diag, &mut pool);
        }
    }
    pool
}

/// `cwd`: a non-empty template.
fn read_cwd(value: &Value, path: &str, diag: &mut Diag) -> Option<Template> {
    read_str(value, path, diag).and_then(|text| {
        if text.is_empty() {
            diag.error(path, "the working directory is empty");
            return None;
        }
        Template::parse(text).map_err(|e| diag.error(path, e)).ok()
    })
}

/// `rolling: {batch}`.
fn read_rolling(value: &Value, path: &str, diag: &mut Diag, pool: &mut RawPool) {
    if let Some(map) = Map::read(value, path, diag) {
        map.check_keys(&["batch"], diag);
        if let Some(v) = map.get("batch") {
            // A batch beyond the most workers an instance may have means nothing more.
            pool.rolling_batch = read_u32_in(v, &map.path_of("batch"), diag, 1, MAX_WORKERS);
        }
    }
}

/// `umask`: octal digits as a string: `"0027"`, or `027` unquoted (which YAML keeps as a
/// string for its leading zero). A number is refused: YAML reads `0o027` as 23 and `22` as
/// twenty-two, so what was meant cannot be told.
fn read_umask(value: &Value, path: &str, diag: &mut Diag) -> Option<u32> {
    if let Value::Number(n) = value {
        diag.error(
            path,
            format!(
                "{n} is a number to YAML (0o027 reads as 23): write the umask as octal digits \
                 in quotes, e.g. \"0027\""
            ),
        );
        return None;
    }
    let text = read_str(value, path, diag)?;
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mask) if mask <= 0o777 && !digits.is_empty() => Some(mask),
        _ => {
            diag.error(
                path,
                format!("{text:?} is not a umask: write octal digits, e.g. \"0027\""),
            );
            None
        }
    }
}

/// `limits: {nofile, nproc, core}`: whole numbers or `unlimited`.
fn read_limits(value: &Value, path: &str, diag: &mut Diag, pool: &mut RawPool) {
    let Some(map) = Map::read(value, path, diag) else {
        return;
    };
    map.check_keys(&Resource::ALL.map(Resource::name), diag);
    for resource in Resource::ALL {
        let key = resource.name();
        let Some(v) = map.get(key) else { continue };
        let path = map.path_of(key);
        let unlimited = matches!(v, Value::String(s) if s == "unlimited" || s == "infinity");
        *pool.limits.slot_mut(resource) = match resource {
            // The kernel refuses an open-file limit above fs.nr_open, even to root.
            Resource::Nofile if unlimited => {
                diag.error(
                    &path,
                    "nofile cannot be unlimited (the kernel caps it at fs.nr_open): give a number",
                );
                None
            }
            Resource::Nofile => read_int(v, &path, diag).and_then(|n| {
                if (64..=1 << 30).contains(&n) {
                    Some(Limit::Value(n as u64))
                } else {
                    diag.error(&path, format!("{n} open files: give 64 to 1073741824"));
                    None
                }
            }),
            Resource::Nproc | Resource::Core if unlimited => Some(Limit::Unlimited),
            Resource::Nproc | Resource::Core => {
                read_int(v, &path, diag).and_then(|n| match u64::try_from(n) {
                    Ok(n) => Some(Limit::Value(n)),
                    Err(_) => {
                        diag.error(
                            &path,
                            format!("{n} is negative: give a number or `unlimited`"),
                        );
                        None
                    }
                })
            }
        };
    }
}

/// A user or group name: a non-empty string without blanks or `:`.
pub(crate) fn read_name(value: &Value, path: &str, diag: &mut Diag) -> Option<String> {
    let name = read_str(value, path, diag)?;
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
        diag.error(path, format!("{name:?} is not a user or group name"));
        return None;
    }
    Some(name.to_owned())
}

/// `command`: a non-empty list of argv templates.
pub(crate) fn read_command(value: &Value, path: &str, diag: &mut Diag) -> Option<Vec<Template>> {
    let items = read_list(value, path, diag)?;
    if items.is_empty() {
        diag.error(
            path,
            "the command is empty: give the worker's argv, e.g. [gunicorn, cts.wsgi:application]",
        );
        return None;
    }
    let mut argv = Some(Vec::with_capacity(items.len()));
    for (i, item) in items.iter().enumerate() {
        let path = index(path, i);
        let parsed = read_scalar(item, &path, diag).and_then(|text| {
            if i == 0 && text.is_empty() {
                diag.error(&path, "the program name is empty");
                return None;
            }
            Template::parse(&text)
                .map_err(|e| diag.error(&path, e))
                .ok()
        });
        // Keep going after a bad item, to report the others too.
        match (parsed, argv.as_mut()) {
            (Some(template), Some(argv)) => argv.push(template),
            _ => argv = None,
        }
    }
    check_gunicorn_bind(items, path, diag);
    argv
}

/// gunicorn takes fd 3 from `LISTEN_FDS`/`LISTEN_PID` by itself; `--bind fd://3` on top makes
/// it set up the same fd twice and every worker dies with EBADF (gunicorn 20 to 27). Said here
/// rather than as a crash loop.
fn check_gunicorn_bind(items: &[Value], path: &str, diag: &mut Diag) {
    let text: Vec<&str> = items.iter().map(|v| v.as_str().unwrap_or("")).collect();
    let is_gunicorn = |arg: &str| {
        Path::new(arg)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("gunicorn"))
    };
    let Some(start) = text.iter().position(|a| is_gunicorn(a)) else {
        return;
    };
    for (i, arg) in text.iter().enumerate().skip(start + 1) {
        let value = match *arg {
            "--bind" | "-b" => text.get(i + 1).copied().unwrap_or(""),
            a => a
                .strip_prefix("--bind=")
                .or_else(|| a.strip_prefix("-b"))
                .unwrap_or(""),
        };
        if value.starts_with("fd://") {
            diag.error(
                &index(path, i),
                format!(
                    "gunicorn takes ctsd's socket from LISTEN_FDS by itself; `--bind {value}` \
                     makes it use fd 3 twice and every worker fails with EBADF: remove it"
                ),
            );
            return;
        }
    }
}

/// `env`: variable names to value templates.
fn read_env(value: &Value, path: &str, diag: &mut Diag) -> BTreeMap<String, Template> {
    let mut env = BTreeMap::new();
    let Some(map) = Map::read(value, path, diag) else {
        return env;
    };
    for (name, value) in map.entries() {
        let path = map.path_of(name);
        if !is_env_name(name) {
            diag.error(
                &path,
                format!(
                    "{name:?} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                ),
            );
            continue;
        }
        if RESERVED_ENV.contains(&name) {
            diag.error(
                &path,
                format!("{name} is set by ctsd for every worker and cannot be configured"),
            );
            continue;
        }
        let template = read_scalar(value, &path, diag).and_then(|text| {
            Template::parse(&text)
                .map_err(|e| diag.error(&path, e))
                .ok()
        });
        if let Some(template) = template {
            env.insert(name.to_owned(), template);
        }
    }
    env
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A duration that must not be zero.
fn read_positive_duration(value: &Value, path: &str, diag: &mut Diag) -> Option<Duration> {
    let duration = read_duration(value, path, diag)?;
    if duration.is_zero() {
        diag.error(path, "must be longer than 0s");
        return None;
    }
    Some(duration)
}

/// `ready: {notify, after, timeout}`.
fn read_ready(value: &Value, path: &str, diag: &mut Diag, pool: &mut RawPool) {
    let Some(map) = Map::read(value, path, diag) else {
        return;
    };
    map.check_keys(&["notify", "after", "timeout"], diag);
    if let Some(v) = map.get("notify") {
        pool.notify = read_bool(v, &map.path_of("notify"), diag);
    }
    if let Some(v) = map.get("after") {
        pool.after = read_duration(v, &map.path_of("after"), diag);
    }
    if let Some(v) = map.get("timeout") {
        pool.timeout = read_positive_duration(v, &map.path_of("timeout"), diag);
    }
}

/// `restart: {backoff_initial, backoff_max, reset_after, crash_loop: {restarts, within}}`.
fn read_restart(value: &Value, path: &str, diag: &mut Diag, pool: &mut RawPool) {
    let Some(map) = Map::read(value, path, diag) else {
        return;
    };
    map.check_keys(
        &[
            "backoff_initial",
            "backoff_max",
            "reset_after",
            "crash_loop",
        ],
        diag,
    );
    if let Some(v) = map.get("backoff_initial") {
        pool.backoff_initial = read_duration(v, &map.path_of("backoff_initial"), diag);
    }
    if let Some(v) = map.get("backoff_max") {
        pool.backoff_max = read_duration(v, &map.path_of("backoff_max"), diag);
    }
    if let Some(v) = map.get("reset_after") {
        pool.reset_after = read_duration(v, &map.path_of("reset_after"), diag);
    }
    let Some(v) = map.get("crash_loop") else {
        return;
    };
    let Some(crash) = Map::read(v, &map.path_of("crash_loop"), diag) else {
        return;
    };
    crash.check_keys(&["restarts", "within"], diag);
    if let Some(v) = crash.get("restarts") {
        pool.restarts = read_u32_in(v, &crash.path_of("restarts"), diag, 1, u32::MAX);
    }
    if let Some(v) = crash.get("within") {
        pool.within = read_positive_duration(v, &crash.path_of("within"), diag);
    }
}

/// `logs: {rotate, max_size, keep, compress, format}`.
fn read_logs(value: &Value, path: &str, diag: &mut Diag, pool: &mut RawPool) {
    let Some(map) = Map::read(value, path, diag) else {
        return;
    };
    map.check_keys(
        &[
            "rotate", "max_size", "keep", "max_age", "compress", "format", "stderr", "sink",
            "socket",
        ],
        diag,
    );
    if let Some(v) = map.get("sink") {
        let path = map.path_of("sink");
        pool.sink = read_str(v, &path, diag).and_then(|text| {
            text.parse::<crate::model::LogSink>()
                .map_err(|e| diag.error(&path, e))
                .ok()
        });
    }
    if let Some(v) = map.get("socket") {
        pool.sink_socket = read_cwd(v, &map.path_of("socket"), diag);
    }
    if let Some(v) = map.get("max_age") {
        pool.max_age = read_positive_duration(v, &map.path_of("max_age"), diag);
    }
    if let Some(v) = map.get("stderr") {
        let path = map.path_of("stderr");
        pool.stderr = read_str(v, &path, diag).and_then(|text| {
            text.parse::<StderrLog>()
                .map_err(|e| diag.error(&path, e))
                .ok()
        });
    }
    if let Some(v) = map.get("compress") {
        pool.compress = read_bool(v, &map.path_of("compress"), diag);
    }
    if let Some(v) = map.get("format") {
        let path = map.path_of("format");
        pool.format = read_str(v, &path, diag).and_then(|text| {
            text.parse::<LogFormat>()
                .map_err(|e| diag.error(&path, e))
                .ok()
        });
    }
    if let Some(v) = map.get("rotate") {
        let path = map.path_of("rotate");
        pool.rotate = read_str(v, &path, diag).and_then(|text| {
            text.parse::<Rotate>()
                .map_err(|e| diag.error(&path, e))
                .ok()
        });
    }
    if let Some(v) = map.get("max_size") {
        let path = map.path_of("max_size");
        pool.max_size = read_size(v, &path, diag).filter(|size| {
            if size.0 == 0 {
                diag.error(&path, "must be larger than 0B");
            }
            size.0 > 0
        });
    }
    if let Some(v) = map.get("keep") {
        pool.keep = read_u32_in(v, &map.path_of("keep"), diag, 0, 100_000);
    }
}

impl RawPool {
    /// These settings (an instance's) merged over `defaults`: every key set
    /// here wins, `env` is merged variable by variable.
    pub(crate) fn over(&self, defaults: &RawPool) -> RawPool {
        let mut env = defaults.env.clone();
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        RawPool {
            workers: self.workers.or(defaults.workers),
            command: self.command.clone().or_else(|| defaults.command.clone()),
            command_written: self.command_written || defaults.command_written,
            cwd: self.cwd.clone().or_else(|| defaults.cwd.clone()),
            env_file: self.env_file.clone().or_else(|| defaults.env_file.clone()),
            env,
            user: self.user.clone().or_else(|| defaults.user.clone()),
            group: self.group.clone().or_else(|| defaults.group.clone()),
            notify: self.notify.or(defaults.notify),
            after: self.after.or(defaults.after),
            timeout: self.timeout.or(defaults.timeout),
            stop_timeout: self.stop_timeout.or(defaults.stop_timeout),
            rolling_batch: self.rolling_batch.or(defaults.rolling_batch),
            backoff_initial: self.backoff_initial.or(defaults.backoff_initial),
            backoff_max: self.backoff_max.or(defaults.backoff_max),
            reset_after: self.reset_after.or(defaults.reset_after),
            restarts: self.restarts.or(defaults.restarts),
            within: self.within.or(defaults.within),
            rotate: self.rotate.or(defaults.rotate),
            max_size: self.max_size.or(defaults.max_size),
            keep: self.keep.or(defaults.keep),
            compress: self.compress.or(defaults.compress),
            format: self.format.or(defaults.format),
            max_age: self.max_age.or(defaults.max_age),
            stderr: self.stderr.or(defaults.stderr),
            sink: self.sink.or(defaults.sink),
            sink_socket: self
                .sink_socket
                .clone()
                .or_else(|| defaults.sink_socket.clone()),
            umask: self.umask.or(defaults.umask),
            limits: self.limits.over(&defaults.limits),
            preload: self.preload.or(defaults.preload),
        }
    }

    /// The restart policy with built-in defaults filling the gaps.
    pub(crate) fn restart_policy(&self) -> RestartPolicy {
        let builtin = RestartPolicy::default();
        RestartPolicy {
            backoff_initial: self.backoff_initial.unwrap_or(builtin.backoff_initial),
            backoff_max: self.backoff_max.unwrap_or(builtin.backoff_max),
            reset_after: self.reset_after.unwrap_or(builtin.reset_after),
            crash_loop: CrashLoop {
                restarts: self.restarts.unwrap_or(builtin.crash_loop.restarts),
                within: self.within.unwrap_or(builtin.crash_loop.within),
            },
        }
    }

    /// The finished pool for one instance, or `None` when there is no valid
    /// command (already reported). `base_env` holds the contract variables;
    /// the configured `env` is rendered over them.
    pub(crate) fn build(
        &self,
        vars: &Vars<'_>,
        base_env: BTreeMap<String, String>,
        dir: &Path,
    ) -> Option<PoolSpec> {
        let command = self
            .command
            .as_ref()?
            .iter()
            .map(|t| t.render(vars))
            .collect();
        let mut env = base_env;
        env.extend(self.env.iter().map(|(k, t)| (k.clone(), t.render(vars))));
        let ready = ReadySpec::default();
        let logs = LogSettings::default();
        Some(PoolSpec {
            workers: self.workers.unwrap_or(DEFAULT_WORKERS),
            command,
            cwd: self.cwd.as_ref().map(|t| dir.join(t.render(vars))),
            env_file: self.env_file.as_ref().map(|t| dir.join(t.render(vars))),
            secrets: crate::Secrets::default(),
            env,
            user: self.user.clone(),
            group: self.group.clone(),
            accounts: None,
            umask: self.umask,
            limits: self.limits,
            ready: ReadySpec {
                // A preloaded worker says READY=1 once it accepts.
                notify: self.preload == Some(true) || self.notify.unwrap_or(ready.notify),
                after: self.after.unwrap_or(ready.after),
                timeout: self.timeout.unwrap_or(ready.timeout),
            },
            stop_timeout: self.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
            rolling_batch: self.rolling_batch.unwrap_or(1),
            preload: self.preload.unwrap_or(false),
            restart: self.restart_policy(),
            logs: LogSettings {
                rotate: self.rotate.unwrap_or(logs.rotate),
                max_size: self.max_size.unwrap_or(logs.max_size),
                keep: self.keep.unwrap_or(logs.keep),
                compress: self.compress.unwrap_or(logs.compress),
                format: self.format.unwrap_or(logs.format),
                max_age: self.max_age.or(logs.max_age),
                stderr: self.stderr.unwrap_or(logs.stderr),
                sink: self.sink.unwrap_or(logs.sink),
                socket: self.sink_socket.as_ref().map(|t| dir.join(t.render(vars))),
            },
        })
    }
}

/// The key path of a setting inside `restart:` under `parent`.
pub(crate) fn restart_path(parent: &str, key: &str) -> String {
    child(&child(parent, "restart"), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        for good in ["A", "_", "DJANGO_SETTINGS_MODULE", "a1", "_x9"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }
}
