//! N8, N12 and N14: advice about the VPC and the job that does not concern one route or rule.

use crate::network::snapshot::VpcTopology;

use super::{Code, Findings};

/// N14: with network isolation the container has no network, so N10 and N11 are skipped.
pub(super) fn network_isolation(isolation: bool, f: &mut Findings) {
    if isolation {
        f.add(
            Code::NetworkIsolationSkipsChecks,
            "networkConfig.enableNetworkIsolation",
            "network isolation is on: the container has no network, so the internet (NoInternetRoute) and interface endpoint (MissingInterfaceEndpoint) checks were skipped; S3 access for inputs and outputs is still checked",
        );
    }
}

/// N8: the VPC resolves names (`enableDnsSupport` and `enableDnsHostnames`).
pub(super) fn dns(vpc: &VpcTopology, f: &mut Findings) {
    let off: Vec<&str> = [
        (vpc.dns_support, "enableDnsSupport"),
        (vpc.dns_hostnames, "enableDnsHostnames"),
    ]
    .into_iter()
    .filter(|(on, _)| !on)
    .map(|(_, attribute)| attribute)
    .collect();
    if !off.is_empty() {
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
}

/// N12: the VPC has an active flow log.
pub(super) fn flow_logs(vpc: &VpcTopology, f: &mut Findings) {
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
}
