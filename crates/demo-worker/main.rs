//! `cts-demo-worker`: a tiny stand-in for the CTS Django/gunicorn worker.
//!
//! It exists so that `ctsd`'s examples and integration tests can run real worker pools without
//! Python. It follows the worker contract of `design.md`:
//!
//! - serves HTTP/1.1 on the inherited listening socket, fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`=own
//!   pid; otherwise it exits with status 2). The socket belongs to the supervisor and is shared
//!   by every worker of the pool, so the worker never closes or shuts it down;
//! - answers every request with one JSON line describing the instance (`CTS_INSTANCE`,
//!   `CTS_INSTANCE_NAME`, `CTS_CURRENCY`, `CTS_PREFIX`), its pid, the path and a request counter;
//!   `/slow?ms=N` (any path ending in `/slow`) answers after N ms;
//! - sends `READY=1` / `STOPPING=1` to `NOTIFY_SOCKET` when set (path or `@abstract` name);
//! - on SIGTERM/SIGINT stops accepting at once, finishes in-flight requests, exits 0;
//! - logs a startup line and one access-log line per request to stdout.
//!
//! With `--no-socket` it stands in for a program without a socket (a celery worker or beat):
//! it says it is ready, prints a line every `--tick-ms`, and exits on SIGTERM (after
//! `--stop-delay-ms`, like a worker finishing its tasks). `--lock FILE` holds an exclusive
//! `flock` on FILE for the process's life; a second process that finds it held appends
//! `overlap <pid>` to `FILE.overlap` and exits 97 (what a test of a singleton looks for).
//!
//! Knobs for misbehaviour tests: `--crash-after N`, `--crash-at-start`, `--exit-code C`,
//! `--ignore-sigterm`, `--start-delay-ms MS`, `--never-ready`, `--delay-ms MS`,
//! `--flood BYTES` (with `--line-len`, `--flood-stderr`, `--flood-then-exit`) and
//! `--partial-line TEXT`. See `--help`.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};
use std::{env, thread};

use clap::Parser;
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{accept4, getsockopt, sockopt, SockFlag};
use signal_hook::consts::{SIGINT, SIGTERM};

/// The first fd passed by socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FD: i32 = 3;
/// At most this many connections are handled at once; further ones wait in the kernel backlog
/// (where another worker may pick them up) instead of being accepted.
const MAX_CONNS: usize = 64;
const MAX_HEAD: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "cts-demo-worker",
    version,
    about = "Demo HTTP worker for ctsd (serves on fd 3)"
)]
struct Args {
    /// Exit (status 1, or --exit-code) after answering this many requests; in-flight ones finish.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    crash_after: Option<u64>,
    /// Print "crashing at start" and exit at once (status 3, or --exit-code), before READY.
    #[arg(long)]
    crash_at_start: bool,
    /// Exit status for the deliberate exits: --crash-at-start (default 3), --crash-after
    /// (default 1), --flood-then-exit (default 0).
    #[arg(long, value_name = "C")]
    exit_code: Option<u8>,
    /// Ignore SIGTERM entirely and keep serving (the supervisor has to SIGKILL).
    #[arg(long)]
    ignore_sigterm: bool,
    /// Sleep this long before sending READY=1 and accepting (a slow start).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    start_delay_ms: u64,
    /// Serve, but never send READY=1.
    #[arg(long)]
    never_ready: bool,
    /// Delay every answer by this long (`/slow?ms=N` overrides it per request).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    delay_ms: u64,
    /// At start, write numbered lines `<pid> <seq> xxx…` totalling about BYTES to stdout.
    #[arg(long, value_name = "BYTES")]
    flood: Option<u64>,
    /// Length of each flood line, newline included.
    #[arg(long, value_name = "N", default_value_t = 100)]
    line_len: usize,
    /// Send the flood to stderr instead of stdout.
    #[arg(long, requires = "flood")]
    flood_stderr: bool,
    /// Exit (status 0, or --exit-code) right after the flood.
    #[arg(long, requires = "flood")]
    flood_then_exit: bool,
    /// Write TEXT to stdout without a trailing newline just before exiting.
    #[arg(long, value_name = "TEXT")]
    partial_line: Option<String>,
    /// Run without a listening socket, like a celery worker or beat (no fd 3 needed).
    #[arg(long)]
    no_socket: bool,
    /// With --no-socket: print `tick <n> pid=<pid>` this often (--crash-after counts ticks).
    #[arg(long, value_name = "MS", requires = "no_socket")]
    tick_ms: Option<u64>,
    /// With --no-socket: on SIGTERM, wait this long before exiting (tasks finishing).
    #[arg(long, value_name = "MS", default_value_t = 0, requires = "no_socket")]
    stop_delay_ms: u64,
    /// Hold an exclusive lock on FILE while running; if another process holds it, append
    /// `overlap <pid>` to FILE.overlap and exit 97.
    #[arg(long, value_name = "FILE")]
    lock: Option<std::path::PathBuf>,
}

