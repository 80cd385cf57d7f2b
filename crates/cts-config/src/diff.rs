//! Reload as data: what changed between the running configuration and the new one, per
//! instance and program and per field, and the action each gets. The daemon acts on this plan;
//! `ctsctl reload --dry-run` prints it.

use crate::template::Vars;
use crate::{Config, InstanceConfig, LogSettings, PoolSpec, ProgramName};
use Action::{Rebind, Restart, Scale, Update};

/// What a reload does to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing changed.
    None,
    /// Settings that take effect without replacing workers (timeouts, restart policy, logs).
    Update,
    /// Only `workers` changed: add or drain workers, touch no other.
    Scale,
    /// What workers run with changed (command, env, cwd, user, name, prefix, ...): rolling restart.
    Restart,
    /// The port (or `ctsd.bind`) changed: bind the new socket, rolling restart onto it.
    Rebind,
    /// A new instance.
    Start,
    /// A removed instance: its workers are stopped.
    Stop,
}

impl Action {
    /// How `ctsctl reload` names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Update => "update",
            Action::Scale => "scale",
            Action::Restart => "rolling restart",
            Action::Rebind => "rebind",
            Action::Start => "start",
            Action::Stop => "stop",
        }
    }
}

/// One instance's web pool, or one of its programs, in a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The instance key.
    pub key: String,
    /// The program, or `None` for the web pool. A started or removed instance has no entries
    /// of its programs: they start and stop with it.
    pub program: Option<ProgramName>,
    /// What will be done.
    pub action: Action,
    /// The fields that differ (`port`, `workers`, `command`, `env`, ...).
    pub fields: Vec<&'static str>,
}

/// The result of [`diff`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// One entry per instance of the old or the new configuration, each followed by its
    /// programs' (when it exists in both): the new order, then the removed ones.
    pub changes: Vec<Change>,
    /// Changes of the daemon's own settings that a reload cannot apply (restart ctsd for them).
    pub not_applied: Vec<String>,
}

/// Compares the running configuration `old` with `new`.
pub fn diff(old: &Config, new: &Config) -> Plan {
    let mut plan = Plan::default();
    let rebind_all = old.daemon.bind != new.daemon.bind;
    for n in &new.instances {
        let Some(o) = old.instance(n.key.as_str()) else {
            plan.changes.push(Change::whole(n, Action::Start));
            continue;
        };
        let mut changed = instance_fields(o, n, Rebind);
        changed.extend(pool_fields((o, &o.pool), (n, &n.pool)));
        if rebind_all && !changed.iter().any(|(field, _)| *field == "port") {
            changed.insert(0, ("bind", Action::Rebind));
        }
        plan.changes.push(Change::of(n, None, changed));
        plan.changes.extend(program_changes(o, n));
    }
    for o in &old.instances {
        if new.instance(o.key.as_str()).is_none() {
            plan.changes.push(Change::whole(o, Action::Stop));
        }
    }
    let (od, nd) = (&old.daemon, &new.daemon);
    let mut daemon = |changed: bool, key: &str| {
        if changed {
            plan.not_applied
                .push(format!("ctsd.{key} changed: restart ctsd to apply it"));
        }
    };
    daemon(od.socket != nd.socket, "socket");
    daemon(od.socket_mode != nd.socket_mode, "socket_mode");
    daemon(od.socket_group != nd.socket_group, "socket_group");
    daemon(od.admins != nd.admins, "admins");
    daemon(od.log_dir != nd.log_dir, "log_dir");
    daemon(od.log_file != nd.log_file, "log_file");
    daemon(od.environment != nd.environment, "environment");
    plan
}

impl Change {
    /// A whole instance started or removed.
    fn whole(i: &InstanceConfig, action: Action) -> Change {
        Change {
            key: i.key.to_string(),
            program: None,
            action,
            fields: Vec::new(),
        }
    }

