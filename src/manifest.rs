//! Reading ProcessingJob manifests from files without a cluster (for `validate`): multi-document
//! YAML such as `kustomize build` prints, ACK-style manifests too, checked against the CRD's own
//! OpenAPI schema and CEL rules (their Rust twins in [`crate::api::rules`]) so that a manifest the
//! apiserver would refuse is refused here with the field named and the same message. Objects of
//! other kinds are skipped and listed, as a GitOps repository mixes them.

use std::sync::OnceLock;

use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::{rules, ProcessingJob, GROUP, VERSION};

/// ACK's API group for SageMaker resources; its ProcessingJob manifests are accepted as-is.
pub const ACK_GROUP: &str = "sagemaker.services.k8s.aws";

/// A manifest that cannot be used, with where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: cannot read: {error}")]
    Read { source_name: String, error: std::io::Error },
    #[error("{source_name}: document {document}: not valid YAML: {error}")]
    Yaml {
        source_name: String,
        document: usize,
        error: String,
    },
    #[error("{source_name}: document {document}: not a Kubernetes object: {problem}")]
    NotAnObject {
        source_name: String,
        document: usize,
        problem: String,
    },
    #[error("{source_name}: document {document}: a ProcessingJob of apiVersion {api_version:?}, which this validator does not know; expected {GROUP}/{VERSION} or ACK's {ACK_GROUP}/v1alpha1")]
    UnknownVersion {
        source_name: String,
        document: usize,
        api_version: String,
    },
    #[error("{source_name}: document {document} ({name}): {problems}")]
    Invalid {
        source_name: String,
        document: usize,
        name: String,
        problems: String,
    },
}

/// One ProcessingJob read from a manifest.
#[derive(Debug, Clone)]
pub struct LoadedJob {
    pub source_name: String,
    pub document: usize,
    pub job: ProcessingJob,
}

/// An object of another kind, skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub source_name: String,
    pub document: usize,
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: document {}: {} {} ({})",
            self.source_name, self.document, self.kind, self.name, self.api_version
        )
    }
}

/// What a stream holds: its ProcessingJobs, and the other objects, skipped.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub jobs: Vec<LoadedJob>,
    pub skipped: Vec<Skipped>,
}

impl Manifests {
    pub fn extend(&mut self, other: Manifests) {
        self.jobs.extend(other.jobs);
        self.skipped.extend(other.skipped);
    }
}

/// Parses every document of a YAML stream (a `v1` `List` counts as its items). Empty documents
/// are ignored, objects of other kinds skipped; malformed YAML, a document that is no object and
/// a ProcessingJob the schema refuses are errors.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Manifests, ManifestError> {
    use serde::Deserialize;
    let mut out = Manifests::default();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
            source_name: source_name.to_string(),
            document,
            error: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let objects = match value {
            Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                o.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
            }
            other => vec![other],
        };
        for object in objects {
            match parse_object(source_name, document, object)? {
                Parsed::Job(job) => out.jobs.push(*job),
                Parsed::Other(skipped) => out.skipped.push(skipped),
            }
        }
    }
    Ok(out)
}

enum Parsed {
    Job(Box<LoadedJob>),
    Other(Skipped),
}

