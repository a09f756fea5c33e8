//! The spec: the CreateProcessingJob request in ACK's field names, plus our additions.

// Printer columns repeat `type_ = "string"`, which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{rules, ProcessingJobStatus};

/// SageMaker's processing-job name rule.
pub const JOB_NAME_PATTERN: &str = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$";

/// A SageMaker Processing Job run in your VPC. The spec is the CreateProcessingJob request
/// (ACK-compatible field names); the controller validates the job's network, creates the job,
/// mirrors its status and stops it when the resource is deleted.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sagemaker.processing.dev",
    version = "v1alpha1",
    kind = "ProcessingJob",
    plural = "processingjobs",
    singular = "processingjob",
    shortname = "smpj",
    category = "sagemaker",
    namespaced,
    status = "ProcessingJobStatus",
    doc = "A SageMaker Processing Job run in a VPC, validated before it is created",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the controller stands: Pending, Queued, Blocked, Creating, Created, Adopted, Refused"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.processingJobStatus",
        description = "SageMaker job status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the job is or is not running: the Ready condition's reason (NetworkInvalid, NotAllowedInNamespace, RegionMissing, QuotaExceeded, ActiveJobLimit, InvalidSpec, JobNameInUse, InProgress, Completed, Failed, ...)"
    ),
    printcolumn(
        name = "Network",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"NetworkValidated\")].reason",
        description = "Outcome of the network validation"
    ),
    printcolumn(
        name = "Job",
        type_ = "string",
        json_path = ".status.processingJobName",
        description = "SageMaker processing job name, once a job may exist"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Failure",
        type_ = "string",
        json_path = ".status.failureReason",
        priority = 1,
        description = "Why the job failed"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rules::immutable_spec)]
pub struct ProcessingJobSpec {
    /// Name of the SageMaker processing job, unique per account and region. Optional: when
    /// omitted, the controller derives a deterministic name from the resource's name and UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"))]
    pub processing_job_name: Option<String>,

    /// The container image and how to run it.
    pub app_specification: AppSpecification,

    /// Environment variables set in the container (at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 100))]
    #[schemars(extend("x-kubernetes-validations" = [rules::ENVIRONMENT_NAMES, rules::ENVIRONMENT_VALUES]))]
    pub environment: Option<BTreeMap<String, String>>,

    /// Associates the job with a SageMaker experiment, trial and trial component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment_config: Option<ExperimentConfig>,

    /// Networking options: the VPC (subnets and security groups), network isolation and
    /// inter-container traffic encryption. Without `vpcConfig` the job runs outside any VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_config: Option<NetworkConfig>,

    /// Inputs of the job (at most 10), downloaded into the container before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-validations" = [rules::INPUT_NAMES_UNIQUE, rules::INPUT_LOCAL_PATHS_UNIQUE]))]
    pub processing_inputs: Option<Vec<ProcessingInput>>,

    /// Where the job's outputs are uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_output_config: Option<ProcessingOutputConfig>,

    /// The compute the job runs on.
    pub processing_resources: ProcessingResources,

    /// ARN of the IAM role SageMaker assumes to run the job.
    #[serde(rename = "roleARN")]
    #[schemars(
        length(min = 20, max = 2048),
        regex(pattern = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
    )]
    pub role_arn: String,

    /// Time limit of the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_condition: Option<ProcessingStoppingCondition>,

    /// Tags of the SageMaker job (at most 46: SageMaker allows 50 and the controller may add four
    /// of its own, `sagemaker.processing.dev/{namespace,name,uid}` at creation and
    /// `sagemaker.processing.dev/retained` when a resource with `deletionPolicy: Retain` is
    /// deleted). Keys are unique and do not start with `aws:` (AWS's) or
    /// `sagemaker.processing.dev/` (the controller's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 46))]
    #[schemars(extend("x-kubernetes-validations" = [rules::TAG_KEYS_UNIQUE, rules::TAG_KEYS_NOT_AWS, rules::TAG_KEYS_NOT_CONTROLLER]))]
    pub tags: Option<Vec<Tag>>,

    /// AWS region of the job. Default: the `services.k8s.aws/region` annotation, else the
    /// controller's default region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"))]
    pub region: Option<String>,

    /// What happens to the SageMaker job when this resource is deleted: `Stop` (default) stops
    /// a running job first; `Retain` leaves it running. ACK's annotation
    /// `services.k8s.aws/deletion-policy: retain` is honoured too. May be changed at any time:
    /// the policy in force when the resource is deleted applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// How the controller validates the job's VPC network before creating the job. May be
    /// changed at any time (it steers only the controller): switching a resource blocked by its
    /// network to `Warn` lets the job be created; a job already created is not validated again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_validation: Option<NetworkValidation>,
}

