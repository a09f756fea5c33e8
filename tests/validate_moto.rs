//! Network validation end to end: real VPC topologies built in moto with `aws-sdk-ec2`, checked
//! through the `validate` binary's JSON output and exit code.

use smpc_test_support as support;

use aws_sdk_ec2::types::RuleAction;
use serde_json::Value;
use support::vpc::{job_manifest, topology};
use support::{controller_bin, output_with_stdin, stack};

struct Outcome {
    code: i32,
    json: Value,
    stderr: String,
}

impl Outcome {
    fn codes(&self, job: usize) -> Vec<String> {
        let mut c: Vec<String> = self.json["jobs"][job]["findings"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x["code"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        c.sort();
        c
    }
}

fn validate(manifest: &str, extra_args: &[&str]) -> Outcome {
    let mut cmd = stack().command(controller_bin());
    cmd.args(["validate", "-f", "-", "-o", "json"]).args(extra_args);
    let out = output_with_stdin(cmd, manifest);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Outcome {
        code: out.status.code().unwrap_or(-1),
        json,
        stderr,
    }
}

const INFO_ONLY: [&str; 2] = ["FlowLogsDisabled", "PackageRepositoriesReachable"];

#[tokio::test]
async fn private_subnets_with_an_s3_gateway_endpoint_pass() {
    let t = topology("10.10", true).await;
    t.s3_gateway_endpoint(None).await;
    let out = validate(&t.manifest("private-endpoint", 2, ""), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.codes(0), INFO_ONLY);
    assert_eq!(out.json["jobs"][0]["vpcID"], Value::String(t.vpc.clone()));
    assert_eq!(out.json["jobs"][0]["namespace"], "ml");
    let keys: Vec<&String> = out.json["jobs"][0]["findings"][0]
        .as_object()
        .expect("finding")
        .keys()
        .collect();
    // A finding as in the resource's status, plus the manifest line it points at.
    assert_eq!(keys, ["code", "line", "message", "remediation", "resource", "severity"]);
}

#[tokio::test]
async fn a_restrictive_endpoint_policy_denies_the_output_bucket() {
    let t = topology("10.11", true).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"ReadInputs","Effect":"Allow","Principal":"*",
        "Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::ml-input","arn:aws:s3:::ml-input/*"]}]}"#;
    let endpoint = t.s3_gateway_endpoint(Some(policy)).await;
    let out = validate(&t.manifest("restrictive", 1, ""), &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.codes(0), ["FlowLogsDisabled", "S3EndpointPolicyDenies"]);
    let finding = &out.json["jobs"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "S3EndpointPolicyDenies")
        .cloned()
        .expect("finding");
    assert_eq!(finding["resource"], Value::String(endpoint));
    let message = finding["message"].as_str().expect("message");
    assert!(
        message.contains("s3:PutObject") && message.contains("s3://ml-output/features/"),
        "{message}"
    );
    assert_eq!(finding["severity"], "Error");
}

#[tokio::test]
async fn nat_in_a_public_subnet_gives_internet_and_s3() {
    let t = topology("10.12", true).await;
    t.nat_gateway_route().await;
    let out = validate(
        &t.manifest("nat", 1, "  networkValidation: {requiresInternet: true}\n"),
        &[],
    );
    assert_eq!(out.code, 0, "{} {}", out.stderr, out.json);
    assert_eq!(out.codes(0), ["FlowLogsDisabled"]);
}

#[tokio::test]
async fn a_route_straight_to_the_internet_gateway_is_not_internet() {
    let t = topology("10.13", true).await;
    t.igw_route().await;
    t.s3_gateway_endpoint(None).await;
    let out = validate(
        &t.manifest("igw", 1, "  networkValidation: {requiresInternet: true}\n"),
        &[],
    );
    assert_eq!(out.code, 1);
    let codes = out.codes(0);
    assert_eq!(
        codes.iter().filter(|c| *c == "InternetGatewayRouteWithoutNat").count(),
        2,
        "{codes:?}"
    );
    assert!(!codes.contains(&"NoInternetRoute".to_string()));
}

#[tokio::test]
async fn private_subnets_without_any_s3_path_have_no_s3_route() {
    let t = topology("10.14", true).await;
    let out = validate(&t.manifest("no-route", 1, ""), &[]);
    assert_eq!(out.code, 1);
    assert_eq!(out.codes(0), ["FlowLogsDisabled", "NoS3Route", "NoS3Route"]);
}

