//! Generates the man pages of `ctsd` (8) and `ctsctl` (1, one page per subcommand too) and the
//! shell completions of both from their clap definitions, into `$OUT_DIR/man` and
//! `$OUT_DIR/completions`. `packaging/collect-docs.sh` copies them to `target/man/` and
//! `target/completions/` (where `packaging/build-deb.sh` takes them for the Debian package), and
//! `packaging/check-man.sh` checks them with man-db and groff.
//!
//! The pages are assembled from clap_mangen's sections (name, synopsis, options) and
//! hand-written roff below (description, signals, files, environment, exit status, see also):
//! keep those in step with the code they describe (`crates/ctsd/main.rs`,
//! `crates/cts-daemon`, `crates/cts-proto/src/exit_codes.rs`). What clap_mangen renders from
//! doc comments gets one fix: text in `backticks` is set in bold.

use clap::CommandFactory;
use std::io::Write;
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
    let ctsctl = ctsctl_cli::Cli::command().version(version);

    page(&man, &ctsd, "8", Some(CTSD_DESCRIPTION), CTSD_SECTIONS)?;

    // The man pages' copy of ctsctl: no `help` subcommand (it would be listed as a page of its
    // own), no `after_help` (the exit statuses have a section of their own). Building it
    // propagates the global options (--socket, --config) into the subcommands and names them
    // `ctsctl status`, … in their synopses. The CLI itself is not changed.
    let mut for_man = ctsctl
        .clone()
        .disable_help_subcommand(true)
        .after_help(None::<&str>);
    for_man.build();
    page(
        &man,
        &for_man,
        "1",
        Some(CTSCTL_DESCRIPTION),
        &[CTSCTL_EXIT_STATUS, CTSCTL_TAIL].concat(),
    )?;
    for sub in for_man.get_subcommands() {
        // Subcommands take no --version (clap rejects `ctsctl status --version`): their pages
        // must not list it, so the version is set on the top-level page only.
        let sub = sub.clone().disable_version_flag(true);
        let exit = match sub.get_name() {
            "status" => STATUS_EXIT_STATUS,
            "run" => RUN_EXIT_STATUS,
            "completions" | "nginx-config" => LOCAL_EXIT_STATUS,
            _ => SUBCOMMAND_EXIT_STATUS,
        };
        page(&man, &sub, "1", None, &[exit, SUBCOMMAND_SEE_ALSO].concat())?;
    }

    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let script =
            clap_complete::generate_to(shell, &mut ctsctl.clone(), "ctsctl", &completions)?;
        // Instance names, which clap cannot know: see `adapt_completion`.
        let text = std::fs::read_to_string(&script)?;
        std::fs::write(&script, ctsctl_cli::adapt_completion(shell, text))?;
        clap_complete::generate_to(shell, &mut ctsd.clone(), "ctsd", &completions)?;
    }
    Ok(())
}

/// Renders `cmd`'s man page into `dir/<name>.<section>`: title, NAME and SYNOPSIS from clap,
/// DESCRIPTION from `description` (raw roff) or else from the doc comment, OPTIONS from clap,
/// COMMANDS for the subcommands, then `extra` (raw roff sections).
fn page(
    dir: &Path,
    cmd: &clap::Command,
    section: &str,
    description: Option<&str>,
    extra: &str,
) -> std::io::Result<()> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let man = clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section(section)
        .manual("CTS supervisor")
        .source(format!("ctsd {}", env!("CARGO_PKG_VERSION")));

    let mut roff = Vec::new();
    man.render_title(&mut roff)?;
    man.render_name_section(&mut roff)?;
    man.render_synopsis_section(&mut roff)?;
    match description {
        Some(text) => write!(roff, ".SH DESCRIPTION\n{text}")?,
        None => man.render_description_section(&mut roff)?,
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut roff)?;
    }
    let subcommands: Vec<_> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subcommands.is_empty() {
        writeln!(roff, ".SH COMMANDS")?;
        for sub in subcommands {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            writeln!(
                roff,
                ".TP\n.BR {name}\\-{} ({section})\n{}",
                sub.get_name().replace('-', "\\-"),
                escape(&about)
            )?;
        }
    }
    roff.extend_from_slice(extra.as_bytes());

    let text = String::from_utf8(roff).expect("roff is UTF-8");
    std::fs::write(dir.join(format!("{name}.{section}")), polish(&text))
}

/// What each of clap_mangen's section renderers starts with (roff's apostrophe set-up); kept
/// once, at the top of the page.
const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";

