//! `scale INSTANCE N`: the instance's actor adds or drains workers; others are untouched.

use crate::Shared;
use cts_config::MAX_WORKERS;
use cts_proto::{ErrorKind, ErrorReply, Outcomes, Response, ScaleRequest};

pub async fn handle(r: &ScaleRequest, shared: &Shared) -> Response {
    if r.workers == 0 || r.workers > MAX_WORKERS {
        let msg = format!(
            "cannot scale to {} workers: the number must be 1 to {MAX_WORKERS}",
            r.workers
        );
        return ErrorReply::new(ErrorKind::Malformed, msg).into();
    }
    let instances = shared.snapshot();
    let idx = match super::resolve(std::slice::from_ref(&r.instance), &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let entry = &instances[idx[0]];
    let r = entry.handle.scale(r.workers).await;
    Response::Outcomes(Outcomes {
        results: vec![super::outcome(entry.config.key.as_str(), r)],
    })
}
