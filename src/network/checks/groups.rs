//! N4 and N5: the security groups let the job's containers talk to each other and reach S3,
//! and the interface endpoints' groups admit the job. Security groups are stateful: a flow
//! needs the sender's egress and the receiver's ingress, and its replies need nothing.

use std::collections::BTreeSet;

use crate::network::snapshot::cidr::{self, Range};
use crate::network::snapshot::{SgRule, Subnet, Traffic, VpcEndpoint};

use super::routes::S3Path;
use super::{Code, Findings, Scope};

/// The address ranges a rule's peers name: its IPv4 and IPv6 CIDRs and the CIDRs of its
/// prefix lists (lists that could not be read name nothing).
fn peer_ranges(scope: &Scope<'_>, rule: &SgRule) -> Vec<Range> {
    let lists = rule
        .prefix_list_ids
        .iter()
        .flat_map(|pl| scope.snap.prefix_list_cidrs(pl).unwrap_or_default());
    rule.cidrs
        .iter()
        .chain(rule.ipv6_cidrs.iter())
        .chain(lists)
        .filter_map(|c| cidr::range(c))
        .collect()
}

/// Whether `rules` let `traffic` reach every one of `targets`: network interfaces in one of
/// `groups`, at addresses in `ranges`. A rule naming one of the groups reaches them all; else the
/// rules' ranges together must cover every target range.
fn reach<'r>(
    scope: &Scope<'_>,
    rules: impl Iterator<Item = &'r SgRule>,
    traffic: Traffic,
    groups: &BTreeSet<&str>,
    ranges: &[Range],
) -> bool {
    let rules: Vec<&SgRule> = rules.filter(|r| r.allows(traffic)).collect();
    if rules
        .iter()
        .any(|r| r.group_ids.iter().any(|g| groups.contains(g.as_str())))
    {
        return true;
    }
    let cover: Vec<Range> = rules.iter().flat_map(|r| peer_ranges(scope, r)).collect();
    !ranges.is_empty() && ranges.iter().all(|t| cidr::covered(*t, cover.iter().copied()))
}

fn subnet_ranges<'s>(subnets: impl IntoIterator<Item = &'s Subnet>) -> Vec<Range> {
    subnets.into_iter().filter_map(|s| cidr::range(&s.cidr)).collect()
}

/// What members of a distributed job exchange: all TCP, and with inter-container traffic
/// encryption SageMaker's IPsec, IKE on UDP 500 and ESP (IP protocol 50).
fn member_traffic(scope: &Scope<'_>) -> Vec<Traffic> {
    let mut t = vec![Traffic::AllTcp];
    if scope.inter_container_encryption() {
        t.extend([Traffic::Udp(500), Traffic::Protocol(50)]);
    }
    t
}

/// N4: with more than one instance, members reach each other: a group of the job admits the
/// job's groups (or the job's subnets) inbound, and one lets that traffic out.
pub(super) fn members(scope: &Scope<'_>, f: &mut Findings) {
    if scope.instances <= 1 || scope.groups.is_empty() {
        return;
    }
    let members = subnet_ranges(scope.subnets.iter().copied());
    let needed = member_traffic(scope);
    let encryption = if scope.inter_container_encryption() {
        " (inter-container traffic encryption uses IPsec: IKE on UDP 500 and ESP, IP protocol 50)"
    } else {
        ""
    };
    for (code, direction, from_to) in [
        (Code::MissingSelfReferencingIngress, "inbound", "from"),
        (Code::MissingSelfReferencingEgress, "outbound", "to"),
    ] {
        let rules = || {
            scope.groups.iter().flat_map(move |g| match code {
                Code::MissingSelfReferencingIngress => g.ingress.iter(),
                _ => g.egress.iter(),
            })
        };
        let missing: Vec<String> = needed
            .iter()
            .filter(|t| !reach(scope, rules(), **t, &scope.group_ids, &members))
            .map(ToString::to_string)
            .collect();
        if !missing.is_empty() {
            f.add(
                code,
                scope.group_list(","),
                format!(
                    "the job runs {} instances, but none of its security groups ({}) allows {direction} {} {from_to} members of the same group, so the containers cannot talk to each other{encryption}",
                    scope.instances,
                    scope.group_list(", "),
                    missing.join(" and "),
                ),
            );
        }
    }
}

