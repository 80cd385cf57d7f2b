//! Placeholders in `command` items, `env` values and `cwd`.
//!
//! `{instance}`, `{name}`, `{prefix}`, `{currency}` and `{port}` are replaced
//! by the instance's values; `{{` and `}}` are literal braces (as in Python's
//! `str.format` and Rust's `format!`). A template is parsed once, where it is
//! written, so a mistake in `defaults:` is reported once against the key
//! that holds it rather than once per instance; rendering cannot fail.

use crate::model::InstanceConfig;
use crate::yaml::closest;

/// A value that may be substituted into a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    /// `{instance}`: the instance key (`jordan`).
    Instance,
    /// `{name}`: the display name (`Jordan`).
    Name,
    /// `{prefix}`: the URL prefix (`/JO`, or empty).
    Prefix,
    /// `{currency}`: the ISO 4217 code (`JOD`).
    Currency,
    /// `{port}`: the instance's port (`8003`).
    Port,
}

/// Placeholder names, as written between the braces.
const NAMES: [(&str, Placeholder); 5] = [
    ("instance", Placeholder::Instance),
    ("name", Placeholder::Name),
    ("prefix", Placeholder::Prefix),
    ("currency", Placeholder::Currency),
    ("port", Placeholder::Port),
];

/// One run of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Copied as is (braces already unescaped).
    Text(String),
    /// Replaced by the instance's value.
    Var(Placeholder),
}

/// A parsed template string, ready to render for any instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// Text and placeholders in order.
    pieces: Vec<Piece>,
}

/// The per-instance values substituted into templates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vars<'a> {
    /// `{instance}`.
    pub(crate) instance: &'a str,
    /// `{name}`.
    pub(crate) name: &'a str,
    /// `{prefix}`.
    pub(crate) prefix: &'a str,
    /// `{currency}`.
    pub(crate) currency: &'a str,
    /// `{port}`.
    pub(crate) port: u16,
}

impl<'a> Vars<'a> {
    /// The values of a finished instance.
    pub(crate) fn of(instance: &'a InstanceConfig) -> Vars<'a> {
        Vars {
            instance: instance.key.as_str(),
            name: &instance.name,
            prefix: instance.prefix.as_str(),
            currency: instance.currency.as_str(),
            port: instance.port,
        }
    }
}

impl Template {
    /// Parses `text`.
    ///
    /// # Errors
    ///
    /// A message naming the unknown placeholder, the unclosed `{` or the
    /// single `}` (character positions count from 1).
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!(
                            "the `{{` at character {} is never closed; write `{{{{` for a literal brace",
                            at + 1
                        ));
                    }
                    let var = lookup(&name)?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Var(var));
                }
                '}' => {
                    return Err(format!(
                        "single `}}` at character {}; write `}}}}` for a literal brace",
                        at + 1
                    ));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// The template with every placeholder replaced by `vars`.
    pub(crate) fn render(&self, vars: &Vars<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(Placeholder::Instance) => out.push_str(vars.instance),
                Piece::Var(Placeholder::Name) => out.push_str(vars.name),
                Piece::Var(Placeholder::Prefix) => out.push_str(vars.prefix),
                Piece::Var(Placeholder::Currency) => out.push_str(vars.currency),
                Piece::Var(Placeholder::Port) => out.push_str(&vars.port.to_string()),
            }
        }
        out
    }
}

/// The placeholder called `name`, or a message listing the known ones.
fn lookup(name: &str) -> Result<Placeholder, String> {
    if let Some(&(_, var)) = NAMES.iter().find(|(known, _)| *known == name) {
        return Ok(var);
    }
    let known: Vec<&str> = NAMES.iter().map(|(known, _)| *known).collect();
    let hint = match closest(name, &known) {
        Some(best) => format!("did you mean {{{best}}}? "),
        None => String::new(),
    };
    Err(format!(
        "unknown placeholder {{{name}}}; {hint}known placeholders are {{instance}}, {{name}}, \
         {{prefix}}, {{currency}} and {{port}} (write `{{{{` for a literal brace)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JORDAN: Vars<'static> = Vars {
        instance: "jordan",
        name: "Jordan",
        prefix: "/JO",
        currency: "JOD",
        port: 8003,
    };

    fn render(text: &str) -> String {
        Template::parse(text).unwrap().render(&JORDAN)
    }

    #[test]
    fn renders_every_placeholder() {
        assert_eq!(render("cts.settings.{instance}"), "cts.settings.jordan");
        assert_eq!(
            render("{name}|{prefix}|{currency}|{port}"),
            "Jordan|/JO|JOD|8003"
        );
        assert_eq!(render("plain"), "plain");
        assert_eq!(render(""), "");
        assert_eq!(render("{port}{port}"), "80038003");
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(render("{{instance}}"), "{instance}");
        assert_eq!(render("a{{b}}c {instance}"), "a{b}c jordan");
        assert_eq!(render("{{{instance}}}"), "{jordan}");
    }

    #[test]
    fn errors() {
        let err = Template::parse("cts.{instnace}").unwrap_err();
        assert!(err.contains("unknown placeholder {instnace}"), "{err}");
        assert!(err.contains("did you mean {instance}?"), "{err}");
        let err = Template::parse("x{instance").unwrap_err();
        assert!(err.contains("character 2 is never closed"), "{err}");
        let err = Template::parse("a}b").unwrap_err();
        assert!(err.contains("single `}` at character 2"), "{err}");
        let err = Template::parse("{}").unwrap_err();
        assert!(err.contains("unknown placeholder {}"), "{err}");
        assert!(!err.contains("did you mean"), "{err}");
    }
}
