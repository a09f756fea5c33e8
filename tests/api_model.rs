//! The contract is SageMaker's published API model, not our memory of it.
//!
//! The model is botocore's `sagemaker` service model, pinned with moto in the stack's venv
//! (`MOTO_PYTHON`). These tests
//! 1. extract the processing-job part of it with `scripts/sagemaker-model` and check that the copy
//!    the simulator embeds (`tests/sagemaker-sim/model/sagemaker-processing.json`, from which the
//!    simulator derives its request validation) is exactly that;
//! 2. check the CRD (`crds/processingjobs.yaml`) against `CreateProcessingJobRequest`, constraint
//!    by constraint — required members, enums (instance types included), string lengths and
//!    patterns, integer bounds, list and map sizes, map keys and values (CEL rules) — and find
//!    every place where the two differ. A place where the CRD accepts what SageMaker refuses
//!    fails the test; a place where the CRD is stricter, or a member the CRD leaves out, must be
//!    listed with its reason in docs/aws-fidelity.md (and every listed place must still differ,
//!    so the list stays true).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use smpc_test_support::{repo_root, stack};

const CHECKED_IN: &str = "tests/sagemaker-sim/model/sagemaker-processing.json";
const DOC: &str = "docs/aws-fidelity.md";

/// The extraction from the stack's pinned botocore.
fn model_from_botocore() -> Value {
    let s = stack();
    let out = Command::new(s.var("MOTO_PYTHON"))
        .arg(repo_root().join("scripts/sagemaker-model"))
        .output()
        .expect("run scripts/sagemaker-model with the stack's Python");
    assert!(
        out.status.success(),
        "scripts/sagemaker-model: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the extraction is JSON")
}

fn checked_in_model() -> Value {
    let text = std::fs::read_to_string(repo_root().join(CHECKED_IN)).expect("read the checked-in model");
    serde_json::from_str(&text).expect("the checked-in model is JSON")
}

fn crd_spec_schema() -> Value {
    let text = std::fs::read_to_string(repo_root().join("crds/processingjobs.yaml")).expect("read the CRD");
    let crd: Value = serde_yaml_ng::from_str(&text).expect("the CRD is YAML");
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .cloned()
        .expect("the CRD has a spec schema")
}

#[test]
fn the_simulators_model_is_the_pinned_botocores() {
    let pinned = model_from_botocore();
    println!(
        "SageMaker API model: botocore {} (API version {})",
        pinned["botocore"].as_str().unwrap_or("?"),
        pinned["apiVersion"].as_str().unwrap_or("?")
    );
    assert!(
        pinned == checked_in_model(),
        "{CHECKED_IN} differs from the pinned botocore's model: regenerate it with \
         `$MOTO_PYTHON scripts/sagemaker-model > {CHECKED_IN}` (and src/api/instance_types.rs with \
         `--instance-types`), then look at what changed"
    );
}

#[test]
fn the_crds_instance_types_are_the_models() {
    let model = model_from_botocore();
    let listed: Vec<&str> = model["shapes"]["ProcessingInstanceType"]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        smpc::api::instance_types::PROCESSING_INSTANCE_TYPES.to_vec(),
        listed,
        "src/api/instance_types.rs: regenerate with `$MOTO_PYTHON scripts/sagemaker-model --instance-types`"
    );
    assert!(listed.contains(&"ml.m7i-flex.large"), "the flex types are SageMaker's");
}

/// Where the CRD and the model differ: `(path, constraint)`, and whether the CRD is looser there.
#[derive(Default)]
struct Differences {
    stricter: BTreeSet<(String, String)>,
    looser: BTreeSet<(String, String)>,
}

struct Walk<'a> {
    shapes: &'a Value,
    out: Differences,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// The CEL rules (`x-kubernetes-validations`) of a schema, as text.
fn cel_rules(schema: &Value) -> Vec<String> {
    schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["rule"].as_str().map(str::to_string))
        .collect()
}

