//! `reopen-logs` and `shutdown`: handed to the daemon's main loop as the events SIGUSR1 and
//! SIGTERM would be, so both paths do exactly the same.

use crate::signals::DaemonEvent;
use crate::Shared;
use cts_proto::{ErrorKind, ErrorReply, Outcome, Outcomes, Response};

pub async fn handle(ev: DaemonEvent, shared: &Shared) -> Response {
    if shared.events.send(ev).await.is_err() {
        return ErrorReply::new(ErrorKind::ShuttingDown, "ctsd is shutting down").into();
    }
    let message = match ev {
        DaemonEvent::ReopenLogs => "log files reopened",
        DaemonEvent::Shutdown => "ctsd is stopping every worker and will exit",
        DaemonEvent::Reload => "reloading",
    };
    Response::Outcomes(Outcomes {
        results: vec![Outcome {
            instance: "ctsd".into(),
            ok: true,
            message: message.into(),
        }],
    })
}