/// The container image and how to run it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSpecification {
    /// The container image to run (an ECR image URI).
    #[serde(rename = "imageURI")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^.*$"))]
    pub image_uri: String,

    /// The entrypoint of the container (1 to 100 items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 100),
        inner(length(min = 1, max = 256), regex(pattern = r"^.*$"))
    )]
    pub container_entrypoint: Option<Vec<String>>,

    /// Arguments passed to the entrypoint (1 to 100 items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100), inner(length(max = 256), regex(pattern = r"^.*$")))]
    pub container_arguments: Option<Vec<String>>,
}

/// Associates the job with a SageMaker experiment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentConfig {
    /// Name of an existing experiment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 120), regex(pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}$"))]
    pub experiment_name: Option<String>,
    /// Name of an existing trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 120), regex(pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}$"))]
    pub trial_name: Option<String>,
    /// Display name of the trial component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 120), regex(pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}$"))]
    pub trial_component_display_name: Option<String>,
    /// Name of the experiment run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 120), regex(pattern = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,119}$"))]
    pub run_name: Option<String>,
}

/// Networking options of the job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    /// Encrypt traffic between the containers of a distributed job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_inter_container_traffic_encryption: Option<bool>,
    /// Give the container no network access at all. Checks about the container's own traffic
    /// (internet, interface endpoints) are then skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_network_isolation: Option<bool>,
    /// The VPC subnets and security groups the job's network interfaces join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

/// The subnets and security groups of the job's elastic network interfaces.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VpcConfig {
    /// Security group IDs (1 to 5, no repeats), all in the subnets' VPC.
    #[serde(rename = "securityGroupIDs")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(
        length(min = 1, max = 5),
        inner(length(max = 32), regex(pattern = r"^sg-[0-9a-z]+$"))
    )]
    pub security_group_ids: Vec<String>,
    /// Subnet IDs (1 to 16, no repeats), all in one VPC.
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[schemars(
        length(min = 1, max = 16),
        inner(length(max = 32), regex(pattern = r"^subnet-[0-9a-z]+$"))
    )]
    pub subnets: Vec<String>,
}

/// One input of the job: exactly one of `s3Input` or `datasetDefinition`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [rules::INPUT_ONE_SOURCE]))]
pub struct ProcessingInput {
    /// Name of the input, unique within the job.
    #[schemars(length(min = 1, max = 256))]
    pub input_name: String,
    /// Whether the input is managed by the application (not downloaded by SageMaker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_managed: Option<bool>,
    /// An S3 location to download into the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_input: Option<ProcessingS3Input>,
    /// An Athena or Redshift query whose results are the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_definition: Option<DatasetDefinition>,
}

/// An S3 input.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingS3Input {
    /// The S3 URI of the input (`s3://bucket/prefix` or an `https://` S3 URL).
    #[serde(rename = "s3URI")]
    #[schemars(length(max = 1024), regex(pattern = r"^(https|s3)://([^/]+)/?(.*)$"))]
    pub s3_uri: String,
    /// Where the input is made available in the container, under `/opt/ml/processing/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^/opt/ml/processing/.*$"))]
    pub local_path: Option<String>,
    /// Whether `s3URI` is a prefix or a manifest file.
    #[serde(rename = "s3DataType")]
    pub s3_data_type: S3DataType,
    /// How the input reaches the container.
    #[serde(rename = "s3InputMode", default, skip_serializing_if = "Option::is_none")]
    pub s3_input_mode: Option<S3InputMode>,
    /// Whether every instance gets all data or a shard.
    #[serde(rename = "s3DataDistributionType", default, skip_serializing_if = "Option::is_none")]
    pub s3_data_distribution_type: Option<DataDistributionType>,
    /// Whether the data is compressed (Pipe mode only).
    #[serde(rename = "s3CompressionType", default, skip_serializing_if = "Option::is_none")]
    pub s3_compression_type: Option<S3CompressionType>,
}

