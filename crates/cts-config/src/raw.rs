//! The walk over the YAML document: every key checked, every value read into
//! a `Raw*` struct of `Option`s, every problem recorded with its key path.
//!
//! Nothing here depends on another setting; the checks that relate settings
//! to each other (merging, duplicate ports, overlapping prefixes, missing
//! command) are in `validate.rs`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::error::{child, index, Diag};
use crate::jobs::{read_deploy, read_jobs, RawJobs};
use crate::model::{Admins, Environment};
use crate::names::{Currency, InstanceKey, Prefix};
use crate::pillar;
use crate::pool::{read_name, read_pool, RawPool, POOL_KEYS};
use crate::programs::{read_programs, RawProgram};
use crate::yaml::{describe, read_int, read_list, read_scalar, read_str, unknown_setting, Map};

/// Top-level keys.
const TOP_KEYS: &[&str] = &["ctsd", "defaults", "instances", "instances_file", "deploy"];
/// Keys of the `ctsd:` section.
const DAEMON_KEYS: &[&str] = &[
    "environment",
    "socket",
    "socket_mode",
    "socket_group",
    "admins",
    "log_dir",
    "log_file",
    "bind",
];
/// Keys only an instance has (besides the pool settings).
const INSTANCE_KEYS: &[&str] = &["name", "prefix", "currency", "port"];
/// Keys of `defaults:` and of each instance besides the pool settings: its other programs, and
/// the jobs a deploy runs for it.
const PROGRAM_SECTION: &str = "programs";
const RELEASE_SECTION: &str = "release";

/// The whole file, read but not yet cross-checked.
#[derive(Debug, Default)]
pub(crate) struct RawConfig {
    /// The `ctsd:` section.
    pub(crate) daemon: RawDaemon,
    /// The `defaults:` section.
    pub(crate) defaults: RawPool,
    /// `defaults.programs`.
    pub(crate) default_programs: Vec<RawProgram>,
    /// `defaults.release`.
    pub(crate) default_release: RawJobs,
    /// `deploy.once`.
    pub(crate) deploy_once: Vec<Vec<crate::template::Template>>,
    /// `deploy.job_timeout`.
    pub(crate) job_timeout: Option<std::time::Duration>,
    /// The file the instances were read from: the config file, or the
    /// pillar named by `instances_file`.
    pub(crate) instances_file: PathBuf,
    /// The instances in file order; empty when none were declared.
    pub(crate) instances: Vec<RawInstance>,
    /// Instances were declared but could not be read at all (bad pillar,
    /// `instances` not a mapping): already reported, so "no instances" would
    /// only repeat it.
    pub(crate) instances_unreadable: bool,
}

/// The `ctsd:` section; `None` is "not set, or invalid (reported)".
#[derive(Debug, Default)]
pub(crate) struct RawDaemon {
    /// `environment`.
    pub(crate) environment: Option<Environment>,
    /// `socket`, resolved against the config directory.
    pub(crate) socket: Option<PathBuf>,
    /// `socket_mode`.
    pub(crate) socket_mode: Option<u32>,
    /// `socket_group`.
    pub(crate) socket_group: Option<String>,
    /// `admins` (the valid names in it).
    pub(crate) admins: Admins,
    /// `log_dir`, resolved.
    pub(crate) log_dir: Option<PathBuf>,
    /// `log_file`, resolved.
    pub(crate) log_file: Option<PathBuf>,
    /// `bind`.
    pub(crate) bind: Option<IpAddr>,
}

/// One entry of `instances:`.
#[derive(Debug)]
pub(crate) struct RawInstance {
    /// The key path (`instances.jordan`), for cross-instance messages.
    pub(crate) path: String,
    /// The key as written.
    pub(crate) written_key: String,
    /// The key, if safe.
    pub(crate) key: Option<InstanceKey>,
    /// `name`, if written and valid.
    pub(crate) name: Option<String>,
    /// `prefix`, if written and valid.
    pub(crate) prefix: Option<Prefix>,
    /// `currency`, if valid (required).
    pub(crate) currency: Option<Currency>,
    /// `port`, if valid (required).
    pub(crate) port: Option<u16>,
    /// The instance's pool overrides.
    pub(crate) pool: RawPool,
    /// The instance's `programs:`, merged by name with `defaults.programs`.
    pub(crate) programs: Vec<RawProgram>,
    /// The instance's `release:`, which replaces `defaults.release`.
    pub(crate) release: RawJobs,
}

