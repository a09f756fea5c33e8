//! Reads a job's network from EC2: batched Describe calls (one per resource kind, with ID
//! lists or `vpc-id` filters) and a per-VPC cache with a short TTL, so that many jobs in one VPC
//! share one read, and concurrent requests for the same VPC share one in-flight read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{self as sdk, Filter, VpcAttributeName};
use aws_sdk_ec2::Client;
use tokio::sync::{Mutex, OnceCell};

use super::{Adapter, AwsError, CallCounter};
use crate::api::ProcessingJobSpec;
use crate::network::snapshot::{
    AclEntry, EndpointType, NatGateway, NetworkAcl, NetworkSnapshot, PrefixList, Route, RouteTable, SecurityGroup,
    SgRule, Subnet, VpcEndpoint, VpcTopology,
};

const SERVICE: &str = "ec2";

type Cached<T> = (T, Instant);

/// A value read once for all concurrent callers.
type Shared<T> = Arc<OnceCell<T>>;

#[derive(Default)]
struct Cache {
    subnets: HashMap<String, Cached<Subnet>>,
    groups: HashMap<String, Cached<SecurityGroup>>,
    vpcs: HashMap<String, Cached<Arc<OnceCell<Arc<VpcTopology>>>>>,
    /// The region's S3 prefix list by name, read once per TTL (`None` inside: no such list).
    s3_list: Option<Cached<Shared<Option<String>>>>,
    /// Prefix lists' CIDRs by ID (`None` inside: the list cannot be read from this account).
    prefix_lists: HashMap<String, Cached<Shared<Option<Vec<String>>>>>,
}

/// Reads network snapshots for one region.
pub struct Ec2Resolver {
    client: Client,
    region: String,
    ttl: Duration,
    calls: Arc<CallCounter>,
    cache: std::sync::Mutex<Cache>,
    /// Serialises ID lookups so that concurrent jobs naming the same subnets share one call.
    lookup: Mutex<()>,
}

impl Adapter for Ec2Resolver {
    const SERVICE: &'static str = SERVICE;