fn parse_object(source_name: &str, document: usize, mut value: Value) -> Result<Parsed, ManifestError> {
    let not_an_object = |problem: &str| ManifestError::NotAnObject {
        source_name: source_name.to_string(),
        document,
        problem: problem.to_string(),
    };
    if !value.is_object() {
        return Err(not_an_object("the document is not a mapping"));
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err(not_an_object("apiVersion and kind are required"));
    }
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    let ours = api_version == format!("{GROUP}/{VERSION}") || api_version == format!("{ACK_GROUP}/v1alpha1");
    if kind == "ProcessingJob" && !ours && (group == GROUP || group == ACK_GROUP) {
        return Err(ManifestError::UnknownVersion {
            source_name: source_name.to_string(),
            document,
            api_version,
        });
    }
    if kind != "ProcessingJob" || !ours {
        return Ok(Parsed::Other(Skipped {
            source_name: source_name.to_string(),
            document,
            name: value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
                .to_string(),
            api_version,
            kind,
        }));
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string();
    let invalid = |problems: Vec<String>| ManifestError::Invalid {
        source_name: source_name.to_string(),
        document,
        name: name.clone(),
        problems: problems.join("; "),
    };
    let mut problems = Vec::new();
    if value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push("metadata.name: required".to_string());
    }
    match value.get("spec") {
        Some(spec) => check_schema(spec_schema(), spec, "spec", &mut problems),
        None => problems.push("spec: required".to_string()),
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    // ACK manifests differ only in apiVersion.
    value["apiVersion"] = Value::String(format!("{GROUP}/{VERSION}"));
    let job: ProcessingJob =
        serde_path_to_error::deserialize(value).map_err(|e| invalid(vec![format!("{}: {}", e.path(), e.inner())]))?;
    Ok(Parsed::Job(Box::new(LoadedJob {
        source_name: source_name.to_string(),
        document,
        job,
    })))
}

/// The CRD's schema of `spec`.
fn spec_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(ProcessingJob::crd()).unwrap_or(Value::Null);
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
            .cloned()
            .unwrap_or(Value::Null)
    })
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

