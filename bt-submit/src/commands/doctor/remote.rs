//! `bt-submit doctor --remote`: the beamline computer's road to the cluster,
//! checked in the order `bt-submit --remote` takes it: the metadata and its
//! key, a known_hosts entry and a TCP answer for each reserved node, then on
//! the node it would use (`--node`, else the first that passed both) a
//! BatchMode login as the account, sbatch there, and the node's own doctor.
//!
//! ssh, its config and the node are real here (crate::slurm::ssh); the
//! scenario tests/scenarios/tests/beamline_computer.rs runs it against the
//! harness's sshd.

use std::ffi::OsString;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use beamtime::metadata::OnlineAnalysis;
use beamtime::problem::ASK_THE_ADMINS;
use serde_json::Value;

use super::{checks, Check, Checks, Report};
use crate::cli::Source;
use crate::failure::{Failure, Status};
use crate::site::metadata_file::load_metadata;
use crate::site::settings::Settings;
use crate::slurm::known_hosts::KnownHostsName;
use crate::slurm::ssh::{check_key, Remote, CONNECT_TIMEOUT_SECONDS};

/// The checks made on the node that bt-submit --remote would use.
const ON_THE_NODE: [&str; 3] = ["login", "sbatch", "node-view"];

pub fn examine(
    source: &Source,
    node: Option<&str>,
    settings: &Settings,
    emit: &mut dyn FnMut(&Check),
) -> Report {
    let mut checks = Checks {
        made: Vec::new(),
        emit,
    };
    let metadata = load_metadata(source, settings);
    checks.push(match &metadata {
        Ok(m) => Check::pass(
            "metadata",
            format!("{} (beamtime {})", m.path.display(), m.id),
        ),
        Err(failure) => Check::failed("metadata", &failure.problem),
    });
    let metadata = metadata.ok();
    let online = metadata.as_ref().and_then(|m| m.online.ready());
    checks.push(checks::online_resources(metadata.as_ref(), online));
    let beamtime = metadata.as_ref().map(|m| m.id.to_string());
    let Some(online) = online else {
        for name in ["key", "known-hosts", "reach"]
            .into_iter()
            .chain(ON_THE_NODE)
        {
            checks.push(Check::skip(name, "online-resources"));
        }
        return checks.report(beamtime);
    };

    let key_check = key(online);
    let key_passed = key_check.outcome == super::Outcome::Pass;
    checks.push(key_check);
    let nodes: Vec<&str> = match node {
        Some(node) => vec![node],
        None => online.reserved_nodes.iter().map(String::as_str).collect(),
    };
    let names: Vec<(&str, KnownHostsName)> = nodes
        .iter()
        .map(|node| (*node, KnownHostsName::of(node)))
        .collect();
    let known = known_hosts(&names);
    checks.push(known.check);
    let reached = reach(&names);
    checks.push(reached.check);
    // The node bt-submit --remote would take: known and answering.
    let usable = names
        .iter()
        .map(|(node, _)| *node)
        .find(|node| known.passed.contains(node) && reached.passed.contains(node));
    let Some(usable) = usable else {
        for name in ON_THE_NODE {
            checks.push(Check::skip(name, "known-hosts and reach"));
        }
        return checks.report(beamtime);
    };
    if !key_passed {
        for name in ON_THE_NODE {
            checks.push(Check::skip(name, "key"));
        }
        return checks.report(beamtime);
    }
    let remote = match Remote::new(online, Some(usable)) {
        Ok(remote) => remote,
        Err(failure) => {
            checks.push(Check::failed("login", &failure.problem));
            return checks.report(beamtime);
        }
    };
    let login = match remote.run("true", &[]).map_err(Failure::from) {
        Ok(_) => Check::pass(
            "login",
            format!(
                "{usable}: logged in as {} with the beamtime's key (BatchMode)",
                online.user_account
            ),
        ),
        Err(failure) => Check::failed("login", &failure.problem),
    };
    let logged_in = login.outcome == super::Outcome::Pass;
    checks.push(login);
    if !logged_in {
        checks.push(Check::skip("sbatch", "login"));
        checks.push(Check::skip("node-view", "login"));
    } else {
        checks.push(sbatch(&remote, usable));
        let id = metadata
            .as_ref()
            .map(|m| m.id.to_string())
            .unwrap_or_default();
        checks.push(node_view(&remote, usable, &id));
    }
    checks.report(beamtime)
}

fn key(online: &OnlineAnalysis) -> Check {
    let Some(key) = &online.ssh_private_key else {
        return Check::fail(
            "key",
            "the metadata names no sshPrivateKeyPath",
            "ask the beamline staff: the start script puts the beamtime's key in shared/ and \
             names it in the metadata",
        );
    };
    match check_key(key, beamtime::users::current_uid()) {
        Ok(()) => Check::pass(
            "key",
            format!("{} can be read and ssh takes it", key.display()),
        ),
        Err(failure) => Check::failed("key", &failure.problem),
    }
}

/// A check over every node, and the nodes it passed for.
struct PerNode<'n> {
    check: Check,
    passed: Vec<&'n str>,
}

