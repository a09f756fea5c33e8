//! The execution-role pre-flight end to end: roles created in moto's IAM (inline and managed
//! policies, trust policies, permissions boundaries), read by the `validate` binary over HTTP,
//! both ways: a complete role passes, each broken one gives its code.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;
use smpc_test_support as support;
use support::iam::{complete_policy, create_role, job_policy, RoleSpec, ENI_ACTIONS};
use support::vpc::{topology, Topology};
use support::{controller_bin, output_with_stdin, stack, unique_suffix};

const INFO_ONLY: [&str; 2] = ["FlowLogsDisabled", "PackageRepositoriesReachable"];

struct Outcome {
    code: i32,
    findings: Vec<Value>,
    stderr: String,
}

impl Outcome {
    fn codes(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.findings.iter().filter_map(|f| f["code"].as_str()).collect();
        c.sort();
        c
    }

    fn message(&self, code: &str) -> &str {
        self.findings
            .iter()
            .find(|f| f["code"] == code)
            .and_then(|f| f["message"].as_str())
            .unwrap_or_default()
    }
}

/// `validate -o json` of the topology's job run with `role`; `env` overrides the stack's.
fn validate(t: &Topology, role: &str, env: &[(&str, &str)]) -> Outcome {
    validate_jobs(t, role, 1, env)
}

