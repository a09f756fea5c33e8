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

    fn snapshot(&self) -> NetworkSnapshot {
        NetworkSnapshot {
            region: "us-east-1".into(),
            subnets: self.subnets.clone(),
            security_groups: self.groups.clone(),
            vpc: Some(Arc::new(self.vpc.clone())),
            prefix_lists: self.prefix_lists.clone(),
        }
    }

    fn findings(&self) -> Vec<crate::api::Finding> {
        validate(&self.spec, &self.snapshot())
    }

    fn codes(&self) -> Vec<String> {
        self.findings().into_iter().map(|f| f.code).collect()
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
    for code in Code::ALL {
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

use super::policy;
