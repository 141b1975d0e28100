//! The Unix accounts the tests act as, from the user database through `beamtime::users`,
//! the lookup the plugin and bt-submit use.

use std::path::PathBuf;

use beamtime::users;

/// A Unix account as the helpers need it to run commands under its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// All groups, primary included, as `initgroups` would set them.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: String,
}

impl UnixUser {
    /// The user called `name` and their groups; `None` when the database has no such user.
    ///
    /// # Panics
    ///
    /// When the user database cannot be asked: that fails the test, with the error, and
    /// never reads as "no such user".
    #[track_caller]
    pub fn lookup(name: &str) -> Option<UnixUser> {
        let account = users::by_name(name).unwrap_or_else(|e| panic!("{e}"))?;
        let groups = users::groups_of(&account).unwrap_or_else(|e| panic!("{e}"));
        Some(UnixUser {
            name: account.name,
            uid: account.uid,
            gid: account.gid,
            groups,
            home: account.home,
            shell: account.shell,
        })
    }

    /// Like [`UnixUser::lookup`], but a missing user is a test failure too.
    #[track_caller]
    pub fn get(name: &str) -> UnixUser {
        UnixUser::lookup(name).unwrap_or_else(|| panic!("no Unix user {name:?} on this machine"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_with_its_groups_and_an_unknown_name_is_none() {
        let root = UnixUser::get("root");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0), "{root:?}");
        assert_eq!(UnixUser::lookup("no-such-user-scenarios"), None);
    }
}
