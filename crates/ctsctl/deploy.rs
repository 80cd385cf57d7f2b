//! `ctsctl deploy RELEASE_DIR [INSTANCE…] [--canary KEY] [--batch N] [--dry-run]`: the deploy
//! runs inside ctsd; this prints its progress as it comes, then each instance's outcome.

use crate::report;
use cts_client::{Client, ClientError};
use cts_proto::DeployRequest;
use std::io::IsTerminal;
use std::path::Path;

/// What `ctsctl deploy` was given.
pub struct Args<'a> {
    pub release: &'a Path,
    pub instances: &'a [String],
    pub canary: Option<&'a str>,
    pub batch: u32,
    pub dry_run: bool,
}

/// Sends the deploy and prints its steps (with the time since the start on a terminal).
pub async fn run(client: &mut Client, args: Args<'_>) -> Result<u8, ClientError> {
    // ctsd resolves nothing against ctsctl's directory: the path goes absolute.
    let release = std::path::absolute(args.release).unwrap_or_else(|_| args.release.to_owned());
    let req = DeployRequest {
        release: release.display().to_string(),
        instances: args.instances.iter().map(|s| s.as_str().into()).collect(),
        canary: args.canary.map(Into::into),
        batch: args.batch,
        dry_run: args.dry_run,
    };
    let started = std::time::Instant::now();
    let terminal = std::io::stdout().is_terminal();
    let results = client
        .deploy(req, |step| {
            if terminal {
                println!("[{:6.1}s] {step}", started.elapsed().as_secs_f64());
            } else {
                println!("{step}");
            }
        })
        .await?;
    Ok(report::outcomes(results, "deploy"))
}
