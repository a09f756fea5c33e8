//! N9: the network ACLs on the job's S3 path let its traffic out and the replies back in.
//!
//! ACLs are stateless and evaluated exactly as AWS does: entries of one direction in rule
//! order, the first entry whose CIDR (IPv4 or IPv6), protocol and ports match a packet decides
//! it, and what no entry allows is dropped. The flows are TCP 443 to S3's address ranges (from
//! S3's prefix list) on the gateway-endpoint, NAT and beyond-the-VPC paths, or to the
//! endpoint's subnets on the interface-endpoint path, and the replies on the ephemeral ports of
//! the job's hosts (32768–61000, Amazon Linux) or of the NAT gateway (1024–65535).

use crate::network::snapshot::cidr::{self, Range};
use crate::network::snapshot::{NetworkAcl, Subnet, Traffic};

use super::routes::S3Path;
use super::{Code, Findings, Scope};

/// The ephemeral ports of the job's hosts: the replies of S3 and endpoints arrive there.
pub(super) const HOST_EPHEMERAL: (i32, i32) = (32768, 61000);
/// The ports a NAT gateway translates connections to.
const NAT_EPHEMERAL: (i32, i32) = (1024, 65535);

/// Peers of a flow: ranges with the label a message shows.
type Peers = Vec<(Range, String)>;

/// One flow through one ACL: direction, peers, ports, and what it is for.
struct Flow<'p> {
    egress: bool,
    peers: &'p Peers,
    ports: (i32, i32),
    what: &'static str,
}

/// A rectangle of traffic not decided yet: peer addresses × local or remote ports.
#[derive(Clone, Copy)]
struct Open {
    peer: Range,
    ports: (i32, i32),
}

/// What is left of `open` once `addresses × ports` is taken out.
fn subtract(open: Open, addresses: Range, ports: (i32, i32)) -> Vec<Open> {
    let (a, b) = (open.peer.first, open.peer.last);
    let (c, d) = (addresses.first.max(a), addresses.last.min(b));
    let (p, q) = open.ports;
    let (r, s) = (ports.0.max(p), ports.1.min(q));
    let mut out = Vec::new();
    let with = |first, last| Range {
        first,
        last,
        ..open.peer
    };
    if a < c {
        out.push(Open {
            peer: with(a, c - 1),
            ports: open.ports,
        });
    }
    if d < b {
        out.push(Open {
            peer: with(d + 1, b),
            ports: open.ports,
        });
    }
    if p < r {
        out.push(Open {
            peer: with(c, d),
            ports: (p, r - 1),
        });
    }
    if s < q {
        out.push(Open {
            peer: with(c, d),
            ports: (s + 1, q),
        });
    }
    out
}

fn port_text((from, to): (i32, i32)) -> String {
    if from == to {
        from.to_string()
    } else {
        format!("{from}-{to}")
    }
}

/// Why the ACL drops part of the flow, if it does: the deny entry that comes first, or the
/// part no entry allows.
fn blocks(acl: &NetworkAcl, flow: &Flow<'_>) -> Option<String> {
    let mut entries: Vec<_> = acl
        .entries
        .iter()
        .filter(|e| e.egress == flow.egress && e.protocol_matches(Traffic::Tcp(443)))
        .collect();
    entries.sort_by_key(|e| e.rule_number);
    let (direction, to_from) = if flow.egress {
        ("outbound", "to")
    } else {
        ("inbound", "from")
    };
    for (peer, label) in flow.peers {
        let mut open = vec![Open {
            peer: *peer,
            ports: flow.ports,
        }];
        for e in &entries {
            let Some(addresses) = e.cidr().and_then(cidr::range) else {
                continue;
            };
            let ports = e.ports();
            let hit = |o: &Open| o.peer.overlaps(&addresses) && ports.0 <= o.ports.1 && o.ports.0 <= ports.1;
            if !open.iter().any(hit) {
                continue;
            }
            if !e.allow {
                return Some(format!(
                    "network ACL {} rule {} denies {direction} TCP {} {to_from} {} ({}), {}",
                    acl.id,
                    e.rule_number,
                    port_text(ports),
                    e.cidr().unwrap_or_default(),
                    label,
                    flow.what
                ));
            }
            open = open
                .into_iter()
                .flat_map(|o| {
                    if hit(&o) {
                        subtract(o, addresses, ports)
                    } else {
                        vec![o]
                    }
                })
                .collect();
            if open.is_empty() {
                break;
            }
        }
        if !open.is_empty() {
            return Some(format!(
                "network ACL {} has no rule allowing {direction} TCP {} {to_from} {label}, {}",
                acl.id,
                port_text(flow.ports),
                flow.what
            ));
        }
    }
    None
}

