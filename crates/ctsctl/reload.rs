//! `ctsctl reload [--dry-run]`: the plan, then each instance's outcome.

use crate::report;
use cts_client::{Client, ClientError};
use cts_proto::{ReloadRequest, Request};

/// Asks ctsd to re-read its configuration (or only to show the plan).
pub async fn run(client: &mut Client, dry_run: bool) -> Result<u8, ClientError> {
    match client
        .call(&Request::Reload(ReloadRequest { dry_run }))
        .await?
    {
        cts_proto::Response::Reload(r) => Ok(print(&r)),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// The plan (`jordan: rolling restart (command, env)`), then each instance's outcome.
fn print(r: &cts_proto::ReloadReport) -> u8 {
    println!(
        "{}:",
        if r.applied {
            "reload plan"
        } else {
            "reload plan (dry run, nothing applied)"
        }
    );
    for e in &r.plan {
        if e.fields.is_empty() {
            println!("  {}: {}", e.instance, e.action.as_str());
        } else {
            println!(
                "  {}: {} ({})",
                e.instance,
                e.action.as_str(),
                e.fields.join(", ")
            );
        }
    }
    for w in &r.not_applied {
        eprintln!("ctsctl: warning: {w}");
    }
    report::outcomes(r.results.clone(), "reload")
}
