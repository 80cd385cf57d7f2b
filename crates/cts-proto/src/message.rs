//! The typed messages. Every enum that crosses the wire is `#[non_exhaustive]` so that adding a
//! variant in a minor version is not a breaking change for Rust users of this crate.

use crate::version::ProtoVersion;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The name of an instance as a client wrote it (`jordan`). The daemon checks it against its
/// configuration; an unknown one gets [`ErrorKind::UnknownInstance`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceName(pub String);

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for InstanceName {
    fn from(s: &str) -> Self {
        InstanceName(s.to_owned())
    }
}

/// Which instances a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every configured instance.
    All,
    /// These instances, in this order.
    Instances(Vec<InstanceName>),
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// The first message of every connection.
    Hello(Hello),
    /// The state of some or all instances.
    Status(StatusRequest),
    /// Start stopped instances and wait until their workers are ready.
    Start(TargetRequest),
    /// Stop instances' workers gracefully and wait until they have exited.
    Stop(TargetRequest),
    /// Rolling restart: replace each worker, new one ready before the old one stops.
    Restart(TargetRequest),
    /// Versions of the daemon and the protocol.
    Version,
    /// Change an instance's number of workers.
    Scale(ScaleRequest),
    /// Send a signal to every worker of instances.
    Signal(SignalRequest),
    /// Reopen every log file (after an external logrotate).
    ReopenLogs,
    /// Stop every worker and exit ctsd.
    Shutdown,
    /// Re-read the configuration file and apply it (or only show the plan).
    Reload(ReloadRequest),
    /// The last lines of an instance's log, and with `follow` everything written after them.
    Logs(LogsRequest),
    /// Move instances onto a prepared release directory: jobs, rolls, the `cwd` symlink.
    Deploy(DeployRequest),
    /// Replace the running ctsd by a new binary in place (same pid), keeping every worker,
    /// pipe, listening socket and the control socket.
    Upgrade(UpgradeRequest),
}

/// [`Request::Upgrade`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRequest {
    /// The binary to run, an absolute path; the one ctsd was started from when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

/// [`Response::Upgraded`]: what the ctsd that took over says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeReport {
    /// The version that ran before.
    pub from_version: String,
    /// The version that runs now.
    pub to_version: String,
    /// The binary that runs now.
    pub binary: String,
    /// ctsd's pid, the same before and after.
    pub pid: u32,
    /// Workers taken over (none was restarted).
    pub workers: u32,
    /// Pipes taken over, with the incomplete lines they held.
    pub pipes: u32,
    /// Milliseconds from the old ctsd's last accepted control connection to the new one's
    /// first (connections meanwhile wait in the socket's queue).
    pub pause_ms: u64,
}

/// [`Request::Deploy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The release directory, an absolute path.
    pub release: String,
    /// The instances to move, all when empty.
    #[serde(default)]
    pub instances: Vec<InstanceName>,
    /// The instance that moves first, alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<InstanceName>,
    /// How many instances move at once after the canary (at least 1).
    #[serde(default = "one")]
    pub batch: u32,
    /// Only print the plan.
    #[serde(default)]
    pub dry_run: bool,
}

fn one() -> u32 {
    1
}

/// [`Response::Step`]: one line of a deploy's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What happened (`jordan: release[0] migrate: exited with status 0`).
    pub text: String,
}

/// [`Request::Logs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsRequest {
    /// The instance.
    pub instance: InstanceName,
    /// How many of the last lines.
    pub lines: u32,
    /// Keep sending what is written, across rotations, until the client hangs up.
    #[serde(default)]
    pub follow: bool,
    /// Instead of the last `lines`: everything written since this time (milliseconds since
    /// the Unix epoch), across the rotated files, compressed ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// The instance's `stderr.log` (with `logs.stderr: separate`) instead of `output.log`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stderr: bool,
}

/// [`Response::LogData`]: a piece of an instance log (whole lines; invalid UTF-8 replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogData {
    /// The text.
    pub data: String,
    /// More `LogData` frames of the same answer follow (a long `since`); always so when
    /// following.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more: bool,
}

