//! `ctsd --check`: every mistake reported with file and key path, nothing started.

use crate::util::*;
use std::process::Command;

fn check(yaml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ctsd.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let out = Command::new(ctsd_bin())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run ctsd --check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_seed_instances_mapping_is_accepted_as_written() {
    let (code, out, err) = check(
        "defaults: {command: [sh]}\n\
         instances:\n  turkey: {name: Turkey, prefix: /TR, currency: TRY, port: 8001}\n  \
         iraq:   {name: Iraq,   prefix: /IQ, currency: IQD, port: 8002}\n  \
         jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003}\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("3 instances (turkey :8001 /TR, iraq :8002 /IQ, jordan :8003 /JO)"),
        "{out}"
    );
}

#[test]
fn each_validation_error_names_its_key_path() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "duplicate port",
            "a: {currency: AAA, prefix: /A, port: 8001}\n  b: {currency: BBB, prefix: /B, port: 8001}",
            "instances.b.port",
        ),
        (
            "duplicate prefix",
            "a: {currency: AAA, prefix: /A, port: 8001}\n  b: {currency: BBB, prefix: /A, port: 8002}",
            "instances.b.prefix",
        ),
        (
            "overlapping prefix",
            "a: {currency: AAA, prefix: /A, port: 8001}\n  b: {currency: BBB, prefix: /A/x, port: 8002}",
            "instances.b.prefix",
        ),
        ("unsafe key", "\"../etc\": {currency: AAA, prefix: /A, port: 8001}", "instances"),
        ("bad currency", "a: {currency: jod, prefix: /A, port: 8001}", "instances.a.currency"),
        ("port out of range", "a: {currency: AAA, prefix: /A, port: 70000}", "instances.a.port"),
        ("unknown key", "a: {currency: AAA, prefix: /A, port: 8001, wokers: 3}", "instances.a.wokers"),
    ];
    for (what, instances, key) in cases {
        let yaml = format!("defaults: {{command: [gunicorn]}}\ninstances:\n  {instances}\n");
        let (code, _, err) = check(&yaml);
        assert_ne!(code, 0, "{what}: must fail");
        assert!(err.contains(key), "{what}: error must name {key}: {err}");
        assert!(
            err.contains("ctsd.yaml"),
            "{what}: error must name the file: {err}"
        );
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let yaml = "ctsd: {bind: not-an-ip}\n\
                defaults: {command: [gunicorn], workers: 0}\n\
                instances:\n  a: {currency: aaa, prefix: /A, port: 0}\n  b: {currency: BBB, prefix: B, port: 8002, colour: red}\n";
    let (code, _, err) = check(yaml);
    assert_eq!(code, 2);
    for key in [
        "ctsd.bind",
        "defaults.workers",
        "instances.a.currency",
        "instances.a.port",
        "instances.b.prefix",
        "instances.b.colour",
    ] {
        assert!(err.contains(key), "missing {key} in:\n{err}");
    }
}

#[test]
fn jinja_in_an_unrendered_pillar_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("conf/pillar")).expect("mkdir");
    std::fs::write(
        dir.path().join("conf/pillar/project.sls"),
        "instances:\n{% for c in countries %}\n  {{ c }}: {}\n{% endfor %}\n",
    )
    .expect("write pillar");
    let cfg = dir.path().join("ctsd.yaml");
    std::fs::write(
        &cfg,
        "defaults: {command: [sh]}\ninstances_file: conf/pillar/project.sls\n",
    )
    .expect("write");
    let out = Command::new(ctsd_bin())
        .args(["--check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("project.sls") && err.contains("Jinja"),
        "{err}"
    );
}

#[test]
fn a_rendered_pillar_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("conf/pillar")).expect("mkdir");
    std::fs::write(
        dir.path().join("conf/pillar/project.sls"),
        "project_name: cts\ninstances:\n  jordan: {name: Jordan, prefix: /JO, currency: JOD, port: 8003}\n",
    )
    .expect("write pillar");
    let cfg = dir.path().join("ctsd.yaml");
    std::fs::write(
        &cfg,
        "defaults: {command: [sh]}\ninstances_file: conf/pillar/project.sls\n",
    )
    .expect("write");
    let out = Command::new(ctsd_bin())
        .args(["--check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("jordan :8003 /JO"));
}

#[test]
fn dev_environment_without_instances_runs_local() {
    let (code, out, err) = check("ctsd: {environment: dev}\ndefaults: {command: [sh]}\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 instance") && out.contains("local"), "{out}");
}

#[test]
fn the_bundled_example_is_valid() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/project.yaml");
    let out = Command::new(ctsd_bin())
        .args(["--check", "--config"])
        .arg(&example)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