/// The strings of the array at `key` (a schema's or a shape's `required`).
fn strings<'a>(v: &'a Value, key: &str) -> BTreeSet<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A model pattern every string within the length bounds satisfies.
fn trivial_pattern(p: &str) -> bool {
    // `+` forms only add "not empty", which the model's `min` says again (and is compared).
    matches!(p, r"[\S\s]*" | r"[\s\S]*" | r"[\S\s]+" | r"[\s\S]+")
}

impl Walk<'_> {
    fn shape(&self, name: &str) -> &Value {
        &self.shapes[name]
    }

    fn stricter(&mut self, path: &str, what: &str) {
        self.out.stricter.insert((path.to_string(), what.to_string()));
    }

    fn looser(&mut self, path: &str, what: &str) {
        self.out.looser.insert((path.to_string(), what.to_string()));
    }

    /// Lower bounds: the model's `min` against the CRD's `key` (absent = 0).
    fn lower(&mut self, path: &str, model: &Value, crd: &Value, key: &str) {
        let (m, c) = (num(model, "min").unwrap_or(0.0), num(crd, key).unwrap_or(0.0));
        if c > m {
            self.stricter(path, key);
        } else if c < m {
            self.looser(path, &format!("{key} {c} < SageMaker's min {m}"));
        }
    }

    /// Upper bounds: the model's `max` against the CRD's `key` (absent = unbounded).
    fn upper(&mut self, path: &str, model: &Value, crd: &Value, key: &str) {
        match (num(model, "max"), num(crd, key)) {
            (Some(m), Some(c)) if c < m => self.stricter(path, key),
            (Some(m), Some(c)) if c > m => self.looser(path, &format!("{key} {c} > SageMaker's max {m}")),
            (Some(m), None) => self.looser(path, &format!("no {key} (SageMaker's max {m})")),
            (None, Some(_)) => self.stricter(path, key),
            _ => {}
        }
    }

    fn member(&mut self, path: &str, shape_name: &str, crd: &Value) {
        let shape = self.shape(shape_name).clone();
        let ty = shape["type"].as_str().unwrap_or_default();
        match ty {
            "structure" => self.structure(path, &shape, crd),
            "list" => {
                self.lower(path, &shape, crd, "minItems");
                self.upper(path, &shape, crd, "maxItems");
                let item = shape["member"]["shape"].as_str().unwrap_or_default().to_string();
                let items = crd.get("items").cloned().unwrap_or(Value::Null);
                self.member(&format!("{path}[]"), &item, &items);
            }
            "map" => {
                self.lower(path, &shape, crd, "minProperties");
                self.upper(path, &shape, crd, "maxProperties");
                let rules = cel_rules(crd);
                // Keys cannot carry a schema: their constraints are CEL rules on the map.
                let key = self.shape(shape["key"]["shape"].as_str().unwrap_or_default()).clone();
                let key_path = format!("{path}{{key}}");
                if let Some(p) = key["pattern"].as_str().filter(|p| !trivial_pattern(p)) {
                    if !rules.iter().any(|r| r.contains(&format!("matches('^{p}$')"))) {
                        self.looser(&key_path, &format!("no CEL rule for SageMaker's pattern {p}"));
                    }
                }
                if let Some(max) = num(&key, "max") {
                    if !rules.iter().any(|r| r.contains(&format!("size(k) <= {max}"))) {
                        self.looser(&key_path, &format!("no CEL rule for SageMaker's max length {max}"));
                    }
                }
                let value = self.shape(shape["value"]["shape"].as_str().unwrap_or_default()).clone();
                let value_path = format!("{path}{{value}}");
                if let Some(p) = value["pattern"].as_str().filter(|p| !trivial_pattern(p)) {
                    self.looser(&value_path, &format!("SageMaker's pattern {p} is not checked"));
                }
                if let Some(max) = num(&value, "max") {
                    let by_rule = rules.iter().any(|r| r.contains(&format!("size(self[k]) <= {max}")));
                    let by_schema = num(&crd["additionalProperties"], "maxLength") == Some(max);
                    if !(by_rule || by_schema) {
                        self.looser(&value_path, &format!("no check of SageMaker's max length {max}"));
                    }
                }
            }
            "string" => self.string(path, &shape, crd),
            "integer" | "long" => {
                if crd["type"] != "integer" {
                    self.looser(path, &format!("type {} (SageMaker: integer)", crd["type"]));
                }
                self.lower(path, &shape, crd, "minimum");
                self.upper(path, &shape, crd, "maximum");
            }
            "boolean" => {
                if crd["type"] != "boolean" {
                    self.looser(path, &format!("type {} (SageMaker: boolean)", crd["type"]));
                }
            }
            other => self.looser(path, &format!("a {other} member this test does not compare")),
        }
    }

    fn string(&mut self, path: &str, shape: &Value, crd: &Value) {
        if crd["type"] != "string" {
            self.looser(path, &format!("type {} (SageMaker: string)", crd["type"]));
        }
        let crd_enum: Option<BTreeSet<&str>> = crd
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(Value::as_str).collect());
        let model_enum: Option<BTreeSet<&str>> = shape
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().filter_map(Value::as_str).collect());
        match (&model_enum, &crd_enum) {
            (Some(m), Some(c)) => {
                let extra: Vec<_> = c.difference(m).collect();
                let missing: Vec<_> = m.difference(c).collect();
                if !extra.is_empty() {
                    self.looser(path, &format!("enum values SageMaker refuses: {extra:?}"));
                }
                if !missing.is_empty() {
                    self.looser(path, &format!("enum lacks values SageMaker accepts: {missing:?}"));
                }
            }
            (Some(m), None) => self.looser(path, &format!("no enum (SageMaker's: {m:?})")),
            (None, Some(_)) => self.stricter(path, "enum"),
            (None, None) => {}
        }
        self.lower(path, shape, crd, "minLength");
        self.upper(path, shape, crd, "maxLength");
        let model_pattern = shape["pattern"].as_str().filter(|p| !trivial_pattern(p));
        match (model_pattern, crd["pattern"].as_str()) {
            (Some(m), Some(c)) if c == format!("^{m}$") => {}
            (Some(_), Some(_)) => self.stricter(path, "pattern"),
            (Some(m), None) if model_enum.is_none() => self.looser(path, &format!("no pattern (SageMaker's: {m})")),
            (None, Some(_)) => self.stricter(path, "pattern"),
            _ => {}
        }
    }

    fn structure(&mut self, path: &str, shape: &Value, crd: &Value) {
        let properties = crd
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let (crd_required, model_required) = (strings(crd, "required"), strings(shape, "required"));
        let mut matched = BTreeSet::new();
        let join = |field: &str| {
            if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        let members = shape["members"].as_object().cloned().unwrap_or_default();
        for (name, member) in &members {
            // ACK's casing: the model's name with other letter cases (`S3Uri` → `s3URI`).
            let Some((field, schema)) = properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else {
                let mut camel = name.clone();
                camel[..1].make_ascii_lowercase();
                if model_required.contains(name.as_str()) {
                    self.looser(&join(&camel), "required by SageMaker, absent from the CRD");
                } else {
                    self.stricter(&join(&camel), "absent");
                }
                continue;
            };
            matched.insert(field.clone());
            let field_path = join(field);
            match (
                model_required.contains(name.as_str()),
                crd_required.contains(field.as_str()),
            ) {
                // Unless the controller fills it in (listed as `defaulted` in the doc).
                (true, false) => self.stricter(&field_path, "defaulted"),
                (false, true) => self.stricter(&field_path, "required"),
                _ => {}
            }
            self.member(&field_path, member["shape"].as_str().unwrap_or_default(), schema);
        }
        for field in properties.keys().filter(|k| !matched.contains(*k)) {
            self.stricter(&join(field), "added");
        }
    }
}

