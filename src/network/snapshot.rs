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
    /// The region's S3 prefix list (`com.amazonaws.<region>.s3`) and every prefix list the job's
    /// groups, the endpoints' groups and the VPC's routes refer to, with their CIDRs.
    #[serde(default)]
    pub prefix_lists: Vec<PrefixList>,
}

/// A managed prefix list (AWS-managed or customer-managed) and the CIDRs in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefixList {
    pub id: String,
    /// Known for the lists found by name (S3's); empty for lists only referenced by ID.
    pub name: String,
    pub cidrs: Vec<String>,
}

impl NetworkSnapshot {
    /// S3's AWS-managed prefix list in the job's region, when it was read.
    pub fn s3_prefix_list(&self) -> Option<&PrefixList> {
        let name = format!("com.amazonaws.{}.s3", self.region);
        self.prefix_lists.iter().find(|p| p.name == name)
    }

    /// The CIDRs of a prefix list, when it was read.
    pub fn prefix_list_cidrs(&self, id: &str) -> Option<&[String]> {
        self.prefix_lists
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.cidrs.as_slice())
    }
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
    /// The security groups of the VPC's interface endpoints (who may reach their ENIs).
    #[serde(default)]
    pub endpoint_groups: Vec<SecurityGroup>,
    /// The subnets of the VPC's interface endpoints (where their ENIs are).
    #[serde(default)]
    pub endpoint_subnets: Vec<Subnet>,
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
    #[serde(default)]
    pub ipv6_cidrs: Vec<String>,
    pub prefix_list_ids: Vec<String>,
    pub group_ids: Vec<String>,
}

/// What one flow of the job is, as a security-group rule or network ACL entry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// Every TCP port (what the job's members exchange).
    AllTcp,
    /// One TCP port (443 to S3 and endpoints).
    Tcp(i32),
    /// One UDP port (500 for IKE, when inter-container traffic is encrypted).
    Udp(i32),
    /// An IP protocol without ports (50, ESP).
    Protocol(i32),
}

impl std::fmt::Display for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Traffic::AllTcp => f.write_str("all TCP"),
            Traffic::Tcp(p) => write!(f, "TCP {p}"),
            Traffic::Udp(p) => write!(f, "UDP {p}"),
            Traffic::Protocol(50) => f.write_str("IP protocol 50 (ESP)"),
            Traffic::Protocol(p) => write!(f, "IP protocol {p}"),
        }
    }
}

/// The IP protocol number of a rule's protocol (`tcp`, `udp`, `icmp`, or a number); `None` for
/// all protocols (`-1`).
fn protocol_number(protocol: &str) -> Option<i32> {
    match protocol.to_ascii_lowercase().as_str() {
        "-1" | "all" => None,
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        other => Some(other.parse().unwrap_or(-2)),
    }
}

/// Whether a port range (`None` or `-1` for every port) covers `from..=to`.
fn ports_cover(range: (Option<i32>, Option<i32>), from: i32, to: i32) -> bool {
    match range {
        (Some(a), Some(b)) => (a == -1 && b == -1) || (a <= from && to <= b),
        _ => true,
    }
}

