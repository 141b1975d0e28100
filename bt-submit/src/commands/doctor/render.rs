//! The report as people read it (one line per check, a fix under each
//! failure, a verdict) and as scripts read it (JSON).

use serde_json::{json, Value};

use super::{Outcome, Report};

impl Report {
    pub fn text(&self) -> String {
        let mut out = match &self.beamtime {
            Some(id) => format!("bt-submit doctor: beamtime {id}\n"),
            None => "bt-submit doctor: no beamtime\n".to_owned(),
        };
        for check in &self.checks {
            let mark = match check.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Warn => "warn",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            out.push_str(&format!("{mark} {:<18} {}\n", check.name, check.detail));
            if !check.fix.is_empty() && matches!(check.outcome, Outcome::Fail | Outcome::Warn) {
                out.push_str(&format!("     {:<18} fix: {}\n", "", check.fix));
            }
        }
        let count = |outcome| self.checks.iter().filter(|c| c.outcome == outcome).count();
        let (failed, skipped) = (count(Outcome::Fail), count(Outcome::Skip));
        let warned = count(Outcome::Warn);
        if failed == 0 && skipped == 0 && warned > 0 {
            out.push_str(&format!(
                "all {} checks passed, {warned} with a warning for the admins: beamtime jobs \
                 can run\n",
                self.checks.len()
            ));
        } else if failed == 0 && skipped == 0 {
            out.push_str(&format!(
                "all {} checks passed: beamtime jobs can run\n",
                self.checks.len()
            ));
        } else {
            out.push_str(&format!(
                "{failed} failed, {skipped} not checked, of {} checks: a beamtime job would not \
                 run; start with the first FAIL\n",
                self.checks.len()
            ));
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "beamtime": self.beamtime,
            "ok": self.all_passed(),
            "checks": self.checks.iter().map(|c| json!({
                "check": c.name,
                "result": result_name(c.outcome),
                "detail": c.detail,
                "fix": c.fix,
            })).collect::<Vec<_>>(),
        })
    }
}

fn result_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Warn => "warn",
        Outcome::Fail => "fail",
        Outcome::Skip => "skip",
    }
}
