//! Errors: one [`ConfigError`] per problem, collected into [`ConfigErrors`].
//!
//! Validation never stops at the first problem. Every walker gets a [`Diag`]
//! (the file being read plus the errors found so far), pushes onto it and
//! carries on with a default in place of the bad value; only at the very end
//! does [`Diag::finish`] turn a non-empty list into `Err`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in: the config file, or the pillar named by
    /// `instances_file` for problems inside it.
    pub file: PathBuf,
    /// The dotted key path (`instances.jordan.port`, `defaults.command[2]`),
    /// or empty when the problem is the file as a whole (unreadable, bad YAML).
    pub key: String,
    /// What is wrong, and where possible what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, in the order they were found.
///
/// Never empty: a load that found no problem returns `Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in the order they were found.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The error collector handed to every walker: the file being read and the
/// problems found so far.
#[derive(Debug)]
pub(crate) struct Diag {
    /// Stamped on every error pushed, so walkers only deal in key paths.
    file: PathBuf,
    /// Everything found so far, in walk order.
    errors: Vec<ConfigError>,
}

impl Diag {
    /// A collector for problems in `file`.
    pub(crate) fn new(file: &Path) -> Diag {
        Diag {
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    /// Records a problem at `key` (a dotted path, or empty for the whole file).
    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        let file = self.file.clone();
        self.error_in(&file, key, message);
    }

    /// Moves the problems of another collector (another file) into this one.
    pub(crate) fn absorb(&mut self, other: Diag) {
        for error in other.errors {
            if !self.errors.contains(&error) {
                self.errors.push(error);
            }
        }
    }

    /// Whether anything has been recorded yet.
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Records a problem in another file than this collector's (the pillar
    /// that the instances came from).
    pub(crate) fn error_in(&mut self, file: &Path, key: &str, message: impl Into<String>) {
        let error = ConfigError {
            file: file.to_path_buf(),
            key: key.to_owned(),
            message: message.into(),
        };
        // The same mistake reached twice (say, through two merge paths) is
        // still one mistake for the operator.
        if !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    /// `Ok(value)` when nothing was recorded, else every recorded problem.
    ///
    /// `value` is `None` only when something was recorded; should a walker
    /// ever give up silently, that still becomes an error rather than a panic.
    pub(crate) fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigErrors> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => {
                if self.errors.is_empty() {
                    self.error(
                        "",
                        "internal error: the configuration was rejected without a reason",
                    );
                }
                Err(ConfigErrors(self.errors))
            }
        }
    }
}

/// `parent.name`, quoting `name` when it is not a plain word (so that a key
/// like `../x` or `a.b` cannot be mistaken for several path segments).
pub(crate) fn child(parent: &str, name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let segment = if plain {
        name.to_owned()
    } else {
        format!("{name:?}")
    };
    if parent.is_empty() {
        segment
    } else {
        format!("{parent}.{segment}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_key() {
        let with = ConfigError {
            file: PathBuf::from("/etc/ctsd.yaml"),
            key: "instances.jordan.port".into(),
            message: "port 8001 is already used by instance turkey".into(),
        };
        assert_eq!(
            with.to_string(),
            "/etc/ctsd.yaml: instances.jordan.port: port 8001 is already used by instance turkey"
        );
        let without = ConfigError {
            key: String::new(),
            message: "cannot read: gone".into(),
            ..with.clone()
        };
        assert_eq!(without.to_string(), "/etc/ctsd.yaml: cannot read: gone");
        let all = ConfigErrors(vec![with, without]);
        assert_eq!(all.to_string().lines().count(), 2);
    }

    #[test]
    fn key_paths() {
        assert_eq!(child("", "ctsd"), "ctsd");
        assert_eq!(child("instances", "jordan"), "instances.jordan");
        assert_eq!(child("instances", "../x"), "instances.\"../x\"");
        assert_eq!(child("instances", ""), "instances.\"\"");
        assert_eq!(index("defaults.command", 2), "defaults.command[2]");
    }

    #[test]
    fn diag_deduplicates_and_finishes() {
        let mut diag = Diag::new(Path::new("c.yaml"));
        assert!(!diag.has_errors());
        diag.error("a", "bad");
        diag.error("a", "bad");
        let mut other = Diag::new(Path::new("p.sls"));
        other.error("", "worse");
        diag.absorb(other);
        let errors = diag.finish(Some(())).unwrap_err();
        assert_eq!(errors.0.len(), 2);
        assert_eq!(errors.0[1].file, PathBuf::from("p.sls"));
        let silent = Diag::new(Path::new("c.yaml"))
            .finish::<()>(None)
            .unwrap_err();
        assert!(silent.0[0].message.contains("internal error"));
        assert_eq!(Diag::new(Path::new("c.yaml")).finish(Some(7)), Ok(7));
    }
}
