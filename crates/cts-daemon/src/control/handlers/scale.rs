//! `scale INSTANCE N`: the instance's actor adds or drains workers; others are untouched.

use crate::Shared;
use cts_proto::{ErrorKind, ErrorReply, Outcome, Outcomes, Response, ScaleRequest};

/// The most workers one instance may have (as in the config's validation).
const MAX_WORKERS: u32 = 1024;

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
    let (ok, message) = match entry.handle.scale(r.workers).await {
        Ok(m) => (true, m),
        Err(m) => (false, m),
    };
    Response::Outcomes(Outcomes {
        results: vec![Outcome {
            instance: r.instance.clone(),
            ok,
            message,
        }],
    })
}