    /// The change of `i`'s web pool (`program` None) or of one of its programs: the strongest
    /// action of the fields that `changed`.
    fn of(
        i: &InstanceConfig,
        program: Option<&ProgramName>,
        changed: Vec<(&'static str, Action)>,
    ) -> Change {
        Change {
            key: i.key.to_string(),
            program: program.cloned(),
            action: strongest(changed.iter().map(|(_, action)| *action)),
            fields: changed.into_iter().map(|(field, _)| field).collect(),
        }
    }

    /// `jordan`, or `jordan:celery` for a program.
    pub fn name(&self) -> String {
        match &self.program {
            None => self.key.clone(),
            Some(p) => format!("{}:{p}", self.key),
        }
    }
}

/// The changes of the programs of an instance that is in both configurations: started, stopped
/// or changed, in the new order, then the removed ones.
fn program_changes(o: &InstanceConfig, n: &InstanceConfig) -> Vec<Change> {
    let mut changes = Vec::new();
    for np in &n.programs {
        let changed = match o.program(np.name.as_str()) {
            None => vec![("program", Action::Start)],
            Some(op) => {
                // A program has no socket: a new port only changes its `PORT`.
                let mut changed = instance_fields(o, n, Restart);
                if op.singleton != np.singleton {
                    changed.push(("singleton", Restart));
                }
                changed.extend(pool_fields((o, &op.pool), (n, &np.pool)));
                changed
            }
        };
        let mut change = Change::of(n, Some(&np.name), changed);
        if change.action == Action::Start {
            change.fields.clear();
        }
        changes.push(change);
    }
    for op in &o.programs {
        if n.program(op.name.as_str()).is_none() {
            changes.push(Change {
                key: o.key.to_string(),
                program: Some(op.name.clone()),
                action: Action::Stop,
                fields: Vec::new(),
            });
        }
    }
    changes
}

/// The instance's own fields that differ (`port` with `port_action`), each with its action.
fn instance_fields(
    o: &InstanceConfig,
    n: &InstanceConfig,
    port_action: Action,
) -> Vec<(&'static str, Action)> {
    let InstanceConfig {
        key: _, // instances are matched by key: it never differs here
        name,
        prefix,
        currency,
        port,
        pool: _,     // compared by `pool_fields`
        programs: _, // compared by `program_changes`
        release: _,  // only a deploy runs it: nothing to do on reload
    } = o;
    let checks: [(&'static str, Action, bool); 4] = [
        ("port", port_action, *port != n.port),
        // `name`, `prefix` and `currency` reach the workers through their environment.
        ("name", Restart, *name != n.name),
        ("prefix", Restart, *prefix != n.prefix),
        ("currency", Restart, *currency != n.currency),
    ];
    checks
        .into_iter()
        .filter(|(_, _, changed)| *changed)
        .map(|(field, action, _)| (field, action))
        .collect()
}
/// The settings of a pool (the web pool, or a program's) that differ, in a fixed order, each
/// with the action it needs; each pool with its instance, whose fields its environment mirrors.
///
/// The pool is destructured without `..`, as are [`InstanceConfig`] (`instance_fields`) and
/// [`LogSettings`]: a field added to them does not compile until it is given its place (and
/// action) here, rather than being silently ignored by a reload.
fn pool_fields(
    (oi, pool): (&InstanceConfig, &PoolSpec),
    (ni, np): (&InstanceConfig, &PoolSpec),
) -> Vec<(&'static str, Action)> {
    let PoolSpec {
        workers,
        command,
        cwd,
        env: _, // compared as `configured_env`, without what mirrors the instance's fields
        env_file,
        secrets,
        user,
        group,
        accounts,
        umask,
        limits,
        ready,
        stop_timeout,
        rolling_batch,
        preload,
        restart,
        logs,
    } = pool;
    // Where stderr goes is decided when a worker starts: new workers apply it. The other log
    // settings are applied to the running log in place.
    let LogSettings {
        stderr,
        sink,
        socket,
        rotate: _,
        max_size: _,
        keep: _,
        max_age: _,
        compress: _,
        format: _,
    } = logs;
    let checks: [(&'static str, Action, bool); 17] = [
        ("workers", Scale, *workers != np.workers),
        ("command", Restart, *command != np.command),
        ("cwd", Restart, *cwd != np.cwd),
        (
            "env",
            Restart,
            configured_env(oi, pool) != configured_env(ni, np),
        ),
        // A changed file is picked up by a reload: its path or its contents (named, never
        // shown: the plan says `env_file`).
        (
            "env_file",
            Restart,
            *env_file != np.env_file || *secrets != np.secrets,
        ),
        // The same name may now stand for other ids (or other groups).
        (
            "user",
            Restart,
            *user != np.user || *accounts != np.accounts,
        ),
        ("group", Restart, *group != np.group),
        ("umask", Restart, *umask != np.umask),
        ("limits", Restart, *limits != np.limits),
        ("ready", Update, *ready != np.ready),
        ("stop_timeout", Update, *stop_timeout != np.stop_timeout),
        ("restart", Update, *restart != np.restart),
        (
            "logs",
            Update,
            LogSettings {
                stderr: np.logs.stderr,
                sink: np.logs.sink,
                socket: np.logs.socket.clone(),
                ..logs.clone()
            } != np.logs,
        ),
        ("logs.stderr", Restart, *stderr != np.logs.stderr),
        // Where output goes is decided when a worker starts, as for stderr.
        (
            "logs.sink",
            Restart,
            *sink != np.logs.sink || *socket != np.logs.socket,
        ),
        ("rolling", Update, *rolling_batch != np.rolling_batch),
        ("preload", Restart, *preload != np.preload),
    ];
    checks
        .into_iter()
        .filter(|(_, _, changed)| *changed)
        .map(|(field, action, _)| (field, action))
        .collect()
}

/// The worker environment without the contract variables that merely mirror the instance's
/// own fields (those show up as `port`, `prefix`, ... already).
fn configured_env<'a>(i: &InstanceConfig, pool: &'a PoolSpec) -> Vec<(&'a str, &'a str)> {
    let derived = crate::validate::instance_env(&Vars::of(i));
    pool.env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .filter(|(k, v)| !derived.iter().any(|(dk, dv)| dk == k && dv == v))
        .collect()
}

/// The strongest of the actions the changed fields need; [`Action::None`] for none.
fn strongest(actions: impl Iterator<Item = Action>) -> Action {
    let rank = |a: Action| match a {
        Action::None => 0,
        Action::Update => 1,
        Action::Scale => 2,
        Action::Restart => 3,
        Action::Rebind => 4,
        Action::Start | Action::Stop => 5,
    };
    actions.max_by_key(|a| rank(*a)).unwrap_or(Action::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_str, LoadOptions};
    use std::path::Path;

    fn cfg(instances: &str) -> Config {
        let text = format!("defaults: {{command: [w]}}\ninstances:\n{instances}");
        parse_str(
            &text,
            Path::new("/etc/cts/ctsd.yaml"),
            &LoadOptions::default(),
        )
        .expect("valid")
    }

    #[test]
    fn each_kind_of_change_gets_its_action() {
        let old = cfg(
            "  a: {currency: AAA, prefix: /A, port: 8001}\n  b: {currency: BBB, prefix: /B, port: 8002}\n  \
             c: {currency: CCC, prefix: /C, port: 8003}\n  d: {currency: DDD, prefix: /D, port: 8004}\n  \
             e: {currency: EEE, prefix: /E, port: 8005}\n  f: {currency: FFF, prefix: /F, port: 8006}\n",
        );
        let new = cfg(
            "  a: {currency: AAA, prefix: /A, port: 8001}\n  b: {currency: BBB, prefix: /B, port: 8002, workers: 5}\n  \
             c: {currency: CCC, prefix: /C, port: 8003, command: [w, --x]}\n  d: {currency: DDD, prefix: /D, port: 9004}\n  \
             e: {currency: EEE, prefix: /E, port: 8005, stop_timeout: 5s}\n  g: {currency: GGG, prefix: /G, port: 8007}\n",
        );
        let plan = diff(&old, &new);
        let got: Vec<(&str, Action, Vec<&str>)> = plan
            .changes
            .iter()
            .map(|c| (c.key.as_str(), c.action, c.fields.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", Action::None, vec![]),
                ("b", Action::Scale, vec!["workers"]),
                ("c", Action::Restart, vec!["command"]),
                ("d", Action::Rebind, vec!["port"]),
                ("e", Action::Update, vec!["stop_timeout"]),
                ("g", Action::Start, vec![]),
                ("f", Action::Stop, vec![]),
            ]
        );
        assert!(plan.not_applied.is_empty());
    }

    #[test]
    fn log_settings_are_updated_in_place_but_stderr_routing_rolls_the_workers() {
        let old = cfg("  a: {currency: AAA, prefix: /A, port: 8001}\n");
        let new = cfg("  a: {currency: AAA, prefix: /A, port: 8001, logs: {keep: 3}}\n");
        let plan = diff(&old, &new);
        assert_eq!(plan.changes[0].action, Action::Update);
        assert_eq!(plan.changes[0].fields, ["logs"]);
        assert!(plan.not_applied.is_empty());
        let new = cfg("  a: {currency: AAA, prefix: /A, port: 8001, logs: {stderr: separate}}\n");
        let plan = diff(&old, &new);
        assert_eq!(plan.changes[0].action, Action::Restart);
        assert_eq!(plan.changes[0].fields, ["logs.stderr"]);
    }

    #[test]
    fn env_changes_restart_and_workers_with_command_restart_too() {
        let old = cfg("  a: {currency: AAA, prefix: /A, port: 8001}\n");
        let new = cfg("  a: {currency: AAA, prefix: /A, port: 8001, workers: 3, env: {X: y}}\n");
        let c = &diff(&old, &new).changes[0];
        assert_eq!(c.action, Action::Restart);
        assert_eq!(c.fields, ["workers", "env"]);
    }
}
