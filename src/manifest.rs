//! Reading ProcessingJob manifests from files without a cluster (for `validate`): multi-document
//! YAML such as `kustomize build` prints, ACK-style manifests too, checked against the CRD's own
//! OpenAPI schema and CEL rules (their Rust twins in [`crate::api::rules`]) so that a manifest the
//! apiserver would refuse is refused here with the field named and the same message. Objects of
//! other kinds are skipped and listed, as a GitOps repository mixes them.

use std::sync::{Arc, OnceLock};

use kube::CustomResourceExt;
use serde_json::Value;

use crate::api::{rules, ProcessingJob, GROUP, VERSION};

/// ACK's API group for SageMaker resources; its ProcessingJob manifests are accepted as-is.
pub const ACK_GROUP: &str = "sagemaker.services.k8s.aws";

/// A manifest that cannot be used, with where it came from. Lines are 1-based lines of the
/// source, so that CI annotations can point at them.
#[derive(Debug)]
pub enum ManifestError {
    Read {
        source_name: String,
        error: std::io::Error,
    },
    Yaml {
        source_name: String,
        document: usize,
        line: usize,
        error: String,
    },
    DuplicateKey {
        source_name: String,
        document: usize,
        line: usize,
        key: Option<String>,
    },
    NotAnObject {
        source_name: String,
        document: usize,
        line: usize,
        problem: String,
    },
    UnknownVersion {
        source_name: String,
        document: usize,
        line: usize,
        api_version: String,
    },
    Invalid {
        source_name: String,
        document: usize,
        line: usize,
        name: String,
        problems: Vec<Problem>,
    },
}

impl ManifestError {
    /// The file (or `<stdin>`) the error is in.
    pub fn source_name(&self) -> &str {
        match self {
            ManifestError::Read { source_name, .. }
            | ManifestError::Yaml { source_name, .. }
            | ManifestError::DuplicateKey { source_name, .. }
            | ManifestError::NotAnObject { source_name, .. }
            | ManifestError::UnknownVersion { source_name, .. }
            | ManifestError::Invalid { source_name, .. } => source_name,
        }
    }

    /// The document's number in its stream, and the line the error points at (the offending
    /// key or token where the parser knows it, else the document's first line); none for a
    /// source that could not be read.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ManifestError::Read { .. } => None,
            ManifestError::Yaml { document, line, .. }
            | ManifestError::DuplicateKey { document, line, .. }
            | ManifestError::NotAnObject { document, line, .. }
            | ManifestError::UnknownVersion { document, line, .. }
            | ManifestError::Invalid { document, line, .. } => Some((*document, *line)),
        }
    }

    /// What is wrong, without where (which [`Self::source_name`] and [`Self::position`] say).
    pub fn detail(&self) -> String {
        match self {
            ManifestError::Read { error, .. } => format!("cannot read: {error}"),
            ManifestError::Yaml { error, .. } => format!("not valid YAML: {error}"),
            ManifestError::DuplicateKey { key: Some(key), .. } => {
                format!("{key}: {}", duplicate_key_message(Some(key)))
            }
            ManifestError::DuplicateKey { key: None, .. } => duplicate_key_message(None),
            ManifestError::NotAnObject { problem, .. } => format!("not a Kubernetes object: {problem}"),
            ManifestError::UnknownVersion { api_version, .. } => format!(
                "a ProcessingJob of apiVersion {api_version:?}, which this validator does not know; \
                 expected {GROUP}/{VERSION} or ACK's {ACK_GROUP}/v1alpha1"
            ),
            ManifestError::Invalid { problems, .. } => {
                problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            }
        }
    }
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = self.source_name();
        match self {
            ManifestError::Read { .. } => write!(f, "{source}: {}", self.detail()),
            ManifestError::DuplicateKey { document, line, .. } => {
                write!(f, "{source}: document {document}: line {line}: {}", self.detail())
            }
            ManifestError::Invalid { document, name, .. } => {
                write!(f, "{source}: document {document} ({name}): {}", self.detail())
            }
            ManifestError::Yaml { document, .. }
            | ManifestError::NotAnObject { document, .. }
            | ManifestError::UnknownVersion { document, .. } => {
                write!(f, "{source}: document {document}: {}", self.detail())
            }
        }
    }
}