/// An input produced by a query.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [rules::DATASET_ONE_SOURCE]))]
pub struct DatasetDefinition {
    /// An Athena query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub athena_dataset_definition: Option<AthenaDatasetDefinition>,
    /// A Redshift query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redshift_dataset_definition: Option<RedshiftDatasetDefinition>,
    /// Whether every instance gets all data or a shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_distribution_type: Option<DataDistributionType>,
    /// How the input reaches the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_mode: Option<InputMode>,
    /// Where the input is made available in the container, under `/opt/ml/processing/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^/opt/ml/processing/.*$"))]
    pub local_path: Option<String>,
}

/// An Athena query input.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AthenaDatasetDefinition {
    /// The Athena data catalog.
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[\x{20}-\x{D7FF}\x{E000}-\x{FFFD}\x{10000}-\x{10FFFF}\t]*$")
    )]
    pub catalog: String,
    /// The Athena database.
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^.*$"))]
    pub database: String,
    /// The SQL query.
    #[schemars(length(min = 1, max = 4096))]
    pub query_string: String,
    /// Where Athena writes the query results.
    #[serde(rename = "outputS3URI")]
    #[schemars(length(max = 1024), regex(pattern = r"^(https|s3)://([^/]+)/?(.*)$"))]
    pub output_s3_uri: String,
    /// Format of the query results.
    #[schemars(extend("enum" = ["PARQUET", "ORC", "AVRO", "JSON", "TEXTFILE"]))]
    pub output_format: String,
    /// Athena workgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub work_group: Option<String>,
    /// KMS key encrypting the results.
    #[serde(rename = "kmsKeyID", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^[a-zA-Z0-9:/_-]*$"))]
    pub kms_key_id: Option<String>,
    /// Compression of the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["GZIP", "SNAPPY", "ZLIB"]))]
    pub output_compression: Option<String>,
}

/// A Redshift query input.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedshiftDatasetDefinition {
    /// The Redshift cluster.
    #[serde(rename = "clusterID")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^.*$"))]
    pub cluster_id: String,
    /// The database.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^.*$"))]
    pub database: String,
    /// The database user.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^.*$"))]
    pub db_user: String,
    /// The SQL query.
    #[schemars(length(min = 1, max = 4096))]
    pub query_string: String,
    /// Role Redshift assumes to write the results.
    #[serde(rename = "clusterRoleARN")]
    #[schemars(
        length(min = 20, max = 2048),
        regex(pattern = r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
    )]
    pub cluster_role_arn: String,
    /// Where Redshift writes the query results.
    #[serde(rename = "outputS3URI")]
    #[schemars(length(max = 1024), regex(pattern = r"^(https|s3)://([^/]+)/?(.*)$"))]
    pub output_s3_uri: String,
    /// Format of the query results.
    #[schemars(extend("enum" = ["PARQUET", "CSV"]))]
    pub output_format: String,
    /// KMS key encrypting the results.
    #[serde(rename = "kmsKeyID", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^[a-zA-Z0-9:/_-]*$"))]
    pub kms_key_id: Option<String>,
    /// Compression of the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["None", "GZIP", "SNAPPY", "ZSTD", "BZIP2"]))]
    pub output_compression: Option<String>,
}

/// The job's outputs.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingOutputConfig {
    /// Outputs of the job (1 to 10), with unique names.
    #[schemars(length(min = 1, max = 10))]
    #[schemars(extend("x-kubernetes-validations" = [rules::OUTPUT_NAMES_UNIQUE]))]
    pub outputs: Vec<ProcessingOutput>,
    /// KMS key encrypting the outputs.
    #[serde(rename = "kmsKeyID", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^[a-zA-Z0-9:/_-]*$"))]
    pub kms_key_id: Option<String>,
}

/// One output of the job: exactly one of `s3Output` or `featureStoreOutput`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [rules::OUTPUT_ONE_DESTINATION]))]
pub struct ProcessingOutput {
    /// Name of the output, unique within the job.
    #[schemars(length(min = 1, max = 256))]
    pub output_name: String,
    /// Where the output is uploaded in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_output: Option<ProcessingS3Output>,
    /// A SageMaker Feature Store feature group receiving the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_store_output: Option<FeatureStoreOutput>,
    /// Whether the output is managed by the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_managed: Option<bool>,
}

