//! Table tests: for every finding code, a snapshot that triggers it and a near-identical one that
//! does not; and property tests of the checks and the policy evaluator.

use std::sync::Arc;

use proptest::prelude::*;

use super::snapshot::*;
use super::{validate, Code};
use crate::api::{NetworkConfig, NetworkValidation, ProcessingJobSpec, VpcConfig};

const ROLE: &str = "arn:aws:iam::123456789012:role/job";

fn spec() -> ProcessingJobSpec {
    let mut spec: ProcessingJobSpec = serde_json::from_value(serde_json::json!({
        "roleARN": ROLE,
        "appSpecification": {"imageURI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/p:1"},
        "processingResources": {"clusterConfig": {"instanceCount": 2, "instanceType": "ml.m5.xlarge", "volumeSizeInGB": 30}},
        "processingInputs": [{"inputName": "in", "s3Input": {"s3URI": "s3://in-bucket/data/", "localPath": "/opt/ml/processing/input", "s3DataType": "S3Prefix"}}],
        "processingOutputConfig": {"outputs": [{"outputName": "out", "s3Output": {"s3URI": "s3://out-bucket/results/", "localPath": "/opt/ml/processing/output", "s3UploadMode": "EndOfJob"}}]},
    }))
    .expect("fixture spec");
    spec.network_config = Some(NetworkConfig {
        vpc_config: Some(VpcConfig {
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            security_group_ids: vec!["sg-1".into()],
        }),
        ..Default::default()
    });
    spec
}

const GOOD_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
  "Action":["s3:GetObject","s3:ListBucket","s3:PutObject"],
  "Resource":["arn:aws:s3:::in-bucket","arn:aws:s3:::in-bucket/*","arn:aws:s3:::out-bucket","arn:aws:s3:::out-bucket/*"]}]}"#;

fn subnet(id: &str, cidr: &str) -> Subnet {
    Subnet {
        id: id.into(),
        vpc_id: "vpc-1".into(),
        cidr: cidr.into(),
        availability_zone: "us-east-1a".into(),
        available_ips: 200,
    }
}

fn all_traffic_from(group: &str) -> SgRule {
    SgRule {
        protocol: "-1".into(),
        group_ids: vec![group.into()],
        ..Default::default()
    }
}

fn all_traffic_to_anywhere() -> SgRule {
    SgRule {
        protocol: "-1".into(),
        cidrs: vec!["0.0.0.0/0".into()],
        ..Default::default()
    }
}

fn group(id: &str) -> SecurityGroup {
    SecurityGroup {
        id: id.into(),
        vpc_id: "vpc-1".into(),
        name: id.into(),
        ingress: vec![all_traffic_from(id)],
        egress: vec![all_traffic_to_anywhere()],
    }
}

fn route(cidr: &str, gateway: Option<&str>, nat: Option<&str>) -> Route {
    Route {
        destination_cidr: Some(cidr.into()),
        gateway_id: gateway.map(Into::into),
        nat_gateway_id: nat.map(Into::into),
        active: true,
        ..Default::default()
    }
}

fn allow_all_acl() -> NetworkAcl {
    let entry = |egress, n, allow| AclEntry {
        rule_number: n,
        egress,
        protocol: "-1".into(),
        allow,
        cidr: Some("0.0.0.0/0".into()),
        port_from: None,
        port_to: None,
    };
    NetworkAcl {
        id: "acl-1".into(),
        default: true,
        subnet_ids: vec![],
        entries: vec![
            entry(true, 100, true),
            entry(false, 100, true),
            entry(true, 32767, false),
            entry(false, 32767, false),
        ],
    }
}

