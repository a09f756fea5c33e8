//! N6, N10 and N11: how each subnet reaches S3, the internet and other AWS services, read from
//! its route table, the VPC's endpoints and its NAT gateways.

use crate::network::snapshot::{cidr, EndpointType, Route, RouteTable, Subnet, VpcEndpoint, VpcTopology};

use super::{Code, Findings, Scope};

/// How a subnet reaches S3.
#[derive(Debug, Clone, Copy)]
pub(super) enum S3Path<'a> {
    GatewayEndpoint(&'a VpcEndpoint),
    InterfaceEndpoint(&'a VpcEndpoint),
    Nat,
    None,
}

impl<'a> S3Path<'a> {
    /// The S3 endpoint the subnet's traffic goes through, if any.
    pub(super) fn endpoint(self) -> Option<&'a VpcEndpoint> {
        match self {
            S3Path::GatewayEndpoint(e) | S3Path::InterfaceEndpoint(e) => Some(e),
            S3Path::Nat | S3Path::None => None,
        }
    }
}

/// How a subnet reaches the internet.
enum InternetPath<'a> {
    Nat,
    /// A default route to a NAT gateway that cannot reach the internet itself.
    BrokenNat(&'a str, String),
    InternetGateway(&'a str),
    None,
}

/// The endpoint service name of an AWS service in a region (`com.amazonaws.<region>.<service>`).
fn service_name(region: &str, service: &str) -> String {
    format!("com.amazonaws.{region}.{service}")
}

pub(super) fn s3_service(region: &str) -> String {
    service_name(region, "s3")
}

/// A usable interface endpoint of the VPC for the service.
fn interface_endpoint<'a>(vpc: &'a VpcTopology, service: &str) -> Option<&'a VpcEndpoint> {
    vpc.endpoints
        .iter()
        .find(|e| e.service_name == service && e.endpoint_type == EndpointType::Interface && e.usable())
}

fn default_route(rt: &RouteTable) -> Option<&Route> {
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
    if let Some(e) = interface_endpoint(vpc, &service) {
        return S3Path::InterfaceEndpoint(e);
    }
    match internet_path(vpc, subnet_id) {
        InternetPath::Nat => S3Path::Nat,
        _ => S3Path::None,
    }
}

/// How each of the job's subnets in the VPC reaches S3, in the order of the subnets.
pub(super) fn s3_paths<'a>(scope: &Scope<'a>) -> Vec<(&'a Subnet, S3Path<'a>)> {
    scope
        .subnets
        .iter()
        .map(|s| (*s, s3_path(scope.vpc, scope.region, &s.id)))
        .collect()
}

/// N6: every subnet reaches S3.
pub(super) fn s3_routes(scope: &Scope<'_>, paths: &[(&Subnet, S3Path<'_>)], f: &mut Findings) {
    for (s, _) in paths.iter().filter(|(_, path)| matches!(path, S3Path::None)) {
        let rt = scope
            .vpc
            .route_table_for(&s.id)
            .map(|rt| rt.id.as_str())
            .unwrap_or("(none)");
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

/// N10: when the job requires the internet, every subnet's default route goes to a working NAT
/// gateway. Skipped with network isolation (N14).
pub(super) fn internet(scope: &Scope<'_>, f: &mut Findings) {
    if !scope.spec.requires_internet() || scope.isolation {
        return;
    }
    for s in &scope.subnets {
        match internet_path(scope.vpc, &s.id) {
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
                format!(
                    "the job requires the internet, but subnet {} has no default route to a NAT gateway",
                    s.id
                ),
            ),
        }
    }
}

/// N11: every AWS service the job declares has an interface endpoint, unless all subnets have a
/// NAT path. Skipped with network isolation (N14).
pub(super) fn interface_endpoints(scope: &Scope<'_>, f: &mut Findings) {
    if scope.isolation {
        return;
    }
    for service in scope.spec.required_services() {
        let name = service_name(scope.region, service);
        if interface_endpoint(scope.vpc, &name).is_some() {
            continue;
        }
        let without_nat: Vec<&str> = scope
            .subnets
            .iter()
            .filter(|s| !matches!(internet_path(scope.vpc, &s.id), InternetPath::Nat))
            .map(|s| s.id.as_str())
            .collect();
        if !without_nat.is_empty() {
            f.add(
                Code::MissingInterfaceEndpoint,
                &name,
                format!(
                    "the job needs {service}, but VPC {} has no interface endpoint for {name} and subnets {} have no NAT path",
                    scope.vpc.vpc_id,
                    without_nat.join(", ")
                ),
            );
        }
    }
}
