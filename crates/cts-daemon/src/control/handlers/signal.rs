//! `signal INSTANCE… SIGNAL`: to every live worker's process group of each instance.

use crate::control::Shared;
use cts_proto::{Outcomes, Response, SignalRequest, WorkerSignal};
use nix::sys::signal::Signal;

pub async fn handle(r: &SignalRequest, shared: &Shared) -> Response {
    let instances = shared.snapshot();
    let idx = match super::resolve_target(&r.target, &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let sig = to_nix(r.signal);
    let mut results = Vec::new();
    for i in idx {
        let entry = &instances[i];
        let r = entry.handle.signal(sig).await;
        results.push(super::outcome(entry.config.key.as_str(), r));
    }
    Response::Outcomes(Outcomes { results })
}

/// The wire's signal names become libc numbers only here, at the edge.
fn to_nix(s: WorkerSignal) -> Signal {
    match s {
        WorkerSignal::Hup => Signal::SIGHUP,
        WorkerSignal::Int => Signal::SIGINT,
        WorkerSignal::Quit => Signal::SIGQUIT,
        WorkerSignal::Term => Signal::SIGTERM,
        WorkerSignal::Kill => Signal::SIGKILL,
        WorkerSignal::Usr1 => Signal::SIGUSR1,
        WorkerSignal::Usr2 => Signal::SIGUSR2,
        WorkerSignal::Ttin => Signal::SIGTTIN,
        WorkerSignal::Ttou => Signal::SIGTTOU,
        WorkerSignal::Winch => Signal::SIGWINCH,
        _ => Signal::SIGTERM,
    }
}
