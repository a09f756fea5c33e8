//! The CEL rules of the CRD, each with its message and the same rule in Rust.
//!
//! The apiserver evaluates the CEL text at `kubectl apply`; `validate` (no cluster) finds the rule
//! by its CEL text in the CRD's schema and runs the Rust twin, so both refuse the same input with
//! the same message, taken from one place. A test checks that every CEL rule of the CRD has its
//! twin here (transition rules excepted: `validate` has no old object).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::job::TAG_PREFIX;

/// A CEL validation rule (`x-kubernetes-validations` entry) and its Rust twin.
#[derive(Debug)]
pub struct Rule {
    /// The CEL expression, evaluated with `self` bound to the field it is attached to.
    pub cel: &'static str,
    /// What the user is told when it does not hold.
    pub message: &'static str,
    /// The same rule over the JSON value of the field.
    pub holds: fn(&Value) -> bool,
}

impl Serialize for Rule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("rule", self.cel)?;
        m.serialize_entry("message", self.message)?;
        m.end()
    }
}

/// Every rule of the CRD that `validate` can check without a cluster.
pub const ALL: &[Rule] = &[
    ENVIRONMENT_NAMES,
    ENVIRONMENT_VALUES,
    INPUT_NAMES_UNIQUE,
    INPUT_LOCAL_PATHS_UNIQUE,
    INPUT_ONE_SOURCE,
    DATASET_ONE_SOURCE,
    OUTPUT_NAMES_UNIQUE,
    OUTPUT_ONE_DESTINATION,
    TAG_KEYS_UNIQUE,
    TAG_KEYS_NOT_AWS,
    TAG_KEYS_NOT_CONTROLLER,
];

/// The rule with this CEL text.
pub fn find(cel: &str) -> Option<&'static Rule> {
    ALL.iter().find(|r| r.cel == cel)
}

pub const ENVIRONMENT_NAMES: Rule = Rule {
    cel: "self.all(k, k.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && size(k) <= 256)",
    message: "environment variable names must match [a-zA-Z_][a-zA-Z0-9_]* and be at most 256 characters",
    holds: |v| {
        let re = regex::Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").expect("a valid pattern");
        entries(v).all(|(k, _)| re.is_match(k) && k.chars().count() <= 256)
    },
};

pub const ENVIRONMENT_VALUES: Rule = Rule {
    cel: "self.all(k, size(self[k]) <= 256)",
    message: "environment variable values must be at most 256 characters",
    holds: |v| entries(v).all(|(_, x)| x.as_str().is_none_or(|s| s.chars().count() <= 256)),
};

pub const INPUT_NAMES_UNIQUE: Rule = Rule {
    cel: "self.all(i, self.exists_one(j, j.inputName == i.inputName))",
    message: "inputName must be unique among processingInputs",
    holds: |v| unique(v, "/inputName"),
};

/// Two inputs downloaded into one directory: SageMaker refuses the create with a
/// ValidationException whose message is empty (a user report, confirmed by AWS support), so the
/// apiserver says it instead. The local path of an S3 input or a dataset definition, compared as
/// written.
pub const INPUT_LOCAL_PATHS_UNIQUE: Rule = Rule {
    cel: "self.all(i, (has(i.s3Input) && has(i.s3Input.localPath) ? i.s3Input.localPath : has(i.datasetDefinition) && has(i.datasetDefinition.localPath) ? i.datasetDefinition.localPath : '') == '' || self.exists_one(j, (has(j.s3Input) && has(j.s3Input.localPath) ? j.s3Input.localPath : has(j.datasetDefinition) && has(j.datasetDefinition.localPath) ? j.datasetDefinition.localPath : '') == (has(i.s3Input) && has(i.s3Input.localPath) ? i.s3Input.localPath : has(i.datasetDefinition) && has(i.datasetDefinition.localPath) ? i.datasetDefinition.localPath : '')))",
    message: "localPath must be unique among processingInputs: two inputs cannot be downloaded into one directory (SageMaker refuses the job with an empty ValidationException)",
    holds: |v| {
        let paths: Vec<&str> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                i.pointer("/s3Input/localPath")
                    .or_else(|| i.pointer("/datasetDefinition/localPath"))
                    .and_then(Value::as_str)
            })
            .filter(|p| !p.is_empty())
            .collect();
        paths.iter().enumerate().all(|(i, p)| !paths[..i].contains(p))
    },
};