/// [`Request::Reload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReloadRequest {
    /// Only compute and return the plan.
    #[serde(default)]
    pub dry_run: bool,
}

/// [`Response::Reload`]: the plan, and what applying it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// One entry per instance of the old or new configuration.
    pub plan: Vec<PlanEntry>,
    /// Changed daemon settings a reload cannot apply.
    #[serde(default)]
    pub not_applied: Vec<String>,
    /// Whether the plan was applied (false for a dry run).
    pub applied: bool,
    /// The outcome of each instance's action, when applied.
    #[serde(default)]
    pub results: Vec<Outcome>,
}

/// One instance in a [`ReloadReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// The instance.
    pub instance: InstanceName,
    /// What a reload does to it.
    pub action: PlanAction,
    /// The settings that changed.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// What a reload does to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlanAction {
    /// Unchanged: not touched.
    None,
    /// Settings applied without replacing workers.
    Update,
    /// Workers added or drained.
    Scale,
    /// Rolling restart.
    Restart,
    /// New port bound, rolling restart onto it.
    Rebind,
    /// New instance started.
    Start,
    /// Removed instance stopped.
    Stop,
}

impl PlanAction {
    /// How `ctsctl reload` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanAction::None => "none",
            PlanAction::Update => "update",
            PlanAction::Scale => "scale",
            PlanAction::Restart => "rolling restart",
            PlanAction::Rebind => "rebind",
            PlanAction::Start => "start",
            PlanAction::Stop => "stop",
        }
    }
}

/// [`Request::Scale`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// The instance.
    pub instance: InstanceName,
    /// The new number of workers (1-1024, `cts_config::MAX_WORKERS`; ctsd refuses others).
    pub workers: u32,
}

/// [`Request::Signal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    /// Which instances' workers.
    pub target: Target,
    /// Which signal.
    pub signal: WorkerSignal,
}

/// The signals an operator may send to workers (`ctsctl signal jordan USR1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum WorkerSignal {
    /// SIGHUP (gunicorn: reload its configuration and workers).
    Hup,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
    /// SIGUSR1 (gunicorn: reopen its log files).
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGTTIN (gunicorn: one more worker).
    Ttin,
    /// SIGTTOU (gunicorn: one worker fewer).
    Ttou,
    /// SIGWINCH.
    Winch,
}

impl WorkerSignal {
    /// Every signal, for help texts and parsing.
    pub const ALL: [WorkerSignal; 10] = [
        WorkerSignal::Hup,
        WorkerSignal::Int,
        WorkerSignal::Quit,
        WorkerSignal::Term,
        WorkerSignal::Kill,
        WorkerSignal::Usr1,
        WorkerSignal::Usr2,
        WorkerSignal::Ttin,
        WorkerSignal::Ttou,
        WorkerSignal::Winch,
    ];

    /// The name without `SIG` (`USR1`).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerSignal::Hup => "HUP",
            WorkerSignal::Int => "INT",
            WorkerSignal::Quit => "QUIT",
            WorkerSignal::Term => "TERM",
            WorkerSignal::Kill => "KILL",
            WorkerSignal::Usr1 => "USR1",
            WorkerSignal::Usr2 => "USR2",
            WorkerSignal::Ttin => "TTIN",
            WorkerSignal::Ttou => "TTOU",
            WorkerSignal::Winch => "WINCH",
        }
    }
}

impl std::str::FromStr for WorkerSignal {
    type Err = String;

    /// Accepts `USR1`, `SIGUSR1`, `usr1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let up = s.to_ascii_uppercase();
        let name = up.strip_prefix("SIG").unwrap_or(&up);
        WorkerSignal::ALL
            .into_iter()
            .find(|x| x.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = WorkerSignal::ALL.iter().map(|x| x.as_str()).collect();
                format!("unknown signal `{s}`; one of {}", names.join(", "))
            })
    }
}

