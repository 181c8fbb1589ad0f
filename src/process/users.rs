//! User and group lookup from `/etc/passwd` and `/etc/group`.
//!
//! The binary is linked statically, and static glibc cannot load NSS modules (`systemd`, `ldap`,
//! ...) named in `/etc/nsswitch.conf`: `getpwnam` can crash. Containers, where this agent runs as
//! CMD, keep their users in these files; numeric ids work for anything else.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Finds a user by name or numeric id.
pub fn user(name_or_id: &str) -> Option<User> {
    user_in(Path::new("/etc/passwd"), name_or_id)
}

/// Finds a group id by name or numeric id.
pub fn group(name_or_id: &str) -> Option<u32> {
    group_in(Path::new("/etc/group"), name_or_id)
}

/// Supplementary groups of `user` (plus its primary group `gid`).
pub fn groups_of(user: &str, gid: u32) -> Vec<u32> {
    groups_in(Path::new("/etc/group"), user, gid)
}

fn records(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

fn user_in(path: &Path, key: &str) -> Option<User> {
    let by_id = key.parse::<u32>().ok();
    records(path).into_iter().find_map(|f| {
        let uid = f.get(2)?.parse().ok()?;
        let gid = f.get(3)?.parse().ok()?;
        (f[0] == key || by_id == Some(uid)).then(|| User {
            name: f[0].clone(),
            uid,
            gid,
        })
    })
}

fn group_in(path: &Path, key: &str) -> Option<u32> {
    if let Ok(id) = key.parse::<u32>() {
        return Some(id);
    }
    records(path).into_iter().find_map(|f| {
        if f[0] == key {
            f.get(2)?.parse().ok()
        } else {
            None
        }
    })
}

fn groups_in(path: &Path, user: &str, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    for f in records(path) {
        let (Some(id), Some(members)) = (f.get(2).and_then(|g| g.parse::<u32>().ok()), f.get(3))
        else {
            continue;
        };
        if members.split(',').any(|m| m.trim() == user) && !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_group() {
        let dir = std::env::temp_dir().join(format!("users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        let group = dir.join("group");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            &group,
            "root:x:0:\napp:x:1001:\ndocker:x:998:app,other\nstaff:x:50:other\n",
        )
        .unwrap();
        assert_eq!(
            user_in(&passwd, "app"),
            Some(User {
                name: "app".into(),
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(user_in(&passwd, "1000").unwrap().name, "app");
        assert_eq!(user_in(&passwd, "nobody-here"), None);
        assert_eq!(group_in(&group, "docker"), Some(998));
        assert_eq!(group_in(&group, "42"), Some(42));
        assert_eq!(group_in(&group, "none"), None);
        assert_eq!(groups_in(&group, "app", 1001), vec![1001, 998]);
    }
}
