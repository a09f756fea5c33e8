//! VPC topologies built in moto with `aws-sdk-ec2`, as SageMaker jobs meet them.

use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, IpPermission, IpRange, PortRange, PrefixListId, RuleAction,
    UserIdGroupPair, VpcEndpointType,
};

use super::stack;

pub const REGION: &str = "us-east-1";

/// A VPC like the ones SageMaker jobs run in: two private subnets on their own route table, a
/// public subnet with an internet gateway, a self-referencing security group.
pub struct Topology {
    pub region: String,
    pub ec2: aws_sdk_ec2::Client,
    pub vpc: String,
    /// The VPC's CIDR, `<prefix>.0.0/16`.
    pub cidr: String,
    pub private: Vec<String>,
    pub public: String,
    pub private_rtb: String,
    pub igw: String,
    pub sg: String,
}

pub async fn topology(cidr_prefix: &str, dns_hostnames: bool) -> Topology {
    topology_in(REGION, cidr_prefix, dns_hostnames).await
}

/// The same topology in another region. The jobs' execution role
/// ([`super::iam::PROCESSING_ROLE`]) is created with it, complete, so that jobs in it pass the
/// role pre-flight.
pub async fn topology_in(region: &str, cidr_prefix: &str, dns_hostnames: bool) -> Topology {
    super::iam::ensure_processing_role(region).await;
    let ec2 = stack().ec2_in(region).await;
    let vpc = ec2
        .create_vpc()
        .cidr_block(format!("{cidr_prefix}.0.0/16"))
        .send()
        .await
        .expect("create vpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(AttributeBooleanValue::builder().value(dns_hostnames).build())
        .send()
        .await
        .expect("dns hostnames");
    let subnet = |cidr: String, az: String| {
        let ec2 = ec2.clone();
        let vpc = vpc.clone();
        async move {
            let out = ec2
                .create_subnet()
                .vpc_id(vpc)
                .cidr_block(cidr)
                .availability_zone(az)
                .send()
                .await
                .expect("create subnet");
            out.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string()
        }
    };
    let a = subnet(format!("{cidr_prefix}.1.0/24"), format!("{region}a")).await;
    let b = subnet(format!("{cidr_prefix}.2.0/24"), format!("{region}b")).await;
    let public = subnet(format!("{cidr_prefix}.0.0/24"), format!("{region}a")).await;
    let igw = ec2.create_internet_gateway().send().await.expect("igw");
    let igw = igw
        .internet_gateway()
        .and_then(|g| g.internet_gateway_id())
        .expect("igw id")
        .to_string();
    ec2.attach_internet_gateway()
        .internet_gateway_id(&igw)
        .vpc_id(&vpc)
        .send()
        .await
        .expect("attach igw");
    let public_rtb = route_table(&ec2, &vpc, &[&public]).await;
    ec2.create_route()
        .route_table_id(&public_rtb)
        .destination_cidr_block("0.0.0.0/0")
        .gateway_id(&igw)
        .send()
        .await
        .expect("public default route");
    let private_rtb = route_table(&ec2, &vpc, &[&a, &b]).await;
    let sg = ec2
        .create_security_group()
        .group_name(format!("job-{}", super::unique_suffix()))
        .description("processing job")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("sg");
    let sg = sg.group_id().expect("sg id").to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&sg).build())
                .build(),
        )
        .send()
        .await
        .expect("self-referencing rule");
    Topology {
        region: region.to_string(),
        ec2,
        vpc,
        cidr: format!("{cidr_prefix}.0.0/16"),
        private: vec![a, b],
        public,
        private_rtb,
        igw,
        sg,
    }
}

pub async fn route_table(ec2: &aws_sdk_ec2::Client, vpc: &str, subnets: &[&str]) -> String {
    let rt = ec2.create_route_table().vpc_id(vpc).send().await.expect("route table");
    let id = rt
        .route_table()
        .and_then(|r| r.route_table_id())
        .expect("rtb id")
        .to_string();
    for s in subnets {
        ec2.associate_route_table()
            .route_table_id(&id)
            .subnet_id(*s)
            .send()
            .await
            .expect("associate");
    }
    id
}

/// A network ACL entry: rule number, egress, allow, CIDR, and TCP ports (`None`: all traffic).
pub type AclRule<'a> = (i32, bool, bool, &'a str, Option<(i32, i32)>);

