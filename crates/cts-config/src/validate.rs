//! From [`RawConfig`] to [`Config`]: the checks that relate settings to each
//! other, the built-in defaults, the dev instance `local`, and the per
//! instance merge and rendering.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::error::{child, Diag};
use crate::model::{Config, DaemonSettings, Environment, InstanceConfig};
use crate::names::{Currency, InstanceKey, Prefix};
use crate::pool::{restart_path, RawPool};
use crate::programs;
use crate::raw::{instance_path, RawConfig, RawInstance};
use crate::template::Vars;

/// `ctsd.log_dir` when unset.
const DEFAULT_LOG_DIR: &str = "/var/log/ctsd";
/// `ctsd.socket_mode` when unset.
const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// The dev instance's port, where `runserver` listens too.
const LOCAL_PORT: u16 = 8000;

/// Builds the validated configuration, or records why it cannot. `source`
/// is the config file, `dir` its directory.
pub(crate) fn build(
    raw: RawConfig,
    environment_override: Option<Environment>,
    source: &Path,
    dir: &Path,
    diag: &mut Diag,
) -> Option<Config> {
    let environment = environment_override
        .or(raw.daemon.environment)
        .unwrap_or_default();
    let daemon = DaemonSettings {
        environment,
        socket: raw.daemon.socket,
        socket_mode: raw.daemon.socket_mode.unwrap_or(DEFAULT_SOCKET_MODE),
        socket_group: raw.daemon.socket_group,
        admins: raw.daemon.admins,
        log_dir: raw
            .daemon
            .log_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR)),
        log_file: raw.daemon.log_file,
        bind: raw.daemon.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };

    let mut instances = raw.instances;
    if instances.is_empty() {
        if environment == Environment::Dev {
            instances.push(local_instance());
        } else if !raw.instances_unreadable {
            diag.error(
                "instances",
                format!(
                    "no instances declared: list them under `instances:` or point \
                     `instances_file:` at the pillar (only the dev environment runs the \
                     built-in instance `local`, and this is {environment})"
                ),
            );
        }
    }
    let file = raw.instances_file.as_path();

    check_backoff(&raw.defaults, &raw.defaults, "defaults", source, diag);
    check_missing_command(&raw.defaults, &instances, file, source, diag);
    check_ports(&instances, file, diag);
    check_prefixes(&instances, file, diag);

    let mut built = Vec::with_capacity(instances.len());
    let mut reported = std::collections::BTreeSet::new();
    for instance in &instances {
        let pool = instance.pool.over(&raw.defaults);
        if instance.pool.backoff_initial.is_some() || instance.pool.backoff_max.is_some() {
            check_backoff(&instance.pool, &pool, &instance.path, file, diag);
        }
        let programs = programs::merge(
            &raw.default_programs,
            &instance.programs,
            source,
            file,
            diag,
        );
        let release = instance
            .release
            .as_ref()
            .or(raw.default_release.as_ref())
            .map_or(&[][..], Vec::as_slice);
        let parts = Parts {
            pool: &pool,
            programs: &programs,
            release,
            environment,
            dir,
        };
        built.push(build_instance(instance, &parts, &mut reported, diag));
    }
    if diag.has_errors() {
        return None;
    }
    let instances = built.into_iter().collect::<Option<Vec<_>>>()?;
    // `deploy.once` runs with the first instance's environment: its placeholders too.
    let deploy_once = match instances.first() {
        Some(first) => crate::jobs::render(&raw.deploy_once, &Vars::of(first)),
        None => Vec::new(),
    };
    Some(Config {
        source: source.to_path_buf(),
        daemon,
        instances,
        deploy: crate::DeploySettings {
            once: deploy_once,
            job_timeout: raw.job_timeout,
        },
    })
}

/// `local`: what `--env dev` runs when no instances are declared.
fn local_instance() -> RawInstance {
    RawInstance {
        path: "instances.local".to_owned(),
        written_key: "local".to_owned(),
        key: InstanceKey::new("local").ok(),
        name: Some("Local".to_owned()),
        prefix: Some(Prefix::NONE),
        currency: Some(Currency::NONE),
        port: Some(LOCAL_PORT),
        pool: RawPool::default(),
        programs: Vec::new(),
        release: None,
    }
}

/// What an instance is built from besides its own entry.
struct Parts<'a> {
    /// Its settings merged over `defaults:`.
    pool: &'a RawPool,
    /// Its programs merged with `defaults.programs`.
    programs: &'a [programs::Merged],
    /// Its release jobs (its own, or the defaults').
    release: &'a [Vec<crate::template::Template>],
    environment: Environment,
    /// The configuration file's directory.
    dir: &'a Path,
}

/// One finished instance, or `None` if any part of it was invalid (and
/// therefore reported).
fn build_instance(
    instance: &RawInstance,
    parts: &Parts<'_>,
    reported: &mut std::collections::BTreeSet<String>,
    diag: &mut Diag,
) -> Option<InstanceConfig> {
    let key = instance.key.clone()?;
    let prefix = instance.prefix.clone()?;
    let currency = instance.currency?;
    let port = instance.port?;
    let name = instance.name.clone().unwrap_or_else(|| key.to_string());
    let vars = Vars {
        instance: key.as_str(),
        name: &name,
        prefix: prefix.as_str(),
        currency: currency.as_str(),
        port,
    };
    let env = contract_env(&vars, parts.environment);
    let programs: Vec<_> = parts
        .programs
        .iter()
        .map(|p| programs::build(p, parts.pool, &vars, env.clone(), parts.dir, reported, diag))
        .collect();
    let pool = parts.pool.build(&vars, env, parts.dir)?;
    let release = crate::jobs::render(parts.release, &vars);
    Some(InstanceConfig {
        key,
        name,
        prefix,
        currency,
        port,
        pool,
        programs: programs.into_iter().collect::<Option<_>>()?,
        release,
    })
}

