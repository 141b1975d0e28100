//! Choosing among a beamtime's reservations by what the job asks for.
//!
//! The metadata lists a dedicated beamtime's reservations (`<id>`, `<id>_1`, …) but not
//! which nodes each holds nor what those nodes offer. When the user asks for a node count
//! (`-N`/`--nodes`) or features (`-C`/`--constraint`) and names no reservation, bt-submit
//! asks the controller (`scontrol show reservation`, `scontrol show node`) and takes the
//! first reservation, in the metadata's order, that can satisfy both.
//!
//! [`choose`] is pure; [`ask_controller`] asks scontrol through [`Slurm`].

use beamtime::untrusted::shown;

use crate::failure::{Failure, Status};
use crate::slurm::query::Slurm;
use crate::slurm::text::parse_record;

/// What the job asks for, as the user wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    /// `-N`/`--nodes`: `2`, or `2-4` (the minimum counts).
    pub nodes: Option<String>,
    /// `-C`/`--constraint`: features joined by `&` (all) or `|` (any).
    pub constraint: Option<String>,
}

impl Wants {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_none() && self.constraint.is_none()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.nodes {
            parts.push(format!("--nodes={n}"));
        }
        if let Some(c) = &self.constraint {
            parts.push(format!("--constraint={c}"));
        }
        parts.join(" ")
    }
}

/// A reservation's nodes and each node's active features, as the controller reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub reservation: String,
    pub nodes: Vec<(String, Vec<String>)>,
}

/// The reservation to use and the sentence that says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub reservation: String,
    pub why: String,
}

enum Constraint {
    All(Vec<String>),
    Any(Vec<String>),
}

fn parse_constraint(text: &str) -> Option<Constraint> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
    };
    let split = |sep: char| -> Option<Vec<String>> {
        let parts: Vec<String> = text.split(sep).map(str::to_owned).collect();
        parts.iter().all(|p| plain(p)).then_some(parts)
    };
    if text.contains('&') && text.contains('|') {
        return None;
    }
    if text.contains('|') {
        split('|').map(Constraint::Any)
    } else {
        split('&').map(Constraint::All)
    }
}