/// A healthy private VPC: two private subnets on the main route table with an S3 gateway
/// endpoint, a self-referencing group, flow logs, DNS on. No finding at all.
fn topology() -> VpcTopology {
    let private = RouteTable {
        id: "rtb-main".into(),
        vpc_id: "vpc-1".into(),
        main: true,
        subnet_ids: vec![],
        routes: vec![
            route("10.0.0.0/16", Some("local"), None),
            Route {
                destination_prefix_list_id: Some("pl-63a5400a".into()),
                gateway_id: Some("vpce-s3".into()),
                active: true,
                ..Default::default()
            },
        ],
    };
    let public = RouteTable {
        id: "rtb-public".into(),
        vpc_id: "vpc-1".into(),
        main: false,
        subnet_ids: vec!["subnet-public".into()],
        routes: vec![
            route("10.0.0.0/16", Some("local"), None),
            route("0.0.0.0/0", Some("igw-1"), None),
        ],
    };
    VpcTopology {
        vpc_id: "vpc-1".into(),
        cidr_blocks: vec!["10.0.0.0/16".into()],
        dns_support: true,
        dns_hostnames: true,
        route_tables: vec![private, public],
        endpoints: vec![VpcEndpoint {
            id: "vpce-s3".into(),
            service_name: "com.amazonaws.us-east-1.s3".into(),
            endpoint_type: EndpointType::Gateway,
            state: "available".into(),
            policy_document: Some(GOOD_POLICY.into()),
            route_table_ids: vec!["rtb-main".into()],
            subnet_ids: vec![],
            private_dns_enabled: false,
        }],
        nat_gateways: vec![NatGateway {
            id: "nat-1".into(),
            subnet_id: "subnet-public".into(),
            state: "available".into(),
            connectivity: "public".into(),
        }],
        internet_gateways: vec!["igw-1".into()],
        network_acls: vec![allow_all_acl()],
        flow_logs: true,
    }
}

#[derive(Debug)]
struct Case {
    spec: ProcessingJobSpec,
    subnets: Vec<Subnet>,
    groups: Vec<SecurityGroup>,
    vpc: VpcTopology,
}

impl Case {
    fn new() -> Self {
        Self {
            spec: spec(),
            subnets: vec![subnet("subnet-a", "10.0.1.0/24"), subnet("subnet-b", "10.0.2.0/24")],
            groups: vec![group("sg-1")],
            vpc: topology(),
        }
    }

    fn codes(&self) -> Vec<String> {
        self.codes_in("us-east-1")
    }

    fn codes_in(&self, region: &str) -> Vec<String> {
        self.findings_in(region).into_iter().map(|f| f.code).collect()
    }

    fn findings_in(&self, region: &str) -> Vec<crate::api::Finding> {
        let snap = NetworkSnapshot {
            region: region.into(),
            subnets: self.subnets.clone(),
            security_groups: self.groups.clone(),
            vpc: Some(Arc::new(self.vpc.clone())),
        };
        validate(&self.spec, &snap)
    }

