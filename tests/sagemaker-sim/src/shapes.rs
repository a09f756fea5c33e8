//! Request validation derived from SageMaker's published API model.
//!
//! `model/sagemaker-processing.json` is the extraction of botocore's SageMaker service model
//! (made by `scripts/sagemaker-model`) for the operations the simulator answers: for each
//! operation its input shape, and every shape it reaches with its constraints. A request is
//! checked by walking the operation's input shape against the request JSON, the way SageMaker's
//! front end does, and the violations are answered in AWS's words:
//!
//! `1 validation error detected: Value '<v>' at '<path>' failed to satisfy constraint: <constraint>`
//!
//! (`N validation errors detected: …; …` for several), where `<path>` joins the lowerCamel
//! member names with `.` and names a list item `member` (`processingInputs.member.s3Input.s3Uri`).
//! A list of scalars or a map whose items break their shape's constraints is reported once, at
//! the list or map, with the item shape's constraints in brackets (`Member must satisfy
//! constraint: [...]`, `Map value must satisfy constraint: [...]`), as AWS does. A value of the
//! wrong JSON type is a `SerializationException`, as for AWS's JSON protocol. Unknown members
//! are ignored.
//!
//! The model's patterns are Java regular expressions, unanchored: the whole value must match,
//! so each is compiled once as `^(?:pattern)$`; a pattern the `regex` crate cannot compile (the
//! `\uD800` surrogate escapes of some) is skipped.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::model::ApiError;

const MODEL_JSON: &str = include_str!("../model/sagemaker-processing.json");

#[derive(Deserialize)]
struct ModelFile {
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
}

#[derive(Deserialize)]
struct Operation {
    #[serde(default)]
    input: Option<String>,
}

#[derive(Deserialize)]
struct ShapeRef {
    shape: String,
}

/// One shape of the model, as `scripts/sagemaker-model` extracts it.
#[derive(Deserialize)]
pub struct Shape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: BTreeMap<String, ShapeRef>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default, rename = "enum")]
    enum_values: Option<Vec<String>>,
    #[serde(default)]
    member: Option<ShapeRef>,
    #[serde(default)]
    key: Option<ShapeRef>,
    #[serde(default)]
    value: Option<ShapeRef>,
}

/// The model, its patterns compiled.
pub struct Model {
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
    /// Compiled `^(?:pattern)$` by shape name; `None`: the pattern does not compile here.
    patterns: HashMap<String, Option<Regex>>,
}

/// The embedded model, parsed and compiled once.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let file: ModelFile = serde_json::from_str(MODEL_JSON).expect("model/sagemaker-processing.json parses");
        let patterns = file
            .shapes
            .iter()
            .filter_map(|(name, s)| {
                let p = s.pattern.as_ref()?;
                Some((name.clone(), Regex::new(&format!("^(?:{p})$")).ok()))
            })
            .collect();
        Model {
            operations: file.operations,
            shapes: file.shapes,
            patterns,
        }
    })
}

impl Model {
    /// The shape named `name`.
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// The values of an enum shape (empty for other shapes).
    #[cfg(test)]
    pub fn enum_values(&self, name: &str) -> &[String] {
        self.shape(name)
            .and_then(|s| s.enum_values.as_deref())
            .unwrap_or_default()
    }

    /// Checks `input` against the input shape of `operation`. Operations the model does not
    /// describe are not checked.
    pub fn check_input(&self, operation: &str, input: &Value) -> Result<(), ApiError> {
        let Some(shape) = self.operations.get(operation).and_then(|o| o.input.as_deref()) else {
            return Ok(());
        };
        let mut walk = Walk::default();
        self.walk(shape, input, "", &mut walk);
        if let Some(message) = walk.wrong_type {
            return Err(ApiError::serialization(message));
        }
        match validation_message(&walk.violations) {
            None => Ok(()),
            Some(message) => Err(ApiError::validation(message)),
        }
    }

