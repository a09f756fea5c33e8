//! The network checks N1–N14 of the design: a pure function from a job's spec and its network
//! snapshot to findings.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Finding, ProcessingJobSpec};

use super::codes::Code;
use super::policy::{self, Decision};
use super::snapshot::{cidr, EndpointType, NetworkSnapshot, RouteTable, Subnet, VpcEndpoint, VpcTopology};

/// How a subnet reaches S3.
#[derive(Debug, Clone, Copy)]
enum S3Path<'a> {
    GatewayEndpoint(&'a VpcEndpoint),
    InterfaceEndpoint(&'a VpcEndpoint),
    Nat,
    None,
}

/// How a subnet reaches the internet.
enum InternetPath<'a> {
    Nat,
    /// A default route to a NAT gateway that cannot reach the internet itself.
    BrokenNat(&'a str, String),
    InternetGateway(&'a str),
    None,
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, code: Code, resource: impl Into<String>, message: impl Into<String>) {
        self.0.push(Finding {
            code: code.as_str().to_string(),
            severity: code.severity(),
            resource: resource.into(),
            message: message.into(),
            remediation: code.remediation().to_string(),
        });
    }
}

fn s3_service(region: &str) -> String {
    format!("com.amazonaws.{region}.s3")
}

fn default_route(rt: &RouteTable) -> Option<&super::snapshot::Route> {
    rt.routes
        .iter()
        .find(|r| r.active && r.destination_cidr.as_deref().is_some_and(cidr::is_anywhere))
}

fn internet_path<'a>(vpc: &'a VpcTopology, subnet_id: &str) -> InternetPath<'a> {
    let Some(rt) = vpc.route_table_for(subnet_id) else {
        return InternetPath::None;
    };
    let Some(route) = default_route(rt) else {
        return InternetPath::None;
    };
    if let Some(nat_id) = route.nat_gateway_id.as_deref() {
        let Some(nat) = vpc.nat_gateways.iter().find(|n| n.id == nat_id) else {
            return InternetPath::BrokenNat(nat_id, "does not exist".into());
        };
        let state = nat.state.to_ascii_lowercase();
        if !(state.is_empty() || state == "available" || state == "pending") {
            return InternetPath::BrokenNat(nat_id, format!("is {}", nat.state));
        }
        if nat.connectivity.eq_ignore_ascii_case("private") {
            return InternetPath::BrokenNat(nat_id, "is a private NAT gateway (no internet access)".into());
        }
        let nat_public = vpc
            .route_table_for(&nat.subnet_id)
            .and_then(default_route)
            .and_then(|r| r.gateway_id.as_deref())
            .is_some_and(|g| g.starts_with("igw-"));
        if !nat_public {
            return InternetPath::BrokenNat(
                nat_id,
                format!(
                    "sits in subnet {} whose route table has no default route to an internet gateway",
                    nat.subnet_id
                ),
            );
        }
        return InternetPath::Nat;
    }
    match route.gateway_id.as_deref() {
        Some(g) if g.starts_with("igw-") => InternetPath::InternetGateway(g),
        _ => InternetPath::None,
    }
}

fn s3_path<'a>(vpc: &'a VpcTopology, region: &str, subnet_id: &str) -> S3Path<'a> {
    let service = s3_service(region);
    let rt = vpc.route_table_for(subnet_id);
    let gateway = vpc.endpoints.iter().find(|e| {
        e.service_name == service
            && e.endpoint_type == EndpointType::Gateway
            && e.usable()
            && rt.is_some_and(|rt| {
                e.route_table_ids.iter().any(|id| id == &rt.id)
                    || rt
                        .routes
                        .iter()
                        .any(|r| r.active && r.gateway_id.as_deref() == Some(e.id.as_str()))
            })
    });
    if let Some(e) = gateway {
        return S3Path::GatewayEndpoint(e);
    }
    if let Some(e) = vpc
        .endpoints
        .iter()
        .find(|e| e.service_name == service && e.endpoint_type == EndpointType::Interface && e.usable())
    {
        return S3Path::InterfaceEndpoint(e);
    }
    match internet_path(vpc, subnet_id) {
        InternetPath::Nat => S3Path::Nat,
        _ => S3Path::None,
    }
}

