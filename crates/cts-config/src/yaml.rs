//! Typed reads from a `serde_yaml::Value`, each reporting a wrong type with
//! its key path instead of failing.
//!
//! Every `read_*` function returns `None` after recording the problem, so the
//! caller falls back to a default and goes on to find the next problem. This
//! is why the crate walks `Value`s instead of deriving `Deserialize` with
//! `deny_unknown_fields`: serde stops at the first error.

use std::time::Duration;

use serde_yaml::Value;

use crate::error::{child, Diag};
use crate::model::ByteSize;
use crate::units::{parse_duration, parse_size};

/// Parses a whole YAML document. A syntax error is recorded (with its line
/// and column) against the file as a whole. `<<: *anchor` merge keys are
/// applied, since YAML users share settings that way.
pub(crate) fn parse_document(text: &str, diag: &mut Diag) -> Option<Value> {
    let mut doc = match serde_yaml::from_str::<Value>(text) {
        Ok(doc) => doc,
        Err(e) => {
            diag.error("", syntax_message(&e));
            return None;
        }
    };
    if let Err(e) = doc.apply_merge() {
        diag.error("", syntax_message(&e));
        return None;
    }
    Some(doc)
}

/// "invalid YAML: ... at line 3 column 8", adding the position when
/// serde_yaml's own text lacks it (it does for duplicate keys).
fn syntax_message(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    match error.location() {
        Some(at) if !text.contains(" at line ") => format!(
            "invalid YAML: {text} at line {} column {}",
            at.line(),
            at.column()
        ),
        _ => format!("invalid YAML: {text}"),
    }
}

/// A YAML mapping with string keys, remembering where it sits in the file.
#[derive(Debug)]
pub(crate) struct Map<'a> {
    /// The key path of the mapping itself (`instances.jordan`).
    path: String,
    /// Entries in file order (serde_yaml keeps it).
    entries: Vec<(String, &'a Value)>,
}

impl<'a> Map<'a> {
    /// Reads `value` (at `path`) as a mapping. `null`, as left by a section
    /// whose contents are all commented out, is an empty mapping. Keys that
    /// are numbers are taken as their decimal text; other non-string keys are
    /// reported and skipped.
    pub(crate) fn read(value: &'a Value, path: &str, diag: &mut Diag) -> Option<Map<'a>> {
        let mapping = match value {
            Value::Mapping(mapping) => mapping,
            Value::Null => {
                return Some(Map {
                    path: path.to_owned(),
                    entries: Vec::new(),
                })
            }
            other => {
                diag.error(
                    path,
                    format!("expected a mapping of settings, got {}", describe(other)),
                );
                return None;
            }
        };
        let mut entries = Vec::with_capacity(mapping.len());
        for (key, value) in mapping {
            match key {
                Value::String(key) => entries.push((key.clone(), value)),
                Value::Number(number) => entries.push((number.to_string(), value)),
                other => diag.error(path, format!("keys must be names, got {}", describe(other))),
            }
        }
        Some(Map {
            path: path.to_owned(),
            entries,
        })
    }

    /// The key path of `key` inside this mapping.
    pub(crate) fn path_of(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// The value under `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| *value)
    }

    /// The entries, in file order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &'a Value)> + '_ {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), *value))
    }

    /// Reports every key not in `known` as an unknown setting, suggesting the
    /// closest known one.
    pub(crate) fn check_keys(&self, known: &[&str], diag: &mut Diag) {
        for key in self.unknown_keys(known) {
            diag.error(&self.path_of(key), unknown_setting(key, known));
        }
    }

    /// The keys not in `known`, in file order.
    pub(crate) fn unknown_keys<'m>(&'m self, known: &[&str]) -> Vec<&'m str> {
        self.entries
            .iter()
            .map(|(key, _)| key.as_str())
            .filter(|key| !known.contains(key))
            .collect()
    }
}

/// "unknown setting; did you mean `workers`?" (the hint only when some known
/// key is close).
pub(crate) fn unknown_setting(key: &str, known: &[&str]) -> String {
    match closest(key, known) {
        Some(best) => format!("unknown setting; did you mean `{best}`?"),
        None => format!("unknown setting; known settings here are {}", list(known)),
    }
}

/// `` `a`, `b` and `c` ``.
fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    match quoted.split_last() {
        None => "none".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The candidate closest to `word` by edit distance, if within 2 edits (and
/// fewer edits than `word` has characters, so `x` does not suggest `h`).
pub fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = 2.min(word.chars().count().saturating_sub(1));
    candidates
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// A short description of a value for "expected X, got Y" messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

/// A whole number, possibly negative (range checks are the caller's, so it
/// can say what the range means). Quoted digits are accepted: pillars often
/// quote everything.
pub(crate) fn read_int(value: &Value, path: &str, diag: &mut Diag) -> Option<i128> {
    let parsed = match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.parse::<i128>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        diag.error(
            path,
            format!("expected a whole number, got {}", describe(value)),
        );
    }
    parsed
}

/// A whole number in `min..=max`.
pub(crate) fn read_u32_in(
    value: &Value,
    path: &str,
    diag: &mut Diag,
    min: u32,
    max: u32,
) -> Option<u32> {
    let n = read_int(value, path, diag)?;
    if n < i128::from(min) {
        diag.error(path, format!("{n} is too small: must be at least {min}"));
        return None;
    }
    if n > i128::from(max) {
        diag.error(path, format!("{n} is too large: must be at most {max}"));
        return None;
    }
    u32::try_from(n).ok()
}

/// A string; nothing else is converted.
pub(crate) fn read_str<'v>(value: &'v Value, path: &str, diag: &mut Diag) -> Option<&'v str> {
    match value {
        Value::String(s) => Some(s),
        other => {
            diag.error(path, format!("expected a string, got {}", describe(other)));
            None
        }
    }
}

