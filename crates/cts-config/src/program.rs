//! What can be checked of a pool against the machine: its program resolves (as the exec shim
//! will resolve it: a path with a slash against `cwd`, a bare name on the workers' `PATH`) to a
//! file the workers' user may execute, and its `cwd` is a directory that user may enter.
//!
//! `ctsd --check` reports these as errors; a running ctsd reports them as the reason a worker
//! could not be started (in `status`), so that one instance's missing program never stops the
//! others.

use crate::model::PoolSpec;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A problem found: which setting (`command[0]`, `cwd`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    /// The key under the instance: `command[0]` or `cwd`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks `pool`'s `cwd` and program for the workers' user, permission bits included (what
/// `ctsd --check` reports); returns the program's path.
///
/// # Errors
///
/// The first problem found.
pub fn check_program(pool: &PoolSpec) -> Result<PathBuf, ProgramError> {
    examine(pool, true)
}

/// What a running ctsd checks before each spawn: `cwd` is a directory and the program
/// resolves to a file. Not the permission bits: access granted by an ACL is real, and the
/// exec is the authority on it.
///
/// # Errors
///
/// The first problem found.
pub fn find_program(pool: &PoolSpec) -> Result<PathBuf, ProgramError> {
    examine(pool, false)
}

fn examine(pool: &PoolSpec, permissions: bool) -> Result<PathBuf, ProgramError> {
    let who = Who::of(pool);
    if let Some(cwd) = &pool.cwd {
        let meta = std::fs::metadata(cwd).map_err(|e| ProgramError {
            key: "cwd",
            message: format!("{}: {e}", cwd.display()),
        })?;
        if !meta.is_dir() {
            return Err(ProgramError {
                key: "cwd",
                message: format!("{} is not a directory", cwd.display()),
            });
        }
        if permissions {
            who.check("cwd", cwd, &meta, "cannot be entered by")?;
        }
    }
    let Some(program) = pool.command.first() else {
        return Err(ProgramError {
            key: "command[0]",
            message: "no program".into(),
        });
    };
    let path_var: Option<OsString> = pool
        .env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"));
    let found = if program.contains('/') {
        let p = Path::new(program);
        let full = match (&pool.cwd, p.is_relative()) {
            (Some(cwd), true) => cwd.join(p),
            _ => p.to_path_buf(),
        };
        std::fs::metadata(&full)
            .map(|m| (full.clone(), m))
            .map_err(|e| ProgramError {
                key: "command[0]",
                message: format!("{}: {e}", full.display()),
            })?
    } else {
        let dirs: Vec<PathBuf> = path_var
            .as_ref()
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        dirs.iter()
            .map(|d| {
                let d = match (&pool.cwd, d.is_relative()) {
                    (Some(cwd), true) => cwd.join(d),
                    _ => d.clone(),
                };
                d.join(program)
            })
            .find_map(|p| {
                std::fs::metadata(&p)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| (p, m))
            })
            .ok_or_else(|| ProgramError {
                key: "command[0]",
                message: format!(
                    "`{program}` is not found on the workers' PATH ({})",
                    path_var
                        .as_ref()
                        .map_or_else(|| "unset".into(), |p| p.to_string_lossy().into_owned())
                ),
            })?
    };
    let (path, meta) = found;
    if !meta.is_file() {
        return Err(ProgramError {
            key: "command[0]",
            message: format!("{} is not a file", path.display()),
        });
    }
    if permissions {
        who.check("command[0]", &path, &meta, "is not executable by")?;
    }
    Ok(path)
}

/// The workers' user, as far as permission bits go.
struct Who {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    name: String,
}

impl Who {
    fn of(pool: &PoolSpec) -> Who {
        let me = nix::unistd::geteuid().as_raw();
        match &pool.accounts {
            Some(a) => Who {
                uid: a.uid.unwrap_or(me),
                gid: a.gid,
                groups: a.groups.clone(),
                name: pool
                    .user
                    .clone()
                    .map_or_else(|| format!("uid {me}"), |u| format!("user {u}")),
            },
            None => Who {
                uid: me,
                gid: nix::unistd::getegid().as_raw(),
                groups: nix::unistd::getgroups()
                    .map(|g| g.iter().map(|g| g.as_raw()).collect())
                    .unwrap_or_default(),
                name: format!("uid {me}"),
            },
        }
    }

    /// An error for `key` unless [`Who::may`]: `<path> <what> <user> (mode, owner)`.
    fn check(
        &self,
        key: &'static str,
        path: &Path,
        meta: &std::fs::Metadata,
        what: &str,
    ) -> Result<(), ProgramError> {
        if self.may(meta) {
            return Ok(());
        }
        Err(ProgramError {
            key,
            message: format!(
                "{} {what} {} (mode {:04o}, owner uid {})",
                path.display(),
                self.name,
                meta.permissions().mode() & 0o7777,
                meta.uid()
            ),
        })
    }

    /// Whether the x bit that applies to this user is set (for root: any x bit).
    fn may(&self, meta: &std::fs::Metadata) -> bool {
        let mode = meta.permissions().mode();
        if self.uid == 0 {
            return meta.is_dir() || mode & 0o111 != 0;
        }
        let bit = if meta.uid() == self.uid {
            0o100
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            0o010
        } else {
            0o001
        };
        mode & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(command: &str, cwd: Option<&Path>) -> PoolSpec {
        let yaml =
            "defaults: {command: [x]}\ninstances:\n  a: {currency: AAA, prefix: /A, port: 8001}\n";
        let cfg = crate::parse_str(yaml, Path::new("/tmp/ctsd.yaml"), &Default::default())
            .expect("valid");
        let mut p = cfg.instances[0].pool.clone();
        p.command = vec![command.into()];
        p.cwd = cwd.map(Path::to_path_buf);
        p
    }

    #[test]
    fn a_program_on_the_path_resolves_and_a_missing_one_is_named() {
        assert!(check_program(&pool("sh", None)).is_ok());
        let e = check_program(&pool("no-such-program-ctsd", None)).expect_err("missing");
        assert_eq!(e.key, "command[0]");
        assert!(
            e.message
                .contains("`no-such-program-ctsd` is not found on the workers' PATH"),
            "{e}"
        );
    }

    #[test]
    fn paths_are_relative_to_cwd_and_cwd_must_exist() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("run.sh");
        std::fs::write(&bin, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = check_program(&pool("./run.sh", Some(dir.path()))).expect_err("not executable");
        if nix::unistd::geteuid().is_root() {
            assert!(e.message.contains("is not executable by uid 0"), "{e}");
        }
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            check_program(&pool("./run.sh", Some(dir.path()))).expect("found"),
            dir.path().join("./run.sh")
        );
        let e = check_program(&pool("sh", Some(&dir.path().join("gone")))).expect_err("no cwd");
        assert_eq!(e.key, "cwd");
    }
}
