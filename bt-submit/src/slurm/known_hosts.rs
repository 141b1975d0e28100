//! Which name a node's host key must have in known_hosts, as this user's ssh
//! looks it up (`ssh -G`), and the line to add when it is missing: for the
//! hint of a refused `--remote` and `doctor --remote`'s known-hosts check.

use std::process::{Command, Stdio};

/// The name known_hosts must give a node, as ssh looks it up with this
/// user's ssh_config (`ssh -G`): `HostKeyAlias` when set, else the host it
/// connects to, as `[host]:port` when the port is not 22.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHostsName {
    /// Where ssh connects (`HostName`, else the node's name).
    pub host: String,
    pub port: u16,
    alias: Option<String>,
    /// The known_hosts files ssh reads, the user's then the system's.
    files: Vec<String>,
}

impl KnownHostsName {
    /// For `node` as this user's ssh sees it; as the node's own name on port
    /// 22 when `ssh -G` cannot tell (the hint is then no worse than the name).
    pub fn of(node: &str) -> KnownHostsName {
        Command::new("ssh")
            .args(["-G", node])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| Self::parse(&String::from_utf8_lossy(&output.stdout)))
            .unwrap_or_else(|| KnownHostsName {
                host: node.to_owned(),
                port: 22,
                alias: None,
                files: Vec::new(),
            })
    }

    /// The name ssh looks up in known_hosts.
    pub fn name(&self) -> String {
        match (&self.alias, self.port) {
            (Some(alias), _) => alias.clone(),
            (None, 22) => self.host.clone(),
            (None, port) => format!("[{}]:{port}", self.host),
        }
    }

    /// The known_hosts file that holds a key for the name (`ssh-keygen -F`,
    /// which also finds hashed entries), if any.
    pub fn known_in(&self) -> Option<&str> {
        let name = self.name();
        self.files.iter().map(String::as_str).find(|file| {
            Command::new("ssh-keygen")
                .args(["-F", &name, "-f", file])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
    }

    /// `ssh -G`'s `hostname`, `port` and `hostkeyalias` lines.
    fn parse(ssh_g: &str) -> Option<KnownHostsName> {
        let value = |key: &str| {
            ssh_g.lines().find_map(|line| {
                line.strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(str::to_owned)
            })
        };
        let files = ["userknownhostsfile", "globalknownhostsfile"]
            .into_iter()
            .filter_map(value)
            .flat_map(|list| {
                list.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        Some(KnownHostsName {
            host: value("hostname")?,
            port: value("port")?.parse().ok()?,
            alias: value("hostkeyalias"),
            files,
        })
    }

    fn scan(&self) -> String {
        match self.port {
            22 => format!("ssh-keyscan {}", self.host),
            port => format!("ssh-keyscan -p {port} {}", self.host),
        }
    }

    /// What to add, and how to get it.
    pub fn line_to_add(&self) -> String {
        match (&self.alias, self.port) {
            (Some(alias), _) => format!(
                "as the line '{alias} KEY' (ssh_config gives it HostKeyAlias {alias}): KEY \
                 from {}",
                self.scan()
            ),
            (None, 22) => format!(
                "as the line '{} KEY' ({} prints it)",
                self.host,
                self.scan()
            ),
            (None, port) => format!(
                "as the line '[{}]:{port} KEY' (ssh_config gives it port {port}; {} prints it)",
                self.host,
                self.scan()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_hosts_line_names_the_port_or_the_alias_that_ssh_config_gives_the_node() {
        let name = |text: &str| KnownHostsName::parse(text).unwrap().line_to_add();
        assert_eq!(
            name("user bttest05\nhostname max-p3a901\nport 22\n"),
            "as the line 'max-p3a901 KEY' (ssh-keyscan max-p3a901 prints it)"
        );
        assert_eq!(
            name("hostname 127.0.0.1\nport 28900\nhostkeyaliasx y\n"),
            "as the line '[127.0.0.1]:28900 KEY' (ssh_config gives it port 28900; \
             ssh-keyscan -p 28900 127.0.0.1 prints it)"
        );
        assert_eq!(
            name("hostname 127.0.0.1\nport 2222\nhostkeyalias btnode1\n"),
            "as the line 'btnode1 KEY' (ssh_config gives it HostKeyAlias btnode1): KEY from \
             ssh-keyscan -p 2222 127.0.0.1"
        );
        assert_eq!(KnownHostsName::parse("hostname n1\n"), None);
    }

    #[test]
    fn the_known_hosts_files_and_name_are_those_ssh_g_reports() {
        let parsed = KnownHostsName::parse(
            "hostname 127.0.0.1\nport 2222\nuserknownhostsfile /home/u/.ssh/known_hosts \
             /home/u/.ssh/known_hosts2\nglobalknownhostsfile /etc/ssh/ssh_known_hosts\n",
        )
        .unwrap();
        assert_eq!(parsed.name(), "[127.0.0.1]:2222");
        assert_eq!(
            parsed.files,
            [
                "/home/u/.ssh/known_hosts",
                "/home/u/.ssh/known_hosts2",
                "/etc/ssh/ssh_known_hosts"
            ]
        );
        let aliased = KnownHostsName::parse(
            "hostname h\nport 22\nhostkeyalias n1\nuserknownhostsfile /nonexistent/known_hosts\n",
        )
        .unwrap();
        assert_eq!(aliased.name(), "n1");
        // A known_hosts file that is not there holds no entry.
        assert_eq!(aliased.known_in(), None);
    }
}
