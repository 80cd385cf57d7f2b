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