/// Walks `doc`, the parsed config file in directory `dir`. Problems in a
/// pillar named by `instances_file` are recorded against that file.
pub(crate) fn read_config(doc: &Value, dir: &Path, diag: &mut Diag, source: &Path) -> RawConfig {
    let mut raw = RawConfig {
        instances_file: source.to_path_buf(),
        ..RawConfig::default()
    };
    if !matches!(doc, Value::Mapping(_) | Value::Null) {
        diag.error(
            "",
            format!(
                "the top level must be a mapping (ctsd:, defaults:, instances:), got {}",
                describe(doc)
            ),
        );
        raw.instances_unreadable = true;
        return raw;
    }
    let Some(top) = Map::read(doc, "", diag) else {
        return raw;
    };
    top.check_keys(TOP_KEYS, diag);
    if let Some(section) = top.get("ctsd") {
        raw.daemon = read_daemon(section, dir, diag);
    }
    if let Some(section) = top.get("deploy") {
        (raw.deploy_once, raw.job_timeout) = read_deploy(section, diag);
    }
    if let Some(section) = top.get("defaults") {
        if let Some(map) = Map::read(section, "defaults", diag) {
            let known: Vec<&str> = POOL_KEYS
                .iter()
                .copied()
                .chain([PROGRAM_SECTION, RELEASE_SECTION])
                .collect();
            for key in map.unknown_keys(&known) {
                let message = if INSTANCE_KEYS.contains(&key) {
                    format!("`{key}` is set per instance (under instances.<key>), not in defaults")
                } else {
                    unknown_setting(key, &known)
                };
                diag.error(&map.path_of(key), message);
            }
            raw.defaults = read_pool(&map, diag);
            if let Some(v) = map.get(PROGRAM_SECTION) {
                raw.default_programs = read_programs(v, &map.path_of(PROGRAM_SECTION), diag);
            }
            if let Some(v) = map.get(RELEASE_SECTION) {
                raw.default_release = read_jobs(v, &map.path_of(RELEASE_SECTION), diag);
            }
        }
    }
    let inline = top.get("instances").filter(|v| !v.is_null());
    match (inline, top.get("instances_file")) {
        (Some(instances), file) => {
            if file.is_some() {
                diag.error(
                    "instances_file",
                    "`instances` and `instances_file` are both set; keep one of them",
                );
            }
            match read_instances(instances, Origin::Config, diag) {
                Some(instances) => raw.instances = instances,
                None => raw.instances_unreadable = true,
            }
        }
        (None, Some(file)) => {
            let pillar = pillar::load(file, dir, diag);
            let instances = pillar.as_ref().and_then(|pillar| {
                let mut pillar_diag = Diag::new(&pillar.file);
                let instances = read_instances(&pillar.instances, Origin::Pillar, &mut pillar_diag);
                diag.absorb(pillar_diag);
                instances
            });
            match instances {
                Some(instances) => raw.instances = instances,
                None => raw.instances_unreadable = true,
            }
            if let Some(pillar) = pillar {
                raw.instances_file = pillar.file;
            }
        }
        (None, None) => {}
    }
    raw
}

