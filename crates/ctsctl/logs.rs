//! `ctsctl logs INSTANCE [-n N] [-f] [--since TIME] [--stderr]`.

use cts_client::{Client, ClientError};
use cts_proto::{exit_codes, LogsRequest, Request};
use std::io::Write;

/// What `logs` was asked for.
pub struct Args<'a> {
    /// The instance.
    pub instance: &'a str,
    /// `-n`.
    pub lines: u32,
    /// `-f`.
    pub follow: bool,
    /// `--since`, as typed.
    pub since: Option<&'a str>,
    /// `--stderr`.
    pub stderr: bool,
}

/// Streams the instance's log to stdout until it ends (or, with `-f`, until interrupted).
pub async fn run(client: &mut Client, args: &Args<'_>) -> Result<u8, ClientError> {
    let since_ms = args
        .since
        .map(since_millis)
        .transpose()
        .map_err(ClientError::Usage)?;
    let req = Request::Logs(LogsRequest {
        instance: args.instance.into(),
        lines: args.lines,
        follow: args.follow,
        since_ms,
        stderr: args.stderr,
    });
    client
        .stream_logs(&req, |data| {
            let mut out = std::io::stdout().lock();
            out.write_all(data.as_bytes())
                .and_then(|()| out.flush())
                .is_ok()
        })
        .await?;
    Ok(exit_codes::OK)
}

/// `--since`: a duration ago (`10m`) or a UTC time, as milliseconds since the epoch.
fn since_millis(text: &str) -> Result<u64, String> {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = match cts_config::parse_duration(text) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("--since {text}: too long ago"))?,
        Err(_) => cts_logs::time::parse_utc(text).ok_or_else(|| {
            format!(
                "--since {text:?}: give a duration ago (10m, 2h, 1d) or a UTC time \
                 (2026-11-24T17:00, 2026-11-24 17:00:05, 2026-11-24)"
            )
        })?,
    };
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}