pub const INPUT_ONE_SOURCE: Rule = Rule {
    cel: "has(self.s3Input) != has(self.datasetDefinition)",
    message: "each processing input needs exactly one of s3Input or datasetDefinition",
    holds: |v| has(v, "s3Input") != has(v, "datasetDefinition"),
};

pub const DATASET_ONE_SOURCE: Rule = Rule {
    cel: "has(self.athenaDatasetDefinition) != has(self.redshiftDatasetDefinition)",
    message: "a datasetDefinition needs exactly one of athenaDatasetDefinition or redshiftDatasetDefinition",
    holds: |v| has(v, "athenaDatasetDefinition") != has(v, "redshiftDatasetDefinition"),
};

/// SageMaker names each output's upload by its name: two outputs of one name are refused.
pub const OUTPUT_NAMES_UNIQUE: Rule = Rule {
    cel: "self.all(o, self.exists_one(p, p.outputName == o.outputName))",
    message: "outputName must be unique among processingOutputConfig.outputs",
    holds: |v| unique(v, "/outputName"),
};

/// SageMaker's ProcessingOutput takes either destination, not both.
pub const OUTPUT_ONE_DESTINATION: Rule = Rule {
    cel: "has(self.s3Output) != has(self.featureStoreOutput)",
    message: "each processing output needs exactly one of s3Output or featureStoreOutput",
    holds: |v| has(v, "s3Output") != has(v, "featureStoreOutput"),
};

/// AWS refuses a request that repeats a tag key.
pub const TAG_KEYS_UNIQUE: Rule = Rule {
    cel: "self.all(t, self.exists_one(u, u.key == t.key))",
    message: "tag keys must be unique",
    holds: |v| unique(v, "/key"),
};

/// The `aws:` prefix is AWS's own, in any letter case.
pub const TAG_KEYS_NOT_AWS: Rule = Rule {
    cel: "self.all(t, !t.key.lowerAscii().startsWith('aws:'))",
    message: "tag keys must not start with aws: (in any case): the prefix is reserved by AWS",
    holds: |v| keys(v).all(|k| !k.to_ascii_lowercase().starts_with("aws:")),
};

/// The controller's ownership tags (`sagemaker.processing.dev/uid`, ...) decide which job is this
/// resource's: a user tag with that prefix could claim or disown a job.
pub const TAG_KEYS_NOT_CONTROLLER: Rule = Rule {
    cel: "self.all(t, !t.key.startsWith('sagemaker.processing.dev/'))",
    message: "tag keys must not start with sagemaker.processing.dev/: the controller sets those tags itself",
    holds: |v| keys(v).all(|k| !k.starts_with(TAG_PREFIX)),
};

/// The spec fields that steer only the controller; every other field reaches SageMaker.
pub const MUTABLE_SPEC_FIELDS: [&str; 2] = ["networkValidation", "deletionPolicy"];

/// The immutability rule of one spec field: present in both or neither, and equal. A rule per
/// field (not `self == oldSelf` on the spec) leaves the controller's own knobs mutable; on the
/// spec, not the field, because a transition rule on an optional field would not run when the
/// field is added or removed.
pub fn immutable_field_rule(field: &str) -> Value {
    serde_json::json!({
        "rule": format!("has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})"),
        "message": format!("spec.{field} is immutable: a SageMaker processing job cannot be changed once created; to rerun, create a new ProcessingJob resource (only spec.networkValidation and spec.deletionPolicy can change)"),
    })
}

