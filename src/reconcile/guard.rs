//! The tenant guard: a namespace's annotations limit what its ProcessingJobs may use — IAM roles,
//! subnets and security groups, S3 buckets, KMS keys, instance types and counts, validation
//! modes — so a team that can create ProcessingJobs cannot make the controller pass another
//! team's role, join another team's network or write to another team's bucket.
//!
//! The chart's ValidatingAdmissionPolicy (`templates/admission-policy.yaml`) enforces the same
//! rules with the same messages at `kubectl apply`; `tests/tenant_isolation.rs` runs one table
//! of cases (`tests/tenant/cases.yaml`) through both. The grammar is documented once, in
//! `docs/multi-tenancy.md`: a comma-separated list of patterns (trimmed, empty items ignored),
//! `*` any run of characters, `?` one character, case-sensitive. An absent annotation allows
//! everything; a present but empty one allows nothing.

use std::collections::BTreeMap;

use crate::api::{ProcessingJobSpec, ValidationMode};
use crate::network::checks::parse_s3_uri;
use crate::wildcard::wildcard_match;

pub const ALLOWED_ROLE_ARNS: &str = "sagemaker.processing.dev/allowed-role-arns";
pub const ALLOWED_SUBNETS: &str = "sagemaker.processing.dev/allowed-subnets";
pub const ALLOWED_SECURITY_GROUPS: &str = "sagemaker.processing.dev/allowed-security-groups";
pub const ALLOWED_S3_BUCKETS: &str = "sagemaker.processing.dev/allowed-s3-buckets";
pub const ALLOWED_KMS_KEYS: &str = "sagemaker.processing.dev/allowed-kms-keys";
pub const ALLOWED_INSTANCE_TYPES: &str = "sagemaker.processing.dev/allowed-instance-types";
pub const MAX_INSTANCE_COUNT: &str = "sagemaker.processing.dev/max-instance-count";
pub const ALLOWED_VALIDATION_MODES: &str = "sagemaker.processing.dev/allowed-validation-modes";

/// Every annotation the guard reads: a change of any of them re-evaluates the namespace's jobs.
pub const ANNOTATIONS: [&str; 8] = [
    ALLOWED_ROLE_ARNS,
    ALLOWED_SUBNETS,
    ALLOWED_SECURITY_GROUPS,
    ALLOWED_S3_BUCKETS,
    ALLOWED_KMS_KEYS,
    ALLOWED_INSTANCE_TYPES,
    MAX_INSTANCE_COUNT,
    ALLOWED_VALIDATION_MODES,
];

/// The guard's annotations of a namespace, and nothing else: what the namespace watch compares.
pub fn limits(annotations: &BTreeMap<String, String>) -> BTreeMap<&'static str, &str> {
    ANNOTATIONS
        .iter()
        .filter_map(|a| annotations.get(*a).map(|v| (*a, v.as_str())))
        .collect()
}

/// Why the namespace refuses the job, if it does. Annotations that are absent allow everything.
pub fn refusal(namespace: &str, annotations: &BTreeMap<String, String>, spec: &ProcessingJobSpec) -> Option<String> {
    let mut problems = Vec::new();
    let ns = Limits(annotations);
    role(&ns, spec, &mut problems);
    network(&ns, spec, &mut problems);
    buckets(&ns, spec, &mut problems);
    kms_keys(&ns, spec, &mut problems);
    instances(&ns, spec, &mut problems);
    validation_mode(&ns, spec, &mut problems);
    (!problems.is_empty()).then(|| format!("namespace {namespace} does not allow this job: {}", problems.join("; ")))
}

/// A namespace's annotations, read as limits.
struct Limits<'a>(&'a BTreeMap<String, String>);

impl Limits<'_> {
    /// The annotation's value, when the namespace sets it.
    fn get(&self, annotation: &str) -> Option<&str> {
        self.0.get(annotation).map(String::as_str)
    }

    /// `Some(problem)` when the annotation is set and no pattern of it matches `value`.
    fn check(&self, annotation: &str, field: &str, value: &str) -> Option<String> {
        let list = self.get(annotation)?;
        (!allowed(list, value)).then(|| format!("{field} {value} is not in {annotation} ({list})"))
    }
}

