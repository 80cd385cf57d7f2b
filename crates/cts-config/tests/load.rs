//! Black-box tests of `cts_config::load` / `parse_str` through the public API.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cts_config::{
    load, parse_str, ByteSize, Config, ConfigErrors, Environment, LoadOptions, Rotate,
    DEFAULT_SOCKET,
};

/// The "Configuration" example of the design, plus the settings the brief adds.
const CONTRACT: &str = r#"
ctsd:
  environment: production
  socket: /run/ctsd/ctsd.sock
  socket_mode: "0660"
  socket_group: cts
  admins: {users: [root], groups: [cts-admin]}
  log_dir: /var/www/cts/log
  log_file: /var/log/ctsd/ctsd.log
  bind: 127.0.0.1
defaults:
  workers: 4
  command: [gunicorn, --workers, "1", "cts.wsgi:application"]
  cwd: /var/www/cts/current
  env: {DJANGO_SETTINGS_MODULE: "cts.settings.{instance}"}
  user: cts
  group: cts
  ready: {notify: true, after: 2s, timeout: 60s}
  stop_timeout: 30s
  restart: {backoff_initial: 100ms, backoff_max: 30s, reset_after: 10s, crash_loop: {restarts: 5, within: 60s}}
  logs: {rotate: daily, max_size: 100MB, keep: 14}
instances:
  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001}
  iraq:   {name: Iraq,   prefix: /IQ, currency: IQD, port: 8002, workers: 8}
  jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003}
"#;

/// The seed's mapping, exactly as the deploy tooling keeps it.
const SEED_INSTANCES: &str = "\
instances:
  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001}
  iraq:   {name: Iraq,   prefix: /IQ, currency: IQD, port: 8002}
  jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003}
";

const SOURCE: &str = "/etc/ctsd/ctsd.yaml";

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_str(text, Path::new(SOURCE), &LoadOptions::default())
}

fn parse_ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

fn parse_err(text: &str) -> ConfigErrors {
    match parse(text) {
        Ok(config) => panic!("accepted: {config:#?}"),
        Err(errors) => errors,
    }
}

fn keys(errors: &ConfigErrors) -> BTreeSet<String> {
    errors.iter().map(|e| e.key.clone()).collect()
}

fn message<'a>(errors: &'a ConfigErrors, key: &str) -> &'a str {
    match errors.iter().find(|e| e.key == key) {
        Some(error) => &error.message,
        None => panic!("no error at {key}:\n{errors}"),
    }
}

fn with_command(rest: &str) -> String {
    format!("defaults:\n  command: [gunicorn, app]\n{rest}")
}

#[test]
fn contract_example() {
    let config = parse_ok(CONTRACT);
    assert_eq!(config.source, PathBuf::from(SOURCE));

    let d = &config.daemon;
    assert_eq!(d.environment, Environment::Production);
    assert_eq!(d.socket, Some(PathBuf::from("/run/ctsd/ctsd.sock")));
    assert_eq!(d.socket_mode, 0o660);
    assert_eq!(d.socket_group.as_deref(), Some("cts"));
    assert_eq!(d.admins.users, ["root"]);
    assert_eq!(d.admins.groups, ["cts-admin"]);
    assert_eq!(d.log_dir, PathBuf::from("/var/www/cts/log"));
    assert_eq!(d.log_file, Some(PathBuf::from("/var/log/ctsd/ctsd.log")));
    assert_eq!(d.bind, "127.0.0.1".parse::<IpAddr>().unwrap());

    let keys: Vec<&str> = config.instances.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["turkey", "iraq", "jordan"]);

    let jordan = config.instance("jordan").unwrap();
    assert_eq!(jordan.name, "Jordan");
    assert_eq!(jordan.prefix.as_str(), "/JO");
    assert_eq!(jordan.currency.as_str(), "JOD");
    assert_eq!(jordan.port, 8003);
    let pool = &jordan.pool;
    assert_eq!(pool.workers, 4);
    assert_eq!(
        pool.command,
        ["gunicorn", "--workers", "1", "cts.wsgi:application"]
    );
    assert_eq!(pool.cwd, Some(PathBuf::from("/var/www/cts/current")));
    assert_eq!(pool.user.as_deref(), Some("cts"));
    assert_eq!(pool.group.as_deref(), Some("cts"));
    assert!(pool.ready.notify);
    assert_eq!(pool.ready.after, Duration::from_secs(2));
    assert_eq!(pool.ready.timeout, Duration::from_secs(60));
    assert_eq!(pool.stop_timeout, Duration::from_secs(30));
    assert_eq!(pool.restart.backoff_initial, Duration::from_millis(100));
    assert_eq!(pool.restart.backoff_max, Duration::from_secs(30));
    assert_eq!(pool.restart.reset_after, Duration::from_secs(10));
    assert_eq!(pool.restart.crash_loop.restarts, 5);
    assert_eq!(pool.restart.crash_loop.within, Duration::from_secs(60));
    assert_eq!(pool.logs.rotate, Rotate::Daily);
    assert_eq!(pool.logs.max_size, ByteSize(100 * 1024 * 1024));
    assert_eq!(pool.logs.keep, 14);

    let env: Vec<(&str, &str)> = pool
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("CTS_CURRENCY", "JOD"),
            ("CTS_ENVIRONMENT", "production"),
            ("CTS_INSTANCE", "jordan"),
            ("CTS_INSTANCE_NAME", "Jordan"),
            ("CTS_PREFIX", "/JO"),
            ("DJANGO_SETTINGS_MODULE", "cts.settings.jordan"),
            ("PORT", "8003"),
            ("SCRIPT_NAME", "/JO"),
        ]
    );

    assert_eq!(config.instance("iraq").unwrap().pool.workers, 8);
    assert_eq!(config.instance("turkey").unwrap().pool.workers, 4);
    assert!(config.instance("syria").is_none());
    assert_eq!(
        config.summary(),
        "3 instances (turkey :8001 /TR, iraq :8002 /IQ, jordan :8003 /JO), 16 workers, \
         control socket /run/ctsd/ctsd.sock, logs in /var/www/cts/log"
    );
}

