//! `scale INSTANCE[:PROGRAM] N`: the actor of the instance's web pool (or of the program) adds
//! or drains workers (a singleton's scale is refused); others are untouched. Once
//! it has, the new number is recorded in the registry's configuration of the instance (through
//! the main loop, which owns it), so that a later `reload` compares the file with what runs.

use crate::control::Shared;
use crate::signals::DaemonEvent;
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
    let sel = &idx[0];
    let entry = &instances[sel.index];
    let key = entry.config.key.as_str();
    let (handle, program) = match &sel.part {
        super::Part::All | super::Part::Web => (entry.handle.clone(), None),
        super::Part::Program(name) => match entry.program(name) {
            Some(p) if p.singleton => {
                let msg = format!(
                    "{}: {name} is a singleton: it always runs exactly one process",
                    sel.name
                );
                return ErrorReply::new(ErrorKind::Failed, msg).into();
            }
            Some(p) => (p.handle.clone(), Some(name.clone())),
            None => return ErrorReply::new(ErrorKind::UnknownInstance, "no such program").into(),
        },
    };
    let done = handle.scale(r.workers).await;
    if done.is_ok() {
        // Queued before the answer goes out, so a reload the client asks for next finds it
        // recorded. A daemon shutting down has no use for it.
        let scaled = DaemonEvent::Scaled {
            instance: key.to_owned(),
            program,
            workers: r.workers,
        };
        let _ = shared.events.send(scaled).await;
    }
    Response::Outcomes(Outcomes {
        results: vec![super::outcome(&sel.name, done)],
    })
}