    fn counter(&self) -> &CallCounter {
        &self.calls
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

impl Ec2Resolver {
    pub fn new(client: Client, region: impl Into<String>, ttl: Duration, calls: Arc<CallCounter>) -> Self {
        Self {
            client,
            region: region.into(),
            ttl,
            calls,
            cache: std::sync::Mutex::new(Cache::default()),
            lookup: Mutex::new(()),
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Drops everything cached: the next snapshot reads EC2 afresh.
    pub fn forget(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Cache::default();
        }
    }

    fn fresh<T: Clone>(&self, entry: Option<&Cached<T>>) -> Option<T> {
        entry.filter(|(_, at)| at.elapsed() < self.ttl).map(|(v, _)| v.clone())
    }

    /// The job's network: its subnets and security groups, and the topology of their VPC.
    pub async fn snapshot(&self, spec: &ProcessingJobSpec) -> Result<NetworkSnapshot, AwsError> {
        let Some(vpc_config) = spec.vpc_config() else {
            return Ok(NetworkSnapshot {
                region: self.region.clone(),
                ..Default::default()
            });
        };
        self.lookup_ids(&vpc_config.subnets, &vpc_config.security_group_ids)
            .await?;
        let (subnets, groups) = {
            let cache = self.cache.lock().map_err(|_| poisoned())?;
            let subnets: Vec<Subnet> = vpc_config
                .subnets
                .iter()
                .filter_map(|id| self.fresh(cache.subnets.get(id)))
                .collect();
            let groups: Vec<SecurityGroup> = vpc_config
                .security_group_ids
                .iter()
                .filter_map(|id| self.fresh(cache.groups.get(id)))
                .collect();
            (subnets, groups)
        };
        let vpc = match subnets.first() {
            Some(s) => Some(self.topology(&s.vpc_id).await?),
            None => None,
        };
        let prefix_lists = match &vpc {
            Some(vpc) => self.prefix_lists(&groups, vpc).await?,
            None => Vec::new(),
        };
        Ok(NetworkSnapshot {
            region: self.region.clone(),
            subnets,
            security_groups: groups,
            vpc,
            prefix_lists,
        })
    }

    /// S3's prefix list and every list the job's groups, the endpoints' groups and the VPC's
    /// routes name, with their CIDRs. Cached per region: a list is read once per TTL whatever
    /// the number of jobs and VPCs.
    async fn prefix_lists(&self, groups: &[SecurityGroup], vpc: &VpcTopology) -> Result<Vec<PrefixList>, AwsError> {
        let s3_name = format!("com.amazonaws.{}.s3", self.region);
        // An S3 gateway endpoint's routes already name S3's list: no lookup by name then.
        let s3_id = match s3_list_of_gateway_endpoint(vpc, &s3_name) {
            Some(id) => Some(id),
            None => self.s3_prefix_list_id(&s3_name).await?,
        };
        let rules = groups
            .iter()
            .chain(vpc.endpoint_groups.iter())
            .flat_map(|g| g.ingress.iter().chain(g.egress.iter()));
        let mut ids: std::collections::BTreeSet<String> =
            rules.flat_map(|r| r.prefix_list_ids.iter().cloned()).collect();
        ids.extend(
            vpc.route_tables
                .iter()
                .flat_map(|rt| rt.routes.iter())
                .filter_map(|r| r.destination_prefix_list_id.clone()),
        );
        ids.extend(s3_id.clone());
        let mut lists = Vec::new();
        for id in ids {
            if let Some(cidrs) = self.prefix_list_cidrs(&id).await? {
                let name = if s3_id.as_deref() == Some(id.as_str()) {
                    s3_name.clone()
                } else {
                    String::new()
                };
                lists.push(PrefixList { id, name, cidrs });
            }
        }
        Ok(lists)
    }

    async fn s3_prefix_list_id(&self, name: &str) -> Result<Option<String>, AwsError> {
        let cell = {
            let mut cache = self.cache.lock().map_err(|_| poisoned())?;
            match self.fresh(cache.s3_list.as_ref()) {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(OnceCell::new());
                    cache.s3_list = Some((cell.clone(), Instant::now()));
                    cell
                }
            }
        };
        let read = || async {
            let request = self
                .client
                .describe_managed_prefix_lists()
                .filters(filter("prefix-list-name", [name]));
            let found = self.paginate("DescribeManagedPrefixLists", request).await?;
            Ok::<_, AwsError>(found.into_iter().next())
        };
        Ok(cell.get_or_try_init(read).await?.clone())
    }

    /// A prefix list's CIDRs; `None` when the list does not exist for this account (a list of
    /// another account that is not shared), so that rules naming it reach nothing.
    async fn prefix_list_cidrs(&self, id: &str) -> Result<Option<Vec<String>>, AwsError> {
        let cell = {
            let mut cache = self.cache.lock().map_err(|_| poisoned())?;
            match self.fresh(cache.prefix_lists.get(id)) {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(OnceCell::new());
                    cache
                        .prefix_lists
                        .insert(id.to_string(), (cell.clone(), Instant::now()));
                    cell
                }
            }
        };
        let read = || async {
            let request = self.client.get_managed_prefix_list_entries().prefix_list_id(id);
            match self.paginate("GetManagedPrefixListEntries", request).await {
                Ok(cidrs) => Ok(Some(cidrs)),
                Err(e) if matches!(e.class, super::ErrorClass::NotFound | super::ErrorClass::Invalid) => Ok(None),
                Err(e) => Err(e),
            }
        };
        Ok(cell.get_or_try_init(read).await?.clone())
    }

    /// Looks up the subnets and groups the cache does not know (or knows from too long ago).
    async fn lookup_ids(&self, subnet_ids: &[String], group_ids: &[String]) -> Result<(), AwsError> {
        let missing = |cache: &Cache| -> (Vec<String>, Vec<String>) {
            let s = subnet_ids
                .iter()
                .filter(|id| self.fresh(cache.subnets.get(*id)).is_none())
                .cloned()
                .collect();
            let g = group_ids
                .iter()
                .filter(|id| self.fresh(cache.groups.get(*id)).is_none())
                .cloned()
                .collect();
            (s, g)
        };
        let nothing_missing = {
            let cache = self.cache.lock().map_err(|_| poisoned())?;
            let (s, g) = missing(&cache);
            s.is_empty() && g.is_empty()
        };
        if nothing_missing {
            return Ok(());
        }
        let _guard = self.lookup.lock().await;
        let (subnets, groups) = {
            let cache = self.cache.lock().map_err(|_| poisoned())?;
            missing(&cache)
        };
        let now = Instant::now();
        if !subnets.is_empty() {
            let request = self.client.describe_subnets().filters(filter("subnet-id", subnets));
            let found = self.paginate("DescribeSubnets", request).await?;
            let mut cache = self.cache.lock().map_err(|_| poisoned())?;
            for s in found {
                cache.subnets.insert(s.id.clone(), (s, now));
            }
        }
        if !groups.is_empty() {
            let request = self
                .client
                .describe_security_groups()
                .filters(filter("group-id", groups));
            let found = self.paginate("DescribeSecurityGroups", request).await?;
            let mut cache = self.cache.lock().map_err(|_| poisoned())?;
            for g in found {
                cache.groups.insert(g.id.clone(), (g, now));
            }
        }
        Ok(())
    }

    /// The VPC's topology, from the cache or read once for all concurrent callers.
    pub async fn topology(&self, vpc_id: &str) -> Result<Arc<VpcTopology>, AwsError> {
        let cell = {
            let mut cache = self.cache.lock().map_err(|_| poisoned())?;
            match self.fresh(cache.vpcs.get(vpc_id)) {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(OnceCell::new());
                    cache.vpcs.insert(vpc_id.to_string(), (cell.clone(), Instant::now()));
                    cell
                }
            }
        };
        Ok(cell.get_or_try_init(|| self.read_topology(vpc_id)).await?.clone())
    }