#[test]
fn seed_only_file_gets_every_default() {
    let config = parse_ok(&with_command(SEED_INSTANCES));
    let d = &config.daemon;
    assert_eq!(d.environment, Environment::Production);
    assert_eq!(d.socket, None);
    assert_eq!(d.socket_mode, 0o660);
    assert_eq!(d.socket_group, None);
    assert!(d.admins.users.is_empty() && d.admins.groups.is_empty());
    assert_eq!(d.log_dir, PathBuf::from("/var/log/ctsd"));
    assert_eq!(d.log_file, None);
    assert_eq!(d.bind, "127.0.0.1".parse::<IpAddr>().unwrap());

    let iraq = config.instance("iraq").unwrap();
    assert_eq!(iraq.prefix.to_string(), "/IQ");
    assert_eq!(iraq.currency.to_string(), "IQD");
    let pool = &iraq.pool;
    assert_eq!(pool.workers, 2);
    assert_eq!(pool.command, ["gunicorn", "app"]);
    assert_eq!(pool.cwd, None);
    assert_eq!((pool.user.clone(), pool.group.clone()), (None, None));
    assert!(!pool.ready.notify);
    assert_eq!(pool.ready.after, Duration::from_secs(1));
    assert_eq!(pool.ready.timeout, Duration::from_secs(60));
    assert_eq!(pool.stop_timeout, Duration::from_secs(30));
    assert_eq!(pool.restart.backoff_initial, Duration::from_millis(100));
    assert_eq!(pool.restart.backoff_max, Duration::from_secs(30));
    assert_eq!(pool.restart.reset_after, Duration::from_secs(10));
    assert_eq!(pool.restart.crash_loop.restarts, 5);
    assert_eq!(pool.restart.crash_loop.within, Duration::from_secs(60));
    assert_eq!(pool.logs.rotate, Rotate::Daily);
    assert_eq!(pool.logs.max_size.to_string(), "100MB");
    assert_eq!(pool.logs.keep, 14);
    assert_eq!(pool.env["DJANGO_SETTINGS_MODULE"], "cts.settings.iraq");
    assert_eq!(pool.env["SCRIPT_NAME"], "/IQ");
    assert_eq!(pool.env.len(), 8);
    assert_eq!(
        config.summary(),
        format!(
            "3 instances (turkey :8001 /TR, iraq :8002 /IQ, jordan :8003 /JO), 6 workers, \
             control socket {DEFAULT_SOCKET}, logs in /var/log/ctsd"
        )
    );
}

