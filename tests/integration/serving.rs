//! Every instance answers on its own port with its own identity.

use crate::util::*;

#[test]
fn every_instance_answers_on_its_port_with_its_key_and_currency() {
    let d = Daemon::start(three(), "");
    for inst in &d.instances {
        let pids = d.wait_running(&inst.key);
        for _ in 0..4 {
            let v = get(inst.port, "/").unwrap_or_else(|e| panic!("{}: {e:?}", inst.key));
            assert_eq!(v["instance"], inst.key.as_str());
            assert_eq!(v["name"], inst.name.as_str());
            assert_eq!(v["currency"], inst.currency.as_str());
            assert_eq!(v["prefix"], inst.prefix.as_str());
            let pid = v["pid"].as_u64().expect("pid") as u32;
            assert!(
                pids.contains(&pid),
                "{}: answered by pid {pid}, not one of {pids:?}",
                inst.key
            );
        }
    }
}

#[test]
fn status_json_follows_the_contract() {
    let d = Daemon::start(three(), "");
    d.wait_running("jordan");
    let s = d.status();
    let insts = s["instances"].as_array().expect("instances array");
    let keys: Vec<&str> = insts.iter().filter_map(|i| i["key"].as_str()).collect();
    assert_eq!(keys, ["turkey", "iraq", "jordan"], "configuration order");
    for i in insts {
        for field in [
            "key",
            "port",
            "prefix",
            "state",
            "desired_workers",
            "restarts",
            "workers",
        ] {
            assert!(!i[field].is_null(), "instance lacks {field}: {i}");
        }
        for w in i["workers"].as_array().expect("workers") {
            assert!(w["pid"].as_u64().is_some(), "worker lacks pid: {w}");
            assert!(["starting", "ready", "stopping"].contains(&w["state"].as_str().unwrap_or("")));
        }
    }
    let jordan = &by_key(&s)["jordan"];
    assert_eq!(jordan["port"], d.port("jordan"));
    assert_eq!(jordan["prefix"], "/JO");
    assert_eq!(jordan["desired_workers"], 2);

    let table = d.ctl(&["status"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("INSTANCE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("jordan") && l.contains("running") && l.contains("2/2")),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn workers_get_the_contract_environment_and_only_fd_3() {
    // A worker that reports its environment and open fds into the log, then serves.
    let script = format!(
        "echo ENV LISTEN_FDS=$LISTEN_FDS LISTEN_PID=$LISTEN_PID SELF=$$ LISTEN_FDNAMES=$LISTEN_FDNAMES \
         CTS_INSTANCE=$CTS_INSTANCE CTS_INSTANCE_NAME=$CTS_INSTANCE_NAME CTS_PREFIX=$CTS_PREFIX \
         CTS_CURRENCY=$CTS_CURRENCY PORT=$PORT SCRIPT_NAME=$SCRIPT_NAME \
         DJANGO_SETTINGS_MODULE=$DJANGO_SETTINGS_MODULE EXTRA=$EXTRA; \
         printf 'FDS '; for f in /proc/$$/fd/*; do printf '%s ' \"${{{{f##*/}}}}\"; done; echo; exec {}",
        worker_bin()
    );
    let cmd = yaml_list(&["sh", "-c", &script]);
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 1, command: {cmd}, env: {{EXTRA: \"{{name}}-{{port}}\"}}"
    ));
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    d.wait_running("jordan");
    assert!(get(port, "/").is_ok());
    let log = d.log("jordan");
    let env_line = log
        .lines()
        .find(|l| l.starts_with("ENV "))
        .unwrap_or_else(|| panic!("no ENV line in {log}"));
    let vars: std::collections::BTreeMap<&str, &str> = env_line[4..]
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(vars["LISTEN_FDS"], "1");
    assert_eq!(
        vars["LISTEN_PID"], vars["SELF"],
        "LISTEN_PID is the worker's own pid"
    );
    assert_eq!(vars["LISTEN_FDNAMES"], "jordan");
    assert_eq!(vars["CTS_INSTANCE"], "jordan");
    assert_eq!(vars["CTS_INSTANCE_NAME"], "Jordan");
    assert_eq!(vars["CTS_PREFIX"], "/JO");
    assert_eq!(vars["CTS_CURRENCY"], "JOD");
    assert_eq!(vars["PORT"], port.to_string());
    assert_eq!(vars["SCRIPT_NAME"], "/JO");
    assert_eq!(vars["DJANGO_SETTINGS_MODULE"], "cts.settings.jordan");
    assert_eq!(vars["EXTRA"], format!("Jordan-{port}"));
    // `ls` itself opens one fd to read the directory; everything else is what the worker got.
    let fds_line = log
        .lines()
        .find(|l| l.starts_with("FDS "))
        .expect("FDS line");
    let fds: Vec<u32> = fds_line[4..]
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let inherited: Vec<u32> = fds.iter().copied().filter(|&f| f <= 3).collect();
    assert_eq!(inherited, [0, 1, 2, 3], "{fds_line}");
    assert!(
        fds.len() <= 5,
        "only 0-3 (and ls's own directory fd) may be open: {fds_line}"
    );
}
