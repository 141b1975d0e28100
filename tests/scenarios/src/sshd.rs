//! The test cluster's OpenSSH server (tests/cluster/lib/daemons.sh, `start_sshd`), the
//! reserved node's sshd for `bt-submit --remote`, and "beamline computers": Unix users set
//! up as a facility sets up the beamline's own machines, with an ssh_config entry for each
//! node name and (unless a test wants an unknown host) the node's host key in known_hosts.
//!
//! The sshd listens on loopback; a user's `~/.ssh/config` maps each node name to
//! 127.0.0.1 and a port, with `HostKeyAlias` set to the node name so that known_hosts
//! entries name the node as they do on a real site. A node mapped to [`DOWN_PORT`] does not
//! answer (nothing listens there: the connection is refused at once).

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::users::UnixUser;

/// A loopback port nothing listens on (tcpmux): a reserved node that is down.
pub const DOWN_PORT: u16 = 1;

/// The cluster's sshd, as `cluster.sh up` started it.
#[derive(Clone, Debug)]
pub struct Sshd {
    pub port: u16,
    /// `ssh-ed25519 AAAA…`, for known_hosts.
    pub host_key: String,
    authorized_keys: PathBuf,
}

impl Cluster {
    /// The sshd of this cluster: `BT_SSHD_PORT` from `cluster.sh env`. Panics when it is
    /// not set or the sshd's files are missing: a remote test must fail loudly.
    #[track_caller]
    pub fn sshd(&self) -> Sshd {
        let port = std::env::var("BT_SSHD_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("BT_SSHD_PORT is not set: eval \"$(tests/cluster/cluster.sh env)\" first")
            });
        let dir = self.state_dir().join("etc/sshd");
        Sshd {
            port,
            host_key: read_host_key(&dir.join("host_ed25519_key.pub")),
            authorized_keys: dir.join("authorized_keys"),
        }
    }
}

/// One node's own sshd in the cluster of several hosts: port 22 of the node's address,
/// inside its network and UTS namespaces.
#[derive(Clone, Debug)]
pub struct NodeSshd {
    pub node: String,
    pub address: String,
    /// `ssh-ed25519 AAAA…`, for known_hosts.
    pub host_key: String,
    /// Its log: `<state>/log/sshd-<node>.log`.
    pub log: PathBuf,
}

#[track_caller]
fn read_host_key(public: &Path) -> String {
    let text = fs::read_to_string(public).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the cluster was started without its sshd?)",
            public.display()
        )
    });
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Cluster {
    /// The sshd of `node` in a cluster of several hosts; panics when it has none.
    #[track_caller]
    pub fn node_sshd(&self, node: &str) -> NodeSshd {
        let dir = self.state_dir().join("etc/sshd").join(node);
        let address_file = dir.join("address");
        let address = fs::read_to_string(&address_file)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (a node sshd exists only with cluster.sh up --nodes N)",
                    address_file.display()
                )
            })
            .trim()
            .to_owned();
        NodeSshd {
            node: node.to_owned(),
            address,
            host_key: read_host_key(&dir.join("host_ed25519_key.pub")),
            log: self.log_dir().join(format!("sshd-{node}.log")),
        }
    }
}

/// One `Host` entry of a beamline computer's ssh_config, and its known_hosts line if any.
struct Host<'a> {
    name: &'a str,
    address: &'a str,
    port: u16,
    host_key: Option<&'a str>,
}

/// Writes `user`'s `~/.ssh/config` and `~/.ssh/known_hosts` for `hosts`, replacing both.
#[track_caller]
fn write_ssh_view(user: &str, hosts: &[Host]) {
    let u = UnixUser::get(user);
    let dir = u.home.join(".ssh");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut config = String::new();
    let mut known_hosts = String::new();
    for host in hosts {
        config.push_str(&format!(
            "Host {}\n    HostName {}\n    Port {}\n    HostKeyAlias {}\n",
            host.name, host.address, host.port, host.name
        ));
        if let Some(key) = host.host_key {
            known_hosts.push_str(&format!("{} {key}\n", host.name));
        }
    }
    for (name, text) in [("config", config), ("known_hosts", known_hosts)] {
        let path = dir.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        chown(&path, Some(u.uid), Some(u.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    chown(&dir, Some(u.uid), Some(u.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
}

/// A beamline computer of a cluster of several hosts: every node in `nodes` by its own
/// address and port 22, its host key known.
#[track_caller]
pub fn beamline_computer_of_nodes(user: &str, nodes: &[NodeSshd]) {
    let hosts: Vec<Host> = nodes
        .iter()
        .map(|n| Host {
            name: &n.node,
            address: &n.address,
            port: 22,
            host_key: Some(&n.host_key),
        })
        .collect();
    write_ssh_view(user, &hosts);
}

impl Sshd {
    /// Lets `account` log in with the public key in `public_key` (and no other): the
    /// sshd's `AuthorizedKeysFile` for that account, root-owned as StrictModes wants.
    #[track_caller]
    pub fn authorize(&self, account: &str, public_key: &Path) {
        let key = fs::read(public_key).unwrap_or_else(|e| panic!("{}: {e}", public_key.display()));
        let file = self.authorized_keys.join(account);
        fs::write(&file, key).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    /// Sets up `user`'s `~/.ssh` as a beamline computer's: `nodes` are (node name, port)
    /// pairs for its ssh_config (port [`DOWN_PORT`] for a node that is down, else
    /// [`Sshd::port`]); `known` says whether known_hosts vouches for those on the sshd's
    /// port. Replaces what an earlier call wrote.
    #[track_caller]
    pub fn beamline_computer(&self, user: &str, nodes: &[(&str, u16)], known: bool) {
        let hosts: Vec<Host> = nodes
            .iter()
            .map(|(node, port)| Host {
                name: node,
                address: "127.0.0.1",
                port: *port,
                host_key: (known && *port == self.port).then_some(self.host_key.as_str()),
            })
            .collect();
        write_ssh_view(user, &hosts);
    }
}

impl Cluster {
    /// A Unix user for a test's beamline computer, created if missing (under the lock
    /// beamtime-start.sh takes, since useradd fails on a locked /etc/passwd), and added to
    /// `groups`.
    #[track_caller]
    pub fn ensure_unix_user(&self, name: &str, groups: &[&str]) -> UnixUser {
        let lock = self.beamline_src().join(".beamtime-start.lock");
        fs::create_dir_all(self.beamline_src())
            .unwrap_or_else(|e| panic!("{}: {e}", self.beamline_src().display()));
        if UnixUser::lookup(name).is_none() {
            self.cmd("flock")
                .args(["-w", "120"])
                .arg(&lock)
                .args([
                    "useradd",
                    "-m",
                    "-s",
                    "/bin/bash",
                    "-c",
                    "beamline computer",
                    name,
                ])
                .timeout(Duration::from_secs(150))
                .run()
                .assert_success();
        }
        for group in groups {
            self.cmd("flock")
                .args(["-w", "120"])
                .arg(&lock)
                .args(["usermod", "-a", "-G", group, name])
                .timeout(Duration::from_secs(150))
                .run()
                .assert_success();
        }
        UnixUser::get(name)
    }
}