    fn with(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

fn validation(spec: &mut ProcessingJobSpec) -> &mut NetworkValidation {
    spec.network_validation.get_or_insert_with(Default::default)
}

fn set_default_route(vpc: &mut VpcTopology, gateway: Option<&str>, nat: Option<&str>) {
    vpc.route_tables[0].routes.push(route("0.0.0.0/0", gateway, nat));
}

fn policy(vpc: &mut VpcTopology, doc: Option<&str>) {
    vpc.endpoints[0].policy_document = doc.map(Into::into);
}

#[test]
fn healthy_network_has_no_findings() {
    assert_eq!(Case::new().codes(), Vec::<String>::new());
}

#[test]
fn a_job_without_vpc_config_has_nothing_to_validate() {
    let case = Case::new().with(|c| c.spec.network_config = None);
    assert!(case.codes().is_empty());
}

/// (code, triggers it, near-identical without it)
fn table() -> Vec<(Code, Case, Case)> {
    vec![
        (
            Code::SubnetNotFound,
            Case::new().with(|c| c.subnets.retain(|s| s.id != "subnet-b")),
            Case::new(),
        ),
        (
            Code::SecurityGroupNotFound,
            Case::new().with(|c| {
                if let Some(v) = c.spec.network_config.as_mut().and_then(|n| n.vpc_config.as_mut()) {
                    v.security_group_ids.push("sg-gone".into());
                }
            }),
            Case::new(),
        ),
        (
            Code::SubnetsInMultipleVpcs,
            Case::new().with(|c| c.subnets[1].vpc_id = "vpc-2".into()),
            Case::new(),
        ),
        (
            Code::SecurityGroupVpcMismatch,
            Case::new().with(|c| c.groups[0].vpc_id = "vpc-2".into()),
            Case::new(),
        ),
        (
            Code::InsufficientSubnetIps,
            Case::new().with(|c| {
                c.subnets[0].available_ips = 2;
                c.subnets[1].available_ips = 1;
            }),
            Case::new().with(|c| {
                c.subnets[0].available_ips = 3;
                c.subnets[1].available_ips = 1;
            }),
        ),
        (
            Code::SubnetLowOnIps,
            Case::new().with(|c| c.subnets[0].available_ips = 3),
            Case::new().with(|c| c.subnets[0].available_ips = 4),
        ),
        (
            Code::MissingSelfReferencingIngress,
            Case::new().with(|c| c.groups[0].ingress.clear()),
            Case::new().with(|c| {
                c.groups[0].ingress.clear();
                c.spec.processing_resources.cluster_config.instance_count = 1;
            }),
        ),
        (
            Code::NoS3Egress,
            Case::new().with(|c| {
                c.groups[0].egress = vec![SgRule {
                    protocol: "tcp".into(),
                    from_port: Some(80),
                    to_port: Some(80),
                    cidrs: vec!["0.0.0.0/0".into()],
                    ..Default::default()
                }]
            }),
            Case::new().with(|c| {
                c.groups[0].egress = vec![SgRule {
                    protocol: "tcp".into(),
                    from_port: Some(443),
                    to_port: Some(443),
                    prefix_list_ids: vec!["pl-63a5400a".into()],
                    ..Default::default()
                }]
            }),
        ),
        (
            Code::NoS3Route,
            Case::new().with(|c| c.vpc.endpoints.clear()),
            Case::new().with(|c| {
                c.vpc.endpoints.clear();
                set_default_route(&mut c.vpc, None, Some("nat-1"));
            }),
        ),
        (
            Code::S3EndpointPolicyDenies,
            Case::new().with(|c| {
                policy(
                    &mut c.vpc,
                    Some(&GOOD_POLICY.replace(r#","arn:aws:s3:::out-bucket/*""#, "")),
                )
            }),
            Case::new(),
        ),
        (
            Code::S3EndpointPolicyUnevaluable,
            Case::new().with(|c| {
                policy(
                    &mut c.vpc,
                    Some(&GOOD_POLICY.replace(
                        r#""Principal":"*","#,
                        r#""Principal":"*","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1"}},"#,
                    )),
                )
            }),
            Case::new().with(|c| {
                policy(
                    &mut c.vpc,
                    Some(&GOOD_POLICY.replace(
                        r#""Principal":"*","#,
                        r#""Principal":"*","Condition":{"StringEquals":{"aws:PrincipalAccount":"123456789012"}},"#,
                    )),
                )
            }),
        ),
        (
            Code::VpcDnsDisabled,
            Case::new().with(|c| c.vpc.dns_hostnames = false),
            Case::new(),
        ),
        (
            Code::NetworkAclBlocksS3,
            Case::new().with(|c| {
                c.vpc.network_acls[0].entries.push(AclEntry {
                    rule_number: 50,
                    egress: true,
                    protocol: "6".into(),
                    allow: false,
                    cidr: Some("0.0.0.0/0".into()),
                    port_from: Some(443),
                    port_to: Some(443),
                })
            }),
            Case::new().with(|c| {
                c.vpc.network_acls[0].entries.push(AclEntry {
                    rule_number: 50,
                    egress: true,
                    protocol: "6".into(),
                    allow: false,
                    cidr: Some("0.0.0.0/0".into()),
                    port_from: Some(22),
                    port_to: Some(22),
                })
            }),
        ),
        (
            Code::NoInternetRoute,
            Case::new().with(|c| validation(&mut c.spec).requires_internet = Some(true)),
            Case::new().with(|c| {
                validation(&mut c.spec).requires_internet = Some(true);
                set_default_route(&mut c.vpc, None, Some("nat-1"));
            }),
        ),
        (
            Code::InternetGatewayRouteWithoutNat,
            Case::new().with(|c| {
                validation(&mut c.spec).requires_internet = Some(true);
                set_default_route(&mut c.vpc, Some("igw-1"), None);
            }),
            Case::new().with(|c| {
                validation(&mut c.spec).requires_internet = Some(true);
                set_default_route(&mut c.vpc, None, Some("nat-1"));
            }),
        ),
        (
            Code::MissingInterfaceEndpoint,
            Case::new().with(|c| validation(&mut c.spec).required_services = Some(vec!["sts".into()])),
            Case::new().with(|c| {
                validation(&mut c.spec).required_services = Some(vec!["sts".into()]);
                c.vpc.endpoints.push(VpcEndpoint {
                    id: "vpce-sts".into(),
                    service_name: "com.amazonaws.us-east-1.sts".into(),
                    endpoint_type: EndpointType::Interface,
                    state: "available".into(),
                    subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
                    private_dns_enabled: true,
                    ..Default::default()
                });
            }),
        ),
        (
            Code::FlowLogsDisabled,
            Case::new().with(|c| c.vpc.flow_logs = false),
            Case::new(),
        ),
        (
            Code::PackageRepositoriesReachable,
            Case::new().with(|c| policy(&mut c.vpc, None)),
            Case::new(),
        ),
        (
            Code::NetworkIsolationSkipsChecks,
            Case::new().with(|c| {
                c.spec
                    .network_config
                    .as_mut()
                    .map(|n| n.enable_network_isolation = Some(true))
                    .unwrap_or(())
            }),
            Case::new().with(|c| {
                c.spec
                    .network_config
                    .as_mut()
                    .map(|n| n.enable_network_isolation = Some(false))
                    .unwrap_or(())
            }),
        ),
    ]
}

#[test]
fn every_code_has_a_triggering_and_a_near_identical_clean_case() {
    let cases = table();
    // The execution role's codes (R…) have their cases in `role::tests`.
    for code in Code::ALL.iter().filter(|c| c.requirement().starts_with('N')) {
        assert!(cases.iter().any(|(c, _, _)| c == code), "no table case for {code}");
    }
    for (code, triggering, clean) in cases {
        let got = triggering.codes();
        assert!(got.iter().any(|c| c == code.as_str()), "{code}: expected in {got:?}");
        let got = clean.codes();
        assert!(
            !got.iter().any(|c| c == code.as_str()),
            "{code}: not expected in {got:?}"
        );
    }
}

#[test]
fn severities_follow_the_design() {
    use crate::api::Severity::*;
    let expect = [
        (Code::SubnetLowOnIps, Warning),
        (Code::S3EndpointPolicyUnevaluable, Warning),
        (Code::VpcDnsDisabled, Warning),
        (Code::FlowLogsDisabled, Info),
        (Code::PackageRepositoriesReachable, Info),
        (Code::NetworkIsolationSkipsChecks, Info),
        (Code::NoS3Route, Error),
    ];
    for (code, severity) in expect {
        assert_eq!(code.severity(), severity, "{code}");
    }
}

#[test]
fn network_isolation_skips_internet_and_interface_endpoint_checks() {
    let case = Case::new().with(|c| {
        validation(&mut c.spec).requires_internet = Some(true);
        validation(&mut c.spec).required_services = Some(vec!["sts".into()]);
        c.spec
            .network_config
            .as_mut()
            .map(|n| n.enable_network_isolation = Some(true))
            .unwrap_or(());
    });
    let codes = case.codes();
    assert!(codes.contains(&"NetworkIsolationSkipsChecks".to_string()));
    assert!(!codes.contains(&"NoInternetRoute".to_string()), "{codes:?}");
    assert!(!codes.contains(&"MissingInterfaceEndpoint".to_string()), "{codes:?}");
}

#[test]
fn a_nat_in_a_private_subnet_is_no_internet() {
    let case = Case::new().with(|c| {
        validation(&mut c.spec).requires_internet = Some(true);
        set_default_route(&mut c.vpc, None, Some("nat-1"));
        c.vpc.route_tables[1]
            .routes
            .retain(|r| r.gateway_id.as_deref() != Some("igw-1"));
    });
    assert!(case.codes().contains(&"NoInternetRoute".to_string()));
}

#[test]
fn malformed_endpoint_policy_is_a_warning_not_a_pass() {
    let case = Case::new().with(|c| policy(&mut c.vpc, Some("{not json")));
    assert_eq!(case.codes(), vec!["S3EndpointPolicyUnevaluable".to_string()]);
}

#[test]
fn https_uris_are_understood() {
    use super::checks::parse_s3_uri;
    assert_eq!(parse_s3_uri("s3://b/k/x"), Some(("b".into(), "k/x".into())));
    assert_eq!(parse_s3_uri("s3://b"), Some(("b".into(), "".into())));
    assert_eq!(
        parse_s3_uri("https://b.s3.us-east-1.amazonaws.com/k"),
        Some(("b".into(), "k".into()))
    );
    assert_eq!(
        parse_s3_uri("https://s3.us-east-1.amazonaws.com/b/k"),
        Some(("b".into(), "k".into()))
    );
    assert_eq!(parse_s3_uri("https://example.com/x"), None);
}

// ---------- what the job does in S3, against the endpoint policy (N7) ----------

fn set_input(spec: &mut ProcessingJobSpec, input: serde_json::Value) {
    spec.processing_inputs = Some(vec![serde_json::from_value(input).expect("fixture input")]);
}

fn s3_input(uri: &str, data_type: &str) -> serde_json::Value {
    serde_json::json!({"inputName": "in", "s3Input": {"s3URI": uri, "localPath": "/opt/ml/processing/input", "s3DataType": data_type}})
}

/// GOOD_POLICY's Allow plus the given statements.
fn good_policy_with(statements: &[&str]) -> String {
    GOOD_POLICY.replace("]}]}", &format!("]}},{}]}}", statements.join(",")))
}

fn policy_codes(doc: &str, f: impl FnOnce(&mut Case)) -> Vec<String> {
    Case::new()
        .with(|c| {
            policy(&mut c.vpc, Some(doc));
            f(c)
        })
        .codes()
}

const NO_CODES: [&str; 0] = [];

#[test]
fn a_policy_allowing_exactly_the_input_object_passes() {
    let exact = r#"{"Statement":[
        {"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::in-bucket"},
        {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::in-bucket/code/job.py"},
        {"Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::out-bucket/results/*"}]}"#;
    let job_py = |c: &mut Case| set_input(&mut c.spec, s3_input("s3://in-bucket/code/job.py", "S3Prefix"));
    assert_eq!(policy_codes(exact, job_py), NO_CODES);
    // The same policy does not allow a folder's objects.
    let folder = |c: &mut Case| set_input(&mut c.spec, s3_input("s3://in-bucket/code/", "S3Prefix"));
    assert_eq!(policy_codes(exact, folder), ["S3EndpointPolicyDenies"]);
    // A key without a trailing slash may be a folder: allowing everything in it is enough.
    let raw = |c: &mut Case| set_input(&mut c.spec, s3_input("s3://in-bucket/raw", "S3Prefix"));
    let raw_folder = exact.replace("in-bucket/code/job.py", "in-bucket/raw/*");
    assert_eq!(policy_codes(&raw_folder, raw), NO_CODES);
}

#[test]
fn a_deny_on_a_sub_prefix_of_an_input_or_output_is_an_error() {
    let secret_in = r#"{"Sid":"Secret","Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::in-bucket/data/secret/*"}"#;
    let findings = Case::new()
        .with(|c| policy(&mut c.vpc, Some(&good_policy_with(&[secret_in]))))
        .findings_in("us-east-1");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, "S3EndpointPolicyDenies");
    assert!(
        findings[0].message.contains("s3:GetObject on s3://in-bucket/data/")
            && findings[0].message.contains("statement Secret"),
        "{}",
        findings[0].message
    );
    let tmp_out =
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:Put*","Resource":"arn:aws:s3:::out-bucket/results/tmp/*"}"#;
    assert_eq!(
        policy_codes(&good_policy_with(&[tmp_out]), |_| ()),
        ["S3EndpointPolicyDenies"]
    );
    // Beside the prefixes, not under them: nothing.
    let beside = r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::in-bucket/database/*","arn:aws:s3:::out-bucket/results-old/*"]}"#;
    assert_eq!(policy_codes(&good_policy_with(&[beside]), |_| ()), NO_CODES);
}

#[test]
fn no_matching_allow_is_an_error_whatever_an_undecidable_deny_says() {
    let doc = r#"{"Statement":[
        {"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::other","arn:aws:s3:::other/*"]},
        {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringNotEquals":{"aws:PrincipalOrgID":"o-1"}}}]}"#;
    let codes = policy_codes(doc, |_| ());
    assert!(codes.iter().all(|c| c == "S3EndpointPolicyDenies"), "{codes:?}");
    assert_eq!(
        codes.len(),
        3,
        "ListBucket and GetObject on the input, PutObject on the output: {codes:?}"
    );
    // With the job's Allow, the same Deny decides: a Warning for each request.
    let doc = good_policy_with(&[
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringNotEquals":{"aws:PrincipalOrgID":"o-1"}}}"#,
    ]);
    assert_eq!(policy_codes(&doc, |_| ()), ["S3EndpointPolicyUnevaluable"; 3]);
}

#[test]
fn keys_the_job_decides_are_decided_and_the_others_are_unknown() {
    let passes = [
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}"#,
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringNotEquals":{"aws:SourceVpce":"vpce-s3"}}}"#,
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringNotEquals":{"aws:SourceVpc":"vpc-1"}}}"#,
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"Null":{"aws:SourceVpce":"true"}}}"#,
        r#"{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:role/job"},"Action":"s3:*","Resource":"*"}"#,
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:role/job"}}}"#,
    ];
    for deny in passes {
        assert_eq!(policy_codes(&good_policy_with(&[deny]), |_| ()), NO_CODES, "{deny}");
    }
    let blocks = [
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringNotEquals":{"aws:SourceVpce":"vpce-other"}}}"#,
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}}"#,
    ];
    for deny in blocks {
        let codes = policy_codes(&good_policy_with(&[deny]), |_| ());
        assert_eq!(codes, ["S3EndpointPolicyDenies"; 3], "{deny}");
    }
    let unknown = [
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"Null":{"aws:PrincipalOrgID":"true"}}}"#,
        r#"{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringNotEqualsIfExists":{"aws:ResourceAccount":"123456789012"}}}"#,
    ];
    for deny in unknown {
        let codes = policy_codes(&good_policy_with(&[deny]), |_| ());
        assert_eq!(codes, ["S3EndpointPolicyUnevaluable"; 3], "{deny}");
    }
}

#[test]
fn resources_and_principals_use_the_partition_of_the_region() {
    let cn_policy = GOOD_POLICY.replace("arn:aws:s3", "arn:aws-cn:s3");
    let in_cn = |doc: &str, role: &str| {
        Case::new()
            .with(|c| {
                policy(&mut c.vpc, Some(doc));
                c.vpc.endpoints[0].service_name = "com.amazonaws.cn-north-1.s3".into();
                c.spec.role_arn = role.into();
            })
            .codes_in("cn-north-1")
    };
    let cn_role = "arn:aws-cn:iam::123456789012:role/job";
    assert_eq!(in_cn(&cn_policy, cn_role), NO_CODES);
    assert_eq!(in_cn(GOOD_POLICY, cn_role), ["S3EndpointPolicyDenies"; 3]);
    let cn_root = cn_policy.replace(
        r#""Principal":"*""#,
        r#""Principal":{"AWS":"arn:aws-cn:iam::123456789012:root"}"#,
    );
    assert_eq!(in_cn(&cn_root, cn_role), NO_CODES);
    let aws_root = cn_policy.replace(
        r#""Principal":"*""#,
        r#""Principal":{"AWS":"arn:aws:iam::123456789012:root"}"#,
    );
    assert_eq!(in_cn(&aws_root, cn_role), ["S3EndpointPolicyDenies"; 3]);
    let gov = GOOD_POLICY.replace("arn:aws:s3", "arn:aws-us-gov:s3");
    let in_gov = Case::new()
        .with(|c| {
            policy(&mut c.vpc, Some(&gov));
            c.vpc.endpoints[0].service_name = "com.amazonaws.us-gov-west-1.s3".into();
        })
        .codes_in("us-gov-west-1");
    assert_eq!(in_gov, NO_CODES);
}

#[test]
fn manifests_and_query_results_are_checked_like_inputs() {
    let manifest = |c: &mut Case| {
        set_input(
            &mut c.spec,
            s3_input("s3://in-bucket/manifests/day.manifest", "ManifestFile"),
        )
    };
    // The manifest object is read: the policy must allow it.
    let no_input = GOOD_POLICY.replace(r#""arn:aws:s3:::in-bucket","arn:aws:s3:::in-bucket/*","#, "");
    assert_eq!(policy_codes(&no_input, manifest), ["S3EndpointPolicyDenies"]);
    // Allowed, but the objects it lists are not seen: a Warning, unless every object is allowed.
    assert_eq!(policy_codes(GOOD_POLICY, manifest), ["S3EndpointPolicyUnevaluable"]);
    let everything = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#;
    assert_eq!(policy_codes(everything, manifest), ["PackageRepositoriesReachable"]);

    let athena = serde_json::json!({"inputName": "q", "datasetDefinition": {"athenaDatasetDefinition": {
        "catalog": "AwsDataCatalog", "database": "db", "queryString": "SELECT 1",
        "outputS3URI": "s3://query-bucket/athena/", "outputFormat": "PARQUET"}}});
    let redshift = serde_json::json!({"inputName": "q", "datasetDefinition": {"redshiftDatasetDefinition": {
        "clusterID": "c", "database": "db", "dbUser": "u", "queryString": "SELECT 1",
        "clusterRoleARN": "arn:aws:iam::123456789012:role/rs", "outputS3URI": "s3://query-bucket/redshift/", "outputFormat": "PARQUET"}}});
    let query_bucket = good_policy_with(&[
        r#"{"Effect":"Allow","Principal":"*","Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::query-bucket","arn:aws:s3:::query-bucket/*"]}"#,
    ]);
    for input in [athena, redshift] {
        let with = |c: &mut Case| set_input(&mut c.spec, input.clone());
        assert_eq!(
            policy_codes(GOOD_POLICY, with),
            ["S3EndpointPolicyDenies"; 2],
            "{input}"
        );
        let with = |c: &mut Case| set_input(&mut c.spec, input.clone());
        assert_eq!(policy_codes(&query_bucket, with), NO_CODES, "{input}");
    }
}

// ---------- property tests ----------

fn arb_rule() -> impl Strategy<Value = SgRule> {
    (
        prop::sample::select(vec!["-1", "tcp", "udp", "6", "icmp"]),
        prop::option::of(-1i32..70000),
        prop::option::of(-1i32..70000),
        prop::collection::vec(
            prop::sample::select(vec!["0.0.0.0/0", "10.0.0.0/16", "10.0.1.0/24", "bad"]),
            0..2,
        ),
        prop::collection::vec(prop::sample::select(vec!["pl-63a5400a", "pl-other"]), 0..2),
        prop::collection::vec(prop::sample::select(vec!["sg-1", "sg-2", "sg-3"]), 0..2),
    )
        .prop_map(|(p, from, to, cidrs, pls, groups)| SgRule {
            protocol: p.into(),
            from_port: from,
            to_port: to,
            cidrs: cidrs.into_iter().map(Into::into).collect(),
            prefix_list_ids: pls.into_iter().map(Into::into).collect(),
            group_ids: groups.into_iter().map(Into::into).collect(),
        })
}

fn arb_policy() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(GOOD_POLICY.to_string())),
        ".{0,40}".prop_map(Some),
        (
            prop::sample::select(vec!["Allow", "Deny", "Maybe"]),
            prop::sample::select(vec!["*", "s3:*", "s3:Get*", "s3:PutObject", "S3:LISTBUCKET"]),
            prop::sample::select(vec![
                "*",
                "arn:aws:s3:::in-bucket/*",
                "arn:aws:s3:::out-bucket*",
                "arn:aws:s3:::?n-bucket"
            ]),
            prop::sample::select(vec![
                "",
                r#","Condition":{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:role/*"}}"#,
                r#","Condition":{"Bool":{"aws:SecureTransport":"true"}}"#
            ]),
        )
            .prop_map(|(e, a, r, c)| Some(format!(
                r#"{{"Statement":[{{"Effect":"{e}","Principal":"*","Action":"{a}","Resource":"{r}"{c}}}]}}"#
            ))),
    ]
}

prop_compose! {
    fn arb_case()(
        ips in prop::collection::vec(-5i64..300, 2),
        vpcs in prop::collection::vec(prop::sample::select(vec!["vpc-1", "vpc-2"]), 3),
        count in 1i32..6,
        ingress in prop::collection::vec(arb_rule(), 0..3),
        egress in prop::collection::vec(arb_rule(), 0..3),
        doc in arb_policy(),
        default_route in prop::sample::select(vec![None, Some(("igw-1", false)), Some(("nat-1", true)), Some(("nat-gone", true))]),
        keep_endpoint in any::<bool>(),
        isolation in any::<bool>(),
        internet in any::<bool>(),
        dns in any::<(bool, bool)>(),
        acl_deny in prop::option::of((1i32..200, any::<bool>(), 0i32..70000)),
    ) -> Case {
        Case::new().with(|c| {
            c.subnets[0].available_ips = ips[0];
            c.subnets[1].available_ips = ips[1];
            c.subnets[0].vpc_id = vpcs[0].into();
            c.subnets[1].vpc_id = vpcs[1].into();
            c.groups[0].vpc_id = vpcs[2].into();
            c.groups[0].ingress = ingress;
            c.groups[0].egress = egress;
            c.spec.processing_resources.cluster_config.instance_count = count;
            policy(&mut c.vpc, doc.as_deref());
            match default_route {
                Some((target, true)) => set_default_route(&mut c.vpc, None, Some(target)),
                Some((target, false)) => set_default_route(&mut c.vpc, Some(target), None),
                None => {}
            }
            if !keep_endpoint { c.vpc.endpoints.clear(); }
            c.spec.network_config.as_mut().map(|n| n.enable_network_isolation = Some(isolation)).unwrap_or(());
            validation(&mut c.spec).requires_internet = Some(internet);
            c.vpc.dns_support = dns.0;
            c.vpc.dns_hostnames = dns.1;
            if let Some((n, egress, port)) = acl_deny {
                c.vpc.network_acls[0].entries.push(AclEntry { rule_number: n, egress, protocol: "6".into(), allow: false,
                    cidr: Some("0.0.0.0/0".into()), port_from: Some(port), port_to: Some(port) });
            }
        })
    }
}

proptest! {
    #[test]
    fn random_snapshots_never_panic_and_findings_are_well_formed(case in arb_case()) {
        let snap = NetworkSnapshot {
            region: "us-east-1".into(),
            subnets: case.subnets.clone(),
            security_groups: case.groups.clone(),
            vpc: Some(Arc::new(case.vpc.clone())),
        };
        for f in validate(&case.spec, &snap) {
            let code = Code::ALL.iter().find(|c| c.as_str() == f.code);
            prop_assert!(code.is_some(), "unknown code {}", f.code);
            prop_assert_eq!(code.map(|c| c.severity()), Some(f.severity));
            prop_assert!(!f.message.is_empty() && !f.resource.is_empty() && !f.remediation.is_empty());
        }
    }

    #[test]
    fn a_self_referencing_rule_never_adds_missing_self_referencing_ingress(case in arb_case()) {
        let before = case.codes().iter().filter(|c| *c == "MissingSelfReferencingIngress").count();
        let after_case = case.with(|c| {
            let id = c.groups[0].id.clone();
            c.groups[0].ingress.push(all_traffic_from(&id));
        });
        let after = after_case.codes().iter().filter(|c| *c == "MissingSelfReferencingIngress").count();
        prop_assert!(after <= before);
        // With every group in the job's VPC, the rule resolves the finding entirely.
        if after_case.groups[0].vpc_id == after_case.vpc.vpc_id {
            prop_assert_eq!(after, 0);
        }
    }

    #[test]
    fn an_explicit_deny_on_a_uri_always_yields_policy_denies(
        doc in arb_policy(),
        uri_index in 0usize..2,
        action in prop::sample::select(vec!["s3:*", "s3:GetObject", "s3:PutObject", "*", "s3:Get*", "s3:Put*"]),
        resource_suffix in prop::sample::select(vec!["", "*", "obj*"]),
    ) {
        let (uri_bucket, uri_key, needed) = [("in-bucket", "data/", "GetObject"), ("out-bucket", "results/", "PutObject")][uri_index];
        // Only a Deny whose action covers what the job does on that URI counts.
        let covers = policy::wildcard_match(action, &format!("s3:{needed}"), true);
        prop_assume!(covers);
        let base = doc.filter(|d| policy::parse(d).is_ok()).unwrap_or_else(|| GOOD_POLICY.to_string());
        let mut value: serde_json::Value = serde_json::from_str(&base).expect("a parsable policy is JSON");
        let deny = serde_json::json!({"Effect": "Deny", "Principal": "*", "Action": action,
            "Resource": format!("arn:aws:s3:::{uri_bucket}/{uri_key}{resource_suffix}")});
        match value.get_mut("Statement") {
            Some(serde_json::Value::Array(items)) => items.push(deny),
            Some(other) => { let single = other.clone(); *other = serde_json::json!([single, deny]); }
            None => value = serde_json::json!({"Statement": [deny]}),
        }
        let case = Case::new().with(|c| policy(&mut c.vpc, Some(&value.to_string())));
        let codes = case.codes();
        prop_assert!(codes.contains(&"S3EndpointPolicyDenies".to_string()), "{:?} for {}", codes, value);
    }
}

use super::policy;
