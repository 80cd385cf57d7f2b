//! The test fixture: a real `ctsd` in a temp dir, on ports the OS picked, with real workers.
//!
//! [`Daemon`] writes a config, starts `ctsd --ready-fd 3` and waits for the readiness byte (no
//! polling for the socket). On drop it stops ctsd by pid (SIGTERM, then SIGKILL) and then
//! SIGKILLs the process group of every worker pid it has seen, so nothing outlives a failed test.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// "It happened": generous, for shared noisy machines.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn ctsd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctsd")
}

pub fn ctsctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctsctl")
}

pub fn worker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cts-demo-worker")
}

/// A port nobody listens on right now, and that no other test of this run was given.
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        if claim_port(port) {
            return port;
        }
    }
}

/// Records `port` as handed out; false if it already was (tests run in parallel).
pub fn claim_port(port: u16) -> bool {
    static GIVEN: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    GIVEN.lock().map(|mut g| g.insert(port)).unwrap_or(true)
}

/// One instance of a test config.
#[derive(Debug, Clone)]
pub struct Inst {
    pub key: String,
    pub name: String,
    pub prefix: String,
    pub currency: String,
    pub port: u16,
    /// Extra YAML flow-mapping entries, e.g. `workers: 3, command: [...]`.
    pub extra: String,
}

impl Inst {
    pub fn new(key: &str, name: &str, prefix: &str, currency: &str) -> Inst {
        Inst {
            key: key.into(),
            name: name.into(),
            prefix: prefix.into(),
            currency: currency.into(),
            port: free_port(),
            extra: String::new(),
        }
    }

    pub fn with(mut self, extra: &str) -> Inst {
        self.extra = extra.into();
        self
    }
}

/// turkey, iraq, jordan.
pub fn three() -> Vec<Inst> {
    vec![
        Inst::new("turkey", "Turkey", "/TR", "TRY"),
        Inst::new("iraq", "Iraq", "/IQ", "IQD"),
        Inst::new("jordan", "Jordan", "/JO", "JOD"),
    ]
}

/// YAML for a command list.
pub fn yaml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{:?}", s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The demo worker with these extra arguments, as a YAML list.
pub fn demo(args: &[&str]) -> String {
    let mut v = vec![worker_bin()];
    v.extend_from_slice(args);
    yaml_list(&v)
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub log_dir: PathBuf,
    pub config: PathBuf,
    pub instances: Vec<Inst>,
    seen_pids: RefCell<BTreeSet<u32>>,
    extra: Extra,
}

/// What a test adds to ctsd's start, as systemd would: environment variables, and listening
/// sockets passed as fds 3.. with `LISTEN_FDS`, `LISTEN_FDNAMES` and `LISTEN_PID`.
#[derive(Default)]
pub struct Extra {
    pub env: Vec<(String, String)>,
    pub sockets: Vec<(String, OwnedFd)>,
}

/// Writes the config for `instances` with `defaults` (YAML mapping body lines, indented by the
/// caller's choice of two spaces) into a new temp dir.
pub fn write_config(dir: &Path, instances: &[Inst], defaults: &str) -> PathBuf {
    write_config_with(dir, instances, "", defaults)
}

/// As [`write_config`], with extra lines for the `ctsd:` section.
pub fn write_config_with(dir: &Path, instances: &[Inst], ctsd: &str, defaults: &str) -> PathBuf {
    let mut y = String::new();
    y.push_str("ctsd:\n  socket: run/ctsd.sock\n  log_dir: log\n");
    for line in ctsd.lines() {
        y.push_str("  ");
        y.push_str(line);
        y.push('\n');
    }
    y.push_str("defaults:\n");
    y.push_str(&format!("  command: {}\n", demo(&[])));
    y.push_str("  workers: 2\n");
    y.push_str("  ready: {notify: true, timeout: 20s}\n");
    y.push_str("  stop_timeout: 10s\n");
    y.push_str("  restart: {backoff_initial: 50ms, backoff_max: 1s}\n");
    for line in defaults.lines() {
        y.push_str("  ");
        y.push_str(line);
        y.push('\n');
    }
    y.push_str("instances:\n");
    for i in instances {
        y.push_str(&format!(
            "  {}: {{name: {}, prefix: {}, currency: {}, port: {}{}{}}}\n",
            i.key,
            i.name,
            i.prefix,
            i.currency,
            i.port,
            if i.extra.is_empty() { "" } else { ", " },
            i.extra
        ));
    }
    let path = dir.join("ctsd.yaml");
    std::fs::write(&path, y).expect("write config");
    path
}

