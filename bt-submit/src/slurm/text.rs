//! Reading what `scontrol` and `plugstack.conf` say, without running anything:
//! every function here takes text, so each is tested on output captured from
//! the test cluster (tests/fixtures/scontrol/).

use std::collections::BTreeMap;

/// One `scontrol show … -o` line (job, node, reservation, partition) as
/// `Key=value` fields. Values may contain spaces (`JobName=calibration run 3`,
/// `OS=Linux 6.1 #1 SMP`, `Reason=disk full [root@…]`): a word that does not
/// start with `Key=` continues the previous value. An empty value stays empty
/// (`Power=`).
///
/// The first of two equal keys wins. Only sub-records repeat a key: a
/// reservation line prints `NodeName=… CoreIDs=…` once per node's core set
/// (`NodeName=btnode2 CoreIDs=0   NodeName=btnode3 CoreIDs=0-1`), and
/// `Nodes=`/`CoreCnt=` already say what the whole reservation holds. Keeping
/// the first keeps the fields of one set together and can never let a
/// sub-record overwrite the record's own field of that name.
pub fn parse_record(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for word in line.split_whitespace() {
        match field_start(word) {
            Some((key, value)) => {
                if let Some((k, v)) = current.take() {
                    fields.entry(k).or_insert(v);
                }
                current = Some((key.to_owned(), value.to_owned()));
            }
            None => {
                if let Some((_, value)) = current.as_mut() {
                    value.push(' ');
                    value.push_str(word);
                }
            }
        }
    }
    if let Some((k, v)) = current {
        fields.entry(k).or_insert(v);
    }
    fields
}

/// `Key=value` when `word` starts a field. Keys start with a capital letter
/// and hold letters, digits, `_`, and in job records `/` and `:`
/// (`CPUs/Task=1`, `Socks/Node=*`, `NtasksPerN:B:S:C=0:0:*:*`,
/// `AllocNode:Sid=localhost:10643`); a word such as `cpu=1` inside a value does not
/// start one.
fn field_start(word: &str) -> Option<(&str, &str)> {
    let (key, value) = word.split_once('=')?;
    let mut chars = key.chars();
    let first_is_upper = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | ':');
    (first_is_upper && chars.all(is_key_char)).then_some((key, value))
}

/// scontrol prints `(null)` for an unset field.
fn set(value: Option<&String>) -> Option<&str> {
    value
        .map(String::as_str)
        .filter(|v| !v.is_empty() && *v != "(null)")
}

/// A comma-separated access list; a leading `-` on the entries means "everyone but".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessList {
    Unset,
    Only(Vec<String>),
    AllBut(Vec<String>),
}

impl AccessList {
    fn parse(value: Option<&String>) -> AccessList {
        let Some(value) = set(value) else {
            return AccessList::Unset;
        };
        let names: Vec<&str> = value.split(',').filter(|n| !n.is_empty()).collect();
        // Slurm refuses to mix listed and excluded names in one list.
        if names.iter().all(|n| n.starts_with('-')) {
            AccessList::AllBut(names.iter().map(|n| n[1..].to_owned()).collect())
        } else {
            AccessList::Only(names.iter().map(|n| (*n).to_owned()).collect())
        }
    }

