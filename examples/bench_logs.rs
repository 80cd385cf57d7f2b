//! Log pipeline benchmark. Floods the log pipeline through real demo workers (1 and 8 workers,
//! merged into one instance log that rotates every 8 MB), beside the limit measured in the same
//! run: the same workers writing through one pipe into `cat > file`. Prints MB/s, ctsd's CPU
//! seconds per GB, its peak RSS, and lines lost, duplicated or split (checked from the sequence
//! numbers across every rotated file).
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench_logs -- [TOTAL_MB, default 200]
//! ```

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes per flood line, newline included (the demo worker's default).
const LINE: u64 = 100;

fn main() -> anyhow::Result<()> {
    let total_mb: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let bins = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("cannot find the target directory"))?;
    let (ctsd, worker) = (bins.join("ctsd"), bins.join("cts-demo-worker"));
    anyhow::ensure!(
        ctsd.exists() && worker.exists(),
        "build the binaries first: cargo build --release"
    );
    println!("{total_mb} MB of 100-byte numbered lines per run, rotation every 8 MB\n");
    println!(
        "{:>7}  {:<24} {:>9} {:>9} {:>14} {:>9} {:>6} {:>6} {:>6}",
        "workers",
        "pipeline",
        "MB/s",
        "% limit",
        "ctsd CPU s/GB",
        "peak RSS",
        "lost",
        "dup",
        "split"
    );
    for workers in [1u64, 8] {
        let per_worker = total_mb * 1_000_000 / workers / LINE * LINE;
        let limit = baseline(&ctsd, &worker, workers, per_worker)?;
        println!(
            "{workers:>7}  {:<24} {limit:>9.1} {:>9} {:>14} {:>9} {:>6} {:>6} {:>6}",
            "pipe into cat > file", "100%", "-", "-", "-", "-", "-"
        );
        for format in ["raw", "timestamped"] {
            let r = through_ctsd(&ctsd, &worker, workers, per_worker, format)?;
            println!(
                "{workers:>7}  {:<24} {:>9.1} {:>8.0}% {:>14.2} {:>7.1}MB {:>6} {:>6} {:>6}",
                format!("ctsd, {format}"),
                r.mb_s,
                100.0 * r.mb_s / limit,
                r.cpu_s_per_gb,
                r.peak_rss_mb,
                r.lost,
                r.dup,
                r.split
            );
        }
    }
    Ok(())
}

