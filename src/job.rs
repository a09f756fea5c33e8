//! What SageMaker says about a processing job, in the project's own types: the adapters turn SDK
//! answers into these, the reconciler works on them.

use std::fmt;

/// The prefix of the controller's own tags; user tags may not use it (see `api::rules`).
pub const TAG_PREFIX: &str = "sagemaker.processing.dev/";
/// Tag keys that tie a SageMaker job to the resource that created it.
pub const TAG_NAMESPACE: &str = "sagemaker.processing.dev/namespace";
pub const TAG_NAME: &str = "sagemaker.processing.dev/name";
pub const TAG_UID: &str = "sagemaker.processing.dev/uid";
/// Set when the resource was deleted with `deletionPolicy: Retain`: the job was left running on
/// purpose and is no orphan.
pub const TAG_RETAINED: &str = "sagemaker.processing.dev/retained";
/// The retained mark when the job has no room for [`TAG_RETAINED`] (SageMaker allows 50 tags a
/// job; a resource stored before the CRD left room for the mark may have used them all): the
/// value of [`TAG_UID`] is overwritten with this prefix before the UID, which adds no tag.
pub const RETAINED_UID_PREFIX: &str = "retained:";
/// The most tags SageMaker allows on a job, and how many of them the controller may add: three at
/// creation (namespace, name, UID) and [`TAG_RETAINED`].
pub const MAX_JOB_TAGS: usize = 50;
pub const CONTROLLER_TAGS: usize = 4;

/// Whether the job was left running on purpose (`deletionPolicy: Retain`), by either mark.
pub fn is_retained(tags: &[(String, String)]) -> bool {
    tags.iter()
        .any(|(k, v)| k == TAG_RETAINED || (k == TAG_UID && v.starts_with(RETAINED_UID_PREFIX)))
}

/// SageMaker's status of a processing job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum JobStatus {
    #[default]
    InProgress,
    Completed,
    Failed,
    Stopping,
    Stopped,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Stopping,
        JobStatus::Stopped,
    ];

    /// SageMaker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "InProgress",
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Stopping => "Stopping",
            JobStatus::Stopped => "Stopped",
        }
    }

    /// Parses SageMaker's spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the job has ended: nothing about it changes any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Stopped)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What SageMaker says about a job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobState {
    pub name: String,
    pub arn: Option<String>,
    pub status: JobStatus,
    pub failure_reason: Option<String>,
    pub exit_message: Option<String>,
    pub creation_time: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub last_modified: Option<String>,
    /// `last_modified` in seconds since the epoch, for change tracking.
    pub last_modified_epoch: Option<f64>,
    pub monitoring_schedule_arn: Option<String>,
    pub auto_ml_job_arn: Option<String>,
    pub training_job_arn: Option<String>,
}

/// A changed job seen by ListProcessingJobs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub name: String,
    pub last_modified_epoch: f64,
    /// The status the List gave.
    pub status: Option<JobStatus>,
    /// The job's CreationTime (seconds since the epoch).
    pub created_epoch: Option<f64>,
}

/// How close to its CreationTime a job's LastModifiedTime may be for the job to be taken as
/// unchanged since its creation (SageMaker sets both when it creates the job).
pub const CREATION_TOLERANCE: f64 = 0.5;

impl JobSummary {
    /// The entry shows the job as it was created — InProgress, modified no later than its
    /// creation — so it tells nothing a create's answer did not: a job the controller created
    /// (or described) is not changed by it, whatever the two clocks say.
    pub fn is_its_creation(&self) -> bool {
        self.status == Some(JobStatus::InProgress)
            && self
                .created_epoch
                .is_some_and(|c| self.last_modified_epoch - c <= CREATION_TOLERANCE)
    }
}

/// Seconds since the epoch of an RFC 3339 time, as SageMaker's timestamps are compared.
pub fn epoch_of(rfc3339: &str) -> Option<f64> {
    rfc3339
        .parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip_and_only_ended_ones_are_terminal() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("Running"), None);
        let terminal: Vec<_> = JobStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [JobStatus::Completed, JobStatus::Failed, JobStatus::Stopped]);
    }

    #[test]
    fn a_job_is_retained_by_either_mark() {
        let tag = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert!(!is_retained(&[tag(TAG_UID, "abc"), tag(TAG_NAME, "n")]));
        assert!(is_retained(&[tag(TAG_UID, "abc"), tag(TAG_RETAINED, "true")]));
        assert!(is_retained(&[tag(TAG_UID, &format!("{RETAINED_UID_PREFIX}abc"))]));
        // The CRD leaves room for every tag the controller adds.
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(crate::api::ProcessingJob::crd()).expect("the CRD as JSON");
        let user_tags = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/tags/maxItems")
            .and_then(serde_json::Value::as_u64)
            .expect("spec.tags has maxItems");
        assert_eq!(user_tags as usize + CONTROLLER_TAGS, MAX_JOB_TAGS);
    }

    #[test]
    fn every_controller_tag_has_the_reserved_prefix() {
        for tag in [TAG_NAMESPACE, TAG_NAME, TAG_UID, TAG_RETAINED] {
            assert!(tag.starts_with(TAG_PREFIX), "{tag}");
        }
    }
}
