//! N4 and N5: the security groups let the job's containers talk to each other and reach S3.

use std::collections::BTreeSet;

use crate::network::snapshot::{cidr, Subnet};

use super::routes::{s3_service, S3Path};
use super::{Code, Findings, Scope};

/// N4: with more than one instance, a group allows all inbound traffic from the job's groups.
pub(super) fn self_referencing_ingress(scope: &Scope<'_>, f: &mut Findings) {
    if scope.instances <= 1 || scope.groups.is_empty() {
        return;
    }
    let self_referencing = scope.groups.iter().any(|g| {
        g.ingress
            .iter()
            .any(|r| r.allows_all_traffic() && r.group_ids.iter().any(|id| scope.group_ids.contains(id.as_str())))
    });
    if !self_referencing {
        f.add(
            Code::MissingSelfReferencingIngress,
            scope.group_list(","),
            format!(
                "the job runs {} instances, but none of its security groups ({}) allows all inbound traffic from members of the same group, so the containers cannot talk to each other",
                scope.instances,
                scope.group_list(", ")
            ),
        );
    }
}

/// N5: a group allows outbound TCP 443 to S3: anywhere, the S3 gateway endpoint's prefix list,
/// or, when an S3 interface endpoint serves a subnet, the VPC itself.
pub(super) fn s3_egress(scope: &Scope<'_>, paths: &[(&Subnet, S3Path<'_>)], f: &mut Findings) {
    if scope.groups.is_empty() {
        return;
    }
    let vpc = scope.vpc;
    let service = s3_service(scope.region);
    let s3_prefix_lists: BTreeSet<&str> = vpc
        .route_tables
        .iter()
        .flat_map(|rt| rt.routes.iter())
        .filter(|r| {
            r.gateway_id
                .as_deref()
                .is_some_and(|g| vpc.endpoints.iter().any(|e| e.id == g && e.service_name == service))
        })
        .filter_map(|r| r.destination_prefix_list_id.as_deref())
        .collect();
    let interface = paths.iter().any(|(_, p)| matches!(p, S3Path::InterfaceEndpoint(_)));
    let allows = scope.groups.iter().any(|g| {
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
            scope.group_list(","),
            "none of the job's security groups allows outbound TCP 443 to S3 (0.0.0.0/0 or the S3 prefix list), so inputs cannot be downloaded nor outputs uploaded",
        );
    }
}