/// State shared by the accept loop and the connection threads.
struct Shared {
    pid: u32,
    /// (key, value) pairs identifying the instance, in the order they appear in the reply.
    identity: Vec<(&'static str, String)>,
    delay_ms: u64,
    /// Replies produced so far (the `requests` field).
    served: AtomicU64,
    /// Replies fully written and closed (what `--crash-after` counts).
    completed: AtomicU64,
    /// Connections accepted and not yet closed; `idle` is signalled when it drops.
    active: Mutex<usize>,
    idle: Condvar,
    /// Write end of the self-pipe: signals and finished connections wake the accept loop.
    wake: UnixStream,
}

/// Counts one in-flight connection for as long as it lives.
struct Active(Arc<Shared>);

impl Active {
    fn enter(sh: &Arc<Shared>) -> Active {
        *sh.active.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        Active(Arc::clone(sh))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        *self.0.active.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
        self.0.idle.notify_all();
        // The accept loop may be waiting for a free slot or for --crash-after; a full pipe is
        // fine (it is readable anyway), so the result is ignored.
        let _ = (&self.0.wake).write(b"c");
    }
}

/// Why the accept loop ended.
enum Stop {
    Signal,
    Crash(u64),
    Fatal,
}

// Output helpers that ignore write errors: println!/eprintln! panic when the supervisor's pipe
// is gone, and a demo worker should rather keep serving.
fn out_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn err_line(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

fn main() {
    let args = Args::parse();
    let code = run(&args).unwrap_or_else(|e| {
        err_line(&format!("cts-demo-worker: {e:#}"));
        1
    });
    let mut out = io::stdout().lock();
    if let Some(text) = &args.partial_line {
        let _ = out.write_all(text.as_bytes());
    }
    let _ = out.flush();
    std::process::exit(code);
}

fn run(args: &Args) -> anyhow::Result<i32> {
    if args.crash_at_start {
        err_line("crashing at start");
        return Ok(args.exit_code.map_or(3, i32::from));
    }
    // Held until the process exits: the kernel releases it then, even on SIGKILL.
    let _lock = match &args.lock {
        Some(path) => match take_lock(path)? {
            Some(file) => Some(file),
            None => return Ok(97),
        },
        None => None,
    };
    let listener = if args.no_socket {
        None
    } else {
        match listen_fd() {
            Ok(fd) => Some(fd),
            Err(msg) => {
                err_line(&format!("cts-demo-worker: {msg}"));
                return Ok(2);
            }
        }
    };

    // Signals only set a flag and write to the self-pipe (flag first, as signal-hook advises);
    // everything else happens in the accept loop.
    let stop = Arc::new(AtomicBool::new(false));
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    let mut signals = vec![SIGINT];
    if args.ignore_sigterm {
        // SAFETY: installs SIG_IGN, no handler code runs; done before any other thread exists.
        unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }?;
    } else {
        signals.push(SIGTERM);
    }
    for sig in signals {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
        signal_hook::low_level::pipe::register(sig, wake_tx.try_clone()?)?;
    }

    let pid = std::process::id();
    let var = |name: &str| env::var(name).unwrap_or_default();
    let sh = Arc::new(Shared {
        pid,
        identity: vec![
            ("instance", var("CTS_INSTANCE")),
            ("name", var("CTS_INSTANCE_NAME")),
            ("currency", var("CTS_CURRENCY")),
            ("prefix", var("CTS_PREFIX")),
        ],
        delay_ms: args.delay_ms,
        served: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        active: Mutex::new(0),
        idle: Condvar::new(),
        wake: wake_tx,
    });

    // A slow start, cut short by SIGTERM (which then leads straight to a clean exit).
    let deadline = Instant::now() + Duration::from_millis(args.start_delay_ms);
    while !stop.load(SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut [PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)], ms);
        drain_pipe(&wake_rx);
    }

    if let Some(bytes) = args.flood {
        let result = if args.flood_stderr {
            flood(io::stderr().lock(), pid, bytes, args.line_len)
        } else {
            flood(io::stdout().lock(), pid, bytes, args.line_len)
        };
        if let Err(e) = result {
            err_line(&format!("cts-demo-worker: flood: {e}"));
        }
        if args.flood_then_exit {
            return Ok(args.exit_code.map_or(0, i32::from));
        }
    }

    if !stop.load(SeqCst) {
        let instance = &sh.identity[0].1;
        if args.never_ready {
            out_line(&format!(
                "cts-demo-worker pid={pid} instance={instance} serving (--never-ready: no READY=1)"
            ));
        } else {
            out_line(&format!(
                "cts-demo-worker pid={pid} instance={instance} ready"
            ));
            notify("READY=1");
        }
    }

    let Some(listener) = listener else {
        return Ok(background(args, &wake_rx, &stop));
    };
    let why = accept_loop(listener, &wake_rx, &stop, args.crash_after, &sh);

    // Stop accepting (we simply never call accept again; fd 3 stays open for the others), then
    // answer every connection already accepted before exiting.
    if let Stop::Crash(n) = why {
        err_line(&format!("crashing after {n} requests"));
    }
    notify("STOPPING=1");
    let active = sh.active.lock().unwrap_or_else(PoisonError::into_inner);
    err_line(&format!("draining {} in-flight requests", *active));
    drop(
        sh.idle
            .wait_while(active, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok(match why {
        Stop::Signal => {
            err_line("stopped");
            0
        }
        Stop::Crash(_) => args.exit_code.map_or(1, i32::from),
        Stop::Fatal => 1,
    })
}

/// `--no-socket`: ticks until a signal, then waits `--stop-delay-ms` and exits 0 (or exits
/// after `--crash-after` ticks).
fn background(args: &Args, wake_rx: &UnixStream, stop: &AtomicBool) -> i32 {
    let pid = std::process::id();
    let tick = args.tick_ms.map(Duration::from_millis);
    let mut next = tick.map(|t| Instant::now() + t);
    let mut ticks = 0u64;
    while !stop.load(SeqCst) {
        let timeout = match next {
            None => PollTimeout::NONE,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now()).as_millis();
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
        };
        let _ = poll(
            &mut [PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)],
            timeout,
        );
        drain_pipe(wake_rx);
        if let (Some(at), Some(t)) = (next, tick) {
            if Instant::now() >= at && !stop.load(SeqCst) {
                ticks += 1;
                out_line(&format!("tick {ticks} pid={pid}"));
                next = Some(at + t);
                if args.crash_after.is_some_and(|n| ticks >= n) {
                    err_line(&format!("crashing after {ticks} ticks"));
                    return args.exit_code.map_or(1, i32::from);
                }
            }
        }
    }
    notify("STOPPING=1");
    err_line(&format!("stopping in {} ms", args.stop_delay_ms));
    thread::sleep(Duration::from_millis(args.stop_delay_ms));
    err_line("stopped");
    0
}

