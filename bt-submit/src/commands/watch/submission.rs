//! Submitting the complete candidates one at a time while the queue has room
//! (as Slurm counts this watch's jobs), and resolving a submission a crash
//! left open, so that each file makes exactly one job.

use super::*;

impl Watch<'_> {
    pub(super) fn submit_complete(&mut self) -> Result<(), Failure> {
        if self.state_full_until.is_some_and(|at| self.now() < at) {
            return Ok(());
        }
        if self.record.submitting.is_some() && !self.resolve_intent()? {
            return Ok(());
        }
        let settle = self.settle_ms();
        let now = self.now();
        // Files whose settle time is up get the look that proves it first.
        let due: Vec<String> = self
            .candidates
            .iter()
            .filter(|(_, c)| matches!(c.verdict(settle), Verdict::LookAgainAt(at) if at <= now))
            .map(|(rel, _)| rel.clone())
            .collect();
        for rel in due {
            if self.look_again(&rel, scan::Pass::Quick).is_none() {
                self.forget_gone(&rel);
            }
        }
        let complete: Vec<(String, Why)> = self
            .candidates
            .iter()
            .filter_map(|(rel, c)| match c.verdict(settle) {
                Verdict::Complete(why) => Some((rel.clone(), why)),
                Verdict::LookAgainAt(_) | Verdict::AwaitReport => None,
            })
            .filter(|(rel, _)| self.retries.get(rel).map_or(true, |r| r.at <= now))
            .filter(|(rel, _)| !self.record.failed.contains_key(rel))
            .collect();
        for (rel, why) in complete {
            if os::stop_requested().is_some() || !self.room_for_one() {
                break;
            }
            self.submit(&rel, why)?;
            if self.record.submitting.is_some() && !self.resolve_intent()? {
                break;
            }
        }
        Ok(())
    }

    /// Whether one more job stays within `--max-in-flight`, asking Slurm when
    /// what it said last (plus the jobs submitted since) says no: jobs only
    /// ever leave the queue, so that sum is never too low.
    pub(super) fn room_for_one(&mut self) -> bool {
        let Some(max) = self.options.max_in_flight else {
            return true;
        };
        if self.in_flight.counted + self.in_flight.submitted_since < max {
            return true;
        }
        if !self.count_in_flight() {
            return false;
        }
        let room = self.in_flight.counted < max;
        if !room && !self.in_flight.waiting_told {
            self.say(LogEvent::WaitingForRoom {
                in_flight: self.in_flight.counted,
                max,
            });
        }
        self.in_flight.waiting_told = !room;
        room
    }

    /// Asks Slurm how many of this watch's jobs are still pending or running,
    /// at most once per poll interval. Whether the count is Slurm's answer.
    pub(super) fn count_in_flight(&mut self) -> bool {
        let now = self.now();
        let poll_ms = self.options.poll_interval.as_millis() as u64;
        if self.in_flight.asked_at.is_some_and(|at| now < at + poll_ms) {
            return false;
        }
        self.in_flight.asked_at = Some(now);
        match self.plan.submitter.queued() {
            Ok(queued) => {
                // Slurm's answer, narrowed to the jobs this watch submitted.
                let ours: HashSet<u64> = self.record.submitted.values().map(|s| s.job).collect();
                self.in_flight.counted = queued.iter().filter(|id| ours.contains(id)).count();
                self.in_flight.submitted_since = 0;
                self.in_flight.unanswered.over();
                true
            }
            Err(error) => {
                if self
                    .in_flight
                    .unanswered
                    .is_news(error.problem.what.clone())
                {
                    self.say(LogEvent::CannotCountJobs {
                        error: error.problem.what,
                    });
                }
                false
            }
        }
    }

    pub(super) fn submit(&mut self, rel: &str, why: Why) -> Result<(), Failure> {
        let now = self.now();
        // One last look right before sbatch, at every frame of a scan: a
        // file (a frame) changed since is not complete.
        let Some(look) = self.look_again(rel, scan::Pass::Whole) else {
            self.forget_gone(rel);
            return Ok(());
        };
        let settle = self.settle_ms();
        if let Some(candidate) = self.candidates.get(rel) {
            if !matches!(candidate.verdict(settle), Verdict::Complete(_)) {
                return Ok(());
            }
        }
        let (begin, marker) = self.record.begin(rel);
        if !self.recorded(begin)? {
            return Ok(());
        }
        let mut args = vec![OsString::from(format!("--comment={marker}"))];
        args.extend(arguments_for(
            &self.plan.template,
            &self.plan.on_nodes.folder,
            rel,
        ));
        match self.plan.submitter.sbatch(&args) {
            Ok(submitted) => {
                let job = submitted.job_id;
                let finish = Change::Finish {
                    file: rel.to_owned(),
                    job,
                    look,
                };
                if !self.recorded(finish)? {
                    // The submission stays under way in the state: once
                    // there is room, Slurm is asked for its job by comment.
                    self.say(LogEvent::SubmittedNotRecorded { file: rel, job });
                    return Ok(());
                }
                self.candidates.remove(rel);
                self.retries.remove(rel);
                self.refused_for_good = None;
                self.submitted += 1;
                self.in_flight.submitted_since += 1;
                self.say(LogEvent::Submitted {
                    file: rel,
                    job,
                    node: submitted.node.as_deref(),
                    why: why.to_string(),
                    attempt: self.record.attempts(rel),
                });
            }
            Err(SubmitError::AnswerLost(failure)) => {
                // No refusal: the submission under way (recorded before
                // sbatch) is looked up in Slurm at once, and either recorded
                // with its job or submitted again.
                self.resolve_at = 0;
                self.say(LogEvent::AnswerLost {
                    file: rel,
                    error: &failure.problem.what,
                });
            }
            Err(error) => {
                let refusal = error.refusal();
                let reason = match error {
                    SubmitError::Refused(said_no) => format!(
                        "sbatch failed (exit status {}): {}",
                        said_no.exit_byte(),
                        said_no.reason()
                    ),
                    SubmitError::Failed(failure) | SubmitError::AnswerLost(failure) => {
                        failure.problem.what
                    }
                };
                let attempt = self.record.attempts(rel) + 1;
                self.refused(rel, refusal, &reason, attempt, now)?;
                self.resolve_at = 0;
                // Counted across restarts, for `watch status`.
                let refused = Change::Refused {
                    file: rel.to_owned(),
                    attempts: self.record.refused.get(rel).map_or(0, |r| r.attempts) + 1,
                    error: reason,
                };
                // On a full disk the count goes unrecorded, and nothing else.
                self.recorded(refused)?;
            }
        }
        Ok(())
    }

    /// A submission whose outcome is not known (sbatch failed, or the watch
    /// died during it): asks Slurm for a job with its comment. `Ok(false)`
    /// while Slurm cannot be asked; nothing is submitted until it can.
    pub(super) fn resolve_intent(&mut self) -> Result<bool, Failure> {
        let Some(intent) = self.record.submitting.clone() else {
            return Ok(true);
        };
        let now = self.now();
        if now < self.resolve_at {
            return Ok(false);
        }
        match self.plan.submitter.with_comment(&intent.marker) {
            Err(error) => {
                self.resolve_at = now + self.options.poll_interval.as_millis() as u64;
                // Asked again at every poll: said when it begins or changes.
                let situation = format!("{}\n{}", intent.file, error.problem.what);
                if self.unresolved_told.is_news(situation) {
                    self.say(LogEvent::Unresolved {
                        file: &intent.file,
                        error: error.problem.what,
                    });
                }
                Ok(false)
            }
            Ok(jobs) => {
                self.unresolved_told.over();
                let Some(job) = jobs.first().copied() else {
                    return self.recorded(Change::Abandon { file: intent.file });
                };
                let look =
                    self.look_again(&intent.file, scan::Pass::Whole)
                        .unwrap_or(complete::Look {
                            size: 0,
                            mtime_ns: 0,
                            files: 0,
                        });
                let finish = Change::Finish {
                    file: intent.file.clone(),
                    job,
                    look,
                };
                if !self.recorded(finish)? {
                    return Ok(false);
                }
                self.candidates.remove(&intent.file);
                self.retries.remove(&intent.file);
                self.say(LogEvent::Submitted {
                    file: &intent.file,
                    job,
                    node: None,
                    why: "its submission was interrupted; Slurm has the job".to_owned(),
                    attempt: self.record.attempts(&intent.file),
                });
                Ok(true)
            }
        }
    }
}
