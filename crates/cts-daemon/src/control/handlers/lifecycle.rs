//! `start`, `stop`, `restart`: sent to each named instance's actor, all at once; the answer lists
//! one outcome per instance once every one is done.

use crate::Shared;
use cts_proto::{Outcome, Outcomes, Response, Target};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Start,
    Stop,
    Restart,
}

pub async fn handle(op: Op, target: &Target, shared: &Shared) -> Response {
    let instances = shared.snapshot();
    let idx = match super::resolve_target(target, &instances) {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let mut set = JoinSet::new();
    for (order, i) in idx.into_iter().enumerate() {
        let handle = instances[i].handle.clone();
        let key = instances[i].config.key.to_string();
        set.spawn(async move {
            let r = match op {
                Op::Start => handle.start().await,
                Op::Stop => handle.stop().await,
                Op::Restart => handle.restart().await,
            };
            (order, key, r)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(r) = joined {
            results.push(r);
        }
    }
    results.sort_by_key(|(order, _, _)| *order);
    Response::Outcomes(Outcomes {
        results: results
            .into_iter()
            .map(|(_, key, r)| {
                let (ok, message) = match r {
                    Ok(m) => (true, m),
                    Err(m) => (false, m),
                };
                Outcome {
                    instance: key.as_str().into(),
                    ok,
                    message,
                }
            })
            .collect(),
    })
}
