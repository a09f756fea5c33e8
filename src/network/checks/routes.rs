//! N6, N10 and N11: how each subnet reaches S3, the internet and other AWS services, read from
//! its route table (longest prefix match, as the VPC router does), the VPC's endpoints and its
//! NAT gateways. Targets whose far side the snapshot does not show (transit gateways, peering,
//! appliances) are boundaries: one `EgressNotVerifiable` Warning each, never a wrong Error.

use std::collections::{BTreeMap, BTreeSet};

use crate::network::snapshot::cidr::{self, Range};
use crate::network::snapshot::{EndpointType, NatGateway, Route, RouteTable, Subnet, VpcEndpoint, VpcTopology};

use super::groups;
use super::{Code, Findings, Scope};

/// A route target whose far side is outside the snapshot: where the job's traffic leaves what
/// the controller can verify.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Boundary {
    pub route_table: String,
    /// The route's destination: a CIDR or a prefix list ID.
    pub destination: String,
    /// What the target is, with its ID (`transit gateway tgw-…`).
    pub target: String,
}

/// How a subnet reaches S3.
#[derive(Debug, Clone)]
pub(super) enum S3Path<'a> {
    GatewayEndpoint(&'a VpcEndpoint),
    InterfaceEndpoint(&'a VpcEndpoint),
    Nat(&'a NatGateway),
    /// Through a target the controller cannot see past.
    Beyond(Boundary),
    /// Not at all; the text says why.
    None(String),
}

impl<'a> S3Path<'a> {
    /// The S3 endpoint the subnet's traffic goes through, if any.
    pub(super) fn endpoint(&self) -> Option<&'a VpcEndpoint> {
        match self {
            S3Path::GatewayEndpoint(e) | S3Path::InterfaceEndpoint(e) => Some(e),
            _ => None,
        }
    }
}

/// Where one route sends traffic, as far as the VPC shows it.
#[derive(Debug, Clone)]
enum Hop<'a> {
    S3Gateway(&'a VpcEndpoint),
    InternetGateway(String),
    /// A NAT gateway whose own subnet sends the traffic on to an internet gateway.
    Nat(&'a NatGateway),
    BrokenNat(String, String),
    Beyond(Boundary),
    /// Dropped: no route, a blackhole route, or a route that stays in the VPC.
    Dropped(String),
}

/// How a subnet reaches the internet.
enum InternetPath<'a> {
    Nat,
    /// A default route to a NAT gateway that cannot reach the internet itself.
    BrokenNat(String, String),
    InternetGateway(String),
    Beyond(Boundary),
    None(&'a str),
}

/// The endpoint service name of an AWS service in a region (`com.amazonaws.<region>.<service>`).
fn service_name(region: &str, service: &str) -> String {
    format!("com.amazonaws.{region}.{service}")
}

pub(super) fn s3_service(region: &str) -> String {
    service_name(region, "s3")
}

/// The whole IPv4 internet.
fn anywhere() -> Range {
    Range {
        v6: false,
        first: 0,
        last: u128::from(u32::MAX),
    }
}

/// What a route target is, for messages: `transit gateway tgw-…`.
fn describe_target(id: &str) -> String {
    let kind = [
        ("tgw-", "transit gateway"),
        ("pcx-", "VPC peering connection"),
        ("i-", "instance"),
        ("eni-", "network interface"),
        ("vgw-", "virtual private gateway"),
        ("vpce-", "Gateway Load Balancer endpoint"),
        ("lgw-", "local gateway"),
        ("cagw-", "carrier gateway"),
        ("arn:", "core network"),
    ]
    .into_iter()
    .find(|(prefix, _)| id.starts_with(prefix))
    .map_or("target", |(_, kind)| kind);
    format!("{kind} {id}")
}

/// One route's destination ranges and label. A prefix list route covers the list's CIDRs.
fn destinations(scope: &Scope<'_>, route: &Route) -> (Vec<Range>, String) {
    if let Some(c) = route
        .destination_cidr
        .as_deref()
        .or(route.destination_ipv6_cidr.as_deref())
    {
        return (cidr::range(c).into_iter().collect(), c.to_string());
    }
    let Some(pl) = route.destination_prefix_list_id.as_deref() else {
        return (Vec::new(), String::new());
    };
    let ranges = scope
        .snap
        .prefix_list_cidrs(pl)
        .unwrap_or_default()
        .iter()
        .filter_map(|c| cidr::range(c))
        .collect();
    (ranges, pl.to_string())
}

/// Where a route sends traffic for `dest`, following a NAT gateway into its own subnet's table.
fn hop<'a>(scope: &Scope<'a>, rt: &RouteTable, route: &Route, label: &str, dest: Range, depth: u8) -> Hop<'a> {
    let vpc = scope.vpc;
    let boundary = |target: &str| {
        Hop::Beyond(Boundary {
            route_table: rt.id.clone(),
            destination: label.to_string(),
            target: describe_target(target),
        })
    };
    if !route.active {
        return Hop::Dropped(format!("route table {} has a blackhole route for {label}", rt.id));
    }
    if let Some(nat_id) = route.nat_gateway_id.as_deref() {
        return nat_hop(scope, nat_id, dest, depth);
    }
    if let Some(other) = route.other_target.as_deref() {
        return boundary(other);
    }
    match route.gateway_id.as_deref() {
        Some("local") | None => Hop::Dropped(format!("route table {} keeps {label} inside the VPC", rt.id)),
        Some(g) if g.starts_with("igw-") => Hop::InternetGateway(g.to_string()),
        Some(g) if g.starts_with("vpce-") => match vpc.endpoints.iter().find(|e| e.id == g) {
            Some(e) if e.endpoint_type == EndpointType::Gateway && e.service_name == s3_service(scope.region) => {
                if e.usable() {
                    Hop::S3Gateway(e)
                } else {
                    Hop::Dropped(format!("S3 gateway endpoint {g} is {}", e.state))
                }
            }
            Some(e) if e.endpoint_type == EndpointType::Other => boundary(g),
            Some(e) => Hop::Dropped(format!(
                "route table {} sends {label} to endpoint {g} of {}",
                rt.id, e.service_name
            )),
            None => Hop::Dropped(format!(
                "route table {} sends {label} to endpoint {g}, which does not exist",
                rt.id
            )),
        },
        Some(g) => boundary(g),
    }
}