#[test]
fn overrides_merge_over_defaults() {
    let config = parse_ok(
        r#"
defaults:
  workers: 3
  command: [run, "{instance}", "--port={port}", "{{literal}}"]
  cwd: "srv/{instance}"
  env: {A: "{name}", B: b, N: 5, T: true}
  ready: {notify: true, after: 3s}
  restart: {backoff_max: 10s, crash_loop: {restarts: 9, within: 2m}}
  logs: {rotate: hourly, keep: 3}
instances:
  jordan:
    name: Jordan
    prefix: /JO
    currency: JOD
    port: 8003
    command: [other, "{currency}{prefix}"]
    env: {B: override, DJANGO_SETTINGS_MODULE: mine, C: "{{x}}"}
    ready: {timeout: 5s}
    restart: {crash_loop: {within: 30s}}
    logs: {max_size: 1GB}
    user: web
  iraq: {currency: IQD, port: 8002, prefix: /IQ}
"#,
    );
    let jordan = &config.instance("jordan").unwrap().pool;
    assert_eq!(jordan.workers, 3);
    assert_eq!(jordan.command, ["other", "JOD/JO"]);
    assert_eq!(jordan.cwd, Some(PathBuf::from("/etc/ctsd/srv/jordan")));
    assert_eq!(jordan.env["A"], "Jordan");
    assert_eq!(jordan.env["B"], "override");
    assert_eq!(jordan.env["C"], "{x}");
    assert_eq!(jordan.env["N"], "5");
    assert_eq!(jordan.env["T"], "true");
    assert_eq!(jordan.env["DJANGO_SETTINGS_MODULE"], "mine");
    assert_eq!(jordan.env["CTS_INSTANCE"], "jordan");
    assert!(jordan.ready.notify);
    assert_eq!(jordan.ready.after, Duration::from_secs(3));
    assert_eq!(jordan.ready.timeout, Duration::from_secs(5));
    assert_eq!(jordan.restart.backoff_max, Duration::from_secs(10));
    assert_eq!(jordan.restart.crash_loop.restarts, 9);
    assert_eq!(jordan.restart.crash_loop.within, Duration::from_secs(30));
    assert_eq!(jordan.logs.rotate, Rotate::Hourly);
    assert_eq!(jordan.logs.keep, 3);
    assert_eq!(jordan.logs.max_size, ByteSize(1 << 30));
    assert_eq!(jordan.user.as_deref(), Some("web"));

    let iraq = config.instance("iraq").unwrap();
    assert_eq!(iraq.name, "iraq");
    assert_eq!(
        iraq.pool.command,
        ["run", "iraq", "--port=8002", "{literal}"]
    );
    assert_eq!(iraq.pool.env["A"], "iraq");
    assert_eq!(iraq.pool.env["B"], "b");
    assert_eq!(iraq.pool.env["DJANGO_SETTINGS_MODULE"], "cts.settings.iraq");
    assert_eq!(iraq.pool.ready.timeout, Duration::from_secs(60));
    assert_eq!(
        iraq.pool.restart.crash_loop.within,
        Duration::from_secs(120)
    );
    assert_eq!(iraq.pool.logs.max_size, ByteSize(100 << 20));
    assert_eq!(iraq.pool.user, None);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let config = parse_ok(&with_command(
        "ctsd: {socket: run/ctsd.sock, log_dir: log, log_file: log/ctsd.log}\n\
         instances: {jordan: {currency: JOD, port: 8003, cwd: app}}\n",
    ));
    assert_eq!(
        config.daemon.socket,
        Some(PathBuf::from("/etc/ctsd/run/ctsd.sock"))
    );
    assert_eq!(config.daemon.log_dir, PathBuf::from("/etc/ctsd/log"));
    assert_eq!(
        config.daemon.log_file,
        Some(PathBuf::from("/etc/ctsd/log/ctsd.log"))
    );
    let jordan = config.instance("jordan").unwrap();
    assert_eq!(jordan.pool.cwd, Some(PathBuf::from("/etc/ctsd/app")));
    assert_eq!(jordan.prefix.as_str(), "");
    assert_eq!(
        config.summary(),
        "1 instance (jordan :8003), 2 workers, control socket /etc/ctsd/run/ctsd.sock, \
         logs in /etc/ctsd/log"
    );
}

#[test]
fn load_reads_the_file_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctsd.yaml");
    fs::write(&path, with_command(SEED_INSTANCES)).unwrap();
    let config = load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(config.source, path);
    assert_eq!(config.instances.len(), 3);

    let missing = dir.path().join("nope.yaml");
    let errors = load(&missing, &LoadOptions::default()).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].file, missing);
    assert_eq!(errors.0[0].key, "");
    assert!(
        errors.0[0].message.contains("No such file or directory"),
        "{errors}"
    );
}

fn write_pillar(dir: &Path, text: &str) {
    fs::create_dir_all(dir.join("conf/pillar")).unwrap();
    fs::write(dir.join("conf/pillar/project.sls"), text).unwrap();
}