fn patterns(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|p| !p.is_empty())
}

fn allowed(list: &str, candidate: &str) -> bool {
    patterns(list).any(|p| wildcard_match(p, candidate, false))
}

fn role(ns: &Limits<'_>, spec: &ProcessingJobSpec, problems: &mut Vec<String>) {
    problems.extend(ns.check(ALLOWED_ROLE_ARNS, "spec.roleARN", &spec.role_arn));
}

/// Subnets and security groups. A namespace that limits either has said where its jobs run: a
/// job without `vpcConfig` would run outside every VPC, so it is refused.
fn network(ns: &Limits<'_>, spec: &ProcessingJobSpec, problems: &mut Vec<String>) {
    let Some(vpc) = spec.vpc_config() else {
        let restriction = [ALLOWED_SUBNETS, ALLOWED_SECURITY_GROUPS]
            .into_iter()
            .find_map(|a| ns.get(a).map(|v| (a, v)));
        if let Some((annotation, list)) = restriction {
            problems.push(format!(
                "spec.networkConfig.vpcConfig is not set, and the namespace restricts where its jobs run: {annotation} ({list})"
            ));
        }
        return;
    };
    for s in &vpc.subnets {
        problems.extend(ns.check(ALLOWED_SUBNETS, "spec.networkConfig.vpcConfig.subnets", s));
    }
    for g in &vpc.security_group_ids {
        problems.extend(ns.check(
            ALLOWED_SECURITY_GROUPS,
            "spec.networkConfig.vpcConfig.securityGroupIDs",
            g,
        ));
    }
}

/// Every S3 location the job reads or writes, with its field: inputs, the output locations of
/// Athena and Redshift queries, outputs (in the admission policy's order). A manifest file is
/// its input's `s3URI`; the objects it lists are not read here — the role's permissions decide.
fn s3_locations(spec: &ProcessingJobSpec) -> Vec<(String, &str)> {
    let inputs = spec.processing_inputs.as_deref().unwrap_or_default();
    let mut out: Vec<(String, &str)> = inputs
        .iter()
        .filter_map(|i| i.s3_input.as_ref().map(|s| (i, s)))
        .map(|(i, s)| {
            (
                format!("spec.processingInputs[{}].s3Input.s3URI", i.input_name),
                s.s3_uri.as_str(),
            )
        })
        .collect();
    let datasets = || {
        inputs
            .iter()
            .filter_map(|i| i.dataset_definition.as_ref().map(|d| (i.input_name.as_str(), d)))
    };
    out.extend(datasets().filter_map(|(name, d)| {
        d.athena_dataset_definition.as_ref().map(|a| {
            (
                format!("spec.processingInputs[{name}].datasetDefinition.athenaDatasetDefinition.outputS3URI"),
                a.output_s3_uri.as_str(),
            )
        })
    }));
    out.extend(datasets().filter_map(|(name, d)| {
        d.redshift_dataset_definition.as_ref().map(|r| {
            (
                format!("spec.processingInputs[{name}].datasetDefinition.redshiftDatasetDefinition.outputS3URI"),
                r.output_s3_uri.as_str(),
            )
        })
    }));
    for o in spec.processing_output_config.iter().flat_map(|c| c.outputs.iter()) {
        if let Some(s) = &o.s3_output {
            out.push((
                format!("spec.processingOutputConfig.outputs[{}].s3Output.s3URI", o.output_name),
                s.s3_uri.as_str(),
            ));
        }
    }
    out
}

/// The bucket of an S3 URI: `s3://BUCKET/…`, path-style `https://s3[.-]…/BUCKET/…` or
/// virtual-hosted `https://BUCKET.s3[.-]…/…` (the network checks' reading, mirrored by the
/// admission policy's `buckets` variable).
fn bucket(uri: &str) -> Option<String> {
    parse_s3_uri(uri).map(|(b, _)| b).filter(|b| !b.is_empty())
}