    fn walk(&self, shape_name: &str, v: &Value, path: &str, out: &mut Walk) {
        let Some(shape) = self.shape(shape_name) else { return };
        match shape.kind.as_str() {
            "structure" => {
                let Some(obj) = v.as_object() else {
                    return out.wrong(path, "structure", v);
                };
                for required in &shape.required {
                    if obj.get(required).is_none_or(Value::is_null) {
                        out.violations
                            .push(violation("null", &join(path, required), "Member must not be null"));
                    }
                }
                for (name, member) in &shape.members {
                    if let Some(value) = obj.get(name).filter(|v| !v.is_null()) {
                        self.walk(&member.shape, value, &join(path, name), out);
                    }
                }
            }
            "list" => {
                let Some(items) = v.as_array() else {
                    return out.wrong(path, "list", v);
                };
                self.length(shape, items.len(), v, path, out);
                let Some(member) = &shape.member else { return };
                if self.is_scalar(&member.shape) {
                    let mut broken = false;
                    for item in items {
                        match self.scalar(&member.shape, item) {
                            Err(expected) => return out.wrong(&format!("{path}.member"), expected, item),
                            Ok(failed) => broken |= !failed.is_empty(),
                        }
                    }
                    if broken {
                        let all = self.constraints(&member.shape).join(", ");
                        out.violations.push(violation(
                            &render(v),
                            path,
                            &format!("Member must satisfy constraint: [{all}]"),
                        ));
                    }
                } else {
                    let at = format!("{path}.member");
                    for item in items {
                        self.walk(&member.shape, item, &at, out);
                    }
                }
            }
            "map" => {
                let Some(entries) = v.as_object() else {
                    return out.wrong(path, "map", v);
                };
                self.length(shape, entries.len(), v, path, out);
                if let Some(key) = &shape.key {
                    let failed = entries.keys().any(|k| {
                        self.scalar(&key.shape, &Value::String(k.clone()))
                            .is_ok_and(|f| !f.is_empty())
                    });
                    if failed {
                        let all = self.constraints(&key.shape).join(", ");
                        out.violations.push(violation(
                            &render(v),
                            path,
                            &format!("Map keys must satisfy constraint: [{all}]"),
                        ));
                    }
                }
                if let Some(value) = &shape.value {
                    if self.is_scalar(&value.shape) {
                        let mut broken = false;
                        for item in entries.values() {
                            match self.scalar(&value.shape, item) {
                                Err(expected) => return out.wrong(path, expected, item),
                                Ok(failed) => broken |= !failed.is_empty(),
                            }
                        }
                        if broken {
                            let all = self.constraints(&value.shape).join(", ");
                            out.violations.push(violation(
                                &render(v),
                                path,
                                &format!("Map value must satisfy constraint: [{all}]"),
                            ));
                        }
                    } else {
                        for (k, item) in entries {
                            self.walk(&value.shape, item, &format!("{path}.{k}"), out);
                        }
                    }
                }
            }
            _ => match self.scalar(shape_name, v) {
                Err(expected) => out.wrong(path, expected, v),
                Ok(failed) => {
                    let shown = render(v);
                    out.violations.extend(failed.iter().map(|c| violation(&shown, path, c)));
                }
            },
        }
    }

    /// A list's or map's count against its shape's min and max.
    fn length(&self, shape: &Shape, n: usize, v: &Value, path: &str, out: &mut Walk) {
        let n = n as i64;
        if let Some(min) = shape.min.filter(|&m| n < m) {
            out.violations.push(violation(
                &render(v),
                path,
                &format!("Member must have length greater than or equal to {min}"),
            ));
        }
        if let Some(max) = shape.max.filter(|&m| n > m) {
            out.violations.push(violation(
                &render(v),
                path,
                &format!("Member must have length less than or equal to {max}"),
            ));
        }
    }

    fn is_scalar(&self, shape_name: &str) -> bool {
        self.shape(shape_name)
            .is_some_and(|s| !matches!(s.kind.as_str(), "structure" | "list" | "map"))
    }

