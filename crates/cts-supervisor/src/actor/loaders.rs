//! The actor's side of preload mode (see [`crate::preload`]): it starts the pool's loader,
//! asks it for workers, takes the workers it forked as its own, and rolls onto new code by
//! starting a new loader first.
//!
//! Spawns are answered late here: [`crate::core::Effect::Spawn`] is sent to the loader, and the
//! pool learns the pid (or the failure) when the loader answers. Meanwhile the worker is
//! `Spawning` in the pool, which every decision already handles (a stop before the pid is
//! known is sent once it is).

use super::{Actor, Event, Request, Ticket, WorkerId};
use crate::contain;
use crate::core::{Exit, Refusal};
use crate::preload::{self, Channel, LoaderEvent, Said};
use crate::spawn::{self, Containment};
use crate::watcher::{PidFd, Watched};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

/// The loaders of a preload pool.
#[derive(Default)]
pub(super) struct Loaders {
    /// Numbers the loaders.
    generation: u64,
    /// The loader spawns go to (ready or still loading).
    current: Option<Loader>,
    /// A loader loading new code for a roll, and the request that goes on once it is ready.
    next: Option<(Loader, Ticket, Request)>,
    /// Spawns waiting for `current` to be ready.
    queued: Vec<Pending>,
    /// Spawns sent, waiting for their answer.
    sent: HashMap<WorkerId, Pending>,
}

/// One loader process.
struct Loader {
    generation: u64,
    /// 0 until a root has forked it.
    pid: u32,
    channel: Channel,
    ready: bool,
    /// A loader asked of a root: its stdout and stderr (read ends), attached once its pid is
    /// known.
    pipes: Option<(OwnedFd, OwnedFd)>,
    /// Its watcher, which stops for a handover.
    task: tokio::task::JoinHandle<()>,
    /// When it was asked for: it is due ready within `ready.timeout`.
    started: Instant,
}

impl Loader {
    /// Tells the loader to exit (end of file on its channel); its watcher reaps it.
    fn close(&self) {
        self.channel.close();
    }
}

/// A worker asked of a loader: what ctsd made for it before the fork.
struct Pending {
    id: WorkerId,
    slot: u32,
    notify: Option<(tokio::net::UnixDatagram, String)>,
    /// Read ends, ctsd's.
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// Write ends, the worker's (sent with the request, then closed here).
    out_w: Option<OwnedFd>,
    err_w: Option<OwnedFd>,
    /// Once sent: to which loader, and when (its answer is due within `ready.timeout`).
    sent: Option<(u64, Instant)>,
}

impl Loaders {
    /// Whether something is in flight that a handover cannot carry.
    pub(super) fn busy(&self) -> Option<&'static str> {
        if self.next.is_some() {
            Some("new code is being loaded")
        } else if !self.queued.is_empty() || !self.sent.is_empty() {
            Some("a worker is being forked")
        } else {
            None
        }
    }
}

/// Whether `request` replaces every worker (and so needs the code loaded anew).
pub(super) fn rolls(request: &Request) -> bool {
    matches!(
        request,
        Request::Restart | Request::Reconfigure { roll: true, .. }
    )
}

