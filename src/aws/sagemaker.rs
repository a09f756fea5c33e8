//! The SageMaker adapter: builds CreateProcessingJob from the spec, and turns Describe and List
//! answers into the project's own [`JobState`].

use std::sync::Arc;

use aws_sdk_sagemaker::types as sm;
use aws_sdk_sagemaker::Client;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde::Serialize;

use super::{Adapter, AwsError, CallCounter};
use crate::api::{ProcessingJobSpec, Tag};
use crate::job::{JobState, JobStatus, JobSummary};

const SERVICE: &str = "sagemaker";

/// SageMaker's status in our type. A status this build does not know is treated as still
/// running: polled, and stopped on delete.
fn status_of(status: Option<&sm::ProcessingJobStatus>) -> JobStatus {
    status.map(|s| status_of_str(s.as_str())).unwrap_or_default()
}

/// SageMaker's spelling of a status in our type, unknown ones as still running (see
/// [`status_of`]); shared with the events' mapping (`aws/events.rs`).
pub(super) fn status_of_str(status: &str) -> JobStatus {
    JobStatus::parse(status).unwrap_or_default()
}

pub(super) fn rfc3339(t: Option<&DateTime>) -> Option<String> {
    t.and_then(|t| t.fmt(Format::DateTime).ok())
}

pub(super) fn epoch(t: Option<&DateTime>) -> Option<f64> {
    t.map(|t| t.as_secs_f64())
}

fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// SageMaker for one region.
#[derive(Clone)]
pub struct SageMaker {
    client: Client,
    calls: Arc<CallCounter>,
}

impl Adapter for SageMaker {
    const SERVICE: &'static str = SERVICE;

    fn counter(&self) -> &CallCounter {
        &self.calls
    }
}

impl SageMaker {
    pub fn new(client: Client, calls: Arc<CallCounter>) -> Self {
        Self { client, calls }
    }

    /// CreateProcessingJob; returns the job ARN.
    /// CreateProcessingJob, sent once: the SDK does not retry it. A throttled create is retried
    /// by the reconciler at the pace it learns (`reconcile::pace`); any other failure may hide
    /// a created job, and the reconciler looks for it before it creates again.
    pub async fn create(&self, name: &str, spec: &ProcessingJobSpec, owner_tags: &[Tag]) -> Result<String, AwsError> {
        let once = aws_sdk_sagemaker::config::Builder::default()
            .retry_config(aws_sdk_sagemaker::config::retry::RetryConfig::standard().with_max_attempts(1));
        let req = create_request(&self.client, name, spec, owner_tags)
            .customize()
            .config_override(once);
        let out = self.call("CreateProcessingJob", req.send()).await?;
        Ok(out.processing_job_arn().unwrap_or_default().to_string())
    }

    pub async fn describe(&self, name: &str) -> Result<JobState, AwsError> {
        let d = self
            .call(
                "DescribeProcessingJob",
                self.client.describe_processing_job().processing_job_name(name).send(),
            )
            .await?;
        Ok(JobState {
            name: d.processing_job_name().unwrap_or(name).to_string(),
            arn: d.processing_job_arn().map(str::to_string),
            status: status_of(d.processing_job_status()),
            failure_reason: d.failure_reason().map(str::to_string),
            exit_message: d.exit_message().map(str::to_string),
            creation_time: rfc3339(d.creation_time()),
            start_time: rfc3339(d.processing_start_time()),
            end_time: rfc3339(d.processing_end_time()),
            last_modified: rfc3339(d.last_modified_time()),
            last_modified_epoch: epoch(d.last_modified_time()),
            monitoring_schedule_arn: d.monitoring_schedule_arn().map(str::to_string),
            auto_ml_job_arn: d.auto_ml_job_arn().map(str::to_string),
            training_job_arn: d.training_job_arn().map(str::to_string),
        })
    }

    pub async fn stop(&self, name: &str) -> Result<(), AwsError> {
        self.call(
            "StopProcessingJob",
            self.client.stop_processing_job().processing_job_name(name).send(),
        )
        .await?;
        Ok(())
    }