/// The places docs/aws-fidelity.md lists as stricter: the rows of the table between its markers,
/// `| `path` | constraint | ... |`.
fn listed_in_doc() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join(DOC)).expect("read docs/aws-fidelity.md");
    let start = text
        .find("<!-- stricter:begin -->")
        .expect("the doc's stricter:begin marker");
    let end = text
        .find("<!-- stricter:end -->")
        .expect("the doc's stricter:end marker");
    text[start..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let path = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let what = cells.get(2)?.trim_matches('`');
            Some((path.to_string(), what.to_string()))
        })
        .collect()
}

#[test]
fn the_crd_accepts_what_create_processing_job_accepts_and_lists_where_it_is_stricter() {
    let model = model_from_botocore();
    let request = model["operations"]["CreateProcessingJob"]["input"]
        .as_str()
        .expect("CreateProcessingJob's input shape")
        .to_string();
    let mut walk = Walk {
        shapes: &model["shapes"],
        out: Differences::default(),
    };
    let shape = walk.shape(&request).clone();
    walk.structure("", &shape, &crd_spec_schema());
    let Differences { stricter, looser } = walk.out;
    println!("compared the CRD with {request} of botocore {}", model["botocore"]);
    for (path, what) in &stricter {
        println!("  stricter: {path} ({what})");
    }
    assert!(
        looser.is_empty(),
        "the CRD accepts what SageMaker refuses:\n{}",
        looser
            .iter()
            .map(|(p, w)| format!("  {p}: {w}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let listed = listed_in_doc();
    let unlisted: Vec<_> = stricter.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&stricter).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "{DOC} must list exactly where the CRD is stricter than SageMaker.\nnot listed: {unlisted:#?}\nlisted but not stricter: {stale:#?}"
    );
}

/// The walk itself finds what it must: a looser bound, a missing enum, a stricter pattern.
#[test]
fn the_comparison_tells_looser_from_stricter() {
    let shapes = serde_json::json!({
        "Req": {"type": "structure", "members": {"Name": {"shape": "Name"}, "Kind": {"shape": "Kind"}, "Count": {"shape": "Count"}}, "required": ["Name"]},
        "Name": {"type": "string", "min": 1, "max": 63, "pattern": "[a-z]+"},
        "Kind": {"type": "string", "enum": ["A", "B"]},
        "Count": {"type": "integer", "min": 1, "max": 100},
    });
    let run = |crd: Value| {
        let mut walk = Walk {
            shapes: &shapes,
            out: Differences::default(),
        };
        let shape = walk.shape("Req").clone();
        walk.structure("", &shape, &crd);
        walk.out
    };
    let exact = serde_json::json!({"required": ["name"], "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": "^[a-z]+$"},
        "kind": {"type": "string", "enum": ["A", "B"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 100}}});
    let d = run(exact.clone());
    assert!(
        d.looser.is_empty() && d.stricter.is_empty(),
        "{:?} {:?}",
        d.looser,
        d.stricter
    );
    let mut loose = exact.clone();
    loose["properties"]["count"]["maximum"] = 101.into();
    loose["properties"]["kind"]["enum"] = serde_json::json!(["A"]);
    loose["properties"]["name"].as_object_mut().map(|o| o.remove("pattern"));
    loose["required"] = serde_json::json!([]);
    let d = run(loose);
    let paths: BTreeSet<&str> = d.looser.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, BTreeSet::from(["count", "kind", "name"]), "{:?}", d.looser);
    let mut strict = exact;
    strict["properties"]["name"]["pattern"] = "^[a-z]+x$".into();
    strict["properties"]["extra"] = serde_json::json!({"type": "string"});
    let d = run(strict);
    assert_eq!(
        d.stricter,
        BTreeSet::from([("extra".into(), "added".into()), ("name".into(), "pattern".into())])
    );
    assert!(d.looser.is_empty());
}
