//! Starting one worker process: argv and environment prepared before the fork, then only
//! async-signal-safe system calls between fork and exec.
//!
//! The program executed is ctsd itself with the hidden first argument [`EXEC_WORKER_ARG`]: that
//! shim sets `LISTEN_PID` to its own pid (which the parent cannot know before the fork, and
//! which the child may not compute with `setenv` between fork and exec) and then `exec`s the
//! worker command, so the worker keeps the pid, the process group and the parent-death signal.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};

/// First argument that makes the ctsd binary act as the exec shim: `ctsd __exec-worker -- argv…`.
pub const EXEC_WORKER_ARG: &str = "__exec-worker";

/// The fd number the listening socket has in a worker (systemd's `SD_LISTEN_FDS_START`).
pub const LISTEN_FD: RawFd = 3;

/// The fd number of a preload loader's channel to ctsd (see [`crate::preload`]), which
/// [`PRELOAD_FD_VAR`] names.
pub const PRELOAD_FD: RawFd = 4;

/// The variable that tells a preload loader where its channel is.
pub const PRELOAD_FD_VAR: &str = "CTS_PRELOAD_FD";

/// Variables ctsd may have received from its own parent (systemd) that must not leak into a
/// worker, where they would describe ctsd's sockets and watchdog, not the worker's.
pub const INHERITED_VARS_TO_DROP: &[&str] = &[
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "FDSTORE",
    "JOURNAL_STREAM",
    "CTSD_SOCKET",
];

/// The environment a worker runs with: `inherited` (ctsd's own, or for `ctsctl run` the
/// running ctsd's) without [`INHERITED_VARS_TO_DROP`], then `configured` (the pool's `env`,
/// contract variables included) over it. Later entries of either win over earlier ones of
/// the same name, as in `environ`-based lookups. The variables that only a spawned worker
/// gets (`LISTEN_FDS`, `LISTEN_FDNAMES`, `NOTIFY_SOCKET`) are not added here.
pub fn worker_environment<K, V>(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    configured: impl IntoIterator<Item = (K, V)>,
) -> BTreeMap<OsString, OsString>
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut env: BTreeMap<OsString, OsString> = inherited
        .into_iter()
        .filter(|(k, _)| !INHERITED_VARS_TO_DROP.iter().any(|v| k.as_os_str() == *v))
        .collect();
    env.extend(
        configured
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
    );
    env
}

/// Everything needed to start workers of one pool, resolved once.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    /// The ctsd binary, run as the exec shim.
    pub shim: PathBuf,
    /// The worker's argv.
    pub argv: Vec<String>,
    /// Variables added to ctsd's own environment.
    pub env: Vec<(String, String)>,
    /// `env_file`'s variables, after `env` (its `Debug` shows names only).
    pub secrets: cts_config::Secrets,
    /// `LISTEN_FDNAMES`: the instance key.
    pub fd_name: String,
    /// User, groups, umask and limits the worker gets.
    pub privileges: Privileges,
}

/// What a worker (or `ctsctl run`) is switched to before exec: resource limits, umask, then
/// supplementary groups, group and user, then the working directory (entered as the user, as
/// a shell of that user would: a directory it may not enter fails here, with its error).
#[derive(Debug, Clone, Default)]
pub struct Privileges {
    /// `cwd`, ready for `chdir(2)`; `None`: stay where ctsd is.
    pub cwd: Option<std::ffi::CString>,
    /// Credentials to switch to; `None`: keep the current ones.
    pub credentials: Option<Credentials>,
    /// `umask`; `None`: keep the current one.
    pub umask: Option<u32>,
    /// Resource limits (soft and hard), set before dropping privileges.
    pub limits: Vec<(nix::libc::__rlimit_resource_t, nix::libc::rlim_t)>,
}

