//! Following the beamtime: the metadata is chosen and read again now and
//! then (and on SIGHUP), and when it changed the plan — the reservation, the
//! partition, with `--remote` the nodes — is made again, so that a watch
//! started in pre-start sends the files after the start where the online
//! beamtime is, and a reservation renamed by the facility is followed.
//! Refusals are told apart here too: one that no retry can fix marks its
//! file failed after a few tries, and a watch whose every submission is
//! refused so for a while stops, loudly and with a non-zero status.

use std::ffi::OsString;
use std::time::Duration;

use beamtime::metadata::Metadata;

use super::*;
use crate::slurm::refusal::Refusal;

/// How often the metadata is read again without a SIGHUP.
pub const REREAD_EVERY: Duration = Duration::from_secs(10);

/// Permanent refusals of one file before it is marked failed (and not tried
/// again until the plan changes).
pub const PERMANENT_REFUSALS_TO_FAIL: u32 = 3;

/// Where and how the jobs are submitted, as made from one reading of the metadata.
pub struct Plan {
    pub submitter: Host,
    /// sbatch's arguments as bt-submit plans them, placeholders still in place.
    pub template: Vec<OsString>,
    /// Where the jobs see the watched folder.
    pub on_nodes: OnNodes,
    /// What the log says of it: reservation, partition, nodes.
    pub summary: String,
}

/// The beamtime as the watch's command line names it: the one metadata-file
/// choice of bt-submit, and the one planner (command.rs implements it).
pub trait Beamtime {
    fn metadata(&self) -> Result<Metadata, Failure>;
    fn plan(&self, metadata: &Metadata) -> Result<Plan, Failure>;
}

/// Since when every submission was refused for good (the watch's clock, ms),
/// and the last refusal's words.
pub(super) struct RefusedForGood {
    pub since: u64,
    pub last: String,
}

impl Watch<'_> {
    /// Reads the metadata again when due or asked (SIGHUP) and, when it
    /// changed, makes the plan again; a metadata or plan that cannot be had
    /// now keeps the plan there is, and is said once per change.
    pub(super) fn follow_beamtime(&mut self, now: u64) -> Result<(), Failure> {
        let asked = os::reread_requested();
        if !asked && now < self.follow.next_read {
            return Ok(());
        }
        self.follow.next_read = now + REREAD_EVERY.as_millis() as u64;
        if asked {
            self.say(LogEvent::RereadRequested);
        }
        let metadata = match self.beamtime.metadata() {
            Ok(metadata) => metadata,
            Err(failure) => {
                let error = failure.problem.to_string();
                if self.follow.told.is_news(error.clone()) {
                    self.say(LogEvent::MetadataUnreadable {
                        error,
                        plan: &self.plan.summary,
                    });
                }
                return Ok(());
            }
        };
        if metadata == self.follow.metadata {
            self.follow.told.over();
            return Ok(());
        }
        match self.beamtime.plan(&metadata) {
            Ok(plan) => {
                self.say(LogEvent::PlanChanged {
                    old: &self.plan.summary,
                    new: &plan.summary,
                });
                self.follow.metadata = metadata;
                self.follow.told.over();
                self.plan = plan;
                self.try_failed_again()?;
            }
            Err(failure) => {
                let error = failure.problem.to_string();
                if self.follow.told.is_news(error.clone()) {
                    self.say(LogEvent::NoPlan {
                        error,
                        plan: &self.plan.summary,
                    });
                }
            }
        }
        Ok(())
    }

    /// A new plan may take what the old one refused: the files failed with
    /// another plan and waiting retries are tried at once. Also at the start,
    /// for the files a watch of another plan failed.
    pub(super) fn try_failed_again(&mut self) -> Result<(), Failure> {
        let plan = &self.plan.summary;
        let again: Vec<String> = (self.record.failed.iter())
            .filter(|(_, failed)| &failed.plan != plan)
            .map(|(file, _)| file.clone())
            .collect();
        if !again.is_empty() {
            self.say(LogEvent::FailedTriedAgain {
                each: self.options.each,
                count: again.len(),
            });
        }
        for file in again {
            // On a full disk the file stays failed with its old plan, and
            // the next start (its plan is not that one) tries it again.
            if !self.recorded(Change::Retry { file })? {
                break;
            }
        }
        self.retries.clear();
        self.refused_for_good = None;
        Ok(())
    }

    /// Counts a refusal of `rel`, its `attempt`-th across restarts; returns
    /// whether the file is now failed (recorded in the state, so that it
    /// stays failed across a restart).
    pub(super) fn refused(
        &mut self,
        rel: &str,
        refusal: Refusal,
        reason: &str,
        attempt: u64,
        now: u64,
    ) -> Result<bool, Failure> {
        let retry = self.retries.entry(rel.to_owned()).or_insert(Retry {
            failures: 0,
            permanent: 0,
            at: 0,
        });
        retry.failures += 1;
        match refusal {
            Refusal::Transient => {
                retry.permanent = 0;
                self.refused_for_good = None;
            }
            Refusal::Permanent => {
                retry.permanent += 1;
                if self.refused_for_good.is_none() {
                    self.refused_for_good = Some(RefusedForGood {
                        since: now,
                        last: String::new(),
                    });
                }
                if let Some(refused) = &mut self.refused_for_good {
                    refused.last = reason.to_owned();
                }
            }
        }
        let delay = retry_delay(retry.failures);
        retry.at = now + delay.as_millis() as u64;
        let (failures, permanent) = (retry.failures, retry.permanent);
        if permanent >= PERMANENT_REFUSALS_TO_FAIL {
            let fail = Change::Fail {
                file: rel.to_owned(),
                reason: reason.to_owned(),
                plan: self.plan.summary.clone(),
            };
            // On a full disk it is not failed yet: tried again after the delay.
            if self.recorded(fail)? {
                self.retries.remove(rel);
                self.say(LogEvent::Failed {
                    file: rel,
                    error: reason,
                    refusals: permanent,
                });
                return Ok(true);
            }
        }
        self.say(LogEvent::Refused {
            file: rel,
            error: reason,
            permanent: refusal == Refusal::Permanent,
            retry_in: delay,
            failures,
            attempt,
        });
        Ok(false)
    }

    /// Whether every submission has been refused for good for longer than
    /// `--give-up-after`: the watch then stops with a non-zero status, so that
    /// a supervisor alerts someone instead of the watch retrying in silence.
    pub(super) fn given_up(&self, now: u64) -> Option<Failure> {
        let refused = self.refused_for_good.as_ref()?;
        let limit = self.options.give_up_after.as_millis() as u64;
        (now.saturating_sub(refused.since) >= limit).then(|| {
            Failure::new(
                Status::Unavailable,
                format!(
                    "every submission for {} s was refused in a way no retry can fix \
                     (last: {}); {} {} failed; the watch stops (plan: {})",
                    secs(self.options.give_up_after),
                    refused.last,
                    self.record.failed.len(),
                    self.options.each.plural(),
                    self.plan.summary
                ),
                "check the beamtime with 'bt-submit doctor' (has it ended? did its reservation \
                 change?), then start the watch again: it takes up where it stopped and tries \
                 the failed files again if its plan changed; 'bt-submit watch resubmit' first \
                 tries them again with the same plan",
            )
        })
    }
}

/// What the watch knows of the metadata it planned from.
pub(super) struct Following {
    pub metadata: Metadata,
    pub next_read: u64,
    /// The last problem said, so that it is said once, not every 10 s.
    pub told: Told,
}