/// A security-group permission: `protocol` (`tcp`, `udp`, `-1`, `50`), ports, and peers given
/// as CIDRs (`10.0.0.0/16`), group IDs (`sg-…`) or prefix list IDs (`pl-…`).
pub fn permission(protocol: &str, ports: Option<(i32, i32)>, peers: &[&str]) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(protocol);
    if let Some((from, to)) = ports {
        p = p.from_port(from).to_port(to);
    }
    for peer in peers {
        p = if peer.starts_with("sg-") {
            p.user_id_group_pairs(UserIdGroupPair::builder().group_id(*peer).build())
        } else if peer.starts_with("pl-") {
            p.prefix_list_ids(PrefixListId::builder().prefix_list_id(*peer).build())
        } else {
            p.ip_ranges(IpRange::builder().cidr_ip(*peer).build())
        };
    }
    p.build()
}

impl Topology {
    /// An interface endpoint for `service` (e.g. `sts`) in the private subnets, with private
    /// DNS and a security group admitting TCP 443 from the VPC, as one is set up for jobs.
    pub async fn interface_endpoint(&self, service: &str) -> String {
        let sg = self
            .security_group("endpoints", &[permission("tcp", Some((443, 443)), &[&self.cidr])], None)
            .await;
        self.interface_endpoint_with(service, true, &[&sg]).await
    }

    /// An interface endpoint for `service` in the private subnets, with private DNS as given
    /// and these security groups.
    pub async fn interface_endpoint_with(&self, service: &str, private_dns: bool, groups: &[&str]) -> String {
        let out = self
            .ec2
            .create_vpc_endpoint()
            .vpc_id(&self.vpc)
            .vpc_endpoint_type(VpcEndpointType::Interface)
            .service_name(format!("com.amazonaws.{}.{service}", self.region))
            .set_subnet_ids(Some(self.private.clone()))
            .set_security_group_ids(Some(groups.iter().map(|g| g.to_string()).collect()))
            .private_dns_enabled(private_dns)
            .send()
            .await
            .expect("interface endpoint");
        out.vpc_endpoint()
            .and_then(|e| e.vpc_endpoint_id())
            .expect("endpoint id")
            .to_string()
    }

    /// A security group in the VPC with these inbound rules, and these outbound rules instead
    /// of the default allow-all (`None` keeps it).
    pub async fn security_group(
        &self,
        name: &str,
        ingress: &[IpPermission],
        egress: Option<&[IpPermission]>,
    ) -> String {
        let sg = self
            .ec2
            .create_security_group()
            .group_name(format!("{name}-{}", super::unique_suffix()))
            .description(name)
            .vpc_id(&self.vpc)
            .send()
            .await
            .expect("sg");
        let sg = sg.group_id().expect("sg id").to_string();
        if !ingress.is_empty() {
            self.ec2
                .authorize_security_group_ingress()
                .group_id(&sg)
                .set_ip_permissions(Some(ingress.to_vec()))
                .send()
                .await
                .expect("ingress");
        }
        if let Some(egress) = egress {
            self.ec2
                .revoke_security_group_egress()
                .group_id(&sg)
                .ip_permissions(permission("-1", None, &["0.0.0.0/0"]))
                .send()
                .await
                .expect("revoke default egress");
            if !egress.is_empty() {
                self.ec2
                    .authorize_security_group_egress()
                    .group_id(&sg)
                    .set_ip_permissions(Some(egress.to_vec()))
                    .send()
                    .await
                    .expect("egress");
            }
        }
        sg
    }

    /// The ID of S3's AWS-managed prefix list in the topology's region.
    pub async fn s3_prefix_list(&self) -> String {
        let out = self
            .ec2
            .describe_managed_prefix_lists()
            .filters(
                Filter::builder()
                    .name("prefix-list-name")
                    .values(format!("com.amazonaws.{}.s3", self.region))
                    .build(),
            )
            .send()
            .await
            .expect("describe prefix lists");
        out.prefix_lists()
            .first()
            .and_then(|p| p.prefix_list_id())
            .expect("S3 prefix list")
            .to_string()
    }

    /// A customer-managed prefix list with these CIDRs.
    pub async fn prefix_list(&self, name: &str, cidrs: &[&str]) -> String {
        let mut req = self
            .ec2
            .create_managed_prefix_list()
            .prefix_list_name(format!("{name}-{}", super::unique_suffix()))
            .address_family("IPv4")
            .max_entries(20);
        for c in cidrs {
            req = req.entries(aws_sdk_ec2::types::AddPrefixListEntry::builder().cidr(*c).build());
        }
        let out = req.send().await.expect("prefix list");
        out.prefix_list()
            .and_then(|p| p.prefix_list_id())
            .expect("prefix list id")
            .to_string()
    }