    /// Adds one tag to the job.
    pub async fn add_tag(&self, arn: &str, key: &str, value: &str) -> Result<(), AwsError> {
        let tag = sm::Tag::builder().key(key).value(value).build();
        self.call("AddTags", self.client.add_tags().resource_arn(arn).tags(tag).send())
            .await?;
        Ok(())
    }

    /// The job's tags as (key, value) pairs.
    pub async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .call(
                    "ListTags",
                    self.client
                        .list_tags()
                        .resource_arn(arn)
                        .max_results(100)
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            out.extend(resp.tags().iter().map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            }));
            match resp.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Every InProgress and Stopping job of the region (ListProcessingJobs with StatusEquals,
    /// paginated), as far as a List summary tells: name, ARN, status and times.
    pub async fn list_active(&self) -> Result<Vec<JobState>, AwsError> {
        let mut out: Vec<JobState> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for status in [sm::ProcessingJobStatus::InProgress, sm::ProcessingJobStatus::Stopping] {
            let mut token: Option<String> = None;
            loop {
                let resp = self
                    .call(
                        "ListProcessingJobs",
                        self.client
                            .list_processing_jobs()
                            .status_equals(status.clone())
                            .max_results(100)
                            .set_next_token(token.take())
                            .send(),
                    )
                    .await?;
                for s in resp.processing_job_summaries() {
                    let Some(name) = s.processing_job_name() else { continue };
                    // Pages can shift under a concurrent change and serve a job twice.
                    if !seen.insert(name.to_string()) {
                        continue;
                    }
                    out.push(JobState {
                        name: name.to_string(),
                        arn: s.processing_job_arn().map(str::to_string),
                        status: status_of(s.processing_job_status()),
                        failure_reason: s.failure_reason().map(str::to_string),
                        exit_message: s.exit_message().map(str::to_string),
                        creation_time: rfc3339(s.creation_time()),
                        end_time: rfc3339(s.processing_end_time()),
                        last_modified: rfc3339(s.last_modified_time()),
                        last_modified_epoch: epoch(s.last_modified_time()),
                        ..JobState::default()
                    });
                }
                match resp.next_token() {
                    Some(t) if !t.is_empty() => token = Some(t.to_string()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// Every job modified after `after` (seconds since the epoch), paginated.
    pub async fn list_changed_since(&self, after: f64) -> Result<Vec<JobSummary>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .call(
                    "ListProcessingJobs",
                    self.client
                        .list_processing_jobs()
                        .last_modified_time_after(DateTime::from_secs_f64(after))
                        .max_results(100)
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            out.extend(resp.processing_job_summaries().iter().filter_map(summary_of));
            match resp.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }
}

/// The tracker's reading of one List entry. `LastModifiedTime` is optional in SageMaker's model
/// (`ProcessingJobSummary` requires only the name, ARN, CreationTime and status): an entry without
/// it is not dropped, its latest time stands in — the end (`ProcessingEndTime`), else
/// `CreationTime` — so that a job's end is still seen as a change; a change that moves neither
/// (InProgress → Stopping) waits for the resync. Said once per process with a warning.
fn summary_of(s: &sm::ProcessingJobSummary) -> Option<JobSummary> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let name = s.processing_job_name()?.to_string();
    let last_modified_epoch = match epoch(s.last_modified_time()) {
        Some(t) => t,
        None => {
            let stand_in = epoch(s.processing_end_time()).or_else(|| epoch(s.creation_time()))?;
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    job = name,
                    "ListProcessingJobs returned a job without LastModifiedTime: its end or creation time stands in, and a change that moves neither is seen at the resync"
                );
            }
            stand_in
        }
    };
    Some(JobSummary {
        name,
        last_modified_epoch,
        status: s.processing_job_status().map(|st| status_of_str(st.as_str())),
        created_epoch: epoch(s.creation_time()),
    })
}

fn create_request(
    client: &Client,
    name: &str,
    spec: &ProcessingJobSpec,
    owner_tags: &[Tag],
) -> aws_sdk_sagemaker::operation::create_processing_job::builders::CreateProcessingJobFluentBuilder {
    let app = &spec.app_specification;
    let cluster = &spec.processing_resources.cluster_config;
    let mut req = client
        .create_processing_job()
        .processing_job_name(name)
        .role_arn(&spec.role_arn)
        .app_specification(
            sm::AppSpecification::builder()
                .image_uri(&app.image_uri)
                .set_container_entrypoint(app.container_entrypoint.clone())
                .set_container_arguments(app.container_arguments.clone())
                .build(),
        )
        .processing_resources(
            sm::ProcessingResources::builder()
                .cluster_config(
                    sm::ProcessingClusterConfig::builder()
                        .instance_count(cluster.instance_count)
                        .instance_type(sm::ProcessingInstanceType::from(cluster.instance_type.as_str()))
                        .volume_size_in_gb(cluster.volume_size_in_gb)
                        .set_volume_kms_key_id(cluster.volume_kms_key_id.clone())
                        .build(),
                )
                .build(),
        )
        .set_environment(
            spec.environment
                .as_ref()
                .map(|e| e.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        );
    if let Some(sc) = &spec.stopping_condition {
        req = req.stopping_condition(
            sm::ProcessingStoppingCondition::builder()
                .max_runtime_in_seconds(sc.max_runtime_in_seconds)
                .build(),
        );
    }
    if let Some(n) = &spec.network_config {
        req = req.network_config(
            sm::NetworkConfig::builder()
                .set_enable_inter_container_traffic_encryption(n.enable_inter_container_traffic_encryption)
                .set_enable_network_isolation(n.enable_network_isolation)
                .set_vpc_config(n.vpc_config.as_ref().map(|v| {
                    sm::VpcConfig::builder()
                        .set_security_group_ids(Some(v.security_group_ids.clone()))
                        .set_subnets(Some(v.subnets.clone()))
                        .build()
                }))
                .build(),
        );
    }
    if let Some(e) = &spec.experiment_config {
        req = req.experiment_config(
            sm::ExperimentConfig::builder()
                .set_experiment_name(e.experiment_name.clone())
                .set_trial_name(e.trial_name.clone())
                .set_trial_component_display_name(e.trial_component_display_name.clone())
                .set_run_name(e.run_name.clone())
                .build(),
        );
    }
    for input in spec.processing_inputs.iter().flatten() {
        let mut b = sm::ProcessingInput::builder()
            .input_name(&input.input_name)
            .set_app_managed(input.app_managed);
        if let Some(s3) = &input.s3_input {
            b = b.s3_input(
                sm::ProcessingS3Input::builder()
                    .s3_uri(&s3.s3_uri)
                    .set_local_path(s3.local_path.clone())
                    .s3_data_type(sm::ProcessingS3DataType::from(enum_str(&s3.s3_data_type).as_str()))
                    .set_s3_input_mode(
                        s3.s3_input_mode
                            .map(|m| sm::ProcessingS3InputMode::from(enum_str(&m).as_str())),
                    )
                    .set_s3_data_distribution_type(
                        s3.s3_data_distribution_type
                            .map(|m| sm::ProcessingS3DataDistributionType::from(enum_str(&m).as_str())),
                    )
                    .set_s3_compression_type(
                        s3.s3_compression_type
                            .map(|m| sm::ProcessingS3CompressionType::from(enum_str(&m).as_str())),
                    )
                    .build(),
            );
        }
        if let Some(d) = &input.dataset_definition {
            let mut dd = sm::DatasetDefinition::builder()
                .set_local_path(d.local_path.clone())
                .set_data_distribution_type(
                    d.data_distribution_type
                        .map(|m| sm::DataDistributionType::from(enum_str(&m).as_str())),
                )
                .set_input_mode(d.input_mode.map(|m| sm::InputMode::from(enum_str(&m).as_str())));
            if let Some(a) = &d.athena_dataset_definition {
                dd = dd.athena_dataset_definition(
                    sm::AthenaDatasetDefinition::builder()
                        .catalog(&a.catalog)
                        .database(&a.database)
                        .query_string(&a.query_string)
                        .output_s3_uri(&a.output_s3_uri)
                        .output_format(sm::AthenaResultFormat::from(a.output_format.as_str()))
                        .set_work_group(a.work_group.clone())
                        .set_kms_key_id(a.kms_key_id.clone())
                        .set_output_compression(
                            a.output_compression
                                .as_deref()
                                .map(sm::AthenaResultCompressionType::from),
                        )
                        .build(),
                );
            }
            if let Some(r) = &d.redshift_dataset_definition {
                dd = dd.redshift_dataset_definition(
                    sm::RedshiftDatasetDefinition::builder()
                        .cluster_id(&r.cluster_id)
                        .database(&r.database)
                        .db_user(&r.db_user)
                        .query_string(&r.query_string)
                        .cluster_role_arn(&r.cluster_role_arn)
                        .output_s3_uri(&r.output_s3_uri)
                        .output_format(sm::RedshiftResultFormat::from(r.output_format.as_str()))
                        .set_kms_key_id(r.kms_key_id.clone())
                        .set_output_compression(
                            r.output_compression
                                .as_deref()
                                .map(sm::RedshiftResultCompressionType::from),
                        )
                        .build(),
                );
            }
            b = b.dataset_definition(dd.build());
        }
        req = req.processing_inputs(b.build());
    }
    if let Some(cfg) = &spec.processing_output_config {
        let mut oc = sm::ProcessingOutputConfig::builder().set_kms_key_id(cfg.kms_key_id.clone());
        for o in &cfg.outputs {
            let mut b = sm::ProcessingOutput::builder()
                .output_name(&o.output_name)
                .set_app_managed(o.app_managed);
            if let Some(s3) = &o.s3_output {
                b = b.s3_output(
                    sm::ProcessingS3Output::builder()
                        .s3_uri(&s3.s3_uri)
                        .set_local_path(s3.local_path.clone())
                        .s3_upload_mode(sm::ProcessingS3UploadMode::from(enum_str(&s3.s3_upload_mode).as_str()))
                        .build(),
                );
            }
            if let Some(fs) = &o.feature_store_output {
                b = b.feature_store_output(
                    sm::ProcessingFeatureStoreOutput::builder()
                        .feature_group_name(&fs.feature_group_name)
                        .build(),
                );
            }
            oc = oc.outputs(b.build());
        }
        req = req.processing_output_config(oc.build());
    }
    for t in spec.tags.iter().flatten().chain(owner_tags) {
        req = req.tags(sm::Tag::builder().key(&t.key).value(&t.value).build());
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sagemaker::config::{BehaviorVersion, Credentials, Region};

    /// A SageMaker endpoint on 127.0.0.1 answering every call with `body`.
    async fn answering(body: &'static str) -> String {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move || async move { ([("content-type", "application/x-amz-json-1.1")], body) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn sagemaker(url: &str) -> SageMaker {
        let conf = aws_sdk_sagemaker::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(url)
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .build();
        SageMaker::new(Client::from_conf(conf), Arc::new(CallCounter::default()))
    }

    /// SageMaker's model makes `LastModifiedTime` optional in a List entry: an entry without it
    /// is kept, its end (else its creation) standing in, so that the job's end is still seen.
    #[tokio::test]
    async fn list_entries_without_last_modified_time_are_kept() {
        let url = answering(
            r#"{"ProcessingJobSummaries": [
                {"ProcessingJobName": "ended", "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/ended",
                 "CreationTime": 1780000000.0, "ProcessingEndTime": 1780000600.5, "ProcessingJobStatus": "Completed"},
                {"ProcessingJobName": "running", "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/running",
                 "CreationTime": 1780000000.0, "ProcessingJobStatus": "InProgress"},
                {"ProcessingJobName": "usual", "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/usual",
                 "CreationTime": 1780000000.0, "LastModifiedTime": 1780000700.25, "ProcessingJobStatus": "InProgress"}
            ]}"#,
        )
        .await;
        let listed = sagemaker(&url).list_changed_since(1_779_999_999.0).await.expect("list");
        let got: Vec<(&str, f64)> = listed
            .iter()
            .map(|j| (j.name.as_str(), j.last_modified_epoch))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ended", 1_780_000_600.5),
                ("running", 1_780_000_000.0),
                ("usual", 1_780_000_700.25)
            ]
        );
    }
}
