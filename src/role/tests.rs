//! Role checks, both ways: a complete role passes, each missing piece gives its code.

use std::sync::Arc;

use super::*;
use crate::api::{NetworkConfig, ProcessingJobSpec, Severity, VpcConfig};

const ROLE: &str = "arn:aws:iam::123456789012:role/SageMakerProcessingRole";
const REGION: &str = "us-east-1";

fn spec() -> ProcessingJobSpec {
    let mut spec: ProcessingJobSpec = serde_json::from_value(serde_json::json!({
        "roleARN": ROLE,
        "appSpecification": {"imageURI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/prep:1"},
        "processingResources": {"clusterConfig": {"instanceCount": 1, "instanceType": "ml.m5.xlarge", "volumeSizeInGB": 30}},
        "processingInputs": [{"inputName": "in", "s3Input": {"s3URI": "s3://in-bucket/data/", "localPath": "/opt/ml/processing/input", "s3DataType": "S3Prefix"}}],
        "processingOutputConfig": {"outputs": [{"outputName": "out", "s3Output": {"s3URI": "s3://out-bucket/results", "localPath": "/opt/ml/processing/output", "s3UploadMode": "EndOfJob"}}]},
    }))
    .expect("fixture spec");
    spec.network_config = Some(NetworkConfig {
        vpc_config: Some(VpcConfig {
            subnets: vec!["subnet-a".into()],
            security_group_ids: vec!["sg-1".into()],
        }),
        ..Default::default()
    });
    spec
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"sagemaker.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// What AmazonSageMakerFullAccess and a bucket policy would give, reduced to the job's needs.
const COMPLETE: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":["ec2:CreateNetworkInterface","ec2:CreateNetworkInterfacePermission","ec2:DeleteNetworkInterface","ec2:DeleteNetworkInterfacePermission","ec2:DescribeNetworkInterfaces","ec2:DescribeVpcs","ec2:DescribeDhcpOptions","ec2:DescribeSubnets","ec2:DescribeSecurityGroups"],"Resource":"*"},
  {"Effect":"Allow","Action":["s3:GetObject","s3:ListBucket","s3:PutObject"],"Resource":["arn:aws:s3:::in-bucket","arn:aws:s3:::in-bucket/*","arn:aws:s3:::out-bucket","arn:aws:s3:::out-bucket/*"]},
  {"Effect":"Allow","Action":["logs:CreateLogStream","logs:PutLogEvents","logs:CreateLogGroup"],"Resource":"arn:aws:logs:*:*:log-group:/aws/sagemaker/*"},
  {"Effect":"Allow","Action":["ecr:GetAuthorizationToken","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"],"Resource":"*"}
]}"#;

fn documents(trust: &str, policies: &[&str], boundary: Option<&str>) -> RoleFacts {
    RoleFacts::Read(Arc::new(RoleDocuments {
        arn: ROLE.into(),
        trust_policy: trust.into(),
        policies: policies
            .iter()
            .enumerate()
            .map(|(i, d)| NamedDocument {
                name: format!("policy-{i}"),
                document: d.to_string(),
            })
            .collect(),
        boundary: boundary.map(|d| NamedDocument {
            name: "arn:aws:iam::123456789012:policy/boundary".into(),
            document: d.into(),
        }),
    }))
}

fn run(spec: &ProcessingJobSpec, facts: &RoleFacts) -> Vec<Finding> {
    check(
        JobUnderCheck {
            spec,
            region: REGION,
            name: Some("prep-1"),
        },
        facts,
    )
}

fn codes(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn a_complete_role_has_no_findings() {
    assert_eq!(run(&spec(), &documents(TRUST, &[COMPLETE], None)), vec![]);
}

#[test]
fn permissions_split_over_several_policies_add_up() {
    let policy: serde_json::Value = serde_json::from_str(COMPLETE).expect("json");
    let parts: Vec<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| serde_json::json!({"Version": "2012-10-17", "Statement": [s]}).to_string())
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    assert_eq!(run(&spec(), &documents(TRUST, &parts, None)), vec![]);
}

#[test]
fn a_missing_role_is_an_error_and_an_unreadable_one_is_info() {
    let f = run(&spec(), &RoleFacts::NotFound);
    assert_eq!(codes(&f), ["RoleNotFound"]);
    assert_eq!(f[0].severity, Severity::Error);
    let f = run(
        &spec(),
        &RoleFacts::NotReadable {
            reason: "iam GetRole failed (AccessDenied): no".into(),
        },
    );
    assert_eq!(codes(&f), ["RoleNotChecked"]);
    assert_eq!(f[0].severity, Severity::Info);
    assert!(f[0].message.contains("AccessDenied"), "{}", f[0].message);
}

