//! Status computation, pure: from what reconcile observed to the desired `status`, with kstatus
//! conditions, and the Events a transition deserves.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::accounts::{ACCOUNT_NOT_MAPPED, ASSUME_ROLE_FAILED};
use crate::api::{Diagnosis, Finding, JobPhase, NetworkStatus, ProcessingJobStatus, Severity, ValidationMode};
use crate::job::{JobState, JobStatus};
use crate::partition::Partition;

pub const NETWORK_VALIDATED: &str = "NetworkValidated";
pub const SUBMITTED: &str = "Submitted";
pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Reasons of a queued resource: SageMaker refused the create for its quota, or a cap on active
/// jobs holds it.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
pub const ACTIVE_JOB_LIMIT: &str = "ActiveJobLimit";

/// The result of the network validation step.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkOutcome {
    /// No `vpcConfig`: nothing to validate.
    NoVpcConfig,
    /// `networkValidation.mode: Skip`.
    Skipped,
    /// Validated (in Enforce or Warn mode).
    Validated {
        mode: ValidationMode,
        vpc_id: Option<String>,
        findings: Vec<Finding>,
    },
}

impl NetworkOutcome {
    pub fn error_codes(&self) -> Vec<&str> {
        match self {
            NetworkOutcome::Validated { findings, .. } => {
                let mut codes: Vec<&str> = findings
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .map(|f| f.code.as_str())
                    .collect();
                codes.dedup();
                codes
            }
            _ => Vec::new(),
        }
    }

    /// Whether the job may be created.
    pub fn allows_create(&self) -> bool {
        match self {
            NetworkOutcome::Validated {
                mode: ValidationMode::Enforce,
                ..
            } => self.error_codes().is_empty(),
            _ => true,
        }
    }
}

/// Where the resource stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// The network has Error findings in Enforce mode: the job is not created.
    NetworkInvalid,
    /// The namespace's tenant guard refuses something the job uses.
    NotAllowed { message: String },
    /// Not created yet because of a problem that may go away (reason, message).
    Waiting { reason: String, message: String },
    /// Not created yet: waiting in line for capacity, SageMaker's quota (`QuotaExceeded`) or a
    /// cap on active jobs (`ActiveJobLimit`). Nothing exists in SageMaker.
    Queued { reason: &'static str, message: String },
    /// SageMaker refused the request (ValidationException).
    InvalidSpec { message: String },
    /// The job name belongs to a job this resource did not create.
    NameConflict { message: String },
    /// The name and region are recorded; the job is being created, or may have been (`problem`
    /// says why the controller cannot tell yet).
    Creating { problem: Option<Problem> },
    /// The job exists; `job` is its last known state (`problem` says why it may be stale).
    Submitted {
        job: Box<JobState>,
        adopted: bool,
        problem: Option<Problem>,
    },
}

impl Phase {
    /// What the resource records about its progress (read back by `observe`).
    pub fn recorded(&self) -> JobPhase {
        match self {
            Phase::NetworkInvalid | Phase::NotAllowed { .. } => JobPhase::Blocked,
            Phase::Waiting { .. } => JobPhase::Pending,
            Phase::Queued { .. } => JobPhase::Queued,
            Phase::InvalidSpec { .. } | Phase::NameConflict { .. } => JobPhase::Refused,
            Phase::Creating { .. } => JobPhase::Creating,
            Phase::Submitted { adopted: true, .. } => JobPhase::Adopted,
            Phase::Submitted { adopted: false, .. } => JobPhase::Created,
        }
    }
}

/// An AWS problem reported beside what is known of the job, never instead of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Stable reason (`AwsCredentialsError`, `DeletionBlocked`, ...).
    pub reason: String,
    pub message: String,
}

/// What reconcile observed, to be written to status.
#[derive(Debug, Clone)]
pub struct Observation {
    pub generation: Option<i64>,
    pub job_name: Option<String>,
    pub region: Option<String>,
    /// The account, when not the controller's own.
    pub account: Option<String>,
    pub network: Option<NetworkOutcome>,
    pub phase: Phase,
    /// What was learnt when the job was seen ending Failed: set by that reconcile only.
    pub failure: Option<FailureReport>,
}

