//! `env_file`: the workers' secrets (`DB_PASSWORD`, `SECRET_KEY`, API tokens), read from a file
//! only root (or ctsd's user) may read, in systemd's EnvironmentFile syntax.
//!
//! The values reach the workers and `ctsctl run` (and release jobs, once there are any), and nothing else: [`Secrets`]
//! has no `Display`, its `Debug` shows names only, and no error message quotes a value or a
//! line of the file.

use crate::error::{ConfigError, ConfigErrors};
use crate::model::Config;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The variables of an `env_file`. Compared by value (a changed file rolls the workers), shown
/// by name only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Secrets {
    /// The variables, to put into a worker's environment (and nowhere else).
    pub fn expose(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Variables an `env_file` may not set: ctsd sets them for each worker.
const RESERVED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
];

/// Reads every instance's `env_file` into its pool's secrets.
///
/// # Errors
///
/// Per file: it cannot be read, it is readable by its group or others, it belongs to another
/// user than root or ctsd's, a line is not `KEY=VALUE` (by line number, never its text), or
/// it sets a variable ctsd sets itself.
pub(crate) fn read(config: &mut Config) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    for inst in &mut config.instances {
        let Some(path) = inst.pool.env_file.clone() else {
            continue;
        };
        let key = format!("instances.{}.env_file", inst.key);
        match load(&path) {
            Ok(s) => {
                // Programs have their instance's `env_file`.
                for p in &mut inst.programs {
                    p.pool.secrets = s.clone();
                }
                inst.pool.secrets = s;
            }
            Err(message) => errors.push(ConfigError {
                file: config.source.clone(),
                key,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

/// One `env_file`, checked and parsed.
fn load(path: &Path) -> Result<Secrets, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // One open, not followed through a symbolic link (which whoever may write the link's
    // directory could point at another instance's secrets); mode and owner are those of what
    // was opened, and what is read is that same file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => format!(
                "{} is a symbolic link; name the file itself",
                path.display()
            ),
            _ => format!("{}: {e}", path.display()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is readable or writable by its group or others (mode {mode:04o}); secrets must \
             be readable by their owner only: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "{} belongs to uid {}, not to root or to ctsd's user (uid {me}): anyone who is that \
             user could change the workers' secrets",
            path.display(),
            meta.uid()
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// systemd's EnvironmentFile syntax: `KEY=VALUE` lines; blank lines and lines starting with
/// `#` or `;` are skipped; whitespace around the key and the value is dropped; a value in
/// single quotes is taken as written, one in double quotes with `\"`, `\\`, `\n` and `\$`
/// escapes; a line ending in `\` goes on on the next line.
pub(crate) fn parse(text: &str) -> Result<Secrets, String> {
    let mut vars = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let number = n + 1;
        let mut line = line.to_owned();
        while line.ends_with('\\') && !line.ends_with("\\\\") {
            line.pop();
            match lines.next() {
                Some((_, next)) => line.push_str(next),
                None => break,
            }
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(format!("line {number}: not KEY=VALUE"));
        };
        let key = key.trim();
        if key.is_empty()
            || key.starts_with(|c: char| c.is_ascii_digit())
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "line {number}: the name before `=` is not a variable name"
            ));
        }
        if RESERVED.contains(&key) {
            return Err(format!(
                "line {number}: {key} is set by ctsd for each worker"
            ));
        }
        let value = unquote(value.trim()).map_err(|e| format!("line {number}: {e}"))?;
        vars.insert(key.to_owned(), value);
    }
    Ok(Secrets(vars))
}

/// A value without its quotes.
fn unquote(v: &str) -> Result<String, String> {
    if let Some(inner) = v.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(str::to_owned)
            .ok_or_else(|| "a single quote is not closed".into());
    }
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_owned());
    };
    let Some(inner) = inner.strip_suffix('"') else {
        return Err("a double quote is not closed".into());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_environment_file_syntax() {
        let s = parse(
            "# secrets of jordan\n; also a comment\n\nDB_PASSWORD=s3cr3t\n  SECRET_KEY = 'a b $c' \n\
             TOKEN=\"x\\\"y\\\\z\"\nLONG=one\\\ntwo\nEMPTY=\n",
        )
        .expect("valid");
        let got: Vec<(&str, &str)> = s.expose().collect();
        assert_eq!(
            got,
            [
                ("DB_PASSWORD", "s3cr3t"),
                ("EMPTY", ""),
                ("LONG", "onetwo"),
                ("SECRET_KEY", "a b $c"),
                ("TOKEN", "x\"y\\z"),
            ]
        );
    }

    #[test]
    fn errors_name_the_line_never_its_text() {
        for (text, want) in [
            ("A=1\nhunter2\n", "line 2: not KEY=VALUE"),
            (
                "1A=hunter2\n",
                "line 1: the name before `=` is not a variable name",
            ),
            ("A='hunter2\n", "line 1: a single quote is not closed"),
            (
                "LISTEN_FDS=3\n",
                "line 1: LISTEN_FDS is set by ctsd for each worker",
            ),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e, want);
            assert!(!e.contains("hunter2"));
        }
    }

    #[test]
    fn debug_shows_names_only() {
        let s = parse("DB_PASSWORD=hunter2\n").expect("valid");
        assert_eq!(format!("{s:?}"), "{\"DB_PASSWORD\"}");
    }

    #[test]
    fn a_file_others_may_read_is_refused_with_its_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("jordan.env");
        std::fs::write(&f, "DB_PASSWORD=hunter2\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load(&f).expect_err("world-readable");
        assert!(e.contains("(mode 0644)") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(load(&f).is_ok());
        let link = dir.path().join("link.env");
        std::os::unix::fs::symlink(&f, &link).expect("symlink");
        let e = load(&link).expect_err("a symlink");
        assert!(e.contains("is a symbolic link"), "{e}");
    }
}