/// A NAT gateway passes traffic on only if it works and its own subnet's route table sends the
/// destination on: to an internet gateway (public NAT), an S3 gateway endpoint, or beyond.
fn nat_hop<'a>(scope: &Scope<'a>, nat_id: &str, dest: Range, depth: u8) -> Hop<'a> {
    let vpc = scope.vpc;
    let broken = |why: String| Hop::BrokenNat(nat_id.to_string(), why);
    let Some(nat) = vpc.nat_gateways.iter().find(|n| n.id == nat_id) else {
        return broken("does not exist".into());
    };
    let state = nat.state.to_ascii_lowercase();
    if !(state.is_empty() || state == "available" || state == "pending") {
        return broken(format!("is {}", nat.state));
    }
    let private = nat.connectivity.eq_ignore_ascii_case("private");
    let onward = match vpc.route_table_for(&nat.subnet_id) {
        Some(rt) if depth == 0 => decide(scope, rt, dest, false, depth + 1),
        _ => Vec::new(),
    };
    match onward.into_iter().next() {
        Some(Hop::InternetGateway(_)) if private => broken("is a private NAT gateway (no internet access)".into()),
        Some(Hop::InternetGateway(_)) => Hop::Nat(nat),
        Some(Hop::S3Gateway(_)) => Hop::Nat(nat),
        Some(Hop::Beyond(b)) => Hop::Beyond(b),
        _ if private => broken("is a private NAT gateway (no internet access)".into()),
        _ => broken(format!(
            "sits in subnet {} whose route table has no default route to an internet gateway",
            nat.subnet_id
        )),
    }
}