/// An S3 output.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingS3Output {
    /// The S3 URI the output is uploaded to.
    #[serde(rename = "s3URI")]
    #[schemars(length(max = 1024), regex(pattern = r"^(https|s3)://([^/]+)/?(.*)$"))]
    pub s3_uri: String,
    /// The directory in the container whose content is uploaded, under `/opt/ml/processing/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^/opt/ml/processing/.*$"))]
    pub local_path: Option<String>,
    /// Upload continuously or at the end of the job.
    #[serde(rename = "s3UploadMode")]
    pub s3_upload_mode: S3UploadMode,
}

/// A Feature Store output.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeatureStoreOutput {
    /// Name of the feature group.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-zA-Z0-9]([_-]*[a-zA-Z0-9]){0,63}$"))]
    pub feature_group_name: String,
}

/// The compute the job runs on.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingResources {
    /// The instances of the job.
    pub cluster_config: ProcessingClusterConfig,
}

/// The instances of the job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingClusterConfig {
    /// Number of instances (1 to 100). Each needs two private IPs in the subnets.
    #[schemars(range(min = 1, max = 100))]
    pub instance_count: i32,
    /// The ML instance type, e.g. `ml.m5.xlarge`: one of the values SageMaker's API model lists
    /// for processing jobs (`ProcessingInstanceType`, flex types such as `ml.m7i-flex.large`
    /// included).
    #[schemars(extend("enum" = super::instance_types::PROCESSING_INSTANCE_TYPES.as_slice()))]
    pub instance_type: String,
    /// Size of the ML storage volume in GB (1 to 16384).
    #[serde(rename = "volumeSizeInGB")]
    #[schemars(range(min = 1, max = 16384))]
    pub volume_size_in_gb: i32,
    /// KMS key encrypting the storage volume.
    #[serde(rename = "volumeKMSKeyID", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^[a-zA-Z0-9:/_-]*$"))]
    pub volume_kms_key_id: Option<String>,
}

/// Time limit of the job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingStoppingCondition {
    /// Maximum run time in seconds (1 to 777600, nine days).
    #[schemars(range(min = 1, max = 777600))]
    pub max_runtime_in_seconds: i32,
}

/// A tag of the SageMaker job.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    /// Tag key.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"))]
    pub key: String,
    /// Tag value: letters, digits, spaces and `_ . : / = + - @` (SageMaker's pattern).
    #[serde(default)]
    #[schemars(length(max = 256), regex(pattern = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"))]
    pub value: String,
}

/// Whether an S3 URI is a prefix or a manifest file.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum S3DataType {
    /// A manifest file listing the objects.
    ManifestFile,
    /// A key prefix: every object under it.
    S3Prefix,
}

/// How input data reaches the container.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum S3InputMode {
    /// Streamed through a pipe.
    Pipe,
    /// Downloaded before the job starts.
    File,
    /// Not in SageMaker's API model for processing inputs (`ProcessingS3InputMode` is Pipe or
    /// File): refused at apply, read only so that an object stored before is not malformed.
    #[schemars(skip)]
    FastFile,
}

/// How input data reaches the container (dataset definitions).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum InputMode {
    /// Streamed through a pipe.
    Pipe,
    /// Downloaded before the job starts.
    File,
}

/// Whether every instance gets all the data or a shard of it.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DataDistributionType {
    /// Every instance gets all data.
    FullyReplicated,
    /// Each instance gets a shard by S3 key.
    ShardedByS3Key,
}

/// Compression of S3 input data.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum S3CompressionType {
    /// Not compressed.
    None,
    /// Gzip-compressed.
    Gzip,
}

/// When outputs are uploaded.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum S3UploadMode {
    /// Uploaded while the job runs.
    Continuous,
    /// Uploaded when the job ends.
    EndOfJob,
}

/// What happens to the SageMaker job when this resource is deleted. `Stop` (the default): a
/// job still running is stopped (StopProcessingJob), and the resource goes once the job has
/// ended. `Retain`: the job is left as it is and the resource goes at once. Without this field,
/// ACK's annotation `services.k8s.aws/deletion-policy: retain` is honoured. May be changed at any
/// time: the policy in force when the resource is deleted applies.
// This text, not the field's, is what `kubectl explain` shows: the CRD's schema of an optional
// enum takes the enum's description (tests/admission.rs checks the explain output).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Stop the job if it is still running, then release the resource.
    #[default]
    Stop,
    /// Leave the job as it is and release the resource at once.
    Retain,
}