fn buckets(ns: &Limits<'_>, spec: &ProcessingJobSpec, problems: &mut Vec<String>) {
    let Some(list) = ns.get(ALLOWED_S3_BUCKETS) else {
        return;
    };
    for (field, uri) in s3_locations(spec) {
        match bucket(uri) {
            // A location the guard cannot read could be any bucket: refused.
            None => problems.push(format!(
                "{field} {uri} names no bucket the controller can read, and the namespace limits buckets: {ALLOWED_S3_BUCKETS} ({list})"
            )),
            Some(b) if !allowed(list, &b) => problems.push(format!(
                "{field} {uri}: bucket {b} is not in {ALLOWED_S3_BUCKETS} ({list})"
            )),
            Some(_) => {}
        }
    }
}

/// Every KMS key the job names, with its field: the volume key, the output key, the keys of
/// query results. A job that names none uses the AWS managed keys, which no team owns.
fn kms_key_fields(spec: &ProcessingJobSpec) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    if let Some(k) = &spec.processing_resources.cluster_config.volume_kms_key_id {
        out.push((
            "spec.processingResources.clusterConfig.volumeKMSKeyID".to_string(),
            k.as_str(),
        ));
    }
    if let Some(k) = spec
        .processing_output_config
        .as_ref()
        .and_then(|c| c.kms_key_id.as_ref())
    {
        out.push(("spec.processingOutputConfig.kmsKeyID".to_string(), k.as_str()));
    }
    let inputs = spec.processing_inputs.as_deref().unwrap_or_default();
    let datasets = || {
        inputs
            .iter()
            .filter_map(|i| i.dataset_definition.as_ref().map(|d| (i.input_name.as_str(), d)))
    };
    out.extend(datasets().filter_map(|(name, d)| {
        let key = d.athena_dataset_definition.as_ref()?.kms_key_id.as_ref()?;
        Some((
            format!("spec.processingInputs[{name}].datasetDefinition.athenaDatasetDefinition.kmsKeyID"),
            key.as_str(),
        ))
    }));
    out.extend(datasets().filter_map(|(name, d)| {
        let key = d.redshift_dataset_definition.as_ref()?.kms_key_id.as_ref()?;
        Some((
            format!("spec.processingInputs[{name}].datasetDefinition.redshiftDatasetDefinition.kmsKeyID"),
            key.as_str(),
        ))
    }));
    out
}

fn kms_keys(ns: &Limits<'_>, spec: &ProcessingJobSpec, problems: &mut Vec<String>) {
    for (field, key) in kms_key_fields(spec) {
        problems.extend(ns.check(ALLOWED_KMS_KEYS, &field, key));
    }
}

/// The longest count the admission policy's CEL reads as an integer without overflow.
const MAX_COUNT_DIGITS: usize = 18;

fn instances(ns: &Limits<'_>, spec: &ProcessingJobSpec, problems: &mut Vec<String>) {
    let cluster = &spec.processing_resources.cluster_config;
    problems.extend(ns.check(
        ALLOWED_INSTANCE_TYPES,
        "spec.processingResources.clusterConfig.instanceType",
        &cluster.instance_type,
    ));
    let Some(list) = ns.get(MAX_INSTANCE_COUNT) else {
        return;
    };
    let limit = list.trim();
    let whole = !limit.is_empty() && limit.len() <= MAX_COUNT_DIGITS && limit.bytes().all(|b| b.is_ascii_digit());
    match limit.parse::<i64>() {
        // A limit that cannot be read fails closed: the platform meant to limit something.
        Ok(max) if whole => {
            if i64::from(cluster.instance_count) > max {
                problems.push(format!(
                    "spec.processingResources.clusterConfig.instanceCount {} is more than {MAX_INSTANCE_COUNT} ({list})",
                    cluster.instance_count
                ));
            }
        }
        _ => problems.push(format!(
            "{MAX_INSTANCE_COUNT} ({list}) is not a whole number, so every job is refused: fix the namespace annotation"
        )),
    }
}