/// `--lock`: the locked file, or `None` (recorded in `<path>.overlap`) when another process
/// holds the lock.
fn take_lock(path: &std::path::Path) -> anyhow::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // SAFETY: flock on an fd this function owns; no memory is involved.
    let r = unsafe { nix::libc::flock(file.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
    if r == 0 {
        return Ok(Some(file));
    }
    let pid = std::process::id();
    let mut overlap = path.as_os_str().to_owned();
    overlap.push(".overlap");
    let mut o = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(overlap)?;
    writeln!(o, "overlap {pid}")?;
    err_line(&format!(
        "cts-demo-worker: {} is locked by another process",
        path.display()
    ));
    Ok(None)
}

/// Checks the socket-activation environment and prepares fd 3 for the accept loop.
fn listen_fd() -> Result<BorrowedFd<'static>, String> {
    let fds = env::var("LISTEN_FDS").map_err(|_| {
        "LISTEN_FDS is not set: expected the listening socket on fd 3 (socket activation)"
    })?;
    if fds.trim() != "1" {
        return Err(format!(
            "LISTEN_FDS={fds}: expected exactly 1 inherited socket"
        ));
    }
    let listen_pid = env::var("LISTEN_PID").map_err(|_| "LISTEN_PID is not set")?;
    let own = std::process::id();
    if listen_pid.trim().parse::<u32>().ok() != Some(own) {
        return Err(format!(
            "LISTEN_PID={listen_pid} does not match own pid {own}: the fds are not for this process"
        ));
    }
    // SAFETY: fd 3 is never closed by this process, so the borrow is valid for its whole life.
    let fd = unsafe { BorrowedFd::borrow_raw(LISTEN_FD) };
    match getsockopt(&fd, sockopt::AcceptConn) {
        Ok(true) => {}
        Ok(false) => return Err("fd 3 is a socket but not listening".into()),
        Err(Errno::EBADF) => {
            return Err("fd 3 is not open (LISTEN_FDS=1 but no inherited socket)".into())
        }
        Err(e) => return Err(format!("fd 3 is not a listening socket: {e}")),
    }
    // O_NONBLOCK (like gunicorn): the socket is shared, so after poll says "readable" another
    // worker may win the connection, and accept must then fail with EAGAIN instead of blocking.
    // FD_CLOEXEC only concerns this process's descriptor.
    let flags = fcntl(LISTEN_FD, FcntlArg::F_GETFL).map_err(|e| format!("fd 3: {e}"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(LISTEN_FD, FcntlArg::F_SETFL(flags)).map_err(|e| format!("fd 3: {e}"))?;
    fcntl(LISTEN_FD, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| format!("fd 3: {e}"))?;
    Ok(fd)
}

/// Polls the listening socket and the self-pipe, accepting one connection per wake-up, until a
/// stop signal, `--crash-after` or a broken listening socket.
fn accept_loop(
    listener: BorrowedFd,
    wake_rx: &UnixStream,
    stop: &AtomicBool,
    crash_after: Option<u64>,
    sh: &Arc<Shared>,
) -> Stop {
    let should_stop = || {
        if stop.load(SeqCst) {
            return Some(Stop::Signal);
        }
        crash_after
            .filter(|n| sh.completed.load(SeqCst) >= *n)
            .map(Stop::Crash)
    };
    loop {
        if let Some(why) = should_stop() {
            return why;
        }
        // When all slots are busy, leave new connections in the backlog: wait on the pipe only.
        let full = *sh.active.lock().unwrap_or_else(PoisonError::into_inner) >= MAX_CONNS;
        let mut fds = vec![PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)];
        if !full {
            fds.push(PollFd::new(listener, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                err_line(&format!("cts-demo-worker: poll: {e}"));
                return Stop::Fatal;
            }
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            // Drain first, then look at the flags (the order signal-hook prescribes).
            drain_pipe(wake_rx);
            if let Some(why) = should_stop() {
                return why;
            }
        }
        if full || fds[1].revents().map_or(true, |r| r.is_empty()) {
            continue;
        }
        match accept4(LISTEN_FD, SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 just returned this fd and nothing else owns it.
            Ok(fd) => dispatch(unsafe { TcpStream::from_raw_fd(fd) }, sh),
            // Another worker took it, or the client gave up: back to poll.
            Err(Errno::EAGAIN | Errno::ECONNABORTED | Errno::EINTR | Errno::EPROTO) => {}
            Err(e @ (Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)) => {
                err_line(&format!("cts-demo-worker: accept: {e}; retrying"));
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                err_line(&format!("cts-demo-worker: accept on fd 3: {e}"));
                return Stop::Fatal;
            }
        }
    }
}

fn drain_pipe(mut rx: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(rx.read(&mut buf), Ok(n) if n > 0) {}
}

/// Hands an accepted connection to its own thread. It is counted as in flight before anything
/// else, and the stream is sent only once the thread exists, so even a failed spawn cannot drop
/// an accepted connection unanswered: it is then served inline.
fn dispatch(stream: TcpStream, sh: &Arc<Shared>) {
    let guard = Active::enter(sh);
    let (tx, rx) = mpsc::channel::<TcpStream>();
    let shared = Arc::clone(sh);
    let spawned = thread::Builder::new().name("conn".into()).spawn(move || {
        let _guard = guard;
        if let Ok(stream) = rx.recv() {
            handle(stream, &shared);
        }
    });
    let unsent = match spawned {
        Ok(_) => tx.send(stream).err().map(|e| e.0),
        Err(e) => {
            err_line(&format!("cts-demo-worker: spawn: {e}; serving inline"));
            Some(stream)
        }
    };
    if let Some(stream) = unsent {
        let _guard = Active::enter(sh);
        handle(stream, sh);
    }
}

struct Request {
    method: String,
    target: String,
    /// The client may still be sending (a chunked body we do not decode, or an error reply
    /// that did not read everything): linger before closing.
    unread: bool,
}

/// Serves one connection: read the head, reply, close.
fn handle(mut stream: TcpStream, sh: &Shared) {
    // Linux does not pass O_NONBLOCK on to accepted sockets; be explicit anyway.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (status, ctype, body, req) = match read_request(&mut stream) {
        Err(None) => return, // the client left without sending anything
        Err(Some((status, why))) => {
            let req = Request {
                method: "-".into(),
                target: "-".into(),
                unread: true,
            };
            (status, "text/plain", format!("{why}\n"), req)
        }
        Ok(req) => (200, "application/json", answer(&req.target, sh), req),
    };
    let reason = match status {
        200 => "OK",
        408 => "Request Timeout",
        _ => "Bad Request",
    };
    let mut reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if req.method != "HEAD" {
        reply += &body;
    }
    let written = stream
        .write_all(reply.as_bytes())
        .and_then(|()| stream.flush());
    out_line(&format!(
        "{} {} {} {status}",
        sh.pid, req.method, req.target
    ));
    if req.unread {
        // Unread input would make close() send a RST that can destroy the reply in flight:
        // signal EOF, then swallow what the client still sends (bounded).
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = io::copy(&mut (&stream).take(1 << 20), &mut io::sink());
    }
    drop(stream);
    if written.is_ok() {
        sh.completed.fetch_add(1, SeqCst);
    }
}

/// The JSON body for a good request, after the delay asked for (`/slow?ms=N`, `--delay-ms`).
fn answer(target: &str, sh: &Shared) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let slow_ms = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ms=")?.parse().ok());
    let delay = slow_ms
        .filter(|_| path.ends_with("/slow"))
        .unwrap_or(sh.delay_ms);
    thread::sleep(Duration::from_millis(delay));
    let n = sh.served.fetch_add(1, SeqCst) + 1;
    // Built by hand to keep the documented key order; serde_json does the string escaping.
    let json = |s: &str| serde_json::Value::from(s).to_string();
    let mut body = String::from("{");
    for (key, value) in &sh.identity {
        let _ = write!(body, "\"{key}\": {}, ", json(value));
    }
    let path = json(path);
    let _ = writeln!(
        body,
        "\"pid\": {}, \"path\": {path}, \"requests\": {n}}}",
        sh.pid
    );
    body
}