/// The `ctsd:` section.
fn read_daemon(section: &Value, dir: &Path, diag: &mut Diag) -> RawDaemon {
    let mut daemon = RawDaemon::default();
    let Some(map) = Map::read(section, "ctsd", diag) else {
        return daemon;
    };
    map.check_keys(DAEMON_KEYS, diag);
    for (key, value) in map.entries() {
        let path = map.path_of(key);
        match key {
            "environment" => {
                daemon.environment = read_str(value, &path, diag)
                    .and_then(|text| text.parse().map_err(|e: String| diag.error(&path, e)).ok());
            }
            "socket" => daemon.socket = read_path(value, &path, dir, diag),
            "socket_mode" => daemon.socket_mode = read_mode(value, &path, diag),
            "socket_group" => daemon.socket_group = read_name(value, &path, diag),
            "admins" => daemon.admins = read_admins(value, &path, diag),
            "log_dir" => daemon.log_dir = read_path(value, &path, dir, diag),
            "log_file" => daemon.log_file = read_path(value, &path, dir, diag),
            "bind" => {
                daemon.bind = read_str(value, &path, diag).and_then(|text| {
                    text.parse::<IpAddr>()
                        .map_err(|_| {
                            diag.error(
                                &path,
                                format!("{text:?} is not an IP address (e.g. 127.0.0.1 or ::1)"),
                            )
                        })
                        .ok()
                });
            }
            _ => {}
        }
    }
    daemon
}

/// A non-empty path; relative ones are joined to the config directory.
fn read_path(value: &Value, path: &str, dir: &Path, diag: &mut Diag) -> Option<PathBuf> {
    let text = read_str(value, path, diag)?;
    if text.is_empty() {
        diag.error(path, "the path is empty");
        return None;
    }
    Some(dir.join(text))
}

/// `socket_mode`: an octal string (`"0660"`, `"660"`, `"0o660"`), or an
/// integer whose decimal digits are read as octal (YAML reads `660` as six
/// hundred and sixty; the operator meant `0o660`).
fn read_mode(value: &Value, path: &str, diag: &mut Diag) -> Option<u32> {
    let digits = match value {
        Value::String(s) => s.strip_prefix("0o").unwrap_or(s).to_owned(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        other => {
            diag.error(
                path,
                format!(
                    "expected an octal mode such as \"0660\", got {}",
                    describe(other)
                ),
            );
            return None;
        }
    };
    let mode = if digits.is_empty() || digits.len() > 6 {
        None
    } else {
        u32::from_str_radix(&digits, 8).ok()
    };
    match mode {
        None => {
            diag.error(
                path,
                format!("{} is not an octal mode such as \"0660\"", describe(value)),
            );
            None
        }
        Some(mode) if mode > 0o777 => {
            diag.error(
                path,
                format!("mode {mode:04o} is more than 0777: only permission bits are allowed"),
            );
            None
        }
        Some(mode) => Some(mode),
    }
}

/// `admins: {users: [...], groups: [...]}`.
fn read_admins(value: &Value, path: &str, diag: &mut Diag) -> Admins {
    let mut admins = Admins::default();
    let Some(map) = Map::read(value, path, diag) else {
        return admins;
    };
    map.check_keys(&["users", "groups"], diag);
    for (key, names) in [("users", &mut admins.users), ("groups", &mut admins.groups)] {
        let Some(value) = map.get(key) else { continue };
        let path = map.path_of(key);
        let Some(items) = read_list(value, &path, diag) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(name) = read_name(item, &index(&path, i), diag) {
                names.push(name);
            }
        }
    }
    admins
}

/// Where the instances are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// In ctsd's own file: every key must be ctsd's.
    Config,
    /// In the deploy's pillar (`instances_file`), which other tools read too: keys of theirs
    /// (`db_name`, `domain`, ...) are ignored; only a near-miss of one of ctsd's keys (`prot`)
    /// is an error.
    Pillar,
}

/// `instances:`, a mapping from key to settings.
fn read_instances(value: &Value, origin: Origin, diag: &mut Diag) -> Option<Vec<RawInstance>> {
    if !matches!(value, Value::Mapping(_)) {
        diag.error(
            "instances",
            format!(
                "expected a mapping from instance key to its settings \
                 (jordan: {{name: Jordan, prefix: /JO, currency: JOD, port: 8003}}), got {}",
                describe(value)
            ),
        );
        return None;
    }
    let map = Map::read(value, "instances", diag)?;
    Some(
        map.entries()
            .map(|(key, entry)| read_instance(key, entry, &map.path_of(key), origin, diag))
            .collect(),
    )
}