    fn admits(&self, name: &str) -> bool {
        match self {
            AccessList::Unset => false,
            AccessList::Only(names) => names.iter().any(|n| n == name),
            AccessList::AllBut(names) => !names.iter().any(|n| n == name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub name: String,
    pub state: String,
    pub start_time: String,
    pub end_time: String,
    pub users: AccessList,
    pub accounts: AccessList,
    /// Slurm's node list (`btnode[1-4]`), as `scontrol show hostnames` takes it.
    pub nodes: String,
}

impl Reservation {
    /// The reservations in `scontrol show reservation -o` output.
    pub fn parse_all(text: &str) -> Vec<Reservation> {
        text.lines()
            .filter(|l| l.starts_with("ReservationName="))
            .map(|line| {
                let f = parse_record(line);
                let text = |key: &str| f.get(key).cloned().unwrap_or_default();
                Reservation {
                    name: text("ReservationName"),
                    state: text("State"),
                    start_time: text("StartTime"),
                    end_time: text("EndTime"),
                    users: AccessList::parse(f.get("Users")),
                    accounts: AccessList::parse(f.get("Accounts")),
                    nodes: text("Nodes"),
                }
            })
            .collect()
    }

    pub fn is_active(&self) -> bool {
        self.state == "ACTIVE"
    }

    /// Why `user`, whose Slurm accounts are `accounts`, may not use this
    /// reservation, or `None` if they may. As in Slurm: with both `Users=` and
    /// `Accounts=` set, a job must match both.
    pub fn refuses(&self, user: &str, accounts: &[String]) -> Option<String> {
        let user_ok = self.users.admits(user);
        let account_ok = accounts.iter().any(|a| self.accounts.admits(a));
        let ok = match (&self.users, &self.accounts) {
            (AccessList::Unset, AccessList::Unset) => false,
            (_, AccessList::Unset) => user_ok,
            (AccessList::Unset, _) => account_ok,
            _ => user_ok && account_ok,
        };
        if ok {
            return None;
        }
        let mut why = Vec::new();
        if self.users != AccessList::Unset && !user_ok {
            why.push(format!(
                "user {user} is not admitted by Users={}",
                list_text(&self.users)
            ));
        }
        if self.accounts != AccessList::Unset && !account_ok {
            let yours = if accounts.is_empty() {
                "none found".to_owned()
            } else {
                accounts.join(",")
            };
            why.push(format!(
                "none of your Slurm accounts ({yours}) is admitted by Accounts={}",
                list_text(&self.accounts)
            ));
        }
        if why.is_empty() {
            why.push("it admits nobody (neither Users= nor Accounts= is set)".to_owned());
        }
        Some(why.join("; "))
    }
}

fn list_text(list: &AccessList) -> String {
    match list {
        AccessList::Unset => "(null)".to_owned(),
        AccessList::Only(names) => names.join(","),
        AccessList::AllBut(names) => names
            .iter()
            .map(|n| format!("-{n}"))
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Why a node line from `scontrol show node -o` says jobs cannot start there,
/// or `None` when they can. The state is a base state and `+FLAG`s; a
/// trailing `*` means the node does not answer the controller.
pub fn node_unusable(line: &str) -> Option<String> {
    let f = parse_record(line);
    let Some(state) = f.get("State") else {
        return Some("scontrol printed no State for it".to_owned());
    };
    let not_responding = state.ends_with('*');
    let mut parts = state.trim_end_matches('*').split('+');
    let base = parts.next().unwrap_or_default();
    let flags: Vec<&str> = parts.collect();
    let bad_flag = flags.iter().find(|flag| {
        matches!(
            **flag,
            "DRAIN"
                | "FAIL"
                | "NOT_RESPONDING"
                | "MAINTENANCE"
                | "REBOOT_ISSUED"
                | "POWERED_DOWN"
                | "POWERING_DOWN"
        )
    });
    let reason = set(f.get("Reason"))
        .map(|r| format!(", reason: {r}"))
        .unwrap_or_default();
    if matches!(base, "DOWN" | "FUTURE" | "UNKNOWN") || bad_flag.is_some() || not_responding {
        Some(format!("State={state}{reason}"))
    } else {
        None
    }
}

/// The partition's `State=` from `scontrol show partition -o`, when it is not UP.
pub fn partition_not_up(line: &str) -> Option<String> {
    let f = parse_record(line);
    match f.get("State").map(String::as_str) {
        Some("UP") => None,
        Some(state) => Some(format!("State={state}")),
        None => Some("scontrol printed no State for it".to_owned()),
    }
}

/// `PlugStackConfig` from `scontrol show config` (`Key = value` lines).
pub fn plugstack_config(show_config: &str) -> Option<String> {
    config_value(show_config, "PlugStackConfig")
}

/// `ProctrackType` from `scontrol show config`: which plugin tracks a job's
/// processes, and so whether any can outlive the job (security.md, #17).
pub fn proctrack_type(show_config: &str) -> Option<String> {
    config_value(show_config, "ProctrackType")
}

fn config_value(show_config: &str, wanted: &str) -> Option<String> {
    show_config.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == wanted)
            .then(|| value.trim().to_owned())
            .filter(|v| v != "(null)")
    })
}

/// A meaningful line of a plugstack file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlugstackLine {
    Plugin {
        required: bool,
        path: String,
        args: Vec<String>,
    },
    Include(String),
}

/// The lines of one plugstack file, each with its 1-based line number (for
/// messages that point at `file:line`); comments (`#` to the end of the line)
/// and blank lines dropped. Lines this does not understand are left out: Slurm
/// itself reports those when it reads the file.
pub fn parse_plugstack(text: &str) -> Vec<(usize, PlugstackLine)> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let first = words.next()?;
            let second = words.next()?;
            let parsed = match first {
                "include" => PlugstackLine::Include(second.to_owned()),
                "required" | "optional" => PlugstackLine::Plugin {
                    required: first == "required",
                    path: second.to_owned(),
                    args: words.map(str::to_owned).collect(),
                },
                _ => return None,
            };
            Some((index + 1, parsed))
        })
        .collect()
}