/// N5: the job's groups let TCP 443 out to where S3 is on each subnet's path: S3's address
/// ranges (0.0.0.0/0, S3's prefix list, customer prefix lists or CIDRs covering them) through a
/// gateway endpoint, a NAT or beyond the VPC; the endpoint's network interfaces (its groups, or
/// CIDRs covering its subnets) through an S3 interface endpoint.
pub(super) fn s3_egress(scope: &Scope<'_>, paths: &[(&Subnet, S3Path<'_>)], f: &mut Findings) {
    if scope.groups.is_empty() {
        return;
    }
    let egress = || scope.groups.iter().flat_map(|g| g.egress.iter());
    let mut problems: Vec<String> = Vec::new();
    let mut interface_checked = BTreeSet::new();
    let mut s3_checked = false;
    for (_, path) in paths {
        match path {
            S3Path::InterfaceEndpoint(e) if interface_checked.insert(e.id.as_str()) => {
                problems.extend(job_cannot_reach(scope, e));
            }
            S3Path::GatewayEndpoint(_) | S3Path::Nat(_) | S3Path::Beyond(_) if !s3_checked => {
                s3_checked = true;
                let reaches = match &scope.s3_ranges {
                    Some(ranges) => reach(scope, egress(), Traffic::Tcp(443), &BTreeSet::new(), ranges),
                    // S3's ranges were not read: anywhere, or the prefix list of an S3 route.
                    None => egress().any(|r| {
                        r.allows(Traffic::Tcp(443))
                            && (r.cidrs.iter().any(|c| cidr::is_anywhere(c))
                                || r.prefix_list_ids
                                    .iter()
                                    .any(|p| scope.s3_route_lists.contains(p.as_str())))
                    }),
                };
                if !reaches {
                    problems.push("none of them allows outbound TCP 443 to all of S3's addresses (0.0.0.0/0, the S3 prefix list, or prefix lists or CIDRs covering S3's ranges)".into());
                }
            }
            _ => {}
        }
    }
    if !problems.is_empty() {
        f.add(
            Code::NoS3Egress,
            scope.group_list(","),
            format!(
                "the job's security groups ({}) do not let it reach S3: {}; inputs cannot be downloaded nor outputs uploaded",
                scope.group_list(", "),
                problems.join("; ")
            ),
        );
    }
}

/// Why an interface endpoint's groups do not admit TCP 443 from every one of the job's
/// subnets: no ingress rule naming one of the job's groups, or CIDRs covering the subnet.
pub(super) fn endpoint_refuses(scope: &Scope<'_>, e: &VpcEndpoint) -> Option<String> {
    let groups: Vec<_> = scope
        .vpc
        .endpoint_groups
        .iter()
        .filter(|g| e.group_ids.contains(&g.id))
        .collect();
    let refused: Vec<&str> = scope
        .subnets
        .iter()
        .filter(|s| {
            !reach(
                scope,
                groups.iter().flat_map(|g| g.ingress.iter()),
                Traffic::Tcp(443),
                &scope.group_ids,
                &subnet_ranges([**s]),
            )
        })
        .map(|s| s.id.as_str())
        .collect();
    if refused.is_empty() {
        return None;
    }
    let names = if e.group_ids.is_empty() {
        "it has no security group".to_string()
    } else {
        format!("its security groups ({})", e.group_ids.join(", "))
    };
    Some(format!(
        "{names} admit no inbound TCP 443 from the job's security groups ({}) or from subnets {} (their CIDRs)",
        scope.group_list(", "),
        refused.join(", ")
    ))
}

/// Why the job's groups do not let TCP 443 out to an interface endpoint's network interfaces
/// (its groups, or CIDRs covering every subnet it is in).
pub(super) fn job_cannot_reach(scope: &Scope<'_>, e: &VpcEndpoint) -> Option<String> {
    let groups: BTreeSet<&str> = e.group_ids.iter().map(String::as_str).collect();
    let ranges = subnet_ranges(
        scope
            .vpc
            .endpoint_subnets
            .iter()
            .filter(|s| e.subnet_ids.contains(&s.id)),
    );
    let egress = scope.groups.iter().flat_map(|g| g.egress.iter());
    (!reach(scope, egress, Traffic::Tcp(443), &groups, &ranges)).then(|| {
        format!(
            "none of the job's security groups allows outbound TCP 443 to endpoint {}'s network interfaces (its security groups, or CIDRs covering its subnets {})",
            e.id,
            e.subnet_ids.join(", ")
        )
    })
}