/// Parses an S3 URI (`s3://bucket/key`, virtual-hosted or path-style `https://`) into bucket
/// and key.
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        return (!bucket.is_empty()).then(|| (bucket.to_string(), key.to_string()));
    }
    let rest = uri.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.starts_with("s3.") || host.starts_with("s3-") {
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        return (!bucket.is_empty()).then(|| (bucket.to_string(), key.to_string()));
    }
    let idx = host.find(".s3.").or_else(|| host.find(".s3-"))?;
    Some((host[..idx].to_string(), path.to_string()))
}

/// Runs every check for one job. Jobs without `vpcConfig` have nothing to validate.
pub fn validate(spec: &ProcessingJobSpec, snap: &NetworkSnapshot) -> Vec<Finding> {
    let Some(vpc_config) = spec.vpc_config() else {
        return Vec::new();
    };
    let mut f = Findings(Vec::new());
    let isolation = spec.network_isolation();

    // N14
    if isolation {
        f.add(
            Code::NetworkIsolationSkipsChecks,
            "networkConfig.enableNetworkIsolation",
            "network isolation is on: the container has no network, so the internet (NoInternetRoute) and interface endpoint (MissingInterfaceEndpoint) checks were skipped; S3 access for inputs and outputs is still checked",
        );
    }

    // N1
    for id in &vpc_config.subnets {
        if !snap.subnets.iter().any(|s| &s.id == id) {
            f.add(
                Code::SubnetNotFound,
                id,
                format!("subnet {id} does not exist in region {}", snap.region),
            );
        }
    }
    for id in &vpc_config.security_group_ids {
        if !snap.security_groups.iter().any(|g| &g.id == id) {
            f.add(
                Code::SecurityGroupNotFound,
                id,
                format!("security group {id} does not exist in region {}", snap.region),
            );
        }
    }

    // N2
    let vpc_ids: BTreeSet<&str> = snap.subnets.iter().map(|s| s.vpc_id.as_str()).collect();
    if vpc_ids.len() > 1 {
        let detail: Vec<String> = snap
            .subnets
            .iter()
            .map(|s| format!("{} in {}", s.id, s.vpc_id))
            .collect();
        f.add(
            Code::SubnetsInMultipleVpcs,
            vpc_ids.iter().copied().collect::<Vec<_>>().join(","),
            format!(
                "the job's subnets are in {} VPCs ({}); all must be in one VPC",
                vpc_ids.len(),
                detail.join(", ")
            ),
        );
    }
    let Some(vpc) = snap.vpc.as_deref() else {
        return f.0;
    };
    for g in &snap.security_groups {
        if g.vpc_id != vpc.vpc_id {
            f.add(
                Code::SecurityGroupVpcMismatch,
                &g.id,
                format!(
                    "security group {} is in {}, but the job's subnets are in {}",
                    g.id, g.vpc_id, vpc.vpc_id
                ),
            );
        }
    }
    let subnets: Vec<&Subnet> = snap.subnets.iter().filter(|s| s.vpc_id == vpc.vpc_id).collect();
    let groups: Vec<_> = snap.security_groups.iter().filter(|g| g.vpc_id == vpc.vpc_id).collect();
    let group_ids: BTreeSet<&str> = groups.iter().map(|g| g.id.as_str()).collect();

    // N3
    let instances = i64::from(spec.instance_count().max(1));
    let needed = 2 * instances;
    let total: i64 = subnets.iter().map(|s| s.available_ips).sum();
    if !subnets.is_empty() && total < needed {
        let detail: Vec<String> = subnets
            .iter()
            .map(|s| format!("{} has {}", s.id, s.available_ips))
            .collect();
        f.add(
            Code::InsufficientSubnetIps,
            subnets.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(","),
            format!(
                "{instances} instance(s) need {needed} free private IPs, the subnets have {total} in all ({})",
                detail.join(", ")
            ),
        );
    } else {
        for s in subnets.iter().filter(|s| s.available_ips < needed) {
            f.add(
                Code::SubnetLowOnIps,
                &s.id,
                format!(
                    "subnet {} has {} free private IPs, fewer than the {needed} the job's {instances} instance(s) need; the job depends on the other subnets",
                    s.id, s.available_ips
                ),
            );
        }
    }

    // N4
    if instances > 1 && !groups.is_empty() {
        let self_referencing = groups.iter().any(|g| {
            g.ingress
                .iter()
                .any(|r| r.allows_all_traffic() && r.group_ids.iter().any(|id| group_ids.contains(id.as_str())))
        });
        if !self_referencing {
            f.add(
                Code::MissingSelfReferencingIngress,
                group_ids.iter().copied().collect::<Vec<_>>().join(","),
                format!(
                    "the job runs {instances} instances, but none of its security groups ({}) allows all inbound traffic from members of the same group, so the containers cannot talk to each other",
                    group_ids.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }

    let paths: Vec<(&Subnet, S3Path<'_>)> = subnets
        .iter()
        .map(|s| (*s, s3_path(vpc, &snap.region, &s.id)))
        .collect();

    // N5
    if !groups.is_empty() {
        let s3_prefix_lists: BTreeSet<&str> = vpc
            .route_tables
            .iter()
            .flat_map(|rt| rt.routes.iter())
            .filter(|r| {
                r.gateway_id.as_deref().is_some_and(|g| {
                    vpc.endpoints
                        .iter()
                        .any(|e| e.id == g && e.service_name == s3_service(&snap.region))
                })
            })
            .filter_map(|r| r.destination_prefix_list_id.as_deref())
            .collect();
        let interface = paths.iter().any(|(_, p)| matches!(p, S3Path::InterfaceEndpoint(_)));
        let allows = groups.iter().any(|g| {
            g.egress.iter().any(|r| {
                r.allows_tcp_port(443)
                    && (r.cidrs.iter().any(|c| cidr::is_anywhere(c))
                        || r.prefix_list_ids.iter().any(|p| s3_prefix_lists.contains(p.as_str()))
                        || (interface
                            && (!r.group_ids.is_empty()
                                || r.cidrs
                                    .iter()
                                    .any(|c| vpc.cidr_blocks.iter().any(|v| cidr::contains(c, v))))))
            })
        });
        if !allows {
            f.add(
                Code::NoS3Egress,
                group_ids.iter().copied().collect::<Vec<_>>().join(","),
                "none of the job's security groups allows outbound TCP 443 to S3 (0.0.0.0/0 or the S3 prefix list), so inputs cannot be downloaded nor outputs uploaded",
            );
        }
    }

    // N6
    for (s, path) in &paths {
        if matches!(path, S3Path::None) {
            let rt = vpc.route_table_for(&s.id).map(|rt| rt.id.as_str()).unwrap_or("(none)");
            f.add(
                Code::NoS3Route,
                &s.id,
                format!(
                    "subnet {} cannot reach S3: its route table {rt} has no route to an S3 gateway endpoint, the VPC has no S3 interface endpoint, and there is no NAT gateway route",
                    s.id
                ),
            );
        }
    }

    // N7 and N13
    let mut endpoints: BTreeMap<&str, &VpcEndpoint> = BTreeMap::new();
    for (_, path) in &paths {
        if let S3Path::GatewayEndpoint(e) | S3Path::InterfaceEndpoint(e) = path {
            endpoints.insert(e.id.as_str(), e);
        }
    }
    for e in endpoints.values() {
        check_endpoint_policy(spec, vpc, e, &snap.region, isolation, &mut f);
    }

    // N8
    if !vpc.dns_support || !vpc.dns_hostnames {
        let mut off = Vec::new();
        if !vpc.dns_support {
            off.push("enableDnsSupport");
        }
        if !vpc.dns_hostnames {
            off.push("enableDnsHostnames");
        }
        f.add(
            Code::VpcDnsDisabled,
            &vpc.vpc_id,
            format!(
                "VPC {} has {} off; S3 and interface endpoint names may not resolve",
                vpc.vpc_id,
                off.join(" and ")
            ),
        );
    }

    // N9
    for s in &subnets {
        if let Some(problem) = vpc.network_acl_for(&s.id).and_then(acl_problem) {
            f.add(Code::NetworkAclBlocksS3, &s.id, format!("subnet {}: {problem}", s.id));
        }
    }

    // N10
    if spec.requires_internet() && !isolation {
        for s in &subnets {
            match internet_path(vpc, &s.id) {
                InternetPath::Nat => {}
                InternetPath::InternetGateway(igw) => f.add(
                    Code::InternetGatewayRouteWithoutNat,
                    &s.id,
                    format!(
                        "subnet {} routes 0.0.0.0/0 straight to internet gateway {igw}; SageMaker's network interfaces get no public IP, so this gives the job no internet access",
                        s.id
                    ),
                ),
                InternetPath::BrokenNat(nat, why) => f.add(
                    Code::NoInternetRoute,
                    &s.id,
                    format!("subnet {} routes 0.0.0.0/0 to NAT gateway {nat}, which {why}", s.id),
                ),
                InternetPath::None => f.add(
                    Code::NoInternetRoute,
                    &s.id,
                    format!("the job requires the internet, but subnet {} has no default route to a NAT gateway", s.id),
                ),
            }
        }
    }

    // N11
    if !isolation {
        for service in spec.required_services() {
            let name = format!("com.amazonaws.{}.{service}", snap.region);
            let has_endpoint = vpc
                .endpoints
                .iter()
                .any(|e| e.service_name == name && e.endpoint_type == EndpointType::Interface && e.usable());
            if has_endpoint {
                continue;
            }
            let without_nat: Vec<&str> = subnets
                .iter()
                .filter(|s| !matches!(internet_path(vpc, &s.id), InternetPath::Nat))
                .map(|s| s.id.as_str())
                .collect();
            if !without_nat.is_empty() {
                f.add(
                    Code::MissingInterfaceEndpoint,
                    &name,
                    format!(
                        "the job needs {service}, but VPC {} has no interface endpoint for {name} and subnets {} have no NAT path",
                        vpc.vpc_id,
                        without_nat.join(", ")
                    ),
                );
            }
        }
    }

    // N12
    if !vpc.flow_logs {
        f.add(
            Code::FlowLogsDisabled,
            &vpc.vpc_id,
            format!(
                "VPC {} has no active flow log, so the job's network traffic is not recorded",
                vpc.vpc_id
            ),
        );
    }

    f.0
}

fn check_endpoint_policy(
    spec: &ProcessingJobSpec,
    vpc: &VpcTopology,
    endpoint: &VpcEndpoint,
    region: &str,
    isolation: bool,
    f: &mut Findings,
) {
    let document = endpoint
        .policy_document
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    let Some(document) = document else {
        // No policy: the endpoint allows full access, as AWS does by default.
        if !isolation {
            f.add(
                Code::PackageRepositoriesReachable,
                &endpoint.id,
                format!("endpoint {} has the default full-access policy, so containers can install packages from the Amazon Linux repositories", endpoint.id),
            );
        }
        return;
    };
    let policy = match policy::parse(document) {
        Ok(p) => p,
        Err(e) => {
            f.add(
                Code::S3EndpointPolicyUnevaluable,
                &endpoint.id,
                format!(
                    "the policy of endpoint {} cannot be read ({e}); whether it allows the job's S3 access is unknown",
                    endpoint.id
                ),
            );
            return;
        }
    };
    let principal = spec.role_arn.as_str();
    let mut base = BTreeMap::new();
    base.insert("aws:principalarn".to_string(), principal.to_string());
    if let Some(account) = principal.split(':').nth(4) {
        base.insert("aws:principalaccount".to_string(), account.to_string());
    }
    base.insert("aws:sourcevpce".to_string(), endpoint.id.clone());
    base.insert("aws:sourcevpc".to_string(), vpc.vpc_id.clone());

    let mut requests: Vec<(&str, &str, bool)> = Vec::new(); // (uri, action, is_input)
    for uri in spec.input_uris() {
        requests.push((uri, "s3:GetObject", true));
        requests.push((uri, "s3:ListBucket", true));
    }
    for uri in spec.output_uris() {
        requests.push((uri, "s3:PutObject", false));
    }
    for (uri, action, _) in requests {
        let Some((bucket, key)) = parse_s3_uri(uri) else {
            f.add(
                Code::S3EndpointPolicyUnevaluable,
                &endpoint.id,
                format!(
                    "cannot tell the bucket of {uri}, so the policy of endpoint {} was not evaluated for it",
                    endpoint.id
                ),
            );
            continue;
        };
        match decide_for_uri(&policy, &base, principal, action, &bucket, &key) {
            Decision::Allowed => {}
            Decision::Denied { explicit, sid } => {
                let why = match (explicit, sid) {
                    (true, Some(sid)) => format!("an explicit Deny (statement {sid})"),
                    (true, None) => "an explicit Deny".to_string(),
                    (false, _) => "no statement allows it".to_string(),
                };
                f.add(
                    Code::S3EndpointPolicyDenies,
                    &endpoint.id,
                    format!("the policy of endpoint {} denies {action} on {uri} for role {principal}: {why}", endpoint.id),
                );
            }
            Decision::Unevaluable { key: cond } => f.add(
                Code::S3EndpointPolicyUnevaluable,
                &endpoint.id,
                format!(
                    "the policy of endpoint {} decides {action} on {uri} by condition {cond}, which cannot be evaluated from the job",
                    endpoint.id
                ),
            ),
        }
    }

    if !isolation {
        let repos = [
            format!("packages.{region}.amazonaws.com"),
            format!("repo.{region}.amazonaws.com"),
            format!("amazonlinux.{region}.amazonaws.com"),
        ];
        let reachable: Vec<&String> = repos
            .iter()
            .filter(|b| {
                policy.evaluate(&policy::Request {
                    action: "s3:GetObject",
                    resource: &format!("arn:aws:s3:::{b}/packages"),
                    context: &base,
                    principal_arn: principal,
                }) == Decision::Allowed
            })
            .collect();
        if !reachable.is_empty() {
            f.add(
                Code::PackageRepositoriesReachable,
                &endpoint.id,
                format!(
                    "the policy of endpoint {} allows the Amazon Linux package repositories ({}), so containers can install packages",
                    endpoint.id,
                    reachable.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
}

/// The decision for one action on one S3 URI. Objects are checked at the URI itself and at an
/// object under it: an explicit Deny on either wins; the object under the prefix decides the
/// rest. `s3:ListBucket` is checked on the bucket with `s3:prefix` set.
fn decide_for_uri(
    policy: &policy::Policy,
    base: &BTreeMap<String, String>,
    principal: &str,
    action: &str,
    bucket: &str,
    key: &str,
) -> Decision {
    let eval = |resource: &str, context: &BTreeMap<String, String>| {
        policy.evaluate(&policy::Request {
            action,
            resource,
            context,
            principal_arn: principal,
        })
    };
    if action == "s3:ListBucket" {
        let mut context = base.clone();
        context.insert("s3:prefix".to_string(), key.to_string());
        return eval(&format!("arn:aws:s3:::{bucket}"), &context);
    }
    let trimmed = key.trim_end_matches('/');
    let exact = format!("arn:aws:s3:::{bucket}/{key}");
    let inside = if trimmed.is_empty() {
        format!("arn:aws:s3:::{bucket}/object")
    } else {
        format!("arn:aws:s3:::{bucket}/{trimmed}/object")
    };
    let exact_decision = eval(&exact, base);
    if matches!(exact_decision, Decision::Denied { explicit: true, .. }) {
        return exact_decision;
    }
    let inside_decision = eval(&inside, base);
    match (&inside_decision, exact_decision) {
        (Decision::Denied { explicit: true, .. }, _) => inside_decision,
        (_, d @ Decision::Unevaluable { .. }) if !key.is_empty() && !key.ends_with('/') => match inside_decision {
            Decision::Allowed => d,
            other => other,
        },
        _ => inside_decision,
    }
}

/// Why a network ACL blocks the job's S3 traffic, if it does: outbound TCP 443 to anywhere, and
/// the return traffic on ephemeral ports (1024–65535) inbound.
fn acl_problem(acl: &super::snapshot::NetworkAcl) -> Option<String> {
    let verdict = |egress: bool, port: i32| -> Option<(bool, i32)> {
        let mut entries: Vec<_> = acl.entries.iter().filter(|e| e.egress == egress).collect();
        entries.sort_by_key(|e| e.rule_number);
        entries
            .into_iter()
            .find(|e| {
                let proto = e.protocol == "-1" || e.protocol == "6" || e.protocol.eq_ignore_ascii_case("tcp");
                let ports = e.protocol == "-1"
                    || match (e.port_from, e.port_to) {
                        (Some(a), Some(b)) => a <= port && port <= b,
                        _ => true,
                    };
                let dest = e.cidr.as_deref().is_some_and(cidr::is_anywhere);
                proto && ports && dest
            })
            .map(|e| (e.allow, e.rule_number))
    };
    match verdict(true, 443) {
        Some((true, _)) => {}
        Some((false, n)) => return Some(format!("network ACL {} denies outbound TCP 443 (rule {n})", acl.id)),
        None => return Some(format!("network ACL {} has no rule allowing outbound TCP 443", acl.id)),
    }
    for port in [1024, 32768, 49152, 65535] {
        match verdict(false, port) {
            Some((true, _)) => {}
            Some((false, n)) => {
                return Some(format!(
                    "network ACL {} denies inbound return traffic on ephemeral port {port} (rule {n}); NACLs are stateless, so S3's replies are dropped",
                    acl.id
                ))
            }
            None => {
                return Some(format!(
                    "network ACL {} has no rule allowing inbound return traffic on ephemeral port {port}; NACLs are stateless, so S3's replies are dropped",
                    acl.id
                ))
            }
        }
    }
    None
}
