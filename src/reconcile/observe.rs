//! Observe: the resource's own status, read once into a typed [`Progress`]. Nothing else in the
//! reconciler reads the status to decide what to do.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::accounts::ScopeKey;
use crate::api::{JobPhase, ProcessingJob, ProcessingJobStatus, JOB_ANNOTATION};
use crate::job::{epoch_of, JobState, JobStatus};

use super::naming;

/// Where a SageMaker job of this resource lives (or may live): pinned once recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRef {
    pub name: String,
    pub region: String,
    /// The account, when not the controller's own (ACK's CARM): pinned with the region.
    pub account: Option<String>,
}

impl JobRef {
    /// (account, region): what the tracker and the queue key the job on.
    pub fn key(&self) -> ScopeKey {
        ScopeKey {
            account: self.account.clone(),
            region: self.region.clone(),
        }
    }

    /// The value of [`JOB_ANNOTATION`] that records this job.
    pub fn pin(&self) -> String {
        match &self.account {
            Some(account) => format!("{account}/{}/{}", self.region, self.name),
            None => format!("{}/{}", self.region, self.name),
        }
    }

    /// The job a value of [`JOB_ANNOTATION`] records; `None` for a value the controller did not
    /// write.
    pub fn from_pin(value: &str) -> Option<Self> {
        let parts: Vec<&str> = value.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let (account, region, name) = match parts.as_slice() {
            [region, name] => (None, region, name),
            [account, region, name] => (Some(account.to_string()), region, name),
            _ => return None,
        };
        Some(JobRef {
            name: name.to_string(),
            region: region.to_string(),
            account,
        })
    }
}

/// The job the write-ahead recorded in the resource's metadata, if any.
pub fn pinned(meta: &ObjectMeta) -> Option<JobRef> {
    let value = meta.annotations.as_ref()?.get(JOB_ANNOTATION)?;
    let at = JobRef::from_pin(value);
    if at.is_none() {
        tracing::warn!(
            annotation = JOB_ANNOTATION,
            value,
            "ignoring an annotation the controller did not write"
        );
    }
    at
}

/// How far the resource has come, as its status records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Nothing was created or refused for this generation: check, then create.
    New,
    /// The network or the namespace refused this generation: check again when a timer or a
    /// change brings the resource back.
    Blocked,
    /// Waiting in line for capacity or under a cap (nothing was created): ask the queue first,
    /// check and create when it lets the job go.
    Queued,
    /// A create was sent or was about to be: the job may exist, so look before creating again.
    Creating(JobRef),
    /// The job exists and has not ended; `last` is what the status knows of it.
    Active {
        at: JobRef,
        last: Box<JobState>,
        adopted: bool,
    },
    /// The job has ended: nothing about it changes any more.
    Ended { at: JobRef },
    /// Refused for good for this generation (SageMaker rejected the spec, or the name is another
    /// job's): nothing is retried until the resource changes.
    Refused,
}

/// Reads the resource's progress. `default_region` only serves statuses written before the
/// region was recorded.
pub fn progress(job: &ProcessingJob, default_region: Option<&str>) -> Progress {
    progress_of(
        job.status.as_ref(),
        pinned(&job.metadata),
        job.metadata.generation,
        || job.region(default_region),
    )
}

/// The progress a status records, with `pin` the job the write-ahead recorded in the metadata
/// (see [`pinned`]), for an object of `generation`; `region` serves statuses written before the
/// region was recorded. Needs no spec, so it also reads objects whose spec cannot be parsed any
/// more.
///
/// The status decides once it shows the job (created, adopted, being created) or a refusal of
/// this generation. Otherwise a pin means a create was sent or was about to be, after whatever
/// the status shows (the status write after a create can fail, or be lost with the status):
/// the job may exist, so it is looked for before anything else.
pub fn progress_of(
    status: Option<&ProcessingJobStatus>,
    pin: Option<JobRef>,
    generation: Option<i64>,
    region: impl Fn() -> Option<String>,
) -> Progress {
    let Some(status) = status else {
        return pin.map(Progress::Creating).unwrap_or(Progress::New);
    };
    let current = status.observed_generation == generation;
    let at = || {
        let name = status.processing_job_name.clone()?;
        let region = status.region.clone().or_else(&region)?;
        Some(JobRef {
            name,
            region,
            account: status.account.clone(),
        })
    };
    match status.phase.or_else(|| legacy_phase(status)) {
        Some(JobPhase::Created | JobPhase::Adopted) => match at() {
            Some(at) => {
                let last = last_state(status, &at.name);
                if last.status.is_terminal() {
                    Progress::Ended { at }
                } else {
                    Progress::Active {
                        at,
                        last: Box::new(last),
                        adopted: status.phase == Some(JobPhase::Adopted),
                    }
                }
            }
            None => pin.map(Progress::Creating).unwrap_or(Progress::New),
        },
        Some(JobPhase::Creating) => at().or(pin).map(Progress::Creating).unwrap_or(Progress::New),
        Some(JobPhase::Refused) if current => Progress::Refused,
        _ if pin.is_some() => pin.map(Progress::Creating).unwrap_or(Progress::New),
        Some(JobPhase::Blocked) if current => Progress::Blocked,
        Some(JobPhase::Queued) if current => Progress::Queued,
        _ => Progress::New,
    }
}

/// Statuses written before `phase` existed: an ARN means the job exists; a recorded name without
/// one means a create may have happened.
fn legacy_phase(status: &ProcessingJobStatus) -> Option<JobPhase> {
    if status.processing_job_arn.is_some() {
        Some(JobPhase::Created)
    } else if status.processing_job_name.is_some() {
        Some(JobPhase::Creating)
    } else {
        None
    }
}

/// What the status knows of the job, carried forward into every later status write.
pub fn last_state(status: &ProcessingJobStatus, name: &str) -> JobState {
    JobState {
        name: name.to_string(),
        arn: status.processing_job_arn.clone(),
        status: status
            .processing_job_status
            .as_deref()
            .and_then(JobStatus::parse)
            .unwrap_or_default(),
        failure_reason: status.failure_reason.clone(),
        exit_message: status.exit_message.clone(),
        creation_time: status.creation_time.clone(),
        start_time: status.processing_start_time.clone(),
        end_time: status.processing_end_time.clone(),
        last_modified: status.last_modified_time.clone(),
        last_modified_epoch: status.last_modified_time.as_deref().and_then(epoch_of),
        monitoring_schedule_arn: status.monitoring_schedule_arn.clone(),
        auto_ml_job_arn: status.auto_ml_job_arn.clone(),
        training_job_arn: status.training_job_arn.clone(),
    }
}

/// The SageMaker job name for a new job: `spec.processingJobName`, else derived from the
/// resource deterministically (so a restarted controller finds the job it created).
pub fn job_name(job: &ProcessingJob) -> String {
    if let Some(n) = &job.spec.processing_job_name {
        return n.clone();
    }
    naming::derived_job_name(
        job.namespace().as_deref().unwrap_or_default(),
        &job.name_any(),
        job.metadata.uid.as_deref().unwrap_or_default(),
    )
}