/// Reads and checks the request head and discards a `Content-Length` body.
/// `Err(None)`: nothing to answer; `Err(Some((status, reason)))`: answer with an error.
fn read_request(stream: &mut TcpStream) -> Result<Request, Option<(u16, &'static str)>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        match head_end(&buf) {
            Some(end) if end <= MAX_HEAD => break end,
            _ if buf.len() > MAX_HEAD => return Err(Some((400, "request head too large"))),
            _ => {}
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Err(None),
            Ok(0) => return Err(Some((400, "incomplete request head"))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Some((408, "request timeout")));
            }
            Err(_) => return Err(None),
        }
    };
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| Some((400, "request head is not UTF-8")))?;
    let mut lines = head.lines(); // strips "\r\n" and bare "\n"
    let bad = |why| Some((400, why));
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(bad("malformed request line")),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("malformed method"));
    }
    if target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad("malformed request target"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad("unsupported HTTP version"));
    }
    let (mut length, mut unread) = (None, false);
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(bad("malformed header line"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(bad("malformed header name"));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad("malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            unread = true;
        }
    }
    let rest = length.unwrap_or(0).saturating_sub((buf.len() - end) as u64);
    let got = io::copy(&mut (&*stream).take(rest), &mut io::sink())
        .map_err(|_| bad("incomplete body"))?;
    if got < rest {
        return Err(bad("incomplete body"));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        unread,
    })
}