impl SgRule {
    /// Whether the rule's protocol and ports cover the traffic.
    pub fn allows(&self, traffic: Traffic) -> bool {
        let ports = (self.from_port, self.to_port);
        match (protocol_number(&self.protocol), traffic) {
            (None, _) => true,
            (Some(6), Traffic::AllTcp) => ports_cover(ports, 0, 65535),
            (Some(6), Traffic::Tcp(p)) | (Some(17), Traffic::Udp(p)) => ports_cover(ports, p, p),
            (Some(n), Traffic::Protocol(p)) => n == p,
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
    /// Targets whose far side is outside the VPC's snapshot: transit gateway, peering
    /// connection, instance, network interface, core network, local or carrier gateway.
    pub other_target: Option<String>,
    #[serde(default)]
    pub destination_ipv6_cidr: Option<String>,
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
    /// `DnsOptions.PrivateDnsOnlyForInboundResolverEndpoint`: the private names answer only
    /// for on-premises resolvers; the VPC itself resolves the public addresses.
    #[serde(default)]
    pub private_dns_only_for_inbound_resolver: bool,
    /// The security groups of an interface endpoint's network interfaces.
    #[serde(default)]
    pub group_ids: Vec<String>,
}

impl VpcEndpoint {
    /// Whether a gateway endpoint routes traffic (`pending` ones are being set up and will).
    pub fn usable(&self) -> bool {
        let s = self.state.to_ascii_lowercase();
        s.is_empty() || s == "available" || s == "pending"
    }

    /// Whether an interface endpoint's network interfaces answer now.
    pub fn available(&self) -> bool {
        let s = self.state.to_ascii_lowercase();
        s.is_empty() || s == "available"
    }

    /// Whether the VPC's own lookups of the service's public name resolve to this interface
    /// endpoint (private DNS on, and not only for inbound resolvers).
    pub fn captures_public_name(&self) -> bool {
        self.endpoint_type == EndpointType::Interface
            && self.available()
            && self.private_dns_enabled
            && !self.private_dns_only_for_inbound_resolver
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
    #[serde(default)]
    pub ipv6_cidr: Option<String>,
    pub port_from: Option<i32>,
    pub port_to: Option<i32>,
}

impl AclEntry {
    /// Whether the entry's protocol is the traffic's (ports aside).
    pub fn protocol_matches(&self, traffic: Traffic) -> bool {
        match (protocol_number(&self.protocol), traffic) {
            (None, _) => true,
            (Some(6), Traffic::AllTcp | Traffic::Tcp(_)) | (Some(17), Traffic::Udp(_)) => true,
            (Some(n), Traffic::Protocol(p)) => n == p,
            _ => false,
        }
    }

    /// The entry's ports (every port for all protocols, or when none are given).
    pub fn ports(&self) -> (i32, i32) {
        match (protocol_number(&self.protocol), self.port_from, self.port_to) {
            (Some(6) | Some(17), Some(a), Some(b)) if a >= 0 && b >= 0 => (a, b),
            _ => (0, 65535),
        }
    }

    /// The entry's CIDR, IPv4 or IPv6.
    pub fn cidr(&self) -> Option<&str> {
        self.cidr.as_deref().or(self.ipv6_cidr.as_deref())
    }
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

/// CIDR parsing and containment, IPv4 and IPv6.
pub mod cidr {
    /// A CIDR as an inclusive range of addresses; IPv4 and IPv6 ranges never meet.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Range {
        pub v6: bool,
        pub first: u128,
        pub last: u128,
    }

    impl Range {
        /// Whether every address of `other` is in this range.
        pub fn contains(&self, other: &Range) -> bool {
            self.v6 == other.v6 && self.first <= other.first && other.last <= self.last
        }

        /// Whether the two ranges share an address.
        pub fn overlaps(&self, other: &Range) -> bool {
            self.v6 == other.v6 && self.first <= other.last && other.first <= self.last
        }
    }

    /// Parses `a.b.c.d/n` or an IPv6 `x::/n` into its range of addresses.
    pub fn range(cidr: &str) -> Option<Range> {
        let (addr, len) = cidr.trim().split_once('/')?;
        let len: u32 = len.parse().ok()?;
        let (v6, bits, base) = match addr.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(ip) => (false, 32, u128::from(u32::from(ip))),
            std::net::IpAddr::V6(ip) => (true, 128, u128::from(ip)),
        };
        if len > bits {
            return None;
        }
        let host_bits = bits - len;
        let host_mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = base & !host_mask;
        Some(Range {
            v6,
            first,
            last: first | host_mask,
        })
    }

    /// Whether `outer` contains every address of `inner` (same family).
    pub fn contains(outer: &str, inner: &str) -> bool {
        match (range(outer), range(inner)) {
            (Some(o), Some(i)) => o.contains(&i),
            _ => false,
        }
    }

    /// Whether the CIDR is the whole IPv4 internet.
    pub fn is_anywhere(cidr: &str) -> bool {
        range(cidr).is_some_and(|r| !r.v6 && r.first == 0 && r.last == u128::from(u32::MAX))
    }

    /// Whether the union of `cover` holds every address of `target`.
    pub fn covered(target: Range, cover: impl IntoIterator<Item = Range>) -> bool {
        let mut pieces: Vec<Range> = cover.into_iter().filter(|c| c.overlaps(&target)).collect();
        pieces.sort_by_key(|c| c.first);
        let mut next = target.first;
        for c in pieces {
            if c.first > next {
                return false;
            }
            if c.last >= target.last {
                return true;
            }
            next = next.max(c.last + 1);
        }
        false
    }
}
