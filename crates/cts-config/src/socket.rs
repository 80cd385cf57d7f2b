//! Where the control socket is: one rule, for `ctsd` and `ctsctl` alike.

use crate::{Config, DEFAULT_SOCKET};
use std::path::{Path, PathBuf};

/// The environment variable that names the control socket.
pub const SOCKET_ENV: &str = "CTSD_SOCKET";

/// The control socket: `--socket` (`flag`) > `$CTSD_SOCKET` (when not empty) > the
/// configuration's `ctsd.socket` > [`DEFAULT_SOCKET`].
pub fn control_socket(flag: Option<&Path>, config: Option<&Config>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(socket_from_env)
        .or_else(|| config.and_then(|c| c.daemon.socket.clone()))
        .unwrap_or_else(|| DEFAULT_SOCKET.into())
}

/// Whether `--socket` or `$CTSD_SOCKET` decides, so that no configuration needs reading.
pub fn socket_given(flag: Option<&Path>) -> bool {
    flag.is_some() || socket_from_env().is_some()
}

fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os(SOCKET_ENV)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}