/// How the network is validated before the job is created.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkValidation {
    /// `Enforce` (default): an Error finding stops the job from being created. `Warn`: the job
    /// is created anyway and the findings are kept in status. `Skip`: no validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ValidationMode>,
    /// The container needs the internet: each subnet must route to a NAT gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_internet: Option<bool>,
    /// AWS services the container calls besides S3 (e.g. `sts`, `kms`, `logs`, `ecr.api`,
    /// `ecr.dkr`, `secretsmanager`): without a NAT path, each needs an interface endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9][a-z0-9.\-]*$"))
    )]
    pub required_services: Option<Vec<String>>,
}

/// What an Error finding of the network validation does. `Enforce` (the default): it stops the
/// job from being created; the resource waits (Stalled, reason NetworkInvalid) and is validated
/// again every revalidation interval (5 minutes by default) or at once when the annotation
/// `sagemaker.processing.dev/revalidate` gets a new value. `Warn`: the job is created
/// anyway and the findings are kept in status and Events. `Skip`: the network is not validated
/// and EC2 is not read. May be changed at any time until the job is created; `validate` judges a
/// job by this mode too (only Enforce makes it exit 1).
// This text, not the field's, is what `kubectl explain` shows: the CRD's schema of an optional
// enum takes the enum's description (tests/admission.rs checks the explain output).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ValidationMode {
    /// Error findings block the job.
    #[default]
    Enforce,
    /// Findings are reported; the job is created anyway.
    Warn,
    /// No validation.
    Skip,
}

impl ProcessingJobSpec {
    /// The VPC configuration, when the job runs in a VPC.
    pub fn vpc_config(&self) -> Option<&VpcConfig> {
        self.network_config.as_ref()?.vpc_config.as_ref()
    }

    /// Whether the container runs without any network.
    pub fn network_isolation(&self) -> bool {
        self.network_config
            .as_ref()
            .and_then(|n| n.enable_network_isolation)
            .unwrap_or(false)
    }

    /// The validation mode in force (default `Enforce`).
    pub fn validation_mode(&self) -> ValidationMode {
        self.network_validation
            .as_ref()
            .and_then(|v| v.mode)
            .unwrap_or_default()
    }

    /// Whether the job declared that its container needs the internet.
    pub fn requires_internet(&self) -> bool {
        self.network_validation
            .as_ref()
            .and_then(|v| v.requires_internet)
            .unwrap_or(false)
    }

    /// AWS services besides S3 that the job declared it needs.
    pub fn required_services(&self) -> &[String] {
        self.network_validation
            .as_ref()
            .and_then(|v| v.required_services.as_deref())
            .unwrap_or(&[])
    }

    /// S3 URIs the job reads.
    pub fn input_uris(&self) -> impl Iterator<Item = &str> {
        self.processing_inputs
            .iter()
            .flatten()
            .filter_map(|i| i.s3_input.as_ref())
            .map(|s| s.s3_uri.as_str())
    }

    /// S3 URIs the job writes.
    pub fn output_uris(&self) -> impl Iterator<Item = &str> {
        self.processing_output_config
            .iter()
            .flat_map(|c| c.outputs.iter())
            .filter_map(|o| o.s3_output.as_ref())
            .map(|s| s.s3_uri.as_str())
    }

    /// Number of instances.
    pub fn instance_count(&self) -> i32 {
        self.processing_resources.cluster_config.instance_count
    }

    /// The spec with each subnet and security group listed once (first occurrence kept). The CRD
    /// refuses repeats, but an object stored before it did may have them, and a subnet read
    /// twice would count its free IPs twice.
    pub fn with_unique_network_ids(&self) -> std::borrow::Cow<'_, ProcessingJobSpec> {
        fn unique(ids: &[String]) -> Vec<String> {
            let mut seen = std::collections::BTreeSet::new();
            ids.iter().filter(|id| seen.insert(id.as_str())).cloned().collect()
        }
        let Some(vpc) = self.vpc_config() else {
            return std::borrow::Cow::Borrowed(self);
        };
        let (subnets, groups) = (unique(&vpc.subnets), unique(&vpc.security_group_ids));
        if subnets.len() == vpc.subnets.len() && groups.len() == vpc.security_group_ids.len() {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut spec = self.clone();
        if let Some(v) = spec.network_config.as_mut().and_then(|n| n.vpc_config.as_mut()) {
            v.subnets = subnets;
            v.security_group_ids = groups;
        }
        std::borrow::Cow::Owned(spec)
    }
}
