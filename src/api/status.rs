//! The status: the SageMaker job mirrored, the network findings and kstatus conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a ProcessingJob.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingJobStatus {
    /// Where the controller stands with this resource: Pending (not created yet: checking, or
    /// waiting for credentials or a region), Queued (not created yet: waiting in creation order
    /// for SageMaker capacity or under a cap on active jobs), Blocked (refused by the network or the
    /// namespace; checked again periodically and on changes), Creating (a create was sent or is
    /// about to be), Created / Adopted (the SageMaker job exists), Refused (final for this
    /// generation: SageMaker rejected the spec or the name belongs to another job; create a new
    /// resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// Name of the SageMaker processing job this resource owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_job_name: Option<String>,
    /// ARN of the SageMaker processing job.
    #[serde(rename = "processingJobARN", default, skip_serializing_if = "Option::is_none")]
    pub processing_job_arn: Option<String>,
    /// SageMaker's status of the job: InProgress, Completed, Failed, Stopping or Stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_job_status: Option<String>,
    /// Why the job failed, as SageMaker reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The container's exit message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_message: Option<String>,
    /// When SageMaker created the job (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    /// When the job started processing (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_start_time: Option<String>,
    /// When the job ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_end_time: Option<String>,
    /// When SageMaker last changed the job (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_time: Option<String>,
    /// The monitoring schedule that started the job, if any.
    #[serde(rename = "monitoringScheduleARN", default, skip_serializing_if = "Option::is_none")]
    pub monitoring_schedule_arn: Option<String>,
    /// The AutoML job that started the job, if any.
    #[serde(rename = "autoMLJobARN", default, skip_serializing_if = "Option::is_none")]
    pub auto_ml_job_arn: Option<String>,
    /// The training job that started the job, if any.
    #[serde(rename = "trainingJobARN", default, skip_serializing_if = "Option::is_none")]
    pub training_job_arn: Option<String>,
    /// AWS region the job runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// AWS account the job runs in, when it is not the controller's own: the account of the
    /// namespace's `services.k8s.aws/owner-account-id` (or its team's role), pinned when the
    /// job is created like the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// CloudWatch Logs console link to the job's log streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_url: Option<String>,
    /// Result of the network validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStatus>,
    /// Why a failed job likely failed: set once, when the job ends Failed with a reason that
    /// matches a known network, permission or capacity pattern (docs/troubleshooting.md), from a
    /// fresh validation of the network and the execution role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
    /// The last lines the failed job wrote to CloudWatch Logs (at most 2 KiB), or why they could
    /// not be read. Set once, when the job ends Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// The `metadata.generation` the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: NetworkValidated, Submitted, Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Where the controller stands with a resource. The controller reads its own progress back from
/// this field (never from condition reasons).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum JobPhase {
    /// Not created yet: being checked, or waiting for credentials or a region.
    Pending,
    /// Not created yet: waiting in creation order for SageMaker capacity (reason QuotaExceeded)
    /// or under a cap on active jobs (reason ActiveJobLimit). Nothing exists in SageMaker.
    Queued,
    /// Refused by the network or the namespace; checked again periodically and on changes.
    Blocked,
    /// The job name and region are recorded and a create was sent or is about to be: the job may
    /// exist.
    Creating,
    /// The SageMaker job exists and was created by this resource.
    Created,
    /// The SageMaker job existed already and was adopted by this resource.
    Adopted,
    /// Refused for good for this generation: nothing is retried until the resource changes.
    Refused,
}

/// Result of the network validation.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// The VPC of the job's subnets.
    #[serde(rename = "vpcID", default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Problems and advice found in the job's network.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// When the network was validated (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated_at: Option<String>,
    /// The value of the `sagemaker.processing.dev/revalidate` annotation this validation
    /// answered: set the annotation to a new value to validate again now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revalidation: Option<String>,
}

/// A failed job's diagnosis.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    /// The failure pattern the job's failureReason matched (S3Unreachable, AccessDenied,
    /// VpcInternalError, CapacityOrLimit).
    pub pattern: String,
    /// The likely cause, in words: the finding that explains the failure, or that none does.
    pub likely_cause: String,
    /// The findings of the fresh validation of the job's network and execution role.
    #[serde(default)]
    pub findings: Vec<Finding>,
    /// When the diagnosis was made (RFC 3339).
    pub diagnosed_at: String,
}

/// One problem or piece of advice about the job's network.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable code of the finding (see the documentation of finding codes).
    pub code: String,
    /// Error (blocks the job in Enforce mode), Warning or Info.
    pub severity: Severity,
    /// The AWS resource the finding is about (subnet, security group, route table, ...).
    pub resource: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
    /// How to fix it.
    pub remediation: String,
}

/// Severity of a finding.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum Severity {
    /// Blocks the job in Enforce mode.
    Error,
    /// Likely to cause trouble.
    Warning,
    /// Advice.
    Info,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
            Severity::Info => "Info",
        })
    }
}
