//! Execution roles in moto's IAM and job logs in moto's CloudWatch Logs, as SageMaker meets and
//! writes them.

use super::stack;

/// The role every example and most tests name (`arn:aws:iam::123456789012:role/…`).
pub const PROCESSING_ROLE: &str = "SageMakerProcessingRole";

/// The trust policy SageMaker needs.
pub const SAGEMAKER_TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// The nine EC2 actions SageMaker performs with the role for a VPC job.
pub const ENI_ACTIONS: &[&str] = &[
    "ec2:CreateNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
];

/// A permissions policy with everything a processing job needs, on every bucket, in the
/// commercial and China partitions: `eni` the EC2 actions to leave in (all of [`ENI_ACTIONS`]
/// for a complete role), `s3` the S3 actions.
pub fn job_policy(eni: &[&str], s3: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": eni, "Resource": "*"},
            {"Effect": "Allow", "Action": s3, "Resource": "*"},
            {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], "Resource": ["arn:aws:logs:*:*:log-group:/aws/sagemaker/*", "arn:aws-cn:logs:*:*:log-group:/aws/sagemaker/*"]},
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["kms:CreateGrant", "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"], "Resource": "*"}
        ]
    })
    .to_string()
}

/// The complete policy.
pub fn complete_policy() -> String {
    job_policy(ENI_ACTIONS, &["s3:GetObject", "s3:ListBucket", "s3:PutObject"])
}

/// A role as a test wants it.
#[derive(Default)]
pub struct RoleSpec<'a> {
    pub trust: Option<&'a str>,
    /// Inline policies: (name, document).
    pub inline: Vec<(&'a str, String)>,
    /// Managed policies to create and attach: (name, document).
    pub managed: Vec<(&'a str, String)>,
    /// A managed policy to create and set as the permissions boundary.
    pub boundary: Option<String>,
}

/// Creates the role `name` (a fresh name per test: moto's IAM is shared by the whole run) and
/// returns its ARN.
pub async fn create_role(name: &str, spec: RoleSpec<'_>) -> String {
    let iam = stack().iam().await;
    let arn = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(spec.trust.unwrap_or(SAGEMAKER_TRUST))
        .send()
        .await
        .expect("create role")
        .role()
        .map(|r| r.arn().to_string())
        .expect("role arn");
    for (policy, document) in spec.inline {
        iam.put_role_policy()
            .role_name(name)
            .policy_name(policy)
            .policy_document(document)
            .send()
            .await
            .expect("put role policy");
    }
    for (policy, document) in spec.managed {
        let policy_arn = create_policy(&format!("{name}-{policy}"), &document).await;
        iam.attach_role_policy()
            .role_name(name)
            .policy_arn(policy_arn)
            .send()
            .await
            .expect("attach role policy");
    }
    if let Some(document) = spec.boundary {
        let policy_arn = create_policy(&format!("{name}-boundary"), &document).await;
        iam.put_role_permissions_boundary()
            .role_name(name)
            .permissions_boundary(policy_arn)
            .send()
            .await
            .expect("put permissions boundary");
    }
    arn
}

async fn create_policy(name: &str, document: &str) -> String {
    stack()
        .iam()
        .await
        .create_policy()
        .policy_name(name)
        .policy_document(document)
        .send()
        .await
        .expect("create policy")
        .policy()
        .and_then(|p| p.arn())
        .expect("policy arn")
        .to_string()
}

/// The role the examples and the end-to-end tests name, with the complete policy, in the IAM
/// of `region`'s partition: created once per moto server (a second call finds it).
pub async fn ensure_processing_role(region: &str) {
    let iam = stack().iam_for(region).await;
    if iam.get_role().role_name(PROCESSING_ROLE).send().await.is_err() {
        let created = iam
            .create_role()
            .role_name(PROCESSING_ROLE)
            .assume_role_policy_document(SAGEMAKER_TRUST)
            .send()
            .await;
        // Another test process may have created it in between.
        if let Err(e) = created {
            let text = format!("{e:?}");
            assert!(text.contains("EntityAlreadyExists"), "create {PROCESSING_ROLE}: {text}");
        }
    }
    // Written every time (the same document): a role left by an older run gets today's policy.
    iam.put_role_policy()
        .role_name(PROCESSING_ROLE)
        .policy_name("processing")
        .policy_document(complete_policy())
        .send()
        .await
        .expect("put the processing role's policy");
}

/// The log group SageMaker's agent writes processing jobs' streams into.
pub const JOB_LOG_GROUP: &str = "/aws/sagemaker/ProcessingJobs";

/// Milliseconds since the epoch, now: a log event's timestamp.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Creates `stream` in [`JOB_LOG_GROUP`] (and the group, shared by every job, unless it exists)
/// through `logs`, and writes `lines` (timestamp in ms, text) into it.
pub async fn put_log_lines(logs: &aws_sdk_cloudwatchlogs::Client, stream: &str, lines: &[(i64, &str)]) {
    let _ = logs.create_log_group().log_group_name(JOB_LOG_GROUP).send().await;
    logs.create_log_stream()
        .log_group_name(JOB_LOG_GROUP)
        .log_stream_name(stream)
        .send()
        .await
        .expect("create log stream");
    let events = lines.iter().map(|(timestamp, line)| {
        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(*timestamp)
            .message(*line)
            .build()
            .expect("log event")
    });
    logs.put_log_events()
        .log_group_name(JOB_LOG_GROUP)
        .log_stream_name(stream)
        .set_log_events(Some(events.collect()))
        .send()
        .await
        .expect("put log events");
}

/// Writes `lines` into the job's first log stream, as SageMaker's agent does
/// (`/aws/sagemaker/ProcessingJobs`, stream `<job>/algo-1-<timestamp>`).
pub async fn write_job_log(job_name: &str, lines: &[&str]) {
    let now = now_millis();
    let lines: Vec<(i64, &str)> = lines.iter().enumerate().map(|(i, l)| (now + i as i64, *l)).collect();
    put_log_lines(&stack().logs().await, &format!("{job_name}/algo-1-1700000000"), &lines).await;
}