/// One instance.
fn read_instance(
    key: &str,
    value: &Value,
    path: &str,
    origin: Origin,
    diag: &mut Diag,
) -> RawInstance {
    let mut instance = RawInstance {
        path: path.to_owned(),
        written_key: key.to_owned(),
        key: InstanceKey::new(key).map_err(|e| diag.error(path, e)).ok(),
        name: None,
        prefix: None,
        currency: None,
        port: None,
        pool: RawPool::default(),
        programs: Vec::new(),
        release: None,
    };
    let map = match value {
        Value::Mapping(_) | Value::Null => Map::read(value, path, diag),
        other => {
            diag.error(
                path,
                format!(
                    "expected the instance's settings ({{name, prefix, currency, port}}), got {}",
                    describe(other)
                ),
            );
            None
        }
    };
    let Some(map) = map else { return instance };
    let known: Vec<&str> = INSTANCE_KEYS
        .iter()
        .chain(POOL_KEYS)
        .copied()
        .chain([PROGRAM_SECTION, RELEASE_SECTION])
        .collect();
    match origin {
        Origin::Config => map.check_keys(&known, diag),
        Origin::Pillar => {
            for other in map.unknown_keys(&known) {
                if let Some(best) = crate::yaml::closest(other, &known) {
                    diag.error(
                        &map.path_of(other),
                        format!("unknown setting; did you mean `{best}`? (keys of other tools, far from ctsd's, are ignored in a pillar)"),
                    );
                }
            }
        }
    }

    if let Some(v) = map.get("name") {
        let name_path = map.path_of("name");
        instance.name = read_scalar(v, &name_path, diag).filter(|name| {
            if name.trim().is_empty() {
                diag.error(
                    &name_path,
                    "the name is empty (leave it out to use the key)",
                );
            }
            !name.trim().is_empty()
        });
    }
    match map.get("prefix") {
        None | Some(Value::Null) => instance.prefix = Some(Prefix::NONE),
        Some(v) => {
            let prefix_path = map.path_of("prefix");
            instance.prefix = read_str(v, &prefix_path, diag).and_then(|text| {
                Prefix::new(text)
                    .map_err(|e| diag.error(&prefix_path, e))
                    .ok()
            });
        }
    }
    let currency_path = map.path_of("currency");
    match map.get("currency") {
        None => diag.error(
            &currency_path,
            "missing: every instance needs its currency (an ISO 4217 code such as JOD)",
        ),
        Some(v) => {
            instance.currency = read_str(v, &currency_path, diag).and_then(|text| {
                Currency::new(text)
                    .map_err(|e| diag.error(&currency_path, e))
                    .ok()
            });
        }
    }
    let port_path = map.path_of("port");
    match map.get("port") {
        None => diag.error(&port_path, "missing: every instance needs its own TCP port"),
        Some(v) => instance.port = read_port(v, &port_path, diag),
    }
    instance.pool = read_pool(&map, diag);
    if let Some(v) = map.get(PROGRAM_SECTION) {
        instance.programs = read_programs(v, &map.path_of(PROGRAM_SECTION), diag);
    }
    if let Some(v) = map.get(RELEASE_SECTION) {
        instance.release = read_jobs(v, &map.path_of(RELEASE_SECTION), diag);
    }
    instance
}

/// A TCP port, 1 to 65535.
fn read_port(value: &Value, path: &str, diag: &mut Diag) -> Option<u16> {
    let n = read_int(value, path, diag)?;
    match u16::try_from(n) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            diag.error(path, format!("port {n} is out of range 1-65535"));
            None
        }
    }
}

/// The key path of an instance's setting, for `validate.rs`.
pub(crate) fn instance_path(instance: &RawInstance, key: &str) -> String {
    child(&instance.path, key)
}
