//! `instances_file:`, the Salt pillar that the deploy tooling already keeps.
//!
//! Only the pillar's top-level `instances:` mapping is used; pillars hold much
//! else (database passwords, domains), and all of that is ignored. A pillar
//! is a Jinja template before Salt renders it; ctsd does not render Jinja, so
//! markup in the file is refused with a pointer to the rendered form rather
//! than misread as YAML.

use std::fs;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::error::Diag;
use crate::yaml::{describe, parse_document, read_str};

/// The `instances:` of a pillar, and where it came from.
#[derive(Debug)]
pub(crate) struct Pillar {
    /// The pillar file (config directory joined with `instances_file`), for
    /// the messages about its instances.
    pub(crate) file: PathBuf,
    /// The pillar's top-level `instances` value, not yet checked.
    pub(crate) instances: Value,
}

/// Reads the pillar named by the `instances_file` value (relative to `dir`).
/// Problems with the setting itself are recorded at `instances_file` in the
/// config file; problems inside the pillar, against the pillar.
pub(crate) fn load(value: &Value, dir: &Path, diag: &mut Diag) -> Option<Pillar> {
    let name = read_str(value, "instances_file", diag)?;
    if name.is_empty() {
        diag.error("instances_file", "the path is empty");
        return None;
    }
    let file = dir.join(name);
    let text = match fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => {
            diag.error(
                "instances_file",
                format!("cannot read {}: {e}", file.display()),
            );
            return None;
        }
    };
    let mut pillar_diag = Diag::new(&file);
    let instances = instances_of(&text, &mut pillar_diag);
    diag.absorb(pillar_diag);
    Some(Pillar {
        file,
        instances: instances?,
    })
}

/// The top-level `instances` of a pillar's text.
fn instances_of(text: &str, diag: &mut Diag) -> Option<Value> {
    if let Some(line) = jinja_line(text) {
        diag.error(
            "",
            format!(
                "line {line} contains Jinja markup; render it first (salt-call pillar.items) \
                 or list the instances inline"
            ),
        );
        return None;
    }
    let doc = parse_document(text, diag)?;
    let Value::Mapping(mut top) = doc else {
        diag.error(
            "",
            format!(
                "the top level must be a mapping with an `instances:` key, got {}",
                describe(&doc)
            ),
        );
        return None;
    };
    match top.remove("instances") {
        Some(instances) if !instances.is_null() => Some(instances),
        _ => {
            diag.error("", "has no top-level `instances:` mapping");
            None
        }
    }
}

/// The first line (counting from 1) holding `{%`, `{{` or `{#`.
fn jinja_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|line| ["{%", "{{", "{#"].iter().any(|mark| line.contains(mark)))
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_jinja() {
        assert_eq!(jinja_line("a: 1\nb: {{ x }}\n"), Some(2));
        assert_eq!(jinja_line("{% set x = 1 %}\n"), Some(1));
        assert_eq!(jinja_line("a: 1\n\n{# note #}\n"), Some(3));
        assert_eq!(jinja_line("a: {b: 1}\nc: '{x}'\n"), None);
    }

    #[test]
    fn takes_only_instances() {
        let mut diag = Diag::new(Path::new("p.sls"));
        let text =
            "domain: cts.example.org\ninstances:\n  jordan: {port: 8003}\nsecrets: {db: x}\n";
        let instances = instances_of(text, &mut diag).unwrap();
        assert_eq!(instances["jordan"]["port"], Value::Number(8003.into()));
        assert!(!diag.has_errors());

        assert!(instances_of("domain: x\n", &mut diag).is_none());
        assert!(instances_of("- a\n", &mut diag).is_none());
        let errors = diag.finish(Some(())).unwrap_err();
        assert_eq!(errors.0[0].message, "has no top-level `instances:` mapping");
        assert!(errors.0[1].message.contains("must be a mapping"));
    }
}
