//! Validated names: [`InstanceKey`], [`ProgramName`], [`Prefix`] and [`Currency`].
//!
//! Each can only be built through its checking constructor, so a value of the
//! type is proof that the check passed: an `InstanceKey` is always a safe
//! directory name, a `Prefix` always a well-formed URL prefix.

use std::fmt;

/// An instance key: `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`, so it is a safe directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceKey(String);

/// The name of one of an instance's programs besides `web` (`celery`, `beat`):
/// `[a-z0-9][a-z0-9_-]{0,31}`, never `web` (the top-level pool) nor `output`/`stderr` (whose
/// `.log` files are the web pool's). It names `<program>.log` in the instance's log directory
/// and follows the instance key in `jordan:celery`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProgramName(String);

/// A URL prefix: empty, or `/` followed by segments, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

/// Three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

/// The longest instance key accepted.
const MAX_KEY_LEN: usize = 64;

impl InstanceKey {
    /// Checks `key` and wraps it.
    ///
    /// # Errors
    ///
    /// A message when `key` is empty, longer than 64 characters, or not
    /// `[A-Za-z0-9][A-Za-z0-9_-]*` (so `../x`, `a/b` and `.hidden` are refused:
    /// the key becomes a directory name under the log directory).
    pub fn new(key: &str) -> Result<InstanceKey, String> {
        const RULE: &str = "an instance key is 1 to 64 letters, digits, `_` or `-`, \
                            starting with a letter or digit (it becomes a directory name)";
        let mut chars = key.chars();
        let Some(first) = chars.next() else {
            return Err(format!("the instance key is empty; {RULE}"));
        };
        if key.len() > MAX_KEY_LEN {
            return Err(format!(
                "instance key {key:?} is {} characters long; {RULE}",
                key.chars().count()
            ));
        }
        let safe = first.is_ascii_alphanumeric()
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !safe {
            return Err(format!("{key:?} is not a safe instance key; {RULE}"));
        }
        Ok(InstanceKey(key.to_owned()))
    }

    /// The key as written (`jordan`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest program name accepted.
const MAX_PROGRAM_LEN: usize = 32;

impl ProgramName {
    /// The name of the pool that holds the instance's socket: the top-level settings.
    pub const WEB: &'static str = "web";

    /// Checks `name` and wraps it.
    ///
    /// # Errors
    ///
    /// A message when `name` is not `[a-z0-9][a-z0-9_-]*` of at most 32 characters, or is
    /// one of the reserved names.
    pub fn new(name: &str) -> Result<ProgramName, String> {
        const RULE: &str = "a program name is 1 to 32 lower-case letters, digits, `_` or `-`, \
                            starting with a letter or digit (it names <program>.log)";
        let mut chars = name.chars();
        let safe = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !safe || name.len() > MAX_PROGRAM_LEN {
            return Err(format!("{name:?} is not a program name; {RULE}"));
        }
        match name {
            Self::WEB => Err(
                "`web` is the instance's top-level pool (command, workers, ... outside \
                 `programs:`); give this program another name"
                    .to_owned(),
            ),
            "output" | "stderr" => Err(format!(
                "`{name}` is reserved: {name}.log is the web pool's log; give this program \
                 another name"
            )),
            _ => Ok(ProgramName(name.to_owned())),
        }
    }

    /// The name as written (`celery`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProgramName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Prefix {
    /// The empty prefix: the instance is served at the root.
    pub const NONE: Prefix = Prefix(String::new());