/// [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The client's protocol version.
    pub proto: ProtoVersion,
    /// Free-form client identification for the daemon's log (`ctsctl 0.1.0`).
    #[serde(default)]
    pub client: String,
}

/// [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatusRequest {
    /// Only these instances; empty means all.
    #[serde(default)]
    pub instances: Vec<InstanceName>,
}

/// [`Request::Start`], [`Request::Stop`], [`Request::Restart`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRequest {
    /// The instances to act on.
    pub target: Target,
    /// Answer as soon as the operation has begun instead of when it is done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_wait: bool,
    /// Send [`Response::Progress`] frames while a restart runs, before the final answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub progress: bool,
}

impl TargetRequest {
    /// A request for `target` that waits for the end and sends no progress.
    pub fn new(target: Target) -> TargetRequest {
        TargetRequest {
            target,
            no_wait: false,
            progress: false,
        }
    }
}

/// [`Response::Progress`]: a rolling restart moved on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The instance.
    pub instance: InstanceName,
    /// Workers replaced so far.
    pub replaced: u32,
    /// Workers to replace.
    pub total: u32,
}

/// A response from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// The handshake succeeded.
    Welcome(Welcome),
    /// Answer to [`Request::Status`].
    Status(StatusReport),
    /// Answer to start, stop and restart: one outcome per instance.
    Outcomes(Outcomes),
    /// Answer to [`Request::Version`].
    Version(Welcome),
    /// Answer to [`Request::Reload`].
    Reload(ReloadReport),
    /// Sent before the final answer of a restart that asked for progress; more frames follow.
    Progress(Progress),
    /// Answer to [`Request::Logs`]; with `follow`, more of them keep coming.
    LogData(LogData),
    /// A line of a deploy's progress; more frames follow, then its [`Response::Outcomes`].
    Step(Step),
    /// Answer to [`Request::Upgrade`], from the ctsd that took over.
    Upgraded(UpgradeReport),
    /// The request failed as a whole.
    Error(ErrorReply),
}

/// [`Response::Welcome`] and [`Response::Version`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The daemon's protocol version.
    pub proto: ProtoVersion,
    /// The daemon's package version.
    pub daemon_version: String,
}

/// [`Response::Outcomes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    /// One per instance acted on.
    pub results: Vec<Outcome>,
}

/// What happened to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The instance.
    pub instance: InstanceName,
    /// Whether the operation completed.
    pub ok: bool,
    /// What was done, or why it failed.
    pub message: String,
    /// Why it failed, for exit codes and programs; absent on success (and from daemons
    /// older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

impl Outcome {
    /// A success.
    pub fn done(instance: &str, message: impl Into<String>) -> Self {
        Outcome {
            instance: instance.into(),
            ok: true,
            message: message.into(),
            failure: None,
        }
    }

    /// A failure of kind `failure`.
    pub fn failed(instance: &str, failure: Failure, message: impl Into<String>) -> Self {
        Outcome {
            instance: instance.into(),
            ok: false,
            message: message.into(),
            failure: Some(failure),
        }
    }
}

/// Why an [`Outcome`] failed; each has its own `ctsctl` exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Failure {
    /// A restart stopped early: a new worker failed; the old workers keep serving.
    RolledBack,
    /// The instance is in a crash loop.
    Failing,
    /// The instance is stopped (or was stopped meanwhile).
    Stopped,
    /// ctsd is shutting down.
    ShuttingDown,
    /// Any other failure (or one a newer daemon names that this client does not know).
    #[serde(other)]
    Other,
}

/// [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What kind of failure, for exit codes and programs.
    pub kind: ErrorKind,
    /// For people.
    pub message: String,
}