    async fn read_topology(&self, vpc_id: &str) -> Result<Arc<VpcTopology>, AwsError> {
        let ec2 = &self.client;
        let vpc = || filter("vpc-id", [vpc_id]);
        let (vpcs, dns_support, dns_hostnames, route_tables, endpoints, nats, igws, acls, flow_logs) = futures::try_join!(
            self.call("DescribeVpcs", ec2.describe_vpcs().vpc_ids(vpc_id).send()),
            self.call(
                "DescribeVpcAttribute",
                ec2.describe_vpc_attribute()
                    .vpc_id(vpc_id)
                    .attribute(VpcAttributeName::EnableDnsSupport)
                    .send()
            ),
            self.call(
                "DescribeVpcAttribute",
                ec2.describe_vpc_attribute()
                    .vpc_id(vpc_id)
                    .attribute(VpcAttributeName::EnableDnsHostnames)
                    .send()
            ),
            self.paginate("DescribeRouteTables", ec2.describe_route_tables().filters(vpc())),
            self.paginate("DescribeVpcEndpoints", ec2.describe_vpc_endpoints().filters(vpc())),
            self.paginate("DescribeNatGateways", ec2.describe_nat_gateways().filter(vpc())),
            self.paginate(
                "DescribeInternetGateways",
                ec2.describe_internet_gateways()
                    .filters(filter("attachment.vpc-id", [vpc_id]))
            ),
            self.paginate("DescribeNetworkAcls", ec2.describe_network_acls().filters(vpc())),
            self.paginate(
                "DescribeFlowLogs",
                ec2.describe_flow_logs().filter(filter("resource-id", [vpc_id]))
            ),
        )?;
        let (endpoint_groups, endpoint_subnets) = self.endpoint_network(&endpoints).await?;
        let cidr_blocks = vpcs
            .vpcs()
            .iter()
            .flat_map(|v| {
                let mut c: Vec<String> = v.cidr_block().map(str::to_string).into_iter().collect();
                c.extend(
                    v.cidr_block_association_set()
                        .iter()
                        .filter_map(|a| a.cidr_block().map(str::to_string)),
                );
                c
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        Ok(Arc::new(VpcTopology {
            vpc_id: vpc_id.to_string(),
            cidr_blocks,
            dns_support: dns_support
                .enable_dns_support()
                .and_then(|a| a.value())
                .unwrap_or(false),
            dns_hostnames: dns_hostnames
                .enable_dns_hostnames()
                .and_then(|a| a.value())
                .unwrap_or(false),
            route_tables,
            endpoints,
            nat_gateways: nats,
            internet_gateways: igws,
            network_acls: acls,
            flow_logs: flow_logs.iter().any(|r| r == vpc_id),
            endpoint_groups,
            endpoint_subnets,
        }))
    }

    /// The security groups and subnets of the VPC's interface endpoints: one Describe each, by
    /// ID, read with the VPC and cached with it; none when the VPC has no interface endpoint.
    async fn endpoint_network(&self, endpoints: &[VpcEndpoint]) -> Result<(Vec<SecurityGroup>, Vec<Subnet>), AwsError> {
        let interface = || endpoints.iter().filter(|e| e.endpoint_type == EndpointType::Interface);
        let group_ids: std::collections::BTreeSet<&String> = interface().flat_map(|e| e.group_ids.iter()).collect();
        let subnet_ids: std::collections::BTreeSet<&String> = interface().flat_map(|e| e.subnet_ids.iter()).collect();
        let groups = async {
            if group_ids.is_empty() {
                return Ok(Vec::new());
            }
            let request = self
                .client
                .describe_security_groups()
                .filters(filter("group-id", group_ids.iter().map(|g| g.to_string())));
            self.paginate("DescribeSecurityGroups", request).await
        };
        let subnets = async {
            if subnet_ids.is_empty() {
                return Ok(Vec::new());
            }
            let request = self
                .client
                .describe_subnets()
                .filters(filter("subnet-id", subnet_ids.iter().map(|s| s.to_string())));
            self.paginate("DescribeSubnets", request).await
        };
        futures::try_join!(groups, subnets)
    }

    /// Sends a paginated Describe until the last page, collecting the items of every page.
    async fn paginate<D: Describe>(&self, operation: &'static str, request: D) -> Result<Vec<D::Item>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (items, next) = request.clone().page(self, operation, token.take()).await?;
            out.extend(items);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

/// A paginated Describe request: the SDK's fluent builder for it, without a page token.
trait Describe: Clone {
    /// One item of the answer, in our types.
    type Item;

    /// Sends the request for the page at `token`; returns that page's items and the next page's
    /// token.
    fn page(
        self,
        ec2: &Ec2Resolver,
        operation: &'static str,
        token: Option<String>,
    ) -> impl Future<Output = Result<(Vec<Self::Item>, Option<String>), AwsError>> + Send;
}

/// Implements [`Describe`] for the requests the resolver pages through, one a line: the
/// operation's module in `aws_sdk_ec2::operation` and its fluent builder, the list in the answer,
/// and how an item of it becomes ours (`map`, or `filter_map` where some are left out).
macro_rules! describe {
    ($($module:ident::$builder:ident => $list:ident.$adapt:ident($convert:ident) -> $item:ty;)+) => {$(
        impl Describe for aws_sdk_ec2::operation::$module::builders::$builder {
            type Item = $item;

            async fn page(
                self,
                ec2: &Ec2Resolver,
                operation: &'static str,
                token: Option<String>,
            ) -> Result<(Vec<$item>, Option<String>), AwsError> {
                let page = ec2.call(operation, self.set_next_token(token).send()).await?;
                let items = page.$list().iter().$adapt($convert).collect();
                Ok((items, page.next_token().map(str::to_string)))
            }
        }
    )+};
}

describe! {
    describe_subnets::DescribeSubnetsFluentBuilder => subnets.map(subnet) -> Subnet;
    describe_security_groups::DescribeSecurityGroupsFluentBuilder
        => security_groups.map(security_group) -> SecurityGroup;
    describe_route_tables::DescribeRouteTablesFluentBuilder => route_tables.map(route_table) -> RouteTable;
    describe_vpc_endpoints::DescribeVpcEndpointsFluentBuilder => vpc_endpoints.map(vpc_endpoint) -> VpcEndpoint;
    describe_nat_gateways::DescribeNatGatewaysFluentBuilder => nat_gateways.map(nat_gateway) -> NatGateway;
    describe_internet_gateways::DescribeInternetGatewaysFluentBuilder
        => internet_gateways.filter_map(internet_gateway_id) -> String;
    describe_network_acls::DescribeNetworkAclsFluentBuilder => network_acls.map(network_acl) -> NetworkAcl;
    describe_flow_logs::DescribeFlowLogsFluentBuilder => flow_logs.filter_map(active_flow_log_resource) -> String;
    describe_managed_prefix_lists::DescribeManagedPrefixListsFluentBuilder
        => prefix_lists.filter_map(prefix_list_id) -> String;
    get_managed_prefix_list_entries::GetManagedPrefixListEntriesFluentBuilder
        => entries.filter_map(prefix_list_entry_cidr) -> String;
}

fn prefix_list_id(p: &sdk::ManagedPrefixList) -> Option<String> {
    p.prefix_list_id().map(str::to_string)
}

fn prefix_list_entry_cidr(e: &sdk::PrefixListEntry) -> Option<String> {
    e.cidr().map(str::to_string)
}

fn subnet(s: &sdk::Subnet) -> Subnet {
    Subnet {
        id: s.subnet_id().unwrap_or_default().to_string(),
        vpc_id: s.vpc_id().unwrap_or_default().to_string(),
        cidr: s.cidr_block().unwrap_or_default().to_string(),
        availability_zone: s.availability_zone().unwrap_or_default().to_string(),
        available_ips: i64::from(s.available_ip_address_count().unwrap_or(0)),
    }
}

fn security_group(g: &sdk::SecurityGroup) -> SecurityGroup {
    SecurityGroup {
        id: g.group_id().unwrap_or_default().to_string(),
        vpc_id: g.vpc_id().unwrap_or_default().to_string(),
        name: g.group_name().unwrap_or_default().to_string(),
        ingress: g.ip_permissions().iter().map(sg_rule).collect(),
        egress: g.ip_permissions_egress().iter().map(sg_rule).collect(),
    }
}

fn sg_rule(p: &sdk::IpPermission) -> SgRule {
    SgRule {
        protocol: p.ip_protocol().unwrap_or("-1").to_string(),
        from_port: p.from_port(),
        to_port: p.to_port(),
        cidrs: values(p.ip_ranges(), |r| r.cidr_ip()),
        ipv6_cidrs: values(p.ipv6_ranges(), |r| r.cidr_ipv6()),
        prefix_list_ids: values(p.prefix_list_ids(), |r| r.prefix_list_id()),
        group_ids: values(p.user_id_group_pairs(), |r| r.group_id()),
    }
}

fn route_table(rt: &sdk::RouteTable) -> RouteTable {
    RouteTable {
        id: rt.route_table_id().unwrap_or_default().to_string(),
        vpc_id: rt.vpc_id().unwrap_or_default().to_string(),
        main: rt.associations().iter().any(|a| a.main().unwrap_or(false)),
        subnet_ids: values(rt.associations(), |a| a.subnet_id()),
        routes: rt.routes().iter().map(route).collect(),
    }
}

fn route(r: &sdk::Route) -> Route {
    Route {
        destination_cidr: r.destination_cidr_block().map(str::to_string),
        destination_prefix_list_id: r.destination_prefix_list_id().map(str::to_string),
        gateway_id: r.gateway_id().map(str::to_string),
        nat_gateway_id: r.nat_gateway_id().map(str::to_string),
        destination_ipv6_cidr: r.destination_ipv6_cidr_block().map(str::to_string),
        other_target: r
            .transit_gateway_id()
            .or(r.vpc_peering_connection_id())
            .or(r.instance_id())
            .or(r.network_interface_id())
            .or(r.core_network_arn())
            .or(r.local_gateway_id())
            .or(r.carrier_gateway_id())
            .map(str::to_string),
        active: r.state().is_none_or(|s| s.as_str() != "blackhole"),
    }
}

fn vpc_endpoint(e: &sdk::VpcEndpoint) -> VpcEndpoint {
    VpcEndpoint {
        id: e.vpc_endpoint_id().unwrap_or_default().to_string(),
        service_name: e.service_name().unwrap_or_default().to_string(),
        endpoint_type: match e.vpc_endpoint_type().map(|t| t.as_str().to_ascii_lowercase()) {
            Some(t) if t == "gateway" => EndpointType::Gateway,
            Some(t) if t == "interface" => EndpointType::Interface,
            Some(_) => EndpointType::Other,
            None => EndpointType::Gateway,
        },
        state: e.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        policy_document: e.policy_document().map(str::to_string),
        route_table_ids: e.route_table_ids().to_vec(),
        subnet_ids: e.subnet_ids().to_vec(),
        private_dns_enabled: e.private_dns_enabled().unwrap_or(false),
        private_dns_only_for_inbound_resolver: e
            .dns_options()
            .and_then(|d| d.private_dns_only_for_inbound_resolver_endpoint())
            .unwrap_or(false),
        group_ids: values(e.groups(), |g| g.group_id()),
    }
}

fn nat_gateway(n: &sdk::NatGateway) -> NatGateway {
    NatGateway {
        id: n.nat_gateway_id().unwrap_or_default().to_string(),
        subnet_id: n.subnet_id().unwrap_or_default().to_string(),
        state: n.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
        connectivity: n
            .connectivity_type()
            .map(|c| c.as_str().to_string())
            .unwrap_or_else(|| "public".into()),
    }
}

fn internet_gateway_id(g: &sdk::InternetGateway) -> Option<String> {
    g.internet_gateway_id().map(str::to_string)
}

fn network_acl(a: &sdk::NetworkAcl) -> NetworkAcl {
    NetworkAcl {
        id: a.network_acl_id().unwrap_or_default().to_string(),
        default: a.is_default().unwrap_or(false),
        subnet_ids: values(a.associations(), |x| x.subnet_id()),
        entries: a.entries().iter().map(acl_entry).collect(),
    }
}

fn acl_entry(e: &sdk::NetworkAclEntry) -> AclEntry {
    AclEntry {
        rule_number: e.rule_number().unwrap_or(32767),
        egress: e.egress().unwrap_or(false),
        protocol: e.protocol().unwrap_or("-1").to_string(),
        allow: e.rule_action().is_some_and(|r| r.as_str() == "allow"),
        cidr: e.cidr_block().map(str::to_string),
        ipv6_cidr: e.ipv6_cidr_block().map(str::to_string),
        port_from: e.port_range().and_then(|p| p.from()),
        port_to: e.port_range().and_then(|p| p.to()),
    }
}

/// The VPC (or subnet, or interface) a flow log watches, if the log is active; a log whose status
/// is not told counts as active.
fn active_flow_log_resource(l: &sdk::FlowLog) -> Option<String> {
    if l.flow_log_status().is_none_or(|s| s.eq_ignore_ascii_case("active")) {
        l.resource_id().map(str::to_string)
    } else {
        None
    }
}

/// The `field` of each of `items` that has one.
fn values<T>(items: &[T], field: impl Fn(&T) -> Option<&str>) -> Vec<String> {
    items.iter().filter_map(|i| field(i).map(str::to_string)).collect()
}

fn poisoned() -> AwsError {
    AwsError {
        service: SERVICE,
        operation: "cache",
        class: super::ErrorClass::Other,
        code: None,
        message: "the EC2 cache lock was poisoned by a panic".into(),
    }
}

/// S3's prefix list as the VPC's S3 gateway endpoint routes to it (AWS adds the route with the
/// list as its destination when the endpoint is associated with a route table).
fn s3_list_of_gateway_endpoint(vpc: &VpcTopology, s3_name: &str) -> Option<String> {
    vpc.endpoints
        .iter()
        .filter(|e| e.service_name == s3_name && e.endpoint_type == EndpointType::Gateway)
        .find_map(|e| {
            vpc.route_tables
                .iter()
                .flat_map(|rt| rt.routes.iter())
                .find(|r| r.gateway_id.as_deref() == Some(e.id.as_str()))
                .and_then(|r| r.destination_prefix_list_id.clone())
        })
}
