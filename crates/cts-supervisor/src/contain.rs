//! Nothing a worker starts outlives it: containment beyond the process group.
//!
//! A worker's process group catches what it forks, but not a descendant that calls `setsid()`
//! (a daemonizing helper, `subprocess.Popen(..., start_new_session=True)`): such a process
//! keeps the instance's listening socket and output pipes open after its worker is gone. ctsd
//! uses the kernel's tools to find and end them:
//!
//! - **Subreaper** ([`become_subreaper`]): ctsd is `PR_SET_CHILD_SUBREAPER`, so an orphaned
//!   descendant of a worker is re-parented to ctsd, not to init. [`reap_orphans`] reaps those
//!   that exit (ctsd's own workers are reaped by their watchers).
//! - **Tags**: every worker gets `CTS_WORKER=<ctsd pid>:<instance>:<worker id>` in its
//!   environment, inherited by what it starts. When a worker exits, the orphans ctsd adopted
//!   that carry its tag are killed ([`kill_orphans_of`]); they count as the instance's strays
//!   meanwhile ([`strays`]). At start, processes tagged by a ctsd that no longer runs (it was
//!   SIGKILLed) are killed too ([`kill_leftovers`]), so that they cannot hold a port.
//! - **Cgroups** ([`Cgroups`]), where the system gives ctsd a writable cgroup v2 (systemd's
//!   `Delegate=yes`, or root): each worker runs in a cgroup of its own, which it joins between
//!   fork and exec, and which is killed as a whole (`cgroup.kill`) when the worker exits, so even
//!   a descendant that cleared its environment goes.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The environment variable that tags a worker and everything it starts.
pub const WORKER_TAG: &str = "CTS_WORKER";

/// The pids of the workers being watched (reaped by their watcher, never by
/// [`reap_orphans`]).
static WORKERS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// The tag of worker `id` of `key` in this ctsd.
pub fn tag(key: &str, id: u64) -> String {
    format!("{}:{key}:{id}", std::process::id())
}

/// Makes ctsd the reaper of its workers' orphaned descendants.
///
/// # Errors
///
/// When the kernel refuses (it never does on Linux ≥ 3.4).
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Records `pid` as a worker (its watcher reaps it).
pub fn watching(pid: u32) {
    let mut w = WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
    w.get_or_insert_with(HashSet::new).insert(pid);
}

/// `pid` was reaped by its watcher.
pub fn reaped(pid: u32) {
    let mut w = WORKERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(w) = w.as_mut() {
        w.remove(&pid);
    }
}

fn is_worker(pid: u32) -> bool {
    WORKERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|w| w.contains(&pid))
}

/// ctsd's children that are not workers: adopted orphans.
fn adopted() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter(|p| !is_worker(*p))
        .collect()
}

/// Reaps the adopted orphans that have exited. Called when SIGCHLD arrives; never waits.
pub fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    for pid in adopted() {
        // WNOHANG: a live orphan is left alone (to its worker's exit, or ctsd's).
        let _ = waitpid(
            nix::unistd::Pid::from_raw(pid as i32),
            Some(WaitPidFlag::WNOHANG),
        );
    }
}

/// The value of `CTS_WORKER` in `pid`'s environment.
fn tag_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{WORKER_TAG}=");
    environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Every process of this PID namespace but ctsd and its workers, with its tag.
fn tagged() -> impl Iterator<Item = (u32, String)> {
    let me = std::process::id();
    let ns = pid_namespace("self");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(move |&pid| pid != me && !is_worker(pid))
        .filter_map(|pid| tag_of(pid).map(|t| (pid, t)))
        // A container's processes are tagged with pids of its own namespace.
        .filter(move |(pid, _)| pid_namespace(&pid.to_string()) == ns)
}

