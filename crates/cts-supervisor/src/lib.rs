//! Supervision of one instance's pre-fork worker pool.
//!
//! # Layout
//!
//! - [`actor`]: the instance actor, which owns the workers and runs every state change.
//! - [`handle`]: [`InstanceHandle`] and the typed [`Control`]s operators' requests become.
//! - [`spawn`]: starting a worker: fd 3, process group, parent-death signal, the exec shim.
//! - [`backoff`]: the restart policy as pure functions.
//!
//! See `DESIGN.md` beside this crate for the diagram of tasks and channels.
//!
//! # Theory of operation
//!
//! Each instance is one tokio task, the actor, that owns everything about the instance: its
//! workers, their deadlines, the backoff of each slot, a rolling restart in progress. Nothing
//! else holds a lock on any of it. The actor sleeps in one `select!` until a worker is ready or
//! has exited (reported by a small watcher task per worker that owns the `Child` and its notify
//! socket), an operator's [`Control`] arrives, the earliest deadline passes, or ctsd shuts down.
//! After every wake-up it runs `reconcile`, which compares what is wanted (the instance up or
//! down, `workers` slots filled, a rolling restart's next step) with what is, and acts. There is
//! no periodic tick: an idle instance makes no system calls at all.
//!
//! Because one task serialises every change, a crash replacement, a rolling restart and a stop of
//! the same instance can never race: a rolling restart replaces workers of an older generation
//! one at a time (new one ready, then old one stopped), and a crash replacement simply starts a
//! worker of the current generation in the empty slot.
//!
//! The supervisor does not know about files or sockets other than the listener it is given:
//! workers' pipes are handed to an [`Output`], which the daemon connects to the instance's log.

#![warn(missing_docs)]

pub mod actor;
pub mod backoff;
pub mod core;
pub mod handle;
pub mod spawn;
mod watcher;

pub use actor::{launch, Instance, Output};
pub use core::{human, Done, Refusal};
pub use handle::{
    Control, InstanceHandle, InstanceState, Outcome, Status, Summary, WorkerInfo, WorkerState,
};
pub use spawn::{
    exec_worker, worker_environment, Privileges, EXEC_WORKER_ARG, INHERITED_VARS_TO_DROP,
};