    /// Every constraint of a scalar shape, in AWS's words (for the bracketed lists).
    fn constraints(&self, shape_name: &str) -> Vec<String> {
        let Some(s) = self.shape(shape_name) else {
            return Vec::new();
        };
        let what = if s.kind == "string" { "length" } else { "value" };
        let mut out = Vec::new();
        if let Some(max) = s.max {
            out.push(format!("Member must have {what} less than or equal to {max}"));
        }
        if let Some(min) = s.min {
            out.push(format!("Member must have {what} greater than or equal to {min}"));
        }
        if let Some(p) = &s.pattern {
            out.push(format!("Member must satisfy regular expression pattern: {p}"));
        }
        if let Some(values) = &s.enum_values {
            out.push(format!("Member must satisfy enum value set: [{}]", values.join(", ")));
        }
        out
    }

    /// The constraints of scalar shape `shape_name` that `v` breaks; `Err(expected type)` when
    /// `v` is not of the shape's JSON type.
    fn scalar(&self, shape_name: &str, v: &Value) -> Result<Vec<String>, &'static str> {
        let Some(s) = self.shape(shape_name) else {
            return Ok(Vec::new());
        };
        let mut failed = Vec::new();
        match s.kind.as_str() {
            "string" => {
                let text = v.as_str().ok_or("string")?;
                let len = text.chars().count() as i64;
                if let Some(min) = s.min.filter(|&m| len < m) {
                    failed.push(format!("Member must have length greater than or equal to {min}"));
                }
                if let Some(max) = s.max.filter(|&m| len > m) {
                    failed.push(format!("Member must have length less than or equal to {max}"));
                }
                if let (Some(p), Some(Some(re))) = (&s.pattern, self.patterns.get(shape_name)) {
                    if !re.is_match(text) {
                        failed.push(format!("Member must satisfy regular expression pattern: {p}"));
                    }
                }
                if let Some(values) = &s.enum_values {
                    if !values.iter().any(|e| e == text) {
                        failed.push(format!("Member must satisfy enum value set: [{}]", values.join(", ")));
                    }
                }
            }
            "integer" | "long" => {
                let n = v.as_i64().ok_or("integer")?;
                if let Some(min) = s.min.filter(|&m| n < m) {
                    failed.push(format!("Member must have value greater than or equal to {min}"));
                }
                if let Some(max) = s.max.filter(|&m| n > m) {
                    failed.push(format!("Member must have value less than or equal to {max}"));
                }
            }
            "boolean" => {
                v.as_bool().ok_or("boolean")?;
            }
            // Loosely: the JSON protocol sends epoch seconds; ISO strings are let through.
            "timestamp" if !(v.is_number() || v.is_string()) => return Err("timestamp"),
            "double" | "float" => {
                v.as_f64().ok_or("number")?;
            }
            _ => {}
        }
        Ok(failed)
    }
}

#[derive(Default)]
struct Walk {
    violations: Vec<String>,
    /// The first value of the wrong JSON type: the request cannot be read.
    wrong_type: Option<String>,
}

impl Walk {
    fn wrong(&mut self, path: &str, expected: &str, v: &Value) {
        if self.wrong_type.is_none() {
            let path = if path.is_empty() { "the request" } else { path };
            self.wrong_type = Some(format!(
                "Unexpected value {} at '{path}': expected a {expected}",
                render(v)
            ));
        }
    }
}

/// One violation in AWS's words. A missing member's value is `null`, unquoted, as AWS writes it.
pub fn violation(value: &str, at: &str, constraint: &str) -> String {
    if value == "null" {
        format!("Value null at '{at}' failed to satisfy constraint: {constraint}")
    } else {
        format!("Value '{value}' at '{at}' failed to satisfy constraint: {constraint}")
    }
}

/// AWS's ValidationException message for `violations` (`None`: there are none).
pub fn validation_message(violations: &[String]) -> Option<String> {
    match violations.len() {
        0 => None,
        1 => Some(format!("1 validation error detected: {}", violations[0])),
        n => Some(format!("{n} validation errors detected: {}", violations.join("; "))),
    }
}

