//! Failure diagnosis and log tails, pure: which documented pattern a failed job's
//! `failureReason` matches, which finding of a fresh validation likely explains it, and the
//! bounded tail of its logs. `docs/troubleshooting.md` documents the same table.

use crate::api::{Finding, NetworkStatus, Severity};
use crate::aws::logs::StreamTail;

/// A family of failures the controller knows how to look into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// Stable name, in `status.diagnosis.pattern`.
    pub name: &'static str,
    /// Substrings of SageMaker's failureReason (case-insensitive), any of which matches.
    pub needles: &'static [&'static str],
    /// Only for jobs in a VPC.
    pub vpc_only: bool,
    /// The finding codes that explain such a failure, most likely first.
    pub causes: &'static [&'static str],
}

/// The documented patterns, in the order they are tried.
pub const PATTERNS: &[Pattern] = &[
    Pattern {
        name: "S3Unreachable",
        needles: &[
            "route table has a route to an s3 vpc endpoint or a nat device",
            "unable to execute request to s3",
            "unable to execute http request",
            "could not connect to the endpoint url",
        ],
        vpc_only: false,
        causes: &[
            "NoS3Route",
            "NoS3Egress",
            "NetworkAclBlocksS3",
            "S3EndpointPolicyDenies",
            "VpcDnsDisabled",
            "RoleS3AccessDenied",
            "RoleS3AccessNotGranted",
        ],
    },
    Pattern {
        name: "AccessDenied",
        needles: &[
            "accessdenied",
            "access denied",
            "not authorized to perform",
            "forbidden",
        ],
        vpc_only: false,
        causes: &[
            "RoleNotFound",
            "RoleNotAssumableBySageMaker",
            "RoleS3AccessDenied",
            "S3EndpointPolicyDenies",
            "RoleS3AccessNotGranted",
            "RoleKmsAccessDenied",
            "RoleKmsAccessNotGranted",
            "RoleEcrPullDenied",
            "RoleEcrPullNotGranted",
        ],
    },
    Pattern {
        name: "VpcInternalError",
        needles: &["internalservererror", "we encountered an internal error"],
        vpc_only: true,
        causes: &[
            "RoleMissingVpcPermissions",
            "RoleNotAssumableBySageMaker",
            "RoleNotFound",
            "SubnetNotFound",
            "SecurityGroupNotFound",
            "InsufficientSubnetIps",
        ],
    },
    Pattern {
        name: "CapacityOrLimit",
        needles: &[
            "resourcelimitexceeded",
            "insufficient capacity",
            "insufficientfreeaddressesinsubnet",
            "not have enough free ip addresses",
            "capacityerror",
        ],
        vpc_only: false,
        causes: &["InsufficientSubnetIps", "SubnetLowOnIps"],
    },
];

/// The pattern a failure matches, if any. Failures that match none get no guess.
pub fn pattern(failure_reason: &str, in_vpc: bool) -> Option<&'static Pattern> {
    let reason = failure_reason.to_lowercase();
    PATTERNS
        .iter()
        .filter(|p| in_vpc || !p.vpc_only)
        .find(|p| p.needles.iter().any(|n| reason.contains(n)))
}

/// The finding that likely explains the failure: the first of the pattern's causes found (an
/// Error before a Warning), and whether it is new since the job was validated (`before`).
pub fn likely_cause(pattern: &Pattern, findings: &[Finding], before: Option<&NetworkStatus>) -> String {
    let found = [Severity::Error, Severity::Warning].iter().find_map(|severity| {
        pattern
            .causes
            .iter()
            .find_map(|code| findings.iter().find(|f| f.code == *code && f.severity == *severity))
    });
    let Some(f) = found else {
        return format!(
            "a {} failure, but a fresh validation of the network and the execution role finds nothing that explains it: check what the validator cannot see (SCPs, bucket and key policies, firewalls)",
            pattern.name
        );
    };
    let known_before = before.is_some_and(|n| n.findings.iter().any(|b| b.code == f.code && b.resource == f.resource));
    let since = match before.and_then(|n| n.validated_at.as_deref()) {
        Some(at) if !known_before => format!(" (not found when the job was validated at {at}: it changed since)"),
        _ => String::new(),
    };
    format!("{} on {}: {}{since}", f.code, f.resource, f.message)
}

/// The most a status keeps of a job's logs.
pub const MAX_TAIL_BYTES: usize = 2048;

/// The lines read per log stream.
pub const TAIL_LINES: i32 = 20;

