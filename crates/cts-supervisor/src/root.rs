//! The root shared by preload pools of the same code (see [`crate::preload`]): one process
//! imports the libraries the application uses (Django and the rest, without any instance's
//! settings), and forks one loader per instance, which then imports the application with its
//! instance's settings. Every instance's loader and workers share the libraries' memory.
//!
//! The root lives only while loaders are asked of it: it is started when one is needed, and
//! told to exit once nothing has been asked of it for [`IDLE`]. A loader that must load new
//! code (a roll) comes from a root started at most [`IDLE`] before the roll began (so that
//! instances restarted together share one), never from an older one: the libraries may have
//! changed with the code. A root is only used for loaders of the same command, directory
//! and user (its *fingerprint*); another fingerprint gets a root of its own.
//!
//! Which modules the root imports is a list, one a line, in a cache file that every loader
//! rewrites with the library modules it has after loading; when there is none yet, the
//! application is imported once by `python -m cts_preload --list-modules APP` to make it.

use crate::contain;
use crate::instance::Output;
use crate::preload::{self, Channel, Said};
use crate::spawn::{self, Containment, SpawnSpec};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// How long a root waits for another request before it is told to exit.
pub const IDLE: Duration = Duration::from_secs(2);

/// The answer to a loader request: the loader's pid (ctsd's child now), or why not.
pub(crate) type Answer = Result<u32, String>;

/// A root slot, shared by the actors of instances whose loaders may come from one root.
#[derive(Default)]
pub struct Root {
    current: Mutex<Option<Arc<Running>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").finish_non_exhaustive()
    }
}

/// How to start a root, if one must be started.
pub(crate) struct RootSpec {
    /// The root itself: the loader's argv with `--root --module-cache FILE`, without any
    /// instance's settings or secrets.
    pub root: SpawnSpec,
    /// `--list-modules` with an instance's environment, run when the cache is missing.
    pub list: SpawnSpec,
    /// The module cache file.
    pub cache: PathBuf,
    /// Where the root's own output goes.
    pub output: Arc<dyn Output>,
    /// Its `CTS_WORKER` tag.
    pub tag: String,
    /// How long it may take to be ready (the module list included); then it is killed and
    /// every loader asked of it fails.
    pub ready_timeout: Duration,
}

/// A loader asked of a root.
pub(crate) struct LoaderRequest {
    /// Its environment on top of the root's: the instance's.
    pub env: Vec<(String, String)>,
    /// The listening socket, the loader's channel end, its stdout and stderr.
    pub fds: Vec<OwnedFd>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Answer>,
}

/// One root process, from its start to its exit.
struct Running {
    fingerprint: String,
    started: Instant,
    state: Mutex<RunState>,
    /// Wakes its task when a request came (to re-arm the idle timer).
    kick: Notify,
}

#[derive(Default)]
struct RunState {
    channel: Option<Channel>,
    ready: bool,
    /// Why it cannot serve any more (failed, exited, closed).
    gone: Option<String>,
    queued: Vec<(u64, LoaderRequest)>,
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
}

impl RunState {
    /// Sends `req` (ready) or queues it.
    fn submit(&mut self, id: u64, req: LoaderRequest) {
        match (&self.channel, self.ready) {
            (Some(c), true) => {
                let fds: Vec<_> = req.fds.iter().map(AsRawFd::as_raw_fd).collect();
                match c.request("loader", id, &req.env, &fds) {
                    Ok(()) => {
                        self.waiting.insert(id, req.reply);
                    }
                    Err(e) => {
                        let _ = req
                            .reply
                            .send(Err(format!("cannot ask the root for a loader: {e}")));
                    }
                }
            }
            _ => self.queued.push((id, req)),
        }
    }

    /// Every request fails with `why`; the root serves no more.
    fn fail_all(&mut self, why: &str) {
        self.gone.get_or_insert_with(|| why.to_owned());
        for (_, req) in self.queued.drain(..) {
            let _ = req.reply.send(Err(why.to_owned()));
        }
        for (_, tx) in self.waiting.drain() {
            let _ = tx.send(Err(why.to_owned()));
        }
    }

    /// Takes what the root said; whether its channel is still open.
    fn heard(&mut self, said: Said) -> bool {
        match said {
            Said::Ready => {
                self.ready = true;
                for (id, req) in std::mem::take(&mut self.queued) {
                    self.submit(id, req);
                }
            }
            Said::Pid(id, loader) => {
                if let Some(tx) = self.waiting.remove(&id) {
                    let _ = tx.send(Ok(loader));
                }
            }
            Said::Error(id, why) => {
                if let Some(tx) = self.waiting.remove(&id) {
                    let _ = tx.send(Err(format!(
                        "the preload root could not fork a loader: {why}"
                    )));
                }
            }
            Said::Failed(text) => {
                let text = text.trim_end().to_owned();
                tracing::warn!("the preload root cannot import the libraries:\n{text}");
                self.fail_all(&format!("the preload root failed:\n{text}"));
            }
            Said::Closed => {
                self.fail_all("the preload root closed its channel");
                return false;
            }
        }
        true
    }