    /// A network ACL with these entries `(rule, egress, allow, cidr, ports)` (TCP with ports,
    /// all traffic without), associated with `subnets` instead of their current ACL.
    pub async fn network_acl(&self, subnets: &[&str], entries: &[AclRule<'_>]) -> String {
        let acl = self
            .ec2
            .create_network_acl()
            .vpc_id(&self.vpc)
            .send()
            .await
            .expect("acl");
        let acl = acl
            .network_acl()
            .and_then(|a| a.network_acl_id())
            .expect("acl id")
            .to_string();
        for (n, egress, allow, cidr, ports) in entries {
            let mut req = self
                .ec2
                .create_network_acl_entry()
                .network_acl_id(&acl)
                .rule_number(*n)
                .egress(*egress)
                .rule_action(if *allow { RuleAction::Allow } else { RuleAction::Deny })
                .protocol(if ports.is_some() { "6" } else { "-1" })
                .cidr_block(*cidr);
            if let Some((from, to)) = ports {
                req = req.port_range(PortRange::builder().from(*from).to(*to).build());
            }
            req.send().await.expect("acl entry");
        }
        for subnet in subnets {
            let current = self
                .ec2
                .describe_network_acls()
                .filters(Filter::builder().name("association.subnet-id").values(*subnet).build())
                .send()
                .await
                .expect("describe acls");
            let association = current
                .network_acls()
                .iter()
                .flat_map(|a| a.associations())
                .find(|x| x.subnet_id() == Some(*subnet))
                .and_then(|x| x.network_acl_association_id())
                .expect("association")
                .to_string();
            self.ec2
                .replace_network_acl_association()
                .association_id(association)
                .network_acl_id(&acl)
                .send()
                .await
                .expect("replace acl association");
        }
        acl
    }

    /// A route of the private subnets' table for `destination` (a CIDR or a prefix list ID) to
    /// a target beyond the VPC, created for the kind asked: `tgw`, `pcx` (to `peer_vpc`),
    /// `eni`, `vgw` or `gwlbe`. Returns the target's ID.
    pub async fn route_beyond(&self, destination: &str, kind: &str, peer_vpc: Option<&str>) -> String {
        let ec2 = &self.ec2;
        let target = match kind {
            "tgw" => {
                let t = ec2.create_transit_gateway().send().await.expect("tgw");
                t.transit_gateway()
                    .and_then(|t| t.transit_gateway_id())
                    .expect("tgw id")
                    .to_string()
            }
            "pcx" => {
                let p = ec2
                    .create_vpc_peering_connection()
                    .vpc_id(&self.vpc)
                    .peer_vpc_id(peer_vpc.expect("peer vpc"))
                    .send()
                    .await
                    .expect("peering");
                p.vpc_peering_connection()
                    .and_then(|p| p.vpc_peering_connection_id())
                    .expect("pcx id")
                    .to_string()
            }
            "eni" => {
                let e = ec2
                    .create_network_interface()
                    .subnet_id(&self.public)
                    .send()
                    .await
                    .expect("eni");
                e.network_interface()
                    .and_then(|e| e.network_interface_id())
                    .expect("eni id")
                    .to_string()
            }
            "vgw" => {
                let g = ec2
                    .create_vpn_gateway()
                    .r#type(aws_sdk_ec2::types::GatewayType::Ipsec1)
                    .send()
                    .await
                    .expect("vgw");
                let id = g
                    .vpn_gateway()
                    .and_then(|g| g.vpn_gateway_id())
                    .expect("vgw id")
                    .to_string();
                ec2.attach_vpn_gateway()
                    .vpn_gateway_id(&id)
                    .vpc_id(&self.vpc)
                    .send()
                    .await
                    .expect("attach vgw");
                id
            }
            "gwlbe" => {
                let e = ec2
                    .create_vpc_endpoint()
                    .vpc_id(&self.vpc)
                    .vpc_endpoint_type(VpcEndpointType::GatewayLoadBalancer)
                    .service_name(format!("com.amazonaws.vpce.{}.vpce-svc-0firewall", self.region))
                    .subnet_ids(&self.public)
                    .send()
                    .await
                    .expect("gwlb endpoint");
                e.vpc_endpoint()
                    .and_then(|e| e.vpc_endpoint_id())
                    .expect("endpoint id")
                    .to_string()
            }
            other => panic!("unknown route target kind {other}"),
        };
        let mut req = ec2.create_route().route_table_id(&self.private_rtb);
        req = if destination.starts_with("pl-") {
            req.destination_prefix_list_id(destination)
        } else {
            req.destination_cidr_block(destination)
        };
        req = match kind {
            "tgw" => req.transit_gateway_id(&target),
            "pcx" => req.vpc_peering_connection_id(&target),
            "eni" => req.network_interface_id(&target),
            "vgw" => req.gateway_id(&target),
            _ => req.vpc_endpoint_id(&target),
        };
        req.send().await.expect("route beyond the VPC");
        target
    }

    /// An example manifest with its placeholder network IDs replaced by this topology's.
    pub fn example(&self, file: &str) -> String {
        std::fs::read_to_string(super::repo_root().join("examples").join(file))
            .expect("example")
            .replace("subnet-0a1b2c3d4e5f60001", &self.private[0])
            .replace("subnet-0a1b2c3d4e5f60002", &self.private[1])
            .replace("sg-0a1b2c3d4e5f60001", &self.sg)
    }

    pub async fn s3_gateway_endpoint(&self, policy: Option<&str>) -> String {
        let mut req = self
            .ec2
            .create_vpc_endpoint()
            .vpc_id(&self.vpc)
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .service_name(format!("com.amazonaws.{}.s3", self.region))
            .route_table_ids(&self.private_rtb);
        if let Some(p) = policy {
            req = req.policy_document(p);
        }
        let out = req.send().await.expect("s3 endpoint");
        out.vpc_endpoint()
            .and_then(|e| e.vpc_endpoint_id())
            .expect("endpoint id")
            .to_string()
    }

    pub async fn nat_gateway_route(&self) {
        let eip = self
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await
            .expect("eip");
        let nat = self
            .ec2
            .create_nat_gateway()
            .subnet_id(&self.public)
            .allocation_id(eip.allocation_id().expect("allocation id"))
            .send()
            .await
            .expect("nat");
        let nat = nat
            .nat_gateway()
            .and_then(|n| n.nat_gateway_id())
            .expect("nat id")
            .to_string();
        self.ec2
            .create_route()
            .route_table_id(&self.private_rtb)
            .destination_cidr_block("0.0.0.0/0")
            .nat_gateway_id(nat)
            .send()
            .await
            .expect("nat route");
    }

    pub async fn igw_route(&self) {
        self.ec2
            .create_route()
            .route_table_id(&self.private_rtb)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&self.igw)
            .send()
            .await
            .expect("igw route");
    }

