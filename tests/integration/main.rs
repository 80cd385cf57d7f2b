//! The one integration test binary: the real `ctsd`, `ctsctl` and `cts-demo-worker`, real
//! sockets on ports the OS picked, real signals. See `util.rs` for the fixture.

mod access;
mod check;
mod commands;
mod control;
mod crash;
mod deploy;
mod hostile;
mod logs;
mod operator;
mod programs;
mod reload;
mod restart;
mod secrets;
mod serving;
mod shutdown;
mod systemd;
mod tools;
mod upgrade;
mod util;