fn known_hosts<'n>(names: &[(&'n str, KnownHostsName)]) -> PerNode<'n> {
    let mut passed = Vec::new();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (node, name) in names {
        match name.known_in() {
            Some(file) => {
                passed.push(*node);
                found.push(format!("{node} as {} in {file}", name.name()));
            }
            None => missing.push(format!("{node}: add {}", name.line_to_add())),
        }
    }
    let check = if missing.is_empty() {
        Check::pass("known-hosts", found.join(", "))
    } else {
        // A node that is known is enough to submit; the others are for the admins.
        let outcome = match passed.is_empty() {
            true => Check::fail,
            false => Check::warn,
        };
        outcome(
            "known-hosts",
            format!(
                "no known_hosts entry for {} of the reserved nodes: bt-submit --remote does not \
                 log in to a node it cannot verify",
                missing.len()
            ),
            format!(
                "the cluster's administrators must add to /etc/ssh/ssh_known_hosts on this \
                 computer, with the fingerprint checked on the node (ssh-keygen -lf \
                 /etc/ssh/ssh_host_ed25519_key.pub): {}",
                missing.join("; ")
            ),
        )
    };
    PerNode { check, passed }
}

fn reach<'n>(names: &[(&'n str, KnownHostsName)]) -> PerNode<'n> {
    let timeout = Duration::from_secs(u64::from(CONNECT_TIMEOUT_SECONDS));
    let mut passed = Vec::new();
    let mut problems = Vec::new();
    for (node, name) in names {
        let answer = (name.host.as_str(), name.port)
            .to_socket_addrs()
            .map_err(|error| format!("{}:{}: {error}", name.host, name.port))
            .and_then(|addresses| {
                let mut last = format!("{}:{}: no address", name.host, name.port);
                for address in addresses {
                    match TcpStream::connect_timeout(&address, timeout) {
                        Ok(_) => return Ok(()),
                        Err(error) => last = format!("{address}: {error}"),
                    }
                }
                Err(last)
            });
        match answer {
            Ok(()) => passed.push(*node),
            Err(why) => problems.push(format!("{node} ({why})")),
        }
    }
    let check = if problems.is_empty() {
        Check::pass(
            "reach",
            format!("answering on the ssh port: {}", passed.join(", ")),
        )
    } else if !passed.is_empty() {
        // One node that answers is enough to submit.
        Check::warn(
            "reach",
            format!(
                "answering: {}; not answering: {}",
                passed.join(", "),
                problems.join(", ")
            ),
            format!("bt-submit --remote uses a node that answers; if this lasts, {ASK_THE_ADMINS}"),
        )
    } else {
        Check::fail(
            "reach",
            format!("no reserved node answers: {}", problems.join(", ")),
            format!(
                "check this computer's network to the cluster; if the nodes are up, {ASK_THE_ADMINS}"
            ),
        )
    };
    PerNode { check, passed }
}

fn sbatch(remote: &Remote, node: &str) -> Check {
    match remote
        .run("sbatch", &["--version".into()])
        .map_err(Failure::from)
    {
        Ok((_, output)) if output.status.success() => Check::pass(
            "sbatch",
            format!("{node}: {}", String::from_utf8_lossy(&output.stdout).trim()),
        ),
        Ok((_, output)) => Check::fail(
            "sbatch",
            format!(
                "{node}: sbatch --version failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            ASK_THE_ADMINS,
        ),
        Err(failure) => Check::failed("sbatch", &failure.problem),
    }
}

/// The node's own `bt-submit doctor` for the beamtime, as the account: what
/// the cluster's side says, where Slurm is.
fn node_view(remote: &Remote, node: &str, id: &str) -> Check {
    const NAME: &str = "node-view";
    let args: Vec<OsString> = ["doctor", "--beamtime", id, "--format", "json"]
        .into_iter()
        .map(OsString::from)
        .collect();
    let output = match remote.run("bt-submit", &args).map_err(Failure::from) {
        Ok((_, output)) => output,
        Err(Failure {
            status: Status::NotFound,
            ..
        }) => {
            return Check::warn(
                NAME,
                format!(
                    "{node}: bt-submit is not installed there: the node's view was not checked"
                ),
                format!(
                    "{ASK_THE_ADMINS}: install the spank-beamtime package on the reserved nodes"
                ),
            )
        }
        Err(failure) => return Check::failed(NAME, &failure.problem),
    };
    let report: Option<Value> = serde_json::from_slice(&output.stdout).ok();
    let Some(report) = report else {
        return Check::fail(
            NAME,
            format!(
                "{node}: bt-submit doctor gave no report: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            ASK_THE_ADMINS,
        );
    };
    let first_failure = report["checks"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["result"] == "fail"));
    match first_failure {
        None if report["ok"] == true => Check::pass(
            NAME,
            format!("{node}: bt-submit doctor --beamtime {id} there: every check passed"),
        ),
        None => Check::fail(
            NAME,
            format!("{node}: bt-submit doctor --beamtime {id} there did not pass"),
            format!("run it there for the whole report: log in as the account ({ASK_THE_ADMINS} if it fails)"),
        ),
        Some(failed) => Check::fail(
            NAME,
            format!(
                "{node}: bt-submit doctor --beamtime {id} there: {} failed: {}",
                failed["check"].as_str().unwrap_or_default(),
                failed["detail"].as_str().unwrap_or_default()
            ),
            failed["fix"].as_str().unwrap_or_default().to_owned(),
        ),
    }
}
