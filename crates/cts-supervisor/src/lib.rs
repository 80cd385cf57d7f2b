//! Supervision of one instance's pre-fork worker pool.
//!
//! # Layout
//!
//! - [`core`]: every decision, as pure state machines: [`core::Pool`] (start, respawn with
//!   backoff and crash loop, roll, scale, stop with SIGKILL escalation, reconfigure, shutdown)
//!   and [`core::Job`] (a one-shot run). No I/O, no clock, no tokio, no nix.
//! - [`actor`]: the instance actor, the loop that feeds the core its events and carries out
//!   its effects.
//! - [`instance`]: what the daemon gives an actor ([`Instance`], [`Output`], [`Listen`]).
//! - [`handle`]: [`InstanceHandle`] and the typed [`Control`]s operators' requests become.
//! - [`contain`]: nothing a worker starts outlives it (subreaper, `CTS_WORKER` tags, cgroups).
//! - [`spawn`]: starting a worker: fd 3, process group, parent-death signal, the exec shim.
//! - [`backoff`]: the restart delay and the crash-loop window as pure functions.
//! - `watcher`: one task per worker that reaps it and forwards `READY=1` and its exit.
//!
//! See `DESIGN.md` beside this crate for the diagram of tasks and channels and the core's
//! state × event table.
//!
//! # Theory of operation
//!
//! Each instance is one tokio task, the actor, that owns everything about the instance's
//! processes. Nothing else holds a lock on any of it. The actor sleeps in one `select!` until a
//! worker is ready or has exited, an operator's [`Control`] arrives, the core's next deadline
//! passes, or ctsd shuts down; it hands what happened to the core with the current time and
//! carries out the effects that come back. There is no periodic tick: an idle instance makes no
//! system calls at all.
//!
//! Because one task serialises every change, a crash respawn, a rolling restart and a stop of
//! the same instance can never race, and because the core is pure, every one of those
//! interleavings is tested as a table in `core/tests.rs` without starting a process.
//!
//! The supervisor does not know about files or sockets other than the listener it is given:
//! workers' pipes are handed to an [`Output`], which the daemon connects to the instance's log.

#![warn(missing_docs)]

pub mod actor;
pub mod backoff;
pub mod contain;
pub mod core;
pub mod handle;
pub mod instance;
pub mod job;
mod preload;
pub mod root;
pub mod spawn;
mod watcher;

pub use actor::launch;
pub use core::{human, Done, Refusal};
pub use handle::{
    Control, Frozen, Handover, InstanceHandle, InstanceState, Outcome, Status, Summary, WorkerInfo,
    WorkerState,
};
pub use instance::{Instance, Listen, Output};
pub use root::Root;
pub use spawn::{
    exec_worker, worker_environment, Privileges, EXEC_WORKER_ARG, INHERITED_VARS_TO_DROP,
};