/// A job without `networkValidation` has mode `Enforce`.
fn validation_mode(ns: &Limits<'_>, spec: &ProcessingJobSpec, problems: &mut Vec<String>) {
    let mode = match spec.validation_mode() {
        ValidationMode::Enforce => "Enforce",
        ValidationMode::Warn => "Warn",
        ValidationMode::Skip => "Skip",
    };
    problems.extend(ns.check(ALLOWED_VALIDATION_MODES, "spec.networkValidation.mode", mode));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NetworkConfig, VpcConfig};

    fn base() -> serde_json::Value {
        serde_json::json!({
            "roleARN": "arn:aws:iam::111111111111:role/team-a-etl",
            "appSpecification": {"imageURI": "img"},
            "processingResources": {"clusterConfig": {"instanceCount": 2, "instanceType": "ml.m5.xlarge", "volumeSizeInGB": 1}},
            "networkConfig": {"vpcConfig": {"subnets": ["subnet-aaa1"], "securityGroupIDs": ["sg-aaa1"]}},
        })
    }

    fn spec_of(v: serde_json::Value) -> ProcessingJobSpec {
        serde_json::from_value(v).expect("spec")
    }

    fn spec(role: &str, subnets: &[&str], groups: &[&str]) -> ProcessingJobSpec {
        let mut s = spec_of(base());
        s.role_arn = role.to_string();
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
        let mut no_vpc = spec_of(base());
        no_vpc.network_config = None;
        assert_eq!(refusal("a", &BTreeMap::new(), &no_vpc), None);
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
        assert!(refusal("team-a", &a, &role)
            .is_some_and(|m| m.contains("spec.roleARN arn:aws:iam::111111111111:role/team-b-etl is not in")));
        let subnet = spec(
            "arn:aws:iam::111111111111:role/shared",
            &["subnet-aaa1", "subnet-bbb1"],
            &["sg-aaa1"],
        );
        assert!(refusal("team-a", &a, &subnet)
            .is_some_and(|m| m.contains("subnets subnet-bbb1 is not") && !m.contains("subnet-aaa1 ")));
        let group = spec("arn:aws:iam::111111111111:role/shared", &["subnet-aaa1"], &["sg-bbb"]);
        assert!(refusal("team-a", &a, &group).is_some_and(|m| m.contains("securityGroupIDs sg-bbb")));
    }

    #[test]
    fn a_restricted_network_needs_a_vpc_config() {
        let mut no_vpc = spec_of(base());
        no_vpc.network_config = None;
        for annotation in [ALLOWED_SUBNETS, ALLOWED_SECURITY_GROUPS] {
            let m = refusal("team-a", &ann(&[(annotation, "*")]), &no_vpc).unwrap_or_default();
            assert!(
                m.contains("spec.networkConfig.vpcConfig is not set") && m.contains(annotation),
                "{m}"
            );
        }
        // Limits on anything else say nothing about where the job runs.
        assert_eq!(refusal("team-a", &ann(&[(ALLOWED_ROLE_ARNS, "*")]), &no_vpc), None);
    }

    #[test]
    fn every_s3_location_is_checked_by_bucket() {
        let mut v = base();
        v["processingInputs"] = serde_json::json!([
            {"inputName": "raw", "s3Input": {"s3URI": "s3://team-a-in/x", "s3DataType": "S3Prefix"}},
            {"inputName": "list", "s3Input": {"s3URI": "https://team-b.s3.eu-west-1.amazonaws.com/m.json", "s3DataType": "ManifestFile"}},
            {"inputName": "q", "datasetDefinition": {"athenaDatasetDefinition": {"catalog": "c", "database": "d", "queryString": "q",
                "outputS3URI": "https://s3.eu-west-1.amazonaws.com/team-c/q/", "outputFormat": "PARQUET"}}},
        ]);
        v["processingOutputConfig"] = serde_json::json!({"outputs": [{"outputName": "out", "s3Output": {"s3URI": "s3://team-a-out/y", "s3UploadMode": "EndOfJob"}}]});
        let m = refusal("team-a", &ann(&[(ALLOWED_S3_BUCKETS, "team-a-*")]), &spec_of(v)).unwrap_or_default();
        assert!(!m.contains("team-a-in") && !m.contains("team-a-out"), "{m}");
        assert!(m.contains("spec.processingInputs[list].s3Input.s3URI https://team-b.s3.eu-west-1.amazonaws.com/m.json: bucket team-b is not in"), "{m}");
        assert!(
            m.contains("spec.processingInputs[q].datasetDefinition.athenaDatasetDefinition.outputS3URI https://s3.eu-west-1.amazonaws.com/team-c/q/: bucket team-c"),
            "{m}"
        );
    }

    #[test]
    fn a_location_without_a_readable_bucket_is_refused_where_buckets_are_limited() {
        assert_eq!(bucket("s3://b/k"), Some("b".into()));
        assert_eq!(bucket("https://b.s3-eu-west-1.amazonaws.com/k"), Some("b".into()));
        assert_eq!(bucket("https://s3-eu-west-1.amazonaws.com/b/k"), Some("b".into()));
        assert_eq!(bucket("https://s3.eu-west-1.amazonaws.com/"), None);
        assert_eq!(bucket("https://example.com/b/k"), None);
    }

    #[test]
    fn kms_keys_instance_types_and_counts() {
        let mut v = base();
        v["processingResources"]["clusterConfig"]["volumeKMSKeyID"] = "arn:aws:kms:eu-west-1:222222222222:key/x".into();
        let s = spec_of(v);
        let m = refusal("a", &ann(&[(ALLOWED_KMS_KEYS, "arn:aws:kms:*:111111111111:key/*")]), &s).unwrap_or_default();
        assert!(m.contains("spec.processingResources.clusterConfig.volumeKMSKeyID arn:aws:kms:eu-west-1:222222222222:key/x is not in sagemaker.processing.dev/allowed-kms-keys"), "{m}");
        assert!(refusal("a", &ann(&[(ALLOWED_INSTANCE_TYPES, "ml.t3.*")]), &s)
            .is_some_and(|m| m.contains("instanceType ml.m5.xlarge")));
        assert_eq!(refusal("a", &ann(&[(ALLOWED_INSTANCE_TYPES, "ml.m5.*")]), &s), None);
        assert_eq!(refusal("a", &ann(&[(MAX_INSTANCE_COUNT, " 2 ")]), &s), None);
        assert!(refusal("a", &ann(&[(MAX_INSTANCE_COUNT, "1")]), &s)
            .is_some_and(|m| m.contains("instanceCount 2 is more than")));
        for bad in ["", "two", "+2", "-1", "2.0", "9999999999999999999"] {
            assert!(
                refusal("a", &ann(&[(MAX_INSTANCE_COUNT, bad)]), &s)
                    .is_some_and(|m| m.contains("is not a whole number")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_validation_mode_defaults_to_enforce() {
        let only_enforce = ann(&[(ALLOWED_VALIDATION_MODES, "Enforce")]);
        assert_eq!(refusal("a", &only_enforce, &spec_of(base())), None);
        let mut v = base();
        v["networkValidation"] = serde_json::json!({"mode": "Skip"});
        assert!(refusal("a", &only_enforce, &spec_of(v))
            .is_some_and(|m| m.contains("spec.networkValidation.mode Skip is not in")));
    }

    #[test]
    fn empty_lists_allow_nothing_and_only_guard_annotations_are_limits() {
        assert!(refusal("a", &ann(&[(ALLOWED_INSTANCE_TYPES, " , ")]), &spec_of(base())).is_some());
        let a = ann(&[(ALLOWED_SUBNETS, "x"), ("team", "a")]);
        assert_eq!(limits(&a).into_iter().collect::<Vec<_>>(), vec![(ALLOWED_SUBNETS, "x")]);
    }
}