/// The demo worker, started like ctsd starts it (socket on fd 3, LISTEN_PID through the shim).
fn worker_command(ctsd: &Path, worker: &Path, listener: &OwnedFd, args: &[String]) -> Command {
    let mut cmd = Command::new(ctsd);
    cmd.arg("__exec-worker")
        .arg("--")
        .arg(worker)
        .args(args)
        .env("LISTEN_FDS", "1");
    let fd = listener.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe. dup2 onto itself (the listener may be fd 3
    // already) keeps FD_CLOEXEC, hence the explicit clear.
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::dup2(fd, 3) == -1 || nix::libc::fcntl(3, nix::libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// MB/s of `workers` demo workers flooding through one pipe into `cat > file`.
fn baseline(ctsd: &Path, worker: &Path, workers: u64, per_worker: u64) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let listener: OwnedFd = std::net::TcpListener::bind("127.0.0.1:0")?.into();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let start = Instant::now();
    let mut cat = Command::new("sh")
        .arg("-c")
        .arg(format!("cat > {}", dir.path().join("out").display()))
        .stdin(Stdio::from(r))
        .spawn()?;
    let args = vec![
        "--flood".to_owned(),
        per_worker.to_string(),
        "--flood-then-exit".to_owned(),
    ];
    let mut children = Vec::new();
    for _ in 0..workers {
        children.push(
            worker_command(ctsd, worker, &listener, &args)
                .stdout(Stdio::from(w.try_clone()?))
                .stderr(Stdio::null())
                .spawn()?,
        );
    }
    drop(w);
    for mut c in children {
        anyhow::ensure!(c.wait()?.success(), "a baseline worker failed");
    }
    cat.wait()?;
    let written = std::fs::metadata(dir.path().join("out"))?.len();
    anyhow::ensure!(
        written == workers * per_worker,
        "baseline wrote {written} bytes"
    );
    let secs = start.elapsed().as_secs_f64();
    Ok((workers * per_worker) as f64 / 1e6 / secs)
}

struct Run {
    mb_s: f64,
    cpu_s_per_gb: f64,
    peak_rss_mb: f64,
    lost: u64,
    dup: u64,
    split: u64,
}

fn through_ctsd(
    ctsd: &Path,
    worker: &Path,
    workers: u64,
    per_worker: u64,
    format: &str,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("ctsd.yaml");
    std::fs::write(
        &config,
        format!(
            "ctsd: {{socket: ctsd.sock, log_dir: log}}\n\
             defaults:\n  command: [{worker:?}, --flood, \"{per_worker}\"]\n  workers: {workers}\n  \
             ready: {{notify: true, timeout: 120s}}\n  \
             logs: {{max_size: 8MB, keep: 100000, format: {format}}}\n\
             instances:\n  bench: {{name: Bench, prefix: /B, currency: XXX, port: {port}}}\n",
            worker = worker.display()
        ),
    )?;
    let start = Instant::now();
    let mut child = Command::new(ctsd)
        .arg("--config")
        .arg(&config)
        .arg("--log-level")
        .arg("warn")
        .env_remove("NOTIFY_SOCKET")
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let log_dir = dir.path().join("log/bench");
    // The end is when the log stops growing (sampled every 20 ms; the time of the last
    // growth is the end, not the time it was noticed).
    let expected_min = workers * per_worker;
    let (mut last_size, mut last_change) = (0u64, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let size = dir_size(&log_dir);
        if size != last_size {
            (last_size, last_change) = (size, Instant::now());
        } else if size >= expected_min && last_change.elapsed() > Duration::from_millis(500) {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "the flood did not finish"
        );
    }
    let secs = last_change.duration_since(start).as_secs_f64();
    let (cpu, rss) = cpu_and_peak_rss(pid)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    child.wait()?;
    let (lost, dup, split) = check(&log_dir, workers, per_worker / LINE)?;
    let bytes = (workers * per_worker) as f64;
    Ok(Run {
        mb_s: bytes / 1e6 / secs,
        cpu_s_per_gb: cpu / (bytes / 1e9),
        peak_rss_mb: rss,
        lost,
        dup,
        split,
    })
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// ctsd's user+system CPU seconds and peak RSS (MB), from /proc.
fn cpu_and_peak_rss(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok((ticks / hz, hwm_kb / 1024.0))
}

/// Lost, duplicated and split flood lines across every file of the instance log.
fn check(dir: &Path, workers: u64, lines_per_worker: u64) -> anyhow::Result<(u64, u64, u64)> {
    let mut seen: BTreeMap<u32, Vec<bool>> = BTreeMap::new();
    let (mut dup, mut split) = (0, 0);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read(&f)?;
        for line in text.split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(line);
            // Only flood lines (and pieces of them) carry the padding; ctsd's events and the
            // worker's own messages do not.
            if !line.contains("xxxxxxxxxx") {
                continue;
            }
            // Raw: `PID SEQ xxx…`; timestamped: `TIME SLOT/PID out PID SEQ xxx…`.
            let tokens: Vec<&str> = line.split(' ').collect();
            let flood = match tokens.len() {
                3 => &tokens[..],
                6 => &tokens[3..],
                _ => {
                    split += 1;
                    continue;
                }
            };
            let (Ok(pid), Ok(seq)) = (flood[0].parse::<u32>(), flood[1].parse::<u64>()) else {
                split += 1;
                continue;
            };
            let whole =
                flood.join(" ").len() as u64 == LINE - 1 && flood[2].bytes().all(|b| b == b'x');
            if !whole {
                split += 1;
                continue;
            }
            let marks = seen
                .entry(pid)
                .or_insert_with(|| vec![false; lines_per_worker as usize]);
            match marks.get_mut(seq as usize) {
                Some(m) if *m => dup += 1,
                Some(m) => *m = true,
                None => split += 1,
            }
        }
    }
    let present: u64 = seen
        .values()
        .map(|m| m.iter().filter(|x| **x).count() as u64)
        .sum();
    let lost = workers * lines_per_worker - present.min(workers * lines_per_worker);
    Ok((lost, dup, split))
}
