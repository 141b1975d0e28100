//! The report as people read it (one line per check, a fix under each
//! failure, a verdict) and as scripts read it (JSON).

use serde_json::{json, Value};

use super::{Check, Outcome, Report, Target};

impl Report {
    /// The first line, written before any check is made: what doctor
    /// examines, as the user named it.
    pub fn heading(target: &Target) -> String {
        match target {
            Target::Id(id) => format!("bt-submit doctor: beamtime {id}\n"),
            Target::File(path) => format!("bt-submit doctor: {}\n", path.display()),
            Target::FromDirectory(dir) => {
                format!("bt-submit doctor: the beamtime of {}\n", dir.display())
            }
        }
    }

    /// Every check's lines and the verdict, as written after the heading, at
    /// once: what the tests read (`run` writes each line as its check is made).
    #[cfg(test)]
    pub fn text(&self) -> String {
        let mut out: String = self.checks.iter().map(Check::text).collect();
        out.push_str(&self.summary());
        out
    }

    /// The verdict, the last line.
    pub fn summary(&self) -> String {
        let count = |outcome| self.checks.iter().filter(|c| c.outcome == outcome).count();
        let (failed, skipped) = (count(Outcome::Fail), count(Outcome::Skip));
        let warned = count(Outcome::Warn);
        if failed == 0 && skipped == 0 && warned > 0 {
            format!(
                "all {} checks passed, {warned} with a warning for the admins: beamtime jobs \
                 can run\n",
                self.checks.len()
            )
        } else if failed == 0 && skipped == 0 {
            format!(
                "all {} checks passed: beamtime jobs can run\n",
                self.checks.len()
            )
        } else {
            format!(
                "{failed} failed, {skipped} not checked, of {} checks: a beamtime job would not \
                 run; start with the first FAIL\n",
                self.checks.len()
            )
        }
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

impl Check {
    /// One line, and the fix under a failure or a warning.
    pub fn text(&self) -> String {
        let mark = match self.outcome {
            Outcome::Pass => "ok  ",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        let mut out = format!("{mark} {:<18} {}\n", self.name, self.detail);
        if !self.fix.is_empty() && matches!(self.outcome, Outcome::Fail | Outcome::Warn) {
            out.push_str(&format!("     {:<18} fix: {}\n", "", self.fix));
        }
        out
    }
}