/// The hops a route table gives traffic for `dest`: the longest matching route (a CIDR route
/// beats a prefix list route of the same length, as in AWS), and with `inside`, also every more
/// specific route that takes part of `dest`.
fn decide<'a>(scope: &Scope<'a>, rt: &RouteTable, dest: Range, inside: bool, depth: u8) -> Vec<Hop<'a>> {
    let implicit = implicit_s3_route(scope, rt);
    let routes = rt.routes.iter().chain(implicit.iter());
    let mut best: Option<(u128, bool, &Route, String)> = None;
    let mut parts = Vec::new();
    for route in routes {
        let (ranges, label) = destinations(scope, route);
        let is_cidr = route.destination_prefix_list_id.is_none();
        for r in ranges {
            if r.contains(&dest) {
                let size = r.last - r.first;
                let better = best
                    .as_ref()
                    .is_none_or(|(s, c, _, _)| size < *s || (size == *s && is_cidr && !*c));
                if better {
                    best = Some((size, is_cidr, route, label.clone()));
                }
            } else if inside && r.overlaps(&dest) {
                parts.push(hop(scope, rt, route, &label, dest, depth));
            }
        }
    }
    let mut hops = match best {
        Some((_, _, route, label)) => vec![hop(scope, rt, route, &label, dest, depth)],
        None => vec![Hop::Dropped(format!(
            "route table {} has no route for {}",
            rt.id,
            show(dest)
        ))],
    };
    hops.extend(parts);
    hops
}

/// An S3 gateway endpoint associated with the table routes S3's prefix list even when the
/// table read does not show the route.
fn implicit_s3_route(scope: &Scope<'_>, rt: &RouteTable) -> Option<Route> {
    let pl = scope.snap.s3_prefix_list()?;
    let e = scope.vpc.endpoints.iter().find(|e| {
        e.endpoint_type == EndpointType::Gateway
            && e.service_name == s3_service(scope.region)
            && e.route_table_ids.iter().any(|id| id == &rt.id)
    })?;
    let shown = rt.routes.iter().any(|r| r.gateway_id.as_deref() == Some(e.id.as_str()));
    (!shown).then(|| Route {
        destination_prefix_list_id: Some(pl.id.clone()),
        gateway_id: Some(e.id.clone()),
        active: true,
        ..Default::default()
    })
}

fn show(r: Range) -> String {
    if r.v6 {
        let ip = std::net::Ipv6Addr::from(r.first);
        format!("{ip}/{}", 128 - (r.last - r.first).count_ones())
    } else {
        let ip = std::net::Ipv4Addr::from(r.first as u32);
        format!("{ip}/{}", 32 - (r.last - r.first).count_ones())
    }
}

/// The S3 interface endpoint whose private DNS answers the VPC's lookups of S3's name: it takes
/// all of the VPC's S3 traffic, whatever the route tables say.
fn capturing_endpoint<'a>(vpc: &'a VpcTopology, service: &str) -> Option<&'a VpcEndpoint> {
    vpc.endpoints
        .iter()
        .find(|e| e.service_name == service && e.captures_public_name())
}

fn s3_path<'a>(scope: &Scope<'a>, subnet_id: &str) -> S3Path<'a> {
    let vpc = scope.vpc;
    if let Some(e) = capturing_endpoint(vpc, &s3_service(scope.region)) {
        return S3Path::InterfaceEndpoint(e);
    }
    let Some(rt) = vpc.route_table_for(subnet_id) else {
        return S3Path::None("the subnet has no route table".into());
    };
    let ranges = match &scope.s3_ranges {
        Some(r) => r.clone(),
        // S3's prefix list was not read: an associated gateway endpoint, else the default route.
        None => {
            let gateway = vpc.endpoints.iter().find(|e| {
                e.service_name == s3_service(scope.region)
                    && e.endpoint_type == EndpointType::Gateway
                    && e.usable()
                    && (e.route_table_ids.iter().any(|id| id == &rt.id)
                        || rt.routes.iter().any(|r| r.gateway_id.as_deref() == Some(e.id.as_str())))
            });
            if let Some(e) = gateway {
                return S3Path::GatewayEndpoint(e);
            }
            vec![anywhere()]
        }
    };
    let inside = scope.s3_ranges.is_some();
    let hops: Vec<Hop<'a>> = ranges.iter().flat_map(|r| decide(scope, rt, *r, inside, 0)).collect();
    let failed = hops.iter().find_map(|h| match h {
        Hop::InternetGateway(igw) => Some(format!(
            "its route table {} sends S3's addresses to internet gateway {igw}, and SageMaker's network interfaces get no public IP",
            rt.id
        )),
        Hop::BrokenNat(nat, why) => Some(format!("its S3 traffic goes to NAT gateway {nat}, which {why}")),
        Hop::Dropped(why) => Some(why.clone()),
        _ => None,
    });
    if let Some(why) = failed {
        return S3Path::None(why);
    }
    if let Some(b) = hops.iter().find_map(|h| match h {
        Hop::Beyond(b) => Some(b.clone()),
        _ => None,
    }) {
        return S3Path::Beyond(b);
    }
    hops.iter()
        .find_map(|h| match h {
            Hop::S3Gateway(e) => Some(S3Path::GatewayEndpoint(e)),
            _ => None,
        })
        .or_else(|| {
            hops.iter().find_map(|h| match h {
                Hop::Nat(n) => Some(S3Path::Nat(n)),
                _ => None,
            })
        })
        .unwrap_or_else(|| S3Path::None(format!("route table {} has no route for S3", rt.id)))
}