/// Whether a plugin path names this project's plugin (`spank_beamtime.so`
/// when installed, `libspank_beamtime.so` straight from cargo).
pub fn is_beamtime_plugin(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|name| name.contains("spank_beamtime"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/scontrol/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn values_with_spaces_stay_whole_and_the_first_of_two_keys_wins() {
        let f = parse_record(&fixture("node-drained.txt"));
        assert_eq!(f["Reason"], "disk full [root@2026-11-26T13:19:28]");
        assert!(f["OS"].starts_with("Linux "), "{}", f["OS"]);
        assert_eq!(f["State"], "IDLE+DRAIN+RESERVED");
        let r = parse_record(fixture("reservations.txt").lines().next().unwrap());
        assert_eq!(r["NodeName"], "btnode1");
        assert_eq!(r["Flags"], "IGNORE_JOBS,SPEC_NODES");
    }

    #[test]
    fn a_reservation_with_a_core_set_per_node_keeps_the_first_set() {
        let r = parse_record(&fixture("reservation-core-sets.txt"));
        assert_eq!(r["Nodes"], "btnode[2-4]");
        assert_eq!(r["CoreCnt"], "4");
        assert_eq!((&*r["NodeName"], &*r["CoreIDs"]), ("btnode2", "0"));
        assert_eq!(r["TRES"], "cpu=4");
        assert_eq!(r["Users"], "btalice");
        assert_eq!(r["State"], "ACTIVE");
    }

    #[test]
    fn job_record_keys_with_slashes_and_colons_start_their_own_field() {
        let f = parse_record(&fixture("job-running.txt"));
        assert_eq!(f["JobId"], "642");
        assert_eq!(f["JobName"], "calibration run 3");
        assert_eq!(f["JobState"], "RUNNING");
        assert_eq!(f["ExitCode"], "0:0");
        assert_eq!(f["Scheduler"], "Main");
        assert_eq!(f["AllocNode:Sid"], "localhost:10643");
        assert_eq!(f["CPUs/Task"], "1");
        assert_eq!(f["ReqB:S:C:T"], "0:0:*:*");
        assert_eq!(f["TRES"], "cpu=1,node=1,billing=1");
        assert_eq!(f["Socks/Node"], "*");
        assert_eq!(f["NtasksPerN:B:S:C"], "0:0:*:*");
        assert_eq!(
            f["WorkDir"],
            "/var/lib/spank-beamtime-test/work/btalice/fixture"
        );
        assert_eq!(f["Power"], "");
    }

    #[test]
    fn reservations_of_a_started_beamtime_are_active_and_admit_its_account() {
        let all = Reservation::parse_all(&fixture("reservations.txt"));
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["11099001", "11099001_1"]);
        for r in &all {
            assert!(r.is_active(), "{r:?}");
            assert_eq!(r.users, AccessList::Only(vec!["bttest01".into()]));
            assert_eq!(r.accounts, AccessList::Unset);
            assert_eq!(r.refuses("bttest01", &[]), None);
            let why = r.refuses("btalice", &["btusers".into()]).unwrap();
            assert_eq!(why, "user btalice is not admitted by Users=bttest01");
        }
    }

    #[test]
    fn a_future_reservation_is_inactive_and_an_excluded_user_is_refused() {
        let r = &Reservation::parse_all(&fixture("reservation-inactive-negated-user.txt"))[0];
        assert_eq!(r.state, "INACTIVE");
        assert!(!r.is_active());
        assert_eq!(r.start_time, "2026-11-27T13:19:33");
        assert_eq!(r.users, AccessList::AllBut(vec!["bttest01".into()]));
        assert_eq!(r.refuses("btalice", &[]), None);
        assert_eq!(
            r.refuses("bttest01", &[]).unwrap(),
            "user bttest01 is not admitted by Users=-bttest01"
        );
    }

    #[test]
    fn an_accounts_reservation_admits_members_of_the_account_only() {
        let r = &Reservation::parse_all(&fixture("reservation-accounts.txt"))[0];
        assert_eq!(r.accounts, AccessList::Only(vec!["btusers".into()]));
        assert_eq!(
            r.refuses("btalice", &["other".into(), "btusers".into()]),
            None
        );
        assert_eq!(
            r.refuses("bttest01", &["11099001".into()]).unwrap(),
            "none of your Slurm accounts (11099001) is admitted by Accounts=btusers"
        );
        assert!(r.refuses("bttest01", &[]).unwrap().contains("(none found)"));
    }

    #[test]
    fn with_users_and_accounts_both_must_match() {
        let line = fixture("reservation-accounts.txt").replace("Users=(null)", "Users=btalice");
        let r = &Reservation::parse_all(&line)[0];
        assert_eq!(r.refuses("btalice", &["btusers".into()]), None);
        assert!(r
            .refuses("btalice", &["other".into()])
            .unwrap()
            .starts_with("none of your"));
        assert!(r
            .refuses("bob", &["btusers".into()])
            .unwrap()
            .starts_with("user bob"));
    }

    #[test]
    fn an_idle_node_is_usable_a_drained_or_unresponsive_one_is_not() {
        assert_eq!(node_unusable(&fixture("node-idle.txt")), None);
        assert_eq!(
            node_unusable(&fixture("node-drained.txt")).unwrap(),
            "State=IDLE+DRAIN+RESERVED, reason: disk full [root@2026-11-26T13:19:28]"
        );
        let idle = fixture("node-idle.txt");
        for state in [
            "IDLE*",
            "DOWN",
            "DOWN+NOT_RESPONDING",
            "MIXED+FAIL",
            "FUTURE",
        ] {
            let line = idle.replace("State=IDLE", &format!("State={state}"));
            assert!(node_unusable(&line).is_some(), "{state} counted as usable");
        }
        for state in ["MIXED", "ALLOCATED", "IDLE+RESERVED", "MIXED+COMPLETING"] {
            let line = idle.replace("State=IDLE", &format!("State={state}"));
            assert_eq!(node_unusable(&line), None, "{state} counted as unusable");
        }
    }

    #[test]
    fn partition_state_is_read_from_its_line() {
        assert_eq!(partition_not_up(&fixture("partition-up.txt")), None);
        assert_eq!(
            partition_not_up(&fixture("partition-down.txt")).unwrap(),
            "State=DOWN"
        );
    }

    #[test]
    fn plugstack_config_is_found_in_show_config() {
        assert_eq!(
            plugstack_config(&fixture("show-config.txt")).as_deref(),
            Some("/var/lib/spank-beamtime-h7/etc/plugstack.conf")
        );
        assert_eq!(plugstack_config("SlurmctldPlugstack      = (null)\n"), None);
        assert_eq!(
            proctrack_type(&fixture("show-config.txt")).as_deref(),
            Some("proctrack/linuxproc")
        );
    }

    #[test]
    fn plugstack_lines_are_plugins_and_includes() {
        let text = fixture("../../../../slurm-conf-examples/plugstack.conf.d/beamtime.conf");
        let lines = parse_plugstack(&text);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (
            _,
            PlugstackLine::Plugin {
                required,
                path,
                args,
            },
        ) = &lines[0]
        else {
            panic!("{lines:?}")
        };
        assert!(required);
        assert!(is_beamtime_plugin(path));
        assert_eq!(
            args,
            &[
                "source=/gpfs/beamline/{beamline}/current",
                "writable=processed,shared"
            ]
        );
        assert_eq!(
            parse_plugstack("include /etc/slurm/plugstack.conf.d/*.conf # distro default\n\noptional /x/other.so a=b\n"),
            [
                (1, PlugstackLine::Include("/etc/slurm/plugstack.conf.d/*.conf".into())),
                (3, PlugstackLine::Plugin { required: false, path: "/x/other.so".into(), args: vec!["a=b".into()] }),
            ]
        );
        assert!(is_beamtime_plugin(
            "/var/lib/x/plugins/libspank_beamtime.so"
        ));
        assert!(!is_beamtime_plugin("/usr/lib/spank_beamtime/other.so"));
    }
}
