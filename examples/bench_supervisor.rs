//! What ctsd costs and how fast it reacts, on 3 instances x 4 demo workers:
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_supervisor
//! # another build of the same binaries (e.g. an older commit), for a before/after:
//! cargo run --release --example bench_supervisor -- --bin-dir /path/to/target/release
//! ```
//!
//! It starts the real `ctsd` from the binary directory (default: the `target/release` this
//! example was built into) in a temporary directory, on ports the OS picked free, and prints one
//! line per figure (the format is stable, for comparing runs):
//!
//! - `idle wake-ups/10s`: context switches of every ctsd thread over 10 idle seconds (0 means
//!   ctsd made no system call at all);
//! - `rss`: ctsd's resident memory (`VmRSS`), workers not included;
//! - `status wall`: `ctsctl status`, the whole command, median and slowest of 50;
//! - `exit to respawn`: SIGKILL of a worker until ctsd has forked its replacement, median and
//!   slowest over one worker of every slot (each a first crash, so no backoff applies);
//! - `rolling restarts`: requests and failures of a 4-thread client loop on one instance
//!   during two `ctsctl restart` in a row;
//! - `shutdown`: SIGTERM of ctsd until it has exited with every worker stopped.
//!
//! Traffic goes to 127.0.0.1 only; every process it starts is stopped by pid, also on failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTANCES: [(&str, &str, &str, &str); 3] = [
    ("turkey", "Turkey", "/TR", "TRY"),
    ("iraq", "Iraq", "/IQ", "IQD"),
    ("jordan", "Jordan", "/JO", "JOD"),
];
const WORKERS: usize = 4;

/// Stops ctsd by pid when dropped, also when the bench panics.
struct Daemon {
    child: Child,
    socket: PathBuf,
    bin: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bin.join("ctsctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctsctl")
    }

    fn status(&self) -> serde_json::Value {
        let out = self.ctl(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Waits until every instance runs with all its workers ready; returns their pids.
    fn wait_running(&self) -> Vec<Vec<u32>> {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let st = self.status();
            let all: Option<Vec<Vec<u32>>> = st["instances"].as_array().and_then(|list| {
                list.iter()
                    .map(|i| {
                        let pids: Vec<u32> = i["workers"]
                            .as_array()?
                            .iter()
                            .filter(|w| w["state"] == "ready")
                            .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
                            .collect();
                        (i["state"] == "running" && pids.len() == WORKERS).then_some(pids)
                    })
                    .collect()
            });
            if let Some(all) = all.filter(|a| a.len() == INSTANCES.len()) {
                return all;
            }
            assert!(Instant::now() < end, "instances not running: {st}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Context switches of every thread of ctsd so far.
    fn switches(&self) -> u64 {
        let mut n = 0;
        let dir = format!("/proc/{}/task", self.pid());
        for t in std::fs::read_dir(dir).expect("task dir").flatten() {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for l in s.lines() {
                if l.starts_with("voluntary_ctxt_switches") || l.starts_with("nonvoluntary_ctxt") {
                    n += l
                        .split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                }
            }
        }
        n
    }

    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// ctsd's children (its workers are forked by the main thread).
    fn children(&self) -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid()))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn get(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(b"GET /JO/ HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200")
}

fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = match args.iter().position(|a| a == "--bin-dir") {
        Some(i) => PathBuf::from(args.get(i + 1).expect("--bin-dir DIR")),
        None => std::env::current_exe()
            .expect("own path")
            .parent()
            .and_then(Path::parent)
            .expect("target/release")
            .to_path_buf(),
    };
    for b in ["ctsd", "ctsctl", "cts-demo-worker"] {
        assert!(
            bin.join(b).exists(),
            "{} missing: run `cargo build --release` first",
            bin.join(b).display()
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let ports: Vec<u16> = INSTANCES.iter().map(|_| free_port()).collect();
    let mut yaml = format!(
        "ctsd: {{socket: {0}/ctsd.sock, log_dir: {0}/log, bind: 127.0.0.1}}\n\
         defaults:\n  workers: {WORKERS}\n  command: [{1}]\n  ready: {{notify: true, timeout: 10s}}\n  stop_timeout: 10s\n\
         instances:\n",
        dir.path().display(),
        bin.join("cts-demo-worker").display()
    );
    for ((key, name, prefix, cur), port) in INSTANCES.iter().zip(&ports) {
        yaml.push_str(&format!(
            "  {key}: {{name: {name}, prefix: {prefix}, currency: {cur}, port: {port}}}\n"
        ));
    }
    let config = dir.path().join("ctsd.yaml");
    std::fs::write(&config, yaml).expect("write config");
    let child = Command::new(bin.join("ctsd"))
        .arg("--config")
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CTSD_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ctsd");
    let mut d = Daemon {
        child,
        socket: dir.path().join("ctsd.sock"),
        bin: bin.clone(),
    };
    let pids = d.wait_running();
    println!(
        "ctsd bench: {} instances x {WORKERS} demo workers, binaries from {}",
        INSTANCES.len(),
        bin.display()
    );

    // Idle.
    std::thread::sleep(Duration::from_secs(1));
    let before = d.switches();
    std::thread::sleep(Duration::from_secs(10));
    println!("idle wake-ups/10s      {}", d.switches() - before);
    println!(
        "rss                    {:.1} MiB",
        d.rss_kib() as f64 / 1024.0
    );

    // Status.
    let times: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let out = d.ctl(&["status"]);
            assert!(out.status.success(), "status failed");
            t.elapsed()
        })
        .collect();
    let (med, max) = median_max(times);
    println!("status wall            median {}  max {}", ms(med), ms(max));

    // Exit to respawn: one worker of every slot, each its slot's first crash.
    let mut gaps = Vec::new();
    for worker in pids.iter().flatten() {
        let known = d.children();
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*worker as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill a worker");
        let end = t + Duration::from_secs(10);
        loop {
            if d.children().iter().any(|p| !known.contains(p)) {
                gaps.push(t.elapsed());
                break;
            }
            assert!(Instant::now() < end, "no replacement for {worker}");
            std::hint::spin_loop();
        }
        d.wait_running();
    }
    let (med, max) = median_max(gaps);
    println!("exit to respawn        median {}  max {}", ms(med), ms(max));

    // Two rolling restarts under load.
    let port = ports[2];
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    if get(port) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    for _ in 0..2 {
        let out = d.ctl(&["restart", "jordan"]);
        assert!(out.status.success(), "restart failed: {out:?}");
    }
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    println!(
        "rolling restarts       2 in {}  requests {}  failed {}",
        ms(took),
        ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );

    // Shutdown.
    d.wait_running();
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM ctsd");
    let status = d.child.wait().expect("wait for ctsd");
    println!("shutdown               {}  ({status})", ms(t.elapsed()));
}
