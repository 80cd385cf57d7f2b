//! `programs:`: an instance's processes besides the web pool (a celery worker, one beat).
//!
//! [`read_programs`] reads the mapping of `defaults:` or of one instance into [`RawProgram`]s
//! (`null` removes a program of the defaults). [`merge`] combines the two by name, and
//! [`build`] turns each program into a [`ProgramConfig`] that inherits every setting of its
//! instance it does not set itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::error::{child, Diag};
use crate::model::ProgramConfig;
use crate::names::ProgramName;
use crate::pool::{read_pool, RawPool};
use crate::template::Vars;
use crate::yaml::{describe, read_bool, Map};

/// What a program may set; everything else it inherits from its instance.
pub(crate) const PROGRAM_KEYS: &[&str] = &[
    "command",
    "workers",
    "env",
    "ready",
    "stop_timeout",
    "restart",
    "singleton",
];

/// One entry of a `programs:` mapping.
#[derive(Debug, Clone)]
pub(crate) struct RawProgram {
    /// Its key path (`defaults.programs.celery`).
    pub(crate) path: String,
    /// Its name, if valid (reported otherwise).
    pub(crate) name: Option<ProgramName>,
    /// Its settings; `None` for `null`, which removes the program of the defaults.
    pub(crate) settings: Option<RawSettings>,
}

/// A program's own settings as written in one place.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawSettings {
    /// The pool settings among [`PROGRAM_KEYS`].
    pub(crate) pool: RawPool,
    /// `singleton`.
    pub(crate) singleton: Option<bool>,
    /// Where `command` was written, if it was (to blame a missing one on the right place).
    pub(crate) command_at: Option<String>,
}

impl RawSettings {
    /// These settings (an instance's) over `defaults` (the same program in `defaults:`).
    fn over(&self, defaults: &RawSettings) -> RawSettings {
        RawSettings {
            pool: self.pool.over(&defaults.pool),
            singleton: self.singleton.or(defaults.singleton),
            command_at: self
                .command_at
                .clone()
                .or_else(|| defaults.command_at.clone()),
        }
    }
}

/// `programs:` at `path`: name to settings (or `null`).
pub(crate) fn read_programs(value: &Value, path: &str, diag: &mut Diag) -> Vec<RawProgram> {
    let Some(map) = Map::read(value, path, diag) else {
        return Vec::new();
    };
    let mut programs = Vec::new();
    for (name, entry) in map.entries() {
        let path = map.path_of(name);
        let name = ProgramName::new(name)
            .map_err(|e| diag.error(&path, e))
            .ok();
        let settings = match entry {
            Value::Null => None,
            Value::Mapping(_) => Map::read(entry, &path, diag).map(|m| {
                for key in m.unknown_keys(PROGRAM_KEYS) {
                    let message = if crate::pool::POOL_KEYS.contains(&key) {
                        format!(
                            "`{key}` is the instance's, and its programs inherit it; a program \
                             sets only {}",
                            PROGRAM_KEYS.join(", ")
                        )
                    } else {
                        crate::yaml::unknown_setting(key, PROGRAM_KEYS)
                    };
                    diag.error(&m.path_of(key), message);
                }
                RawSettings {
                    pool: read_pool(&m, diag),
                    singleton: m
                        .get("singleton")
                        .and_then(|v| read_bool(v, &m.path_of("singleton"), diag)),
                    command_at: m.get("command").map(|_| m.path_of("command")),
                }
            }),
            other => {
                diag.error(
                    &path,
                    format!(
                        "expected the program's settings ({{command: [...], workers: 1}}) or \
                         null to remove it, got {}",
                        describe(other)
                    ),
                );
                continue;
            }
        };
        programs.push(RawProgram {
            path,
            name,
            settings,
        });
    }
    programs
}