/// Kinds of [`ErrorReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A request kind this daemon does not know (a newer client).
    UnknownRequest,
    /// The request could not be decoded.
    Malformed,
    /// The frame exceeded the size limit.
    TooLarge,
    /// The first message was not a [`Request::Hello`].
    HandshakeRequired,
    /// A named instance is not configured.
    UnknownInstance,
    /// The peer may not do this.
    PermissionDenied,
    /// A reload found the configuration file invalid; nothing was changed.
    InvalidConfig,
    /// Incompatible protocol majors.
    ProtocolMismatch,
    /// The daemon is shutting down.
    ShuttingDown,
    /// Any other failure.
    Failed,
    /// A kind a newer daemon sent that this client does not know.
    #[serde(other)]
    Other,
}

/// Answer to [`Request::Status`]: the document `ctsctl status --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The daemon's package version.
    pub daemon_version: String,
    /// The daemon's pid.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// The instances, in configuration order.
    pub instances: Vec<InstanceStatus>,
}

/// One instance in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// Instance key (`jordan`).
    pub key: InstanceName,
    /// Display name (`Jordan`).
    pub name: String,
    /// TCP port.
    pub port: u16,
    /// URL prefix, empty for none.
    pub prefix: String,
    /// Currency code.
    pub currency: String,
    /// The instance's state.
    pub state: InstanceState,
    /// Workers the pool should have.
    pub desired_workers: u32,
    /// Workers that are ready now.
    pub ready_workers: u32,
    /// Crash replacements since ctsd started.
    pub restarts: u64,
    /// Seconds since the instance last became running (`None` when not running).
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// The last unexpected worker exit (`worker 2 pid 4711 killed by SIGKILL`).
    #[serde(default)]
    pub last_exit: Option<String>,
    /// The live workers.
    pub workers: Vec<WorkerStatus>,
    /// Bytes of worker output that could not be written to the instance log (disk full,
    /// directory not writable); a line in the log marks each gap.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// Whether the port accepts connections: false once an operator stopped the instance
    /// (a socket systemd passed stays listening). Absent from older daemons: true.
    #[serde(default = "yes")]
    pub listening: bool,
    /// The configuration file's `workers`, when a `ctsctl scale` made the pool differ from it
    /// (the next reload or ctsd restart returns to the file's number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_workers: Option<u32>,
    /// Processes the instance's workers left outside their process group that are still
    /// alive (orphans ctsd adopted); they are killed when their worker exits.
    #[serde(default)]
    pub strays: u32,
    /// The instance's other programs (a celery worker, a beat), in name order; the fields
    /// above are the web pool's. Absent from older daemons: none.
    #[serde(default)]
    pub programs: Vec<ProgramStatus>,
    /// The release directory its processes start in (its `cwd` resolved when it started, or
    /// where `ctsctl deploy` moved it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// One of an instance's programs besides web, in an [`InstanceStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramStatus {
    /// The program's name (`celery`); `jordan:celery` addresses it.
    pub name: String,
    /// Never two processes of it alive.
    pub singleton: bool,
    /// Its state, as an instance's.
    pub state: InstanceState,
    /// Processes it should have.
    pub desired_workers: u32,
    /// Processes that are ready now.
    pub ready_workers: u32,
    /// Crash replacements since ctsd started.
    pub restarts: u64,
    /// Seconds since it last became running (`None` when not running).
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    /// Its last unexpected exit.
    #[serde(default)]
    pub last_exit: Option<String>,
    /// Its live processes.
    pub workers: Vec<WorkerStatus>,
    /// Bytes of its output that could not be written to `<program>.log`.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// The file's `workers`, when a `ctsctl scale` made it differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_workers: Option<u32>,
    /// The release directory its processes start in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Processes its workers left outside their process group that are still alive.
    #[serde(default)]
    pub strays: u32,
}

/// One worker in an [`InstanceStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's pid (also its process group).
    pub pid: u32,
    /// Its slot in the pool, 0-based; a replacement takes the slot of the worker it replaces.
    pub slot: u32,
    /// Its state.
    pub state: WorkerState,
    /// Seconds since it was started.
    pub uptime_secs: u64,
    /// Its resident memory, KiB (`/proc/<pid>/smaps_rollup`): pages it shares with its
    /// siblings (a preloaded application) count in each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_kib: Option<u64>,
    /// Its proportional share of memory, KiB: shared pages divided among their users, so the
    /// workers' sum is what the pool costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pss_kib: Option<u64>,
}