/// The same for `jobs` jobs with the same role (their findings: the first job's).
fn validate_jobs(t: &Topology, role: &str, jobs: usize, env: &[(&str, &str)]) -> Outcome {
    let manifest = (0..jobs)
        .map(|i| t.manifest(&format!("role-check-{i}"), 1, ""))
        .collect::<String>()
        .replace("arn:aws:iam::123456789012:role/SageMakerProcessingRole", role);
    let mut cmd = stack().command(controller_bin());
    cmd.args(["validate", "-f", "-", "-o", "json", "--call-stats"])
        .envs(env.iter().copied());
    let out = output_with_stdin(cmd, &manifest);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Outcome {
        code: out.status.code().unwrap_or(-1),
        findings: json["jobs"][0]["findings"].as_array().cloned().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn healthy(prefix: &str) -> Topology {
    let t = topology(prefix, true).await;
    t.s3_gateway_endpoint(None).await;
    t
}

fn name(what: &str) -> String {
    format!("SageMakerProcessing-{what}-{}", unique_suffix())
}

#[tokio::test]
async fn a_complete_inline_role_passes() {
    let t = healthy("10.60").await;
    let role = create_role(
        &name("inline"),
        RoleSpec {
            inline: vec![("job", complete_policy())],
            ..Default::default()
        },
    )
    .await;
    // Three jobs, one role: read once (the cache), from IAM (not assumed).
    let out = validate_jobs(&t, &role, 3, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.codes(), INFO_ONLY);
    assert!(out.stderr.contains("\"GetRole\":1,"), "{}", out.stderr);
    assert!(out.stderr.contains("\"GetRolePolicy\":1"), "{}", out.stderr);
}

#[tokio::test]
async fn a_complete_managed_policy_passes() {
    let t = healthy("10.61").await;
    let role = create_role(
        &name("managed"),
        RoleSpec {
            managed: vec![("job", complete_policy())],
            ..Default::default()
        },
    )
    .await;
    let out = validate(&t, &role, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.codes(), INFO_ONLY);
    assert!(out.stderr.contains("\"GetPolicyVersion\":1"), "{}", out.stderr);
}

#[tokio::test]
async fn missing_eni_permissions_block() {
    let t = healthy("10.62").await;
    let eni: Vec<&str> = ENI_ACTIONS
        .iter()
        .copied()
        .filter(|a| *a != "ec2:CreateNetworkInterfacePermission")
        .collect();
    let role = create_role(
        &name("no-eni"),
        RoleSpec {
            inline: vec![("job", job_policy(&eni, &["s3:*"]))],
            ..Default::default()
        },
    )
    .await;
    let out = validate(&t, &role, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.codes(),
        [
            "FlowLogsDisabled",
            "PackageRepositoriesReachable",
            "RoleMissingVpcPermissions"
        ]
    );
    assert!(out
        .message("RoleMissingVpcPermissions")
        .contains("ec2:CreateNetworkInterfacePermission (no policy of the role allows it)"));
}

#[tokio::test]
async fn a_trust_policy_without_sagemaker_blocks() {
    let t = healthy("10.63").await;
    let trust = support::iam::SAGEMAKER_TRUST.replace("sagemaker.amazonaws.com", "ec2.amazonaws.com");
    let role = create_role(
        &name("ec2-trust"),
        RoleSpec {
            trust: Some(&trust),
            inline: vec![("job", complete_policy())],
            ..Default::default()
        },
    )
    .await;
    let out = validate(&t, &role, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.codes(),
        [
            "FlowLogsDisabled",
            "PackageRepositoriesReachable",
            "RoleNotAssumableBySageMaker"
        ]
    );
}

#[tokio::test]
async fn a_missing_output_permission_warns() {
    let t = healthy("10.64").await;
    let role = create_role(
        &name("no-put"),
        RoleSpec {
            inline: vec![("job", job_policy(ENI_ACTIONS, &["s3:GetObject", "s3:ListBucket"]))],
            ..Default::default()
        },
    )
    .await;
    let out = validate(&t, &role, &[]);
    // A bucket policy of the role's account could grant it: a Warning, not a block.
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.codes(),
        [
            "FlowLogsDisabled",
            "PackageRepositoriesReachable",
            "RoleS3AccessNotGranted"
        ]
    );
    assert!(out
        .message("RoleS3AccessNotGranted")
        .contains("s3:PutObject on s3://ml-output/features/"));
}

#[tokio::test]
async fn an_explicit_deny_blocks() {
    let t = healthy("10.65").await;
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Sid":"NoFeatures","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::ml-output/*"}]}"#;
    let role = create_role(
        &name("deny"),
        RoleSpec {
            inline: vec![("job", complete_policy()), ("guard", deny.to_string())],
            ..Default::default()
        },
    )
    .await;
    let out = validate(&t, &role, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.codes(),
        ["FlowLogsDisabled", "PackageRepositoriesReachable", "RoleS3AccessDenied"]
    );
    assert!(out.message("RoleS3AccessDenied").contains("NoFeatures"));
}

#[tokio::test]
async fn a_nonexistent_role_blocks() {
    let t = healthy("10.66").await;
    let role = format!("arn:aws:iam::123456789012:role/{}", name("missing"));
    let out = validate(&t, &role, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.codes(),
        ["FlowLogsDisabled", "PackageRepositoriesReachable", "RoleNotFound"]
    );
}

#[tokio::test]
async fn a_boundary_that_removes_an_eni_action_blocks() {
    let t = healthy("10.67").await;
    let boundary = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"ec2:DeleteNetworkInterface*","Resource":"*"}]}"#;
    let role = create_role(
        &name("boundary"),
        RoleSpec {
            managed: vec![("job", complete_policy())],
            boundary: Some(boundary.to_string()),
            ..Default::default()
        },
    )
    .await;
    let out = validate(&t, &role, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.codes(),
        [
            "FlowLogsDisabled",
            "PackageRepositoriesReachable",
            "RoleMissingVpcPermissions"
        ]
    );
    let message = out.message("RoleMissingVpcPermissions");
    assert!(
        message.contains("ec2:DeleteNetworkInterface (the permissions boundary does not allow it)"),
        "{message}"
    );
    assert!(message.contains("ec2:DeleteNetworkInterfacePermission"), "{message}");
}

/// IAM refusing the reader, as AWS answers it: moto enforces IAM for a whole server or not at
/// all (and the stack's is shared by every test), so an HTTP server here gives IAM's
/// `AccessDenied` answer to every request.
fn refusing_iam() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 8192];
            let _ = stream.read(&mut request);
            let body = r#"<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/ci/runner is not authorized to perform: iam:GetRole</Message></Error><RequestId>4a1f</RequestId></ErrorResponse>"#;
            let _ = write!(
                stream,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn iam_read_refused_is_info_and_does_not_block() {
    let t = healthy("10.68").await;
    let iam = refusing_iam();
    let out = validate(
        &t,
        "arn:aws:iam::123456789012:role/SageMakerProcessingRole",
        &[("AWS_ENDPOINT_URL_IAM", &iam)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.codes(),
        ["FlowLogsDisabled", "PackageRepositoriesReachable", "RoleNotChecked"]
    );
    let message = out.message("RoleNotChecked");
    assert!(message.contains("AccessDenied"), "{message}");
    assert!(message.contains("may not read IAM"), "{message}");
}

/// The same checks in the controller: a role Error blocks the job in Enforce mode, beside the
/// network's findings, and nothing is created.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_blocks_a_job_whose_role_lacks_the_eni_permissions() {
    use support::controller::{apply, condition, wait_job, ControllerProcess};
    let (t, ns) = support::vpc::healthy_setup("10.70", "role-block").await;
    // Destructured, the namespace is dropped (deleted) before its controller stops.
    let (_controller, ns) = (ControllerProcess::start(&ns, &[], &[]), ns);
    let eni: Vec<&str> = ENI_ACTIONS
        .iter()
        .copied()
        .filter(|a| !a.starts_with("ec2:Delete"))
        .collect();
    let role = create_role(
        &name("controller"),
        RoleSpec {
            inline: vec![("job", job_policy(&eni, &["s3:*"]))],
            ..Default::default()
        },
    )
    .await;
    let manifest = support::vpc::job_manifest_in(&ns, "no-delete", 1, &t.private, &[&t.sg], "")
        .replace("arn:aws:iam::123456789012:role/SageMakerProcessingRole", &role);
    apply(&manifest);
    let job = wait_job(&ns, "no-delete", "Stalled", Duration::from_secs(60), |j| {
        condition(j, "Stalled").is_some_and(|c| c.0 == "True")
    });
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("False".into(), "NetworkInvalid".into()))
    );
    let findings = job["status"]["network"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let missing = findings
        .iter()
        .find(|f| f["code"] == "RoleMissingVpcPermissions")
        .expect("RoleMissingVpcPermissions in status.network.findings");
    assert_eq!(missing["resource"], role.as_str());
    assert!(missing["message"]
        .as_str()
        .unwrap_or_default()
        .contains("ec2:DeleteNetworkInterface ("));
    assert!(job["status"]["processingJobARN"].is_null());
}