#[test]
fn instances_file_reads_the_pillar() {
    let dir = tempfile::tempdir().unwrap();
    write_pillar(
        dir.path(),
        &format!(
            "project_name: cts\ndomain: cts.example.org\n{SEED_INSTANCES}secrets: {{db: x}}\n"
        ),
    );
    let source = dir.path().join("ctsd.yaml");
    let text = "defaults: {command: [gunicorn]}\ninstances_file: conf/pillar/project.sls\n";
    let config = parse_str(text, &source, &LoadOptions::default()).unwrap();
    let keys: Vec<String> = config.instances.iter().map(|i| i.key.to_string()).collect();
    assert_eq!(keys, ["turkey", "iraq", "jordan"]);
    assert_eq!(config.instance("iraq").unwrap().port, 8002);
}

#[test]
fn a_pillar_may_carry_other_tools_keys_but_not_near_misses_of_ctsds() {
    let dir = tempfile::tempdir().unwrap();
    write_pillar(
        dir.path(),
        "instances:\n  jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003, db_name: cts_jo, domain: jo.example.org}\n",
    );
    let source = dir.path().join("ctsd.yaml");
    let text = "defaults: {command: [gunicorn]}\ninstances_file: conf/pillar/project.sls\n";
    let config = parse_str(text, &source, &LoadOptions::default()).unwrap();
    assert_eq!(config.instance("jordan").unwrap().port, 8003);

    write_pillar(
        dir.path(),
        "instances:\n  jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003, wrokers: 3}\n",
    );
    let errors = parse_str(text, &source, &LoadOptions::default()).unwrap_err();
    assert!(
        message(&errors, "instances.jordan.wrokers").contains("did you mean `workers`"),
        "{errors}"
    );
    // In ctsd's own file every key must be ctsd's.
    let errors = parse_err(&with_command(
        "instances:\n  jordan: {currency: JOD, port: 8003, prefix: /JO, db_name: x}\n",
    ));
    assert!(
        keys(&errors).contains("instances.jordan.db_name"),
        "{errors}"
    );
}

#[test]
fn pillar_problems_name_the_pillar() {
    let dir = tempfile::tempdir().unwrap();
    write_pillar(
        dir.path(),
        "instances:\n  turkey: {currency: TRY, port: 8001, prefix: /TR}\n  \
         jordan: {currency: JOD, port: 8001, prefix: /JO, wokers: 2}\n",
    );
    let source = dir.path().join("ctsd.yaml");
    let text = "defaults: {command: [gunicorn]}\ninstances_file: conf/pillar/project.sls\n";
    let errors = parse_str(text, &source, &LoadOptions::default()).unwrap_err();
    let pillar = dir.path().join("conf/pillar/project.sls");
    assert_eq!(
        keys(&errors),
        BTreeSet::from([
            "instances.jordan.port".to_owned(),
            "instances.jordan.wokers".to_owned()
        ])
    );
    assert!(errors.iter().all(|e| e.file == pillar), "{errors}");
    assert_eq!(
        errors.0[1].to_string(),
        format!(
            "{}: instances.jordan.port: port 8001 is already used by instance turkey",
            pillar.display()
        )
    );
}

#[test]
fn jinja_in_the_pillar_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_pillar(
        dir.path(),
        "{% set domain = 'cts.example.org' %}\ninstances:\n  jordan: {currency: JOD, port: 8003}\n",
    );
    let source = dir.path().join("ctsd.yaml");
    let text = "defaults: {command: [gunicorn]}\ninstances_file: conf/pillar/project.sls\n";
    let errors = parse_str(text, &source, &LoadOptions::default()).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    let error = &errors.0[0];
    assert_eq!(error.file, dir.path().join("conf/pillar/project.sls"));
    assert_eq!(
        error.message,
        "line 1 contains Jinja markup; render it first (salt-call pillar.items) or list the \
         instances inline"
    );

    write_pillar(
        dir.path(),
        "instances:\n  jordan: {currency: JOD, port: 8003}\n  iraq: {{ iraq | yaml }}\n",
    );
    let errors = parse_str(text, &source, &LoadOptions::default()).unwrap_err();
    assert!(
        errors.0[0].message.starts_with("line 3 contains Jinja"),
        "{errors}"
    );
}

