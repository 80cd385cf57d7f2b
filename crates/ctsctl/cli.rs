//! The command line of `ctsctl`: clap definitions only, also read by the build script that
//! generates the man page and shell completions.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Control the CTS supervisor: status, start, stop and rolling restarts of country instances.
#[derive(Debug, Parser)]
#[command(name = "ctsctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Control socket (default: $CTSD_SOCKET, then the socket of --config, then
    /// /run/ctsd/ctsd.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Find the control socket in this ctsd configuration file.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "Exit status: 0 ok, 1 failed, 2 usage, 3 ctsd not reachable, \
4 permission denied, 5 unknown instance, 6 protocol mismatch, 7 restart rolled back, \
8 instance failing, 9 instance stopped, 10 ctsd shutting down; `status`: 0 every instance \
running, 8 one failing, 9 one stopped or stopping, 11 one still starting (`--json`: 0).";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each instance: state, port, prefix, workers, pids, uptime, restarts, last exit.
    ///
    /// Exits 0 when every instance shown is running, else 8 (one is failing), 9 (one is
    /// stopped or stopping) or 11 (one is still starting), in that order of precedence;
    /// `--json` exits 0 whenever it printed the document (the states are in it).
    Status {
        /// Only these instances.
        instances: Vec<String>,
        /// Print one JSON document instead of a table.
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print nothing: only the exit status tells (for monitoring and scripts).
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Start stopped instances; waits until their workers are ready.
    Start(TargetArgs),
    /// Stop instances' workers gracefully (SIGTERM, then SIGKILL after stop_timeout).
    Stop(TargetArgs),
    /// Rolling restart: each worker is replaced by a new one that is ready before the old one
    /// stops, so the instance answers every request throughout.
    Restart(TargetArgs),
    /// Change an instance's number of workers; other workers are untouched. Waits until the
    /// pool runs at the new size.
    Scale {
        /// Instance key.
        instance: String,
        /// New number of workers (1-1024).
        #[arg(value_parser = clap::value_parser!(u32).range(1..=1024))]
        workers: u32,
    },
    /// Send a signal to every worker of instances: `ctsctl signal jordan USR1`,
    /// `ctsctl signal --all HUP`. Signals: HUP, INT, QUIT, TERM, KILL, USR1, USR2, TTIN, TTOU,
    /// WINCH (the SIG prefix is optional).
    Signal {
        /// Instance keys (none with --all), then the signal.
        #[arg(required = true, value_name = "INSTANCE… SIGNAL")]
        args: Vec<String>,
        /// Every instance.
        #[arg(long)]
        all: bool,
    },
    /// Re-read ctsd's configuration file and apply it: new instances start, removed ones stop,
    /// changed ones are scaled, updated or rolled, unchanged ones are not touched. An invalid
    /// file changes nothing. Prints the plan, then what each instance got.
    Reload {
        /// Print the plan without applying it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move instances onto a prepared release directory, without a failed request: the
    /// `deploy.once` jobs run in it, then instance by instance (the canary alone first, then
    /// --batch at a time) its `release` jobs (migrations) run in it and each of its programs
    /// rolls onto it, web first and singletons last. A failed job stops the deploy before the
    /// instance moves; a program that does not become ready rolls its instance back. At the
    /// end a `cwd` that is a symlink is switched to the release. The deploy runs inside ctsd:
    /// ctsctl shows its progress and may be interrupted. Exits non-zero when an instance was
    /// not moved.
    Deploy {
        /// The release directory (built and ready: code, virtualenv, static files).
        release: std::path::PathBuf,
        /// Only these instances (default: all).
        instances: Vec<String>,
        /// Move this instance first, alone; the others only if it succeeded.
        #[arg(long, value_name = "INSTANCE")]
        canary: Option<String>,
        /// How many instances move at once after the canary.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
        batch: u32,
        /// Print the plan without doing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the last lines of an instance's log, and with -f keep showing what is written
    /// (across rotations).
    Logs {
        /// Instance key.
        instance: String,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Follow: keep printing new lines until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Instead of the last lines, everything since TIME: a duration ago (`10m`, `2h`,
        /// `1d`) or a UTC time (`2026-11-24T17:00`, `2026-11-24 17:00:05`, `2026-11-24`),
        /// across rotated and compressed files.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// The instance's stderr.log (with `logs.stderr: separate`) instead of output.log.
        #[arg(long)]
        stderr: bool,
    },
    /// Replace the running ctsd by a new binary in place, without restarting a worker: the new
    /// ctsd keeps ctsd's pid and takes over every worker (with its readiness, restart counters
    /// and uptime), their output pipes (an unfinished line included), the listening sockets
    /// and the control socket. The new binary must first accept the configuration file, which
    /// must be what runs (`ctsctl reload` it otherwise). If it cannot be run, ctsd keeps
    /// running and says why. What a package upgrade runs.
    Upgrade {
        /// The new binary (default: the path ctsd was started from, which a package upgrade
        /// replaced).
        #[arg(long, value_name = "PATH")]
        binary: Option<std::path::PathBuf>,
    },
    /// Reopen every instance's log files (after an external logrotate moved them).
    ReopenLogs,
    /// Stop every worker gracefully and exit ctsd.
    Shutdown,
    /// Versions of ctsctl, ctsd and their protocol.
    Version,
    /// Print the nginx routing of every instance's prefix to its port.
    ///
    /// A `server` block generated from the configuration file (--config, default
    /// /etc/cts/ctsd.yaml): one `location /JO/` per instance proxying to its port with the
    /// headers Django needs, and `/JO` redirected to `/JO/`.
    NginxConfig {
        /// `server_name` (default `_`, any).
        #[arg(long, value_name = "NAME")]
        server_name: Option<String>,
        /// `listen`: a port or ADDR:PORT.
        #[arg(long, value_name = "ADDR:PORT", default_value = "80")]
        listen: String,
        /// Print only the `location` blocks, to `include` inside an existing `server`.
        #[arg(long)]
        locations_only: bool,
    },
    /// Run a one-off command as an instance's workers run, e.g. the migrations:
    /// `run iraq -- /var/www/cts/venv/bin/python manage.py migrate`.
    ///
    /// Name the virtualenv's python (e.g. /var/www/cts/venv/bin/python), the one that has
    /// Django: a bare `python` is whatever comes first on the PATH, usually without Django.
    /// The command gets the environment, working directory, user, umask and limits of the
    /// instance's workers, is attached to this terminal, and its exit status is ctsctl's.
    /// Reads the configuration file (--config, default /etc/cts/ctsd.yaml); starts from
    /// ctsd's environment when ctsd runs and it may be read, else from this shell's.
    Run {
        /// Instance key (`jordan`), or one of its programs (`jordan:celery`: its environment).
        instance: String,
        /// Environment, as `ctsd --env` (dev, staging or production).
        #[arg(long, value_name = "ENV", value_parser = ["dev", "staging", "production"])]
        env: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Print the instance keys, one a line: from the running ctsd, else from the
    /// configuration file (what shell completion offers).
    List {
        /// Also each instance's programs, as commands name them: `jordan:web`,
        /// `jordan:celery`.
        #[arg(long)]
        programs: bool,
    },
    /// Print a shell completion script: `ctsctl completions bash > /etc/bash_completion.d/ctsctl`.
    /// The scripts complete instance names too (through `ctsctl list`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// The completion script clap generated for `shell`, taught to complete instance names (from
/// `ctsctl list`) for the commands that take them: bash and fish get a function appended, zsh
/// gets its instance arguments pointed at one.
pub fn adapt_completion(shell: clap_complete::Shell, script: String) -> String {
    match shell {
        clap_complete::Shell::Bash => script + BASH_INSTANCES,
        clap_complete::Shell::Fish => script + FISH_INSTANCES,
        clap_complete::Shell::Zsh => {
            let script = script
                .replace(
                    "Only these instances:_default'",
                    "Only these instances:_ctsctl_instances'",
                )
                .replace(
                    "(e.g. jordan):_default'",
                    "(e.g. jordan):_ctsctl_instances'",
                )
                .replace(
                    ":instance -- Instance key:_default'",
                    ":instance -- Instance key:_ctsctl_instances'",
                );
            // Defined before the lines that register `_ctsctl`, which come last.
            match script.rfind("if [ \"$funcstack[1]\" = \"_ctsctl\" ]") {
                Some(at) => format!("{}{ZSH_INSTANCES}{}", &script[..at], &script[at..]),
                None => script,
            }
        }
        _ => script,
    }
}

const ZSH_INSTANCES: &str = r#"# Instance names, from `ctsctl list` (the running ctsd, else the configuration file).
(( $+functions[_ctsctl_instances] )) ||
_ctsctl_instances() {
    local -a keys
    keys=(${(f)"$(ctsctl list --programs 2>/dev/null)"})
    compadd -a keys
}

"#;

const BASH_INSTANCES: &str = r#"
# Instance names, from `ctsctl list` (the running ctsd, else the configuration file).
_ctsctl_instances() {
    local cur=${COMP_WORDS[COMP_CWORD]} sub="" i
    # The whole word being completed: bash splits `jordan:ce` at the colon (COMP_WORDBREAKS).
    local full=$cur
    [ -n "${COMP_LINE-}" ] && { full=${COMP_LINE:0:COMP_POINT}; full=${full##*[[:space:]]}; }
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --socket|--config|-c) ((i++)) ;;
            -*) ;;
            *) sub=${COMP_WORDS[i]}; break ;;
        esac
    done
    case $sub in
        status|start|stop|restart|scale|signal|logs|run)
            if [[ $cur != -* ]]; then
                local args=()
                for ((i = 1; i < COMP_CWORD; i++)); do
                    case ${COMP_WORDS[i]} in --socket|--config|-c) args+=("${COMP_WORDS[i]}" "${COMP_WORDS[i+1]}") ;; esac
                done
                COMPREPLY=($(compgen -W "$(ctsctl "${args[@]}" list --programs 2>/dev/null)" -- "$full"))
                # What bash inserts replaces only the part after the last colon.
                if [[ $full == *:* && ${COMP_WORDBREAKS-:} == *:* ]]; then
                    local colon=${full%"${full##*:}"}
                    COMPREPLY=("${COMPREPLY[@]#"$colon"}")
                fi
                return 0
            fi
            ;;
    esac
    _ctsctl "$@"
}
complete -F _ctsctl_instances -o nosort -o bashdefault -o default ctsctl
"#;

const FISH_INSTANCES: &str = r#"
# Instance names, from `ctsctl list` (the running ctsd, else the configuration file).
complete -c ctsctl -n "__fish_seen_subcommand_from status start stop restart scale signal logs run" -f -a "(ctsctl list --programs 2>/dev/null)"
"#;

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Instance keys (e.g. jordan).
    #[arg(required_unless_present = "all")]
    pub instances: Vec<String>,
    /// Every instance.
    #[arg(long, conflicts_with = "instances")]
    pub all: bool,
    /// Return as soon as the operation has begun.
    #[arg(long)]
    pub no_wait: bool,
}
