//! Reads a job's network from EC2: batched Describe calls (one per resource kind, with ID
//! lists or `vpc-id` filters) and a per-VPC cache with a short TTL, so that many jobs in one VPC
//! share one read, and concurrent requests for the same VPC share one in-flight read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, VpcAttributeName};
use aws_sdk_ec2::Client;
use tokio::sync::{Mutex, OnceCell};

use super::{AwsError, CallCounter};
use crate::api::ProcessingJobSpec;
use crate::network::snapshot::{
    AclEntry, EndpointType, NatGateway, NetworkAcl, NetworkSnapshot, Route, RouteTable, SecurityGroup, SgRule, Subnet,
    VpcEndpoint, VpcTopology,
};

const SERVICE: &str = "ec2";

type Cached<T> = (T, Instant);

#[derive(Default)]
struct Cache {
    subnets: HashMap<String, Cached<Subnet>>,
    groups: HashMap<String, Cached<SecurityGroup>>,
    vpcs: HashMap<String, Cached<Arc<OnceCell<Arc<VpcTopology>>>>>,
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

    async fn call<T, E, R>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>>,
    ) -> Result<T, AwsError>
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + super::HttpStatus,
    {
        self.calls.observe(SERVICE, operation, fut).await
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
        Ok(NetworkSnapshot {
            region: self.region.clone(),
            subnets,
            security_groups: groups,
            vpc,
        })
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
            let found = self.describe_subnets(filter("subnet-id", subnets)).await?;
            let mut cache = self.cache.lock().map_err(|_| poisoned())?;
            for s in found {
                cache.subnets.insert(s.id.clone(), (s, now));
            }
        }
        if !groups.is_empty() {
            let found = self.describe_security_groups(filter("group-id", groups)).await?;
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
        let vpc = || filter("vpc-id", [vpc_id]);
        let (vpcs, dns_support, dns_hostnames, route_tables, endpoints, nats, igws, acls, flow_logs) = futures::try_join!(
            self.call("DescribeVpcs", self.client.describe_vpcs().vpc_ids(vpc_id).send()),
            self.call(
                "DescribeVpcAttribute",
                self.client
                    .describe_vpc_attribute()
                    .vpc_id(vpc_id)
                    .attribute(VpcAttributeName::EnableDnsSupport)
                    .send()
            ),
            self.call(
                "DescribeVpcAttribute",
                self.client
                    .describe_vpc_attribute()
                    .vpc_id(vpc_id)
                    .attribute(VpcAttributeName::EnableDnsHostnames)
                    .send()
            ),
            self.describe_route_tables(vpc()),
            self.describe_endpoints(vpc()),
            self.describe_nat_gateways(vpc()),
            self.describe_internet_gateways(filter("attachment.vpc-id", [vpc_id])),
            self.describe_network_acls(vpc()),
            self.describe_flow_logs(filter("resource-id", [vpc_id])),
        )?;
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
        }))
    }

    /// Calls a paginated Describe until the last page, collecting the items of every page.
    async fn paginate<O, T, E, R, Fut>(
        &self,
        operation: &'static str,
        mut send: impl FnMut(Option<String>) -> Fut,
        page: impl Fn(&O) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, AwsError>
    where
        Fut: Future<Output = Result<O, aws_smithy_runtime_api::client::result::SdkError<E, R>>>,
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + super::HttpStatus,
    {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self.call(operation, send(token.take())).await?;
            let (items, next) = page(&resp);
            out.extend(items);
            match next {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    async fn describe_subnets(&self, f: Filter) -> Result<Vec<Subnet>, AwsError> {
        self.paginate(
            "DescribeSubnets",
            |token| {
                self.client
                    .describe_subnets()
                    .filters(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.subnets()
                        .iter()
                        .map(|s| Subnet {
                            id: s.subnet_id().unwrap_or_default().to_string(),
                            vpc_id: s.vpc_id().unwrap_or_default().to_string(),
                            cidr: s.cidr_block().unwrap_or_default().to_string(),
                            availability_zone: s.availability_zone().unwrap_or_default().to_string(),
                            available_ips: i64::from(s.available_ip_address_count().unwrap_or(0)),
                        })
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }

    async fn describe_security_groups(&self, f: Filter) -> Result<Vec<SecurityGroup>, AwsError> {
        self.paginate(
            "DescribeSecurityGroups",
            |token| {
                self.client
                    .describe_security_groups()
                    .filters(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.security_groups()
                        .iter()
                        .map(|g| SecurityGroup {
                            id: g.group_id().unwrap_or_default().to_string(),
                            vpc_id: g.vpc_id().unwrap_or_default().to_string(),
                            name: g.group_name().unwrap_or_default().to_string(),
                            ingress: g.ip_permissions().iter().map(sg_rule).collect(),
                            egress: g.ip_permissions_egress().iter().map(sg_rule).collect(),
                        })
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }

    async fn describe_route_tables(&self, f: Filter) -> Result<Vec<RouteTable>, AwsError> {
        self.paginate(
            "DescribeRouteTables",
            |token| {
                self.client
                    .describe_route_tables()
                    .filters(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.route_tables()
                        .iter()
                        .map(|rt| RouteTable {
                            id: rt.route_table_id().unwrap_or_default().to_string(),
                            vpc_id: rt.vpc_id().unwrap_or_default().to_string(),
                            main: rt.associations().iter().any(|a| a.main().unwrap_or(false)),
                            subnet_ids: rt
                                .associations()
                                .iter()
                                .filter_map(|a| a.subnet_id().map(str::to_string))
                                .collect(),
                            routes: rt
                                .routes()
                                .iter()
                                .map(|r| Route {
                                    destination_cidr: r.destination_cidr_block().map(str::to_string),
                                    destination_prefix_list_id: r.destination_prefix_list_id().map(str::to_string),
                                    gateway_id: r.gateway_id().map(str::to_string),
                                    nat_gateway_id: r.nat_gateway_id().map(str::to_string),
                                    other_target: r
                                        .transit_gateway_id()
                                        .or(r.vpc_peering_connection_id())
                                        .or(r.instance_id())
                                        .or(r.network_interface_id())
                                        .map(str::to_string),
                                    active: r.state().is_none_or(|s| s.as_str() != "blackhole"),
                                })
                                .collect(),
                        })
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }

    async fn describe_endpoints(&self, f: Filter) -> Result<Vec<VpcEndpoint>, AwsError> {
        self.paginate(
            "DescribeVpcEndpoints",
            |token| {
                self.client
                    .describe_vpc_endpoints()
                    .filters(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.vpc_endpoints()
                        .iter()
                        .map(|e| VpcEndpoint {
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
                        })
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }

    async fn describe_nat_gateways(&self, f: Filter) -> Result<Vec<NatGateway>, AwsError> {
        self.paginate(
            "DescribeNatGateways",
            |token| {
                self.client
                    .describe_nat_gateways()
                    .filter(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.nat_gateways()
                        .iter()
                        .map(|n| NatGateway {
                            id: n.nat_gateway_id().unwrap_or_default().to_string(),
                            subnet_id: n.subnet_id().unwrap_or_default().to_string(),
                            state: n.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
                            connectivity: n
                                .connectivity_type()
                                .map(|c| c.as_str().to_string())
                                .unwrap_or_else(|| "public".into()),
                        })
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }

    async fn describe_internet_gateways(&self, f: Filter) -> Result<Vec<String>, AwsError> {
        self.paginate(
            "DescribeInternetGateways",
            |token| {
                self.client
                    .describe_internet_gateways()
                    .filters(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.internet_gateways()
                        .iter()
                        .filter_map(|g| g.internet_gateway_id().map(str::to_string))
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }

    async fn describe_network_acls(&self, f: Filter) -> Result<Vec<NetworkAcl>, AwsError> {
        self.paginate(
            "DescribeNetworkAcls",
            |token| {
                self.client
                    .describe_network_acls()
                    .filters(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.network_acls()
                        .iter()
                        .map(|a| NetworkAcl {
                            id: a.network_acl_id().unwrap_or_default().to_string(),
                            default: a.is_default().unwrap_or(false),
                            subnet_ids: a
                                .associations()
                                .iter()
                                .filter_map(|x| x.subnet_id().map(str::to_string))
                                .collect(),
                            entries: a
                                .entries()
                                .iter()
                                .map(|e| AclEntry {
                                    rule_number: e.rule_number().unwrap_or(32767),
                                    egress: e.egress().unwrap_or(false),
                                    protocol: e.protocol().unwrap_or("-1").to_string(),
                                    allow: e.rule_action().is_some_and(|r| r.as_str() == "allow"),
                                    cidr: e.cidr_block().map(str::to_string),
                                    port_from: e.port_range().and_then(|p| p.from()),
                                    port_to: e.port_range().and_then(|p| p.to()),
                                })
                                .collect(),
                        })
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }

    async fn describe_flow_logs(&self, f: Filter) -> Result<Vec<String>, AwsError> {
        self.paginate(
            "DescribeFlowLogs",
            |token| {
                self.client
                    .describe_flow_logs()
                    .filter(f.clone())
                    .set_next_token(token)
                    .send()
            },
            |resp| {
                (
                    resp.flow_logs()
                        .iter()
                        .filter(|l| l.flow_log_status().is_none_or(|s| s.eq_ignore_ascii_case("active")))
                        .filter_map(|l| l.resource_id().map(str::to_string))
                        .collect(),
                    resp.next_token().map(str::to_string),
                )
            },
        )
        .await
    }
}

fn sg_rule(p: &aws_sdk_ec2::types::IpPermission) -> SgRule {
    SgRule {
        protocol: p.ip_protocol().unwrap_or("-1").to_string(),
        from_port: p.from_port(),
        to_port: p.to_port(),
        cidrs: p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip().map(str::to_string))
            .collect(),
        prefix_list_ids: p
            .prefix_list_ids()
            .iter()
            .filter_map(|r| r.prefix_list_id().map(str::to_string))
            .collect(),
        group_ids: p
            .user_id_group_pairs()
            .iter()
            .filter_map(|r| r.group_id().map(str::to_string))
            .collect(),
    }
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
