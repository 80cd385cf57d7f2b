//! `user` and `group` looked up in the system's user database once, when the configuration is
//! loaded: a missing user is then a configuration error that `ctsd --check` reports, and ctsd
//! never consults NSS between fork and exec or on its event loop.

use std::collections::BTreeMap;
use std::ffi::CString;

use nix::unistd::{Group, User};

use crate::error::{ConfigError, ConfigErrors};
use crate::model::{Accounts, Config};

/// Fills every instance's [`crate::PoolSpec::accounts`].
///
/// # Errors
///
/// One error per user or group name that does not exist or cannot be looked up, reported on
/// the first instance using it.
pub(crate) fn resolve(config: &mut Config) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let mut cache: BTreeMap<(Option<String>, Option<String>), Result<Accounts, String>> =
        BTreeMap::new();
    for inst in &mut config.instances {
        let pool = &mut inst.pool;
        if pool.user.is_none() && pool.group.is_none() {
            continue;
        }
        let id = (pool.user.clone(), pool.group.clone());
        let first = !cache.contains_key(&id);
        let found = cache
            .entry(id)
            .or_insert_with(|| Accounts::lookup(pool.user.as_deref(), pool.group.as_deref()))
            .clone();
        match found {
            Ok(accounts) => {
                // Programs run as their instance's user.
                for p in &mut inst.programs {
                    p.pool.accounts = Some(accounts.clone());
                }
                inst.pool.accounts = Some(accounts);
            }
            Err(message) if first => errors.push(ConfigError {
                file: config.source.clone(),
                key: format!(
                    "instances.{}.{}",
                    inst.key,
                    if message.starts_with("group") {
                        "group"
                    } else {
                        "user"
                    }
                ),
                message,
            }),
            Err(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}

impl Accounts {
    /// What `initgroups(user, gid)` + `setgid(gid)` + `setuid(uid)` would apply.
    ///
    /// # Errors
    ///
    /// A user or group that does not exist or cannot be looked up, in words.
    pub fn lookup(user: Option<&str>, group: Option<&str>) -> Result<Accounts, String> {
        let group = match group {
            Some(name) => Some(
                Group::from_name(name)
                    .map_err(|e| format!("group `{name}` cannot be looked up: {e}"))?
                    .ok_or_else(|| format!("group `{name}` does not exist on this system"))?,
            ),
            None => None,
        };
        let Some(name) = user else {
            let gid = group.map_or(0, |g| g.gid.as_raw());
            return Ok(Accounts {
                uid: None,
                gid,
                groups: Vec::new(),
            });
        };
        let user = User::from_name(name)
            .map_err(|e| format!("user `{name}` cannot be looked up: {e}"))?
            .ok_or_else(|| format!("user `{name}` does not exist on this system"))?;
        let gid = group.map_or(user.gid, |g| g.gid);
        let cname = CString::new(name).map_err(|_| format!("user `{name}` contains a NUL byte"))?;
        let groups = nix::unistd::getgrouplist(&cname, gid)
            .map_err(|e| format!("user `{name}`: cannot list its groups: {e}"))?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        Ok(Accounts {
            uid: Some(user.uid.as_raw()),
            gid: gid.as_raw(),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_with_its_groups() {
        let a = Accounts::lookup(Some("root"), None).unwrap();
        assert_eq!(a.uid, Some(0));
        assert_eq!(a.gid, 0);
        assert!(a.groups.contains(&0));
    }

    #[test]
    fn a_missing_user_is_named() {
        let e = Accounts::lookup(Some("no-such-user-ctsd"), None).unwrap_err();
        assert!(e.contains("`no-such-user-ctsd` does not exist"), "{e}");
        let e = Accounts::lookup(None, Some("no-such-group-ctsd")).unwrap_err();
        assert!(e.starts_with("group `no-such-group-ctsd`"), "{e}");
    }
}
