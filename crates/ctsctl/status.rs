//! `ctsctl status [INSTANCE…] [--json]`: the table, or the JSON document.

use cts_client::{Client, ClientError};
use cts_proto::{exit_codes, InstanceStatus, StatusReport};
use std::io::{IsTerminal, Write};

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The table.
    Table,
    /// One JSON document.
    Json,
    /// Nothing: the exit status tells.
    Quiet,
}

/// Prints the status of `instances` (all when empty); the exit status is the verdict.
pub async fn run(
    client: &mut Client,
    instances: &[String],
    format: Format,
) -> Result<u8, ClientError> {
    let names: Vec<&str> = instances.iter().map(String::as_str).collect();
    let report = client.status(&names).await?;
    let out = match format {
        Format::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        Format::Table => render_table(&report, std::io::stdout().is_terminal()),
        Format::Quiet => String::new(),
    };
    let _ = std::io::stdout().write_all(out.as_bytes());
    // A program reading the JSON reads the states there; the exit status tells only whether
    // the document could be had.
    Ok(match format {
        Format::Json => exit_codes::OK,
        Format::Table | Format::Quiet => verdict(&report),
    })
}

/// 0 when every instance and program runs; else the worst state's code: failing, then stopped
/// or stopping, then starting.
fn verdict(report: &StatusReport) -> u8 {
    use cts_proto::InstanceState as S;
    let states: Vec<S> = report
        .instances
        .iter()
        .flat_map(|i| std::iter::once(i.state).chain(i.programs.iter().map(|p| p.state)))
        .collect();
    let has = |f: fn(&S) -> bool| states.iter().any(f);
    if has(|s| *s == S::Failing) {
        exit_codes::FAILING
    } else if has(|s| matches!(s, S::Stopped | S::Stopping)) {
        exit_codes::STOPPED
    } else if has(|s| *s != S::Running) {
        exit_codes::STARTING
    } else {
        exit_codes::OK
    }
}

/// The human `status` table; colour only when `colour` (stdout is a terminal).
fn render_table(report: &StatusReport, colour: bool) -> String {
    let header = [
        "INSTANCE",
        "STATE",
        "PORT",
        "PREFIX",
        "READY",
        "PIDS",
        "PSS",
        "UPTIME",
        "RESTARTS",
        "RELEASE",
        "LAST EXIT",
    ];
    // A line per instance (its web pool), then one per program under it.
    let rows: Vec<([String; 11], cts_proto::InstanceState)> = report
        .instances
        .iter()
        .flat_map(|i| {
            std::iter::once((row(i), i.state))
                .chain(i.programs.iter().map(|p| (program_row(i, p), p.state)))
        })
        .collect();
    let mut widths = header.map(str::len);
    for (r, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String, state_colour: Option<&str>| {
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            let pad = if last {
                0
            } else {
                widths[i] - cell.chars().count() + 2
            };
            match (i, state_colour) {
                (1, Some(c)) => out.push_str(&format!("\x1b[{c}m{cell}\x1b[0m")),
                _ => out.push_str(cell),
            }
            out.push_str(&" ".repeat(pad));
        }
        out.push('\n');
    };
    line(&header.map(String::from), &mut out, None);
    for (r, state) in &rows {
        let c = colour.then(|| match state.as_str() {
            "running" => "32",
            "failing" => "31",
            "stopped" => "2",
            _ => "33",
        });
        line(r, &mut out, c);
    }
    for inst in report.instances.iter().filter(|i| i.strays > 0) {
        out.push_str(&format!(
            "warning: {}: {} process(es) left their worker's process group (killed when it exits)\n",
            inst.key, inst.strays
        ));
    }
    for inst in &report.instances {
        for p in inst.programs.iter().filter(|p| p.strays > 0) {
            out.push_str(&format!(
                "warning: {}:{}: {} process(es) left their worker's process group (killed when it exits)\n",
                inst.key, p.name, p.strays
            ));
        }
    }
    for inst in report.instances.iter().filter(|i| i.log_dropped_bytes > 0) {
        out.push_str(&format!(
            "warning: {}: {} bytes of output could not be written to its log (disk full or directory not writable)\n",
            inst.key, inst.log_dropped_bytes
        ));
    }
    out
}

fn row(i: &InstanceStatus) -> [String; 11] {
    let [ready, pids, pss, age, restarts, release, last] = pool_cells(&Pool {
        ready: i.ready_workers,
        desired: i.desired_workers,
        file_workers: i.file_workers,
        workers: &i.workers,
        restarts: i.restarts,
        release: i.release.as_deref(),
        last_exit: i.last_exit.as_deref(),
    });
    [
        i.key.to_string(),
        i.state.as_str().to_owned(),
        if i.listening {
            i.port.to_string()
        } else {
            format!("{} closed", i.port)
        },
        if i.prefix.is_empty() {
            "-".into()
        } else {
            i.prefix.clone()
        },
        ready,
        pids,
        pss,
        age,
        restarts,
        release,
        last,
    ]
}

/// The line of `p`, a program of `i`: named as `ctsctl` addresses it (`jordan:celery`).
fn program_row(i: &InstanceStatus, p: &cts_proto::ProgramStatus) -> [String; 11] {
    let [ready, pids, pss, age, restarts, release, last] = pool_cells(&Pool {
        ready: p.ready_workers,
        desired: p.desired_workers,
        file_workers: p.file_workers,
        workers: &p.workers,
        restarts: p.restarts,
        release: p.release.as_deref(),
        last_exit: p.last_exit.as_deref(),
    });
    [
        format!("{}:{}", i.key, p.name),
        p.state.as_str().to_owned(),
        "-".into(),
        if p.singleton { "singleton" } else { "-" }.into(),
        ready,
        pids,
        pss,
        age,
        restarts,
        release,
        last,
    ]
}