fn internet_path<'a>(scope: &Scope<'a>, subnet_id: &str) -> InternetPath<'a> {
    let Some(rt) = scope.vpc.route_table_for(subnet_id) else {
        return InternetPath::None("has no route table");
    };
    match decide(scope, rt, anywhere(), false, 0).into_iter().next() {
        Some(Hop::Nat(_)) => InternetPath::Nat,
        Some(Hop::BrokenNat(nat, why)) => InternetPath::BrokenNat(nat, why),
        Some(Hop::InternetGateway(igw)) => InternetPath::InternetGateway(igw),
        Some(Hop::Beyond(b)) => InternetPath::Beyond(b),
        _ => InternetPath::None("has no default route to a NAT gateway"),
    }
}

/// How each of the job's subnets in the VPC reaches S3, in the order of the subnets.
pub(super) fn s3_paths<'a>(scope: &Scope<'a>) -> Vec<(&'a Subnet, S3Path<'a>)> {
    scope.subnets.iter().map(|s| (*s, s3_path(scope, &s.id))).collect()
}

/// The boundaries the job's traffic crosses, with the subnets and what the job needs there.
#[derive(Default)]
pub(super) struct Unverifiable(BTreeMap<Boundary, (BTreeSet<String>, Vec<String>)>);

impl Unverifiable {
    fn add(&mut self, boundary: Boundary, subnet: &str, need: &str) {
        let (subnets, needs) = self.0.entry(boundary).or_default();
        subnets.insert(subnet.to_string());
        if !needs.iter().any(|n| n == need) {
            needs.push(need.to_string());
        }
    }

    /// One `EgressNotVerifiable` Warning per boundary.
    pub(super) fn report(self, f: &mut Findings) {
        for (b, (subnets, needs)) in self.0 {
            f.add(
                Code::EgressNotVerifiable,
                &b.route_table,
                format!(
                    "route table {} sends {} to {}, outside what the controller can read: the job's traffic to {} from subnets {} leaves the VPC there. Check on the other side (hub VPC, firewall or appliance, on-premises network) that TCP 443 to {} is forwarded (NAT or endpoints there, firewall rules, an S3 endpoint policy) and that the replies come back",
                    b.route_table,
                    b.destination,
                    b.target,
                    needs.join(", "),
                    subnets.into_iter().collect::<Vec<_>>().join(", "),
                    needs.join(", "),
                ),
            );
        }
    }
}

