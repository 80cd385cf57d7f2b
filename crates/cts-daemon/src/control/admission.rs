//! Who gets a control connection, and how much memory requests may hold: so that operators
//! always get through, whatever other peers do.
//!
//! - **Connections**: [`MAX_CONNECTIONS`] in all; [`ADMIN_RESERVE`] of them only admins may
//!   take, so readers and strangers (any member of `socket_group`, which in the packaged
//!   configuration includes the workers' own user) can never hold them all; and one non-admin
//!   user holds at most [`PER_USER`] at once, so one misbehaving reader cannot crowd out the
//!   others either. A refused peer is told why (after its `hello` has been read, so the client
//!   shows the reason rather than a broken pipe), within [`MAX_REFUSALS`] refusals at once.
//! - **Request bytes**: a frame's size limit depends on who sends it ([`frame_limit`]): a peer
//!   that has not said `hello` may announce [`HELLO_FRAME`] bytes, a reader [`READER_FRAME`],
//!   an admin [`cts_proto::MAX_FRAME`]. Frames above [`SMALL_FRAME`] also take their size
//!   from one budget of [`REQUEST_BUDGET`] bytes for all connections together, before anything
//!   is allocated; a frame that does not fit is refused. Small frames are bounded by the
//!   connection count alone, so `status` always fits.

use super::access::Role;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections served at once, all peers together.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections only admins may take.
pub const ADMIN_RESERVE: usize = 64;
/// Connections one user who is not an admin may hold at once.
pub const PER_USER: usize = 16;
/// Refusals being told at once; beyond them a connection is closed without a word.
pub const MAX_REFUSALS: usize = 64;
/// The largest frame before `hello`.
pub const HELLO_FRAME: u32 = 4 << 10;
/// The largest frame a reader may send (its requests name instances, nothing more).
pub const READER_FRAME: u32 = 64 << 10;
/// Frames up to this size are not counted against [`REQUEST_BUDGET`].
pub const SMALL_FRAME: u32 = 4 << 10;
/// Bytes that incomplete requests above [`SMALL_FRAME`] may hold, all connections together.
pub const REQUEST_BUDGET: usize = 16 << 20;

/// The largest frame a peer in `role` may send; `greeted`: after its `hello`.
pub fn frame_limit(role: Role, greeted: bool) -> u32 {
    match (greeted, role) {
        (false, _) | (true, Role::None) => HELLO_FRAME,
        (true, Role::Read) => READER_FRAME,
        (true, Role::Admin) => cts_proto::MAX_FRAME,
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This user already holds [`PER_USER`] connections.
    UserLimit,
    /// Every connection this peer may take is taken.
    Busy,
}

impl Refused {
    /// What the peer is told.
    pub fn message(self) -> String {
        match self {
            Refused::UserLimit => format!(
                "ctsd is busy: this user already holds {PER_USER} control connections; close some and retry"
            ),
            Refused::Busy => "ctsd is busy: too many control connections; retry".to_owned(),
        }
    }
}

/// Connections held per user who is not an admin.
type PerUser = Arc<Mutex<HashMap<u32, usize>>>;

/// The shared state of admission; cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Everyone's connections.
    open: Arc<Semaphore>,
    /// The admins' reserve.
    reserve: Arc<Semaphore>,
    /// Connections per user who is not an admin.
    per_user: PerUser,
    /// Refusals being told.
    refusals: Arc<Semaphore>,
    /// Bytes of large frames being read.
    budget: Arc<Semaphore>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            open: Arc::new(Semaphore::new(MAX_CONNECTIONS - ADMIN_RESERVE)),
            reserve: Arc::new(Semaphore::new(ADMIN_RESERVE)),
            per_user: Arc::default(),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
            budget: Arc::new(Semaphore::new(REQUEST_BUDGET)),
        }
    }
}

/// A connection's place; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
    user: Option<(u32, PerUser)>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((uid, per_user)) = &self.user {
            let mut m = per_user.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = m.get_mut(uid) {
                *n -= 1;
                if *n == 0 {
                    m.remove(uid);
                }
            }
        }
    }
}

impl Admission {
    /// Admits a connection of user `uid` in `role`, or says why not.
    pub fn admit(&self, uid: u32, role: Role) -> Result<Ticket, Refused> {
        if role == Role::Admin {
            let permit = (self.open.clone().try_acquire_owned())
                .or_else(|_| self.reserve.clone().try_acquire_owned())
                .map_err(|_| Refused::Busy)?;
            return Ok(Ticket {
                _permit: permit,
                user: None,
            });
        }
        let mut m = self.per_user.lock().unwrap_or_else(PoisonError::into_inner);
        let held = m.entry(uid).or_insert(0);
        if *held >= PER_USER {
            return Err(Refused::UserLimit);
        }
        let permit = self
            .open
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        *held += 1;
        Ok(Ticket {
            _permit: permit,
            user: Some((uid, self.per_user.clone())),
        })
    }

    /// A place to tell a refused peer why; `None`: close it without a word.
    pub fn refusal(&self) -> Option<OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }

    /// Reserves `len` bytes for a frame about to be read; `Some(None)` for a small frame,
    /// `None` when the budget cannot hold it now.
    pub fn reserve_frame(&self, len: u32) -> Option<Option<OwnedSemaphorePermit>> {
        if len <= SMALL_FRAME {
            return Some(None);
        }
        self.budget
            .clone()
            .try_acquire_many_owned(len)
            .ok()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_cannot_take_the_admins_reserve_nor_more_than_its_share() {
        let a = Admission::default();
        let mut held = Vec::new();
        for _ in 0..PER_USER {
            held.push(a.admit(1000, Role::Read).expect("within the share"));
        }
        assert_eq!(a.admit(1000, Role::Read).err(), Some(Refused::UserLimit));
        // Other readers fill what is left of the shared connections...
        let mut uid = 2000;
        while let Ok(t) = a.admit(uid, Role::Read) {
            held.push(t);
            if held.len() % PER_USER == 0 {
                uid += 1;
            }
        }
        assert_eq!(held.len(), MAX_CONNECTIONS - ADMIN_RESERVE);
        assert_eq!(a.admit(9999, Role::Read).err(), Some(Refused::Busy));
        // ... and root still gets in, up to the reserve.
        let admins: Vec<_> = (0..ADMIN_RESERVE)
            .map(|_| a.admit(0, Role::Admin).expect("reserved"))
            .collect();
        assert_eq!(a.admit(0, Role::Admin).err(), Some(Refused::Busy));
        drop(admins);
        // Closing connections gives the share back.
        held.truncate(0);
        assert!(a.admit(1000, Role::Read).is_ok());
    }

    #[test]
    fn large_frames_share_one_budget_small_ones_do_not() {
        let a = Admission::default();
        let big: Vec<_> = (0..REQUEST_BUDGET / (1 << 20))
            .map(|_| a.reserve_frame(1 << 20).expect("within budget"))
            .collect();
        assert!(a.reserve_frame(1 << 20).is_none(), "budget spent");
        assert!(matches!(a.reserve_frame(SMALL_FRAME), Some(None)));
        drop(big);
        assert!(a.reserve_frame(1 << 20).is_some());
    }

    #[test]
    fn frame_limits_grow_with_trust() {
        assert_eq!(frame_limit(Role::Admin, false), HELLO_FRAME);
        assert_eq!(frame_limit(Role::None, true), HELLO_FRAME);
        assert_eq!(frame_limit(Role::Read, true), READER_FRAME);
        assert_eq!(frame_limit(Role::Admin, true), cts_proto::MAX_FRAME);
    }
}