/// A program of one instance after the merge: its settings and the place to blame for them.
pub(crate) struct Merged {
    /// Its name.
    pub(crate) name: ProgramName,
    /// The instance's settings over the defaults'.
    pub(crate) settings: RawSettings,
    /// Where it was declared (the instance's entry if it has one, else the defaults').
    pub(crate) path: String,
    /// In which file `path` is (a pillar's instances are in the pillar).
    pub(crate) file: std::path::PathBuf,
}

/// The programs of an instance: `defaults` (in `source`) merged with `own` (in `file`) by
/// name, in name order; `null` in `own` removes one of `defaults`.
pub(crate) fn merge(
    defaults: &[RawProgram],
    own: &[RawProgram],
    source: &Path,
    file: &Path,
    diag: &mut Diag,
) -> Vec<Merged> {
    let mut merged: BTreeMap<ProgramName, Merged> = BTreeMap::new();
    for p in defaults {
        let (Some(name), Some(settings)) = (&p.name, &p.settings) else {
            continue;
        };
        merged.insert(
            name.clone(),
            Merged {
                name: name.clone(),
                settings: settings.clone(),
                path: p.path.clone(),
                file: source.to_path_buf(),
            },
        );
    }
    for p in own {
        let Some(name) = &p.name else { continue };
        match &p.settings {
            None => {
                if merged.remove(name).is_none() {
                    let known: Vec<&str> = defaults
                        .iter()
                        .filter_map(|d| d.name.as_ref().map(ProgramName::as_str))
                        .collect();
                    let hint = match crate::yaml::closest(name.as_str(), &known) {
                        Some(k) => format!("; did you mean `{k}`?"),
                        None => String::new(),
                    };
                    diag.error_in(
                        file,
                        &p.path,
                        format!(
                            "null removes a program of defaults.programs, which has no \
                             `{name}`{hint}"
                        ),
                    );
                }
            }
            Some(settings) => {
                let settings = match merged.get(name) {
                    Some(d) => settings.over(&d.settings),
                    None => settings.clone(),
                };
                merged.insert(
                    name.clone(),
                    Merged {
                        name: name.clone(),
                        settings,
                        path: p.path.clone(),
                        file: file.to_path_buf(),
                    },
                );
            }
        }
    }
    merged.into_values().collect()
}

/// The finished program, inheriting what it does not set from `instance` (the instance's
/// merged settings), or `None` when it is invalid (reported here, or earlier). A missing
/// command is reported once per place (`reported`), not once per instance that inherits it.
pub(crate) fn build(
    program: &Merged,
    instance: &RawPool,
    vars: &Vars<'_>,
    base_env: BTreeMap<String, String>,
    dir: &Path,
    reported: &mut std::collections::BTreeSet<String>,
    diag: &mut Diag,
) -> Option<ProgramConfig> {
    let own = &program.settings;
    if own.pool.command.is_none() {
        if !own.pool.command_written && reported.insert(program.path.clone()) {
            diag.error_in(
                &program.file,
                &child(&program.path, "command"),
                format!(
                    "missing: program {} needs its own command (only web uses the top-level one)",
                    program.name
                ),
            );
        }
        return None;
    }
    let singleton = own.singleton.unwrap_or(false);
    if singleton && own.pool.workers.is_some_and(|n| n > 1) {
        if reported.insert(child(&program.path, "workers")) {
            diag.error_in(
                &program.file,
                &child(&program.path, "workers"),
                format!(
                    "program {} is a singleton: it runs exactly one process (leave workers out)",
                    program.name
                ),
            );
        }
        return None;
    }
    // The instance's settings, less what is the web pool's own: its command and workers (a
    // program runs one process unless it says otherwise).
    let inherited = RawPool {
        command: None,
        command_written: false,
        workers: Some(1),
        // Preloading is how web starts its workers, not something a program inherits.
        preload: None,
        ..instance.clone()
    };
    let pool = own.pool.over(&inherited).build(vars, base_env, dir)?;
    Some(ProgramConfig {
        name: program.name.clone(),
        singleton,
        pool,
    })
}
