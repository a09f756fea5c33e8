//! Reading ProcessingJob manifests from files without a cluster (for `validate`): multi-document
//! YAML, ACK-style manifests too, checked against the CRD's own OpenAPI schema so that a
//! manifest the apiserver would refuse is refused here with the field named.

use std::sync::OnceLock;

use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::{ProcessingJob, GROUP, VERSION};

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
    #[error("{source_name}: document {document}: not a ProcessingJob (apiVersion {api_version:?}, kind {kind:?}); expected apiVersion {GROUP}/{VERSION} (or ACK's {ACK_GROUP}/v1alpha1) and kind ProcessingJob")]
    NotAProcessingJob {
        source_name: String,
        document: usize,
        api_version: String,
        kind: String,
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

/// Parses every document of a YAML stream. Empty documents are skipped; other kinds are errors.
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<LoadedJob>, ManifestError> {
    use serde::Deserialize;
    let mut out = Vec::new();
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
        out.push(parse_object(source_name, document, value)?);
    }
    Ok(out)
}

fn parse_object(source_name: &str, document: usize, mut value: Value) -> Result<LoadedJob, ManifestError> {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let group_ok = api_version == format!("{GROUP}/{VERSION}") || api_version == format!("{ACK_GROUP}/v1alpha1");
    if !group_ok || kind != "ProcessingJob" {
        return Err(ManifestError::NotAProcessingJob {
            source_name: source_name.to_string(),
            document,
            api_version,
            kind,
        });
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
    Ok(LoadedJob {
        source_name: source_name.to_string(),
        document,
        job,
    })
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

/// Checks a value against the structural OpenAPI subset the CRD uses (CEL rules excepted; the
/// apiserver enforces those).
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
        let jobs = parse_documents("f.yaml", &format!("---\n{VALID}\n---\n")).expect("valid");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].job.spec.instance_count(), 1);
    }

    #[test]
    fn accepts_ack_manifests() {
        let ack = VALID.replace(
            "sagemaker.processing.dev/v1alpha1",
            "sagemaker.services.k8s.aws/v1alpha1",
        );
        assert_eq!(parse_documents("f.yaml", &ack).expect("ACK manifest").len(), 1);
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
        let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n";
        let err = parse_documents("f.yaml", other).expect_err("configmap").to_string();
        assert!(err.contains("not a ProcessingJob"), "{err}");
    }
}