    /// Checks `prefix` and wraps it. The empty string means no prefix.
    ///
    /// # Errors
    ///
    /// A message when `prefix` does not start with `/`, ends with `/`, or has
    /// a segment that is empty, `.`, `..`, or contains anything but
    /// `[A-Za-z0-9._~-]`.
    pub fn new(prefix: &str) -> Result<Prefix, String> {
        if prefix.is_empty() {
            return Ok(Prefix::NONE);
        }
        let Some(rest) = prefix.strip_prefix('/') else {
            return Err(format!(
                "prefix {prefix:?} must start with `/` (e.g. /JO), or be empty for none"
            ));
        };
        if rest.is_empty() || rest.ends_with('/') {
            return Err(format!(
                "prefix {prefix:?} must not end with `/` (write /JO, or leave it empty for none)"
            ));
        }
        for segment in rest.split('/') {
            let safe = !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c));
            if !safe {
                return Err(format!(
                    "prefix {prefix:?} has a bad segment {segment:?}: segments are \
                     letters, digits, `.`, `_`, `~` or `-`"
                ));
            }
        }
        Ok(Prefix(prefix.to_owned()))
    }

    /// The prefix as written (`/JO`), or `""` for none.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the empty prefix.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a request path could match both prefixes: they are equal, one
    /// is a whole-segment prefix of the other (`/TR` and `/TR/x`), or one is
    /// empty. Compared case-insensitively, since nginx routing often is.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        if self.is_empty() || other.is_empty() {
            return true;
        }
        let a = self.0.to_ascii_lowercase();
        let b = other.0.to_ascii_lowercase();
        let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        long == short
            || long
                .strip_prefix(&short)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Currency {
    /// `XXX`, ISO 4217's "no currency" (the dev instance `local` uses it).
    pub const NONE: Currency = Currency(*b"XXX");

    /// Checks `code` and wraps it.
    ///
    /// # Errors
    ///
    /// A message when `code` is not exactly three upper-case ASCII letters.
    pub fn new(code: &str) -> Result<Currency, String> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Currency([a, b, c])),
            _ => Err(format!(
                "currency {code:?} is not three upper-case letters (an ISO 4217 code such as JOD)"
            )),
        }
    }

    /// The code (`JOD`).
    pub fn as_str(&self) -> &str {
        // Only built from three ASCII upper-case letters, so always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_keys() {
        for good in [
            "jordan",
            "a",
            "A1",
            "north-iraq",
            "x_y",
            "9",
            &"k".repeat(64),
        ] {
            assert_eq!(InstanceKey::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "_x",
            "a b",
            "é",
            "a.b",
            &"k".repeat(65),
        ] {
            assert!(InstanceKey::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(InstanceKey::new("../x")
            .unwrap_err()
            .contains("not a safe instance key"));
        assert_eq!(InstanceKey::new("jordan").unwrap().to_string(), "jordan");
    }

    #[test]
    fn prefixes() {
        for good in ["", "/JO", "/a/b", "/v1.2", "/~user", "/a-b_c"] {
            assert_eq!(Prefix::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "JO", "/", "/JO/", "//JO", "/a//b", "/a b", "/..", "/./x", "/JO?x", "/é",
        ] {
            assert!(Prefix::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Prefix::new("JO")
            .unwrap_err()
            .contains("must start with `/`"));
        assert!(Prefix::new("/JO/")
            .unwrap_err()
            .contains("must not end with `/`"));
        assert_eq!(Prefix::new("/JO").unwrap().to_string(), "/JO");
        assert!(Prefix::NONE.is_empty());
    }

    #[test]
    fn prefix_overlap() {
        let p = |s: &str| Prefix::new(s).unwrap();
        assert!(p("/TR").overlaps(&p("/TR")));
        assert!(p("/TR").overlaps(&p("/tr")));
        assert!(p("/TR").overlaps(&p("/TR/x")));
        assert!(p("/TR/x").overlaps(&p("/TR")));
        assert!(p("").overlaps(&p("/TR")));
        assert!(p("/TR").overlaps(&p("")));
        assert!(!p("/TR").overlaps(&p("/TRY")));
        assert!(!p("/TR").overlaps(&p("/IQ")));
        assert!(!p("/a/b").overlaps(&p("/a/c")));
    }

    #[test]
    fn currencies() {
        assert_eq!(Currency::new("JOD").unwrap().as_str(), "JOD");
        assert_eq!(Currency::new("TRY").unwrap().to_string(), "TRY");
        assert_eq!(Currency::NONE.as_str(), "XXX");
        for bad in ["", "jod", "JO", "JODX", "J0D", "ÄBC", "Jod"] {
            assert!(Currency::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
