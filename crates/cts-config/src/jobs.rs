//! One-shot jobs: `release:` (per instance, `defaults:` or its own) and `deploy.once`, each a
//! list of commands that `ctsctl deploy` runs in order.

use serde_yaml::Value;

use crate::error::{index, Diag};
use crate::pool::read_command;
use crate::template::{Template, Vars};
use crate::yaml::{read_list, Map};

/// A list of jobs as written: each an argv of templates. `None` when not written (or invalid,
/// and reported).
pub(crate) type RawJobs = Option<Vec<Vec<Template>>>;

/// `release:` or `deploy.once`: a list of commands, each a non-empty argv.
pub(crate) fn read_jobs(value: &Value, path: &str, diag: &mut Diag) -> RawJobs {
    let items = read_list(value, path, diag)?;
    let mut jobs = Some(Vec::with_capacity(items.len()));
    for (i, item) in items.iter().enumerate() {
        let path = index(path, i);
        if !matches!(item, Value::Sequence(_)) {
            diag.error(
                &path,
                "each job is a command as a list (argv, no shell), e.g. [python, manage.py, \
                 migrate, --noinput]",
            );
            jobs = None;
            continue;
        }
        match (read_command(item, &path, diag), jobs.as_mut()) {
            (Some(argv), Some(jobs)) => jobs.push(argv),
            _ => jobs = None,
        }
    }
    jobs
}

/// `deploy: {once: [...], job_timeout: 30m}`: the once jobs and the job timeout.
pub(crate) fn read_deploy(
    value: &Value,
    diag: &mut Diag,
) -> (Vec<Vec<Template>>, Option<std::time::Duration>) {
    let Some(map) = Map::read(value, "deploy", diag) else {
        return (Vec::new(), None);
    };
    map.check_keys(&["once", "job_timeout"], diag);
    let once = map
        .get("once")
        .and_then(|v| read_jobs(v, &map.path_of("once"), diag))
        .unwrap_or_default();
    let timeout = map.get("job_timeout").and_then(|v| {
        let path = map.path_of("job_timeout");
        crate::yaml::read_duration(v, &path, diag).filter(|d| {
            if d.is_zero() {
                diag.error(&path, "must be longer than 0s (leave it out for no limit)");
            }
            !d.is_zero()
        })
    });
    (once, timeout)
}

/// The jobs rendered for one instance.
pub(crate) fn render(jobs: &[Vec<Template>], vars: &Vars<'_>) -> Vec<Vec<String>> {
    jobs.iter()
        .map(|argv| argv.iter().map(|t| t.render(vars)).collect())
        .collect()
}