/// A failed job looked into, once, when its failure was first seen.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureReport {
    /// Set when the failure matched a documented pattern.
    pub diagnosis: Option<Diagnosis>,
    /// The last log lines, or why they could not be read.
    pub log_tail: Option<String>,
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The JobFailed Event's note: SageMaker's reason, then as many of the last log lines as fit in
/// an Event (the API server refuses notes over 1 KiB).
fn failed_note(reason: &str, tail: Option<&str>) -> String {
    let reason = truncate(reason, 400);
    match tail {
        Some(tail) => {
            let room = 900usize.saturating_sub(reason.len() + 20);
            format!("{reason}\nlast log lines:\n{}", super::diagnosis::keep_end(tail, room))
        }
        None => reason,
    }
}

/// The CloudWatch Logs console link for the job's log streams, on the console of the region's
/// partition (the China and GovCloud regions have consoles of their own).
pub fn logs_url(region: &str, job_name: &str) -> String {
    format!(
        "{}#logsV2:log-groups/log-group/$252Faws$252Fsagemaker$252FProcessingJobs$3FlogStreamNameFilter$3D{job_name}$252F",
        Partition::of_region(region).console_url(region, "cloudwatch")
    )
}

/// The desired status: the observation written over the previous status, conditions keeping
/// their `lastTransitionTime` unless their status flips.
/// A validation made by this reconcile answers the revalidation asked for with the annotation
/// (`asked`, its current value): recorded, so that the same value is not answered twice, and,
/// when it was a new request, the validation time says it happened even if nothing changed.
pub fn answer_revalidation(next: &mut ProcessingJobStatus, obs: &Observation, asked: Option<&str>, new: bool) {
    if !matches!(obs.network, Some(NetworkOutcome::Validated { .. })) {
        return;
    }
    if let Some(network) = next.network.as_mut() {
        network.revalidation = asked.map(str::to_string);
        if new {
            network.validated_at = Some(Timestamp::now().to_string());
        }
    }
}

