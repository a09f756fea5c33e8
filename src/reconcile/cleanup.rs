//! Cleanup, when the resource is deleted: the finalizer is released only when the job is known
//! to be ended, stopped, gone, not ours, or retained. While AWS cannot answer, deletion waits
//! with a condition saying why.

use super::act::{self, observation, owns};
use super::observe::{self, JobRef, Progress};
use super::status::{Observation, Phase, Problem};
use super::{Context, Error, FINALIZER};
use crate::accounts::Scope;
use crate::api::{DeletionPolicy, ProcessingJob, ProcessingJobStatus};
use crate::aws::{AwsError, ErrorClass};
use crate::job::{JobState, JobStatus, RETAINED_UID_PREFIX, TAG_RETAINED, TAG_UID};

/// An Event to publish: (reason, note).
pub type Note = (&'static str, String);

/// What deleting the resource needs now.
#[derive(Debug)]
pub enum Cleanup {
    /// The finalizer can go.
    Release { note: Option<Note> },
    /// Not yet: report `observation`, and retry after `until` through the backoff.
    Wait {
        observation: Box<Observation>,
        note: Option<Note>,
        until: Error,
    },
}

/// What is known of the job being deleted.
struct Known {
    at: JobRef,
    /// `None` while only the write-ahead is recorded.
    last: Option<JobState>,
    adopted: bool,
}

/// Tags the job as retained. A job may carry 50 tags: when SageMaker refuses the
/// [`TAG_RETAINED`] tag (a job created before the CRD left room for it, with 47 user tags), the
/// mark goes into the value of the UID tag instead, which adds no tag — either way the orphan
/// sweep never takes a retained job for an orphan (`job::is_retained`).
async fn mark_retained(ctx: &Context, scope: &Scope, arn: &str, job: &ProcessingJob) -> Result<(), AwsError> {
    match ctx.jobs.add_tag(scope, arn, (TAG_RETAINED, "true")).await {
        Err(e) if e.class == ErrorClass::Invalid => {
            tracing::warn!(arn, error = %e, "SageMaker refused the retained tag; marking the UID tag instead");
            let uid = job.metadata.uid.as_deref().unwrap_or_default();
            let marked = format!("{RETAINED_UID_PREFIX}{uid}");
            ctx.jobs.add_tag(scope, arn, (TAG_UID, &marked)).await
        }
        other => other,
    }
}

/// Decides, and stops the job when it must be stopped.
pub async fn cleanup(ctx: &Context, job: &ProcessingJob, progress: Progress) -> Cleanup {
    let known = match progress {
        // Nothing of ours can exist: never created, refused, or the name is another job's.
        Progress::New | Progress::Blocked | Progress::Refused => return Cleanup::Release { note: None },
        // Queued: a create refused for quota created nothing; its place in line goes.
        Progress::Queued => {
            act::leave_queue(ctx, job);
            return Cleanup::Release { note: None };
        }
        Progress::Ended { at } => return released(ctx, &at, None),
        Progress::Creating(at) => Known {
            at,
            last: None,
            adopted: false,
        },
        Progress::Active { at, last, adopted } => Known {
            at,
            last: Some(*last),
            adopted,
        },
    };
    let at = known.at.clone();
    // Only the account the job was created in is asked or told anything.
    let scope = match act::reach(ctx, job, &at).await {
        Ok(scope) => scope,
        Err(unreachable) => {
            let act::Unreachable(problem, next) = *unreachable;
            let until = match next {
                act::Next::Backoff(e) => e,
                act::Next::Requeue(_) => Error::AccountUnreachable(problem.message.clone()),
            };
            let problem = Problem {
                message: format!("deletion waits: {}", problem.message),
                ..problem
            };
            return wait(job, known, problem, None, until);
        }
    };
    if job.deletion_policy() == DeletionPolicy::Retain {
        // Only the write-ahead is recorded: whether a job exists decides whether one is retained.
        let last = match &known.last {
            Some(last) => Some(last.clone()),
            None => match ctx.jobs.describe(&scope, &at.name).await {
                Ok(state) => Some(state),
                Err(e) if e.class == ErrorClass::NotFound => return released(ctx, &at, None),
                Err(_) => None,
            },
        };
        let mut note = match &last {
            Some(_) => format!("deletionPolicy Retain: SageMaker job {} is left as it is", at.name),
            None => format!(
                "deletionPolicy Retain: SageMaker job {}, if its create reached SageMaker, is left as it is",
                at.name
            ),
        };
        // Marked, so that the orphan sweep knows it was left running on purpose.
        if let Some(arn) = last.as_ref().and_then(|l| l.arn.as_deref()) {
            if let Err(e) = mark_retained(ctx, &scope, arn, job).await {
                note.push_str(&format!(
                    " (it could not be marked as retained: {e}; the orphan sweep will report it)"
                ));
            }
        }
        return released(ctx, &at, Some(("JobRetained", note)));
    }
    let state = match ctx.jobs.describe(&scope, &at.name).await {
        Ok(s) => s,
        Err(e) if e.class == ErrorClass::NotFound => return released(ctx, &at, None),
        Err(e) => return blocked(job, known, "cannot tell whether the job still runs", e),
    };
    let known = Known {
        last: Some(state.clone()),
        ..known
    };
    match state.status {
        JobStatus::InProgress => {
            let tags = match state.arn.as_deref() {
                Some(arn) => match ctx.jobs.tags(&scope, arn).await {
                    Ok(t) => t,
                    Err(e) => return blocked(job, known, "cannot read the job's owner", e),
                },
                None => Vec::new(),
            };
            if !owns(job, &tags) {
                let note = format!(
                    "SageMaker job {} does not carry this resource's UID: it is left running",
                    at.name
                );
                return released(ctx, &at, Some(("JobNotOwned", note)));
            }
            match ctx.jobs.stop(&scope, &at.name).await {
                Ok(()) => {
                    let note = format!(
                        "stopping SageMaker job {} because the resource is being deleted",
                        at.name
                    );
                    let stopping = JobState {
                        status: JobStatus::Stopping,
                        ..state
                    };
                    stopping_wait(
                        job,
                        Known {
                            last: Some(stopping),
                            ..known
                        },
                        Some(("JobStopping", note)),
                    )
                }
                // It ended between Describe and Stop, or vanished: look again next time.
                Err(e) if matches!(e.class, ErrorClass::Invalid | ErrorClass::NotFound) => {
                    stopping_wait(job, known, None)
                }
                Err(e) => blocked(job, known, "cannot stop the job", e),
            }
        }
        JobStatus::Stopping => stopping_wait(job, known, None),
        JobStatus::Completed | JobStatus::Failed | JobStatus::Stopped => {
            // An active job ended (stopped for this deletion, most often): capacity is free.
            act::capacity_freed(ctx, job, &at.key());
            released(ctx, &at, None)
        }
    }
}

fn released(ctx: &Context, at: &JobRef, note: Option<Note>) -> Cleanup {
    ctx.tracker.untrack(&at.key(), &at.name);
    Cleanup::Release { note }
}

/// The job is stopping: report it, and wait for it to end.
fn stopping_wait(job: &ProcessingJob, known: Known, note: Option<Note>) -> Cleanup {
    let name = known.at.name.clone();
    let problem = Problem {
        reason: "Deleting".into(),
        message: format!("waiting for SageMaker job {name} to stop before the resource is released"),
    };
    wait(job, known, problem, note, Error::WaitingForStop(name))
}

/// AWS could not answer: the resource stays, saying why, and is retried with backoff.
fn blocked(job: &ProcessingJob, known: Known, doing: &str, e: AwsError) -> Cleanup {
    let problem = Problem {
        reason: "DeletionBlocked".into(),
        message: format!(
            "deletion waits: {doing} ({}): {e}; the resource is released once AWS answers",
            e.class.reason()
        ),
    };
    wait(job, known, problem, None, Error::Aws(e))
}

fn wait(job: &ProcessingJob, known: Known, problem: Problem, note: Option<Note>, until: Error) -> Cleanup {
    let phase = match known.last {
        Some(last) => Phase::Submitted {
            job: Box::new(last),
            adopted: known.adopted,
            problem: Some(problem),
        },
        // Only the write-ahead is known: the job may or may not exist.
        None => Phase::Creating { problem: Some(problem) },
    };
    Cleanup::Wait {
        observation: Box::new(observation(job, Some(&known.at), None, phase)),
        note,
        until,
    }
}

/// What deleting an object whose spec cannot be read (written before a schema tightening, or by
/// hand) needs. Its status and the write-ahead in its metadata decide, as they are what records a
/// job.
#[derive(Debug, PartialEq)]
pub enum Malformed {
    /// No job of this object runs: the finalizer can go.
    Release,
    /// A job may still run. Without a spec the deletion policy is unknown, so the controller
    /// neither stops the job nor forgets it: it says how to get out, and looks again later.
    Hold { message: String },
}

/// Decides for a malformed object being deleted. `status`: its status, or why that cannot be
/// read either; `pin`: the job its write-ahead recorded in the metadata.
pub async fn malformed(
    ctx: &Context,
    status: Result<Option<ProcessingJobStatus>, String>,
    pin: Option<JobRef>,
    generation: Option<i64>,
) -> Malformed {
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            return Malformed::Hold {
                message: format!(
                    "its status cannot be read either ({e}), so the controller cannot tell whether a SageMaker job runs for it: once you know none does (or have stopped it), remove the finalizer {FINALIZER} by hand"
                ),
            }
        }
    };
    let at = match observe::progress_of(status.as_ref(), pin, generation, || None) {
        Progress::New | Progress::Blocked | Progress::Queued | Progress::Refused => return Malformed::Release,
        Progress::Ended { at } => {
            ctx.tracker.untrack(&at.key(), &at.name);
            return Malformed::Release;
        }
        Progress::Creating(at) | Progress::Active { at, .. } => at,
    };
    let how_out = format!(
        "stop it yourself (aws sagemaker stop-processing-job --processing-job-name {} --region {}) and the controller releases the resource once SageMaker reports it ended",
        at.name, at.region
    );
    // Without a spec there is no namespace mapping to prefer: the account map reaches the job's
    // account, or nothing is asked.
    let scope = match ctx.accounts.pinned("", at.account.as_deref(), &at.region) {
        Ok(scope) => scope,
        Err(e) => {
            return Malformed::Hold {
                message: format!("cannot reach the job's account: {e}; if it runs, {how_out}"),
            }
        }
    };
    if let Err(e) = ctx.jobs.sign_in(&scope).await {
        return Malformed::Hold {
            message: format!("cannot reach the job's account: {e}; if it runs, {how_out}"),
        };
    }
    match ctx.jobs.describe(&scope, &at.name).await {
        Err(e) if e.class == ErrorClass::NotFound => Malformed::Release,
        Ok(state) if state.status.is_terminal() => {
            ctx.tracker.untrack(&at.key(), &at.name);
            Malformed::Release
        }
        Ok(state) => Malformed::Hold {
            message: format!(
                "SageMaker job {} is {} and the spec that says whether to stop or retain it cannot be read: {how_out}",
                at.name,
                state.status.as_str()
            ),
        },
        Err(e) => Malformed::Hold {
            message: format!(
                "cannot tell whether SageMaker job {} still runs ({}): {e}; if it does, {how_out}",
                at.name,
                e.class.reason()
            ),
        },
    }
}