/// Position just past the blank line ending the head (`\r\n\r\n`, tolerating bare `\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter()
        .enumerate()
        .find_map(|(i, &b)| match (b, &buf[i + 1..]) {
            (b'\n', [b'\n', ..]) => Some(i + 2),
            (b'\n', [b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        })
}

/// Sends an sd_notify message if `NOTIFY_SOCKET` is set; a failure is only logged.
fn notify(msg: &str) {
    let Some(path) = env::var_os("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
        return;
    };
    let send = || -> io::Result<usize> {
        let sock = UnixDatagram::unbound()?;
        match path.as_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                sock.send_to_addr(
                    msg.as_bytes(),
                    &std::os::unix::net::SocketAddr::from_abstract_name(name)?,
                )
            }
            None => sock.send_to(msg.as_bytes(), &path),
        }
    };
    if let Err(e) = send() {
        err_line(&format!(
            "cts-demo-worker: sd_notify {msg} to {}: {e}",
            path.to_string_lossy()
        ));
    }
}

/// Writes `<pid> <seq> xxx…\n` lines of `line_len` bytes until about `bytes` are written, through
/// one large buffer so that it goes as fast as the reader allows.
fn flood(out: impl Write, pid: u32, bytes: u64, line_len: usize) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let padding = vec![b'x'; line_len];
    let (mut written, mut seq, mut head) = (0u64, 0u64, String::new());
    while written < bytes {
        head.clear();
        let _ = write!(head, "{pid} {seq} ");
        let pad = line_len.saturating_sub(head.len() + 1);
        out.write_all(head.as_bytes())?;
        out.write_all(&padding[..pad])?;
        out.write_all(b"\n")?;
        written += (head.len() + pad + 1) as u64;
        seq += 1;
    }
    out.flush()
}
