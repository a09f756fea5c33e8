//! N9: the subnets' network ACLs let the job's S3 traffic out and its replies back in.

use crate::network::snapshot::{cidr, NetworkAcl};

use super::{Code, Findings, Scope};

/// N9: one finding per subnet whose network ACL blocks the job's S3 traffic.
pub(super) fn network_acls(scope: &Scope<'_>, f: &mut Findings) {
    for s in &scope.subnets {
        if let Some(problem) = scope.vpc.network_acl_for(&s.id).and_then(acl_problem) {
            f.add(Code::NetworkAclBlocksS3, &s.id, format!("subnet {}: {problem}", s.id));
        }
    }
}

/// Why a network ACL blocks the job's S3 traffic, if it does: outbound TCP 443 to anywhere, and
/// the return traffic on ephemeral ports (1024–65535) inbound.
fn acl_problem(acl: &NetworkAcl) -> Option<String> {
    let verdict = |egress: bool, port: i32| -> Option<(bool, i32)> {
        let mut entries: Vec<_> = acl.entries.iter().filter(|e| e.egress == egress).collect();
        entries.sort_by_key(|e| e.rule_number);
        entries
            .into_iter()
            .find(|e| {
                let proto = e.protocol == "-1" || e.protocol == "6" || e.protocol.eq_ignore_ascii_case("tcp");
                let ports = e.protocol == "-1"
                    || match (e.port_from, e.port_to) {
                        (Some(a), Some(b)) => a <= port && port <= b,
                        _ => true,
                    };
                let dest = e.cidr.as_deref().is_some_and(cidr::is_anywhere);
                proto && ports && dest
            })
            .map(|e| (e.allow, e.rule_number))
    };
    match verdict(true, 443) {
        Some((true, _)) => {}
        Some((false, n)) => return Some(format!("network ACL {} denies outbound TCP 443 (rule {n})", acl.id)),
        None => return Some(format!("network ACL {} has no rule allowing outbound TCP 443", acl.id)),
    }
    for port in [1024, 32768, 49152, 65535] {
        match verdict(false, port) {
            Some((true, _)) => {}
            Some((false, n)) => {
                return Some(format!(
                    "network ACL {} denies inbound return traffic on ephemeral port {port} (rule {n}); NACLs are stateless, so S3's replies are dropped",
                    acl.id
                ))
            }
            None => {
                return Some(format!(
                    "network ACL {} has no rule allowing inbound return traffic on ephemeral port {port}; NACLs are stateless, so S3's replies are dropped",
                    acl.id
                ))
            }
        }
    }
    None
}