/// schemars transform of the spec: every field but [`MUTABLE_SPEC_FIELDS`] immutable, so that a
/// field added later is immutable unless it is listed there.
pub fn immutable_spec(schema: &mut schemars::Schema) {
    let fields: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.keys()
                .filter(|k| !MUTABLE_SPEC_FIELDS.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let rules: Vec<Value> = fields.iter().map(|f| immutable_field_rule(f)).collect();
    schema.insert("x-kubernetes-validations".into(), Value::Array(rules));
}

fn has(v: &Value, field: &str) -> bool {
    v.get(field).is_some_and(|x| !x.is_null())
}

fn entries(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flatten()
}

fn keys(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.pointer("/key").and_then(Value::as_str))
}

/// Whether the items' values at `pointer` are pairwise different.
fn unique(v: &Value, pointer: &str) -> bool {
    let values: Vec<&Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.pointer(pointer))
        .collect();
    values.iter().enumerate().all(|(i, a)| !values[..i].contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_rust_twins_decide_like_the_cel_rules() {
        let tags = |ks: &[&str]| Value::Array(ks.iter().map(|k| json!({"key": k, "value": "v"})).collect());
        assert!((TAG_KEYS_UNIQUE.holds)(&tags(&["a", "b"])));
        assert!(!(TAG_KEYS_UNIQUE.holds)(&tags(&["a", "b", "a"])));
        assert!((TAG_KEYS_NOT_AWS.holds)(&tags(&["team", "awsome", "x:aws:"])));
        for reserved in ["aws:cost", "AWS:x", "Aws:"] {
            assert!(!(TAG_KEYS_NOT_AWS.holds)(&tags(&["team", reserved])), "{reserved}");
        }
        assert!(!(TAG_KEYS_NOT_CONTROLLER.holds)(&tags(&[crate::job::TAG_UID])));
        assert!((TAG_KEYS_NOT_CONTROLLER.holds)(&tags(&["sagemaker.processing.dev"])));
        let outputs = json!([{"outputName": "a"}, {"outputName": "b"}, {"outputName": "a"}]);
        assert!(!(OUTPUT_NAMES_UNIQUE.holds)(&outputs));
        assert!((OUTPUT_NAMES_UNIQUE.holds)(&json!([{"outputName": "a"}])));
        let s3 = json!({"s3URI": "s3://b/k", "s3UploadMode": "EndOfJob"});
        let fs = json!({"featureGroupName": "g"});
        assert!((OUTPUT_ONE_DESTINATION.holds)(
            &json!({"outputName": "a", "s3Output": s3})
        ));
        assert!(!(OUTPUT_ONE_DESTINATION.holds)(
            &json!({"outputName": "a", "s3Output": s3, "featureStoreOutput": fs})
        ));
        assert!(!(OUTPUT_ONE_DESTINATION.holds)(&json!({"outputName": "a"})));
        assert!(!(ENVIRONMENT_NAMES.holds)(&json!({"1A": "x"})));
        assert!(!(ENVIRONMENT_VALUES.holds)(&json!({"A": "x".repeat(257)})));
        let s3 = |path: &str| json!({"inputName": path, "s3Input": {"s3URI": "s3://b/k", "localPath": path}});
        let dataset = |path: &str| json!({"inputName": "d", "datasetDefinition": {"localPath": path}});
        let a = "/opt/ml/processing/a";
        assert!((INPUT_LOCAL_PATHS_UNIQUE.holds)(&json!([
            s3(a),
            s3("/opt/ml/processing/b")
        ])));
        assert!((INPUT_LOCAL_PATHS_UNIQUE.holds)(
            &json!([{"inputName": "x"}, {"inputName": "y"}])
        ));
        assert!(!(INPUT_LOCAL_PATHS_UNIQUE.holds)(&json!([
            s3(a),
            s3("/opt/ml/processing/b"),
            s3(a)
        ])));
        assert!(!(INPUT_LOCAL_PATHS_UNIQUE.holds)(&json!([s3(a), dataset(a)])));
    }

    #[test]
    fn the_controller_prefix_in_the_cel_text_is_the_tag_prefix() {
        assert!(TAG_KEYS_NOT_CONTROLLER.cel.contains(&format!("'{TAG_PREFIX}'")));
        assert!(TAG_KEYS_NOT_CONTROLLER.message.contains(TAG_PREFIX));
    }
}