impl std::error::Error for ManifestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManifestError::Read { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Top-level keys that, repeated, mean two manifests were run together.
const OBJECT_KEYS: [&str; 4] = ["apiVersion", "kind", "metadata", "spec"];

/// Why a duplicate key is refused; the key itself is said by the caller.
pub fn duplicate_key_message(key: Option<&str>) -> String {
    let hint = match key {
        Some(k) if OBJECT_KEYS.contains(&k) => ": two manifests concatenated without a `---` line between them?",
        _ => "",
    };
    format!("duplicate key{hint} (kubectl apply refuses duplicate keys too)")
}

/// One reason the schema or a rule refuses an object: the field (`spec.tags[1].key`), the
/// message, and the line of the field in its source as far as it can be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    pub line: usize,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// One ProcessingJob read from a manifest.
#[derive(Debug, Clone)]
pub struct LoadedJob {
    pub source_name: String,
    pub document: usize,
    /// The document's first line with content.
    pub line: usize,
    pub job: ProcessingJob,
    /// The document's text, to point at fields and resources; none for an item of a `List`,
    /// whose document holds other objects too.
    text: Option<Arc<DocumentText>>,
}

impl LoadedJob {
    /// The line of a field of this job (`spec.networkConfig.vpcConfig`), else of its nearest
    /// enclosing field found.
    pub fn line_of_field(&self, path: &str) -> Option<usize> {
        self.text.as_ref().and_then(|t| t.line_of_field(path))
    }

