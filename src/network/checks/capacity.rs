//! N3: the subnets together have two free private IPs per instance.

use super::{Code, Findings, Scope};

/// N3: an Error when the subnets together are short of addresses, else a Warning for each
/// subnet that alone could not hold the job.
pub(super) fn free_ips(scope: &Scope<'_>, f: &mut Findings) {
    let subnets = &scope.subnets;
    let instances = scope.instances;
    let needed = 2 * instances;
    let total: i64 = subnets.iter().map(|s| s.available_ips).sum();
    if !subnets.is_empty() && total < needed {
        let detail: Vec<String> = subnets
            .iter()
            .map(|s| format!("{} has {}", s.id, s.available_ips))
            .collect();
        f.add(
            Code::InsufficientSubnetIps,
            subnets.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(","),
            format!(
                "{instances} instance(s) need {needed} free private IPs, the subnets have {total} in all ({})",
                detail.join(", ")
            ),
        );
    } else {
        for s in subnets.iter().filter(|s| s.available_ips < needed) {
            f.add(
                Code::SubnetLowOnIps,
                &s.id,
                format!(
                    "subnet {} has {} free private IPs, fewer than the {needed} the job's {instances} instance(s) need; the job depends on the other subnets",
                    s.id, s.available_ips
                ),
            );
        }
    }
}
