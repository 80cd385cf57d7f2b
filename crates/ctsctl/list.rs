//! `ctsctl list`: the instance keys, one a line, for scripts and shell completion: from the
//! running ctsd (which knows what a reload changed), else from the configuration file.

use cts_client::{Client, ClientError};
use cts_proto::exit_codes;
use std::path::Path;

/// Prints every instance key (with `programs`, each followed by `key:web` and `key:<program>`
/// when it has programs); `config` is read only when ctsd cannot be reached.
pub async fn run(socket: &Path, config: &Path, programs: bool) -> Result<u8, ClientError> {
    let keys = match from_daemon(socket).await {
        Ok(keys) => keys,
        Err(unreachable) => {
            let only_read = cts_config::LoadOptions {
                skip_accounts: true,
                ..cts_config::LoadOptions::default()
            };
            match cts_config::load(config, &only_read) {
                Ok(c) => c
                    .instances
                    .iter()
                    .map(|i| {
                        let names = i.programs.iter().map(|p| p.name.to_string()).collect();
                        (i.key.to_string(), names)
                    })
                    .collect(),
                Err(_) => return Err(unreachable),
            }
        }
    };
    for (key, names) in keys {
        println!("{key}");
        if programs && !names.is_empty() {
            println!("{key}:web");
            for p in names {
                println!("{key}:{p}");
            }
        }
    }
    Ok(exit_codes::OK)
}

/// Each instance's key and its programs' names.
async fn from_daemon(socket: &Path) -> Result<Vec<(String, Vec<String>)>, ClientError> {
    let mut client = Client::connect(socket).await?;
    let report = client.status(&[]).await?;
    Ok(report
        .instances
        .iter()
        .map(|i| {
            let names = i.programs.iter().map(|p| p.name.clone()).collect();
            (i.key.to_string(), names)
        })
        .collect())
}