/// Fixes what clap_mangen renders: the repeated preamble, the title line's empty date, and
/// `backticks` copied verbatim from doc comments, which become bold (plain in the NAME line,
/// which whatis shows as text).
fn polish(page: &str) -> String {
    let mut out = String::from(PREAMBLE);
    let mut in_name = false;
    for line in page.split_inclusive('\n') {
        if PREAMBLE.split_inclusive('\n').any(|p| p == line) {
            continue;
        }
        if line.starts_with(".TH ") && line.contains("  \"") {
            // clap_mangen leaves an empty date out instead of quoting it, which shifts the
            // source and manual into the date's and source's places.
            out.push_str(&line.replacen("  \"", " \"\" \"", 1));
            continue;
        }
        if let Some(heading) = line.strip_prefix(".SH ") {
            in_name = heading.trim() == "NAME";
        }
        let ticks = line.matches('`').count();
        if line.starts_with('.') || ticks == 0 || ticks % 2 == 1 {
            out.push_str(line);
        } else if in_name {
            out.push_str(&line.replace('`', ""));
        } else {
            for (i, piece) in line.split('`').enumerate() {
                if i > 0 {
                    out.push_str(if i % 2 == 1 { "\\fB" } else { "\\fR" });
                }
                out.push_str(piece);
            }
        }
    }
    out
}

/// `text` as one roff text line: backslashes, dashes and apostrophes escaped.
fn escape(text: &str) -> String {
    let text = text
        .replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\'', "\\*(Aq");
    match text.strip_prefix('.') {
        Some(rest) => format!("\\&.{rest}"),
        None => text,
    }
}

const CTSD_DESCRIPTION: &str = r#".B ctsd
runs the country instances of CTS, a Django application, on one server.
For every instance declared in its configuration file (see
.BR ctsd.yaml (5))
it binds the listening socket on the instance's port, runs a pre\-fork pool of workers on it
(typically one gunicorn master with one worker each), captures their standard output and
error into the instance's own log directory, restarts what crashes (with a growing delay; an
instance in a crash loop is marked \fBfailing\fR), and answers a Unix control socket that
.BR ctsctl (1)
talks to.
.PP
The listening sockets belong to ctsd, not to the workers: a rolling restart (each new worker
is ready before an old one stops) or the loss of every worker never closes a port, and
connections wait in the backlog until a worker accepts them.
.PP
Every worker is started with the instance's socket on file descriptor 3 and
\fBLISTEN_FDS\fR=1, \fBLISTEN_PID\fR (its own pid) and \fBLISTEN_FDNAMES\fR (the instance
key), as under systemd socket activation; with \fBCTS_INSTANCE\fR, \fBCTS_INSTANCE_NAME\fR,
\fBCTS_PREFIX\fR, \fBCTS_CURRENCY\fR, \fBCTS_ENVIRONMENT\fR, \fBPORT\fR, \fBSCRIPT_NAME\fR
(the prefix) and \fBDJANGO_SETTINGS_MODULE\fR (\fBcts.settings.\fR\fIkey\fR) added to ctsd's
own environment, then the instance's \fBenv\fR; with \fBNOTIFY_SOCKET\fR when
\fBready.notify\fR is true (the worker is ready when it sends \fBREADY=1\fR), else it is
ready once it has stayed up \fBready.after\fR.
Each worker runs in its own process group and is killed if ctsd dies.
/usr/share/doc/ctsd/README.md describes this worker contract in full.
.PP
ctsd runs in the foreground and logs its own events to standard error (the journal under
systemd) and to \fBctsd.log_file\fR when that is set.
It is meant to run as the systemd service \fBctsd.service\fR (\fBType=notify\fR); see
ENVIRONMENT for what it does with what systemd gives it.
\fBctsd \-\-check\fR validates the configuration without starting anything.
"#;

