//! Generates the man pages of `ctsd` (8) and `ctsctl` (1, one page per subcommand too) and the
//! shell completions of both from their clap definitions, into `$OUT_DIR/man` and
//! `$OUT_DIR/completions`. `packaging/build-deb.sh` collects them for the Debian package.

use clap::CommandFactory;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "crates/ctsd/cli.rs"]
mod ctsd_cli;

#[allow(dead_code)]
#[path = "crates/ctsctl/cli.rs"]
mod ctsctl_cli;

fn main() -> std::io::Result<()> {
    for f in ["build.rs", "crates/ctsd/cli.rs", "crates/ctsctl/cli.rs"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    let version = env!("CARGO_PKG_VERSION");
    let ctsd = ctsd_cli::Args::command().version(version);
    page(&man, ctsd.clone(), "8")?;
    let ctsctl = ctsctl_cli::Cli::command().version(version);
    page(&man, ctsctl.clone(), "1")?;
    for sub in ctsctl.get_subcommands() {
        let name: &'static str = Box::leak(format!("ctsctl-{}", sub.get_name()).into_boxed_str());
        page(&man, sub.clone().name(name).version(version), "1")?;
    }

    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let script =
            clap_complete::generate_to(shell, &mut ctsctl.clone(), "ctsctl", &completions)?;
        // Instance names, which clap cannot know: see `completion_extra`.
        let extra = ctsctl_cli::completion_extra(shell);
        if !extra.is_empty() {
            let mut f = std::fs::OpenOptions::new().append(true).open(&script)?;
            std::io::Write::write_all(&mut f, extra.as_bytes())?;
        }
        clap_complete::generate_to(shell, &mut ctsd.clone(), "ctsd", &completions)?;
    }
    Ok(())
}

/// Renders `cmd`'s man page into `dir/<name>.<section>`.
fn page(dir: &Path, cmd: clap::Command, section: &str) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .manual("CTS supervisor")
        .source(format!("ctsd {}", env!("CARGO_PKG_VERSION")))
        .render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.{section}")), buf)
}
