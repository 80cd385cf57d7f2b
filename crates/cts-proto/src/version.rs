//! Protocol versions and the compatibility rule.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A protocol version: peers with the same `major` understand each other; a higher `minor` only
/// adds optional fields and request kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoVersion {
    /// Incompatible changes bump this.
    pub major: u16,
    /// Additive changes bump this.
    pub minor: u16,
}

/// The version this build speaks.
pub const PROTO_VERSION: ProtoVersion = ProtoVersion { major: 1, minor: 0 };

impl ProtoVersion {
    /// Whether a peer speaking `other` can talk to us.
    pub fn compatible_with(self, other: ProtoVersion) -> bool {
        self.major == other.major
    }
}

impl fmt::Display for ProtoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}
