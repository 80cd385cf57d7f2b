//! `status`: a snapshot of each instance, asked of its actor.

use crate::control::Shared;
use cts_proto::{InstanceName, Response, StatusReport};

pub async fn handle(names: &[InstanceName], shared: &Shared) -> Response {
    let instances = shared.snapshot();
    let idx = match super::resolve(names, &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let mut report: Vec<cts_proto::InstanceStatus> = Vec::with_capacity(idx.len());
    for sel in idx {
        let entry = &instances[sel.index];
        let status = entry.handle.status().await;
        let extra = crate::status::Extra {
            log_dropped_bytes: entry.dropped_bytes(),
            listening: entry.port.listening(),
            file_workers: entry.file_workers,
        };
        let mut inst = crate::status::to_proto(&entry.config, status.as_ref(), extra);
        inst.release = entry.handle.release().map(|r| r.display().to_string());
        for p in &entry.programs {
            let wanted = match &sel.part {
                super::Part::All => true,
                super::Part::Web => false,
                super::Part::Program(name) => p.name.as_str() == name,
            };
            let Some(config) = entry.config.program(p.name.as_str()).filter(|_| wanted) else {
                continue;
            };
            let status = p.handle.status().await;
            let mut program = crate::status::program_to_proto(
                config,
                status.as_ref(),
                p.dropped_bytes(),
                p.file_workers,
            );
            program.release = p.handle.release().map(|r| r.display().to_string());
            inst.programs.push(program);
        }
        // `status jordan:web jordan:celery` shows jordan once, with what was named.
        match report.iter_mut().find(|i| i.key == inst.key) {
            Some(seen) => {
                for p in inst.programs {
                    if !seen.programs.iter().any(|q| q.name == p.name) {
                        seen.programs.push(p);
                    }
                }
            }
            None => report.push(inst),
        }
    }
    let report = crate::status::with_proc_figures(report).await;
    Response::Status(StatusReport {
        daemon_version: crate::VERSION.to_owned(),
        pid: std::process::id(),
        uptime_secs: shared.started.elapsed().as_secs(),
        instances: report,
    })
}