#[test]
fn instances_file_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ctsd.yaml");
    let text = "defaults: {command: [gunicorn]}\ninstances_file: missing.sls\n";
    let errors = parse_str(text, &source, &LoadOptions::default()).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert_eq!(errors.0[0].key, "instances_file");
    assert_eq!(errors.0[0].file, source);
    assert!(errors.0[0].message.contains("missing.sls"), "{errors}");
    assert!(errors.0[0].message.contains("No such file"), "{errors}");

    write_pillar(dir.path(), SEED_INSTANCES);
    let both = format!(
        "{}instances_file: conf/pillar/project.sls\n",
        with_command(SEED_INSTANCES)
    );
    let errors = parse_str(&both, &source, &LoadOptions::default()).unwrap_err();
    assert_eq!(keys(&errors), BTreeSet::from(["instances_file".to_owned()]));
}

#[test]
fn dev_without_instances_runs_local() {
    let config = parse_ok("ctsd: {environment: dev}\ndefaults: {command: [python, manage.py, runserver, \"{port}\"]}\n");
    assert_eq!(config.daemon.environment, Environment::Dev);
    assert_eq!(config.instances.len(), 1);
    let local = &config.instances[0];
    assert_eq!(local.key.as_str(), "local");
    assert_eq!(local.name, "Local");
    assert_eq!(local.prefix.as_str(), "");
    assert_eq!(local.currency.as_str(), "XXX");
    assert_eq!(local.port, 8000);
    assert_eq!(
        local.pool.command,
        ["python", "manage.py", "runserver", "8000"]
    );
    assert_eq!(local.pool.env["CTS_ENVIRONMENT"], "dev");
    assert_eq!(
        local.pool.env["DJANGO_SETTINGS_MODULE"],
        "cts.settings.local"
    );
    assert_eq!(local.pool.env["SCRIPT_NAME"], "");
}

#[test]
fn the_env_option_overrides_the_file() {
    let text = "ctsd: {environment: production}\ndefaults: {command: [x]}\n";
    let errors = parse_err(text);
    assert_eq!(keys(&errors), BTreeSet::from(["instances".to_owned()]));
    assert!(message(&errors, "instances").contains("no instances declared"));

    let dev = LoadOptions {
        environment: Some(Environment::Dev),
        ..LoadOptions::default()
    };
    let config = parse_str(text, Path::new(SOURCE), &dev).unwrap();
    assert_eq!(config.daemon.environment, Environment::Dev);
    assert_eq!(config.instances[0].key.as_str(), "local");

    let staging = LoadOptions {
        environment: Some("staging".parse().unwrap()),
        ..LoadOptions::default()
    };
    let config = parse_str(&with_command(SEED_INSTANCES), Path::new(SOURCE), &staging).unwrap();
    assert_eq!(config.daemon.environment, Environment::Staging);
    assert_eq!(config.instances[0].pool.env["CTS_ENVIRONMENT"], "staging");

    let errors = parse_str("defaults: {command: [x]}\n", Path::new(SOURCE), &staging).unwrap_err();
    assert_eq!(keys(&errors), BTreeSet::from(["instances".to_owned()]));
}