/// What the table shows of any pool, web or program.
struct Pool<'a> {
    ready: u32,
    desired: u32,
    file_workers: Option<u32>,
    workers: &'a [cts_proto::WorkerStatus],
    restarts: u64,
    release: Option<&'a str>,
    last_exit: Option<&'a str>,
}

/// READY, PIDS, PSS, UPTIME, RESTARTS, RELEASE and LAST EXIT of a pool.
fn pool_cells(p: &Pool<'_>) -> [String; 7] {
    let pids: Vec<String> = p.workers.iter().map(|w| w.pid.to_string()).collect();
    [
        match p.file_workers {
            Some(file) => format!("{}/{} (file: {file})", p.ready, p.desired),
            None => format!("{}/{}", p.ready, p.desired),
        },
        if pids.is_empty() {
            "-".into()
        } else {
            pids.join(",")
        },
        pss(p.workers),
        // The workers' age, the youngest's: a restarted pool shows how long ago it restarted.
        p.workers
            .iter()
            .map(|w| w.uptime_secs)
            .min()
            .map_or_else(|| "-".into(), uptime),
        p.restarts.to_string(),
        release(p.release),
        p.last_exit.unwrap_or("-").to_owned(),
    ]
}

/// What the pool's processes cost together: the sum of their PSS (`12.5M`), `-` when unknown.
fn pss(workers: &[cts_proto::WorkerStatus]) -> String {
    let known: Vec<u64> = workers.iter().filter_map(|w| w.pss_kib).collect();
    if known.is_empty() {
        return "-".into();
    }
    format!("{:.1}M", known.iter().sum::<u64>() as f64 / 1024.0)
}

/// The release directory's own name (`2026-11-30`: the path is in `--json`), `-` without one.
fn release(path: Option<&str>) -> String {
    path.map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map_or_else(|| "-".into(), |n| n.to_string_lossy().into_owned())
}

fn uptime(s: u64) -> String {
    use cts_config::{format_duration, DurationStyle};
    format_duration(std::time::Duration::from_secs(s), DurationStyle::Elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cts_proto::{InstanceState, WorkerState, WorkerStatus};

    #[test]
    fn table_snapshot() {
        let inst = |key: &str, state, pids: &[u32], last: Option<&str>| InstanceStatus {
            key: key.into(),
            name: key.to_uppercase(),
            port: 8003,
            prefix: "/JO".into(),
            currency: "JOD".into(),
            state,
            desired_workers: 2,
            ready_workers: pids.len() as u32,
            restarts: 3,
            uptime_secs: Some(3725),
            last_exit: last.map(str::to_owned),
            workers: pids
                .iter()
                .enumerate()
                .map(|(slot, &pid)| WorkerStatus {
                    pid,
                    slot: slot as u32,
                    state: WorkerState::Ready,
                    uptime_secs: 10,
                    rss_kib: Some(40_960),
                    pss_kib: Some(10_240),
                })
                .collect(),
            log_dropped_bytes: 0,
            listening: true,
            file_workers: None,
            strays: 0,
            programs: Vec::new(),
            release: None,
        };
        let mut jordan = inst("jordan", InstanceState::Running, &[101, 102], None);
        jordan.release = Some("/var/www/cts/releases/2026-11-30".into());
        let program = |name: &str, singleton, state, pid: Option<u32>| cts_proto::ProgramStatus {
            name: name.into(),
            singleton,
            state,
            desired_workers: 1,
            ready_workers: u32::from(pid.is_some()),
            restarts: 0,
            uptime_secs: None,
            last_exit: None,
            workers: pid
                .into_iter()
                .map(|pid| WorkerStatus {
                    pid,
                    slot: 0,
                    state: WorkerState::Ready,
                    uptime_secs: 70,
                    rss_kib: None,
                    pss_kib: None,
                })
                .collect(),
            log_dropped_bytes: 0,
            file_workers: None,
            release: Some("/var/www/cts/releases/2026-11-30".into()),
            strays: 0,
        };
        jordan.programs = vec![
            program("celery", false, InstanceState::Running, Some(103)),
            program("beat", true, InstanceState::Stopped, None),
        ];
        let report = StatusReport {
            daemon_version: "0.1.0".into(),
            pid: 1,
            uptime_secs: 5,
            instances: vec![
                jordan,
                inst(
                    "iraq",
                    InstanceState::Failing,
                    &[],
                    Some("worker 0 pid 7 exited with status 3"),
                ),
            ],
        };
        let expected = "\
INSTANCE       STATE    PORT  PREFIX     READY  PIDS     PSS    UPTIME  RESTARTS  RELEASE     LAST EXIT
jordan         running  8003  /JO        2/2    101,102  20.0M  10s     3         2026-11-30  -
jordan:celery  running  -     -          1/1    103      -      1m10s   0         2026-11-30  -
jordan:beat    stopped  -     singleton  0/1    -        -      -       0         2026-11-30  -
iraq           failing  8003  /JO        0/2    -        -      -       3         -           worker 0 pid 7 exited with status 3
";
        assert_eq!(render_table(&report, false), expected);
        assert!(render_table(&report, true).contains("\x1b[31mfailing\x1b[0m"));
    }

    #[test]
    fn uptimes_read_like_durations() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(65), "1m5s");
        assert_eq!(uptime(7260), "2h1m");
        assert_eq!(uptime(90_000), "1d1h");
    }
}