/// State of an instance, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InstanceState {
    /// Workers are being started and not all are ready yet.
    Starting,
    /// Every desired worker is ready.
    Running,
    /// Workers are being stopped.
    Stopping,
    /// No workers, by request.
    Stopped,
    /// Workers crash repeatedly; ctsd keeps retrying at the slow rate.
    Failing,
}

/// State of a worker, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkerState {
    /// Started, not ready yet.
    Starting,
    /// Serving.
    Ready,
    /// Asked to stop, not exited yet.
    Stopping,
}

impl InstanceState {
    /// The name used on the wire and in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Running => "running",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
            InstanceState::Failing => "failing",
        }
    }
}

impl WorkerState {
    /// The name used on the wire and in `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Stopping => "stopping",
        }
    }
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorReply {
            kind,
            message: message.into(),
        }
    }
}

impl From<ErrorReply> for Response {
    fn from(e: ErrorReply) -> Self {
        Response::Error(e)
    }
}

/// Decodes a request, telling a request kind we do not know (a newer client:
/// [`ErrorKind::UnknownRequest`]) from bytes that are not a request at all
/// ([`ErrorKind::Malformed`]).
///
/// # Errors
///
/// The [`ErrorReply`] to send back.
pub fn decode_request(bytes: &[u8]) -> Result<Request, ErrorReply> {
    match serde_json::from_slice::<Request>(bytes) {
        Ok(r) => Ok(r),
        Err(e) => {
            let kind = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
            Err(match kind {
                Some(t) if !KNOWN_REQUESTS.contains(&t.as_str()) => ErrorReply::new(
                    ErrorKind::UnknownRequest,
                    format!(
                        "unknown request `{t}` (this daemon speaks protocol {})",
                        crate::PROTO_VERSION
                    ),
                ),
                _ => ErrorReply::new(ErrorKind::Malformed, format!("malformed request: {e}")),
            })
        }
    }
}

const KNOWN_REQUESTS: &[&str] = &[
    "hello",
    "status",
    "start",
    "stop",
    "restart",
    "version",
    "scale",
    "signal",
    "reopen_logs",
    "shutdown",
    "reload",
    "logs",
];

/// `serde(default)` for fields that read as true when absent.
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let r = Request::Restart(TargetRequest::new(Target::Instances(vec!["jordan".into()])));
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"type":"restart","target":{"instances":["jordan"]}}"#
        );
        let all = Request::Stop(TargetRequest::new(Target::All));
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            r#"{"type":"stop","target":"all"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Version).unwrap(),
            r#"{"type":"version"}"#
        );
    }

    #[test]
    fn unknown_and_malformed_are_told_apart() {
        let e = decode_request(br#"{"type":"frobnicate"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownRequest);
        let e = decode_request(br#"{"type":"restart"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        let e = decode_request(b"\xff\x00garbage").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
    }

    #[test]
    fn signal_names_parse_in_every_spelling() {
        for s in ["USR1", "SIGUSR1", "usr1", "sigusr1"] {
            assert_eq!(s.parse::<WorkerSignal>(), Ok(WorkerSignal::Usr1));
        }
        assert!("SIGFOO"
            .parse::<WorkerSignal>()
            .unwrap_err()
            .contains("HUP"));
    }

    #[test]
    fn status_request_fields_default() {
        let r = decode_request(br#"{"type":"status"}"#).unwrap();
        assert_eq!(r, Request::Status(StatusRequest::default()));
    }

    #[test]
    fn unknown_error_kind_from_newer_daemon_decodes() {
        let r: Response =
            serde_json::from_str(r#"{"type":"error","kind":"quota_exceeded","message":"x"}"#)
                .unwrap();
        assert!(matches!(
            r,
            Response::Error(ErrorReply {
                kind: ErrorKind::Other,
                ..
            })
        ));
    }
}
