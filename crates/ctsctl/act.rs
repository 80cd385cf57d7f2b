//! The commands that act on instances or the daemon and answer with outcomes: `start`,
//! `stop`, `restart` (with progress on a terminal), `scale`, `signal`, `reopen-logs`,
//! `shutdown`.

use crate::cli::TargetArgs;
use crate::report;
use cts_client::{Client, ClientError};
use cts_proto::{Request, ScaleRequest, SignalRequest, Target, TargetRequest, WorkerSignal};
use std::io::IsTerminal;

/// Which of the instance lifecycle commands.
#[derive(Debug, Clone, Copy)]
pub enum Lifecycle {
    /// `start`.
    Start,
    /// `stop`.
    Stop,
    /// `restart`.
    Restart,
}

impl TargetArgs {
    fn target(&self) -> Target {
        if self.all {
            Target::All
        } else {
            Target::Instances(self.instances.iter().map(|s| s.as_str().into()).collect())
        }
    }
}

/// `start`, `stop` or `restart` of the named instances (or `--all`).
pub async fn lifecycle(
    client: &mut Client,
    op: Lifecycle,
    args: &TargetArgs,
) -> Result<u8, ClientError> {
    // Progress (`jordan: 2/4 workers replaced`) only for a person watching a terminal.
    let progress = std::io::stderr().is_terminal() && !args.no_wait;
    let req = TargetRequest {
        target: args.target(),
        no_wait: args.no_wait,
        progress,
    };
    let (req, verb) = match op {
        Lifecycle::Start => (Request::Start(req), "start"),
        Lifecycle::Stop => (Request::Stop(req), "stop"),
        Lifecycle::Restart => (Request::Restart(req), "restart"),
    };
    let mut shown = false;
    let outcomes = client
        .act_with(req, |p| {
            shown = true;
            eprint!(
                "\r\x1b[K{}: {}/{} workers replaced",
                p.instance, p.replaced, p.total
            );
        })
        .await;
    if shown {
        // The outcome line says it all: the progress line goes.
        eprint!("\r\x1b[K");
    }
    Ok(report::outcomes(outcomes?, verb))
}

/// `scale INSTANCE N`.
pub async fn scale(client: &mut Client, instance: &str, workers: u32) -> Result<u8, ClientError> {
    let req = Request::Scale(ScaleRequest {
        instance: instance.into(),
        workers,
    });
    call(client, req, "scale").await
}

/// `signal INSTANCE… SIGNAL` or `signal --all SIGNAL`.
pub async fn signal(client: &mut Client, args: &[String], all: bool) -> Result<u8, ClientError> {
    let (target, signal) = signal_args(args, all).map_err(ClientError::Usage)?;
    call(
        client,
        Request::Signal(SignalRequest { target, signal }),
        "signal",
    )
    .await
}

/// A request answered by outcomes.
pub async fn call(client: &mut Client, req: Request, verb: &str) -> Result<u8, ClientError> {
    match client.call(&req).await? {
        cts_proto::Response::Outcomes(o) => Ok(report::outcomes(o.results, verb)),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// `INSTANCE… SIGNAL` or, with `--all`, just `SIGNAL`.
fn signal_args(args: &[String], all: bool) -> Result<(Target, WorkerSignal), String> {
    let (signal, instances) = args.split_last().ok_or("name the signal")?;
    let signal: WorkerSignal = signal.parse()?;
    match (all, instances.is_empty()) {
        (true, true) => Ok((Target::All, signal)),
        (false, false) => Ok((
            Target::Instances(instances.iter().map(|s| s.as_str().into()).collect()),
            signal,
        )),
        (true, false) => Err("name instances or --all, not both".into()),
        (false, true) => Err("name the instances (or --all) before the signal".into()),
    }
}

/// `ctsctl upgrade [--binary PATH]`: the answer comes from the ctsd that took over.
pub async fn upgrade(
    client: &mut Client,
    binary: Option<&std::path::Path>,
) -> Result<u8, ClientError> {
    let binary = match binary.map(std::path::absolute).transpose() {
        Ok(b) => b.map(|b| b.display().to_string()),
        Err(e) => return Err(ClientError::Unexpected(format!("--binary: {e}"))),
    };
    match client
        .call(&Request::Upgrade(cts_proto::UpgradeRequest { binary }))
        .await?
    {
        cts_proto::Response::Upgraded(r) => {
            println!(
                "ctsd upgraded {} → {} ({}, pid {} kept): {} worker{} and {} pipe{} taken over, none \
                 restarted; control socket paused {} ms",
                r.from_version,
                r.to_version,
                r.binary,
                r.pid,
                r.workers,
                if r.workers == 1 { "" } else { "s" },
                r.pipes,
                if r.pipes == 1 { "" } else { "s" },
                r.pause_ms
            );
            Ok(0)
        }
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}
