//! Table tests: for every finding code, a snapshot that triggers it and a near-identical one that
//! does not; and property tests of the checks and the policy evaluator.

use std::sync::Arc;

use proptest::prelude::*;

use super::policy;
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
        ipv6_cidr: None,
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
            ..Default::default()
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
        ..Default::default()
    }
}

/// S3's AWS-managed prefix list in us-east-1, as moto and the fixtures know it.
fn s3_prefix_list() -> PrefixList {
    PrefixList {
        id: "pl-63a5400a".into(),
        name: "com.amazonaws.us-east-1.s3".into(),
        cidrs: vec!["52.216.0.0/15".into(), "3.5.0.0/19".into(), "54.231.0.0/16".into()],
    }
}

#[derive(Debug)]
struct Case {
    spec: ProcessingJobSpec,
    subnets: Vec<Subnet>,
    groups: Vec<SecurityGroup>,
    vpc: VpcTopology,
    prefix_lists: Vec<PrefixList>,
}

impl Case {
    fn new() -> Self {
        Self {
            spec: spec(),
            subnets: vec![subnet("subnet-a", "10.0.1.0/24"), subnet("subnet-b", "10.0.2.0/24")],
            groups: vec![group("sg-1")],
            vpc: topology(),
            prefix_lists: vec![s3_prefix_list()],
        }
    }

    fn snapshot_in(&self, region: &str) -> NetworkSnapshot {
        NetworkSnapshot {
            region: region.into(),
            subnets: self.subnets.clone(),
            security_groups: self.groups.clone(),
            vpc: Some(Arc::new(self.vpc.clone())),
            prefix_lists: self.prefix_lists.clone(),
        }
    }

    fn snapshot(&self) -> NetworkSnapshot {
        self.snapshot_in("us-east-1")
    }

    fn findings(&self) -> Vec<crate::api::Finding> {
        validate(&self.spec, &self.snapshot())
    }

    fn codes(&self) -> Vec<String> {
        self.codes_in("us-east-1")
    }

    fn codes_in(&self, region: &str) -> Vec<String> {
        self.findings_in(region).into_iter().map(|f| f.code).collect()
    }