const CTSD_SECTIONS: &str = r#".SH SIGNALS
.TP
.BR SIGTERM ", " SIGINT
Stop gracefully: every worker gets SIGTERM, and SIGKILL when it has not exited after its
instance's \fBstop_timeout\fR; ctsd exits once all have exited.
A second SIGTERM or SIGINT during that stop kills every remaining worker at once.
.TP
.B SIGHUP
Reload: re\-read the configuration file and apply it, as \fBctsctl reload\fR does.
An invalid file is rejected with its errors and nothing running changes.
.TP
.B SIGUSR1
Reopen every log file, as \fBctsctl reopen\-logs\fR does (after an external logrotate
moved them).
.SH FILES
.TP
.I /etc/cts/ctsd.yaml
The configuration file (\fB\-\-config\fR); see
.BR ctsd.yaml (5).
.TP
.I /run/ctsd/ctsd.sock
The control socket, unless \fB\-\-socket\fR, \fBCTSD_SOCKET\fR or \fBctsd.socket\fR names
another (in that order of precedence).
.TP
.I /var/log/ctsd/INSTANCE/output.log
Each instance's log: its workers' output and ctsd's events about it; rotated files beside it
(\fIoutput.log.\fR followed by the UTC time of the rotation, \fB.gz\fR when compressed), and \fIstderr.log\fR with
\fBlogs.stderr: separate\fR.
The directory is \fBctsd.log_dir\fR or \fB\-\-log\-dir\fR; the Debian package's
configuration uses \fI/var/log/cts\fR.
.TP
.I /lib/systemd/system/ctsd.service
The systemd unit of the Debian package.
.TP
.I /usr/share/doc/ctsd/examples/ctsd\-jordan.socket
An example socket unit, for ports below 1024 or socket activation.
.SH ENVIRONMENT
None of these is passed on to the workers; the rest of ctsd's environment is.
.TP
.B CTSD_SOCKET
The control socket's path, when \fB\-\-socket\fR is not given; it takes precedence over
\fBctsd.socket\fR.
.TP
.B NOTIFY_SOCKET
Set by systemd for \fBType=notify\fR.
ctsd sends \fBREADY=1\fR once every instance has started (all its workers ready, or a first
failure), keeps \fBSTATUS=\fR current (e.g. "3/3 instances running, 12/12 workers ready"),
sends \fBRELOADING=1\fR and then \fBREADY=1\fR around a reload, and \fBSTOPPING=1\fR when
it stops.
.TP
.BR WATCHDOG_USEC ", " WATCHDOG_PID
Set by systemd with \fBWatchdogSec=\fR: ctsd sends \fBWATCHDOG=1\fR every half interval,
from its main loop and only after every instance has answered, so that systemd restarts a
wedged ctsd.
.TP
.BR LISTEN_FDS ", " LISTEN_PID ", " LISTEN_FDNAMES
Sockets passed by systemd (socket units with \fBFileDescriptorName=\fR set to an instance
key, or ctsd's own file descriptor store): ctsd uses them instead of binding the instances'
ports, so ports below 1024 and socket activation work.
Each must be a listening TCP socket on the instance's configured address and port, else
ctsd does not start; a socket whose name is no instance key is matched by its address.
.TP
.B FDSTORE
Set by systemd with \fBFileDescriptorStoreMax=\fR: ctsd stores every socket it bound itself
in systemd's file descriptor store (as \fBstore.\fR\fIkey\fR), so that the ports stay open
while ctsd restarts.
.SH EXIT STATUS
.TP
.B 0
Stopped after a signal or \fBctsctl shutdown\fR; or, with \fB\-\-check\fR, the
configuration is valid.
.TP
.B 1
Start\-up failed: a port could not be bound, the control socket or a log file could not be
set up, the runtime could not start; the reason is printed.
.TP
.B 2
The configuration is invalid (every error is printed with its file and key path, and nothing
was started), the command line is wrong, or \fB\-\-ready\-fd\fR names no open file
descriptor.
.SH SEE ALSO
.BR ctsctl (1),
.BR ctsd.yaml (5),
.BR systemd.service (5),
.BR systemd.socket (5),
.BR sd_notify (3),
.BR nginx (8)
.PP
/usr/share/doc/ctsd/README.md: the configuration, the worker contract, the logs, and how to
install and run CTS under ctsd.
"#;

const CTSCTL_DESCRIPTION: &str = r#".B ctsctl
controls
.BR ctsd (8)
through its control socket: it shows the instances' status, starts, stops, restarts (rolling:
no request is lost), scales and signals them, reloads ctsd's configuration, shows and follows
an instance's log, and stops ctsd.
Each command has a page of its own, listed under COMMANDS.
.PP
Three commands need no running ctsd: \fBnginx\-config\fR and \fBrun\fR read the
configuration file (\fB\-\-config\fR, default \fI/etc/cts/ctsd.yaml\fR), and
\fBcompletions\fR prints a shell completion script.
.PP
The control socket is, in this order: \fB\-\-socket\fR, \fBCTSD_SOCKET\fR, the
\fBctsd.socket\fR of the file named by \fB\-\-config\fR, \fI/run/ctsd/ctsd.sock\fR.
.PP
Root, the user ctsd runs as, the users of \fBctsd.admins.users\fR and the members of
\fBctsd.admins.groups\fR may run every command; the members of \fBctsd.socket_group\fR may
run \fBstatus\fR, \fBlogs\fR and \fBversion\fR; anyone else is refused (exit status 4).
"#;