/// N6: every subnet reaches S3. A path through a boundary is a Warning (collected), an S3
/// interface endpoint that does not serve the job is an Error naming what it lacks.
pub(super) fn s3_routes(
    scope: &Scope<'_>,
    paths: &[(&Subnet, S3Path<'_>)],
    unverifiable: &mut Unverifiable,
    f: &mut Findings,
) {
    let service = s3_service(scope.region);
    let mut unusable: BTreeMap<&str, (&VpcEndpoint, Vec<&str>)> = BTreeMap::new();
    for (s, path) in paths {
        match path {
            S3Path::Beyond(b) => unverifiable.add(b.clone(), &s.id, "S3"),
            S3Path::None(why) => {
                let interface = scope
                    .vpc
                    .endpoints
                    .iter()
                    .find(|e| e.service_name == service && e.endpoint_type == EndpointType::Interface);
                match interface {
                    Some(e) => unusable.entry(e.id.as_str()).or_insert((e, Vec::new())).1.push(&s.id),
                    None => f.add(
                        Code::NoS3Route,
                        &s.id,
                        format!(
                            "subnet {} cannot reach S3: {why}; there is no S3 gateway endpoint on its route table, no S3 interface endpoint and no working NAT gateway route",
                            s.id
                        ),
                    ),
                }
            }
            _ => {}
        }
    }
    for (e, subnets) in unusable.into_values() {
        f.add(
            Code::InterfaceEndpointUnusable,
            &e.id,
            format!(
                "S3 interface endpoint {} does not serve the job: {}; subnets {} have no other S3 path",
                e.id,
                not_answering(e),
                subnets.join(", ")
            ),
        );
    }
    // The endpoint that takes the S3 traffic must admit it.
    let mut checked = BTreeSet::new();
    for e in paths.iter().filter_map(|(_, p)| match p {
        S3Path::InterfaceEndpoint(e) => Some(*e),
        _ => None,
    }) {
        if checked.insert(e.id.as_str()) {
            if let Some(why) = groups::endpoint_refuses(scope, e) {
                f.add(
                    Code::InterfaceEndpointUnusable,
                    &e.id,
                    format!("S3 interface endpoint {} does not serve the job: {why}", e.id),
                );
            }
        }
    }
}

/// Why an interface endpoint does not answer the VPC's lookups of its service's public name.
fn not_answering(e: &VpcEndpoint) -> String {
    let mut missing = Vec::new();
    if !e.available() {
        missing.push(format!(
            "it is {} (not available)",
            if e.state.is_empty() { "unknown" } else { &e.state }
        ));
    }
    if !e.private_dns_enabled {
        missing.push(
            "private DNS is off, so the SDKs in the container, which call the service's public name, do not use it"
                .to_string(),
        );
    } else if e.private_dns_only_for_inbound_resolver {
        missing.push("its private DNS answers only the inbound Resolver endpoint, not the VPC".to_string());
    }
    missing.join("; ")
}

/// N10: when the job requires the internet, every subnet's default route goes to a working NAT
/// gateway. Skipped with network isolation (N14).
pub(super) fn internet(scope: &Scope<'_>, unverifiable: &mut Unverifiable, f: &mut Findings) {
    if !scope.spec.requires_internet() || scope.isolation {
        return;
    }
    for s in &scope.subnets {
        match internet_path(scope, &s.id) {
            InternetPath::Nat => {}
            InternetPath::Beyond(b) => unverifiable.add(b, &s.id, "the internet"),
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
            InternetPath::None(why) => f.add(
                Code::NoInternetRoute,
                &s.id,
                format!("the job requires the internet, but subnet {} {why}", s.id),
            ),
        }
    }
}

/// N11: every AWS service the job declares is served: by an interface endpoint whose private
/// DNS answers the VPC and whose groups admit the job, else by a NAT path. Skipped with network
/// isolation (N14).
pub(super) fn interface_endpoints(scope: &Scope<'_>, unverifiable: &mut Unverifiable, f: &mut Findings) {
    if scope.isolation {
        return;
    }
    for service in scope.spec.required_services() {
        let name = service_name(scope.region, service);
        if let Some(e) = capturing_endpoint(scope.vpc, &name) {
            let refused = groups::endpoint_refuses(scope, e).or_else(|| groups::job_cannot_reach(scope, e));
            if let Some(why) = refused {
                f.add(
                    Code::InterfaceEndpointUnusable,
                    &e.id,
                    format!(
                        "interface endpoint {} for {service} does not serve the job: {why}",
                        e.id
                    ),
                );
            }
            continue;
        }
        let mut without_nat = Vec::new();
        for s in &scope.subnets {
            match internet_path(scope, &s.id) {
                InternetPath::Nat => {}
                InternetPath::Beyond(b) => unverifiable.add(b, &s.id, service),
                _ => without_nat.push(s.id.as_str()),
            }
        }
        if without_nat.is_empty() {
            continue;
        }
        let existing = scope
            .vpc
            .endpoints
            .iter()
            .find(|e| e.service_name == name && e.endpoint_type == EndpointType::Interface);
        match existing {
            Some(e) => f.add(
                Code::InterfaceEndpointUnusable,
                &e.id,
                format!(
                    "interface endpoint {} for {service} does not serve the job: {}; subnets {} have no NAT path",
                    e.id,
                    not_answering(e),
                    without_nat.join(", ")
                ),
            ),
            None => f.add(
                Code::MissingInterfaceEndpoint,
                &name,
                format!(
                    "the job needs {service}, but VPC {} has no interface endpoint for {name} and subnets {} have no NAT path",
                    scope.vpc.vpc_id,
                    without_nat.join(", ")
                ),
            ),
        }
    }
}