/// The PID namespace of `/proc/<pid>` (`self` for ctsd's own).
fn pid_namespace(pid: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Kills everything worker `id` of `key` left behind: every process still carrying its tag,
/// at any depth (an escaped daemon's own children too), not only the orphans ctsd adopted.
pub fn kill_orphans_of(key: &str, id: u64) {
    let wanted = tag(key, id);
    for (pid, t) in tagged() {
        if t == wanted {
            kill(pid);
        }
    }
}

/// Kills every process that carries a tag of this ctsd's workers (ctsd is exiting).
pub fn kill_all_orphans() {
    let mine = format!("{}:", std::process::id());
    for (pid, t) in tagged() {
        if t.starts_with(&mine) {
            kill(pid);
        }
    }
}

/// How many adopted orphans of each pool's workers are alive, by the pool's key (`jordan` for
/// the web pool, `jordan:celery` for a program); one scan of `/proc` for all of them.
pub fn strays() -> std::collections::HashMap<String, u32> {
    let mine = format!("{}:", std::process::id());
    let mut counts = std::collections::HashMap::new();
    for pid in adopted() {
        // `<ctsd pid>:<key>:<worker id>`: the key is what lies between.
        let Some(tag) = tag_of(pid) else { continue };
        let Some((key, _id)) = tag.strip_prefix(&mine).and_then(|t| t.rsplit_once(':')) else {
            continue;
        };
        *counts.entry(key.to_owned()).or_default() += 1;
    }
    counts
}

/// Kills processes tagged by a ctsd that is no longer running (it was SIGKILLed and they
/// escaped to init), and waits (up to 5 s) until they have exited, so that a singleton's new
/// process never starts beside its old one; returns how many.
pub fn kill_leftovers() -> usize {
    let mut killed = Vec::new();
    for (pid, t) in tagged() {
        let Some(owner) = t.split(':').next().and_then(|o| o.parse::<u32>().ok()) else {
            continue;
        };
        if owner != std::process::id() && !alive(owner) {
            kill(pid);
            killed.push(pid);
        }
    }
    // Once, at start: SIGKILL is delivered asynchronously, and the exit takes a moment.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while killed.iter().any(|&pid| alive(pid)) && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let alive: Vec<String> = killed
        .iter()
        .filter(|&&pid| alive(pid))
        .map(u32::to_string)
        .collect();
    if !alive.is_empty() {
        tracing::warn!(
            "process(es) {} of a ctsd that is gone are still alive 5 s after SIGKILL",
            alive.join(", ")
        );
    }
    killed.len()
}

/// Whether a process `pid` runs (a zombie does not). A ctsd whose pid is alive is taken to be
/// running, whatever program now has the pid: the careful side, never killing what another
/// running ctsd (a release build beside a debug one, a second installation) looks after.
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// State and parent pid of `pid`, from `/proc/<pid>/stat` (`pid (comm) state ppid ...`; comm
/// may hold spaces and parentheses, so the fields are read after the last `)`).
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// Per-worker cgroups under ctsd's own cgroup v2, when it may create them.
#[derive(Debug)]
pub struct Cgroups {
    /// `<ctsd's cgroup>/ctsd-<pid>`, removed when ctsd exits.
    root: PathBuf,
    /// Cgroups made ahead of need, so that making one is not on the way of a spawn (that is
    /// what a crashed worker's clients wait for).
    spares: Mutex<Vec<WorkerCgroup>>,
    /// Names the next one.
    next: std::sync::atomic::AtomicU64,
    /// Cgroups of exited workers, killed, removed once empty. Only these are removed: a new
    /// worker's cgroup is empty too until the mover has moved it in.
    retired: Mutex<Vec<PathBuf>>,
    /// To the thread that moves workers into their cgroups.
    mover: Mutex<std::sync::mpsc::Sender<(u32, PathBuf)>>,
}

/// Spare cgroups kept ready.
const SPARES: usize = 4;

/// One worker's cgroup.
#[derive(Debug)]
pub struct WorkerCgroup {
    dir: PathBuf,
}

impl WorkerCgroup {
    /// Kills every process in it.
    pub fn kill(&self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
    }
}

impl Cgroups {
    /// ctsd's cgroup v2, if mounted and writable: creates `ctsd-<pid>` in it, and removes those
    /// of ctsds that no longer run (killing what was left in them).
    pub fn detect() -> Option<Cgroups> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mount = mountinfo.lines().find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            post.starts_with("cgroup2 ")
                .then(|| pre.split_whitespace().nth(4).map(PathBuf::from))
                .flatten()
        })?;
        let base = mount.join(rel.trim_start_matches('/'));
        if !base.join("cgroup.kill").exists() && !base.join("cgroup.procs").exists() {
            return None;
        }
        sweep_stale(&base);
        let root = base.join(format!("ctsd-{}", std::process::id()));
        match std::fs::create_dir(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        let c = Cgroups::at(root);
        c.take_over_existing();
        c.prepare();
        Some(c)
    }

    /// After `ctsctl upgrade` this ctsd has the pid, and so the `ctsd-<pid>` cgroup, of the one
    /// it replaced: new cgroups are numbered after the existing ones, and those that hold no
    /// adopted worker (spares, exited workers') are removed once empty.
    fn take_over_existing(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut highest = None;
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        for d in dirs.flatten() {
            let Some(n) = d
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('w'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            highest = highest.max(Some(n));
            retired.push(d.path());
        }
        if let Some(n) = highest {
            self.next.store(n + 1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The cgroup of worker `pid`, when it is one of these (a worker taken over from the ctsd
    /// this one replaced).
    pub fn of(&self, pid: u32) -> Option<WorkerCgroup> {
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let name = Path::new(rel).file_name()?;
        let dir = self.root.join(name);
        (rel.ends_with(&format!(
            "{}/{}",
            self.root.file_name()?.to_str()?,
            name.to_str()?
        )) && dir.is_dir())
        .then_some(WorkerCgroup { dir })
    }

    fn at(root: PathBuf) -> Cgroups {
        let (tx, rx) = std::sync::mpsc::channel::<(u32, PathBuf)>();
        // Moving a process into a cgroup waits for an RCU grace period (milliseconds): a
        // thread of its own does it, so that a spawn (what a crashed worker's clients wait
        // for) never does. What a worker forks before it is moved stays tagged.
        let _ = std::thread::Builder::new()
            .name("ctsd-cgroups".into())
            .spawn(move || {
                while let Ok((pid, procs)) = rx.recv() {
                    // Still ctsd's child: a worker that exited at once may have left its
                    // pid to some other process by now, which is none of ctsd's business.
                    if stat(pid).map(|(_, ppid)| ppid) == Some(std::process::id()) {
                        let _ = std::fs::write(procs, pid.to_string());
                    }
                }
            });
        Cgroups {
            root,
            spares: Mutex::new(Vec::new()),
            next: std::sync::atomic::AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
            mover: Mutex::new(tx),
        }
    }

    /// Moves worker `pid` into `cgroup` (soon, on the mover thread).
    pub fn enter(&self, pid: u32, cgroup: &WorkerCgroup) {
        let mover = self.mover.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = mover.send((pid, cgroup.dir.join("cgroup.procs")));
    }

    /// Removes the cgroups of exited workers that have emptied, and makes spares.
    pub fn prepare(&self) {
        self.tidy();
        let mut spares = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
        while spares.len() < SPARES {
            match self.make() {
                Ok(c) => spares.push(c),
                Err(_) => break,
            }
        }
    }

    fn make(&self) -> io::Result<WorkerCgroup> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.root.join(format!("w{n}"));
        std::fs::create_dir(&dir)?;
        Ok(WorkerCgroup { dir })
    }

    /// Where the cgroups are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An empty cgroup for a worker about to be spawned: a spare when there is one.
    ///
    /// # Errors
    ///
    /// When none can be made.
    pub fn worker(&self) -> io::Result<WorkerCgroup> {
        let spare = self
            .spares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match spare {
            Some(c) => Ok(c),
            None => self.make(),
        }
    }

    /// Kills what is left in an exited worker's cgroup; it is removed once empty.
    pub fn retire(&self, cgroup: WorkerCgroup) {
        cgroup.kill();
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cgroup.dir);
    }

    /// Removes the retired cgroups that have emptied.
    fn tidy(&self) {
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|dir| dir.exists() && (populated(dir) || std::fs::remove_dir(dir).is_err()));
    }

    /// Kills whatever is left in every worker cgroup and removes them (ctsd is exiting); waits
    /// a bounded time for the killed processes to go.
    pub fn remove(&self) {
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return;
        };
        let dirs: Vec<PathBuf> = dirs
            .flatten()
            .map(|d| d.path())
            .filter(|p| p.is_dir())
            .collect();
        for d in &dirs {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
        for d in &dirs {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// `populated 1` in `cgroup.events`.
fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(true)
}

/// Kills and removes `ctsd-<pid>` cgroups of ctsds that no longer run.
fn sweep_stale(base: &Path) {
    let Ok(dirs) = std::fs::read_dir(base) else {
        return;
    };
    for d in dirs.flatten() {
        let name = d.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ctsd-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        let stale = Cgroups::at(d.path());
        stale.remove();
    }
}