#[test]
fn a_file_full_of_mistakes_reports_every_one() {
    let errors = parse_err(
        r#"
ctsd:
  environment: prod
  socket_mode: "0999"
  bind: localhost
  sokcet: /tmp/x
defaults:
  workers: four
  command: [gunicorn, "{instnace}"]
  stop_timeout: 30
  restart: {backoff_initial: 1m, backoff_max: 30s, crash_loop: {restarts: 0}}
  logs: {rotate: weekly, max_size: 100}
  env: {"1BAD": x}
  port: 9000
instancse: {}
instances:
  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001}
  iraq: {name: Iraq, prefix: /TR/x, currency: iqd, port: 8001, workers: 0}
  jordan: {name: Jordan, prefix: JO, currency: JOD, port: 70000, wokers: 3}
  ../x: {currency: XXX, port: 8004, prefix: /X}
  syria: {name: Syria, currency: SYP, prefix: /SY}
  lebanon: {prefix: /LB, currency: LBP, port: -1, ready: {after: 5}}
"#,
    );
    let expected: BTreeSet<String> = [
        "ctsd.environment",
        "ctsd.socket_mode",
        "ctsd.bind",
        "ctsd.sokcet",
        "defaults.workers",
        "defaults.command[1]",
        "defaults.stop_timeout",
        "defaults.restart.backoff_initial",
        "defaults.restart.crash_loop.restarts",
        "defaults.logs.rotate",
        "defaults.logs.max_size",
        "defaults.env.1BAD",
        "defaults.port",
        "instancse",
        "instances.iraq.prefix",
        "instances.iraq.currency",
        "instances.iraq.port",
        "instances.iraq.workers",
        "instances.jordan.prefix",
        "instances.jordan.port",
        "instances.jordan.wokers",
        "instances.\"../x\"",
        "instances.syria.port",
        "instances.lebanon.port",
        "instances.lebanon.ready.after",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(keys(&errors), expected, "\n{errors}");
    // One error per mistake: the bad placeholder in defaults is not repeated per instance.
    assert_eq!(errors.0.len(), expected.len(), "\n{errors}");
    assert!(errors.iter().all(|e| e.file == Path::new(SOURCE)));
    assert_eq!(errors.to_string().lines().count(), expected.len());

    assert_eq!(
        message(&errors, "defaults.workers"),
        "expected a whole number, got \"four\""
    );
    assert_eq!(
        message(&errors, "instances.jordan.wokers"),
        "unknown setting; did you mean `workers`?"
    );
    assert_eq!(
        message(&errors, "instancse"),
        "unknown setting; did you mean `instances`?"
    );
    assert_eq!(
        message(&errors, "ctsd.sokcet"),
        "unknown setting; did you mean `socket`?"
    );
    assert_eq!(
        message(&errors, "instances.iraq.port"),
        "port 8001 is already used by instance turkey"
    );
    assert_eq!(
        message(&errors, "instances.iraq.prefix"),
        "prefix /TR/x overlaps prefix /TR of instance turkey"
    );
    assert_eq!(
        message(&errors, "instances.jordan.port"),
        "port 70000 is out of range 1-65535"
    );
    assert_eq!(
        message(&errors, "instances.lebanon.port"),
        "port -1 is out of range 1-65535"
    );
    assert_eq!(
        message(&errors, "instances.syria.port"),
        "missing: every instance needs its own TCP port"
    );
    assert!(message(&errors, "defaults.stop_timeout").contains("write 30s"));
    assert!(message(&errors, "instances.lebanon.ready.after").contains("write 5s"));
    assert!(message(&errors, "defaults.command[1]").contains("unknown placeholder {instnace}"));
    assert!(message(&errors, "defaults.port").contains("set per instance"));
    assert!(message(&errors, "instances.\"../x\"").contains("not a safe instance key"));
    assert!(message(&errors, "instances.iraq.currency").contains("three upper-case letters"));
    assert!(message(&errors, "instances.iraq.workers").contains("at least 1"));
    assert!(message(&errors, "instances.jordan.prefix").contains("must start with `/`"));
    assert!(message(&errors, "ctsd.environment").contains("dev, staging or production"));
    assert!(message(&errors, "ctsd.bind").contains("not an IP address"));
    assert!(message(&errors, "ctsd.socket_mode").contains("not an octal mode"));
    assert!(
        message(&errors, "defaults.restart.backoff_initial").contains("longer than backoff_max")
    );
    assert!(message(&errors, "defaults.logs.rotate").contains("never, hourly or daily"));
    assert!(message(&errors, "defaults.logs.max_size").contains("100MB"));
    assert!(message(&errors, "defaults.env.1BAD").contains("environment variable name"));
}

#[test]
fn file_level_mistakes() {
    let errors = parse_err("ctsd:\n  bind: [1\n");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].key, "");
    assert!(errors.0[0].message.contains("line 3 column 1"), "{errors}");
    assert!(errors
        .to_string()
        .starts_with("/etc/ctsd/ctsd.yaml: invalid YAML: "));

    let errors = parse_err("- a\n- b\n");
    assert_eq!(keys(&errors), BTreeSet::from([String::new()]));
    assert!(errors.0[0].message.contains("top level must be a mapping"));

    let errors = parse_err(&with_command("instances: [turkey, iraq]\n"));
    assert_eq!(keys(&errors), BTreeSet::from(["instances".to_owned()]));
    assert!(message(&errors, "instances").contains("got a list"));

    let errors = parse_err(&with_command("instances: {jordan: 8003}\n"));
    assert_eq!(
        keys(&errors),
        BTreeSet::from(["instances.jordan".to_owned()])
    );

    let errors = parse_err("ctsd: [x]\ndefaults: 3\n");
    assert!(keys(&errors).is_superset(&BTreeSet::from(["ctsd".to_owned(), "defaults".to_owned()])));
}

#[test]
fn unsafe_instance_keys() {
    for bad in ["a/b", ".hidden", "\"\"", "-x", "\"a b\""] {
        let text = with_command(&format!(
            "instances:\n  {bad}: {{currency: JOD, port: 8003}}\n"
        ));
        let errors = parse_err(&text);
        assert_eq!(errors.0.len(), 1, "{bad}: {errors}");
        assert!(errors.0[0].key.starts_with("instances."), "{errors}");
        assert!(
            errors.0[0].message.contains("instance key"),
            "{bad}: {errors}"
        );
    }
    let long = "k".repeat(65);
    let errors = parse_err(&with_command(&format!(
        "instances:\n  {long}: {{currency: JOD, port: 8003}}\n"
    )));
    assert!(errors.0[0].message.contains("65 characters"), "{errors}");
}