/// `path` + `.` + `member` in lowerCamel (`ProcessingJobName` → `processingJobName`).
fn join(path: &str, member: &str) -> String {
    let mut chars = member.chars();
    let camel: String = chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default();
    if path.is_empty() {
        camel
    } else {
        format!("{path}.{camel}")
    }
}

/// A value as AWS's (Java) messages show it: strings bare, lists `[a, b]`, maps and structures
/// `{k=v, …}`.
pub fn render(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{k}={}", render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(operation: &str, input: Value) -> Result<(), String> {
        model().check_input(operation, &input).map_err(|e| e.message)
    }

    #[test]
    fn every_model_pattern_but_the_surrogate_ones_compiles() {
        let m = model();
        let skipped: Vec<&String> = m
            .patterns
            .iter()
            .filter(|(_, re)| re.is_none())
            .map(|(name, _)| name)
            .collect();
        assert_eq!(skipped, vec!["AthenaCatalog"], "only the \\uD800 pattern is skipped");
    }

    #[test]
    fn patterns_must_match_the_whole_value() {
        // ProcessingJobName's pattern matches a prefix of "ok-" but not the whole value.
        let err = check("DescribeProcessingJob", json!({"ProcessingJobName": "ok-"})).expect_err("trailing dash");
        assert_eq!(
            err,
            "1 validation error detected: Value 'ok-' at 'processingJobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
        );
        check("DescribeProcessingJob", json!({"ProcessingJobName": "ok-1"})).expect("valid name");
    }

    #[test]
    fn a_missing_required_member_is_null() {
        let err = check("StopProcessingJob", json!({})).expect_err("no name");
        assert_eq!(
            err,
            "1 validation error detected: Value null at 'processingJobName' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn several_violations_are_counted_and_joined() {
        let err = check("ListProcessingJobs", json!({"MaxResults": 0, "SortOrder": "Sideways"})).expect_err("two");
        assert!(err.starts_with("2 validation errors detected: "), "{err}");
        assert!(err.contains("Value '0' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"), "{err}");
        assert!(err.contains("Value 'Sideways' at 'sortOrder' failed to satisfy constraint: Member must satisfy enum value set: [Ascending, Descending]"), "{err}");
    }

    #[test]
    fn lengths_count_characters() {
        // 256 two-byte characters: 512 bytes, but 256 characters.
        let long_ok = "é".repeat(256);
        check(
            "AddTags",
            json!({"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/x", "Tags": [{"Key": "k", "Value": long_ok}]}),
        )
        .expect("256 characters are within TagValue's max");
    }

    #[test]
    fn lists_of_scalars_and_maps_report_their_item_constraints_in_brackets() {
        let err = check(
            "CreateProcessingJob",
            json!({
                "ProcessingJobName": "j",
                "RoleArn": "arn:aws:iam::123456789012:role/R",
                "AppSpecification": {"ImageUri": "i"},
                "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 1}},
                "NetworkConfig": {"VpcConfig": {"Subnets": ["subnet_bad"], "SecurityGroupIds": ["sg-1"]}},
                "Environment": {"1BAD": "v"},
            }),
        )
        .expect_err("bad subnet and env key");
        assert!(err.contains("Value '[subnet_bad]' at 'networkConfig.vpcConfig.subnets' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 32, Member must have length greater than or equal to 0, Member must satisfy regular expression pattern: [-0-9a-zA-Z]+]"), "{err}");
        assert!(
            err.contains("at 'environment' failed to satisfy constraint: Map keys must satisfy constraint: ["),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_a_serialization_error() {
        let err = model()
            .check_input("ListProcessingJobs", &json!({"MaxResults": "ten"}))
            .expect_err("string for an integer");
        assert_eq!(err.kind, "SerializationException");
    }

    #[test]
    fn render_shows_values_as_aws_does() {
        assert_eq!(render(&json!([{"Key": "a", "Value": "b"}])), "[{Key=a, Value=b}]");
        assert_eq!(render(&json!(3)), "3");
    }
}
