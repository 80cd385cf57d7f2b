//! Reload as data: what changed between the running configuration and the new one, per
//! instance and per field, and the action each instance gets. The daemon acts on this plan;
//! `ctsctl reload --dry-run` prints it.

use crate::template::Vars;
use crate::{Config, InstanceConfig, LogSettings, PoolSpec};

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

/// One instance in a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The instance key.
    pub key: String,
    /// What will be done.
    pub action: Action,
    /// The fields that differ (`port`, `workers`, `command`, `env`, ...).
    pub fields: Vec<&'static str>,
}

/// The result of [`diff`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// One entry per instance of the old or the new configuration: the new order, then the
    /// removed ones.
    pub changes: Vec<Change>,
    /// Changes of the daemon's own settings that a reload cannot apply (restart ctsd for them).
    pub not_applied: Vec<String>,
}

/// Compares the running configuration `old` with `new`.
pub fn diff(old: &Config, new: &Config) -> Plan {
    let mut plan = Plan::default();
    let rebind_all = old.daemon.bind != new.daemon.bind;
    for n in &new.instances {
        let change = match old.instance(n.key.as_str()) {
            None => Change {
                key: n.key.to_string(),
                action: Action::Start,
                fields: Vec::new(),
            },
            Some(o) => {
                let mut changed = changed_fields(o, n);
                if rebind_all && !changed.iter().any(|(field, _)| *field == "port") {
                    changed.insert(0, ("bind", Action::Rebind));
                }
                Change {
                    key: n.key.to_string(),
                    action: strongest(changed.iter().map(|(_, action)| *action)),
                    fields: changed.into_iter().map(|(field, _)| field).collect(),
                }
            }
        };
        plan.changes.push(change);
    }
    for o in &old.instances {
        if new.instance(o.key.as_str()).is_none() {
            plan.changes.push(Change {
                key: o.key.to_string(),
                action: Action::Stop,
                fields: Vec::new(),
            });
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

/// The fields of the instance that differ, in a fixed order, each with the action it needs.
///
/// Both the instance and its pool are destructured without `..`: a field added to
/// [`InstanceConfig`], [`PoolSpec`] or [`LogSettings`] does not compile until it is given
/// its place (and action) here, rather than being silently ignored by a reload.
fn changed_fields(o: &InstanceConfig, n: &InstanceConfig) -> Vec<(&'static str, Action)> {
    use Action::{Rebind, Restart, Scale, Update};
    let InstanceConfig {
        key: _, // instances are matched by key: it never differs here
        name,
        prefix,
        currency,
        port,
        pool,
    } = o;
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
    let np = &n.pool;
    let checks: [(&'static str, Action, bool); 20] = [
        ("port", Rebind, *port != n.port),
        // `name`, `prefix` and `currency` reach the workers through their environment.
        ("name", Restart, *name != n.name),
        ("prefix", Restart, *prefix != n.prefix),
        ("currency", Restart, *currency != n.currency),
        ("workers", Scale, *workers != np.workers),
        ("command", Restart, *command != np.command),
        ("cwd", Restart, *cwd != np.cwd),
        ("env", Restart, configured_env(o) != configured_env(n)),
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
    ];
    checks
        .into_iter()
        .filter(|(_, _, changed)| *changed)
        .map(|(field, action, _)| (field, action))
        .collect()
}

/// The worker environment without the contract variables that merely mirror the instance's
/// own fields (those show up as `port`, `prefix`, ... already).
fn configured_env(i: &InstanceConfig) -> Vec<(&str, &str)> {
    let derived = crate::validate::instance_env(&Vars::of(i));
    i.pool
        .env
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