/// Keep in step with crates/cts-proto/src/exit_codes.rs (packaging/check-man.sh checks that
/// every code there is listed).
const CTSCTL_EXIT_STATUS: &str = r#".SH EXIT STATUS
.TP
.B 0
OK: the command did what was asked.
.TP
.B 1
Failed for another reason (e.g. a reload whose configuration is invalid).
.TP
.B 2
Usage error: the command line is wrong.
.TP
.B 3
ctsd is not reachable: no socket, nobody listening, or no answer in time.
.TP
.B 4
Permission denied.
.TP
.B 5
Unknown instance.
.TP
.B 6
Protocol mismatch between ctsctl and ctsd.
.TP
.B 7
Rolled back: a restart stopped because a new worker failed; the old workers keep serving.
.TP
.B 8
Failing: the instance is in a crash loop (e.g. \fBstart\fR of an instance whose workers
crash).
.TP
.B 9
Stopped: the instance is stopped (\fBrestart\fR of a stopped instance), or was stopped
meanwhile.
.TP
.B 10
ctsd is shutting down.
.TP
.B 11
\fBstatus\fR only: an instance is still starting.
.PP
When several instances are named, the exit status is that of the first one that failed.
\fBstatus\fR exits 0 when every instance shown is running, else 8 when one is failing, 9 when
one is stopped or stopping, 11 when one is still starting (in that order of precedence);
\fBstatus \-\-json\fR exits 0 whenever it printed the document.
\fBrun\fR exits with the command's status.
"#;

const CTSCTL_TAIL: &str = r#".SH ENVIRONMENT
.TP
.B CTSD_SOCKET
The control socket's path, when \fB\-\-socket\fR is not given.
.SH FILES
.TP
.I /run/ctsd/ctsd.sock
The default control socket.
.TP
.I /etc/cts/ctsd.yaml
The default configuration file of \fBnginx\-config\fR and \fBrun\fR.
.SH SEE ALSO
.BR ctsd (8),
.BR ctsd.yaml (5),
.BR nginx (8)
"#;

const STATUS_EXIT_STATUS: &str = r#".SH EXIT STATUS
.TP
.B 0
Every instance shown is running; or, with \fB\-\-json\fR, the document was printed (the
states are in it).
.TP
.B 8
An instance is failing (in a crash loop).
.TP
.B 9
An instance is stopped or stopping (and none is failing).
.TP
.B 11
An instance is still starting (and none is failing, stopped or stopping).
.PP
Otherwise as for every command: 3 ctsd not reachable, 4 permission denied, 5 unknown
instance, 6 protocol mismatch; see
.BR ctsctl (1).
"#;

const RUN_EXIT_STATUS: &str = r#".SH EXIT STATUS
The command's own exit status (ctsctl replaces itself with the command), or: 127 when the
command cannot be found, 126 when it cannot be run, 5 for an unknown instance, 4 when the
workers' user or limits need root, 2 for a usage error or when the configuration file cannot
be read or is invalid (its errors are printed).
.SH EXAMPLES
Run the migrations of every instance, with the virtualenv's python (the one that has Django
installed):
.PP
.RS 4
.nf
for i in turkey iraq jordan; do
    ctsctl run $i \-\- /var/www/cts/venv/bin/python manage.py migrate
done
.fi
.RE
"#;

const LOCAL_EXIT_STATUS: &str = r#".SH EXIT STATUS
0 when the output was printed; 2 for a usage error, or (\fBnginx\-config\fR) when the
configuration file cannot be read or is invalid (its errors are printed).
"#;

const SUBCOMMAND_EXIT_STATUS: &str = r#".SH EXIT STATUS
0 ok, 1 failed, 2 usage error, 3 ctsd not reachable, 4 permission denied, 5 unknown instance,
6 protocol mismatch, 7 restart rolled back, 8 instance failing, 9 instance stopped, 10 ctsd
shutting down; see
.BR ctsctl (1).
"#;

const SUBCOMMAND_SEE_ALSO: &str = r#".SH SEE ALSO
.BR ctsctl (1),
.BR ctsd (8),
.BR ctsd.yaml (5)
"#;