/// The contract variables that only mirror the instance's own fields (key, name, prefix,
/// currency, port). The reload diff leaves them out of `env`: a change of theirs shows as the
/// change of the field itself.
pub(crate) fn instance_env(vars: &Vars<'_>) -> [(&'static str, String); 6] {
    [
        ("CTS_INSTANCE", vars.instance.to_owned()),
        ("CTS_INSTANCE_NAME", vars.name.to_owned()),
        ("CTS_PREFIX", vars.prefix.to_owned()),
        ("CTS_CURRENCY", vars.currency.to_owned()),
        ("PORT", vars.port.to_string()),
        ("SCRIPT_NAME", vars.prefix.to_owned()),
    ]
}

/// Every contract variable of an instance, which its configured `env` is rendered over:
/// [`instance_env`], `CTS_ENVIRONMENT` and `DJANGO_SETTINGS_MODULE=cts.settings.<key>`.
fn contract_env(vars: &Vars<'_>, environment: Environment) -> BTreeMap<String, String> {
    let settings = format!("cts.settings.{}", vars.instance);
    instance_env(vars)
        .into_iter()
        .chain([
            ("CTS_ENVIRONMENT", environment.to_string()),
            ("DJANGO_SETTINGS_MODULE", settings),
        ])
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// `backoff_initial` must not exceed `backoff_max`. `written` holds the
/// settings as written at `parent` (to pick the key to blame), `merged` the
/// effective ones.
fn check_backoff(written: &RawPool, merged: &RawPool, parent: &str, file: &Path, diag: &mut Diag) {
    let policy = merged.restart_policy();
    if policy.backoff_initial <= policy.backoff_max {
        return;
    }
    let key = if written.backoff_initial.is_some() {
        "backoff_initial"
    } else {
        "backoff_max"
    };
    diag.error_in(
        file,
        &restart_path(parent, key),
        format!(
            "backoff_initial ({:?}) is longer than backoff_max ({:?})",
            policy.backoff_initial, policy.backoff_max
        ),
    );
}

/// Every instance needs a command, from `defaults` or its own. When none
/// has one, that is one mistake (a missing `defaults.command`), not one per
/// instance.
fn check_missing_command(
    defaults: &RawPool,
    instances: &[RawInstance],
    file: &Path,
    source: &Path,
    diag: &mut Diag,
) {
    if defaults.command_written {
        return;
    }
    let lacking: Vec<&RawInstance> = instances
        .iter()
        .filter(|i| !i.pool.command_written)
        .collect();
    if lacking.is_empty() {
        return;
    }
    if lacking.len() == instances.len() {
        diag.error_in(
            source,
            "defaults.command",
            "missing: give the workers' argv here (or per instance), \
             e.g. [gunicorn, --workers, \"1\", \"cts.wsgi:application\"]",
        );
        return;
    }
    for instance in lacking {
        diag.error_in(
            file,
            &instance_path(instance, "command"),
            "missing: this instance has no command and defaults.command is not set",
        );
    }
}

/// Ports are unique; a clash is reported on the later instance.
fn check_ports(instances: &[RawInstance], file: &Path, diag: &mut Diag) {
    for (i, instance) in instances.iter().enumerate() {
        let Some(port) = instance.port else { continue };
        if let Some(first) = instances[..i].iter().find(|other| other.port == Some(port)) {
            diag.error_in(
                file,
                &instance_path(instance, "port"),
                format!(
                    "port {port} is already used by instance {}",
                    first.written_key
                ),
            );
        }
    }
}

/// Prefixes route requests, so no request path may match two of them.
fn check_prefixes(instances: &[RawInstance], file: &Path, diag: &mut Diag) {
    for (i, instance) in instances.iter().enumerate() {
        let Some(prefix) = &instance.prefix else {
            continue;
        };
        let clash = instances[..i].iter().find_map(|other| {
            let theirs = other.prefix.as_ref()?;
            prefix.overlaps(theirs).then_some((other, theirs))
        });
        let Some((other, theirs)) = clash else {
            continue;
        };
        let message = if prefix.as_str().eq_ignore_ascii_case(theirs.as_str()) {
            if prefix.is_empty() {
                format!(
                    "no prefix, like instance {}: only one instance can be served at the root",
                    other.written_key
                )
            } else {
                format!(
                    "prefix {prefix} is already used by instance {}",
                    other.written_key
                )
            }
        } else if prefix.is_empty() {
            format!(
                "no prefix overlaps prefix {theirs} of instance {}: an instance at the root \
                 must be the only one",
                other.written_key
            )
        } else if theirs.is_empty() {
            format!(
                "prefix {prefix} overlaps instance {}, which has no prefix: an instance at the \
                 root must be the only one",
                other.written_key
            )
        } else {
            format!(
                "prefix {prefix} overlaps prefix {theirs} of instance {}",
                other.written_key
            )
        };
        diag.error_in(file, &child(&instance.path, "prefix"), message);
    }
}
