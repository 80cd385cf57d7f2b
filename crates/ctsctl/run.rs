//! `ctsctl run INSTANCE[:PROGRAM] -- COMMAND…`: a one-off command (`manage.py migrate`,
//! `manage.py shell`) with the environment, working directory, user, umask and limits the
//! instance's workers (or its program's processes) get, attached to the terminal: ctsctl
//! replaces itself with the command, so the exit status is the command's.

use cts_config::{Config, PoolSpec};
use cts_proto::exit_codes;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;

/// Runs `argv` as a worker of `instance` would run; returns only on failure.
pub fn run(config: &Config, name: &str, argv: &[OsString], socket: &Path) -> ExitCode {
    let (instance, program) = match name.split_once(':') {
        Some((i, p)) => (i, Some(p)),
        None => (name, None),
    };
    let Some(inst) = config.instance(instance) else {
        let known: Vec<&str> = config.instances.iter().map(|i| i.key.as_str()).collect();
        eprintln!(
            "ctsctl: unknown instance `{instance}` in {} (instances: {})",
            config.source.display(),
            known.join(", ")
        );
        return ExitCode::from(exit_codes::UNKNOWN_INSTANCE);
    };
    let pool: &PoolSpec = match program {
        None | Some(cts_config::ProgramName::WEB) => &inst.pool,
        Some(p) => match inst.program(p) {
            Some(p) => &p.pool,
            None => {
                let known: Vec<&str> = std::iter::once(cts_config::ProgramName::WEB)
                    .chain(inst.programs.iter().map(|p| p.name.as_str()))
                    .collect();
                eprintln!(
                    "ctsctl: {instance} has no program `{p}` (its programs: {})",
                    known.join(", ")
                );
                return ExitCode::from(exit_codes::UNKNOWN_INSTANCE);
            }
        },
    };
    let privileges = match cts_supervisor::Privileges::for_pool(pool) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ctsctl: cannot run as the workers of {instance} do: {e}");
            return ExitCode::from(exit_codes::PERMISSION_DENIED);
        }
    };
    let Some((program, args)) = argv.split_first() else {
        eprintln!("ctsctl: give the command after `--`, e.g. ctsctl run {instance} -- /var/www/cts/venv/bin/python manage.py migrate (the python of the virtualenv that has Django)");
        return ExitCode::from(exit_codes::USAGE);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env_clear().envs(environment(pool, socket));
    let before_exec = move || {
        // SAFETY: as `Privileges::apply` requires, this runs (from `pre_exec` below, called by
        // `exec`, which does not fork) in a single-threaded process (`run` is called before
        // ctsctl starts a runtime or a thread) right before it execs the command, which is
        // meant to run with the user, limits and cwd `apply` switches to. If exec fails,
        // ctsctl only prints the error and exits.
        unsafe { privileges.apply() }
    };
    // SAFETY: `exec` runs the closure in this process right before execve; it only calls
    // `apply`, which makes only async-signal-safe system calls on data prepared here and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(before_exec);
    }
    let err = cmd.exec();
    eprintln!(
        "ctsctl: cannot run `{}` for {instance}{}: {err}",
        program.to_string_lossy(),
        pool.cwd
            .as_ref()
            .map(|c| format!(" in {}", c.display()))
            .unwrap_or_default()
    );
    ExitCode::from(if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

/// ctsd's own environment when it runs and can be read (the workers inherit it), else this
/// process's; without the variables ctsd removes for workers; then the instance's variables.
fn environment(pool: &PoolSpec, socket: &Path) -> BTreeMap<OsString, OsString> {
    let inherited: Vec<(OsString, OsString)> = match daemon_environment(socket) {
        Ok(Some(env)) => env,
        Ok(None) => std::env::vars_os().collect(),
        Err(why) => {
            eprintln!(
                "ctsctl: note: ctsd runs, but its environment cannot be read ({why}): \
                 starting from this shell's instead"
            );
            std::env::vars_os().collect()
        }
    };
    let configured = pool.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    // The secrets of `env_file` too, as the workers get them.
    cts_supervisor::worker_environment(inherited, configured.chain(pool.secrets.expose()))
}

/// The environment of the ctsd listening on `socket` (found by its peer credentials):
/// `Ok(None)` when no ctsd listens there, an error when it does but cannot be read.
fn daemon_environment(socket: &Path) -> Result<Option<Vec<(OsString, OsString)>>, String> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return Ok(None);
    };
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| e.to_string())?;
    drop(stream);
    let raw = std::fs::read(format!("/proc/{}/environ", cred.pid())).map_err(|e| e.to_string())?;
    Ok(Some(
        raw.split(|b| *b == 0)
            .filter_map(|entry| {
                let eq = entry.iter().position(|b| *b == b'=')?;
                Some((
                    std::ffi::OsStr::from_bytes(&entry[..eq]).to_owned(),
                    std::ffi::OsStr::from_bytes(&entry[eq + 1..]).to_owned(),
                ))
            })
            .collect(),
    ))
}
