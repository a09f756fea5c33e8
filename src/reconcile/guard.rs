//! The tenant guard: a namespace may limit the IAM roles, subnets and security groups its
//! ProcessingJobs use, so a team that can create ProcessingJobs cannot make the controller pass
//! another team's role or join another team's network.

use std::collections::BTreeMap;

use crate::api::ProcessingJobSpec;
use crate::wildcard::wildcard_match;

pub const ALLOWED_ROLE_ARNS: &str = "sagemaker.processing.dev/allowed-role-arns";
pub const ALLOWED_SUBNETS: &str = "sagemaker.processing.dev/allowed-subnets";
pub const ALLOWED_SECURITY_GROUPS: &str = "sagemaker.processing.dev/allowed-security-groups";

fn patterns(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn allowed(value: &str, candidate: &str) -> bool {
    patterns(value).iter().any(|p| wildcard_match(p, candidate, false))
}

/// Why the namespace refuses the job, if it does. Annotations that are absent allow everything.
pub fn refusal(namespace: &str, annotations: &BTreeMap<String, String>, spec: &ProcessingJobSpec) -> Option<String> {
    let mut problems = Vec::new();
    if let Some(v) = annotations.get(ALLOWED_ROLE_ARNS) {
        if !allowed(v, &spec.role_arn) {
            problems.push(format!("role {} is not in {ALLOWED_ROLE_ARNS} ({v})", spec.role_arn));
        }
    }
    if let Some(vpc) = spec.vpc_config() {
        if let Some(v) = annotations.get(ALLOWED_SUBNETS) {
            for s in vpc.subnets.iter().filter(|s| !allowed(v, s)) {
                problems.push(format!("subnet {s} is not in {ALLOWED_SUBNETS} ({v})"));
            }
        }
        if let Some(v) = annotations.get(ALLOWED_SECURITY_GROUPS) {
            for g in vpc.security_group_ids.iter().filter(|g| !allowed(v, g)) {
                problems.push(format!("security group {g} is not in {ALLOWED_SECURITY_GROUPS} ({v})"));
            }
        }
    }
    (!problems.is_empty()).then(|| format!("namespace {namespace} does not allow this job: {}", problems.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NetworkConfig, VpcConfig};

    fn spec(role: &str, subnets: &[&str], groups: &[&str]) -> ProcessingJobSpec {
        let mut s: ProcessingJobSpec = serde_json::from_value(serde_json::json!({
            "roleARN": role,
            "appSpecification": {"imageURI": "img"},
            "processingResources": {"clusterConfig": {"instanceCount": 1, "instanceType": "ml.m5.xlarge", "volumeSizeInGB": 1}},
        }))
        .expect("spec");
        s.network_config = Some(NetworkConfig {
            vpc_config: Some(VpcConfig {
                subnets: subnets.iter().map(|x| x.to_string()).collect(),
                security_group_ids: groups.iter().map(|x| x.to_string()).collect(),
            }),
            ..Default::default()
        });
        s
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_annotations_allow_everything() {
        assert_eq!(
            refusal(
                "a",
                &BTreeMap::new(),
                &spec("arn:aws:iam::1:role/x", &["subnet-1"], &["sg-1"])
            ),
            None
        );
    }

    #[test]
    fn roles_subnets_and_groups_are_checked_with_wildcards() {
        let a = ann(&[
            (
                ALLOWED_ROLE_ARNS,
                "arn:aws:iam::111111111111:role/team-a-*, arn:aws:iam::111111111111:role/shared",
            ),
            (ALLOWED_SUBNETS, "subnet-aaa*"),
            (ALLOWED_SECURITY_GROUPS, "sg-aaa1,sg-aaa2"),
        ]);
        let ok = spec(
            "arn:aws:iam::111111111111:role/team-a-etl",
            &["subnet-aaa1", "subnet-aaa2"],
            &["sg-aaa2"],
        );
        assert_eq!(refusal("team-a", &a, &ok), None);
        let role = spec(
            "arn:aws:iam::111111111111:role/team-b-etl",
            &["subnet-aaa1"],
            &["sg-aaa1"],
        );
        assert!(
            refusal("team-a", &a, &role).is_some_and(|m| m.contains("role arn:aws:iam::111111111111:role/team-b-etl"))
        );
        let subnet = spec(
            "arn:aws:iam::111111111111:role/shared",
            &["subnet-aaa1", "subnet-bbb1"],
            &["sg-aaa1"],
        );
        assert!(refusal("team-a", &a, &subnet)
            .is_some_and(|m| m.contains("subnet subnet-bbb1") && !m.contains("subnet-aaa1 ")));
        let group = spec("arn:aws:iam::111111111111:role/shared", &["subnet-aaa1"], &["sg-bbb"]);
        assert!(refusal("team-a", &a, &group).is_some_and(|m| m.contains("security group sg-bbb")));
    }
}