#[tokio::test]
async fn exhausted_small_subnets_cannot_hold_the_job() {
    let t = topology("10.15", true).await;
    t.s3_gateway_endpoint(None).await;
    let small = t
        .ec2
        .create_subnet()
        .vpc_id(&t.vpc)
        .cidr_block("10.15.9.0/28")
        .availability_zone("us-east-1c")
        .send()
        .await
        .expect("small subnet");
    let small = small.subnet().and_then(|s| s.subnet_id()).expect("id").to_string();
    t.ec2
        .associate_route_table()
        .route_table_id(&t.private_rtb)
        .subnet_id(&small)
        .send()
        .await
        .expect("associate");
    // Use up addresses the way other workloads would.
    for _ in 0..5 {
        t.ec2
            .create_network_interface()
            .subnet_id(&small)
            .send()
            .await
            .expect("eni");
    }
    let out = validate(
        &job_manifest("small", 4, std::slice::from_ref(&small), &[&t.sg], ""),
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.json);
    assert!(
        out.codes(0).contains(&"InsufficientSubnetIps".to_string()),
        "{:?}",
        out.codes(0)
    );
    let message = out.json["jobs"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "InsufficientSubnetIps")
        .map(|f| f["message"].to_string())
        .unwrap_or_default();
    assert!(
        message.contains("need 8 free private IPs") && message.contains(&small),
        "{message}"
    );
}

#[tokio::test]
async fn subnets_of_two_vpcs_and_a_foreign_group_are_refused() {
    let a = topology("10.16", true).await;
    let b = topology("10.17", true).await;
    a.s3_gateway_endpoint(None).await;
    let manifest = job_manifest(
        "mixed",
        1,
        &[a.private[0].clone(), b.private[0].clone()],
        &[&a.sg, &b.sg],
        "",
    );
    let out = validate(&manifest, &[]);
    assert_eq!(out.code, 1);
    let codes = out.codes(0);
    assert!(codes.contains(&"SubnetsInMultipleVpcs".to_string()), "{codes:?}");
    assert!(codes.contains(&"SecurityGroupVpcMismatch".to_string()), "{codes:?}");
}