impl Privileges {
    /// The pool's `user`, `group`, `umask` and `limits`, checked up front for what the child
    /// would otherwise fail at with a bare OS error: switching users without being root,
    /// raising a limit past the hard one.
    ///
    /// # Errors
    ///
    /// A sentence saying which setting cannot be applied by this process, and why.
    pub fn for_pool(pool: &cts_config::PoolSpec) -> Result<Privileges, String> {
        let accounts = match (&pool.accounts, pool.user.is_some() || pool.group.is_some()) {
            (Some(a), _) => Some(a.clone()),
            // A configuration not made by `cts_config::load` (tests): look the names up now.
            (None, true) => Some(cts_config::Accounts::lookup(
                pool.user.as_deref(),
                pool.group.as_deref(),
            )?),
            (None, false) => None,
        };
        let root = nix::unistd::geteuid().is_root();
        let credentials = match accounts {
            Some(a) if root => Some(Credentials {
                uid: a.uid,
                gid: a.gid,
                groups: a.groups,
            }),
            Some(a) => {
                let (me, my_gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
                if a.uid.is_some_and(|u| u != me.as_raw()) || a.gid != my_gid.as_raw() {
                    let who = [pool.user.as_deref(), pool.group.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(":");
                    return Err(format!(
                        "this process runs as uid {me} gid {my_gid} and cannot switch to `{who}`: \
                         run it as root or remove `user`/`group`"
                    ));
                }
                None
            }
            None => None,
        };
        let mut limits = Vec::new();
        for (which, limit) in pool.limits.iter() {
            let resource = which.rlimit();
            let value = match limit {
                cts_config::Limit::Value(v) => v,
                cts_config::Limit::Unlimited => nix::libc::RLIM_INFINITY,
            };
            if which == cts_config::Resource::Nofile {
                // Above fs.nr_open the kernel refuses even root.
                let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if let Some(max) = nr_open.filter(|&max| value > max) {
                    return Err(format!(
                        "limits.nofile {value} is above the kernel's fs.nr_open ({max})"
                    ));
                }
            }
            if !root {
                let (_, hard) = nix::sys::resource::getrlimit(resource)
                    .map_err(|e| format!("cannot read limit {which}: {e}"))?;
                if value > hard {
                    let shown = if value == nix::libc::RLIM_INFINITY {
                        "unlimited".to_owned()
                    } else {
                        value.to_string()
                    };
                    return Err(format!(
                        "limits.{which} {shown} is above the hard limit {hard}, which only root may raise"
                    ));
                }
            }
            limits.push((resource as nix::libc::__rlimit_resource_t, value));
        }
        let cwd = match &pool.cwd {
            Some(dir) => Some(
                std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
                    .map_err(|_| format!("cwd {} contains a NUL byte", dir.display()))?,
            ),
            None => None,
        };
        Ok(Privileges {
            cwd,
            credentials,
            umask: pool.umask,
            limits,
        })
    }

    /// Applies them to this process. Only async-signal-safe system calls on data prepared
    /// beforehand, and no allocation: usable between fork and exec.
    ///
    /// # Safety
    ///
    /// Call it only in a process that is about to `exec` and runs no other thread: the child
    /// between fork and exec (e.g. in [`std::os::unix::process::CommandExt::pre_exec`]), or a
    /// single-threaded process right before it execs. It changes process-wide state (user,
    /// groups, umask, resource limits, working directory) under the feet of any other code
    /// in the process, such as other threads or open relative paths, and it is meant to run
    /// where only async-signal-safe calls are allowed, which it keeps to.
    ///
    /// # Errors
    ///
    /// The OS error of the first call that failed.
    pub unsafe fn apply(&self) -> io::Result<()> {
        use nix::libc;
        // SAFETY: these libc calls take integers, a pointer and length into `self.groups` (a
        // live Vec, allocated before the fork, with `n` elements) and a pointer to the
        // NUL-terminated `self.cwd` (a live CString); none of them keeps the pointers. The
        // caller guarantees that changing the process's credentials, limits and cwd is fine.
        unsafe {
            if let Some(mask) = self.umask {
                libc::umask(mask as libc::mode_t);
            }
            // Limits first: raising a hard limit needs the privileges dropped below.
            for &(resource, value) in &self.limits {
                let lim = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &lim) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(c) = &self.credentials {
                let (n, list) = if c.uid.is_some() {
                    (c.groups.len(), c.groups.as_ptr())
                } else {
                    (0, std::ptr::null())
                };
                if libc::setgroups(n, list) == -1 || libc::setgid(c.gid) == -1 {
                    return Err(io::Error::last_os_error());
                }
                if let Some(uid) = c.uid {
                    if libc::setuid(uid) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            if let Some(dir) = &self.cwd {
                if libc::chdir(dir.as_ptr()) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// What the child switches to before exec: supplementary groups, then group, then user
/// (the order `initgroups`, `setgid`, `setuid` that a privileged parent must follow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `setuid`; `None` when only the group changes.
    pub uid: Option<u32>,
    /// `setgid`.
    pub gid: u32,
    /// `setgroups`: the user's groups as `initgroups` would list them.
    pub groups: Vec<u32>,
}

/// Starts a worker, with the listening socket `listener` (if any) as fd 3, in its own process group,
/// with SIGKILL as its parent-death signal, stdout and stderr piped.
///
/// Must be called from a thread that lives as long as ctsd (the parent-death signal fires when
/// the *thread* that forked exits): ctsd runs its supervisor on the main thread.
///
/// # Errors
///
/// When fork or exec of the shim fails, or the child's set-up (cwd, fd 3, credentials) fails.
pub fn spawn(
    spec: &SpawnSpec,
    listener: Option<RawFd>,
    notify_socket: Option<&str>,
    contain: &Containment<'_>,
) -> io::Result<Child> {
    spawn_with_channel(spec, listener, notify_socket, contain, None)
}

/// [`spawn`], with `channel` (a preload loader's end of its channel to ctsd) as fd
/// [`PRELOAD_FD`], named by [`PRELOAD_FD_VAR`].
///
/// # Errors
///
/// As [`spawn`].
pub fn spawn_with_channel(
    spec: &SpawnSpec,
    listener: Option<RawFd>,
    notify_socket: Option<&str>,
    contain: &Containment<'_>,
    channel: Option<RawFd>,
) -> io::Result<Child> {
    let mut cmd = Command::new(&spec.shim);
    cmd.arg(EXEC_WORKER_ARG).arg("--").args(&spec.argv);
    let configured = spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    cmd.env_clear().envs(worker_environment(
        std::env::vars_os(),
        configured.chain(spec.secrets.expose()),
    ));
    if listener.is_some() {
        cmd.env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", &spec.fd_name);
    }
    if let Some(n) = notify_socket {
        cmd.env("NOTIFY_SOCKET", n);
    }
    cmd.env(crate::contain::WORKER_TAG, contain.tag);
    if channel.is_some() {
        cmd.env(PRELOAD_FD_VAR, PRELOAD_FD.to_string());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let setup = ChildSetup {
        listener,
        channel,
        parent: std::process::id() as nix::libc::pid_t,
        privileges: spec.privileges.clone(),
    };
    let in_child = move || {
        // SAFETY: this closure is only given to `pre_exec` below, which runs it in the child
        // between fork and exec, where `run` belongs.
        unsafe { setup.run() }
    };
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (fcntl, dup2, prctl, getppid, umask, setrlimit, setgroups, setgid, setuid, chdir)
    // on values prepared before the fork; it neither allocates nor locks.
    unsafe {
        cmd.pre_exec(in_child);
    }
    cmd.spawn()
}

/// What keeps a worker's descendants from escaping (see [`crate::contain`]); the worker's
/// cgroup is joined after the spawn, off its way (a migration waits for an RCU grace period).
#[derive(Debug)]
pub struct Containment<'a> {
    /// `CTS_WORKER`, inherited by everything the worker starts.
    pub tag: &'a str,
}

/// Everything the child does between fork and exec, prepared before the fork.
struct ChildSetup {
    listener: Option<RawFd>,
    channel: Option<RawFd>,
    parent: nix::libc::pid_t,
    privileges: Privileges,
}

impl ChildSetup {
    /// Runs in the child between fork and exec: only async-signal-safe calls.
    ///
    /// # Safety
    ///
    /// Only in the child between fork and exec: see [`Privileges::apply`] and [`child_setup`].
    unsafe fn run(&self) -> io::Result<()> {
        // SAFETY: our caller runs us in the child between fork and exec.
        unsafe {
            self.privileges.apply()?;
            // The channel goes above the targets first, so that placing the socket on fd 3
            // cannot clobber it.
            let channel = match self.channel {
                Some(fd) => {
                    let high = nix::libc::fcntl(fd, nix::libc::F_DUPFD_CLOEXEC, 10);
                    if high == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Some(high)
                }
                None => None,
            };
            child_setup(self.listener, self.parent)?;
            if let Some(high) = channel {
                // dup2 gives the new fd no FD_CLOEXEC: it survives exec.
                if nix::libc::dup2(high, PRELOAD_FD) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        }
    }
}

/// The socket and the parent-death signal: only async-signal-safe calls.
///
/// # Safety
///
/// Only in the child between fork and exec: it puts `listener` on fd 3, replacing whatever
/// fd 3 was, which may belong to some other owner in this process.
unsafe fn child_setup(listener: Option<RawFd>, parent: nix::libc::pid_t) -> io::Result<()> {
    use nix::libc;
    // SAFETY: fcntl and dup2 on integer fds. Replacing fd 3 is what the caller allows (the
    // child is about to exec and owns nothing on it that is used afterwards); `listener`
    // stays open, as it is only duplicated.
    unsafe {
        let Some(listener) = listener else {
            return parent_death_signal(parent);
        };
        if listener == LISTEN_FD {
            // dup2 onto itself would keep FD_CLOEXEC: clear it instead.
            if libc::fcntl(LISTEN_FD, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
        } else if libc::dup2(listener, LISTEN_FD) == -1 {
            // dup2 gives the new fd no FD_CLOEXEC: fd 3 is the only extra fd that survives exec.
            return Err(io::Error::last_os_error());
        }
    }
    parent_death_signal(parent)
}

/// SIGKILL when ctsd dies: only async-signal-safe calls.
fn parent_death_signal(parent: nix::libc::pid_t) -> io::Result<()> {
    use nix::libc;
    // SAFETY: prctl and getppid on integers; no memory is passed or kept.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) == -1
        {
            return Err(io::Error::last_os_error());
        }
        // ctsd may have died between fork and prctl: then no death signal would ever come.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// The exec shim's body: `args` is everything after `--`. Sets `LISTEN_PID` to this process's
/// pid and replaces the process with the worker command; returns only on failure.
pub fn exec_worker(args: &[OsString]) -> io::Error {
    use std::os::unix::process::CommandExt;
    let Some((program, rest)) = args.split_first() else {
        return io::Error::new(io::ErrorKind::InvalidInput, "no worker command given");
    };
    // `exec` also resets SIGPIPE (ignored by Rust programs) and the signal mask for the worker.
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    if std::env::var_os("LISTEN_FDS").is_some() {
        cmd.env("LISTEN_PID", std::process::id().to_string());
    }
    cmd.exec()
}

/// Binds a per-worker notification socket in the abstract namespace; the name, with its `@`
/// prefix, is what goes into `NOTIFY_SOCKET`.
///
/// # Errors
///
/// When the socket cannot be created or bound.
pub fn notify_socket(name: &str) -> io::Result<(tokio::net::UnixDatagram, String)> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    sock.set_nonblocking(true)?;
    Ok((
        tokio::net::UnixDatagram::from_std(sock)?,
        format!("@{name}"),
    ))
}

/// Reads `path`'s first component for messages (`gunicorn` of `[gunicorn, --bind, ...]`).
pub fn program_name(argv: &[String]) -> &str {
    argv.first()
        .map(|p| {
            Path::new(p)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(p)
        })
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_environment_drops_ctsds_own_variables_and_lays_the_pools_over() {
        let os = |k: &str, v: &str| (OsString::from(k), OsString::from(v));
        let inherited = vec![
            os("PATH", "/usr/bin"),
            os("NOTIFY_SOCKET", "/run/systemd/notify"),
            os("LISTEN_FDS", "2"),
            os("CTSD_SOCKET", "/run/ctsd/ctsd.sock"),
            os("LANG", "C"),
            os("JOURNAL_STREAM", "8:123"),
        ];
        let configured = [("LANG", "C.UTF-8"), ("PORT", "8003"), ("CTSD_SOCKET", "/x")];
        let env = worker_environment(inherited, configured);
        let got: Vec<(&str, &str)> = env
            .iter()
            .map(|(k, v)| (k.to_str().unwrap(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("CTSD_SOCKET", "/x"),
                ("LANG", "C.UTF-8"),
                ("PATH", "/usr/bin"),
                ("PORT", "8003"),
            ]
        );
    }
}