pub fn desired_status(prev: &ProcessingJobStatus, obs: &Observation) -> ProcessingJobStatus {
    let mut s = ProcessingJobStatus {
        phase: Some(obs.phase.recorded()),
        processing_job_name: obs.job_name.clone(),
        region: obs.region.clone(),
        account: obs.account.clone(),
        observed_generation: obs.generation,
        logs_url: match (&obs.region, &obs.job_name) {
            (Some(r), Some(n)) if matches!(obs.phase, Phase::Submitted { .. }) => Some(logs_url(r, n)),
            _ => None,
        },
        ..Default::default()
    };
    if let Phase::Submitted { job, .. } = &obs.phase {
        // Made once, when the failure was first seen; kept by every later write.
        match &obs.failure {
            Some(f) => {
                s.diagnosis = f.diagnosis.clone();
                s.log_tail = f.log_tail.clone();
            }
            None => {
                s.diagnosis = prev.diagnosis.clone();
                s.log_tail = prev.log_tail.clone();
            }
        }
        s.processing_job_arn = job.arn.clone();
        s.processing_job_status = Some(job.status.as_str().to_string());
        s.failure_reason = job.failure_reason.clone();
        s.exit_message = job.exit_message.clone();
        s.creation_time = job.creation_time.clone();
        s.processing_start_time = job.start_time.clone();
        s.processing_end_time = job.end_time.clone();
        s.last_modified_time = job.last_modified.clone();
        s.monitoring_schedule_arn = job.monitoring_schedule_arn.clone();
        s.auto_ml_job_arn = job.auto_ml_job_arn.clone();
        s.training_job_arn = job.training_job_arn.clone();
    }
    s.network = match &obs.network {
        Some(NetworkOutcome::Validated { vpc_id, findings, .. }) => {
            let validated_at = prev
                .network
                .as_ref()
                .filter(|n| &n.findings == findings && &n.vpc_id == vpc_id)
                .and_then(|n| n.validated_at.clone())
                .or_else(|| Some(Timestamp::now().to_string()));
            Some(NetworkStatus {
                vpc_id: vpc_id.clone(),
                findings: findings.clone(),
                validated_at,
                revalidation: prev.network.as_ref().and_then(|n| n.revalidation.clone()),
            })
        }
        // Findings stay visible while the job runs even if this reconcile did not revalidate.
        None => prev.network.clone(),
        Some(_) => None,
    };

    let g = obs.generation;
    let mut conditions = Vec::with_capacity(5);
    conditions.push(match &obs.network {
        // Not revalidated by this reconcile: the previous verdict stands, for this generation
        // too (only the controller's knobs can change once a job exists).
        None => cond(prev, NETWORK_VALIDATED)
            .map(|c| Condition {
                observed_generation: g,
                ..c.clone()
            })
            .unwrap_or_else(|| Condition {
            status: "Unknown".into(),
            ..condition(
                NETWORK_VALIDATED,
                false,
                "Pending",
                "the network has not been validated yet",
                g,
            )
        }),
        Some(NetworkOutcome::NoVpcConfig) => condition(
            NETWORK_VALIDATED,
            true,
            "NoVpcConfig",
            "the job has no vpcConfig: it runs outside any VPC and there is nothing to validate",
            g,
        ),
        Some(NetworkOutcome::Skipped) => {
            condition(NETWORK_VALIDATED, true, "Skipped", "networkValidation.mode is Skip", g)
        }
        Some(n @ NetworkOutcome::Validated { mode, findings, .. }) => {
            let errors = n.error_codes();
            let others = findings.len() - findings.iter().filter(|f| f.severity == Severity::Error).count();
            match (errors.is_empty(), mode) {
                (true, _) => condition(
                    NETWORK_VALIDATED,
                    true,
                    "Valid",
                    format!("no error finding ({others} warning or info finding(s))"),
                    g,
                ),
                (false, ValidationMode::Warn) => {
                    // The escape hatch: a job blocked under Enforce whose mode was switched.
                    // (Once said, it stays said: the report after the write-ahead sees WarnMode.)
                    let was_blocked = cond(prev, NETWORK_VALIDATED).is_some_and(|c| {
                        c.reason == "NetworkInvalid"
                            || (c.reason == "WarnMode" && c.message.starts_with("networkValidation.mode was changed"))
                    });
                    let message = if was_blocked {
                        format!(
                            "networkValidation.mode was changed to Warn: error findings {} no longer block the job, which proceeds; they stay in status.network.findings",
                            errors.join(", ")
                        )
                    } else {
                        format!(
                            "error findings {} ignored because networkValidation.mode is Warn",
                            errors.join(", ")
                        )
                    };
                    condition(NETWORK_VALIDATED, true, "WarnMode", message, g)
                }
                (false, _) => condition(
                    NETWORK_VALIDATED,
                    false,
                    "NetworkInvalid",
                    format!("error findings: {} (see status.network.findings)", errors.join(", ")),
                    g,
                ),
            }
        }
    });

    // Not created: the four conditions share one reason and message; either the controller
    // still works on it (Reconciling) or it waits for a human (Stalled).
    let not_created = |reason: &str, msg: &str, working: bool| {
        (
            condition(SUBMITTED, false, reason, msg, g),
            condition(READY, false, reason, msg, g),
            condition(RECONCILING, working, reason, msg, g),
            condition(STALLED, !working, reason, msg, g),
        )
    };
    let (submitted, ready, reconciling, stalled) = match &obs.phase {
        Phase::NetworkInvalid => not_created(
            "NetworkInvalid",
            "the job was not created because the network has error findings; fix the VPC, then set the annotation sagemaker.processing.dev/revalidate to a new value to validate again now (the controller also revalidates every --revalidate-interval), or set networkValidation.mode to Warn",
            false,
        ),
        Phase::NotAllowed { message } => not_created("NotAllowedInNamespace", message, false),
        Phase::Waiting { reason, message } => not_created(reason, message, true),
        Phase::Queued { reason, message } => not_created(reason, message, true),
        Phase::InvalidSpec { message } => not_created(
            "InvalidSpec",
            &format!("SageMaker rejected the job: {message}; create a new resource with a corrected spec"),
            false,
        ),
        Phase::NameConflict { message } => not_created("JobNameInUse", message, false),
        Phase::Creating { problem } => {
            let msg = "creating the SageMaker processing job";
            let reconciling = match problem {
                Some(p) => condition(RECONCILING, true, &p.reason, p.message.clone(), g),
                None => condition(RECONCILING, true, "Creating", msg, g),
            };
            (
                condition(SUBMITTED, false, "Creating", msg, g),
                condition(READY, false, "Creating", msg, g),
                reconciling,
                condition(STALLED, false, "Creating", "not stalled: the job is being created", g),
            )
        }
        Phase::Submitted { job, adopted, problem } => {
            let name = obs.job_name.as_deref().unwrap_or_default();
            let submitted = if *adopted {
                condition(
                    SUBMITTED,
                    true,
                    "Adopted",
                    format!("adopted the existing SageMaker job {name} created for this resource"),
                    g,
                )
            } else {
                condition(SUBMITTED, true, "Created", format!("SageMaker job {name} exists"), g)
            };
            let first_line = job
                .failure_reason
                .as_deref()
                .and_then(|r| r.lines().next())
                .unwrap_or("no reason given");
            match job.status {
                JobStatus::Completed => (
                    submitted,
                    condition(READY, true, "Completed", format!("SageMaker job {name} completed"), g),
                    condition(RECONCILING, false, "Completed", "nothing left to do: the job completed", g),
                    condition(STALLED, false, "Completed", "not stalled: the job completed", g),
                ),
                JobStatus::Failed => {
                    let msg = format!("SageMaker job {name} failed: {}", truncate(first_line, 512));
                    (
                        submitted,
                        condition(READY, false, "Failed", msg.clone(), g),
                        condition(RECONCILING, false, "Failed", msg.clone(), g),
                        condition(STALLED, true, "Failed", msg, g),
                    )
                }
                JobStatus::Stopped => {
                    let msg = format!("SageMaker job {name} was stopped");
                    (
                        submitted,
                        condition(READY, false, "Stopped", msg.clone(), g),
                        condition(RECONCILING, false, "Stopped", msg.clone(), g),
                        condition(STALLED, true, "Stopped", msg, g),
                    )
                }
                active @ (JobStatus::InProgress | JobStatus::Stopping) => {
                    let reason = active.as_str();
                    let msg = format!("SageMaker job {name} is {active}");
                    let reconciling = match problem {
                        Some(p) => condition(RECONCILING, true, &p.reason, p.message.clone(), g),
                        None => condition(RECONCILING, true, reason, msg.clone(), g),
                    };
                    (
                        submitted,
                        condition(READY, false, reason, msg, g),
                        reconciling,
                        condition(STALLED, false, reason, format!("not stalled: the job is {active}"), g),
                    )
                }
            }
        }
    };
    conditions.extend([submitted, ready, reconciling, stalled]);
    for c in &mut conditions {
        if let Some(old) = prev.conditions.iter().find(|o| o.type_ == c.type_) {
            if old.status == c.status {
                c.last_transition_time = old.last_transition_time.clone();
            }
        }
    }
    s.conditions = conditions;
    s
}