fn min_nodes(text: &str) -> Option<usize> {
    text.split('-')
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// The first of `holdings` (in the metadata's order) with enough nodes that have the
/// features asked for.
pub fn choose(wants: &Wants, holdings: &[Holding], beamtime: &str) -> Result<Choice, Failure> {
    let asked = wants.describe();
    let need = match &wants.nodes {
        Some(text) => min_nodes(text).ok_or_else(|| {
            Failure::new(
                Status::Usage,
                format!(
                    "cannot read the node count {}; nothing was submitted",
                    shown(text)
                ),
                "give --nodes N or --nodes MIN-MAX",
            )
        })?,
        None => 1,
    };
    let constraint = match &wants.constraint {
        Some(text) => Some(parse_constraint(text).ok_or_else(|| {
            Failure::new(
                Status::Usage,
                format!(
                    "bt-submit cannot choose a reservation for the constraint {}: it \
                     understands feature names joined by & or by |; nothing was submitted",
                    shown(text)
                ),
                "name the reservation yourself with --reservation NAME (bt-submit show lists them)",
            )
        })?),
        None => None,
    };
    let fits = |features: &[String]| match &constraint {
        None => true,
        Some(Constraint::All(want)) => want.iter().all(|w| features.contains(w)),
        Some(Constraint::Any(want)) => want.iter().any(|w| features.contains(w)),
    };
    let mut seen = Vec::new();
    for holding in holdings {
        let matching: Vec<&str> = holding
            .nodes
            .iter()
            .filter(|(_, features)| fits(features))
            .map(|(name, _)| name.as_str())
            .collect();
        if matching.len() >= need {
            return Ok(Choice {
                reservation: holding.reservation.clone(),
                why: format!(
                    "({} of its nodes match {asked}: {})",
                    matching.len(),
                    matching.join(",")
                ),
            });
        }
        seen.push(format!(
            "{} has {} matching node(s) of {}",
            holding.reservation,
            matching.len(),
            holding.nodes.len()
        ));
    }
    Err(Failure::new(
        Status::DataError,
        format!(
            "no reservation of beamtime {beamtime} can satisfy {asked} ({}); nothing was submitted",
            seen.join(", ")
        ),
        "ask for fewer nodes or other features, or name a reservation with --reservation NAME",
    ))
}

/// `scontrol ARGS`; a controller that does not answer stops the submission.
fn scontrol(slurm: &dyn Slurm, args: &[&str]) -> Result<String, Failure> {
    slurm.query("scontrol", args).map_err(|error| {
        Failure::new(
            Status::Unavailable,
            format!(
                "cannot ask the controller which nodes the beamtime's reservations hold \
                 (scontrol {}): {}; nothing was submitted",
                args.join(" "),
                error.reason()
            ),
            "name the reservation with --reservation NAME, or try again when Slurm answers",
        )
    })
}

/// Asks the controller for each reservation's nodes and their active features.
pub fn ask_controller(slurm: &dyn Slurm, reservations: &[String]) -> Result<Vec<Holding>, Failure> {
    let mut holdings = Vec::new();
    for name in reservations {
        let text = scontrol(slurm, &["show", "reservation", "-o", name])?;
        let record = text
            .lines()
            .find(|l| l.starts_with("ReservationName="))
            .map(parse_record)
            .unwrap_or_default();
        let mut nodes = Vec::new();
        if let Some(list) = record
            .get("Nodes")
            .filter(|n| !n.is_empty() && *n != "(null)")
        {
            for line in scontrol(slurm, &["show", "node", "-o", list])?.lines() {
                let node = parse_record(line);
                let Some(node_name) = node.get("NodeName") else {
                    continue;
                };
                let features = node
                    .get("ActiveFeatures")
                    .filter(|f| *f != "(null)")
                    .map(|f| f.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                nodes.push((node_name.clone(), features));
            }
        }
        holdings.push(Holding {
            reservation: name.clone(),
            nodes,
        });
    }
    Ok(holdings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::query::canned::Canned;

    fn holding(name: &str, nodes: &[(&str, &str)]) -> Holding {
        Holding {
            reservation: name.into(),
            nodes: nodes
                .iter()
                .map(|(n, f)| {
                    let features = f.split(',').filter(|f| !f.is_empty()).map(str::to_owned);
                    (n.to_string(), features.collect())
                })
                .collect(),
        }
    }

    fn split() -> Vec<Holding> {
        vec![
            holding("11099005", &[("n1", "cpu"), ("n2", "cpu")]),
            holding("11099005_1", &[("n3", "gpu,bigmem"), ("n4", "gpu")]),
        ]
    }

    fn wants(nodes: Option<&str>, constraint: Option<&str>) -> Wants {
        Wants {
            nodes: nodes.map(str::to_owned),
            constraint: constraint.map(str::to_owned),
        }
    }

    fn chosen(w: &Wants) -> String {
        match choose(w, &split(), "11099005") {
            Ok(choice) => choice.reservation,
            Err(failure) => panic!("{failure}"),
        }
    }

    #[test]
    fn features_and_counts_pick_the_first_reservation_that_fits() {
        assert_eq!(chosen(&wants(None, Some("gpu"))), "11099005_1");
        assert_eq!(chosen(&wants(Some("2"), Some("cpu"))), "11099005");
        assert_eq!(chosen(&wants(Some("2"), None)), "11099005");
        assert_eq!(
            chosen(&wants(Some("1-4"), Some("gpu&bigmem"))),
            "11099005_1"
        );
        assert_eq!(chosen(&wants(Some("2"), Some("bigmem|cpu"))), "11099005");
        let choice = choose(&wants(Some("2"), Some("gpu")), &split(), "11099005").unwrap();
        assert_eq!(
            choice.why,
            "(2 of its nodes match --nodes=2 --constraint=gpu: n3,n4)"
        );
    }

    #[test]
    fn nothing_fits_names_every_reservation() {
        let failed =
            choose(&wants(Some("2"), Some("gpu&bigmem")), &split(), "11099005").unwrap_err();
        assert_eq!(failed.status, Status::DataError);
        assert_eq!(
            failed.problem.what,
            "no reservation of beamtime 11099005 can satisfy --nodes=2 --constraint=gpu&bigmem \
             (11099005 has 0 matching node(s) of 2, 11099005_1 has 1 matching node(s) of 2); \
             nothing was submitted"
        );
        let failed = choose(&wants(Some("3"), None), &split(), "11099005").unwrap_err();
        assert!(
            failed.problem.what.contains("can satisfy --nodes=3 "),
            "{}",
            failed.problem.what
        );
    }

    #[test]
    fn what_bt_submit_cannot_evaluate_is_a_usage_error() {
        for c in ["[gpu*2&cpu]", "gpu&cpu|x", "gpu*2", ""] {
            let failed = choose(&wants(None, Some(c)), &split(), "1").unwrap_err();
            assert_eq!(failed.status, Status::Usage, "{c}");
        }
        let failed = choose(&wants(Some("x"), None), &split(), "1").unwrap_err();
        assert_eq!(failed.status, Status::Usage);
    }

    #[test]
    fn the_controller_names_each_reservations_nodes_and_their_features() {
        let fixture = |name: &str| {
            let path = format!(
                "{}/tests/fixtures/scontrol/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let mut slurm = Canned::default();
        let reservations = fixture("reservations.txt");
        slurm.answer(
            "scontrol show reservation -o 11099001",
            reservations.lines().next().unwrap(),
        );
        slurm.answer(
            "scontrol show node -o btnode1",
            fixture("node-idle.txt").replace("ActiveFeatures=(null)", "ActiveFeatures=gpu,bigmem"),
        );
        let holdings = ask_controller(&slurm, &["11099001".to_owned()]).unwrap();
        assert_eq!(
            holdings,
            [holding("11099001", &[("btnode1", "gpu,bigmem")])]
        );

        let failed = ask_controller(&slurm, &["11099001_1".to_owned()]).unwrap_err();
        assert_eq!(failed.status, Status::Unavailable);
        assert_eq!(
            failed.problem.what,
            "cannot ask the controller which nodes the beamtime's reservations hold (scontrol \
             show reservation -o 11099001_1): no such thing; nothing was submitted"
        );
    }
}