#[test]
fn prefix_overlaps() {
    let errors = parse_err(&with_command(
        "instances:\n  a: {currency: JOD, port: 1, prefix: /JO}\n  b: {currency: JOD, port: 2, prefix: /jo}\n  \
         d: {currency: JOD, port: 4, prefix: /JOX}\n  c: {currency: JOD, port: 3}\n  \
         e: {currency: JOD, port: 5, prefix: /E/x}\n",
    ));
    assert_eq!(
        keys(&errors),
        BTreeSet::from([
            "instances.b.prefix".to_owned(),
            "instances.c.prefix".to_owned(),
            "instances.e.prefix".to_owned(),
        ])
    );
    assert_eq!(
        message(&errors, "instances.b.prefix"),
        "prefix /jo is already used by instance a"
    );
    assert!(message(&errors, "instances.c.prefix")
        .contains("no prefix overlaps prefix /JO of instance a"));
    assert!(message(&errors, "instances.e.prefix")
        .contains("prefix /E/x overlaps instance c, which has no prefix"));
}

#[test]
fn socket_modes() {
    let mode = |value: &str| {
        parse_str(
            &with_command(&format!(
                "ctsd: {{environment: dev, socket_mode: {value}}}\n"
            )),
            Path::new(SOURCE),
            &LoadOptions::default(),
        )
        .map(|c| c.daemon.socket_mode)
    };
    assert_eq!(mode("\"0660\""), Ok(0o660));
    assert_eq!(mode("\"0600\""), Ok(0o600));
    assert_eq!(mode("0660"), Ok(0o660));
    assert_eq!(mode("660"), Ok(0o660));
    assert_eq!(mode("\"0o640\""), Ok(0o640));
    assert_eq!(mode("\"777\""), Ok(0o777));
    assert_eq!(mode("0"), Ok(0));
    for bad in [
        "\"0778\"", "\"1777\"", "1000", "689", "-1", "\"rw\"", "0.5", "\"\"",
    ] {
        let errors = mode(bad).unwrap_err();
        assert_eq!(
            keys(&errors),
            BTreeSet::from(["ctsd.socket_mode".to_owned()]),
            "{bad}"
        );
    }
    assert!(mode("\"1777\"").unwrap_err().0[0]
        .message
        .contains("more than 0777"));
}

#[test]
fn command_and_env_mistakes() {
    let errors = parse_err(
        "defaults:\n  command: []\ninstances:\n  a: {currency: JOD, port: 1, command: [x, {y: z}, \"}\"], \
         env: {LISTEN_FDS: \"2\", OK: [1]}}\n",
    );
    assert_eq!(
        keys(&errors),
        BTreeSet::from([
            "defaults.command".to_owned(),
            "instances.a.command[1]".to_owned(),
            "instances.a.command[2]".to_owned(),
            "instances.a.env.LISTEN_FDS".to_owned(),
            "instances.a.env.OK".to_owned(),
        ])
    );
    assert!(message(&errors, "defaults.command").contains("empty"));
    assert!(message(&errors, "instances.a.env.LISTEN_FDS").contains("set by ctsd"));
}

#[test]
fn missing_command() {
    let errors = parse_err(SEED_INSTANCES);
    assert_eq!(
        keys(&errors),
        BTreeSet::from(["defaults.command".to_owned()])
    );

    let errors = parse_err(
        "instances:\n  a: {currency: JOD, port: 1, prefix: /A, command: [x]}\n  \
         b: {currency: JOD, port: 2, prefix: /B}\n",
    );
    assert_eq!(
        keys(&errors),
        BTreeSet::from(["instances.b.command".to_owned()])
    );
}

#[test]
fn backoff_checked_where_written() {
    let errors = parse_err(&with_command(
        "instances:\n  a: {currency: JOD, port: 1, prefix: /A, restart: {backoff_initial: 1m}}\n  \
         b: {currency: JOD, port: 2, prefix: /B, restart: {backoff_max: 1m}}\n",
    ));
    assert_eq!(
        keys(&errors),
        BTreeSet::from(["instances.a.restart.backoff_initial".to_owned()])
    );
    assert_eq!(
        message(&errors, "instances.a.restart.backoff_initial"),
        "backoff_initial (60s) is longer than backoff_max (30s)"
    );
}

