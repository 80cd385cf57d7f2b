//! Exit codes of `ctsctl`, documented in the README; scripts rely on them.

/// The command did what was asked.
pub const OK: u8 = 0;
/// The daemon answered but the operation failed (a restart rolled back, a worker never got ready).
pub const FAILED: u8 = 1;
/// The command line was wrong.
pub const USAGE: u8 = 2;
/// The daemon could not be reached (no socket, nobody listening, timed out).
pub const UNREACHABLE: u8 = 3;
/// The daemon (or the socket file's mode) refused this user.
pub const PERMISSION_DENIED: u8 = 4;
/// An instance named on the command line does not exist.
pub const UNKNOWN_INSTANCE: u8 = 5;
/// Client and daemon speak incompatible protocol versions.
pub const PROTOCOL_MISMATCH: u8 = 6;
/// A restart stopped early because a new worker failed; the old workers keep serving.
pub const ROLLED_BACK: u8 = 7;
/// The instance is in a crash loop (`failing`).
pub const FAILING: u8 = 8;
/// The instance is stopped, or was stopped while the command waited.
pub const STOPPED: u8 = 9;
/// ctsd is shutting down.
pub const SHUTTING_DOWN: u8 = 10;
/// `status`: an instance is still starting (none failing, stopped or stopping).
pub const STARTING: u8 = 11;

/// The exit code of a failed outcome.
pub fn of_failure(failure: Option<crate::Failure>) -> u8 {
    use crate::Failure;
    match failure {
        Some(Failure::RolledBack) => ROLLED_BACK,
        Some(Failure::Failing) => FAILING,
        Some(Failure::Stopped) => STOPPED,
        Some(Failure::ShuttingDown) => SHUTTING_DOWN,
        Some(Failure::Other) | None => FAILED,
    }
}
