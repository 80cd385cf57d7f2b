//! `status`: a snapshot of each instance, asked of its actor.

use crate::control::Shared;
use cts_proto::{InstanceName, Response, StatusReport};

pub async fn handle(names: &[InstanceName], shared: &Shared) -> Response {
    let instances = shared.snapshot();
    let idx = match super::resolve(names, &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let mut report = Vec::with_capacity(idx.len());
    for i in idx {
        let entry = &instances[i];
        let status = entry.handle.status().await;
        let extra = crate::status::Extra {
            log_dropped_bytes: entry.dropped_bytes(),
            listening: entry.port.listening(),
            file_workers: entry.file_workers,
            strays: cts_supervisor::contain::strays(entry.config.key.as_str()),
        };
        report.push(crate::status::to_proto(
            &entry.config,
            status.as_ref(),
            extra,
        ));
    }
    Response::Status(StatusReport {
        daemon_version: crate::VERSION.to_owned(),
        pid: std::process::id(),
        uptime_secs: shared.started.elapsed().as_secs(),
        instances: report,
    })
}
