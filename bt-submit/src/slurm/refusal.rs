//! Whether a refused submission can succeed by trying again: the one place
//! that reads sbatch's refusal for that, so that the watch (and its state)
//! tell "wait and retry" from "no retry can fix this".

use crate::failure::Status;
use crate::slurm::host::SubmitError;

/// What trying the same submission again can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing, until someone changes something: the reservation, partition,
    /// account or QOS is not (or no longer) valid, the beamtime plugin refused
    /// the job on what the metadata says. (A script sbatch cannot read is
    /// transient: its owner fixes it and the next try passes.)
    Permanent,
    /// Perhaps: the controller is down or busy, a limit on queued jobs is
    /// reached, the connection broke — or Slurm said something not known here,
    /// which is never taken for permanent.
    Transient,
}

/// Slurm's messages (slurm_errno.c's texts, the same from 22.05 to 25.11) for
/// a submission no retry can fix.
const PERMANENT: &[&str] = &[
    "Invalid partition name specified",
    "Invalid account or account/partition combination specified",
    "Requested reservation is invalid",
    "Access denied to requested reservation",
    "Invalid qos specification",
    "not permitted to use this partition",
    "Requested node configuration is not available",
    "Invalid node name specified",
    "Requested time limit is invalid",
    "Node count specification invalid",
    "Invalid user id",
    "Invalid job array specification",
];

/// Messages for a state that passes (checked first: a message naming both is
/// taken as passing).
const TRANSIENT: &[&str] = &[
    "Unable to contact slurm controller",
    "Socket timed out",
    "temporarily unable to accept job",
    "Zero Bytes were transmitted or received",
    "Communication connection failure",
    "Job violates accounting/QOS policy",
];

/// The plugin's prefix on a refusal it makes before the job exists
/// (dispatch.rs's report_error); its verdicts come from the metadata and the
/// site's policy, which the watch reads again when they change.
const PLUGIN_REFUSAL: &str = "spank-beamtime:";

/// Reads what sbatch printed on stderr when it refused a job.
pub fn classify_refusal(stderr: &str) -> Refusal {
    let says = |texts: &[&str]| {
        texts
            .iter()
            .any(|text| stderr.to_lowercase().contains(&text.to_lowercase()))
    };
    if says(TRANSIENT) {
        Refusal::Transient
    } else if says(PERMANENT) || stderr.contains(PLUGIN_REFUSAL) {
        Refusal::Permanent
    } else {
        Refusal::Transient
    }
}

impl SubmitError {
    /// Whether trying again can help: sbatch's refusal as [`classify_refusal`]
    /// reads it; a submission that did not reach sbatch is permanent only when
    /// a person must act first (ssh's host key or key refused, sbatch missing
    /// or not runnable), else transient (the node or the network is down); one
    /// whose answer was lost (the connection broke) is transient: no one said no.
    pub fn refusal(&self) -> Refusal {
        match self {
            SubmitError::Refused(said_no) => classify_refusal(said_no.stderr()),
            SubmitError::AnswerLost(_) => Refusal::Transient,
            SubmitError::Failed(failure) => match failure.status {
                Status::NoPermission | Status::NotFound | Status::CannotExecute => {
                    Refusal::Permanent
                }
                _ => Refusal::Transient,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Failure;
    use crate::slurm::error::SlurmError;

    fn sbatch_said(message: &str) -> String {
        format!("sbatch: error: Batch job submission failed: {message}\n")
    }

    #[test]
    fn an_invalid_reservation_partition_or_account_is_permanent() {
        for message in [
            "Requested reservation is invalid",
            "Invalid partition name specified",
            "Invalid account or account/partition combination specified",
            "Access denied to requested reservation",
            "Invalid qos specification",
        ] {
            assert_eq!(
                classify_refusal(&sbatch_said(message)),
                Refusal::Permanent,
                "{message}"
            );
        }
    }

    #[test]
    fn the_plugins_refusal_is_permanent() {
        let stderr = "sbatch: error: spank-beamtime: beamtime 11012345 has no online analysis \
                      resources (yet). Ask the cluster's administrators\n\
                      sbatch: error: spank_beamtime.so: init_post_opt() failed with rc=-1\n";
        assert_eq!(classify_refusal(stderr), Refusal::Permanent);
    }

    #[test]
    fn an_unreachable_or_busy_controller_is_transient() {
        for stderr in [
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n".to_owned(),
            sbatch_said("Socket timed out on send/recv operation"),
            "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying\n".to_owned(),
            sbatch_said("Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)"),
        ] {
            assert_eq!(classify_refusal(&stderr), Refusal::Transient, "{stderr}");
        }
    }

    #[test]
    fn a_script_sbatch_cannot_read_is_transient_its_owner_fixes_it() {
        assert_eq!(
            classify_refusal("sbatch: error: Unable to open file /home/u/analyse.sh\n"),
            Refusal::Transient
        );
    }

    #[test]
    fn a_message_not_known_here_is_never_taken_for_permanent() {
        assert_eq!(classify_refusal(""), Refusal::Transient);
        assert_eq!(
            classify_refusal(&sbatch_said("Something new in a later release")),
            Refusal::Transient
        );
    }

    #[test]
    fn a_submission_that_did_not_reach_sbatch_is_permanent_only_when_a_person_must_act() {
        let failed = |status| SubmitError::Failed(Failure::new(status, "what", "fix"));
        assert_eq!(failed(Status::NoPermission).refusal(), Refusal::Permanent);
        assert_eq!(failed(Status::NotFound).refusal(), Refusal::Permanent);
        assert_eq!(failed(Status::NoHost).refusal(), Refusal::Transient);
        assert_eq!(failed(Status::IoError).refusal(), Refusal::Transient);
        let output = std::process::Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
            stdout: Vec::new(),
            stderr: sbatch_said("Requested reservation is invalid").into_bytes(),
        };
        let refused = SubmitError::Refused(SlurmError::failed("sbatch".to_owned(), &output));
        assert_eq!(refused.refusal(), Refusal::Permanent);
    }

    #[test]
    fn a_submission_whose_answer_was_lost_is_transient_whatever_its_status() {
        // The status bt-submit --remote exits with ("cannot tell", 126) is the one a
        // sbatch that cannot be run gets, which is permanent: the kind decides.
        let lost = SubmitError::AnswerLost(Failure::new(Status::CannotExecute, "what", "fix"));
        assert_eq!(lost.refusal(), Refusal::Transient);
    }
}