    fn findings_in(&self, region: &str) -> Vec<crate::api::Finding> {
        validate(&self.spec, &self.snapshot_in(region))
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

/// An interface endpoint for `service` in both job subnets, its group admitting TCP 443 from
/// the VPC's CIDR; private DNS as given.
fn add_interface_endpoint(vpc: &mut VpcTopology, service: &str, private_dns: bool) {
    vpc.endpoints.push(VpcEndpoint {
        id: format!("vpce-{service}"),
        service_name: format!("com.amazonaws.us-east-1.{service}"),
        endpoint_type: EndpointType::Interface,
        state: "available".into(),
        subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
        private_dns_enabled: private_dns,
        group_ids: vec!["sg-vpce".into()],
        policy_document: Some(GOOD_POLICY.into()),
        ..Default::default()
    });
    if !vpc.endpoint_groups.iter().any(|g| g.id == "sg-vpce") {
        vpc.endpoint_groups.push(SecurityGroup {
            id: "sg-vpce".into(),
            vpc_id: "vpc-1".into(),
            name: "endpoints".into(),
            ingress: vec![tcp(443, &["10.0.0.0/16"])],
            egress: vec![],
        });
        vpc.endpoint_subnets = vec![subnet("subnet-a", "10.0.1.0/24"), subnet("subnet-b", "10.0.2.0/24")];
    }
}

/// A rule allowing one TCP port to CIDRs (IPv4 or IPv6).
fn tcp(port: i32, cidrs: &[&str]) -> SgRule {
    let (v6, v4): (Vec<&str>, Vec<&str>) = cidrs.iter().partition(|c| c.contains(':'));
    SgRule {
        protocol: "tcp".into(),
        from_port: Some(port),
        to_port: Some(port),
        cidrs: v4.into_iter().map(Into::into).collect(),
        ipv6_cidrs: v6.into_iter().map(Into::into).collect(),
        ..Default::default()
    }
}

/// A route of the main table to a target beyond the VPC (`other_target`, or a `gateway_id`
/// such as `vgw-…` and `vpce-…`).
fn route_beyond(destination: &str, target: &str) -> Route {
    let gateway = target.starts_with("vgw-") || target.starts_with("vpce-");
    Route {
        destination_cidr: (!destination.starts_with("pl-")).then(|| destination.into()),
        destination_prefix_list_id: destination.starts_with("pl-").then(|| destination.into()),
        gateway_id: gateway.then(|| target.into()),
        other_target: (!gateway).then(|| target.into()),
        active: true,
        ..Default::default()
    }
}

fn acl_entry(n: i32, egress: bool, allow: bool, cidr: &str, ports: Option<(i32, i32)>) -> AclEntry {
    AclEntry {
        rule_number: n,
        egress,
        protocol: if ports.is_some() { "6" } else { "-1" }.into(),
        allow,
        cidr: (!cidr.contains(':')).then(|| cidr.into()),
        ipv6_cidr: cidr.contains(':').then(|| cidr.into()),
        port_from: ports.map(|p| p.0),
        port_to: ports.map(|p| p.1),
    }
}

/// Deletes the S3 gateway endpoint, and with it (as AWS does) its routes.
fn remove_s3_endpoint(vpc: &mut VpcTopology) {
    vpc.endpoints.clear();
    for rt in &mut vpc.route_tables {
        rt.routes.retain(|r| r.gateway_id.as_deref() != Some("vpce-s3"));
    }
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
            Code::MissingSelfReferencingEgress,
            Case::new().with(|c| c.groups[0].egress = vec![tcp(443, &["0.0.0.0/0"])]),
            Case::new().with(|c| c.groups[0].egress = vec![tcp(443, &["0.0.0.0/0"]), all_traffic_from("sg-1")]),
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
            Case::new().with(|c| remove_s3_endpoint(&mut c.vpc)),
            Case::new().with(|c| {
                remove_s3_endpoint(&mut c.vpc);
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
                    ipv6_cidr: None,
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
                    ipv6_cidr: None,
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
                add_interface_endpoint(&mut c.vpc, "sts", true);
            }),
        ),
        (
            Code::InterfaceEndpointUnusable,
            Case::new().with(|c| {
                validation(&mut c.spec).required_services = Some(vec!["sts".into()]);
                add_interface_endpoint(&mut c.vpc, "sts", false);
            }),
            Case::new().with(|c| {
                validation(&mut c.spec).required_services = Some(vec!["sts".into()]);
                add_interface_endpoint(&mut c.vpc, "sts", true);
            }),
        ),
        (
            Code::EgressNotVerifiable,
            Case::new().with(|c| {
                remove_s3_endpoint(&mut c.vpc);
                c.vpc.route_tables[0].routes.push(route_beyond("0.0.0.0/0", "tgw-1"));
            }),
            Case::new().with(|c| {
                remove_s3_endpoint(&mut c.vpc);
                set_default_route(&mut c.vpc, None, Some("nat-1"));
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

// ---------- issue #11: verdicts at the VPC's boundary, prefix lists, endpoints, exact ACLs ----------

fn count(codes: &[String], code: &str) -> usize {
    codes.iter().filter(|c| *c == code).count()
}

#[test]
fn every_target_beyond_the_vpc_is_one_warning_never_an_error() {
    for target in ["tgw-1", "pcx-1", "i-0abc", "eni-0abc", "vgw-1", "vpce-gwlb"] {
        let case = Case::new().with(|c| {
            remove_s3_endpoint(&mut c.vpc);
            c.vpc.endpoints.push(VpcEndpoint {
                id: "vpce-gwlb".into(),
                service_name: "com.amazonaws.vpce.us-east-1.vpce-svc-1".into(),
                endpoint_type: EndpointType::Other,
                state: "available".into(),
                ..Default::default()
            });
            c.vpc.route_tables[0].routes.push(route_beyond("0.0.0.0/0", target));
            validation(&mut c.spec).requires_internet = Some(true);
            validation(&mut c.spec).required_services = Some(vec!["sts".into()]);
        });
        let findings = case.findings();
        let codes: Vec<String> = findings.iter().map(|f| f.code.clone()).collect();
        assert_eq!(codes, ["EgressNotVerifiable"], "{target}");
        let message = &findings[0].message;
        assert_eq!(findings[0].resource, "rtb-main");
        for part in [
            "rtb-main",
            "0.0.0.0/0",
            target,
            "S3",
            "the internet",
            "sts",
            "subnet-a, subnet-b",
        ] {
            assert!(message.contains(part), "{target}: {part} not in {message}");
        }
    }
}

#[test]
fn an_s3_route_beyond_the_vpc_wins_over_the_default_route_by_longest_prefix() {
    // S3's prefix list to a firewall appliance, everything else to the NAT gateway.
    let case = Case::new().with(|c| {
        remove_s3_endpoint(&mut c.vpc);
        set_default_route(&mut c.vpc, None, Some("nat-1"));
        c.vpc.route_tables[0]
            .routes
            .push(route_beyond("pl-63a5400a", "eni-firewall"));
    });
    let findings = case.findings();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].message.contains("pl-63a5400a") && findings[0].message.contains("network interface eni-firewall")
    );
    // A blackhole route for S3's list drops S3 whatever the default route says.
    let case = case.with(|c| {
        if let Some(r) = c.vpc.route_tables[0].routes.last_mut() {
            r.active = false;
        }
    });
    assert_eq!(case.codes(), ["NoS3Route", "NoS3Route"]);
}

#[test]
fn a_private_nat_gateway_into_a_transit_gateway_is_a_boundary() {
    let case = Case::new().with(|c| {
        remove_s3_endpoint(&mut c.vpc);
        set_default_route(&mut c.vpc, None, Some("nat-1"));
        c.vpc.nat_gateways[0].connectivity = "private".into();
        c.vpc.route_tables[1]
            .routes
            .retain(|r| r.gateway_id.as_deref() != Some("igw-1"));
        c.vpc.route_tables[1].routes.push(route_beyond("0.0.0.0/0", "tgw-hub"));
    });
    let findings = case.findings();
    assert_eq!(
        findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(),
        ["EgressNotVerifiable"]
    );
    assert_eq!(findings[0].resource, "rtb-public");
}

#[test]
fn egress_to_prefix_lists_counts_for_the_addresses_in_them() {
    let egress = |pls: &[&str]| {
        let pls: Vec<String> = pls.iter().map(|p| p.to_string()).collect();
        move |c: &mut Case| {
            c.spec.processing_resources.cluster_config.instance_count = 1;
            c.groups[0].egress = vec![SgRule {
                protocol: "tcp".into(),
                from_port: Some(443),
                to_port: Some(443),
                prefix_list_ids: pls.clone(),
                ..Default::default()
            }];
            c.prefix_lists.push(PrefixList {
                id: "pl-corp".into(),
                name: String::new(),
                cidrs: vec![
                    "52.216.0.0/15".into(),
                    "3.5.0.0/19".into(),
                    "54.231.0.0/17".into(),
                    "54.231.128.0/17".into(),
                ],
            });
            c.prefix_lists.push(PrefixList {
                id: "pl-partial".into(),
                name: String::new(),
                cidrs: vec!["52.216.0.0/15".into()],
            });
        }
    };
    // S3's own list, through the gateway endpoint and through a NAT gateway.
    assert!(Case::new().with(egress(&["pl-63a5400a"])).codes().is_empty());
    let nat = |c: &mut Case| {
        remove_s3_endpoint(&mut c.vpc);
        set_default_route(&mut c.vpc, None, Some("nat-1"));
    };
    assert!(Case::new().with(egress(&["pl-63a5400a"])).with(nat).codes().is_empty());
    // A customer list covering S3's ranges (in pieces) counts; one covering a part does not.
    assert!(Case::new().with(egress(&["pl-corp"])).codes().is_empty());
    assert_eq!(Case::new().with(egress(&["pl-partial"])).codes(), ["NoS3Egress"]);
    // IPv6 egress does not carry the job's IPv4 S3 traffic.
    let v6 = Case::new().with(|c| {
        c.spec.processing_resources.cluster_config.instance_count = 1;
        c.groups[0].egress = vec![tcp(443, &["::/0"])];
    });
    assert_eq!(v6.codes(), ["NoS3Egress"]);
}

#[test]
fn with_an_s3_interface_endpoint_only_egress_reaching_its_interfaces_counts() {
    let base = |c: &mut Case| {
        remove_s3_endpoint(&mut c.vpc);
        add_interface_endpoint(&mut c.vpc, "s3", true);
        c.spec.processing_resources.cluster_config.instance_count = 1;
    };
    let to_group = |g: &str| SgRule {
        protocol: "tcp".into(),
        from_port: Some(443),
        to_port: Some(443),
        group_ids: vec![g.into()],
        ..Default::default()
    };
    assert_eq!(
        Case::new()
            .with(base)
            .with(|c| c.groups[0].egress = vec![to_group("sg-other")])
            .codes(),
        ["NoS3Egress"]
    );
    assert!(Case::new()
        .with(base)
        .with(|c| c.groups[0].egress = vec![to_group("sg-vpce")])
        .codes()
        .is_empty());
    assert!(Case::new()
        .with(base)
        .with(|c| c.groups[0].egress = vec![tcp(443, &["10.0.0.0/16"])])
        .codes()
        .is_empty());
    assert_eq!(
        Case::new()
            .with(base)
            .with(|c| c.groups[0].egress = vec![tcp(443, &["10.0.1.0/24"])])
            .codes(),
        ["NoS3Egress"],
        "one of the endpoint's two subnets is not reached"
    );
}

#[test]
fn interface_endpoints_must_be_available_answer_the_vpc_and_admit_the_job() {
    let sts = |c: &mut Case| {
        validation(&mut c.spec).required_services = Some(vec!["sts".into()]);
        add_interface_endpoint(&mut c.vpc, "sts", true);
    };
    assert!(Case::new().with(sts).codes().is_empty());
    type Breaks = Box<dyn Fn(&mut Case)>;
    let broken: Vec<(&str, Breaks)> = vec![
        (
            "pending",
            Box::new(|c: &mut Case| c.vpc.endpoints[1].state = "pending".into()),
        ),
        (
            "private DNS is off",
            Box::new(|c: &mut Case| c.vpc.endpoints[1].private_dns_enabled = false),
        ),
        (
            "inbound Resolver",
            Box::new(|c: &mut Case| c.vpc.endpoints[1].private_dns_only_for_inbound_resolver = true),
        ),
        (
            "admit no inbound TCP 443",
            Box::new(|c: &mut Case| c.vpc.endpoint_groups[0].ingress = vec![tcp(443, &["10.0.1.0/24"])]),
        ),
        (
            "admit no inbound TCP 443",
            Box::new(|c: &mut Case| c.vpc.endpoint_groups[0].ingress = vec![tcp(80, &["10.0.0.0/16"])]),
        ),
        (
            "outbound TCP 443 to endpoint",
            Box::new(|c: &mut Case| {
                c.groups[0].egress = vec![
                    tcp(443, &["52.216.0.0/15", "3.5.0.0/19", "54.231.0.0/16"]),
                    all_traffic_from("sg-1"),
                ]
            }),
        ),
    ];
    for (why, breaks) in broken {
        let findings = Case::new().with(sts).with(|c| breaks(c)).findings();
        let unusable: Vec<_> = findings
            .iter()
            .filter(|f| f.code == "InterfaceEndpointUnusable")
            .collect();
        assert_eq!(unusable.len(), 1, "{why}: {findings:?}");
        assert_eq!(unusable[0].resource, "vpce-sts");
        assert!(unusable[0].message.contains(why), "{why}: {}", unusable[0].message);
        assert!(!findings.iter().any(|f| f.code == "MissingInterfaceEndpoint"));
    }
    // Admitted by the job's group instead of a CIDR.
    let by_group = Case::new().with(sts).with(|c| {
        c.vpc.endpoint_groups[0].ingress = vec![SgRule {
            protocol: "tcp".into(),
            from_port: Some(443),
            to_port: Some(443),
            group_ids: vec!["sg-1".into()],
            ..Default::default()
        }]
    });
    assert!(by_group.codes().is_empty());
    // Private DNS off but a NAT path: the SDKs go through the NAT gateway, nothing to report.
    let nat = Case::new().with(sts).with(|c| {
        c.vpc.endpoints[1].private_dns_enabled = false;
        set_default_route(&mut c.vpc, None, Some("nat-1"));
    });
    assert!(nat.codes().is_empty(), "{:?}", nat.codes());
}

#[test]
fn an_s3_interface_endpoint_that_does_not_serve_is_named_instead_of_no_route() {
    let case = Case::new().with(|c| {
        remove_s3_endpoint(&mut c.vpc);
        add_interface_endpoint(&mut c.vpc, "s3", false);
        c.spec.processing_resources.cluster_config.instance_count = 1;
    });
    let findings = case.findings();
    assert_eq!(
        findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>(),
        ["InterfaceEndpointUnusable"]
    );
    assert!(findings[0].message.contains("private DNS is off") && findings[0].message.contains("subnet-a, subnet-b"));
    // Private DNS on, the endpoint's group admits only another group: blocked, even with a NAT.
    let closed = case.with(|c| {
        c.vpc.endpoints[0].private_dns_enabled = true;
        c.vpc.endpoint_groups[0].ingress = vec![tcp(443, &["192.168.0.0/16"])];
        set_default_route(&mut c.vpc, None, Some("nat-1"));
    });
    assert_eq!(closed.codes(), ["InterfaceEndpointUnusable"]);
}

#[test]
fn distributed_jobs_need_ingress_and_egress_among_members_and_ipsec_with_encryption() {
    let encrypted = |c: &mut Case| {
        c.spec
            .network_config
            .as_mut()
            .map(|n| n.enable_inter_container_traffic_encryption = Some(true))
            .unwrap_or(());
    };
    let all_tcp_self = SgRule {
        protocol: "tcp".into(),
        from_port: Some(0),
        to_port: Some(65535),
        group_ids: vec!["sg-1".into()],
        ..Default::default()
    };
    // All protocols to and from the group: fine with encryption.
    assert!(Case::new().with(encrypted).codes().is_empty());
    // TCP only: fine without encryption, both directions missing IPsec with it.
    let tcp_only = |c: &mut Case| {
        c.groups[0].ingress = vec![all_tcp_self.clone()];
        c.groups[0].egress = vec![all_tcp_self.clone(), tcp(443, &["0.0.0.0/0"])];
    };
    assert!(Case::new().with(tcp_only).codes().is_empty());
    let findings = Case::new().with(tcp_only).with(encrypted).findings();
    let codes: Vec<&str> = findings.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["MissingSelfReferencingIngress", "MissingSelfReferencingEgress"]);
    assert!(
        findings[0].message.contains("UDP 500 and IP protocol 50 (ESP)"),
        "{}",
        findings[0].message
    );
    // Adding UDP 500 and ESP both ways fixes it.
    let ipsec = |c: &mut Case| {
        let g = &mut c.groups[0];
        for rules in [&mut g.ingress, &mut g.egress] {
            rules.push(SgRule {
                protocol: "udp".into(),
                from_port: Some(500),
                to_port: Some(500),
                group_ids: vec!["sg-1".into()],
                ..Default::default()
            });
            rules.push(SgRule {
                protocol: "50".into(),
                group_ids: vec!["sg-1".into()],
                ..Default::default()
            });
        }
    };
    assert!(Case::new()
        .with(tcp_only)
        .with(encrypted)
        .with(ipsec)
        .codes()
        .is_empty());
    // Ingress from the subnets' CIDRs counts like ingress from the group; IPv6 CIDRs do not.
    let cidr = Case::new().with(|c| {
        c.groups[0].ingress = vec![SgRule {
            protocol: "-1".into(),
            cidrs: vec!["10.0.0.0/16".into()],
            ..Default::default()
        }]
    });
    assert!(cidr.codes().is_empty());
    let v6 = Case::new().with(|c| {
        c.groups[0].ingress = vec![SgRule {
            protocol: "-1".into(),
            ipv6_cidrs: vec!["::/0".into()],
            ..Default::default()
        }]
    });
    assert_eq!(v6.codes(), ["MissingSelfReferencingIngress"]);
}

fn acl_case(entries: Vec<AclEntry>) -> Case {
    Case::new().with(|c| c.vpc.network_acls[0].entries = entries)
}

#[test]
fn network_acls_are_evaluated_exactly_against_s3s_ranges() {
    let s3 = ["52.216.0.0/15", "3.5.0.0/19", "54.231.0.0/16"];
    // Only S3's ranges out on 443, only the hosts' ephemeral range back in: enough.
    let mut tight = Vec::new();
    for (i, c) in s3.iter().enumerate() {
        let n = 100 + i as i32;
        tight.push(acl_entry(n, true, true, c, Some((443, 443))));
        tight.push(acl_entry(n, false, true, c, Some((32768, 61000))));
    }
    assert!(
        acl_case(tight.clone()).codes().is_empty(),
        "{:?}",
        acl_case(tight.clone()).codes()
    );
    // One S3 range missing outbound: blocked, naming the range.
    let findings = acl_case(tight[1..].to_vec()).findings();
    assert_eq!(findings.iter().filter(|f| f.code == "NetworkAclBlocksS3").count(), 2);
    assert!(findings[0].message.contains("52.216.0.0/15"), "{}", findings[0].message);
    // Return traffic only on 1024-32767: blocked; 1024-65535 is not demanded.
    let narrow = vec![
        acl_entry(100, true, true, "0.0.0.0/0", Some((443, 443))),
        acl_entry(100, false, true, "0.0.0.0/0", Some((1024, 32767))),
    ];
    assert_eq!(count(&acl_case(narrow).codes(), "NetworkAclBlocksS3"), 2);
    // A deny of 443 to part of S3 before the allow blocks, naming the rule.
    let deny = vec![
        acl_entry(90, true, false, "52.217.0.0/16", Some((443, 443))),
        acl_entry(100, true, true, "0.0.0.0/0", None),
        acl_entry(100, false, true, "0.0.0.0/0", None),
    ];
    let findings = acl_case(deny.clone()).findings();
    assert!(
        findings[0]
            .message
            .contains("rule 90 denies outbound TCP 443 to 52.217.0.0/16"),
        "{}",
        findings[0].message
    );
    // A deny elsewhere, a deny of other ports, a deny after the allow, an IPv6 deny: no effect.
    for harmless in [
        acl_entry(90, true, false, "10.9.0.0/16", Some((443, 443))),
        acl_entry(90, true, false, "0.0.0.0/0", Some((22, 22))),
        acl_entry(110, true, false, "0.0.0.0/0", Some((443, 443))),
        acl_entry(90, true, false, "::/0", None),
        acl_entry(90, false, false, "0.0.0.0/0", Some((1024, 32767))),
    ] {
        let mut entries = deny[1..].to_vec();
        entries.push(harmless.clone());
        assert!(acl_case(entries).codes().is_empty(), "{harmless:?}");
    }
}

#[test]
fn the_nat_path_needs_the_nat_subnets_acl_to_forward() {
    let nat_acl = |entries: Vec<AclEntry>| {
        Case::new().with(move |c| {
            remove_s3_endpoint(&mut c.vpc);
            set_default_route(&mut c.vpc, None, Some("nat-1"));
            c.vpc.network_acls.push(NetworkAcl {
                id: "acl-public".into(),
                default: false,
                subnet_ids: vec!["subnet-public".into()],
                entries,
            });
        })
    };
    let open = vec![
        acl_entry(100, true, true, "0.0.0.0/0", None),
        acl_entry(100, false, true, "0.0.0.0/0", None),
    ];
    assert!(nat_acl(open).codes().is_empty());
    // The public subnet's ACL admits replies only on the hosts' range, but the NAT gateway uses 1024-65535.
    let hosts_only = vec![
        acl_entry(100, true, true, "0.0.0.0/0", None),
        acl_entry(100, false, true, "0.0.0.0/0", Some((32768, 61000))),
        acl_entry(110, false, true, "10.0.0.0/16", Some((443, 443))),
    ];
    let findings = nat_acl(hosts_only).findings();
    let blocked: Vec<_> = findings.iter().filter(|f| f.code == "NetworkAclBlocksS3").collect();
    assert_eq!(blocked.len(), 2, "{findings:?}");
    assert!(
        blocked[0].message.contains("acl-public") && blocked[0].message.contains("subnet-public"),
        "{}",
        blocked[0].message
    );
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
        prop::collection::vec(prop::sample::select(vec!["::/0", "2600:1f18::/56"]), 0..2),
    )
        .prop_map(|(p, from, to, cidrs, pls, groups, v6)| SgRule {
            protocol: p.into(),
            from_port: from,
            to_port: to,
            cidrs: cidrs.into_iter().map(Into::into).collect(),
            ipv6_cidrs: v6.into_iter().map(Into::into).collect(),
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
            if !keep_endpoint { remove_s3_endpoint(&mut c.vpc); }
            c.spec.network_config.as_mut().map(|n| n.enable_network_isolation = Some(isolation)).unwrap_or(());
            validation(&mut c.spec).requires_internet = Some(internet);
            c.vpc.dns_support = dns.0;
            c.vpc.dns_hostnames = dns.1;
            if let Some((n, egress, port)) = acl_deny {
                c.vpc.network_acls[0].entries.push(AclEntry { rule_number: n, egress, protocol: "6".into(), allow: false,
                    cidr: Some("0.0.0.0/0".into()), ipv6_cidr: None, port_from: Some(port), port_to: Some(port) });
            }
        })
    }
}

proptest! {
    #[test]
    fn random_snapshots_never_panic_and_findings_are_well_formed(case in arb_case()) {
        for f in case.findings() {
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