#[test]
fn a_trust_policy_for_another_service_is_an_error() {
    let ec2_trust = TRUST.replace("sagemaker.amazonaws.com", "ec2.amazonaws.com");
    let f = run(&spec(), &documents(&ec2_trust, &[COMPLETE], None));
    assert_eq!(codes(&f), ["RoleNotAssumableBySageMaker"]);
}

#[test]
fn confused_deputy_conditions_are_decided_from_the_job() {
    let with = |condition: &str| {
        format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"Service":"sagemaker.amazonaws.com"}},"Action":"sts:AssumeRole","Condition":{condition}}}]}}"#
        )
    };
    let own = with(
        r#"{"StringEquals":{"aws:SourceAccount":"123456789012"},"ArnLike":{"aws:SourceArn":"arn:aws:sagemaker:us-east-1:123456789012:processing-job/*"}}"#,
    );
    assert_eq!(run(&spec(), &documents(&own, &[COMPLETE], None)), vec![]);
    let other = with(r#"{"StringEquals":{"aws:SourceAccount":"999999999999"}}"#);
    assert_eq!(
        codes(&run(&spec(), &documents(&other, &[COMPLETE], None))),
        ["RoleNotAssumableBySageMaker"]
    );
    let org = with(r#"{"StringEquals":{"aws:SourceOrgID":"o-1"}}"#);
    let f = run(&spec(), &documents(&org, &[COMPLETE], None));
    assert_eq!(codes(&f), ["RolePolicyUnevaluable"]);
    assert!(f[0].message.contains("aws:SourceOrgID"), "{}", f[0].message);
}

#[test]
fn missing_eni_permissions_are_an_error_naming_the_actions() {
    let without = COMPLETE.replace(r#""ec2:CreateNetworkInterfacePermission","#, "");
    let f = run(&spec(), &documents(TRUST, &[&without], None));
    assert_eq!(codes(&f), ["RoleMissingVpcPermissions"]);
    assert!(
        f[0].message.contains("ec2:CreateNetworkInterfacePermission"),
        "{}",
        f[0].message
    );
    assert!(
        !f[0].message.contains("ec2:CreateNetworkInterface "),
        "{}",
        f[0].message
    );
    // Without vpcConfig SageMaker attaches nothing: not needed.
    let mut no_vpc = spec();
    no_vpc.network_config = None;
    assert_eq!(run(&no_vpc, &documents(TRUST, &[&without], None)), vec![]);
}

#[test]
fn describe_actions_need_resource_star() {
    let scoped = COMPLETE.replacen(
        r#""Resource":"*"}"#,
        r#""Resource":"arn:aws:ec2:us-east-1:123456789012:*"}"#,
        1,
    );
    let f = run(&spec(), &documents(TRUST, &[&scoped], None));
    assert_eq!(codes(&f), ["RoleMissingVpcPermissions"]);
    assert!(f[0].message.contains("ec2:DescribeVpcs"), "{}", f[0].message);
    assert!(
        !f[0].message.contains("ec2:CreateNetworkInterface "),
        "{}",
        f[0].message
    );
}

#[test]
fn a_missing_output_permission_is_a_warning_a_denied_one_an_error() {
    let no_put = COMPLETE.replace(r#","s3:PutObject""#, "");
    let f = run(&spec(), &documents(TRUST, &[&no_put], None));
    assert_eq!(codes(&f), ["RoleS3AccessNotGranted"]);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].message.contains("s3:PutObject on s3://out-bucket/results"),
        "{}",
        f[0].message
    );
    let deny = r#"{"Statement":[{"Sid":"NoResults","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::out-bucket/results/*"}]}"#;
    let f = run(&spec(), &documents(TRUST, &[COMPLETE, deny], None));
    assert_eq!(codes(&f), ["RoleS3AccessDenied"]);
    assert_eq!(f[0].severity, Severity::Error);
    assert!(f[0].message.contains("NoResults"), "{}", f[0].message);
}

#[test]
fn an_explicit_deny_on_eni_creation_wins_over_the_allow() {
    let deny = r#"{"Statement":[{"Sid":"NoEni","Effect":"Deny","Action":"ec2:CreateNetworkInterface","Resource":"arn:aws:ec2:*:*:subnet/*"}]}"#;
    let f = run(&spec(), &documents(TRUST, &[COMPLETE, deny], None));
    assert_eq!(codes(&f), ["RoleMissingVpcPermissions"]);
    assert!(f[0].message.contains("NoEni"), "{}", f[0].message);
}

#[test]
fn a_boundary_that_leaves_out_an_action_removes_it() {
    let boundary = r#"{"Statement":[{"Effect":"Allow","NotAction":"ec2:DeleteNetworkInterface","Resource":"*"}]}"#;
    let f = run(&spec(), &documents(TRUST, &[COMPLETE], Some(boundary)));
    assert_eq!(codes(&f), ["RoleMissingVpcPermissions"]);
    assert!(
        f[0].message
            .contains("ec2:DeleteNetworkInterface (the permissions boundary does not allow it)"),
        "{}",
        f[0].message
    );
    let everything = r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    assert_eq!(run(&spec(), &documents(TRUST, &[COMPLETE], Some(everything))), vec![]);
}

#[test]
fn undecidable_conditions_are_warnings_that_name_the_key() {
    let conditional = COMPLETE.replacen(
        r#""Resource":"*"}"#,
        r#""Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/team":"ml"}}}"#,
        1,
    );
    let f = run(&spec(), &documents(TRUST, &[&conditional], None));
    assert!(!f.is_empty());
    assert!(f.iter().all(|f| f.code == "RolePolicyUnevaluable"), "{f:?}");
    assert!(f[0].message.contains("aws:ResourceTag/team"), "{}", f[0].message);
}

#[test]
fn kms_keys_logs_and_ecr() {
    let mut s = spec();
    s.processing_resources.cluster_config.volume_kms_key_id = Some("1234abcd-12ab-34cd-56ef-1234567890ab".into());
    if let Some(o) = s.processing_output_config.as_mut() {
        o.kms_key_id = Some("alias/outputs".into());
    }
    let without_logs_and_ecr: String = {
        let policy: serde_json::Value = serde_json::from_str(COMPLETE).expect("json");
        let kept: Vec<_> = policy["Statement"].as_array().expect("statements")[..2].to_vec();
        serde_json::json!({"Statement": kept}).to_string()
    };
    let f = run(&s, &documents(TRUST, &[&without_logs_and_ecr], None));
    assert_eq!(
        codes(&f),
        [
            "RoleKmsAccessNotGranted",
            "RolePolicyUnevaluable",
            "RoleLogsAccessMissing",
            "RoleEcrPullNotGranted"
        ]
    );
    assert!(f[0].message.contains("kms:CreateGrant"), "{}", f[0].message);
    assert!(f[1].message.contains("alias/outputs"), "{}", f[1].message);
    assert_eq!(f[2].severity, Severity::Warning);
    // An image of another account (a SageMaker-owned one) is not pulled with the role's ECR
    // permissions alone: not checked.
    s.app_specification.image_uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1".into();
    assert!(!codes(&run(&s, &documents(TRUST, &[&without_logs_and_ecr], None))).contains(&"RoleEcrPullNotGranted"));
}

#[test]
fn an_unreadable_policy_is_a_warning_not_a_guess() {
    let f = run(&spec(), &documents(TRUST, &[COMPLETE, "{not json"], None));
    assert_eq!(codes(&f), ["RolePolicyUnevaluable"]);
    assert!(f[0].message.contains("policy-1"), "{}", f[0].message);
}

#[test]
fn ecr_image_uris() {
    assert_eq!(
        ecr_image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/prep:1.0"),
        Some(("123456789012", "eu-west-1", "team/prep"))
    );
    assert_eq!(
        ecr_image("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/prep@sha256:abc"),
        Some(("123456789012", "cn-north-1", "prep"))
    );
    assert_eq!(ecr_image("docker.io/library/python:3"), None);
    assert_eq!(ecr_image("public.ecr.aws/x/y:1"), None);
}

#[test]
fn explicit_denies_on_keys_and_images_are_errors() {
    let mut s = spec();
    s.processing_resources.cluster_config.volume_kms_key_id =
        Some("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab".into());
    let deny = r#"{"Statement":[{"Effect":"Deny","Action":["kms:CreateGrant","ecr:BatchGetImage"],"Resource":"*"}]}"#;
    let kms = r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let f = run(&s, &documents(TRUST, &[COMPLETE, kms, deny], None));
    assert_eq!(codes(&f), ["RoleKmsAccessDenied", "RoleEcrPullDenied"]);
    assert!(f.iter().all(|f| f.severity == Severity::Error));
}

#[test]
fn every_role_code_has_a_case_here() {
    let covered = [
        "RoleNotFound",
        "RoleNotChecked",
        "RoleNotAssumableBySageMaker",
        "RoleMissingVpcPermissions",
        "RoleS3AccessDenied",
        "RoleS3AccessNotGranted",
        "RoleKmsAccessDenied",
        "RoleKmsAccessNotGranted",
        "RoleLogsAccessMissing",
        "RoleEcrPullDenied",
        "RoleEcrPullNotGranted",
        "RolePolicyUnevaluable",
    ];
    for code in Code::ALL.iter().filter(|c| c.requirement().starts_with('R')) {
        assert!(covered.contains(&code.as_str()), "no role test for {code}");
    }
}