/// An Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
    /// Events with the same reason and action are folded into one series by the recorder, so
    /// the action names the state reached.
    pub action: String,
}

fn cond<'a>(s: &'a ProcessingJobStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

/// The Events for the transition from `prev` to `next`: one per state change, none when
/// nothing changed.
pub fn transition_events(prev: &ProcessingJobStatus, next: &ProcessingJobStatus) -> Vec<EventSpec> {
    let mut out = Vec::new();
    let changed = |t: &str| {
        let (a, b) = (cond(prev, t), cond(next, t));
        match (a, b) {
            (_, None) => None,
            (Some(a), Some(b)) if a.status == b.status && a.reason == b.reason => None,
            (_, Some(b)) => Some(b),
        }
    };
    if let Some(c) = changed(NETWORK_VALIDATED) {
        match (c.status.as_str(), c.reason.as_str()) {
            // Errors let through by Warn mode deserve a Warning.
            ("True", reason) => out.push(EventSpec {
                warning: reason == "WarnMode",
                reason: "NetworkValidated",
                note: c.message.clone(),
                action: "Validate".into(),
            }),
            ("False", "NetworkInvalid") => out.push(EventSpec {
                warning: true,
                reason: "NetworkInvalid",
                note: c.message.clone(),
                action: "Validate".into(),
            }),
            _ => {}
        }
    }
    // A job created (or adopted) running: one Event says both, JobCreated with its state — a
    // JobStatusChanged "SageMaker job is InProgress" beside it said it again, one more apiserver
    // write per job (docs/performance.md).
    let mut told = false;
    if prev.processing_job_arn.is_none() {
        if let Some(arn) = &next.processing_job_arn {
            let adopted = next.phase == Some(JobPhase::Adopted);
            let verb = if adopted { "adopted" } else { "created" };
            told = prev.processing_job_status.is_none()
                && next.processing_job_status.as_deref() == Some(crate::job::JobStatus::InProgress.as_str());
            let note = match (told, next.processing_job_status.as_deref()) {
                (true, Some(state)) => format!("{verb} SageMaker job {arn}: {state}"),
                _ => format!("{verb} SageMaker job {arn}"),
            };
            out.push(EventSpec {
                warning: false,
                reason: "JobCreated",
                note,
                action: "Create".into(),
            });
        }
    }
    if !told && next.processing_job_status.is_some() && prev.processing_job_status != next.processing_job_status {
        let to = next.processing_job_status.as_deref().unwrap_or_default();
        let note = match prev.processing_job_status.as_deref() {
            Some(from) => format!("{from} → {to}"),
            None => format!("SageMaker job is {to}"),
        };
        let action = to.to_string();
        match to {
            "Failed" => {
                let first = next
                    .failure_reason
                    .as_deref()
                    .and_then(|r| r.lines().next())
                    .unwrap_or("no reason given");
                out.push(EventSpec {
                    warning: true,
                    reason: "JobFailed",
                    note: failed_note(first, next.log_tail.as_deref()),
                    action,
                });
                if let Some(d) = &next.diagnosis {
                    out.push(EventSpec {
                        warning: true,
                        reason: "FailureDiagnosed",
                        note: truncate(&format!("likely cause: {}", d.likely_cause), 900),
                        action: d.pattern.clone(),
                    });
                }
            }
            "Stopped" => out.push(EventSpec {
                warning: true,
                reason: "JobStopped",
                note,
                action,
            }),
            _ => out.push(EventSpec {
                warning: false,
                reason: "JobStatusChanged",
                note,
                action,
            }),
        }
    }
    if let Some(c) = changed(STALLED).filter(|c| c.status == "True") {
        if c.reason == "NotAllowedInNamespace" {
            out.push(EventSpec {
                warning: true,
                reason: "NotAllowedInNamespace",
                note: truncate(&c.message, 900),
                action: "Guard".into(),
            });
        } else if matches!(c.reason.as_str(), "InvalidSpec" | "JobNameInUse") {
            out.push(EventSpec {
                warning: true,
                reason: "AwsError",
                note: truncate(&c.message, 900),
                action: c.reason.clone(),
            });
        }
    }
    if let Some(c) = changed(RECONCILING).filter(|c| c.status == "True") {
        if matches!(c.reason.as_str(), QUOTA_EXCEEDED | ACTIVE_JOB_LIMIT) {
            // Entering the queue, once: a retry of a queued job keeps this reason through its
            // write-ahead, so it announces nothing again.
            out.push(EventSpec {
                warning: false,
                reason: "JobQueued",
                note: truncate(&c.message, 900),
                action: c.reason.clone(),
            });
        } else if matches!(c.reason.as_str(), ACCOUNT_NOT_MAPPED | ASSUME_ROLE_FAILED) {
            // The namespace's account cannot be reached: said under its own reason.
            out.push(EventSpec {
                warning: true,
                reason: if c.reason == ACCOUNT_NOT_MAPPED {
                    ACCOUNT_NOT_MAPPED
                } else {
                    ASSUME_ROLE_FAILED
                },
                note: truncate(&c.message, 900),
                action: "Account".into(),
            });
        } else if !matches!(c.reason.as_str(), "Creating" | "InProgress" | "Stopping" | "Deleting") {
            out.push(EventSpec {
                warning: true,
                reason: "AwsError",
                note: truncate(&c.message, 900),
                action: c.reason.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(phase: Phase) -> Observation {
        Observation {
            failure: None,
            generation: Some(1),
            job_name: Some("job-1".into()),
            region: Some("us-east-1".into()),
            account: None,
            network: Some(NetworkOutcome::Validated {
                mode: ValidationMode::Enforce,
                vpc_id: Some("vpc-1".into()),
                findings: vec![],
            }),
            phase,
        }
    }

    fn job(status: &str) -> Phase {
        Phase::Submitted {
            job: Box::new(JobState {
                name: "job-1".into(),
                arn: Some("arn:x".into()),
                status: JobStatus::parse(status).expect("a SageMaker status"),
                failure_reason: Some("AlgorithmError: boom\nmore".into()),
                ..Default::default()
            }),
            adopted: false,
            problem: None,
        }
    }

    fn get<'a>(s: &'a ProcessingJobStatus, t: &str) -> (&'a str, &'a str) {
        let c = cond(s, t).expect("condition present");
        (c.status.as_str(), c.reason.as_str())
    }

    /// kstatus: Ready only when Completed; Stalled when nothing will change without a human;
    /// Reconciling while working; never Stalled and Reconciling at once.
    #[test]
    fn kstatus_conditions_per_lifecycle_state() {
        let table: Vec<(Phase, (&str, &str), &str, &str)> = vec![
            (
                Phase::Creating { problem: None },
                ("False", "Creating"),
                "True",
                "False",
            ),
            (
                Phase::Waiting {
                    reason: "AwsThrottled".into(),
                    message: "m".into(),
                },
                ("False", "AwsThrottled"),
                "True",
                "False",
            ),
            (job("InProgress"), ("False", "InProgress"), "True", "False"),
            (job("Stopping"), ("False", "Stopping"), "True", "False"),
            (job("Completed"), ("True", "Completed"), "False", "False"),
            (job("Failed"), ("False", "Failed"), "False", "True"),
            (job("Stopped"), ("False", "Stopped"), "False", "True"),
            (Phase::NetworkInvalid, ("False", "NetworkInvalid"), "False", "True"),
            (
                Phase::InvalidSpec { message: "bad".into() },
                ("False", "InvalidSpec"),
                "False",
                "True",
            ),
            (
                Phase::NameConflict {
                    message: "taken".into(),
                },
                ("False", "JobNameInUse"),
                "False",
                "True",
            ),
        ];
        for (phase, ready, reconciling, stalled) in table {
            let s = desired_status(&ProcessingJobStatus::default(), &obs(phase.clone()));
            assert_eq!(get(&s, READY), ready, "{phase:?}");
            assert_eq!(get(&s, RECONCILING).0, reconciling, "{phase:?}");
            assert_eq!(get(&s, STALLED).0, stalled, "{phase:?}");
            assert!(!(reconciling == "True" && stalled == "True"));
            assert!(
                s.conditions.iter().all(|c| !c.message.is_empty()),
                "{phase:?}: a condition without a message"
            );
            assert_eq!(s.conditions.len(), 5);
            assert!(s.conditions.iter().all(|c| c.observed_generation == Some(1)));
        }
    }

    #[test]
    fn failure_reason_first_line_in_conditions_and_event() {
        let s = desired_status(&ProcessingJobStatus::default(), &obs(job("Failed")));
        let ready = cond(&s, READY).expect("ready");
        assert!(ready.message.contains("AlgorithmError: boom") && !ready.message.contains("more"));
        let prev = desired_status(&ProcessingJobStatus::default(), &obs(job("InProgress")));
        let events = transition_events(&prev, &s);
        assert_eq!(
            events,
            vec![EventSpec {
                warning: true,
                reason: "JobFailed",
                note: "AlgorithmError: boom".into(),
                action: "Failed".into()
            }]
        );
    }

    #[test]
    fn stable_status_keeps_transition_times_and_emits_nothing() {
        let first = desired_status(&ProcessingJobStatus::default(), &obs(job("InProgress")));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = desired_status(&first, &obs(job("InProgress")));
        assert_eq!(first, second, "a no-op reconcile must not change the status");
        assert!(transition_events(&first, &second).is_empty());
        let done = desired_status(&second, &obs(job("Completed")));
        assert_ne!(
            cond(&done, READY).map(|c| &c.last_transition_time),
            cond(&second, READY).map(|c| &c.last_transition_time)
        );
        assert_eq!(
            cond(&done, SUBMITTED).map(|c| &c.last_transition_time),
            cond(&second, SUBMITTED).map(|c| &c.last_transition_time)
        );
    }

    #[test]
    fn events_for_the_happy_path() {
        let empty = ProcessingJobStatus::default();
        let creating = desired_status(&empty, &obs(Phase::Creating { problem: None }));
        let reasons = |a, b| {
            transition_events(a, b)
                .into_iter()
                .map(|e| e.reason)
                .collect::<Vec<_>>()
        };
        assert_eq!(reasons(&empty, &creating), ["NetworkValidated"]);
        let running = desired_status(&creating, &obs(job("InProgress")));
        assert_eq!(
            reasons(&creating, &running),
            ["JobCreated"],
            "one Event for created and running"
        );
        let created = &transition_events(&creating, &running)[0];
        assert!(created.note.ends_with(": InProgress"), "{}", created.note);
        let done = desired_status(&running, &obs(job("Completed")));
        assert_eq!(reasons(&running, &done), ["JobStatusChanged"]);
    }

    #[test]
    fn network_invalid_and_warn_mode() {
        let finding = Finding {
            code: "NoS3Route".into(),
            severity: Severity::Error,
            resource: "subnet-1".into(),
            message: "m".into(),
            remediation: "r".into(),
        };
        let mut o = obs(Phase::NetworkInvalid);
        o.network = Some(NetworkOutcome::Validated {
            mode: ValidationMode::Enforce,
            vpc_id: Some("vpc-1".into()),
            findings: vec![finding.clone()],
        });
        let s = desired_status(&ProcessingJobStatus::default(), &o);
        assert_eq!(get(&s, NETWORK_VALIDATED), ("False", "NetworkInvalid"));
        assert!(cond(&s, NETWORK_VALIDATED).is_some_and(|c| c.message.contains("NoS3Route")));
        assert_eq!(s.network.as_ref().map(|n| n.findings.len()), Some(1));
        let reasons: Vec<_> = transition_events(&ProcessingJobStatus::default(), &s)
            .into_iter()
            .map(|e| e.reason)
            .collect();
        assert_eq!(reasons, ["NetworkInvalid"]);
        let warn = NetworkOutcome::Validated {
            mode: ValidationMode::Warn,
            vpc_id: None,
            findings: vec![finding],
        };
        assert!(warn.allows_create());
        o.network = Some(warn);
        o.phase = Phase::Creating { problem: None };
        let warned = desired_status(&ProcessingJobStatus::default(), &o);
        assert_eq!(get(&warned, NETWORK_VALIDATED), ("True", "WarnMode"));
        let events = transition_events(&ProcessingJobStatus::default(), &warned);
        assert!(
            events.iter().any(|e| e.reason == "NetworkValidated" && e.warning),
            "errors let through by Warn mode are a Warning: {events:?}"
        );
    }

    #[test]
    fn the_logs_link_is_on_the_console_of_the_regions_partition() {
        let tail =
            "#logsV2:log-groups/log-group/$252Faws$252Fsagemaker$252FProcessingJobs$3FlogStreamNameFilter$3Djob-1$252F";
        for (region, console) in [
            (
                "eu-west-1",
                "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1",
            ),
            (
                "cn-north-1",
                "https://console.amazonaws.cn/cloudwatch/home?region=cn-north-1",
            ),
            (
                "us-gov-west-1",
                "https://console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1",
            ),
        ] {
            assert_eq!(logs_url(region, "job-1"), format!("{console}{tail}"));
        }
    }
}