/// The job's last log lines as one text of at most [`MAX_TAIL_BYTES`], keeping the end (the
/// lines nearest the failure). With several streams each line says its stream's instance.
pub fn tail_text(tails: &[StreamTail]) -> Option<String> {
    let several = tails.len() > 1;
    let lines: Vec<String> = tails
        .iter()
        .flat_map(|t| {
            let instance = t.stream.rsplit('/').next().unwrap_or(&t.stream).to_string();
            t.lines.iter().map(move |l| {
                if several {
                    format!("[{instance}] {l}")
                } else {
                    l.clone()
                }
            })
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(keep_end(&lines.join("\n"), MAX_TAIL_BYTES))
}

/// The last `max` bytes of `text` (on a character boundary), marked when cut.
pub fn keep_end(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let marker = "…";
    let mut start = text.len() - (max - marker.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{marker}{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(code: &str, severity: Severity, resource: &str) -> Finding {
        Finding {
            code: code.into(),
            severity,
            resource: resource.into(),
            message: format!("{code} message"),
            remediation: String::new(),
        }
    }

    #[test]
    fn sagemakers_messages_match_their_pattern_and_others_none() {
        let s3 = "ClientError: Failed to download data. Please ensure that the subnet's route table has a route to an S3 VPC endpoint or a NAT device, and both the security groups and the subnet's network ACL allow outbound traffic to S3.";
        assert_eq!(pattern(s3, true).map(|p| p.name), Some("S3Unreachable"));
        assert_eq!(
            pattern("ClientError: Unable to execute request to S3", true).map(|p| p.name),
            Some("S3Unreachable")
        );
        assert_eq!(
            pattern(
                "ClientError: Access Denied (Service: Amazon S3; Status Code: 403)",
                false
            )
            .map(|p| p.name),
            Some("AccessDenied")
        );
        let internal = "InternalServerError: We encountered an internal error.  Please try again.";
        assert_eq!(pattern(internal, true).map(|p| p.name), Some("VpcInternalError"));
        assert_eq!(
            pattern(internal, false),
            None,
            "outside a VPC an internal error is not the network's"
        );
        assert_eq!(
            pattern("ResourceLimitExceeded: The account-level service limit", true).map(|p| p.name),
            Some("CapacityOrLimit")
        );
        assert_eq!(
            pattern("AlgorithmError: ZeroDivisionError: division by zero", true),
            None
        );
    }

    #[test]
    fn the_likely_cause_is_the_patterns_first_error_and_says_it_is_new() {
        let p = pattern("Unable to execute request to S3", true).expect("pattern");
        let findings = vec![
            finding("FlowLogsDisabled", Severity::Info, "vpc-1"),
            finding("RoleS3AccessNotGranted", Severity::Warning, "arn:role"),
            finding("NoS3Route", Severity::Error, "subnet-1"),
        ];
        let before = NetworkStatus {
            validated_at: Some("2026-01-01T00:00:00Z".into()),
            findings: vec![finding("RoleS3AccessNotGranted", Severity::Warning, "arn:role")],
            ..Default::default()
        };
        let cause = likely_cause(p, &findings, Some(&before));
        assert_eq!(
            cause,
            "NoS3Route on subnet-1: NoS3Route message (not found when the job was validated at 2026-01-01T00:00:00Z: it changed since)"
        );
        let cause = likely_cause(p, &findings[..2], Some(&before));
        assert!(cause.starts_with("RoleS3AccessNotGranted on arn:role"), "{cause}");
        assert!(!cause.contains("changed since"), "{cause}");
        let cause = likely_cause(p, &findings[..1], None);
        assert!(cause.contains("finds nothing that explains it"), "{cause}");
    }

    #[test]
    fn tails_are_bounded_and_keep_the_end() {
        let line = "x".repeat(300);
        let tails = vec![StreamTail {
            stream: "job/algo-1-1".into(),
            lines: (0..20).map(|i| format!("{i} {line}")).collect(),
        }];
        let text = tail_text(&tails).expect("tail");
        assert!(text.len() <= MAX_TAIL_BYTES, "{}", text.len());
        assert!(text.starts_with('…'));
        assert!(text.ends_with(&format!("19 {line}")));
        let two = vec![
            StreamTail {
                stream: "job/algo-1-1".into(),
                lines: vec!["a".into()],
            },
            StreamTail {
                stream: "job/algo-2-1".into(),
                lines: vec!["b".into()],
            },
        ];
        assert_eq!(tail_text(&two).as_deref(), Some("[algo-1-1] a\n[algo-2-1] b"));
        assert_eq!(tail_text(&[]), None);
        assert_eq!(keep_end("ééé", 5), "…é");
        assert_eq!(keep_end("ééé", 4), "…");
    }
}
