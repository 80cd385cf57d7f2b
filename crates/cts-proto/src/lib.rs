//! The wire protocol between `ctsctl` (or any client) and `ctsd`'s control socket.
//!
//! # Layout
//!
//! - [`frame`]: how messages are cut on the byte stream (length-prefixed JSON, bounded).
//! - [`message`]: the typed [`Request`]s, [`Response`]s and the status document.
//! - [`version`]: [`ProtoVersion`] and the compatibility rule of the handshake.
//! - [`exit_codes`]: the documented exit codes of `ctsctl`.
//!
//! # Theory of operation
//!
//! A connection starts with [`Request::Hello`] carrying the client's [`ProtoVersion`]; the daemon
//! answers [`Response::Welcome`] with its own, or [`Response::Error`] of kind
//! [`ErrorKind::ProtocolMismatch`] when the majors differ. After that the client sends requests
//! one at a time and reads one response each. Every frame is a `u32` big-endian length followed
//! by that many bytes of JSON; the length is checked against [`MAX_FRAME`] *before* anything is
//! allocated, so a hostile peer cannot make either side allocate more than that. Minor versions
//! only ever add optional fields (`#[serde(default)]`) or new request kinds, so an older peer
//! keeps working; a request kind the daemon does not know gets [`ErrorKind::UnknownRequest`] and
//! the connection stays open.

#![warn(missing_docs)]

pub mod exit_codes;
pub mod frame;
pub mod message;
pub mod version;

pub use frame::{read_frame, write_frame, FrameError, MAX_FRAME};
pub use message::*;
pub use version::{ProtoVersion, PROTO_VERSION};
