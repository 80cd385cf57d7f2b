//! Prints one line per instance using the `cts-client` library, the way a monitoring script
//! would: `cargo run --example client_status -- examples/run/ctsd.sock`.

use cts_client::Client;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let socket: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| cts_config::DEFAULT_SOCKET.into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = Client::connect(&socket).await?;
        for i in client.status(&[]).await?.instances {
            println!(
                "{} {} {}/{} workers ready, {} restarts",
                i.key,
                i.state.as_str(),
                i.ready_workers,
                i.desired_workers,
                i.restarts
            );
        }
        Ok(())
    })
}
