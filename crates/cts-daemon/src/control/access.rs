//! Who may do what on the control socket, from the peer's credentials (SO_PEERCRED).
//!
//! Admins (root, the user ctsd runs as, `ctsd.admins.users` and members of `ctsd.admins.groups`)
//! may change state. Members of `ctsd.socket_group` may read (`status`, `version`). With no
//! `socket_group` configured, anyone the socket file's mode lets connect may read. Names are
//! resolved to ids once at start-up; a peer's supplementary groups are read from
//! `/proc/<pid>/status`, which needs no NSS lookup on the runtime thread.

use cts_config::DaemonSettings;
use std::collections::BTreeSet;

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Nothing: the connection is refused.
    None,
    /// `status`, `version`.
    Read,
    /// Everything.
    Admin,
}

/// The access policy, with names resolved to ids.
#[derive(Debug, Clone)]
pub struct Access {
    admin_uids: BTreeSet<u32>,
    admin_gids: BTreeSet<u32>,
    /// `None`: everyone who can connect may read.
    reader_gid: Option<u32>,
}

impl Access {
    /// Resolves the names of `settings`; unknown names are logged and ignored (they grant
    /// nothing).
    pub fn resolve(settings: &DaemonSettings) -> Access {
        let mut admin_uids: BTreeSet<u32> = [0, nix::unistd::geteuid().as_raw()].into();
        for name in &settings.admins.users {
            match nix::unistd::User::from_name(name) {
                Ok(Some(u)) => {
                    admin_uids.insert(u.uid.as_raw());
                }
                _ => tracing::warn!("ctsd.admins.users: no user `{name}`; ignored"),
            }
        }
        let mut admin_gids = BTreeSet::new();
        for name in &settings.admins.groups {
            match nix::unistd::Group::from_name(name) {
                Ok(Some(g)) => {
                    admin_gids.insert(g.gid.as_raw());
                }
                _ => tracing::warn!("ctsd.admins.groups: no group `{name}`; ignored"),
            }
        }
        // A group that does not resolve could not have been given to the socket either (start-up
        // fails then); u32::MAX matches nobody.
        let reader_gid =
            settings
                .socket_group
                .as_ref()
                .map(|name| match nix::unistd::Group::from_name(name) {
                    Ok(Some(g)) => g.gid.as_raw(),
                    _ => u32::MAX,
                });
        Access {
            admin_uids,
            admin_gids,
            reader_gid,
        }
    }

    /// The role of a peer with `uid`, primary `gid` and process `pid`.
    pub fn role(&self, uid: u32, gid: u32, pid: Option<i32>) -> Role {
        if self.admin_uids.contains(&uid) {
            return Role::Admin;
        }
        let mut groups: BTreeSet<u32> = pid.map(supplementary_groups).unwrap_or_default();
        groups.insert(gid);
        if !self.admin_gids.is_disjoint(&groups) {
            return Role::Admin;
        }
        match self.reader_gid {
            None => Role::Read,
            Some(g) if groups.contains(&g) => Role::Read,
            Some(_) => Role::None,
        }
    }
}

/// The `Groups:` line of `/proc/<pid>/status`.
fn supplementary_groups(pid: i32) -> BTreeSet<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(reader: Option<u32>) -> Access {
        Access {
            admin_uids: [0, 1000].into(),
            admin_gids: [50].into(),
            reader_gid: reader,
        }
    }

    #[test]
    fn roles_follow_the_policy() {
        let a = access(Some(60));
        assert_eq!(a.role(0, 0, None), Role::Admin);
        assert_eq!(a.role(1000, 1000, None), Role::Admin);
        assert_eq!(
            a.role(2000, 50, None),
            Role::Admin,
            "admin group as primary group"
        );
        assert_eq!(a.role(2000, 60, None), Role::Read, "socket group");
        assert_eq!(a.role(2000, 70, None), Role::None);
        assert_eq!(
            access(None).role(2000, 70, None),
            Role::Read,
            "no socket_group: the mode decides"
        );
    }

    #[test]
    fn supplementary_groups_of_this_process_are_read() {
        // This test process's own groups (at least parseable, possibly empty).
        let _ = supplementary_groups(std::process::id() as i32);
        assert!(supplementary_groups(-1).is_empty());
    }
}