/// A string, or a number or boolean taken as its text (`PORT: 8000`,
/// `DEBUG: true` in `env`, `"1"` written as `1` in `command`).
pub(crate) fn read_scalar(value: &Value, path: &str, diag: &mut Diag) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            diag.error(path, format!("expected a string, got {}", describe(other)));
            None
        }
    }
}

/// `true` or `false`.
pub(crate) fn read_bool(value: &Value, path: &str, diag: &mut Diag) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        other => {
            diag.error(
                path,
                format!("expected true or false, got {}", describe(other)),
            );
            None
        }
    }
}

/// A list.
pub(crate) fn read_list<'v>(value: &'v Value, path: &str, diag: &mut Diag) -> Option<&'v [Value]> {
    match value {
        Value::Sequence(items) => Some(items),
        other => {
            diag.error(path, format!("expected a list, got {}", describe(other)));
            None
        }
    }
}

/// A duration (`30s`); a bare number gets the hint to add a unit.
pub(crate) fn read_duration(value: &Value, path: &str, diag: &mut Diag) -> Option<Duration> {
    read_with_unit(value, path, diag, "a duration such as 30s", parse_duration)
}

/// A size (`100MB`); a bare number gets the hint to add a unit.
pub(crate) fn read_size(value: &Value, path: &str, diag: &mut Diag) -> Option<ByteSize> {
    read_with_unit(value, path, diag, "a size such as 100MB", parse_size)
}

/// A scalar `parse` understands; numbers reach `parse` as text so that it can ask for a unit.
fn read_with_unit<T>(
    value: &Value,
    path: &str,
    diag: &mut Diag,
    what: &str,
    parse: fn(&str) -> Result<T, String>,
) -> Option<T> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            diag.error(path, format!("expected {what}, got {}", describe(other)));
            return None;
        }
    };
    parse(&text).map_err(|e| diag.error(path, e)).ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let mut diag = Diag::new(Path::new("c.yaml"));
        assert!(parse_document("a: 1\nb: c: d\n", &mut diag).is_none());
        assert!(parse_document("a: 1\na: 2\n", &mut diag).is_none());
        let errors = diag.finish(Some(())).unwrap_err();
        assert!(errors.0[0].message.contains("line 2 column 5"), "{errors}");
        assert!(errors.0[1].message.contains("duplicate entry"), "{errors}");
        assert!(errors.0[1].message.contains("line 1 column 1"), "{errors}");
    }

    #[test]
    fn merge_keys_are_applied() {
        let mut diag = Diag::new(Path::new("c.yaml"));
        let doc = parse_document("base: &b {x: 1}\nother: {<<: *b, y: 2}\n", &mut diag).unwrap();
        assert_eq!(doc["other"]["x"], Value::Number(1.into()));
        assert!(!diag.has_errors());
    }

    #[test]
    fn suggestions() {
        let known = ["workers", "command", "cwd", "env", "user", "group"];
        assert_eq!(closest("wokers", &known), Some("workers"));
        assert_eq!(closest("comand", &known), Some("command"));
        assert_eq!(closest("grop", &known), Some("group"));
        assert_eq!(closest("usr", &known), Some("user"));
        assert_eq!(closest("banana", &known), None);
        assert_eq!(closest("x", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn unknown_setting_messages() {
        assert_eq!(
            unknown_setting("wokers", &["workers", "port"]),
            "unknown setting; did you mean `workers`?"
        );
        assert_eq!(
            unknown_setting("zzz", &["workers", "port", "env"]),
            "unknown setting; known settings here are `workers`, `port` and `env`"
        );
    }

    #[test]
    fn reads_report_types_with_paths() {
        let mut diag = Diag::new(Path::new("c.yaml"));
        let four = Value::String("four".into());
        assert_eq!(read_int(&four, "defaults.workers", &mut diag), None);
        assert_eq!(
            read_int(&Value::String("12".into()), "x", &mut diag),
            Some(12)
        );
        assert_eq!(
            read_int(&Value::Number((-3).into()), "x", &mut diag),
            Some(-3)
        );
        assert_eq!(
            read_duration(&Value::Number(30.into()), "d", &mut diag),
            None
        );
        assert_eq!(
            read_bool(&Value::String("yes".into()), "b", &mut diag),
            None
        );
        assert_eq!(
            read_u32_in(&Value::Number(0.into()), "w", &mut diag, 1, 9),
            None
        );
        let errors = diag.finish(Some(())).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "c.yaml: defaults.workers: expected a whole number, got \"four\"",
                "c.yaml: d: \"30\" has no unit: write 30s (units: ms, s, m, h, d)",
                "c.yaml: b: expected true or false, got \"yes\"",
                "c.yaml: w: 0 is too small: must be at least 1",
            ]
        );
    }
}
