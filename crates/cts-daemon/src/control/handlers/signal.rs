//! `signal INSTANCE[:PROGRAM]… SIGNAL`: to every live process group of each named pool (all
//! of an instance's programs for a bare instance name).

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
    for sel in idx {
        let entry = &instances[sel.index];
        let mut units = Vec::new();
        for u in sel.units(entry) {
            let r = super::outcome(&u.name, u.handle.signal(sig).await);
            units.push((u.name, Some(r)));
        }
        results.push(super::lifecycle::combine(&sel.name, units));
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