#[tokio::test]
async fn a_network_acl_denying_443_blocks_s3() {
    let t = topology("10.18", true).await;
    t.s3_gateway_endpoint(None).await;
    let acl = t.ec2.create_network_acl().vpc_id(&t.vpc).send().await.expect("acl");
    let acl = acl
        .network_acl()
        .and_then(|a| a.network_acl_id())
        .expect("acl id")
        .to_string();
    for (n, egress, action, proto, ports) in [
        (90, true, RuleAction::Deny, "6", Some((443, 443))),
        (100, true, RuleAction::Allow, "-1", None),
        (100, false, RuleAction::Allow, "-1", None),
    ] {
        let mut req = t
            .ec2
            .create_network_acl_entry()
            .network_acl_id(&acl)
            .rule_number(n)
            .egress(egress)
            .rule_action(action)
            .protocol(proto)
            .cidr_block("0.0.0.0/0");
        if let Some((from, to)) = ports {
            req = req.port_range(aws_sdk_ec2::types::PortRange::builder().from(from).to(to).build());
        }
        req.send().await.expect("acl entry");
    }
    // Move the first private subnet onto the new ACL.
    let current = t
        .ec2
        .describe_network_acls()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("association.subnet-id")
                .values(&t.private[0])
                .build(),
        )
        .send()
        .await
        .expect("describe acls");
    let association = current
        .network_acls()
        .iter()
        .flat_map(|a| a.associations())
        .find(|x| x.subnet_id() == Some(t.private[0].as_str()))
        .and_then(|x| x.network_acl_association_id())
        .expect("association")
        .to_string();
    t.ec2
        .replace_network_acl_association()
        .association_id(association)
        .network_acl_id(&acl)
        .send()
        .await
        .expect("replace");
    let out = validate(&t.manifest("nacl", 1, ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    let blocked: Vec<String> = out.json["jobs"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "NetworkAclBlocksS3")
        .map(|f| f["resource"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(blocked, [t.private[0].clone()]);
}

#[tokio::test]
async fn dns_hostnames_off_is_a_warning() {
    let t = topology("10.19", false).await;
    t.s3_gateway_endpoint(None).await;
    let out = validate(&t.manifest("dns", 1, ""), &[]);
    assert_eq!(out.code, 0, "warnings do not fail validation");
    assert!(out.codes(0).contains(&"VpcDnsDisabled".to_string()));
}

#[tokio::test]
async fn unknown_ids_are_findings_and_bad_input_is_exit_2() {
    let t = topology("10.20", true).await;
    t.s3_gateway_endpoint(None).await;
    let manifest = job_manifest(
        "missing",
        1,
        &[t.private[0].clone(), "subnet-0000000000000dead".into()],
        &["sg-0000000000000dead", &t.sg],
        "",
    );
    let out = validate(&manifest, &[]);
    assert_eq!(out.code, 1);
    let codes = out.codes(0);
    assert!(
        codes.contains(&"SubnetNotFound".into()) && codes.contains(&"SecurityGroupNotFound".into()),
        "{codes:?}"
    );

    // Other kinds are skipped, not refused (GitOps streams mix them: tests/gitops.rs).
    let out = validate("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", &[]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("skipped: <stdin>: document 1: ConfigMap x")
            && out.stderr.contains("no ProcessingJob found"),
        "{}",
        out.stderr
    );
    let out = validate(&t.manifest("bad", 0, ""), &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("spec.processingResources.clusterConfig.instanceCount"),
        "{}",
        out.stderr
    );
    let out = stack()
        .command(controller_bin())
        .args(["validate", "-f", "/nonexistent.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn text_output_is_a_readable_table() {
    let t = topology("10.21", true).await;
    let mut cmd = stack().command(controller_bin());
    cmd.args(["validate", "-f", "-"]);
    let out = output_with_stdin(cmd, &t.manifest("text", 1, ""));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("ml/text (")
            && text.contains("Error   NoS3Route")
            && text.contains("fix: Create an S3 gateway endpoint"),
        "{text}"
    );
}

#[tokio::test]
async fn ec2_reads_are_batched_and_shared_per_vpc() {
    let t = topology("10.22", true).await;
    t.s3_gateway_endpoint(None).await;
    let one = validate(&t.manifest("single", 1, ""), &["--call-stats"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    let stats = |o: &Outcome| -> Value {
        let line = o
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("call stats line");
        serde_json::from_str(line).expect("stats json")
    };
    let single = stats(&one);
    for (op, n) in single["ec2"]["byOperation"].as_object().expect("ops") {
        // One call per resource kind; the VPC's two DNS attributes are one call each.
        let limit = if op == "DescribeVpcAttribute" { 2 } else { 1 };
        assert!(n.as_u64().unwrap_or(0) <= limit, "{op} called {n} times for one job");
    }
    let many: String = (0..100).map(|i| t.manifest(&format!("job-{i}"), 1, "")).collect();
    let hundred = validate(&many, &["--call-stats"]);
    assert_eq!(hundred.code, 0, "{}", hundred.stderr);
    assert_eq!(hundred.json["jobs"].as_array().map(Vec::len), Some(100));
    assert_eq!(
        stats(&hundred)["ec2"]["total"],
        single["ec2"]["total"],
        "100 jobs in one VPC cost more EC2 calls than one"
    );
}

// ---------- every example against a moto topology it is written for ----------

fn policy_file() -> String {
    std::fs::read_to_string(support::repo_root().join("examples/s3-endpoint-policy.json")).expect("policy")
}

#[tokio::test]
async fn example_private_s3_endpoint() {
    let t = topology("10.60", true).await;
    t.s3_gateway_endpoint(None).await;
    let out = validate(&t.example("processingjob-private-s3-endpoint.yaml"), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), INFO_ONLY);
}

#[tokio::test]
async fn example_nat_internet() {
    let t = topology("10.61", true).await;
    t.nat_gateway_route().await;
    let out = validate(&t.example("processingjob-nat-internet.yaml"), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), ["FlowLogsDisabled"]);
    // The same job in a VPC whose private subnets route straight to the internet gateway.
    let igw = topology("10.62", true).await;
    igw.igw_route().await;
    igw.s3_gateway_endpoint(None).await;
    let out = validate(&igw.example("processingjob-nat-internet.yaml"), &[]);
    assert_eq!(out.code, 1);
    assert!(out.codes(0).contains(&"InternetGatewayRouteWithoutNat".to_string()));
}

#[tokio::test]
async fn example_distributed() {
    let t = topology("10.63", true).await;
    t.s3_gateway_endpoint(None).await;
    t.interface_endpoint("sts").await;
    t.interface_endpoint("logs").await;
    let out = validate(&t.example("processingjob-distributed.yaml"), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), INFO_ONLY);
    // Without the interface endpoints (and no NAT), the services the job declared are missing.
    let bare = topology("10.64", true).await;
    bare.s3_gateway_endpoint(None).await;
    let out = validate(&bare.example("processingjob-distributed.yaml"), &[]);
    assert_eq!(
        out.codes(0).iter().filter(|c| *c == "MissingInterfaceEndpoint").count(),
        2,
        "{:?}",
        out.codes(0)
    );
}

#[tokio::test]
async fn example_restrictive_endpoint_policy() {
    let t = topology("10.65", true).await;
    t.s3_gateway_endpoint(Some(&policy_file())).await;
    let out = validate(&t.example("processingjob-restrictive-endpoint-policy.yaml"), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(
        out.codes(0),
        ["FlowLogsDisabled"],
        "package repositories are denied by the example policy"
    );
    // Writing to another bucket is refused before the job is created.
    let other = t
        .example("processingjob-restrictive-endpoint-policy.yaml")
        .replace("s3://example-ml-data/clean/", "s3://other-bucket/clean/");
    let out = validate(&other, &[]);
    assert_eq!(out.code, 1);
    assert!(out.codes(0).contains(&"S3EndpointPolicyDenies".to_string()));
}

#[tokio::test]
async fn example_network_isolation() {
    let t = topology("10.66", true).await;
    t.s3_gateway_endpoint(None).await;
    let out = validate(&t.example("processingjob-network-isolation.yaml"), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    let codes = out.codes(0);
    assert!(codes.contains(&"NetworkIsolationSkipsChecks".to_string()), "{codes:?}");
    assert!(
        !codes.contains(&"NoInternetRoute".to_string()),
        "the internet check is skipped with isolation"
    );
}

#[tokio::test]
async fn example_cross_region() {
    let t = support::vpc::topology_in("eu-west-1", "10.67", true).await;
    t.s3_gateway_endpoint(None).await;
    let out = validate(&t.example("processingjob-cross-region.yaml"), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.json["jobs"][0]["vpcID"], serde_json::Value::String(t.vpc.clone()));
    // The same IDs do not exist in the default region.
    let elsewhere = t
        .example("processingjob-cross-region.yaml")
        .replace("region: eu-west-1", "region: us-east-1");
    let out = validate(&elsewhere, &[]);
    assert!(out.codes(0).contains(&"SubnetNotFound".to_string()));
}

// ---------- the endpoint policy against what the job does (issue #11, item 5) ----------

/// The finding of `code` of the first job, if any.
fn finding(out: &Outcome, code: &str) -> Option<Value> {
    out.json["jobs"][0]["findings"]
        .as_array()?
        .iter()
        .find(|f| f["code"] == code)
        .cloned()
}

/// The job's input, read through the policy of a gateway endpoint, as one object.
#[tokio::test]
async fn a_policy_allowing_exactly_the_input_object_passes_and_not_its_folder() {
    let t = topology("10.71", true).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::ml-input"},
        {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::ml-input/code/job.py"},
        {"Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::ml-output/features/*"}]}"#;
    t.s3_gateway_endpoint(Some(policy)).await;
    let job_py = t
        .manifest("one-object", 1, "")
        .replace("s3://ml-input/raw/", "s3://ml-input/code/job.py");
    let out = validate(&job_py, &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), ["FlowLogsDisabled"]);
    // A folder input needs every object in it: the one object is not enough.
    let folder = t
        .manifest("one-object", 1, "")
        .replace("s3://ml-input/raw/", "s3://ml-input/code/");
    let out = validate(&folder, &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert_eq!(out.codes(0), ["FlowLogsDisabled", "S3EndpointPolicyDenies"]);
    let message = finding(&out, "S3EndpointPolicyDenies").expect("finding")["message"].to_string();
    assert!(message.contains("s3:GetObject on s3://ml-input/code/"), "{message}");
}

#[tokio::test]
async fn a_deny_on_a_sub_prefix_of_the_input_blocks_and_one_beside_it_does_not() {
    let policy = |denied: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::ml-input","arn:aws:s3:::ml-input/*","arn:aws:s3:::ml-output","arn:aws:s3:::ml-output/*"]}},
            {{"Sid":"NoSecrets","Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::ml-input/{denied}/*"}}]}}"#
        )
    };
    let t = topology("10.72", true).await;
    let endpoint = t.s3_gateway_endpoint(Some(&policy("raw/secret"))).await;
    let out = validate(&t.manifest("sub-prefix", 1, ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert_eq!(out.codes(0), ["FlowLogsDisabled", "S3EndpointPolicyDenies"]);
    let f = finding(&out, "S3EndpointPolicyDenies").expect("finding");
    assert_eq!(f["resource"], Value::String(endpoint));
    let message = f["message"].as_str().expect("message");
    assert!(
        message.contains("s3:GetObject on s3://ml-input/raw/") && message.contains("statement NoSecrets"),
        "{message}"
    );

    let t = topology("10.73", true).await;
    t.s3_gateway_endpoint(Some(&policy("archive"))).await;
    let out = validate(&t.manifest("sub-prefix", 1, ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), ["FlowLogsDisabled"]);
}

#[tokio::test]
async fn no_matching_allow_is_an_error_even_beside_a_deny_with_an_unknown_condition() {
    // Only the organisation's buckets: the job's are not among them, and the organisation
    // condition is one the controller cannot decide.
    let policy = |allowed: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":[{allowed}]}},
            {{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{{"StringNotEquals":{{"aws:PrincipalOrgID":"o-abc123"}}}}}}]}}"#
        )
    };
    let t = topology("10.74", true).await;
    t.s3_gateway_endpoint(Some(&policy(r#""arn:aws:s3:::org-data","arn:aws:s3:::org-data/*""#)))
        .await;
    let out = validate(&t.manifest("no-allow", 1, ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    let codes = out.codes(0);
    assert!(!codes.contains(&"S3EndpointPolicyUnevaluable".to_string()), "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| *c == "S3EndpointPolicyDenies").count(),
        3,
        "{codes:?}"
    );
    let message = finding(&out, "S3EndpointPolicyDenies").expect("finding")["message"].to_string();
    assert!(message.contains("no statement allows it"), "{message}");

    // With the job's buckets allowed, the undecidable Deny decides: a Warning, the job runs.
    let t = topology("10.75", true).await;
    t.s3_gateway_endpoint(Some(&policy(r#""*""#))).await;
    let out = validate(&t.manifest("no-allow", 1, ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    let codes = out.codes(0);
    assert_eq!(
        codes.iter().filter(|c| *c == "S3EndpointPolicyUnevaluable").count(),
        3,
        "{codes:?}"
    );
}

#[tokio::test]
async fn an_unknown_condition_in_the_allow_is_a_warning_and_a_known_one_decides() {
    // `Null: false` on a key the controller does not know: allowed only when the request has
    // an organisation ID, which it cannot tell (not "absent").
    let policy = |condition: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{condition}}}]}}"#
        )
    };
    let t = topology("10.76", true).await;
    t.s3_gateway_endpoint(Some(&policy(r#"{"Null":{"aws:PrincipalOrgID":"false"}}"#)))
        .await;
    let out = validate(&t.manifest("unknown-allow", 1, ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    let codes = out.codes(0);
    assert_eq!(
        codes.iter().filter(|c| *c == "S3EndpointPolicyUnevaluable").count(),
        3,
        "{codes:?}"
    );
    let message = finding(&out, "S3EndpointPolicyUnevaluable").expect("finding")["message"].to_string();
    assert!(message.contains("aws:PrincipalOrgID"), "{message}");

    // Only through another endpoint: known, and not this one.
    let t = topology("10.77", true).await;
    t.s3_gateway_endpoint(Some(&policy(
        r#"{"StringEquals":{"aws:SourceVpce":"vpce-0123456789abcdef0"}}"#,
    )))
    .await;
    let out = validate(&t.manifest("unknown-allow", 1, ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert_eq!(
        out.codes(0).iter().filter(|c| *c == "S3EndpointPolicyDenies").count(),
        3
    );
}

#[tokio::test]
async fn policies_in_the_china_partition_name_aws_cn_resources() {
    let region = "cn-north-1";
    let t = support::vpc::topology_in(region, "10.78", true).await;
    let policy = |partition: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:{partition}:iam::123456789012:root"}},"Action":"s3:*",
            "Resource":["arn:{partition}:s3:::ml-input","arn:{partition}:s3:::ml-input/*","arn:{partition}:s3:::ml-output","arn:{partition}:s3:::ml-output/*"]}}]}}"#
        )
    };
    t.s3_gateway_endpoint(Some(&policy("aws-cn"))).await;
    let manifest = t
        .manifest("china", 1, "")
        .replace("region: us-east-1", &format!("region: {region}"))
        .replace("arn:aws:iam::", "arn:aws-cn:iam::");
    let out = validate(&manifest, &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), ["FlowLogsDisabled"]);

    // A policy written for the commercial partition matches nothing in China.
    let t = support::vpc::topology_in(region, "10.79", true).await;
    t.s3_gateway_endpoint(Some(&policy("aws"))).await;
    let manifest = t
        .manifest("china", 1, "")
        .replace("region: us-east-1", &format!("region: {region}"))
        .replace("arn:aws:iam::", "arn:aws-cn:iam::");
    let out = validate(&manifest, &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert_eq!(
        out.codes(0).iter().filter(|c| *c == "S3EndpointPolicyDenies").count(),
        3
    );
}

// ---------- issue #11: verdicts you can trust, in both directions ----------

use support::vpc::permission;

impl Outcome {
    /// The findings of the first job with this code.
    fn findings(&self, code: &str) -> Vec<Value> {
        self.json["jobs"][0]["findings"]
            .as_array()
            .map(|f| f.iter().filter(|x| x["code"] == code).cloned().collect())
            .unwrap_or_default()
    }
}

const NEEDS_EVERYTHING: &str = "  networkValidation: {requiresInternet: true, requiredServices: [sts]}\n";

#[tokio::test]
async fn egress_through_a_target_beyond_the_vpc_is_one_warning_not_an_error() {
    let peer = topology("10.30", true).await;
    for (i, kind) in ["tgw", "pcx", "eni", "vgw", "gwlbe"].into_iter().enumerate() {
        let t = topology(&format!("10.{}", 31 + i), true).await;
        let target = t.route_beyond("0.0.0.0/0", kind, Some(&peer.vpc)).await;
        let out = validate(&t.manifest("hub", 2, NEEDS_EVERYTHING), &[]);
        assert_eq!(out.code, 0, "{kind}: {} {}", out.stderr, out.json);
        assert_eq!(out.codes(0), ["EgressNotVerifiable", "FlowLogsDisabled"], "{kind}");
        let warning = &out.findings("EgressNotVerifiable")[0];
        assert_eq!(warning["severity"], "Warning");
        assert_eq!(warning["resource"], Value::String(t.private_rtb.clone()));
        let message = warning["message"].as_str().unwrap_or_default();
        for part in [
            t.private_rtb.as_str(),
            "0.0.0.0/0",
            target.as_str(),
            "S3",
            "the internet",
            "sts",
        ] {
            assert!(message.contains(part), "{kind}: {part} not in {message}");
        }
    }
    // The other direction: through a transit gateway, but the job's group lets nothing out to
    // S3 — what the VPC shows is still checked.
    let t = topology("10.36", true).await;
    t.route_beyond("0.0.0.0/0", "tgw", None).await;
    let closed = t
        .security_group(
            "closed",
            &[],
            Some(&[permission("tcp", Some((443, 443)), &["10.0.0.0/8"])]),
        )
        .await;
    let out = validate(&job_manifest("hub-closed", 1, &t.private, &[&closed], ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert_eq!(out.codes(0), ["EgressNotVerifiable", "FlowLogsDisabled", "NoS3Egress"]);
}

#[tokio::test]
async fn an_s3_prefix_list_route_to_a_hub_wins_over_the_nat_default_route() {
    // (moto drops the destination of a prefix-list route to a network interface, so the hub is
    // a transit gateway here; the unit tests cover the appliance's interface.)
    let t = topology("10.37", true).await;
    t.nat_gateway_route().await;
    let s3 = t.s3_prefix_list().await;
    let eni = t.route_beyond(&s3, "tgw", None).await;
    let out = validate(&t.manifest("firewall", 1, ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), ["EgressNotVerifiable", "FlowLogsDisabled"]);
    let message = out.findings("EgressNotVerifiable")[0]["message"].to_string();
    assert!(message.contains(&s3) && message.contains(&eni), "{message}");
}

#[tokio::test]
async fn egress_to_prefix_lists_counts_for_the_addresses_in_them() {
    let t = topology("10.38", true).await;
    t.s3_gateway_endpoint(None).await;
    let s3 = t.s3_prefix_list().await;
    let https_to = |peer: &str| vec![permission("tcp", Some((443, 443)), &[peer])];
    // S3's AWS-managed list through the gateway endpoint.
    let sg = t.security_group("s3-list", &[], Some(&https_to(&s3))).await;
    let out = validate(&job_manifest("pl-s3", 1, &t.private, &[&sg], ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    // A customer list that covers all of S3's ranges, and one that covers a part.
    let all = t
        .prefix_list("s3-ranges", &["52.216.0.0/15", "3.5.0.0/19", "54.231.0.0/16"])
        .await;
    let sg = t.security_group("corp-list", &[], Some(&https_to(&all))).await;
    let out = validate(&job_manifest("pl-corp", 1, &t.private, &[&sg], ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    let part = t.prefix_list("s3-part", &["52.216.0.0/15"]).await;
    let sg = t.security_group("part-list", &[], Some(&https_to(&part))).await;
    let out = validate(&job_manifest("pl-part", 1, &t.private, &[&sg], ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert_eq!(
        out.codes(0),
        ["FlowLogsDisabled", "NoS3Egress", "PackageRepositoriesReachable"]
    );
    // S3's list through a NAT gateway counts too.
    let nat = topology("10.39", true).await;
    nat.nat_gateway_route().await;
    let s3 = nat.s3_prefix_list().await;
    let sg = nat.security_group("s3-list", &[], Some(&https_to(&s3))).await;
    let out = validate(&job_manifest("pl-nat", 1, &nat.private, &[&sg], ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
}

#[tokio::test]
async fn with_an_s3_interface_endpoint_only_egress_to_its_interfaces_counts() {
    let t = topology("10.40", true).await;
    let endpoint_sg = t
        .security_group("s3-endpoint", &[permission("tcp", Some((443, 443)), &[&t.cidr])], None)
        .await;
    let other = t.security_group("other", &[], None).await;
    t.interface_endpoint_with("s3", true, &[&endpoint_sg]).await;
    let to_other = t
        .security_group("to-other", &[], Some(&[permission("tcp", Some((443, 443)), &[&other])]))
        .await;
    let out = validate(&job_manifest("s3-if-other", 1, &t.private, &[&to_other], ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert!(out.codes(0).contains(&"NoS3Egress".to_string()), "{:?}", out.codes(0));
    let to_endpoint = t
        .security_group(
            "to-endpoint",
            &[],
            Some(&[permission("tcp", Some((443, 443)), &[&endpoint_sg])]),
        )
        .await;
    let out = validate(&job_manifest("s3-if-endpoint", 1, &t.private, &[&to_endpoint], ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert!(!out.codes(0).contains(&"NoS3Egress".to_string()));
}

#[tokio::test]
async fn encrypted_inter_container_traffic_needs_ipsec_between_members() {
    let t = topology("10.41", true).await;
    t.s3_gateway_endpoint(None).await;
    let tcp_only = t
        .security_group(
            "tcp-only",
            &[],
            Some(&[permission("tcp", Some((443, 443)), &["0.0.0.0/0"])]),
        )
        .await;
    let self_tcp = permission("tcp", Some((0, 65535)), &[&tcp_only]);
    t.ec2
        .authorize_security_group_ingress()
        .group_id(&tcp_only)
        .ip_permissions(self_tcp.clone())
        .send()
        .await
        .expect("self ingress");
    t.ec2
        .authorize_security_group_egress()
        .group_id(&tcp_only)
        .ip_permissions(self_tcp)
        .send()
        .await
        .expect("self egress");
    let manifest = |name: &str| {
        job_manifest(name, 2, &t.private, &[&tcp_only], "").replace(
            "    vpcConfig:\n",
            "    enableInterContainerTrafficEncryption: true\n    vpcConfig:\n",
        )
    };
    // Without encryption TCP among members is all the job needs.
    let out = validate(&job_manifest("plain", 2, &t.private, &[&tcp_only], ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    let out = validate(&manifest("ipsec-missing"), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    assert_eq!(
        out.codes(0),
        [
            "FlowLogsDisabled",
            "MissingSelfReferencingEgress",
            "MissingSelfReferencingIngress",
            "PackageRepositoriesReachable"
        ]
    );
    let message = out.findings("MissingSelfReferencingIngress")[0]["message"].to_string();
    assert!(message.contains("UDP 500 and IP protocol 50 (ESP)"), "{message}");
    let ipsec = [
        permission("udp", Some((500, 500)), &[&tcp_only]),
        permission("50", Some((-1, -1)), &[&tcp_only]),
    ];
    t.ec2
        .authorize_security_group_ingress()
        .group_id(&tcp_only)
        .set_ip_permissions(Some(ipsec.to_vec()))
        .send()
        .await
        .expect("ipsec ingress");
    t.ec2
        .authorize_security_group_egress()
        .group_id(&tcp_only)
        .set_ip_permissions(Some(ipsec.to_vec()))
        .send()
        .await
        .expect("ipsec egress");
    let out = validate(&manifest("ipsec"), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
}

#[tokio::test]
async fn interface_endpoints_must_answer_the_vpc_and_admit_the_job() {
    let t = topology("10.42", true).await;
    t.s3_gateway_endpoint(None).await;
    let services = "  networkValidation: {requiredServices: [sts, logs]}\n";
    // sts without private DNS; logs with a group that admits only another network.
    let open = t
        .security_group("sts-endpoint", &[permission("tcp", Some((443, 443)), &[&t.cidr])], None)
        .await;
    let sts = t.interface_endpoint_with("sts", false, &[&open]).await;
    let elsewhere = t
        .security_group(
            "logs-endpoint",
            &[permission("tcp", Some((443, 443)), &["192.168.0.0/16"])],
            None,
        )
        .await;
    let logs = t.interface_endpoint_with("logs", true, &[&elsewhere]).await;
    let out = validate(&t.manifest("endpoints", 1, services), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    let unusable = out.findings("InterfaceEndpointUnusable");
    let by = |id: &str| {
        unusable
            .iter()
            .find(|f| f["resource"] == id)
            .map(|f| f["message"].to_string())
            .unwrap_or_default()
    };
    assert!(by(&sts).contains("private DNS is off"), "{}", out.json);
    assert!(
        by(&logs).contains("admit no inbound TCP 443") && by(&logs).contains(&elsewhere),
        "{}",
        out.json
    );
    assert!(!out.codes(0).contains(&"MissingInterfaceEndpoint".to_string()));
    // Endpoints set up as they should be serve the job.
    let good = topology("10.43", true).await;
    good.s3_gateway_endpoint(None).await;
    good.interface_endpoint("sts").await;
    good.interface_endpoint("logs").await;
    let out = validate(&good.manifest("endpoints-ok", 1, services), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
    assert_eq!(out.codes(0), INFO_ONLY);
}

#[tokio::test]
async fn network_acls_are_evaluated_exactly_against_s3s_ranges() {
    let t = topology("10.44", true).await;
    t.s3_gateway_endpoint(None).await;
    let [a, b] = [t.private[0].as_str(), t.private[1].as_str()];
    // Only S3's ranges, 443 out and the hosts' ephemeral ports back in: enough.
    let s3 = ["52.216.0.0/15", "3.5.0.0/19", "54.231.0.0/16"];
    let mut tight = Vec::new();
    for (i, c) in s3.iter().enumerate() {
        let n = 100 + i as i32;
        tight.push((n, true, true, *c, Some((443, 443))));
        tight.push((n, false, true, *c, Some((32768, 61000))));
    }
    t.network_acl(&[a], &tight).await;
    // A deny of 443 to a part of S3 before an allow of everything blocks, naming the rule.
    t.network_acl(
        &[b],
        &[
            (90, true, false, "52.217.0.0/16", Some((443, 443))),
            (100, true, true, "0.0.0.0/0", None),
            (100, false, true, "0.0.0.0/0", None),
        ],
    )
    .await;
    let out = validate(&t.manifest("acl-exact", 1, ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    let blocked = out.findings("NetworkAclBlocksS3");
    assert_eq!(blocked.len(), 1, "{}", out.json);
    assert_eq!(blocked[0]["resource"], b);
    let message = blocked[0]["message"].to_string();
    assert!(
        message.contains("rule 90 denies outbound TCP 443 to 52.217.0.0/16"),
        "{message}"
    );
}

#[tokio::test]
async fn the_nat_path_needs_the_nat_subnets_acl_to_forward() {
    let t = topology("10.45", true).await;
    t.nat_gateway_route().await;
    // The public subnet admits replies only on the hosts' range: the NAT gateway uses 1024-65535.
    t.network_acl(
        &[&t.public],
        &[
            (100, true, true, "0.0.0.0/0", None),
            (100, false, true, "0.0.0.0/0", Some((32768, 61000))),
            (110, false, true, &t.cidr, Some((443, 443))),
        ],
    )
    .await;
    let out = validate(&t.manifest("nat-acl", 1, ""), &[]);
    assert_eq!(out.code, 1, "{}", out.json);
    let blocked = out.findings("NetworkAclBlocksS3");
    assert_eq!(blocked.len(), 2, "{}", out.json);
    assert!(blocked[0]["message"].to_string().contains(&t.public), "{}", out.json);
    // Opening 1024-65535 from anywhere on the public subnet makes the path whole.
    let fixed = topology("10.46", true).await;
    fixed.nat_gateway_route().await;
    fixed
        .network_acl(
            &[&fixed.public],
            &[
                (100, true, true, "0.0.0.0/0", None),
                (100, false, true, "0.0.0.0/0", Some((1024, 65535))),
                (110, false, true, &fixed.cidr, Some((443, 443))),
            ],
        )
        .await;
    let out = validate(&fixed.manifest("nat-acl-ok", 1, ""), &[]);
    assert_eq!(out.code, 0, "{}", out.json);
}

#[tokio::test]
async fn prefix_lists_and_endpoint_groups_are_read_once_for_many_jobs() {
    let t = topology("10.47", true).await;
    t.s3_gateway_endpoint(None).await;
    t.interface_endpoint("sts").await;
    let corp = t
        .prefix_list("s3-ranges", &["52.216.0.0/15", "3.5.0.0/19", "54.231.0.0/16"])
        .await;
    let sg = t
        .security_group(
            "corp",
            &[],
            Some(&[permission("tcp", Some((443, 443)), &[&corp, &t.cidr])]),
        )
        .await;
    let services = "  networkValidation: {requiredServices: [sts]}\n";
    let stats = |o: &Outcome| -> Value {
        let line = o
            .stderr
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("call stats line");
        serde_json::from_str(line).expect("stats json")
    };
    let one = validate(&job_manifest("one", 1, &t.private, &[&sg], services), &["--call-stats"]);
    assert_eq!(one.code, 0, "{} {}", one.stderr, one.json);
    let many: String = (0..50)
        .map(|i| job_manifest(&format!("job-{i}"), 1, &t.private, &[&sg], services))
        .collect();
    let fifty = validate(&many, &["--call-stats"]);
    assert_eq!(fifty.code, 0, "{}", fifty.stderr);
    eprintln!("1 job: {}\n50 jobs: {}", stats(&one), stats(&fifty));
    assert_eq!(
        stats(&fifty)["ec2"],
        stats(&one)["ec2"],
        "50 jobs cost more EC2 calls than one"
    );
    let ops = &stats(&one)["ec2"]["byOperation"];
    // The S3 gateway endpoint's route names S3's list: no lookup by name.
    assert!(ops["DescribeManagedPrefixLists"].is_null(), "{ops}");
    assert_eq!(ops["GetManagedPrefixListEntries"], 2, "S3's list and the customer list");
}
