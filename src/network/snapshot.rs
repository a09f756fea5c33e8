//! Everything read from EC2 about one job's network, in the project's own small types.

use serde::{Deserialize, Serialize};

/// One job's view of its network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSnapshot {
    /// The region the job runs in (for service names such as `com.amazonaws.<region>.s3`).
    pub region: String,
    /// The job's subnets that exist (any VPC).
    pub subnets: Vec<Subnet>,
    /// The job's security groups that exist (any VPC).
    pub security_groups: Vec<SecurityGroup>,
    /// The VPC of the job's first found subnet, with its routing and endpoints.
    pub vpc: Option<std::sync::Arc<VpcTopology>>,
}

/// A VPC and what decides where its traffic goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VpcTopology {
    pub vpc_id: String,
    pub cidr_blocks: Vec<String>,
    pub dns_support: bool,
    pub dns_hostnames: bool,
    pub route_tables: Vec<RouteTable>,
    pub endpoints: Vec<VpcEndpoint>,
    pub nat_gateways: Vec<NatGateway>,
    pub internet_gateways: Vec<String>,
    pub network_acls: Vec<NetworkAcl>,
    /// Whether the VPC has an active flow log.
    pub flow_logs: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub availability_zone: String,
    pub available_ips: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub name: String,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
}

/// One security-group permission: a protocol and port range, and its peers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SgRule {
    /// `-1` (all), `tcp`, `udp`, `icmp` or a protocol number.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidrs: Vec<String>,
    pub prefix_list_ids: Vec<String>,
    pub group_ids: Vec<String>,
}

impl SgRule {
    /// Whether the rule covers TCP traffic on `port`.
    pub fn allows_tcp_port(&self, port: i32) -> bool {
        match self.protocol.as_str() {
            "-1" | "all" => true,
            "tcp" | "6" => match (self.from_port, self.to_port) {
                (Some(from), Some(to)) => (from == -1 && to == -1) || (from <= port && port <= to),
                _ => true,
            },
            _ => false,
        }
    }

    /// Whether the rule covers all traffic (every protocol, or every TCP and UDP port).
    pub fn allows_all_traffic(&self) -> bool {
        match self.protocol.as_str() {
            "-1" | "all" => true,
            "tcp" | "6" => matches!((self.from_port, self.to_port), (Some(0), Some(65535)) | (None, None)),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    /// The VPC's main route table (used by subnets without an explicit association).
    pub main: bool,
    /// Subnets explicitly associated.
    pub subnet_ids: Vec<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub destination_cidr: Option<String>,
    pub destination_prefix_list_id: Option<String>,
    /// `local`, `igw-…`, `vpce-…`, `vgw-…`
    pub gateway_id: Option<String>,
    pub nat_gateway_id: Option<String>,
    /// Other targets (transit gateway, peering, instance, ENI), for messages.
    pub other_target: Option<String>,
    /// `false` for blackhole routes.
    pub active: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointType {
    #[default]
    Gateway,
    Interface,
    Other,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VpcEndpoint {
    pub id: String,
    pub service_name: String,
    pub endpoint_type: EndpointType,
    /// `available` (or `pending`) endpoints serve traffic.
    pub state: String,
    pub policy_document: Option<String>,
    pub route_table_ids: Vec<String>,
    pub subnet_ids: Vec<String>,
    pub private_dns_enabled: bool,
}

impl VpcEndpoint {
    pub fn usable(&self) -> bool {
        let s = self.state.to_ascii_lowercase();
        s.is_empty() || s == "available" || s == "pending"
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatGateway {
    pub id: String,
    pub subnet_id: String,
    pub state: String,
    /// `public` (default) or `private` connectivity.
    pub connectivity: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkAcl {
    pub id: String,
    pub default: bool,
    pub subnet_ids: Vec<String>,
    pub entries: Vec<AclEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AclEntry {
    pub rule_number: i32,
    pub egress: bool,
    /// `-1` (all) or a protocol number (`6` = TCP).
    pub protocol: String,
    pub allow: bool,
    pub cidr: Option<String>,
    pub port_from: Option<i32>,
    pub port_to: Option<i32>,
}

impl VpcTopology {
    /// The route table a subnet uses: its explicit association, else the main table.
    pub fn route_table_for(&self, subnet_id: &str) -> Option<&RouteTable> {
        self.route_tables
            .iter()
            .find(|rt| rt.subnet_ids.iter().any(|s| s == subnet_id))
            .or_else(|| self.route_tables.iter().find(|rt| rt.main))
    }

    /// The network ACL of a subnet: its association, else the VPC's default ACL.
    pub fn network_acl_for(&self, subnet_id: &str) -> Option<&NetworkAcl> {
        self.network_acls
            .iter()
            .find(|acl| acl.subnet_ids.iter().any(|s| s == subnet_id))
            .or_else(|| self.network_acls.iter().find(|acl| acl.default))
    }
}

/// IPv4 CIDR parsing and containment.
pub mod cidr {
    /// Parses `a.b.c.d/n` into (network, prefix length).
    pub fn parse(cidr: &str) -> Option<(u32, u32)> {
        let (addr, len) = cidr.split_once('/')?;
        let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
        let ip: std::net::Ipv4Addr = addr.parse().ok()?;
        Some((u32::from(ip), len))
    }

    fn mask(len: u32) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - len)
        }
    }

    /// Whether `outer` contains every address of `inner`.
    pub fn contains(outer: &str, inner: &str) -> bool {
        match (parse(outer), parse(inner)) {
            (Some((o, ol)), Some((i, il))) => ol <= il && (o & mask(ol)) == (i & mask(ol)),
            _ => false,
        }
    }

    /// Whether the CIDR is the whole IPv4 internet.
    pub fn is_anywhere(cidr: &str) -> bool {
        parse(cidr).is_some_and(|(_, len)| len == 0)
    }
}