/// Checks a value against the structural OpenAPI subset the CRD uses, its list types and its
/// CEL rules (through their Rust twins; transition rules need the old object and are the
/// apiserver's alone). Messages read as the apiserver's.
pub fn check_schema(schema: &Value, v: &Value, path: &str, problems: &mut Vec<String>) {
    if schema.is_null()
        || schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            == Some(true)
    {
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        if !type_matches(ty, v) {
            problems.push(format!("{path}: must be of type {ty}, got {v}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let list: Vec<String> = options
                .iter()
                .map(|o| o.as_str().map(str::to_string).unwrap_or_else(|| o.to_string()))
                .collect();
            problems.push(format!("{path}: must be one of {}, got {v}", list.join(", ")));
        }
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    match v {
        Value::String(s) => {
            let len = s.chars().count() as f64;
            if num("minLength").is_some_and(|m| len < m) || num("maxLength").is_some_and(|m| len > m) {
                problems.push(format!(
                    "{path}: length {len} outside {}..{}",
                    num("minLength").unwrap_or(0.0),
                    num("maxLength").map(|m| m.to_string()).unwrap_or_else(|| "∞".into())
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => problems.push(format!("{path}: {s:?} does not match {pattern}")),
                    _ => {}
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = num("minimum").filter(|m| x < *m) {
                problems.push(format!("{path}: {n} is less than the minimum {min}"));
            }
            if let Some(max) = num("maximum").filter(|m| x > *m) {
                problems.push(format!("{path}: {n} is more than the maximum {max}"));
            }
        }
        Value::Array(items) => {
            let n = items.len() as f64;
            if let Some(min) = num("minItems").filter(|m| n < *m) {
                problems.push(format!("{path}: needs at least {min} items, has {n}"));
            }
            if let Some(max) = num("maxItems").filter(|m| n > *m) {
                problems.push(format!("{path}: allows at most {max} items, has {n}"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        problems.push(format!("{path}[{i}]: Duplicate value: {item}"));
                    }
                }
            }
        }
        Value::Object(map) => {
            if let Some(max) = num("maxProperties").filter(|m| map.len() as f64 > *m) {
                problems.push(format!("{path}: allows at most {max} entries, has {}", map.len()));
            }
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(req) {
                    problems.push(format!("{path}.{req}: required"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, child) in map {
                let child_path = format!("{path}.{k}");
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) => check_schema(s, child, &child_path, problems),
                    (None, Some(s)) if s.is_object() => check_schema(s, child, &child_path, problems),
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) => problems.push(format!("{child_path}: unknown field")),
                }
            }
        }
        _ => {}
    }
    check_rules(schema, v, path, problems);
}

/// The CEL rules attached to this node, through their Rust twins.
fn check_rules(schema: &Value, v: &Value, path: &str, problems: &mut Vec<String>) {
    let declared = schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for rule in declared {
        let cel = rule.get("rule").and_then(Value::as_str).unwrap_or_default();
        if is_transition_rule(cel) {
            continue;
        }
        // Every rule has a twin (a test walks the CRD to make sure).
        if let Some(twin) = rules::find(cel) {
            if !(twin.holds)(v) {
                problems.push(format!("{path}: {}", twin.message));
            }
        }
    }
}

/// Rules that compare with the stored object: only an update has one.
pub fn is_transition_rule(cel: &str) -> bool {
    cel.contains("oldSelf")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
apiVersion: sagemaker.processing.dev/v1alpha1
kind: ProcessingJob
metadata: {name: ok, namespace: team-a}
spec:
  roleARN: arn:aws:iam::123456789012:role/SageMakerRole
  appSpecification: {imageURI: 123456789012.dkr.ecr.us-east-1.amazonaws.com/p:1}
  processingResources:
    clusterConfig: {instanceCount: 1, instanceType: ml.m5.xlarge, volumeSizeInGB: 30}
"#;

    #[test]
    fn reads_a_valid_manifest_and_skips_empty_documents() {
        let found = parse_documents("f.yaml", &format!("---\n{VALID}\n---\n")).expect("valid");
        assert_eq!(found.jobs.len(), 1);
        assert_eq!(found.jobs[0].job.spec.instance_count(), 1);
    }

    #[test]
    fn accepts_ack_manifests() {
        let ack = VALID.replace(
            "sagemaker.processing.dev/v1alpha1",
            "sagemaker.services.k8s.aws/v1alpha1",
        );
        assert_eq!(parse_documents("f.yaml", &ack).expect("ACK manifest").jobs.len(), 1);
    }

    #[test]
    fn names_file_document_and_field() {
        let bad = format!(
            "{VALID}\n---\n{}",
            VALID.replace("instanceCount: 1", "instanceCount: 101")
        );
        let err = parse_documents("f.yaml", &bad)
            .expect_err("instanceCount 101")
            .to_string();
        assert!(
            err.contains("f.yaml")
                && err.contains("document 2")
                && err.contains("spec.processingResources.clusterConfig.instanceCount"),
            "{err}"
        );
        let typo = VALID.replace("roleARN", "roleArn");
        let err = parse_documents("f.yaml", &typo).expect_err("typo").to_string();
        assert!(
            err.contains("spec.roleArn: unknown field") && err.contains("spec.roleARN: required"),
            "{err}"
        );
        let err = parse_documents("f.yaml", "- a\n- b\n").expect_err("a list").to_string();
        assert!(err.contains("document 1: not a Kubernetes object"), "{err}");
        let err = parse_documents("f.yaml", "metadata: {name: x}\n")
            .expect_err("no kind")
            .to_string();
        assert!(err.contains("apiVersion and kind are required"), "{err}");
        let beta = VALID.replace("v1alpha1", "v1beta1");
        let err = parse_documents("f.yaml", &beta)
            .expect_err("unknown version")
            .to_string();
        assert!(err.contains("sagemaker.processing.dev/v1beta1"), "{err}");
    }

    #[test]
    fn other_kinds_are_skipped_and_listed() {
        let stream = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\n---\n{VALID}\n---\n\
             apiVersion: sagemaker.services.k8s.aws/v1alpha1\nkind: TrainingJob\nmetadata: {{name: t}}\n"
        );
        let found = parse_documents("k.yaml", &stream).expect("mixed stream");
        assert_eq!(found.jobs.len(), 1);
        assert_eq!(found.jobs[0].document, 2);
        let skipped: Vec<String> = found.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(
            skipped,
            [
                "k.yaml: document 1: ConfigMap settings (v1)",
                "k.yaml: document 3: TrainingJob t (sagemaker.services.k8s.aws/v1alpha1)"
            ]
        );
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n- {{apiVersion: v1, kind: Secret, metadata: {{name: s}}}}\n- {}",
            serde_json::to_string(&serde_yaml_ng::from_str::<Value>(VALID).expect("yaml")).expect("json")
        );
        let found = parse_documents("l.yaml", &list).expect("a List");
        assert_eq!((found.jobs.len(), found.skipped.len()), (1, 1));
    }

    #[test]
    fn impossible_inputs_are_refused_with_the_apiservers_messages() {
        let with = |extra: &str| format!("{VALID}{extra}");
        let cases = [
            (
                "  networkConfig:\n    vpcConfig: {subnets: [subnet-1, subnet-1], securityGroupIDs: [sg-1]}\n",
                "spec.networkConfig.vpcConfig.subnets[1]: Duplicate value: \"subnet-1\"",
            ),
            (
                "  networkConfig:\n    vpcConfig: {subnets: [subnet-1], securityGroupIDs: [sg-1, sg-2, sg-1]}\n",
                "spec.networkConfig.vpcConfig.securityGroupIDs[2]: Duplicate value: \"sg-1\"",
            ),
            (
                "  tags: [{key: team, value: a}, {key: team, value: b}]\n",
                "spec.tags: tag keys must be unique",
            ),
            ("  tags: [{key: 'AWS:cost', value: a}]\n", "spec.tags: tag keys must not start with aws:"),
            (
                "  tags: [{key: sagemaker.processing.dev/uid, value: a}]\n",
                "spec.tags: tag keys must not start with sagemaker.processing.dev/",
            ),
            (
                "  processingOutputConfig:\n    outputs:\n    - {outputName: o, featureStoreOutput: {featureGroupName: g}}\n    - {outputName: o, featureStoreOutput: {featureGroupName: h}}\n",
                "spec.processingOutputConfig.outputs: outputName must be unique",
            ),
            (
                "  processingOutputConfig:\n    outputs:\n    - {outputName: o, featureStoreOutput: {featureGroupName: g}, s3Output: {s3URI: 's3://b/k', s3UploadMode: EndOfJob}}\n",
                "spec.processingOutputConfig.outputs[0]: each processing output needs exactly one of s3Output or featureStoreOutput",
            ),
        ];
        for (extra, expected) in cases {
            let err = parse_documents("f.yaml", &with(extra)).expect_err(expected).to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err}");
        }
    }

    /// `validate` refuses what `kubectl apply` refuses: every CEL rule of the CRD but the
    /// transition rules has its Rust twin.
    #[test]
    fn every_cel_rule_of_the_crd_has_its_rust_twin() {
        fn walk(v: &Value, found: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    for (k, child) in map {
                        if k == "x-kubernetes-validations" {
                            for r in child.as_array().into_iter().flatten() {
                                found.extend(r.get("rule").and_then(Value::as_str).map(str::to_string));
                            }
                        } else {
                            walk(child, found);
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|i| walk(i, found)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        walk(spec_schema(), &mut found);
        let stateless: Vec<&String> = found.iter().filter(|r| !is_transition_rule(r)).collect();
        assert_eq!(stateless.len(), rules::ALL.len(), "{stateless:?}");
        for r in stateless {
            assert!(rules::find(r).is_some(), "no Rust twin for the CEL rule {r}");
        }
        // The transition rules: one per spec field but the two controller knobs.
        let transition = found.iter().filter(|r| is_transition_rule(r)).count();
        let fields = spec_schema()["properties"].as_object().map_or(0, |p| p.len());
        assert_eq!(transition, fields - rules::MUTABLE_SPEC_FIELDS.len());
    }
}