    pub fn manifest(&self, name: &str, instances: u32, extra_spec: &str) -> String {
        job_manifest(name, instances, &self.private, &[&self.sg], extra_spec)
    }
}

/// A ProcessingJob manifest in namespace `ml` using the given network.
pub fn job_manifest(name: &str, instances: u32, subnets: &[String], groups: &[&str], extra_spec: &str) -> String {
    job_manifest_in("ml", name, instances, subnets, groups, extra_spec)
}

/// A ProcessingJob manifest in namespace `ns` using the given network.
/// One job per name in `ns`, on the topology's private subnets and group, each with the SageMaker
/// job name `<prefix>-<name>` (an events rule of the test's own routes `prefix…` to its queue).
pub fn prefixed_job_manifests(ns: &str, t: &Topology, prefix: &str, names: &[&str]) -> String {
    names
        .iter()
        .map(|name| {
            let spec = format!("  processingJobName: {prefix}-{name}\n");
            job_manifest_in(ns, name, 1, &t.private, &[&t.sg], &spec)
        })
        .collect()
}

pub fn job_manifest_in(
    ns: &str,
    name: &str,
    instances: u32,
    subnets: &[String],
    groups: &[&str],
    extra_spec: &str,
) -> String {
    format!(
        r#"---
apiVersion: sagemaker.processing.dev/v1alpha1
kind: ProcessingJob
metadata:
  name: {name}
  namespace: {ns}
spec:
  region: {REGION}
  roleARN: arn:aws:iam::123456789012:role/SageMakerProcessingRole
  appSpecification:
    imageURI: 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3
  processingInputs:
    - inputName: raw
      s3Input: {{s3URI: "s3://ml-input/raw/", localPath: /opt/ml/processing/input, s3DataType: S3Prefix}}
  processingOutputConfig:
    outputs:
      - outputName: features
        s3Output: {{s3URI: "s3://ml-output/features/", localPath: /opt/ml/processing/output, s3UploadMode: EndOfJob}}
  processingResources:
    clusterConfig: {{instanceCount: {instances}, instanceType: ml.m5.xlarge, volumeSizeInGB: 30}}
  networkConfig:
    vpcConfig:
      subnets: [{}]
      securityGroupIDs: [{}]
{extra_spec}"#,
        subnets.join(", "),
        groups.join(", ")
    )
}

/// The CRD installed, a healthy VPC (private subnets behind an S3 gateway endpoint, a
/// self-referencing group) and a fresh namespace: what most end-to-end tests start from. The
/// namespace is deleted when dropped: declare the controller watching it before it.
pub async fn healthy_setup(cidr_prefix: &str, ns_prefix: &str) -> (Topology, super::TestNamespace) {
    let s = stack();
    s.install_crd();
    let t = topology(cidr_prefix, true).await;
    t.s3_gateway_endpoint(None).await;
    let ns = s.namespace(ns_prefix);
    (t, ns)
}
