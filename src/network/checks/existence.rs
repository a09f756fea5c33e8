//! N1 and N2: the job's subnets and security groups exist, and all are in one VPC.

use std::collections::BTreeSet;

use crate::api::VpcConfig;

use super::{Code, Findings};
use crate::network::snapshot::{NetworkSnapshot, VpcTopology};

/// N1: every subnet and security group of the job exists in the job's region.
pub(super) fn missing(vpc_config: &VpcConfig, snap: &NetworkSnapshot, f: &mut Findings) {
    let subnets: Vec<&str> = snap.subnets.iter().map(|s| s.id.as_str()).collect();
    let groups: Vec<&str> = snap.security_groups.iter().map(|g| g.id.as_str()).collect();
    for (code, kind, wanted, found) in [
        (Code::SubnetNotFound, "subnet", &vpc_config.subnets, subnets),
        (
            Code::SecurityGroupNotFound,
            "security group",
            &vpc_config.security_group_ids,
            groups,
        ),
    ] {
        for id in wanted.iter().filter(|id| !found.contains(&id.as_str())) {
            f.add(
                code,
                id,
                format!("{kind} {id} does not exist in region {}", snap.region),
            );
        }
    }
}

/// N2: the subnets found are all in one VPC.
pub(super) fn subnets_in_one_vpc(snap: &NetworkSnapshot, f: &mut Findings) {
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
}

/// N2: the security groups found are in the subnets' VPC.
pub(super) fn groups_in_vpc(snap: &NetworkSnapshot, vpc: &VpcTopology, f: &mut Findings) {
    for g in snap.security_groups.iter().filter(|g| g.vpc_id != vpc.vpc_id) {
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