/// The job's own flows to `peers`: its requests, and the replies to its ephemeral ports.
fn job_flows(peers: &Peers) -> Vec<Flow<'_>> {
    vec![
        Flow {
            egress: true,
            peers,
            ports: (443, 443),
            what: "the job's requests",
        },
        Flow {
            egress: false,
            peers,
            ports: HOST_EPHEMERAL,
            what: "the replies to the job's ephemeral ports (NACLs are stateless)",
        },
    ]
}

fn peers_of(cidrs: impl IntoIterator<Item = (String, String)>) -> Peers {
    cidrs
        .into_iter()
        .filter_map(|(c, label)| cidr::range(&c).map(|r| (r, label)))
        .collect()
}

/// S3's address ranges as flows see them; all of IPv4 when S3's prefix list was not read.
fn s3_peers(scope: &Scope<'_>) -> Peers {
    match scope.snap.s3_prefix_list() {
        Some(pl) => peers_of(pl.cidrs.iter().map(|c| (c.clone(), format!("S3, {c} in {}", pl.id)))),
        None => peers_of([("0.0.0.0/0".to_string(), "S3, anywhere".to_string())]),
    }
}

/// N9: one finding per subnet whose path to S3 an ACL blocks (the job's subnet, the NAT
/// gateway's subnet, or the S3 interface endpoint's subnets).
pub(super) fn network_acls(scope: &Scope<'_>, paths: &[(&Subnet, S3Path<'_>)], f: &mut Findings) {
    let vpc = scope.vpc;
    let s3 = s3_peers(scope);
    for (s, path) in paths {
        let own = peers_of([(s.cidr.clone(), format!("subnet {}", s.id))]);
        let endpoint_peers: Peers;
        // (the subnet whose ACL is evaluated, its flows)
        let mut checks: Vec<(String, Vec<Flow<'_>>)> = Vec::new();
        match path {
            S3Path::GatewayEndpoint(_) | S3Path::Beyond(_) => checks.push((s.id.clone(), job_flows(&s3))),
            S3Path::Nat(nat) => {
                checks.push((s.id.clone(), job_flows(&s3)));
                if nat.subnet_id != s.id {
                    checks.push((
                        nat.subnet_id.clone(),
                        vec![
                            Flow {
                                egress: false,
                                peers: &own,
                                ports: (443, 443),
                                what: "the job's requests forwarded by the NAT gateway",
                            },
                            Flow {
                                egress: true,
                                peers: &s3,
                                ports: (443, 443),
                                what: "the NAT gateway's requests to S3",
                            },
                            Flow {
                                egress: false,
                                peers: &s3,
                                ports: NAT_EPHEMERAL,
                                what: "S3's replies to the NAT gateway",
                            },
                            Flow {
                                egress: true,
                                peers: &own,
                                ports: HOST_EPHEMERAL,
                                what: "the replies forwarded to the job",
                            },
                        ],
                    ));
                }
            }
            S3Path::InterfaceEndpoint(e) => {
                let others: Vec<&Subnet> = vpc
                    .endpoint_subnets
                    .iter()
                    .filter(|es| e.subnet_ids.contains(&es.id) && es.id != s.id)
                    .collect();
                endpoint_peers = peers_of(
                    others
                        .iter()
                        .map(|es| (es.cidr.clone(), format!("endpoint {}'s subnet {}", e.id, es.id))),
                );
                if !endpoint_peers.is_empty() {
                    checks.push((s.id.clone(), job_flows(&endpoint_peers)));
                }
                for es in others {
                    checks.push((
                        es.id.clone(),
                        vec![
                            Flow {
                                egress: false,
                                peers: &own,
                                ports: (443, 443),
                                what: "the job's requests to the endpoint",
                            },
                            Flow {
                                egress: true,
                                peers: &own,
                                ports: HOST_EPHEMERAL,
                                what: "the endpoint's replies",
                            },
                        ],
                    ));
                }
            }
            S3Path::None(_) => {}
        }
        let problem = checks.iter().find_map(|(subnet, flows)| {
            let acl = vpc.network_acl_for(subnet)?;
            flows.iter().find_map(|flow| blocks(acl, flow)).map(|p| (subnet, p))
        });
        if let Some((subnet, problem)) = problem {
            let whose = if *subnet == s.id {
                String::new()
            } else {
                format!(" (the ACL of subnet {subnet} on its S3 path)")
            };
            f.add(
                Code::NetworkAclBlocksS3,
                &s.id,
                format!("subnet {}{whose}: {problem}", s.id),
            );
        }
    }
}
