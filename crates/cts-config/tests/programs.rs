//! `programs:`: merged by name between `defaults` and each instance, inheriting the instance's
//! settings, and checked where they are written.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use cts_config::{diff, parse_str, Action, Config, ConfigErrors, LoadOptions};

const SOURCE: &str = "/etc/ctsd/ctsd.yaml";

/// The CTS server of the design: web, a celery worker per instance queue, one beat.
const CTS: &str = r#"
defaults:
  workers: 4
  command: [gunicorn, "cts.wsgi:application"]
  cwd: /var/www/cts/current
  env: {APP: cts, QUEUE: "queue_{instance}"}
  user: root
  umask: "0027"
  limits: {nofile: 4096}
  stop_timeout: 30s
  ready: {notify: true, timeout: 60s}
  logs: {keep: 7}
  programs:
    celery:
      command: [celery, -A, cts, worker, -Q, "queue_{instance}", --concurrency, "2"]
      stop_timeout: 60s
      ready: {notify: false, after: 3s}
      env: {C_FORCE_ROOT: "1"}
    beat:
      command: [celery, -A, cts, beat, --schedule, "/var/lib/cts/beat-{instance}.db"]
      singleton: true
      ready: {notify: false}
instances:
  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001, programs: {beat: null}}
  iraq:   {name: Iraq, prefix: /IQ, currency: IQD, port: 8002, programs: {celery: {workers: 2}}}
  jordan:
    name: Jordan
    prefix: /JO
    currency: JOD
    port: 8003
    env: {APP: jordan}
    programs: {mail: {command: [python, manage.py, send_mail_loop]}}
"#;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_str(text, Path::new(SOURCE), &LoadOptions::default())
}

fn errors(text: &str) -> Vec<(String, String)> {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.into_iter().map(|e| (e.key, e.message)).collect(),
    }
}

fn names(c: &Config, key: &str) -> Vec<String> {
    let i = c.instance(key).unwrap();
    i.programs.iter().map(|p| p.name.to_string()).collect()
}

#[test]
fn programs_merge_by_name_and_null_removes_one() {
    let c = parse(CTS).unwrap();
    assert_eq!(names(&c, "turkey"), ["celery"]);
    assert_eq!(names(&c, "iraq"), ["beat", "celery"]);
    assert_eq!(names(&c, "jordan"), ["beat", "celery", "mail"]);
    let iraq = c.instance("iraq").unwrap();
    let celery = iraq.program("celery").unwrap();
    // The instance's `workers: 2` over the defaults' program, which keeps its command.
    assert_eq!(celery.pool.workers, 2);
    assert_eq!(celery.pool.command[5], "queue_iraq");
    assert_eq!(celery.pool.stop_timeout, Duration::from_secs(60));
    assert!(!celery.singleton);
    let beat = iraq.program("beat").unwrap();
    assert!(beat.singleton);
    assert_eq!(beat.pool.workers, 1);
    assert_eq!(beat.pool.command[5], "/var/lib/cts/beat-iraq.db");
}

#[test]
fn a_program_inherits_what_it_does_not_set() {
    let c = parse(CTS).unwrap();
    let jordan = c.instance("jordan").unwrap();
    let celery = jordan.program("celery").unwrap();
    let (web, p) = (&jordan.pool, &celery.pool);
    assert_eq!(p.cwd, web.cwd);
    assert_eq!(p.user, web.user);
    assert_eq!(p.umask, web.umask);
    assert_eq!(p.limits, web.limits);
    assert_eq!(p.logs, web.logs);
    assert_eq!(p.restart, web.restart);
    // The environment: the contract variables and the instance's env, the program's over them.
    assert_eq!(p.env["CTS_INSTANCE"], "jordan");
    assert_eq!(p.env["PORT"], "8003");
    assert_eq!(p.env["APP"], "jordan");
    assert_eq!(p.env["QUEUE"], "queue_jordan");
    assert_eq!(p.env["C_FORCE_ROOT"], "1");
    assert!(!web.env.contains_key("C_FORCE_ROOT"));
    // Its own ready and stop_timeout; one process unless it says otherwise (not web's 4).
    assert!(!p.ready.notify);
    assert_eq!(p.ready.after, Duration::from_secs(3));
    assert_eq!(
        p.ready.timeout,
        Duration::from_secs(60),
        "the rest of ready is inherited"
    );
    assert_eq!(p.stop_timeout, Duration::from_secs(60));
    let mail = jordan.program("mail").unwrap();
    assert_eq!(mail.pool.workers, 1);
    assert_eq!(mail.pool.stop_timeout, Duration::from_secs(30));
    assert!(mail.pool.ready.notify, "inherited from the instance");
}

#[test]
fn program_mistakes_are_named_where_they_are_written() {
    let base = "defaults: {command: [w]}\ninstances:\n  jordan: {currency: JOD, port: 8003, ";
    let bad = |programs: &str| errors(&format!("{base}programs: {programs}}}\n"));
    let e = bad("{web: {command: [x]}}");
    assert_eq!(e[0].0, "instances.jordan.programs.web");
    assert!(e[0].1.contains("top-level pool"), "{e:?}");
    let e = bad("{output: {command: [x]}}");
    assert!(e[0].1.contains("output.log"), "{e:?}");
    let e = bad("{Celery: {command: [x]}}");
    assert!(e[0].1.contains("not a program name"), "{e:?}");
    let e = bad("{celery: {workers: 2}}");
    assert_eq!(e[0].0, "instances.jordan.programs.celery.command");
    assert!(e[0].1.contains("needs its own command"), "{e:?}");
    let e = bad("{celery: {command: [x], cwd: /srv}}");
    assert_eq!(e[0].0, "instances.jordan.programs.celery.cwd");
    assert!(e[0].1.contains("inherit"), "{e:?}");
    let e = bad("{celery: {command: [x], wrokers: 2}}");
    assert!(e[0].1.contains("did you mean `workers`"), "{e:?}");
    let e = bad("{beat: {command: [x], singleton: true, workers: 2}}");
    assert_eq!(e[0].0, "instances.jordan.programs.beat.workers");
    assert!(e[0].1.contains("singleton"), "{e:?}");
    let e = bad("{beat: null}");
    assert!(e[0].1.contains("no `beat`"), "{e:?}");
    let e = bad("[celery]");
    assert_eq!(e[0].0, "instances.jordan.programs");
    let e = bad("{celery: [x]}");
    assert!(e[0].1.contains("program's settings"), "{e:?}");
}

