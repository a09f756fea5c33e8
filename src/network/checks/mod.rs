//! The network checks N1–N14 of the design: a pure function from a job's spec and its network
//! snapshot to findings. One module per requirement group; [`validate`] runs them in the order
//! their findings appear.

mod acls;
mod advisories;
mod capacity;
mod endpoint_policy;
mod existence;
mod groups;
mod routes;

use std::collections::BTreeSet;

use crate::api::{Finding, ProcessingJobSpec};

use super::codes::Code;
use super::snapshot::{cidr, NetworkSnapshot, SecurityGroup, Subnet, VpcTopology};

pub use endpoint_policy::parse_s3_uri;

/// The findings of one validation, in the order the checks add them.
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

/// What the checks after N2 look at: the job's VPC, and the job's subnets and security groups
/// that are in it.
struct Scope<'a> {
    spec: &'a ProcessingJobSpec,
    snap: &'a NetworkSnapshot,
    region: &'a str,
    vpc: &'a VpcTopology,
    subnets: Vec<&'a Subnet>,
    groups: Vec<&'a SecurityGroup>,
    group_ids: BTreeSet<&'a str>,
    /// The job's instance count, at least 1.
    instances: i64,
    /// `enableNetworkIsolation`: the container has no network of its own.
    isolation: bool,
    /// S3's address ranges, from its prefix list; `None` when the list was not read.
    s3_ranges: Option<Vec<cidr::Range>>,
    /// The prefix lists the VPC routes to S3 gateway endpoints (what S3 egress may name when
    /// S3's ranges are unknown).
    s3_route_lists: BTreeSet<&'a str>,
}

impl<'a> Scope<'a> {
    fn new(spec: &'a ProcessingJobSpec, snap: &'a NetworkSnapshot, vpc: &'a VpcTopology) -> Self {
        let subnets: Vec<&Subnet> = snap.subnets.iter().filter(|s| s.vpc_id == vpc.vpc_id).collect();
        let groups: Vec<&SecurityGroup> = snap.security_groups.iter().filter(|g| g.vpc_id == vpc.vpc_id).collect();
        let group_ids = groups.iter().map(|g| g.id.as_str()).collect();
        let s3 = routes::s3_service(&snap.region);
        let s3_route_lists = vpc
            .route_tables
            .iter()
            .flat_map(|rt| rt.routes.iter())
            .filter(|r| {
                r.gateway_id
                    .as_deref()
                    .is_some_and(|g| vpc.endpoints.iter().any(|e| e.id == g && e.service_name == s3))
            })
            .filter_map(|r| r.destination_prefix_list_id.as_deref())
            .collect();
        Self {
            spec,
            snap,
            s3_ranges: snap
                .s3_prefix_list()
                .map(|pl| pl.cidrs.iter().filter_map(|c| cidr::range(c)).collect()),
            s3_route_lists,
            region: &snap.region,
            vpc,
            subnets,
            groups,
            group_ids,
            instances: i64::from(spec.instance_count().max(1)),
            isolation: spec.network_isolation(),
        }
    }

    /// `enableInterContainerTrafficEncryption`: members talk through IPsec.
    fn inter_container_encryption(&self) -> bool {
        self.spec
            .network_config
            .as_ref()
            .and_then(|n| n.enable_inter_container_traffic_encryption)
            .unwrap_or(false)
    }

    /// The IDs of the job's security groups in the VPC, sorted, joined by `separator`.
    fn group_list(&self, separator: &str) -> String {
        self.group_ids.iter().copied().collect::<Vec<_>>().join(separator)
    }
}

/// Runs every check for one job. Jobs without `vpcConfig` have nothing to validate.
pub fn validate(spec: &ProcessingJobSpec, snap: &NetworkSnapshot) -> Vec<Finding> {
    let Some(vpc_config) = spec.vpc_config() else {
        return Vec::new();
    };
    let mut f = Findings(Vec::new());
    advisories::network_isolation(spec.network_isolation(), &mut f); // N14
    existence::missing(vpc_config, snap, &mut f); // N1
    existence::subnets_in_one_vpc(snap, &mut f); // N2
    let Some(vpc) = snap.vpc.as_deref() else {
        return f.0;
    };
    existence::groups_in_vpc(snap, vpc, &mut f); // N2

    let scope = Scope::new(spec, snap, vpc);
    capacity::free_ips(&scope, &mut f); // N3
    groups::members(&scope, &mut f); // N4
    let paths = routes::s3_paths(&scope);
    let mut unverifiable = routes::Unverifiable::default();
    groups::s3_egress(&scope, &paths, &mut f); // N5
    routes::s3_routes(&scope, &paths, &mut unverifiable, &mut f); // N6
    endpoint_policy::endpoint_policies(&scope, &paths, &mut f); // N7, N13
    advisories::dns(vpc, &mut f); // N8
    acls::network_acls(&scope, &paths, &mut f); // N9
    routes::internet(&scope, &mut unverifiable, &mut f); // N10
    routes::interface_endpoints(&scope, &mut unverifiable, &mut f); // N11
    unverifiable.report(&mut f); // N6, N10, N11 beyond the VPC
    advisories::flow_logs(vpc, &mut f); // N12
    f.0
}