impl Daemon {
    /// Starts ctsd with `instances` and extra `defaults` lines; returns once it is ready.
    pub fn start(instances: Vec<Inst>, defaults: &str) -> Daemon {
        Daemon::start_with(instances, "", defaults)
    }

    /// As [`Daemon::start`], with extra lines for the `ctsd:` section.
    pub fn start_with(instances: Vec<Inst>, ctsd: &str, defaults: &str) -> Daemon {
        Daemon::start_extra(instances, ctsd, defaults, Extra::default())
    }

    /// As [`Daemon::start_with`], with `extra` environment and passed sockets.
    pub fn start_extra(instances: Vec<Inst>, ctsd: &str, defaults: &str, extra: Extra) -> Daemon {
        let mut d = Daemon::prepare(instances, ctsd, defaults, extra);
        d.spawn_and_wait_ready();
        d
    }

    /// The daemon's directory and configuration, not started yet.
    pub fn prepare(instances: Vec<Inst>, ctsd: &str, defaults: &str, extra: Extra) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = write_config_with(dir.path(), &instances, ctsd, defaults);
        Daemon {
            socket: dir.path().join("run/ctsd.sock"),
            log_dir: dir.path().join("log"),
            config,
            dir,
            child: None,
            instances,
            seen_pids: RefCell::new(BTreeSet::new()),
            extra,
        }
    }

    /// Starts ctsd again in the same directory with the same configuration (after it exited).
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "ctsd still running");
        self.spawn_and_wait_ready();
    }

    fn spawn_and_wait_ready(&mut self) {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let child = self.spawn(Some(write));
        self.child = Some(child);
        if !wait_readable(&read, WAIT) {
            panic!(
                "ctsd did not become ready within {WAIT:?}\n{}",
                self.stderr()
            );
        }
        let mut byte = [0u8; 1];
        let n = std::fs::File::from(read).read(&mut byte).unwrap_or(0);
        assert_eq!(
            n,
            1,
            "ctsd closed its readiness fd without writing: it exited?\n{}",
            self.stderr()
        );
    }

    /// Starts ctsd; with `ready`, that pipe end becomes its `--ready-fd`. Passed sockets go to
    /// fds 3.., the readiness fd after them; `LISTEN_PID` is set by a shell that then `exec`s
    /// ctsd, as systemd sets it in the forked child.
    pub fn spawn(&self, ready: Option<OwnedFd>) -> Child {
        let stderr =
            std::fs::File::create(self.dir.path().join("ctsd.stderr")).expect("stderr file");
        let n = self.extra.sockets.len() as i32;
        let mut cmd = Command::new("sh");
        cmd.arg("-c");
        if n > 0 {
            cmd.arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
                .env("LISTEN_FDS", n.to_string())
                .env(
                    "LISTEN_FDNAMES",
                    self.extra
                        .sockets
                        .iter()
                        .map(|(name, _)| name.as_str())
                        .collect::<Vec<_>>()
                        .join(":"),
                );
        } else {
            cmd.arg("exec \"$0\" \"$@\"");
        }
        cmd.arg(ctsd_bin()).arg("--config").arg(&self.config);
        if ready.is_some() {
            cmd.arg("--ready-fd").arg((3 + n).to_string());
        }
        cmd.env_remove("CTSD_SOCKET")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("FDSTORE")
            .envs(self.extra.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // Source fds first moved above every target number, so no dup2 clobbers a source.
        let mut sources: Vec<i32> = self
            .extra
            .sockets
            .iter()
            .map(|(_, fd)| fd.as_raw_fd())
            .collect();
        if let Some(w) = &ready {
            sources.push(w.as_raw_fd());
        }
        // Filled in the child; allocated here, since the child may not allocate.
        let mut high = vec![0i32; sources.len()];
        // SAFETY: fcntl and dup2 are async-signal-safe; the vectors were built before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // Copies above every target first (F_DUPFD never replaces an open fd), so
                // that no dup2 onto a target clobbers a source still to be moved.
                let n = sources.len() as i32;
                for (i, src) in sources.iter().enumerate() {
                    let fd = nix::libc::fcntl(*src, nix::libc::F_DUPFD, 3 + n);
                    if fd == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high[i] = fd;
                }
                for i in 0..n {
                    // dup2 leaves the target without FD_CLOEXEC: it survives exec.
                    if nix::libc::dup2(high[i as usize], 3 + i) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    nix::libc::close(high[i as usize]);
                }
                Ok(())
            });
        }
        cmd.spawn().expect("spawn ctsd")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("ctsd running")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ctsd.stderr")).unwrap_or_default()
    }

    pub fn port(&self, key: &str) -> u16 {
        self.instances
            .iter()
            .find(|i| i.key == key)
            .expect("instance")
            .port
    }

    /// Runs ctsctl with `args` against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(ctsctl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("CTSD_SOCKET")
            .output()
            .expect("run ctsctl")
    }

    /// Whether ctsd has exited, within `limit`; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let st = wait_child(child, limit);
        if st.is_some() {
            self.child = None;
        }
        st
    }

    /// `ctsctl status --json`, parsed; remembers every worker pid for cleanup.
    pub fn status(&self) -> Value {
        self.try_status()
            .unwrap_or_else(|e| panic!("status failed: {e}\n{}", self.stderr()))
    }

    /// As [`Daemon::status`], but a failure is returned, not a panic.
    pub fn try_status(&self) -> Result<Value, String> {
        let out = self.ctl(&["status", "--json"]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        for inst in v["instances"].as_array().into_iter().flatten() {
            let programs = inst["programs"].as_array().into_iter().flatten();
            let pools = std::iter::once(inst).chain(programs);
            for w in pools.flat_map(|p| p["workers"].as_array().into_iter().flatten()) {
                if let Some(pid) = w["pid"].as_u64() {
                    self.seen_pids.borrow_mut().insert(pid as u32);
                }
            }
        }
        Ok(v)
    }

    pub fn instance(&self, key: &str) -> Value {
        self.status()["instances"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["key"] == key).cloned())
            .unwrap_or_else(|| panic!("no instance {key} in status"))
    }

    /// Pids of the instance's workers.
    pub fn pids(&self, key: &str) -> BTreeSet<u32> {
        self.instance(key)["workers"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .filter_map(|w| w["pid"].as_u64())
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pids of the instance's ready workers, once it is running with all of them ready.
    pub fn wait_running(&self, key: &str) -> BTreeSet<u32> {
        let mut last = Value::Null;
        let ok = wait_until(WAIT, || {
            last = self.instance(key);
            last["state"] == "running"
                && last["workers"].as_array().is_some_and(|ws| {
                    ws.len() as u64 == last["desired_workers"].as_u64().unwrap_or(0)
                        && ws.iter().all(|w| w["state"] == "ready")
                })
        });
        assert!(
            ok,
            "{key} not running with all workers ready: {last:#}\n{}",
            self.stderr()
        );
        self.pids(key)
    }

    /// Sends `sig` to ctsd and waits for it to exit.
    pub fn signal_and_wait(&mut self, sig: Signal) -> ExitStatus {
        let _ = self.try_status();
        let mut child = self.child.take().expect("ctsd running");
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal ctsd");
        wait_child(&mut child, WAIT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ctsd did not exit within {WAIT:?} after {sig}\n{}",
                self.stderr()
            )
        })
    }

    pub fn log(&self, key: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(key).join("output.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            if wait_child(&mut child, Duration::from_secs(15)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for pid in self.seen_pids.borrow().iter() {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

/// Waits for `child` to exit within `limit`; `None` if it did not. Polls `try_wait`: fine in a
/// test, never in the daemon.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_readable(fd: &OwnedFd, limit: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(limit.as_millis() as i32).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, ms), Ok(n) if n > 0)
}

/// Re-checks `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie still "exists" for kill(0); read its state to tell.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nobody listened: the port was closed.
    Refused,
    /// Anything else (reset, timeout, bad answer).
    Other(String),
}