impl Actor {
    /// Asks the loader for worker `id`; the answer comes later (`Ok(None)`), or the spawn
    /// fails now.
    pub(super) fn spawn_preloaded(
        &mut self,
        id: WorkerId,
        slot: u32,
    ) -> Result<Option<u32>, String> {
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| format!("cannot create a pipe: {e}"))
        };
        let (stdout, out_w) = pipe()?;
        let (stderr, err_w) = pipe()?;
        let name = format!("{}/{id}", self.notify_prefix);
        let notify = spawn::notify_socket(&name)
            .map_err(|e| format!("cannot create the notify socket: {e}"))?;
        let pending = Pending {
            id,
            slot,
            notify: Some(notify),
            stdout,
            stderr,
            out_w: Some(out_w),
            err_w: Some(err_w),
            sent: None,
        };
        let loaders = self.loaders.get_or_insert_with(Loaders::default);
        if loaders.current.is_none() && loaders.next.is_none() {
            let loader = self.start_loader(None)?;
            self.loaders.get_or_insert_with(Loaders::default).current = Some(loader);
        }
        let loaders = self.loaders.get_or_insert_with(Loaders::default);
        match &loaders.current {
            Some(l) if l.ready => {
                let (channel, generation) = (l.channel.clone(), l.generation);
                self.send(&channel, generation, pending)?;
            }
            _ => loaders.queued.push(pending),
        }
        Ok(None)
    }

    /// Sends the request for `p` on `channel`; `sent` holds it until the answer.
    fn send(&mut self, channel: &Channel, generation: u64, mut p: Pending) -> Result<(), String> {
        let tag = contain::tag(&self.key, p.id);
        let mut env = vec![(contain::WORKER_TAG.to_owned(), tag)];
        if let Some((_, name)) = &p.notify {
            env.push(("NOTIFY_SOCKET".to_owned(), name.clone()));
        }
        let fds = match (&p.out_w, &p.err_w) {
            (Some(o), Some(e)) => [o.as_raw_fd(), e.as_raw_fd()],
            _ => return Err("the worker's pipes are gone".into()),
        };
        channel
            .spawn(p.id, &env, &fds)
            .map_err(|e| format!("cannot ask the loader for a worker: {e}"))?;
        // The loader has its copies now.
        p.out_w = None;
        p.err_w = None;
        p.sent = Some((generation, Instant::now()));
        self.loaders
            .get_or_insert_with(Loaders::default)
            .sent
            .insert(p.id, p);
        Ok(())
    }

    /// Starts a loader with the pool's command, socket and environment: forked by the root
    /// the pool shares with instances of the same code (one started at or after
    /// `not_before`: new code needs new libraries), or started directly without one.
    fn start_loader(&mut self, not_before: Option<std::time::Instant>) -> Result<Loader, String> {
        let spec = self.spec.as_ref().map_err(Clone::clone)?.clone();
        cts_config::find_program(&super::in_release(&self.pool_spec, &self.release))
            .map_err(|e| e.message)?;
        let listener = self.listener_fd(true)?;
        let (ours, theirs) =
            preload::channel().map_err(|e| format!("cannot create the loader's channel: {e}"))?;
        let loaders = self.loaders.get_or_insert_with(Loaders::default);
        loaders.generation += 1;
        let generation = loaders.generation;
        let tag = format!("{}:{}:@loader{generation}", std::process::id(), self.key);
        if let Some((root, cache_dir)) = self.root.clone() {
            return self.loader_from_root(
                (root, cache_dir),
                spec,
                listener,
                (ours, theirs),
                generation,
                &tag,
                not_before,
            );
        }
        let mut child = spawn::spawn_with_channel(
            &spec,
            listener,
            None,
            &Containment { tag: &tag },
            Some(theirs.as_raw_fd()),
        )
        .map_err(|e| format!("{}: {e}", spawn::program_name(&spec.argv)))?;
        drop(theirs);
        let Some(pid) = child.id() else {
            return Err("the loader exited before it could be watched".into());
        };
        contain::watching(pid);
        // Its own output, tagged `loader/<pid>`.
        self.output
            .attach(u32::MAX, pid, child.stdout.take(), child.stderr.take());
        let channel = Channel::new(ours).map_err(|e| format!("cannot watch the channel: {e}"))?;
        let task = tokio::spawn(preload::watch(
            generation,
            child,
            channel.clone(),
            self.events_tx.clone(),
            self.handover.clone(),
        ));
        self.note(&format!(
            "loader pid {pid} started (loading the application)"
        ));
        Ok(Loader {
            generation,
            pid,
            channel,
            ready: false,
            pipes: None,
            task,
            started: Instant::now(),
        })
    }

    /// Asks the shared root for a loader: it forks one, which imports the application with
    /// this instance's environment.
    #[allow(clippy::too_many_arguments)]
    fn loader_from_root(
        &mut self,
        (root, cache_dir): (std::sync::Arc<crate::root::Root>, std::path::PathBuf),
        spec: spawn::SpawnSpec,
        listener: Option<std::os::fd::RawFd>,
        (ours, theirs): (OwnedFd, OwnedFd),
        generation: u64,
        tag: &str,
        not_before: Option<std::time::Instant>,
    ) -> Result<Loader, String> {
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| format!("cannot create a pipe: {e}"))
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let listener = listener.ok_or("the loader needs the listening socket")?;
        // SAFETY: the actor's listener stays open for this call; the copy is close-on-exec
        // (F_DUPFD_CLOEXEC), so no process started meanwhile inherits it.
        let listener = unsafe { std::os::fd::BorrowedFd::borrow_raw(listener) }
            .try_clone_to_owned()
            .map_err(|e| format!("cannot duplicate the socket: {e}"))?;
        // The instance's whole environment over the root's (which has no instance's).
        let mut env: Vec<(String, String)> = spec.env.clone();
        env.extend(
            spec.secrets
                .expose()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env.push(("LISTEN_FDS".into(), "1".into()));
        env.push(("LISTEN_FDNAMES".into(), spec.fd_name.clone()));
        env.push((contain::WORKER_TAG.into(), tag.to_owned()));
        let pythonpath = spec
            .env
            .iter()
            .find(|(k, _)| k == "PYTHONPATH")
            .map(|(_, v)| v.clone());
        let fingerprint = format!(
            "{:?}|{:?}|{:?}|{pythonpath:?}",
            spec.argv, spec.privileges.cwd, spec.privileges.credentials
        );
        let cache = cache_dir.join(format!("{:016x}.modules", fnv(&fingerprint)));
        let how = || crate::root::RootSpec {
            root: root_spec(&spec, &cache),
            list: spawn::SpawnSpec {
                argv: spec
                    .argv
                    .iter()
                    .cloned()
                    .chain(["--list-modules".to_owned()])
                    .collect(),
                ..spec.clone()
            },
            cache: cache.clone(),
            output: self.output.clone(),
            tag: format!("{}:{}:@root", std::process::id(), self.key),
            ready_timeout: self.pool_spec.ready.timeout,
        };
        let (reply, forked) = tokio::sync::oneshot::channel();
        let request = crate::root::LoaderRequest {
            env,
            fds: vec![listener, theirs, out_w, err_w],
            reply,
        };
        root.request(&fingerprint, not_before, how, request);
        let channel = Channel::new(ours).map_err(|e| format!("cannot watch the channel: {e}"))?;
        let task = tokio::spawn(preload::watch_forked(
            generation,
            forked,
            channel.clone(),
            self.events_tx.clone(),
            self.handover.clone(),
        ));
        Ok(Loader {
            generation,
            pid: 0,
            channel,
            ready: false,
            pipes: Some((out_r, err_r)),
            task,
            started: Instant::now(),
        })
    }

    /// A roll of a preload pool: new code is loaded by a new loader first; the roll goes on
    /// once it is ready, and is refused if it cannot load (the old workers serve on).
    pub(super) fn roll_preloaded(&mut self, ticket: Ticket, request: Request) {
        if let Some(busy) = self.loaders.as_ref().and_then(|l| l.next.as_ref()) {
            let why = format!("loader pid {} is still loading the new code", busy.0.pid);
            self.refuse(ticket, Refusal::RolledBack(why));
            return;
        }
        match self.start_loader(Some(std::time::Instant::now())) {
            Ok(loader) => {
                self.loaders.get_or_insert_with(Loaders::default).next =
                    Some((loader, ticket, request));
            }
            Err(e) => {
                let why = format!("the new code could not be loaded: {e}");
                self.refuse(ticket, Refusal::RolledBack(why));
            }
        }
    }

    fn refuse(&mut self, ticket: Ticket, why: Refusal) {
        if let Some(tx) = self.waiting.remove(&ticket) {
            let _ = tx.send(Err(why));
        }
    }

    /// What a loader said or did, as the pool's events (possibly none).
    pub(super) fn on_loader(&mut self, ev: LoaderEvent) -> Vec<Event> {
        let Some(loaders) = self.loaders.as_mut() else {
            return Vec::new();
        };
        let is_current =
            |l: &Loaders, g: u64| l.current.as_ref().is_some_and(|c| c.generation == g);
        let is_next = |l: &Loaders, g: u64| l.next.as_ref().is_some_and(|n| n.0.generation == g);
        match ev {
            LoaderEvent::Said(g, Said::Ready) if is_current(loaders, g) => {
                if let Some(c) = loaders.current.as_mut() {
                    c.ready = true;
                }
                self.flush_queued("")
            }
            LoaderEvent::Said(g, Said::Ready) if is_next(loaders, g) => {
                let Some((mut loader, ticket, request)) = loaders.next.take() else {
                    return Vec::new();
                };
                loader.ready = true;
                // The old loader goes: its workers are ctsd's and stay until the roll
                // replaces them.
                if let Some(old) = loaders.current.replace(loader) {
                    old.close();
                }
                let mut events = self.flush_queued(" with the new code");
                events.push(Event::Request(ticket, request));
                events
            }
            LoaderEvent::Said(g, Said::Failed(traceback)) => {
                let text = traceback.trim_end().to_owned();
                let last = text.lines().last().unwrap_or("").to_owned();
                tracing::warn!(instance = %self.key, "loader cannot load the application:\n{text}");
                self.output
                    .event(&format!("loader cannot load the application:\n{text}"));
                if is_next(loaders, g) {
                    if let Some((l, ticket, _)) = loaders.next.take() {
                        l.close();
                        let why = format!(
                            "the new code cannot be loaded, the old workers keep serving:\n{text}"
                        );
                        self.refuse(ticket, Refusal::RolledBack(why));
                    }
                    return self
                        .fail_orphaned_queue(&format!("the application cannot be loaded: {last}"));
                }
                if is_current(loaders, g) {
                    return self.lose_current(&format!("the application cannot be loaded: {last}"));
                }
                Vec::new()
            }
            LoaderEvent::Said(_, Said::Pid(id, pid)) => {
                let Some(p) = loaders.sent.remove(&id) else {
                    return Vec::new();
                };
                self.adopt_forked(p, pid)
            }
            LoaderEvent::Said(_, Said::Error(id, why)) => match loaders.sent.remove(&id) {
                Some(_) => vec![Event::SpawnFailed(
                    id,
                    format!("the loader could not fork: {why}"),
                )],
                None => Vec::new(),
            },
            LoaderEvent::Said(_, Said::Closed) | LoaderEvent::Said(_, Said::Ready) => Vec::new(),
            LoaderEvent::Forked(g, pid) => {
                let loader = loaders
                    .current
                    .as_mut()
                    .filter(|c| c.generation == g)
                    .or_else(|| {
                        loaders
                            .next
                            .as_mut()
                            .map(|n| &mut n.0)
                            .filter(|n| n.generation == g)
                    });
                let Some(loader) = loader else {
                    return Vec::new();
                };
                loader.pid = pid;
                let pipes = loader.pipes.take();
                if let Some((out, err)) = pipes {
                    self.output.attach_pipes(u32::MAX, pid, out, err);
                }
                self.note(&format!(
                    "loader pid {pid} forked by the preload root (loading the application)"
                ));
                Vec::new()
            }
            LoaderEvent::Exited(g, exit) => {
                if is_next(loaders, g) {
                    if let Some((l, ticket, _)) = loaders.next.take() {
                        let why = format!(
                            "the new code could not be loaded: loader pid {} {}; the old workers keep serving",
                            l.pid, exit.description
                        );
                        self.refuse(ticket, Refusal::RolledBack(why));
                    }
                    return self.fail_orphaned_queue("the new loader exited");
                }
                if is_current(loaders, g) {
                    let pid = loaders.current.as_ref().map_or(0, |c| c.pid);
                    self.note(&format!("loader pid {pid} {}", exit.description));
                    return self.lose_current(&format!("the loader {}", exit.description));
                }
                // A loader a roll retired: what it did not answer will not be answered.
                Self::unanswered(loaders, g)
                    .into_iter()
                    .map(|id| Event::SpawnFailed(id, "its loader exited".into()))
                    .collect()
            }
        }
    }

    /// The current loader is ready (`what` says more): the spawns waiting for it are sent.
    fn flush_queued(&mut self, what: &str) -> Vec<Event> {
        let Some(loaders) = self.loaders.as_mut() else {
            return Vec::new();
        };
        let queued = std::mem::take(&mut loaders.queued);
        let Some((channel, pid, generation)) = loaders
            .current
            .as_ref()
            .map(|c| (c.channel.clone(), c.pid, c.generation))
        else {
            return Vec::new();
        };
        self.note(&format!("loader pid {pid} ready{what}"));
        let mut events = Vec::new();
        for p in queued {
            let id = p.id;
            if let Err(e) = self.send(&channel, generation, p) {
                events.push(Event::SpawnFailed(id, e));
            }
        }
        events
    }

    /// The current loader is gone: every spawn waiting for it fails (and is retried with the
    /// pool's backoff, which starts a new loader).
    fn lose_current(&mut self, why: &str) -> Vec<Event> {
        let Some(loaders) = self.loaders.as_mut() else {
            return Vec::new();
        };
        let Some(lost) = loaders.current.take() else {
            return Vec::new();
        };
        lost.close();
        // Spawns waiting for a loader wait for the one loading new code, if there is one.
        let mut failed: Vec<WorkerId> = if loaders.next.is_none() {
            loaders.queued.drain(..).map(|p| p.id).collect()
        } else {
            Vec::new()
        };
        failed.extend(Self::unanswered(loaders, lost.generation));
        failed
            .into_iter()
            .map(|id| Event::SpawnFailed(id, why.to_owned()))
            .collect()
    }

    /// With neither a loader nor one loading, the spawns waiting for one fail (the pool's
    /// backoff retries them, starting a loader).
    fn fail_orphaned_queue(&mut self, why: &str) -> Vec<Event> {
        let Some(l) = self.loaders.as_mut() else {
            return Vec::new();
        };
        if l.current.is_some() || l.next.is_some() {
            return Vec::new();
        }
        l.queued
            .drain(..)
            .map(|p| Event::SpawnFailed(p.id, why.to_owned()))
            .collect()
    }

    /// Takes the spawns sent to loader `generation` and not answered.
    fn unanswered(loaders: &mut Loaders, generation: u64) -> Vec<WorkerId> {
        let ids: Vec<WorkerId> = loaders
            .sent
            .iter()
            .filter(|(_, p)| p.sent.is_some_and(|(g, _)| g == generation))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            loaders.sent.remove(id);
        }
        ids
    }

    /// When a loader deadline is due: one not ready within `ready.timeout`, or a spawn it
    /// did not answer within it.
    pub(super) fn loader_deadline(&self) -> Option<Instant> {
        let l = self.loaders.as_ref()?;
        let timeout = self.pool_spec.ready.timeout;
        let loading = l
            .current
            .iter()
            .chain(l.next.as_ref().map(|n| &n.0))
            .filter(|c| !c.ready)
            .map(|c| c.started + timeout);
        let sent = l
            .sent
            .values()
            .filter_map(|p| p.sent.map(|(_, t)| t + timeout));
        loading.chain(sent).min()
    }

    /// What is overdue at `now` (see [`Actor::loader_deadline`]), as the pool's events: a
    /// loader that did not load in time is stopped, and what waited for it fails.
    pub(super) fn loader_timeouts(&mut self, now: Instant) -> Vec<Event> {
        let timeout = self.pool_spec.ready.timeout;
        let within = crate::core::human(timeout);
        let Some(l) = self.loaders.as_mut() else {
            return Vec::new();
        };
        let late = |c: &Loader| !c.ready && c.started + timeout <= now;
        let mut events = Vec::new();
        let overdue: Vec<WorkerId> = l
            .sent
            .iter()
            .filter(|(_, p)| p.sent.is_some_and(|(_, t)| t + timeout <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            l.sent.remove(&id);
            let why = format!("the loader did not fork it within {within}");
            events.push(Event::SpawnFailed(id, why));
        }
        if l.next.as_ref().is_some_and(|n| late(&n.0)) {
            if let Some((old, ticket, _)) = l.next.take() {
                old.close();
                kill_group(old.pid);
                let why = format!(
                    "the new code was not loaded within {within}; the old workers keep serving"
                );
                self.refuse(ticket, Refusal::RolledBack(why));
            }
            events.extend(self.fail_orphaned_queue("the new loader was not ready in time"));
        }
        let current_late = self
            .loaders
            .as_ref()
            .and_then(|l| l.current.as_ref())
            .filter(|c| late(c))
            .map(|c| c.pid);
        if let Some(pid) = current_late {
            kill_group(pid);
            let why = format!("the loader was not ready within {within}");
            tracing::warn!(instance = %self.key, "{why}; stopping it");
            self.output.event(&format!("{why}; stopping it"));
            events.extend(self.lose_current(&why));
        }
        events
    }

    /// Worker `p`, forked by the loader as `pid` (now ctsd's child), supervised from now on.
    fn adopt_forked(&mut self, p: Pending, pid: u32) -> Vec<Event> {
        let pidfd = match PidFd::open(pid) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                // It exited (and was reaped as an orphan) before its answer was read.
                let exit = Exit {
                    success: false,
                    description: format!("exited before it could be watched ({e})"),
                    killed: false,
                };
                return vec![Event::Spawned(p.id, pid), Event::Exited(p.id, exit)];
            }
        };
        contain::watching(pid);
        if let Some(cgroups) = &self.cgroups {
            if let Ok(cg) = cgroups.worker() {
                cgroups.enter(pid, &cg);
                self.worker_cgroups.insert(p.id, cg);
            }
        }
        self.output.attach_pipes(p.slot, pid, p.stdout, p.stderr);
        let notify = p.notify.map(|(sock, _)| sock);
        self.watch(p.id, Watched::Adopted(pidfd), notify);
        vec![Event::Spawned(p.id, pid)]
    }

    /// A stopped pool needs no loader: it goes (and the next start loads the code afresh).
    pub(super) fn close_idle_loader(&mut self) {
        let stopped = self.pool.state() == crate::core::InstanceState::Stopped;
        if let Some(l) = self.loaders.as_mut().filter(|_| stopped) {
            if l.queued.is_empty() && l.sent.is_empty() && l.next.is_none() {
                if let Some(c) = l.current.take() {
                    c.close();
                }
            }
        }
    }

    /// For a handover (the handover token is cancelled): the ready loader, its watcher
    /// stopped, as its pid and ctsd's end of its channel; any other loader is told to exit.
    pub(super) async fn hand_over_loader(&mut self) -> Option<(u32, OwnedFd)> {
        let loader = self
            .loaders
            .as_mut()
            .and_then(|l| l.current.take())
            .filter(|c| c.ready && c.pid != 0);
        self.close_loaders(false);
        let loader = loader?;
        let _ = loader.task.await;
        let pid = loader.pid;
        match loader.channel.into_fd() {
            Some(fd) => Some((pid, fd)),
            None => {
                tracing::warn!(instance = %self.key, "loader pid {pid}: its channel is still shared; not handed over");
                None
            }
        }
    }

    /// Takes over loader `pid` with ctsd's end of its channel (from the ctsd this one
    /// replaced): workers are forked from it again, without a new import.
    pub(super) fn adopt_loader(&mut self, pid: u32, channel: OwnedFd) {
        let (pidfd, channel) = match (PidFd::open(pid), Channel::new(channel)) {
            (Ok(p), Ok(c)) => (p, c),
            (Err(e), _) | (_, Err(e)) => {
                self.note(&format!(
                    "loader pid {pid} could not be taken over ({e}); a new one will be started"
                ));
                return;
            }
        };
        contain::watching(pid);
        let loaders = self.loaders.get_or_insert_with(Loaders::default);
        loaders.generation += 1;
        let generation = loaders.generation;
        let task = tokio::spawn(preload::watch_adopted(
            generation,
            pidfd,
            pid,
            channel.clone(),
            self.events_tx.clone(),
            self.handover.clone(),
        ));
        self.loaders.get_or_insert_with(Loaders::default).current = Some(Loader {
            generation,
            pid,
            channel,
            ready: true,
            pipes: None,
            task,
            started: Instant::now(),
        });
    }

    /// Every loader goes (ctsd stops, or hands over): their workers are not theirs.
    pub(super) fn close_loaders(&mut self, kill: bool) {
        let Some(l) = self.loaders.as_mut() else {
            return;
        };
        let loaders = l
            .current
            .take()
            .into_iter()
            .chain(l.next.take().map(|n| n.0));
        for loader in loaders {
            loader.close();
            if kill {
                kill_group(loader.pid);
            }
        }
    }
}

/// The root's spawn spec: the loader's argv with `--root` and the module cache, and the
/// environment without any instance's settings or secrets.
fn root_spec(spec: &spawn::SpawnSpec, cache: &std::path::Path) -> spawn::SpawnSpec {
    let instance_only = |k: &str| {
        k.starts_with("CTS_") || matches!(k, "DJANGO_SETTINGS_MODULE" | "PORT" | "SCRIPT_NAME")
    };
    spawn::SpawnSpec {
        argv: spec
            .argv
            .iter()
            .cloned()
            .chain([
                "--root".to_owned(),
                "--module-cache".to_owned(),
                cache.display().to_string(),
            ])
            .collect(),
        env: spec
            .env
            .iter()
            .filter(|(k, _)| !instance_only(k))
            .cloned()
            .collect(),
        secrets: cts_config::Secrets::default(),
        ..spec.clone()
    }
}

/// FNV-1a, for a short stable file name.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SIGKILL to the process group of loader `pid`; nothing while its pid is not known (0: a
/// root has not forked it yet), which would be ctsd's own group.
fn kill_group(pid: u32) {
    if pid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