    /// The first line of the job's document that mentions this word (a subnet or group ID).
    pub fn line_mentioning(&self, word: &str) -> Option<usize> {
        self.text.as_ref().and_then(|t| t.line_mentioning(word))
    }
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

/// What a stream holds: its ProcessingJobs, the other objects (skipped) and the documents
/// that could not be used. A bad document does not hide the others.
#[derive(Debug, Default)]
pub struct Manifests {
    pub jobs: Vec<LoadedJob>,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<ManifestError>,
}

impl Manifests {
    pub fn extend(&mut self, other: Manifests) {
        self.jobs.extend(other.jobs);
        self.skipped.extend(other.skipped);
        self.errors.extend(other.errors);
    }
}

/// One document of a stream: its text, where it starts, its number.
#[derive(Debug)]
struct DocumentText {
    /// 1-based number among the stream's non-empty documents.
    number: usize,
    /// Line of the document's first line of text (a comment, perhaps).
    first_line: usize,
    /// Line of its first content: what a reader should be shown.
    content_line: usize,
    text: String,
}

/// Whether a line is a document separator as `kubectl` reads streams: `---` at the start of a
/// line, followed by nothing but blanks or a comment.
fn is_separator(line: &str) -> bool {
    line.strip_prefix("---").is_some_and(|rest| {
        let rest = rest.trim();
        rest.is_empty() || rest.starts_with('#')
    })
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// Splits a YAML stream into its documents the way `kubectl apply -f` does (at separator lines,
/// see [`is_separator`]), keeping each one's position. Documents without content (blank or only
/// comments) are dropped, as kubectl drops them. Splitting before parsing lets one malformed
/// document be reported while the others are still read.
fn split_documents(text: &str) -> Vec<DocumentText> {
    let mut docs = Vec::new();
    let mut current: Option<DocumentText> = None;
    let finish = |doc: Option<DocumentText>, docs: &mut Vec<DocumentText>| {
        if let Some(mut d) = doc.filter(|d| d.content_line > 0) {
            d.number = docs.len() + 1;
            docs.push(d);
        }
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        if is_separator(line) {
            finish(current.take(), &mut docs);
            continue;
        }
        let doc = current.get_or_insert_with(|| DocumentText {
            number: 0,
            first_line: line_no,
            content_line: 0,
            text: String::new(),
        });
        if doc.content_line == 0 && is_content(line) {
            doc.content_line = line_no;
        }
        doc.text.push_str(line);
    }
    finish(current.take(), &mut docs);
    docs
}

impl DocumentText {
    /// The lines of the document with their 1-based numbers in the source.
    fn lines(&self) -> impl Iterator<Item = (usize, &str)> {
        self.text.lines().enumerate().map(|(i, l)| (self.first_line + i, l))
    }

    /// Parses the document. Duplicate keys are an error, as for `kubectl apply` (sigs.k8s.io/yaml
    /// refuses them); a parser that lets the last one win would merge two manifests run together
    /// into one object silently. Lines in messages are the source's.
    fn parse(&self, source_name: &str) -> Result<Value, ManifestError> {
        // Padding with the lines before the document makes the parser's positions the file's.
        let padded = format!("{}{}", "\n".repeat(self.first_line - 1), self.text);
        serde_saphyr::from_str::<Value>(&padded).map_err(|e| {
            let e = e.without_snippet();
            let line = e
                .location()
                .and_then(|l| usize::try_from(l.line()).ok())
                .filter(|l| *l > 0)
                .unwrap_or(self.content_line);
            match e {
                serde_saphyr::Error::DuplicateMappingKey { key, .. } => ManifestError::DuplicateKey {
                    source_name: source_name.to_string(),
                    document: self.number,
                    line,
                    key: key.clone(),
                },
                other => ManifestError::Yaml {
                    source_name: source_name.to_string(),
                    document: self.number,
                    line,
                    error: other.to_string(),
                },
            }
        })
    }

    /// The line of a field given as a path (`spec.processingResources.clusterConfig`, indices
    /// such as `[1]` end the search at their list), found by following the keys of the block
    /// mappings (JSON's quoted keys too); the deepest key found wins. Keys inside a flow mapping
    /// (`{instanceCount: 0}`) are on the line of their parent.
    fn line_of_field(&self, path: &str) -> Option<usize> {
        let lines: Vec<(usize, &str)> = self.lines().collect();
        let mut found: Option<(usize, usize)> = None; // (index into lines, indentation)
        for segment in path.split('.') {
            let (key, indexed) = match segment.split_once('[') {
                Some((key, _)) => (key, true),
                None => (segment, false),
            };
            let start = found.map_or(0, |(i, _)| i + 1);
            let parent_indent = found.map(|(_, indent)| indent);
            let mut next = None;
            for (i, (_, line)) in lines.iter().enumerate().skip(start) {
                if !is_content(line) {
                    continue;
                }
                let indent = line.len() - line.trim_start().len();
                if parent_indent.is_some_and(|p| indent <= p) {
                    break; // left the parent's block
                }
                let body = line.trim_start().trim_start_matches("- ");
                let body = body.trim_start_matches(['{', ' ']);
                if key_of(body) == Some(key) {
                    next = Some((i, indent));
                    break;
                }
            }
            match next {
                Some(n) => found = Some(n),
                None => break,
            }
            if indexed {
                break;
            }
        }
        found.map(|(i, _)| lines[i].0)
    }

    /// The first line that mentions a word (as a whole word: `subnet-1` is not in `subnet-12`).
    fn line_mentioning(&self, word: &str) -> Option<usize> {
        if word.is_empty() {
            return None;
        }
        let part_of_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        self.lines()
            .find(|(_, line)| {
                line.match_indices(word).any(|(at, _)| {
                    let before = line[..at].chars().next_back();
                    let after = line[at + word.len()..].chars().next();
                    !before.is_some_and(part_of_word) && !after.is_some_and(part_of_word)
                })
            })
            .map(|(n, _)| n)
    }
}

/// The key of a `key: value` (or `"key": value`) line.
fn key_of(body: &str) -> Option<&str> {
    let (key, _) = body.split_once(':')?;
    let key = key.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    Some(key)
}

/// Parses every document of a YAML stream (a `v1` `List` counts as its items). Documents without
/// content are ignored, objects of other kinds skipped; malformed YAML, duplicate keys, a
/// document that is no object and a ProcessingJob the schema refuses are errors of that document,
/// and the documents after it are still read.
pub fn parse_documents(source_name: &str, text: &str) -> Manifests {
    let mut out = Manifests::default();
    for doc in split_documents(text) {
        let value = match doc.parse(source_name) {
            Ok(v) => v,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        let doc = Arc::new(doc);
        let (objects, text) = match value {
            Value::Object(ref o) if o.get("kind").and_then(Value::as_str) == Some("List") => (
                o.get("items").and_then(Value::as_array).cloned().unwrap_or_default(),
                None,
            ),
            other => (vec![other], Some(doc.clone())),
        };
        for object in objects {
            match parse_object(source_name, &doc, text.clone(), object) {
                Ok(Parsed::Job(job)) => out.jobs.push(*job),
                Ok(Parsed::Other(skipped)) => out.skipped.push(skipped),
                Err(e) => out.errors.push(e),
            }
        }
    }
    out
}

enum Parsed {
    Job(Box<LoadedJob>),
    Other(Skipped),
}

fn parse_object(
    source_name: &str,
    doc: &DocumentText,
    text: Option<Arc<DocumentText>>,
    mut value: Value,
) -> Result<Parsed, ManifestError> {
    let (document, line) = (doc.number, doc.content_line);
    let not_an_object = |problem: &str| ManifestError::NotAnObject {
        source_name: source_name.to_string(),
        document,
        line,
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
            line: text
                .as_ref()
                .and_then(|t| t.line_of_field("apiVersion"))
                .unwrap_or(line),
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
    let mut problems = Vec::new();
    if value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        problems.push(("metadata.name".to_string(), "required".to_string()));
    }
    match value.get("spec") {
        Some(spec) => check_schema(spec_schema(), spec, "spec", &mut problems),
        None => problems.push(("spec".to_string(), "required".to_string())),
    }
    // ACK manifests differ only in apiVersion.
    value["apiVersion"] = Value::String(format!("{GROUP}/{VERSION}"));
    let job = if problems.is_empty() {
        serde_path_to_error::deserialize::<_, ProcessingJob>(value)
            .map_err(|e| problems.push((e.path().to_string(), e.inner().to_string())))
            .ok()
    } else {
        None
    };
    match job {
        Some(job) => Ok(Parsed::Job(Box::new(LoadedJob {
            source_name: source_name.to_string(),
            document,
            line,
            job,
            text,
        }))),
        None => Err(ManifestError::Invalid {
            source_name: source_name.to_string(),
            document,
            line,
            name,
            problems: problems
                .into_iter()
                .map(|(field, message)| Problem {
                    line: text.as_ref().and_then(|t| t.line_of_field(&field)).unwrap_or(line),
                    field,
                    message,
                })
                .collect(),
        }),
    }
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
/// apiserver's alone). Each problem is (field, message); messages read as the apiserver's.
pub fn check_schema(schema: &Value, v: &Value, path: &str, problems: &mut Vec<(String, String)>) {
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
            problems.push((path.to_string(), format!("must be of type {ty}, got {v}")));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let list: Vec<String> = options
                .iter()
                .map(|o| o.as_str().map(str::to_string).unwrap_or_else(|| o.to_string()))
                .collect();
            problems.push((path.to_string(), format!("must be one of {}, got {v}", list.join(", "))));
        }
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    match v {
        Value::String(s) => {
            let len = s.chars().count() as f64;
            if num("minLength").is_some_and(|m| len < m) || num("maxLength").is_some_and(|m| len > m) {
                problems.push((
                    path.to_string(),
                    format!(
                        "length {len} outside {}..{}",
                        num("minLength").unwrap_or(0.0),
                        num("maxLength").map(|m| m.to_string()).unwrap_or_else(|| "∞".into())
                    ),
                ));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        problems.push((path.to_string(), format!("{s:?} does not match {pattern}")))
                    }
                    _ => {}
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = num("minimum").filter(|m| x < *m) {
                problems.push((path.to_string(), format!("{n} is less than the minimum {min}")));
            }
            if let Some(max) = num("maximum").filter(|m| x > *m) {
                problems.push((path.to_string(), format!("{n} is more than the maximum {max}")));
            }
        }
        Value::Array(items) => {
            let n = items.len() as f64;
            if let Some(min) = num("minItems").filter(|m| n < *m) {
                problems.push((path.to_string(), format!("needs at least {min} items, has {n}")));
            }
            if let Some(max) = num("maxItems").filter(|m| n > *m) {
                problems.push((path.to_string(), format!("allows at most {max} items, has {n}")));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
            if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        problems.push((format!("{path}[{i}]"), format!("Duplicate value: {item}")));
                    }
                }
            }
        }
        Value::Object(map) => {
            if let Some(max) = num("maxProperties").filter(|m| map.len() as f64 > *m) {
                problems.push((
                    path.to_string(),
                    format!("allows at most {max} entries, has {}", map.len()),
                ));
            }
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !map.contains_key(req) {
                    problems.push((format!("{path}.{req}"), "required".to_string()));
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
                    (None, _) => problems.push((child_path.clone(), "unknown field".to_string())),
                }
            }
        }
        _ => {}
    }
    check_rules(schema, v, path, problems);
}

/// The CEL rules attached to this node, through their Rust twins.
fn check_rules(schema: &Value, v: &Value, path: &str, problems: &mut Vec<(String, String)>) {
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
                problems.push((path.to_string(), twin.message.to_string()));
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

    /// What a stream holds; panics when a document is refused.
    fn accepted(source: &str, text: &str) -> Manifests {
        let found = parse_documents(source, text);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        found
    }

    /// The errors of a stream, as one text; panics when there is none.
    fn refused(source: &str, text: &str) -> String {
        let found = parse_documents(source, text);
        assert!(!found.errors.is_empty(), "accepted: {text}");
        found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

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
        let found = accepted("f.yaml", &format!("---\n{VALID}\n---\n"));
        assert_eq!(found.jobs.len(), 1);
        assert_eq!(found.jobs[0].job.spec.instance_count(), 1);
    }

    #[test]
    fn accepts_ack_manifests() {
        let ack = VALID.replace(
            "sagemaker.processing.dev/v1alpha1",
            "sagemaker.services.k8s.aws/v1alpha1",
        );
        assert_eq!(accepted("f.yaml", &ack).jobs.len(), 1);
    }

    #[test]
    fn names_file_document_and_field() {
        let bad = format!(
            "{VALID}\n---\n{}",
            VALID.replace("instanceCount: 1", "instanceCount: 101")
        );
        let err = refused("f.yaml", &bad);
        assert!(
            err.contains("f.yaml")
                && err.contains("document 2")
                && err.contains("spec.processingResources.clusterConfig.instanceCount"),
            "{err}"
        );
        let typo = VALID.replace("roleARN", "roleArn");
        let err = refused("f.yaml", &typo);
        assert!(
            err.contains("spec.roleArn: unknown field") && err.contains("spec.roleARN: required"),
            "{err}"
        );
        let err = refused("f.yaml", "- a\n- b\n");
        assert!(err.contains("document 1: not a Kubernetes object"), "{err}");
        let err = refused("f.yaml", "metadata: {name: x}\n");
        assert!(err.contains("apiVersion and kind are required"), "{err}");
        let beta = VALID.replace("v1alpha1", "v1beta1");
        let err = refused("f.yaml", &beta);
        assert!(err.contains("sagemaker.processing.dev/v1beta1"), "{err}");
    }

    #[test]
    fn other_kinds_are_skipped_and_listed() {
        let stream = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\n---\n{VALID}\n---\n\
             apiVersion: sagemaker.services.k8s.aws/v1alpha1\nkind: TrainingJob\nmetadata: {{name: t}}\n"
        );
        let found = accepted("k.yaml", &stream);
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
        let found = accepted("l.yaml", &list);
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
            let err = refused("f.yaml", &with(extra));
            assert!(err.contains(expected), "expected {expected:?} in {err}");
        }
    }

    #[test]
    fn documents_split_as_kubectl_splits_them_with_their_lines() {
        let stream = "# leading comment\n---\na: 1\n--- # two\n\n# only a comment\n---\nb: |\n  text\n  --- not a separator\n---\n--- {c: 3}\n";
        let docs = split_documents(stream);
        let seen: Vec<(usize, usize, usize)> = docs.iter().map(|d| (d.number, d.first_line, d.content_line)).collect();
        // The comment-only document is dropped; `--- {c: 3}` is content, not a separator (kubectl's rule).
        assert_eq!(seen, [(1, 3, 3), (2, 8, 8), (3, 12, 12)], "{docs:?}");
        assert!(docs[1].text.contains("--- not a separator"));
        assert_eq!(split_documents("").len(), 0);
        assert_eq!(split_documents("\n# nothing\n---\n").len(), 0);
    }

    /// Two manifests concatenated without `---` are one mapping with every top-level key twice:
    /// refused with the file, document, line and key, never merged into one object.
    #[test]
    fn duplicate_keys_are_refused_not_merged() {
        let other = VALID.replace("name: ok", "name: other");
        let stream = format!("{VALID}{other}");
        let found = parse_documents("two.yaml", &stream);
        assert!(
            found.jobs.is_empty(),
            "merged into {:?}",
            found.jobs.first().map(|j| &j.job.metadata.name)
        );
        let [e] = found.errors.as_slice() else {
            panic!("{:?}", found.errors)
        };
        let second_api_version = stream.lines().position(|l| l.starts_with("apiVersion")).map(|first| {
            first
                + 2
                + stream
                    .lines()
                    .skip(first + 1)
                    .position(|l| l.starts_with("apiVersion"))
                    .unwrap_or(0)
        });
        assert_eq!(e.position().map(|(_, line)| line), second_api_version, "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("two.yaml: document 1: line ")
                && text.contains("apiVersion: duplicate key: ")
                && text.contains("without a `---`"),
            "{text}"
        );
        // Nested too, with the key's own line.
        let nested = VALID.replace("roleARN:", "roleARN: arn:aws:iam::123456789012:role/Other\n  roleARN:");
        let found = parse_documents("n.yaml", &nested);
        let text = found.errors.iter().map(ToString::to_string).collect::<String>();
        assert!(
            text.contains("line 7: roleARN: duplicate key (kubectl") && !text.contains("concatenated"),
            "{text}"
        );
    }

    #[test]
    fn a_bad_document_does_not_hide_the_others() {
        let stream = format!(
            "{VALID}---\nkind: [unclosed\n---\n{}---\n{}---\n{}",
            VALID.replace("name: ok", "name: second"),
            VALID.replace("instanceCount: 1", "instanceCount: 0"),
            VALID.replace("name: ok", "name: fourth")
        );
        let found = parse_documents("s.yaml", &stream);
        let names: Vec<_> = found.jobs.iter().filter_map(|j| j.job.metadata.name.clone()).collect();
        assert_eq!(names, ["ok", "second", "fourth"]);
        let errors: Vec<_> = found.errors.iter().map(|e| (e.position(), e.to_string())).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        let unclosed = stream.lines().position(|l| l.contains("[unclosed")).map(|i| i + 1);
        assert_eq!(errors[0].0.map(|(d, _)| d), Some(2));
        assert_eq!(errors[0].0.map(|(_, l)| l), unclosed, "{errors:?}");
        assert!(errors[0].1.contains("s.yaml: document 2: not valid YAML"), "{errors:?}");
        // The refused job points at its field's line.
        let ManifestError::Invalid { problems, document, .. } = &found.errors[1] else {
            panic!("{errors:?}")
        };
        let count_line = stream
            .lines()
            .position(|l| l.contains("instanceCount: 0"))
            .map(|i| i + 1);
        assert_eq!((*document, Some(problems[0].line)), (4, count_line), "{problems:?}");
        assert_eq!(
            problems[0].field,
            "spec.processingResources.clusterConfig.instanceCount"
        );
    }

    #[test]
    fn fields_and_resources_are_found_on_their_lines() {
        let text = "\n---\n# job\napiVersion: v1\nspec:\n  networkConfig:\n    vpcConfig:\n      subnets:\n      - subnet-12\n      - subnet-1\n  processingResources:\n    clusterConfig: {instanceCount: 0}\n";
        let doc = &split_documents(text)[0];
        assert_eq!(doc.content_line, 4);
        assert_eq!(doc.line_of_field("spec.networkConfig.vpcConfig.subnets[1]"), Some(8));
        assert_eq!(
            doc.line_of_field("spec.processingResources.clusterConfig.instanceCount"),
            Some(12)
        );
        assert_eq!(
            doc.line_of_field("spec.stoppingCondition"),
            Some(5),
            "the nearest parent"
        );
        assert_eq!(doc.line_of_field("metadata.name"), None);
        assert_eq!(doc.line_mentioning("subnet-1"), Some(10), "a whole word only");
        assert_eq!(doc.line_mentioning("subnet-9"), None);
        let json = "{\n  \"apiVersion\": \"v1\",\n  \"spec\": {\n    \"region\": \"x\"\n  }\n}\n";
        assert_eq!(split_documents(json)[0].line_of_field("spec.region"), Some(4));
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