#[test]
fn a_program_without_a_command_in_defaults_is_reported_once() {
    let text = "defaults: {command: [w], programs: {celery: {workers: 2}}}\ninstances:\n  \
                a: {currency: JOD, port: 8001, prefix: /A}\n  b: {currency: JOD, port: 8002, prefix: /B}\n";
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "defaults.programs.celery.command");
}

#[test]
fn reload_plans_programs_one_by_one() {
    let old = parse(CTS).unwrap();
    let changed = CTS
        .replace(
            "programs: {celery: {workers: 2}}",
            "programs: {celery: {workers: 3}}",
        )
        .replace(
            "programs: {mail: {command: [python, manage.py, send_mail_loop]}}",
            "programs: {beat: null}",
        )
        .replace("singleton: true", "singleton: true\n      stop_timeout: 5s")
        .replace("{APP: cts,", "{APP: cts2,");
    let new = parse(&changed).unwrap();
    let plan = diff(&old, &new);
    let find = |name: &str| {
        plan.changes
            .iter()
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("no {name} in {plan:?}"))
    };
    // `env` of the instance reaches web and every program of turkey and iraq.
    assert_eq!(find("turkey").action, Action::Restart);
    assert_eq!(find("turkey:celery").action, Action::Restart);
    assert_eq!(find("iraq:celery").action, Action::Restart);
    assert!(find("iraq:celery").fields.contains(&"workers"));
    assert_eq!(find("iraq:beat").fields, ["env", "stop_timeout"]);
    // jordan overrides APP itself: its web and celery are untouched; `mail` went, and its
    // `beat: null` removes the defaults' beat.
    assert_eq!(find("jordan").action, Action::None);
    assert_eq!(find("jordan:celery").action, Action::None);
    assert_eq!(find("jordan:mail").action, Action::Stop);
    assert_eq!(find("jordan:beat").action, Action::Stop);

    let only_workers = CTS.replace("{celery: {workers: 2}}", "{celery: {workers: 5}}");
    let plan = diff(&old, &parse(&only_workers).unwrap());
    let c = plan
        .changes
        .iter()
        .find(|c| c.name() == "iraq:celery")
        .unwrap();
    assert_eq!(
        (c.action, c.fields.clone()),
        (Action::Scale, vec!["workers"])
    );

    let added = CTS.replace("programs: {beat: null}", "programs: {}");
    let plan = diff(&old, &parse(&added).unwrap());
    let c = plan
        .changes
        .iter()
        .find(|c| c.name() == "turkey:beat")
        .unwrap();
    assert_eq!(c.action, Action::Start);
    let port = CTS.replace("port: 8002", "port: 8012");
    let plan = diff(&old, &parse(&port).unwrap());
    let web = plan.changes.iter().find(|c| c.name() == "iraq").unwrap();
    let celery = plan
        .changes
        .iter()
        .find(|c| c.name() == "iraq:celery")
        .unwrap();
    assert_eq!(web.action, Action::Rebind);
    assert_eq!(celery.action, Action::Restart, "PORT is in its environment");
}

#[test]
fn release_jobs_and_deploy_once_are_rendered_per_instance() {
    let text = r#"
defaults:
  command: [w]
  release:
    - [python, manage.py, migrate, --noinput, "--database={instance}"]
deploy:
  once:
    - [python, manage.py, collectstatic, --noinput]
instances:
  turkey: {currency: TRY, port: 8001, prefix: /TR}
  iraq: {currency: IQD, port: 8002, prefix: /IQ, release: []}
"#;
    let c = parse(text).unwrap();
    assert_eq!(
        c.deploy.once,
        [["python", "manage.py", "collectstatic", "--noinput"]]
    );
    assert_eq!(c.deploy.job_timeout, None);
    let timed = parse(&text.replace("deploy:\n", "deploy:\n  job_timeout: 30m\n")).unwrap();
    assert_eq!(timed.deploy.job_timeout, Some(Duration::from_secs(1800)));
    let e = errors(&text.replace("deploy:\n", "deploy:\n  job_timeout: 0s\n"));
    assert_eq!(e[0].0, "deploy.job_timeout");
    let turkey = c.instance("turkey").unwrap();
    assert_eq!(turkey.release[0][4], "--database=turkey");
    assert!(
        c.instance("iraq").unwrap().release.is_empty(),
        "its own list replaces"
    );
    let e = errors(&text.replace(
        "- [python, manage.py, collectstatic, --noinput]",
        "- python",
    ));
    assert_eq!(e[0].0, "deploy.once[0]");
    assert!(e[0].1.contains("as a list"), "{e:?}");
    let e = errors(&text.replace("once:", "onse:"));
    assert!(e[0].1.contains("did you mean `once`"), "{e:?}");
}