/// One HTTP GET to 127.0.0.1:`port`; the JSON body of a 200.
pub fn get(port: u16, path: &str) -> Result<Value, Failure> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            Failure::Refused
        } else {
            Failure::Other(e.to_string())
        }
    })?;
    s.set_read_timeout(Some(WAIT)).ok();
    s.set_write_timeout(Some(WAIT)).ok();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| Failure::Other(e.to_string()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| Failure::Other(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Failure::Other(format!("no HTTP answer: {text:?}")));
    };
    if !head.starts_with("HTTP/1.1 200") {
        return Err(Failure::Other(format!("not 200: {head}")));
    }
    serde_json::from_str(body).map_err(|e| Failure::Other(format!("body {body:?}: {e}")))
}

/// A client looping on a port in a thread, counting outcomes.
pub struct Looper {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Vec<Failure>>>,
    pids: Arc<std::sync::Mutex<BTreeSet<u32>>>,
}

/// What a [`Looper`] saw.
#[derive(Debug)]
pub struct LoopStats {
    pub ok: u64,
    pub failures: Vec<Failure>,
    /// Worker pids that answered.
    pub pids: BTreeSet<u32>,
}

impl Looper {
    pub fn start(port: u16) -> Looper {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let pids = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let (s, o, p) = (stop.clone(), ok.clone(), pids.clone());
        let thread = std::thread::spawn(move || {
            let mut failures = Vec::new();
            let end = Instant::now() + Duration::from_secs(120);
            while !s.load(Ordering::Relaxed) && Instant::now() < end {
                match get(port, "/") {
                    Ok(v) => {
                        o.fetch_add(1, Ordering::Relaxed);
                        if let Some(pid) = v["pid"].as_u64() {
                            p.lock().expect("lock").insert(pid as u32);
                        }
                    }
                    Err(f) => failures.push(f),
                }
            }
            failures
        });
        Looper {
            stop,
            ok,
            thread: Some(thread),
            pids,
        }
    }

    /// Requests answered so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more requests were answered.
    pub fn wait_for_more(&self, n: u64) {
        let target = self.ok() + n;
        assert!(
            wait_until(WAIT, || self.ok() >= target),
            "the looping client stalled"
        );
    }

    pub fn finish(mut self) -> LoopStats {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self
            .thread
            .take()
            .map(|t| t.join().expect("looper thread"))
            .unwrap_or_default();
        let pids = self.pids.lock().expect("lock").clone();
        LoopStats {
            ok: self.ok(),
            failures,
            pids,
        }
    }
}

impl Drop for Looper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `map` of key → value of `ctsctl status --json` instances, for quick lookups.
pub fn by_key(status: &Value) -> BTreeMap<String, Value> {
    status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| (i["key"].as_str().unwrap_or_default().to_owned(), i.clone()))
        .collect()
}

/// Runs `script` with bash, ctsctl first on the `PATH` (what a shell completion script calls).
pub fn bash_with_ctsctl(script: &str) -> Output {
    let bin_dir = Path::new(ctsctl_bin()).parent().expect("binary directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("PATH", path)
        .output()
        .expect("bash")
}