    fn idle(&self) -> bool {
        self.ready && self.queued.is_empty() && self.waiting.is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Root {
    /// Asks for a loader: from the running root when its fingerprint is `fingerprint` and it
    /// was started at or after `not_before`, else from a new root started with `how()`.
    pub(crate) fn request(
        &self,
        fingerprint: &str,
        not_before: Option<Instant>,
        how: impl FnOnce() -> RootSpec,
        req: LoaderRequest,
    ) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut current = lock(&self.current);
        if let Some(r) = current.as_ref() {
            let fits =
                r.fingerprint == fingerprint && not_before.map_or(true, |t| r.started + IDLE >= t);
            let mut st = lock(&r.state);
            if fits && st.gone.is_none() {
                st.submit(id, req);
                drop(st);
                r.kick.notify_one();
                return;
            }
            // Not for this request: it exits once it has answered what it was asked.
            if let Some(c) = &st.channel {
                c.close();
            }
            st.gone
                .get_or_insert_with(|| "replaced by a newer root".into());
        }
        let running = Arc::new(Running {
            fingerprint: fingerprint.to_owned(),
            started: Instant::now(),
            state: Mutex::new(RunState::default()),
            kick: Notify::new(),
        });
        lock(&running.state).submit(id, req);
        *current = Some(running.clone());
        drop(current);
        tokio::spawn(run(running, how()));
    }
}

/// A root's life: the module list if missing, the process, its answers, its exit.
async fn run(running: Arc<Running>, how: RootSpec) {
    let due = tokio::time::Instant::now() + how.ready_timeout;
    if !how.cache.exists() {
        list_modules(&how, due).await;
    }
    let started = start(&how);
    let (mut child, channel, pid) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot start the preload root: {e}");
            lock(&running.state).fail_all(&format!("cannot start the preload root: {e}"));
            return;
        }
    };
    lock(&running.state).channel = Some(channel.clone());
    let mut open = true;
    let mut killed = false;
    let status = loop {
        let (idle, waiting_ready) = {
            let st = lock(&running.state);
            (open && st.idle() && st.gone.is_none(), !st.ready && !killed)
        };
        tokio::select! {
            biased;
            // What it said comes before its exit: a root replaced by a newer one answers what
            // it was asked, then exits.
            said = channel.next(), if open => open = lock(&running.state).heard(said),
            status = child.wait() => break status,
            () = running.kick.notified() => {}
            () = tokio::time::sleep_until(due), if waiting_ready => {
                let why = format!(
                    "the preload root was not ready within {}",
                    crate::core::human(how.ready_timeout)
                );
                tracing::warn!("{why}; stopping it");
                lock(&running.state).fail_all(&why);
                let _ = child.start_kill();
                killed = true;
            }
            () = tokio::time::sleep(IDLE), if idle => {
                // Nothing asked of it for a while: it exits (end of file on its channel).
                let mut st = lock(&running.state);
                if st.idle() {
                    st.gone.get_or_insert_with(|| "closed after being idle".into());
                    channel.close();
                }
            }
        }
    };
    contain::reaped(pid);
    // Answers it wrote before it exited.
    while open {
        let said = tokio::time::timeout(Duration::from_millis(100), channel.next())
            .await
            .unwrap_or(Said::Closed);
        open = lock(&running.state).heard(said);
    }
    let why = match status {
        Ok(st) => format!(
            "the preload root {}",
            crate::watcher::describe(st).description
        ),
        Err(e) => format!("the preload root could not be waited for: {e}"),
    };
    lock(&running.state).fail_all(&why);
}

/// Starts the root process: its channel, its output, registered as ctsd's.
fn start(how: &RootSpec) -> Result<(tokio::process::Child, Channel, u32), String> {
    let (ours, theirs) =
        preload::channel().map_err(|e| format!("cannot create the root's channel: {e}"))?;
    let mut child = spawn::spawn_with_channel(
        &how.root,
        None,
        None,
        &Containment { tag: &how.tag },
        Some(theirs.as_raw_fd()),
    )
    .map_err(|e| format!("{}: {e}", spawn::program_name(&how.root.argv)))?;
    drop(theirs);
    let pid = child
        .id()
        .ok_or_else(|| "the root exited before it could be watched".to_owned())?;
    contain::watching(pid);
    how.output
        .attach(u32::MAX, pid, child.stdout.take(), child.stderr.take());
    let channel = Channel::new(ours).map_err(|e| format!("cannot watch the channel: {e}"))?;
    Ok((child, channel, pid))
}

/// Makes the module cache: the library modules the application imports (by `due`, or it is
/// killed and the root imports none this time).
async fn list_modules(how: &RootSpec, due: tokio::time::Instant) {
    use tokio::io::AsyncReadExt;
    let tag = format!("{}:list", how.tag);
    let spawned = spawn::spawn(&how.list, None, None, &Containment { tag: &tag });
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("cannot list the modules for the preload root: {e}");
            return;
        }
    };
    let pid = child.id();
    if let Some(pid) = pid {
        contain::watching(pid);
    }
    // Its stderr (a traceback when the application cannot be imported) goes to the log,
    // read from now on, so that a lot of it never blocks the process.
    if let Some(pid) = pid {
        how.output.attach(u32::MAX, pid, None, child.stderr.take());
    }
    let mut out = String::new();
    let stdout = child.stdout.take();
    let finished = tokio::time::timeout_at(due, async {
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_string(&mut out).await;
        }
        child.wait().await
    })
    .await;
    let status = match finished {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(
                "listing the modules for the preload root took longer than {}",
                crate::core::human(how.ready_timeout)
            );
            let _ = child.start_kill();
            child.wait().await
        }
    };
    if let Some(pid) = pid {
        contain::reaped(pid);
    }
    if !matches!(status, Ok(s) if s.success()) {
        tracing::warn!(
            "listing the modules for the preload root failed: the root imports none this time"
        );
        return;
    }
    let tmp = how.cache.with_extension("tmp");
    let written = std::fs::write(&tmp, out).and_then(|()| std::fs::rename(&tmp, &how.cache));
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e}", how.cache.display());
    }
}