#[test]
fn yaml_anchors_and_quoted_numbers() {
    let config = parse_ok(
        "defaults: {command: [x]}\nbase: &base {currency: JOD, port: \"8003\"}\n"
            .replace("base: &base", "instances:\n  jordan: &base")
            .as_str(),
    );
    assert_eq!(config.instance("jordan").unwrap().port, 8003);
}

#[test]
fn umask_and_limits_are_read_and_checked() {
    use cts_config::{Limit, Limits};
    let config = parse_ok(&format!(
        "{}  umask: \"0027\"\n  limits: {{nofile: 65536, core: unlimited}}\n{}",
        with_command(""),
        "instances:\n  jordan: {currency: JOD, port: 8003, prefix: /JO, umask: 077, limits: {nproc: 100}}\n  iraq: {currency: IQD, port: 8002, prefix: /IQ}\n"
    ));
    let iraq = &config.instance("iraq").unwrap().pool;
    assert_eq!(iraq.umask, Some(0o027));
    assert_eq!(
        iraq.limits,
        Limits {
            nofile: Some(Limit::Value(65536)),
            nproc: None,
            core: Some(Limit::Unlimited),
        }
    );
    let jordan = &config.instance("jordan").unwrap().pool;
    assert_eq!(jordan.umask, Some(0o077));
    assert_eq!(jordan.limits.nproc, Some(Limit::Value(100)));
    assert_eq!(jordan.limits.nofile, Some(Limit::Value(65536)));

    let errors = parse_err(&with_command(
        "  umask: \"0999\"\n  limits: {nofile: -1, nproc: -1, stack: 10}\ninstances:\n  jordan: {currency: JOD, port: 8003, prefix: /JO, umask: 0o027, limits: {nofile: unlimited}}\n",
    ));
    assert!(
        message(&errors, "defaults.umask").contains("not a umask"),
        "{errors}"
    );
    assert!(
        message(&errors, "defaults.limits.nofile").contains("64 to"),
        "{errors}"
    );
    assert!(
        message(&errors, "defaults.limits.nproc").contains("negative"),
        "{errors}"
    );
    assert!(keys(&errors).contains("defaults.limits.stack"), "{errors}");
    assert!(
        message(&errors, "instances.jordan.umask").contains("in quotes"),
        "{errors}"
    );
    assert!(
        message(&errors, "instances.jordan.limits.nofile").contains("fs.nr_open"),
        "{errors}"
    );
}

#[test]
fn load_resolves_users_and_names_the_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctsd.yaml");
    fs::write(
        &path,
        with_command(
            "  user: root\ninstances:\n  jordan: {currency: JOD, port: 8003, prefix: /JO}\n  iraq: {currency: IQD, port: 8002, prefix: /IQ, user: no-such-user-ctsd}\n",
        ),
    )
    .unwrap();
    let errors = load(&path, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        message(&errors, "instances.iraq.user"),
        "user `no-such-user-ctsd` does not exist on this system"
    );
    fs::write(
        &path,
        with_command(
            "  user: root\ninstances:\n  jordan: {currency: JOD, port: 8003, prefix: /JO}\n",
        ),
    )
    .unwrap();
    let config = load(&path, &LoadOptions::default()).unwrap();
    let accounts = config
        .instance("jordan")
        .unwrap()
        .pool
        .accounts
        .clone()
        .unwrap();
    assert_eq!((accounts.uid, accounts.gid), (Some(0), 0));
}

#[test]
fn gunicorn_with_an_fd_bind_is_refused_with_the_reason() {
    for cmd in [
        r#"[gunicorn, --bind, "fd://3", app]"#,
        r#"[/venv/bin/gunicorn, "--bind=fd://3", app]"#,
        r#"[python, -m, gunicorn, -b, "fd://3", app]"#,
    ] {
        let errors = parse_err(&format!(
            "defaults:\n  command: {cmd}\ninstances:\n  jordan: {{currency: JOD, port: 8003, prefix: /JO}}\n"
        ));
        let e = errors
            .iter()
            .find(|e| e.key.starts_with("defaults.command["))
            .unwrap();
        assert!(
            e.message.contains("takes ctsd's socket from LISTEN_FDS"),
            "{cmd}: {errors}"
        );
    }
    parse_ok(&with_command(
        "instances:\n  jordan: {currency: JOD, port: 8003, prefix: /JO, command: [gunicorn, --bind, \"127.0.0.1:9\", app]}\n",
    ));
}
