//! `ctsctl restart`: rolling, every request answered, other instances untouched, failures leave
//! the old workers serving.

use crate::util::*;

#[test]
fn rolling_restart_of_jordan_answers_every_request_and_touches_nothing_else() {
    let insts: Vec<Inst> = three()
        .into_iter()
        .map(|i| {
            if i.key == "jordan" {
                i.with("workers: 4")
            } else {
                i
            }
        })
        .collect();
    let d = Daemon::start(insts, "");
    let jordan_before = d.wait_running("jordan");
    let turkey_before = d.wait_running("turkey");
    let iraq_before = d.wait_running("iraq");
    let looper = Looper::start(d.port("jordan"));
    looper.wait_for_more(20);
    let out = d.ctl(&["restart", "jordan"]);
    assert!(
        out.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("jordan: 4 workers replaced"));
    looper.wait_for_more(20);
    let stats = looper.finish();
    assert!(
        stats.failures.is_empty(),
        "requests failed during the restart: {:?}",
        stats.failures
    );
    assert!(stats.ok >= 40);
    let jordan_after = d.wait_running("jordan");
    assert_eq!(jordan_after.len(), 4);
    assert!(
        jordan_after.is_disjoint(&jordan_before),
        "every jordan pid changed"
    );
    assert_eq!(d.pids("turkey"), turkey_before, "turkey untouched");
    assert_eq!(d.pids("iraq"), iraq_before, "iraq untouched");
    assert_eq!(
        d.instance("jordan")["restarts"],
        0,
        "a rolling restart is not a crash"
    );
}

#[test]
fn restart_all_replaces_every_instance() {
    let d = Daemon::start(three(), "");
    let before: Vec<_> = ["turkey", "iraq", "jordan"]
        .iter()
        .map(|k| d.wait_running(k))
        .collect();
    let out = d.ctl(&["restart", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (k, b) in ["turkey", "iraq", "jordan"].iter().zip(before) {
        assert!(d.wait_running(k).is_disjoint(&b), "{k} was restarted");
    }
}

#[test]
fn a_new_worker_that_crashes_stops_the_restart_and_the_old_ones_keep_serving() {
    // The worker crashes at start once the flag file exists: "deploying broken code".
    let flag = tempfile::NamedTempFile::new().expect("flag file");
    let flag_path = flag.path().to_owned();
    std::fs::remove_file(&flag_path).expect("start without the flag");
    let script = format!(
        "if [ -e {} ]; then echo broken build >&2; exit 4; fi; exec {}",
        flag_path.display(),
        worker_bin()
    );
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 3, command: {}",
        yaml_list(&["sh", "-c", &script])
    ));
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    let before = d.wait_running("jordan");
    let looper = Looper::start(port);
    looper.wait_for_more(10);
    std::fs::write(&flag_path, b"").expect("break the build");
    let out = d.ctl(&["restart", "jordan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(cts_proto::exit_codes::ROLLED_BACK.into()),
        "restart must fail: {err}"
    );
    assert!(
        err.contains("exited with status 4"),
        "the failed worker's exit reason is shown: {err}"
    );
    looper.wait_for_more(10);
    let stats = looper.finish();
    assert!(
        stats.failures.is_empty(),
        "jordan kept answering: {:?}",
        stats.failures
    );
    assert_eq!(
        d.wait_running("jordan"),
        before,
        "the old workers keep serving"
    );
    std::fs::remove_file(&flag_path).expect("fix the build");
    let out = d.ctl(&["restart", "jordan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.wait_running("jordan").is_disjoint(&before));
}

#[test]
fn a_new_worker_that_is_never_ready_stops_the_restart() {
    let flag = tempfile::NamedTempFile::new().expect("flag file");
    let flag_path = flag.path().to_owned();
    std::fs::remove_file(&flag_path).expect("start without the flag");
    let script = format!(
        "if [ -e {} ]; then exec {} --never-ready; fi; exec {}",
        flag_path.display(),
        worker_bin(),
        worker_bin()
    );
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with(&format!(
        "workers: 2, command: {}, ready: {{timeout: 1s}}",
        yaml_list(&["sh", "-c", &script])
    ));
    let d = Daemon::start(vec![inst], "");
    let before = d.wait_running("jordan");
    std::fs::write(&flag_path, b"").expect("break readiness");
    let out = d.ctl(&["restart", "jordan"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(cts_proto::exit_codes::ROLLED_BACK.into()),
        "{err}"
    );
    assert!(err.contains("not ready within 1s"), "{err}");
    assert_eq!(d.wait_running("jordan"), before);
}

#[test]
fn batch_restart_replaces_two_at_a_time_without_failed_requests() {
    let inst = Inst::new("jordan", "Jordan", "/JO", "JOD").with("workers: 4, rolling: {batch: 2}");
    let port = inst.port;
    let d = Daemon::start(vec![inst], "");
    let before = d.wait_running("jordan");
    let looper = Looper::start(port);
    looper.wait_for_more(10);
    let out = d.ctl(&["restart", "jordan"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    looper.wait_for_more(10);
    let stats = looper.finish();
    assert!(stats.failures.is_empty(), "{:?}", stats.failures);
    assert!(d.wait_running("jordan").is_disjoint(&before));
    // Two new workers were started before the first old one was replaced.
    let log = d.log("jordan");
    let rolling = &log[log
        .find("rolling restart of 4 workers")
        .expect("restart logged")..];
    let first_replaced = rolling.find("replaced by").expect("a replacement");
    assert_eq!(
        rolling[..first_replaced].matches(" started").count(),
        2,
        "{rolling}"
    );
}

#[test]
fn restart_no_wait_returns_at_once_and_the_restart_goes_on() {
    let d = Daemon::start(vec![Inst::new("jordan", "Jordan", "/JO", "JOD")], "");
    let before = d.wait_running("jordan");
    let out = d.ctl(&["restart", "jordan", "--no-wait"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("restart begun"));
    assert!(wait_until(WAIT, || d.pids("jordan").is_disjoint(&before)));
    d.wait_running("jordan");
}

#[test]
fn restart_streams_progress_frames_when_asked() {
    use std::io::{Read, Write};
    let d = Daemon::start(
        vec![Inst::new("jordan", "Jordan", "/JO", "JOD").with("workers: 3")],
        "",
    );
    d.wait_running("jordan");
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut frame = |json: &str| {
        s.write_all(&(json.len() as u32).to_be_bytes())
            .expect("len");
        s.write_all(json.as_bytes()).expect("body");
    };
    frame(r#"{"type":"hello","proto":{"major":1,"minor":0}}"#);
    frame(r#"{"type":"restart","target":{"instances":["jordan"]},"progress":true}"#);
    let mut progress = Vec::new();
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("frame length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).expect("frame");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        match v["type"].as_str() {
            Some("welcome") => {}
            Some("progress") => progress.push((v["replaced"].as_u64(), v["total"].as_u64())),
            Some("outcomes") => {
                assert_eq!(v["results"][0]["ok"], true, "{v}");
                break;
            }
            other => panic!("unexpected frame {other:?}: {v}"),
        }
    }
    assert_eq!(progress.last(), Some(&(Some(3), Some(3))), "{progress:?}");
}
