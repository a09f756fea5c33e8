//! Evaluation of a VPC endpoint policy for the S3 requests a job makes.
//!
//! IAM's rules as they apply to endpoint policies: statements match on principal, action
//! (case-insensitive, `*` and `?` wildcards), resource (case-sensitive wildcards) and
//! condition; an explicit Deny wins over any Allow; without a matching Allow the request is
//! implicitly denied, whatever else the policy says.
//!
//! What the job's requests carry is partly known: the role, the endpoint and VPC they go
//! through, TLS. Everything else is *unknown*, never assumed absent: a statement whose
//! principal or condition depends on it has an unknown outcome, and a decision that depends
//! on such a statement is *unevaluable* (a Warning), never a silent pass or a wrong Error.
//!
//! A request may touch many resources at once (every object under a prefix): a Deny that
//! matches any of them denies it, and an Allow must match all of them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::partition::Partition;
use crate::wildcard;
/// Re-exported for the fuzz target and the property tests, which reach it through this module.
pub use crate::wildcard::wildcard_match;

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// One policy statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: PrincipalMatch,
    pub actions: Matcher,
    pub resources: Matcher,
    /// operator → key → values
    pub conditions: Vec<ConditionClause>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// Which principals a statement applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum PrincipalMatch {
    /// No Principal element: endpoint policies then apply to everyone.
    Any,
    /// `Principal` with the listed AWS principals (`*` allowed).
    Only(Vec<String>),
    /// `NotPrincipal`: everyone except the listed principals.
    Except(Vec<String>),
}

/// `Action`/`NotAction` or `Resource`/`NotResource` patterns.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    Any(Vec<String>),
    Not(Vec<String>),
}

/// One `Operator: {key: values}` entry of a Condition block.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionClause {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

/// Why a policy document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid JSON: {0}")]
    Json(String),
    #[error("the policy has no Statement")]
    NoStatement,
    #[error("statement {index}: {problem}")]
    Statement { index: usize, problem: String },
}

/// The resources a request may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resources<'a> {
    /// One ARN: a bucket, or an object the job names.
    One(&'a str),
    /// Every ARN that starts with this text: every object under a key prefix, which the job
    /// lists and reads (or writes) whatever their names.
    StartingWith(&'a str),
}

/// What is known about a request's condition keys. A key is known with a value, known to be
/// absent from the request, or not known at all; only the last makes a condition unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Lower-cased key → value.
    values: BTreeMap<String, String>,
    /// Lower-cased keys that AWS does not put in this request.
    absent: BTreeSet<String>,
}

/// What the context says about one key.
enum Known<'a> {
    Value(&'a str),
    Absent,
    Unknown,
}

impl Context {
    /// The key has this value in the request.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        let key = key.to_lowercase();
        self.absent.remove(&key);
        self.values.insert(key, value.into());
        self
    }

    /// The key is not in the request.
    pub fn without(mut self, key: &str) -> Self {
        let key = key.to_lowercase();
        self.values.remove(&key);
        self.absent.insert(key);
        self
    }

    fn get(&self, key: &str) -> Known<'_> {
        let key = key.to_lowercase();
        match self.values.get(&key) {
            Some(v) => Known::Value(v),
            None if self.absent.contains(&key) => Known::Absent,
            None => Known::Unknown,
        }
    }
}

/// A request the job makes through the endpoint.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub action: &'a str,
    pub resources: Resources<'a>,
    /// The condition keys of this request.
    pub context: &'a Context,
    /// The principal making the request (the job's role ARN).
    pub principal_arn: &'a str,
    /// The partition of the job's region (`aws`, `aws-cn`, `aws-us-gov`), for account
    /// principals.
    pub partition: Partition,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Denied: by an explicit Deny statement (its Sid, if any), or implicitly (no Allow).
    Denied {
        explicit: bool,
        sid: Option<String>,
    },
    /// Allowed only if a condition or principal that cannot be decided from the job says so.
    Unevaluable {
        key: String,
    },
}

/// What the Deny statements say about a request: whether one matches any resource it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    None,
    /// A Deny statement matches (its Sid, if any).
    Explicit {
        sid: Option<String>,
    },
    /// A Deny statement matches unless a condition or principal it cannot decide says otherwise.
    Unknown {
        key: String,
    },
}

/// What the Allow statements say about a request: whether one matches every resource it may
/// touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Yes,
    /// Only statements whose condition or principal cannot be decided.
    Unknown {
        key: String,
    },
    No,
}

impl Grant {
    /// The better of two grants: the request works when either way of reading it is allowed.
    pub fn or(self, other: Grant) -> Grant {
        match (self, other) {
            (Grant::Yes, _) | (_, Grant::Yes) => Grant::Yes,
            (u @ Grant::Unknown { .. }, _) | (_, u @ Grant::Unknown { .. }) => u,
            _ => Grant::No,
        }
    }
}

/// IAM's rule: an explicit Deny wins; without an Allow the request is denied, whatever an
/// undecidable Deny would say; otherwise anything undecidable leaves the outcome unknown.
pub fn decide(denial: Denial, grant: Grant) -> Decision {
    match (denial, grant) {
        (Denial::Explicit { sid }, _) => Decision::Denied { explicit: true, sid },
        (_, Grant::No) => Decision::Denied {
            explicit: false,
            sid: None,
        },
        (Denial::Unknown { key }, _) | (Denial::None, Grant::Unknown { key }) => Decision::Unevaluable { key },
        (Denial::None, Grant::Yes) => Decision::Allowed,
    }
}

fn strings(v: &Value, what: &str, index: usize) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                other => Err(PolicyError::Statement {
                    index,
                    problem: format!("{what} has a non-string entry {other}"),
                }),
            })
            .collect(),
        other => Err(PolicyError::Statement {
            index,
            problem: format!("{what} must be a string or a list, got {other}"),
        }),
    }
}

fn principals(v: &Value, index: usize) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(vec!["*".into()]),
        Value::Object(map) => {
            let mut out = Vec::new();
            for (kind, ids) in map {
                let ids = strings(ids, "Principal", index)?;
                if kind == "AWS" {
                    out.extend(ids);
                } else {
                    // Service or federated principals never match the job's role.
                    out.extend(ids.into_iter().map(|i| format!("{kind}:{i}")));
                }
            }
            Ok(out)
        }
        other => Err(PolicyError::Statement {
            index,
            problem: format!("Principal must be \"*\" or an object, got {other}"),
        }),
    }
}

fn matcher(obj: &serde_json::Map<String, Value>, name: &str, index: usize) -> Result<Matcher, PolicyError> {
    let not_name = format!("Not{name}");
    match (obj.get(name), obj.get(&not_name)) {
        (Some(v), None) => Ok(Matcher::Any(strings(v, name, index)?)),
        (None, Some(v)) => Ok(Matcher::Not(strings(v, &not_name, index)?)),
        (Some(_), Some(_)) => Err(PolicyError::Statement {
            index,
            problem: format!("has both {name} and {not_name}"),
        }),
        (None, None) => Err(PolicyError::Statement {
            index,
            problem: format!("has neither {name} nor {not_name}"),
        }),
    }
}

/// Parses a policy document: one statement object or a list, string-or-list elements.
pub fn parse(document: &str) -> Result<Policy, PolicyError> {
    parse_with(document, true)
}

/// Parses a role's trust policy: its statements name no `Resource` (the resource is the role
/// itself), so a statement without one applies to the role.
pub fn parse_trust_policy(document: &str) -> Result<Policy, PolicyError> {
    parse_with(document, false)
}

/// How a service principal (`"Principal": {"Service": "…"}`) is listed once parsed: the
/// `principal_arn` of a request the service makes, for trust policies.
pub fn service_principal(service: &str) -> String {
    format!("Service:{service}")
}

fn parse_with(document: &str, resource_required: bool) -> Result<Policy, PolicyError> {
    let root: Value = serde_json::from_str(document).map_err(|e| PolicyError::Json(e.to_string()))?;
    let statements = match root.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(obj @ Value::Object(_)) => vec![obj.clone()],
        _ => return Err(PolicyError::NoStatement),
    };
    let mut out = Vec::with_capacity(statements.len());
    for (index, st) in statements.iter().enumerate() {
        let Value::Object(obj) = st else {
            return Err(PolicyError::Statement {
                index,
                problem: "is not an object".into(),
            });
        };
        let effect = match obj.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => {
                return Err(PolicyError::Statement {
                    index,
                    problem: format!("Effect must be Allow or Deny, got {other:?}"),
                })
            }
        };
        let principal = match (obj.get("Principal"), obj.get("NotPrincipal")) {
            (Some(p), None) => PrincipalMatch::Only(principals(p, index)?),
            (None, Some(p)) => PrincipalMatch::Except(principals(p, index)?),
            (None, None) => PrincipalMatch::Any,
            (Some(_), Some(_)) => {
                return Err(PolicyError::Statement {
                    index,
                    problem: "has both Principal and NotPrincipal".into(),
                })
            }
        };
        let mut conditions = Vec::new();
        match obj.get("Condition") {
            None => {}
            Some(Value::Object(ops)) => {
                for (operator, keys) in ops {
                    let Value::Object(keys) = keys else {
                        return Err(PolicyError::Statement {
                            index,
                            problem: format!("Condition {operator} must be an object"),
                        });
                    };
                    for (key, values) in keys {
                        let values = match values {
                            Value::Bool(b) => vec![b.to_string()],
                            Value::Number(n) => vec![n.to_string()],
                            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => items
                                .iter()
                                .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
                                .collect(),
                            other => strings(other, "Condition value", index)?,
                        };
                        conditions.push(ConditionClause {
                            operator: operator.clone(),
                            key: key.clone(),
                            values,
                        });
                    }
                }
            }
            Some(other) => {
                return Err(PolicyError::Statement {
                    index,
                    problem: format!("Condition must be an object, got {other}"),
                })
            }
        }
        out.push(Statement {
            sid: obj.get("Sid").and_then(Value::as_str).map(str::to_string),
            effect,
            principal,
            actions: matcher(obj, "Action", index)?,
            resources: if resource_required || obj.contains_key("Resource") || obj.contains_key("NotResource") {
                matcher(obj, "Resource", index)?
            } else {
                Matcher::Any(vec!["*".into()])
            },
            conditions,
        });
    }
    Ok(Policy { statements: out })
}

fn matches_any(patterns: &[String], text: &str, case_insensitive: bool) -> bool {
    patterns.iter().any(|p| wildcard_match(p, text, case_insensitive))
}

impl Matcher {
    fn matches(&self, text: &str, case_insensitive: bool) -> bool {
        match self {
            Matcher::Any(p) => matches_any(p, text, case_insensitive),
            Matcher::Not(p) => !matches_any(p, text, case_insensitive),
        }
    }

    /// Whether the statement names at least one of the resources (Resource matching is
    /// case-sensitive).
    fn matches_some(&self, resources: Resources<'_>) -> bool {
        match (self, resources) {
            (_, Resources::One(arn)) => self.matches(arn, false),
            (Matcher::Any(p), Resources::StartingWith(prefix)) => {
                p.iter().any(|p| wildcard::matches_some_with_prefix(p, prefix, false))
            }
            // Some resource is left over unless one excluded pattern covers them all (a union
            // of excluded patterns covering them together is not seen).
            (Matcher::Not(p), Resources::StartingWith(prefix)) => {
                !p.iter().any(|p| wildcard::matches_every_with_prefix(p, prefix, false))
            }
        }
    }

    /// Whether the statement names every one of the resources.
    fn matches_every(&self, resources: Resources<'_>) -> bool {
        match (self, resources) {
            (_, Resources::One(arn)) => self.matches(arn, false),
            // One pattern must cover them all; several covering parts each are not combined.
            (Matcher::Any(p), Resources::StartingWith(prefix)) => {
                p.iter().any(|p| wildcard::matches_every_with_prefix(p, prefix, false))
            }
            (Matcher::Not(p), Resources::StartingWith(prefix)) => {
                !p.iter().any(|p| wildcard::matches_some_with_prefix(p, prefix, false))
            }
        }
    }
}

/// Three-valued truth: what cannot be decided from the job is `Unknown`, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown(String),
}

impl Truth {
    fn of(b: bool) -> Self {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }

    /// Both must hold: a false part decides, else an unknown part leaves it unknown.
    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (u @ Truth::Unknown(_), _) | (_, u @ Truth::Unknown(_)) => u,
            _ => Truth::True,
        }
    }

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            u => u,
        }
    }
}

fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The role's name: the last segment of its ARN's resource (`role/path/name` → `name`).
fn role_name(arn: &str) -> Option<&str> {
    arn.split(':').nth(5)?.strip_prefix("role/")?.rsplit('/').next()
}

/// Whether one of the listed principals is the job's role. A role ARN in a Principal element
/// stands for the role's sessions; the account (its ID or its root ARN) for everyone in it. A
/// session ARN of the role depends on the session name SageMaker picks, which the job does
/// not say.
fn principal_listed(list: &[String], principal_arn: &str, partition: Partition) -> Truth {
    let account = account_of(principal_arn);
    let root = account.map(|a| partition.account_root(a));
    let session = match (account, role_name(principal_arn)) {
        (Some(a), Some(name)) => Some(format!("arn:{}:sts::{a}:assumed-role/{name}/", partition.id())),
        _ => None,
    };
    let mut unknown = None;
    for p in list {
        if p == "*" || p == principal_arn || Some(p.as_str()) == account || Some(p) == root.as_ref() {
            return Truth::True;
        }
        if session.as_ref().is_some_and(|s| p.starts_with(s.as_str())) {
            unknown = unknown.or_else(|| {
                Some(format!(
                    "Principal {p} (the role's session name is chosen by SageMaker)"
                ))
            });
        }
    }
    unknown.map_or(Truth::False, Truth::Unknown)
}

impl PrincipalMatch {
    fn matches(&self, principal_arn: &str, partition: Partition) -> Truth {
        match self {
            PrincipalMatch::Any => Truth::True,
            PrincipalMatch::Only(list) => principal_listed(list, principal_arn, partition),
            PrincipalMatch::Except(list) => principal_listed(list, principal_arn, partition).not(),
        }
    }
}

/// The condition operators IAM defines, without `IfExists` and set qualifiers.
const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
];

/// One condition clause against the request's keys. A key the evaluator does not know is
/// unknown whatever the operator (`Null` and `…IfExists` included): it might be in the request
/// or not. A key known to be absent follows IAM: `…IfExists` and negated operators hold,
/// others do not.
fn eval_clause(clause: &ConditionClause, context: &Context) -> Truth {
    let unknown = |why: &str| Truth::Unknown(format!("{} (operator {}: {why})", clause.key, clause.operator));
    let (set, rest) = match clause.operator.split_once(':') {
        Some((set @ ("ForAnyValue" | "ForAllValues"), rest)) => (Some(set), rest),
        Some(_) => return unknown("not an IAM condition operator"),
        None => (None, clause.operator.as_str()),
    };
    let (op, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let value = match context.get(&clause.key) {
        Known::Unknown => return Truth::Unknown(clause.key.clone()),
        Known::Absent if op == "Null" => {
            return Truth::of(clause.values.iter().any(|v| v.eq_ignore_ascii_case("true")))
        }
        Known::Value(_) if op == "Null" => {
            return Truth::of(clause.values.iter().any(|v| v.eq_ignore_ascii_case("false")))
        }
        _ if !OPERATORS.contains(&op) => return unknown("not an IAM condition operator"),
        Known::Absent => {
            return Truth::of(if_exists || set == Some("ForAllValues") || (set.is_none() && op.contains("Not")))
        }
        Known::Value(v) => v,
    };
    // The job's keys are single-valued: a set qualifier compares the one value.
    if clause.values.iter().any(|v| v.contains("${")) {
        return unknown("a policy variable");
    }
    let values = &clause.values;
    let result = match op {
        "StringEquals" | "ArnEquals" => values.iter().any(|v| v == value),
        "StringNotEquals" | "ArnNotEquals" => values.iter().all(|v| v != value),
        "StringEqualsIgnoreCase" => values.iter().any(|v| v.eq_ignore_ascii_case(value)),
        "StringNotEqualsIgnoreCase" => values.iter().all(|v| !v.eq_ignore_ascii_case(value)),
        "StringLike" | "ArnLike" => values.iter().any(|v| wildcard_match(v, value, false)),
        "StringNotLike" | "ArnNotLike" => values.iter().all(|v| !wildcard_match(v, value, false)),
        "Bool" => values.iter().any(|v| v.eq_ignore_ascii_case(value)),
        _ => return unknown("not modelled for this key"),
    };
    Truth::of(result)
}

fn eval_conditions(st: &Statement, context: &Context) -> Truth {
    st.conditions
        .iter()
        .fold(Truth::True, |acc, clause| acc.and(eval_clause(clause, context)))
}

impl Statement {
    /// Whether the statement applies to the request, given that its resources match: the
    /// principal and every condition must hold.
    fn applies(&self, req: &Request<'_>) -> Truth {
        if !self.actions.matches(req.action, true) {
            return Truth::False;
        }
        self.principal
            .matches(req.principal_arn, req.partition)
            .and(eval_conditions(self, req.context))
    }
}

impl Policy {
    /// What the Deny statements say: one that matches any of the request's resources denies
    /// the request (the job touches all of them).
    pub fn denial(&self, req: &Request<'_>) -> Denial {
        let mut unknown = None;
        for st in self.statements.iter().filter(|s| s.effect == Effect::Deny) {
            if !st.resources.matches_some(req.resources) {
                continue;
            }
            match st.applies(req) {
                Truth::True => return Denial::Explicit { sid: st.sid.clone() },
                Truth::Unknown(key) => unknown = unknown.or(Some(key)),
                Truth::False => {}
            }
        }
        unknown.map_or(Denial::None, |key| Denial::Unknown { key })
    }

    /// What the Allow statements say: one must match every resource of the request.
    pub fn grant(&self, req: &Request<'_>) -> Grant {
        let mut unknown = None;
        for st in self.statements.iter().filter(|s| s.effect == Effect::Allow) {
            if !st.resources.matches_every(req.resources) {
                continue;
            }
            match st.applies(req) {
                Truth::True => return Grant::Yes,
                Truth::Unknown(key) => unknown = unknown.or(Some(key)),
                Truth::False => {}
            }
        }
        unknown.map_or(Grant::No, |key| Grant::Unknown { key })
    }

    /// Decides one request: explicit Deny wins, then Allow, else implicit deny.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        decide(self.denial(req), self.grant(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/job";

    fn ctx() -> Context {
        Context::default()
            .with("aws:PrincipalArn", ROLE)
            .with("aws:SecureTransport", "true")
            .with("aws:SourceVpce", "vpce-1")
            .without("aws:SourceIp")
    }

    fn request<'a>(action: &'a str, resources: Resources<'a>, context: &'a Context) -> Request<'a> {
        Request {
            action,
            resources,
            context,
            principal_arn: ROLE,
            partition: Partition::Aws,
        }
    }

    fn decide(policy: &str, action: &str, resource: &str) -> Decision {
        let p = parse(policy).expect("policy parses");
        p.evaluate(&request(action, Resources::One(resource), &ctx()))
    }

    fn decide_under(policy: &str, action: &str, prefix: &str) -> Decision {
        let p = parse(policy).expect("policy parses");
        p.evaluate(&request(action, Resources::StartingWith(prefix), &ctx()))
    }

    const IMPLICIT: Decision = Decision::Denied {
        explicit: false,
        sid: None,
    };

    fn statement(effect: &str, extra: &str) -> String {
        format!(r#"{{"Effect":"{effect}","Principal":"*","Action":"s3:*","Resource":"*"{extra}}}"#)
    }

    fn policy_of(statements: &[String]) -> String {
        format!(r#"{{"Statement":[{}]}}"#, statements.join(","))
    }

    #[test]
    fn single_statement_object_and_string_elements() {
        let p = r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::data/*"}}"#;
        assert_eq!(decide(p, "s3:GetObject", "arn:aws:s3:::data/in/x"), Decision::Allowed);
        assert_eq!(
            decide(p, "s3:PutObject", "arn:aws:s3:::data/in/x"),
            Decision::Denied {
                explicit: false,
                sid: None
            }
        );
        assert_eq!(
            decide(p, "s3:GetObject", "arn:aws:s3:::other/x"),
            Decision::Denied {
                explicit: false,
                sid: None
            }
        );
    }

    #[test]
    fn explicit_deny_wins() {
        let p = r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"},
            {"Sid":"NoOut","Effect":"Deny","Principal":{"AWS":"*"},"Action":["s3:PutObject"],"Resource":["arn:aws:s3:::out/*"]}]}"#;
        assert_eq!(
            decide(p, "s3:PutObject", "arn:aws:s3:::out/a"),
            Decision::Denied {
                explicit: true,
                sid: Some("NoOut".into())
            }
        );
        assert_eq!(decide(p, "s3:GetObject", "arn:aws:s3:::out/a"), Decision::Allowed);
    }

    #[test]
    fn not_action_and_not_resource() {
        let p = r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotAction":"s3:Delete*","NotResource":"arn:aws:s3:::secret/*"}]}"#;
        assert_eq!(decide(p, "s3:GetObject", "arn:aws:s3:::data/a"), Decision::Allowed);
        assert!(matches!(
            decide(p, "s3:DeleteObject", "arn:aws:s3:::data/a"),
            Decision::Denied { explicit: false, .. }
        ));
        assert!(matches!(
            decide(p, "s3:GetObject", "arn:aws:s3:::secret/a"),
            Decision::Denied { explicit: false, .. }
        ));
    }

    #[test]
    fn principals() {
        let p = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:root"]},"Action":"s3:*","Resource":"*"}]}"#;
        assert_eq!(decide(p, "s3:GetObject", "arn:aws:s3:::a/b"), Decision::Allowed);
        let p = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::999999999999:role/other"},"Action":"s3:*","Resource":"*"}]}"#;
        assert!(matches!(
            decide(p, "s3:GetObject", "arn:aws:s3:::a/b"),
            Decision::Denied { explicit: false, .. }
        ));
    }

    #[test]
    fn conditions_known_and_unknown() {
        let p = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*",
            "Condition":{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:role/job"}}}]}"#;
        assert_eq!(decide(p, "s3:GetObject", "arn:aws:s3:::a/b"), Decision::Allowed);
        let p = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*",
            "Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-123"}}}]}"#;
        assert_eq!(
            decide(p, "s3:GetObject", "arn:aws:s3:::a/b"),
            Decision::Unevaluable {
                key: "aws:PrincipalOrgID".into()
            }
        );
    }

    #[test]
    fn malformed_policies_are_errors_not_panics() {
        for doc in [
            "",
            "{",
            "[]",
            r#"{"Statement":5}"#,
            r#"{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":7,"Resource":"*"}]}"#,
        ] {
            assert!(parse(doc).is_err(), "{doc:?} should not parse");
        }
    }

    #[test]
    fn without_a_matching_allow_an_undecidable_deny_changes_nothing() {
        let deny = statement("Deny", r#","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-1"}}"#);
        let allow_other = r#"{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other/*"}"#;
        let p = policy_of(&[deny.clone(), allow_other.to_string()]);
        assert_eq!(decide(&p, "s3:GetObject", "arn:aws:s3:::data/x"), IMPLICIT);
        // With an Allow that matches, the Deny's condition decides: unknown.
        let p = policy_of(&[deny, statement("Allow", "")]);
        assert_eq!(
            decide(&p, "s3:GetObject", "arn:aws:s3:::data/x"),
            Decision::Unevaluable {
                key: "aws:PrincipalOrgID".into()
            }
        );
    }

    #[test]
    fn null_and_if_exists_on_an_unknown_key_are_unknown_not_absent() {
        for condition in [
            r#"{"Null":{"aws:PrincipalOrgID":"true"}}"#,
            r#"{"Null":{"aws:PrincipalOrgID":"false"}}"#,
            r#"{"StringEqualsIfExists":{"aws:PrincipalOrgID":"o-1"}}"#,
            r#"{"StringNotEqualsIfExists":{"s3:ExistingObjectTag/class":"secret"}}"#,
            r#"{"ForAnyValue:StringEquals":{"aws:PrincipalTag/team":"ml"}}"#,
        ] {
            let p = policy_of(&[statement("Allow", &format!(r#","Condition":{condition}"#))]);
            assert!(
                matches!(
                    decide(&p, "s3:GetObject", "arn:aws:s3:::d/x"),
                    Decision::Unevaluable { .. }
                ),
                "Allow with {condition}"
            );
            let p = policy_of(&[
                statement("Allow", ""),
                statement("Deny", &format!(r#","Condition":{condition}"#)),
            ]);
            assert!(
                matches!(
                    decide(&p, "s3:GetObject", "arn:aws:s3:::d/x"),
                    Decision::Unevaluable { .. }
                ),
                "Deny with {condition}"
            );
        }
    }

    #[test]
    fn null_and_if_exists_on_known_keys_are_decided() {
        // The endpoint is known: a Deny of requests without one does not apply, one of requests
        // with one does.
        let deny_without = statement("Deny", r#","Condition":{"Null":{"aws:SourceVpce":"true"}}"#);
        let p = policy_of(&[statement("Allow", ""), deny_without]);
        assert_eq!(decide(&p, "s3:GetObject", "arn:aws:s3:::d/x"), Decision::Allowed);
        let deny_with = statement("Deny", r#","Condition":{"Null":{"aws:SourceVpce":"false"}}"#);
        let p = policy_of(&[statement("Allow", ""), deny_with]);
        assert!(matches!(
            decide(&p, "s3:GetObject", "arn:aws:s3:::d/x"),
            Decision::Denied { explicit: true, .. }
        ));
        // aws:SourceIp is not in requests through an endpoint: IfExists holds, a negated
        // operator holds (so this common Deny blocks the job), a positive one does not.
        let if_exists = statement(
            "Allow",
            r#","Condition":{"IpAddressIfExists":{"aws:SourceIp":"203.0.113.0/24"}}"#,
        );
        assert_eq!(
            decide(&policy_of(&[if_exists]), "s3:GetObject", "arn:aws:s3:::d/x"),
            Decision::Allowed
        );
        let not_ip = statement(
            "Deny",
            r#","Condition":{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
        );
        let p = policy_of(&[statement("Allow", ""), not_ip]);
        assert!(matches!(
            decide(&p, "s3:GetObject", "arn:aws:s3:::d/x"),
            Decision::Denied { explicit: true, .. }
        ));
        let ip = statement(
            "Allow",
            r#","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#,
        );
        assert_eq!(decide(&policy_of(&[ip]), "s3:GetObject", "arn:aws:s3:::d/x"), IMPLICIT);
    }

    #[test]
    fn secure_transport_is_true_for_the_job() {
        let deny_plain = statement("Deny", r#","Condition":{"Bool":{"aws:SecureTransport":"false"}}"#);
        let p = policy_of(&[statement("Allow", ""), deny_plain]);
        assert_eq!(decide(&p, "s3:GetObject", "arn:aws:s3:::d/x"), Decision::Allowed);
        let deny_tls = statement("Deny", r#","Condition":{"Bool":{"aws:SecureTransport":true}}"#);
        let p = policy_of(&[statement("Allow", ""), deny_tls]);
        assert!(matches!(
            decide(&p, "s3:GetObject", "arn:aws:s3:::d/x"),
            Decision::Denied { explicit: true, .. }
        ));
    }

    #[test]
    fn source_vpce_is_the_endpoint_of_the_path() {
        let only_from = |vpce: &str| {
            policy_of(&[
                statement("Allow", ""),
                statement(
                    "Deny",
                    &format!(r#","Condition":{{"StringNotEquals":{{"aws:SourceVpce":"{vpce}"}}}}"#),
                ),
            ])
        };
        assert_eq!(
            decide(&only_from("vpce-1"), "s3:GetObject", "arn:aws:s3:::d/x"),
            Decision::Allowed
        );
        assert!(matches!(
            decide(&only_from("vpce-2"), "s3:GetObject", "arn:aws:s3:::d/x"),
            Decision::Denied { explicit: true, .. }
        ));
    }

    #[test]
    fn principals_follow_the_partition_and_sessions_are_unknown() {
        let allow = |principal: &str| {
            format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":"s3:*","Resource":"*"}}]}}"#
            )
        };
        let in_partition = |doc: &str, partition, role| {
            let context = ctx();
            parse(doc).expect("parses").evaluate(&Request {
                partition,
                principal_arn: role,
                ..request("s3:GetObject", Resources::One("arn:aws-cn:s3:::d/x"), &context)
            })
        };
        let cn_role = "arn:aws-cn:iam::123456789012:role/job";
        assert_eq!(
            in_partition(&allow("arn:aws-cn:iam::123456789012:root"), Partition::China, cn_role),
            Decision::Allowed
        );
        assert_eq!(
            in_partition(&allow("arn:aws:iam::123456789012:root"), Partition::China, cn_role),
            IMPLICIT
        );
        assert_eq!(
            in_partition(&allow("123456789012"), Partition::China, cn_role),
            Decision::Allowed
        );
        assert_eq!(
            in_partition(&allow(cn_role), Partition::China, cn_role),
            Decision::Allowed
        );
        // A role with a path is named with it; its sessions' names are SageMaker's.
        let with_path = "arn:aws:iam::123456789012:role/service-role/job";
        assert_eq!(
            in_partition(&allow(with_path), Partition::Aws, with_path),
            Decision::Allowed
        );
        assert!(matches!(
            in_partition(
                &allow("arn:aws:sts::123456789012:assumed-role/job/SageMaker"),
                Partition::Aws,
                with_path
            ),
            Decision::Unevaluable { .. }
        ));
        assert_eq!(
            in_partition(
                &allow("arn:aws:sts::123456789012:assumed-role/other/s"),
                Partition::Aws,
                with_path
            ),
            IMPLICIT
        );
    }

    #[test]
    fn a_deny_on_part_of_a_prefix_denies_and_an_allow_must_cover_all_of_it() {
        let deny_secret = r#"{"Sid":"Secret","Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/in/secret/*"}"#;
        let p = policy_of(&[statement("Allow", ""), deny_secret.to_string()]);
        assert_eq!(
            decide_under(&p, "s3:GetObject", "arn:aws:s3:::b/in/"),
            Decision::Denied {
                explicit: true,
                sid: Some("Secret".into())
            }
        );
        assert_eq!(
            decide_under(&p, "s3:GetObject", "arn:aws:s3:::b/other/"),
            Decision::Allowed
        );
        // An Allow of a part (or of one object) does not allow every object under the prefix.
        let part = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/in/public/*"}]}"#;
        assert_eq!(decide_under(part, "s3:GetObject", "arn:aws:s3:::b/in/"), IMPLICIT);
        assert_eq!(
            decide_under(part, "s3:GetObject", "arn:aws:s3:::b/in/public/"),
            Decision::Allowed
        );
        let one = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/code/job.py"}]}"#;
        assert_eq!(
            decide(one, "s3:GetObject", "arn:aws:s3:::b/code/job.py"),
            Decision::Allowed
        );
        assert_eq!(
            decide_under(one, "s3:GetObject", "arn:aws:s3:::b/code/job.py/"),
            IMPLICIT
        );
        // NotResource: everything under the prefix, unless an excluded pattern reaches into it.
        let not = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","NotResource":"arn:aws:s3:::b/in/secret/*"}]}"#;
        assert_eq!(
            decide_under(not, "s3:GetObject", "arn:aws:s3:::b/out/"),
            Decision::Allowed
        );
        assert_eq!(decide_under(not, "s3:GetObject", "arn:aws:s3:::b/in/"), IMPLICIT);
    }

    #[test]
    fn trust_policies_name_no_resource_and_services_are_principals() {
        let trust = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":["sagemaker.amazonaws.com"]},"Action":"sts:AssumeRole"}]}"#;
        assert!(parse(trust).is_err(), "an identity or endpoint policy needs a Resource");
        let p = parse_trust_policy(trust).expect("a trust policy parses");
        let context = Context::default();
        let assume = |service: &str| {
            p.evaluate(&Request {
                action: "sts:AssumeRole",
                resources: Resources::One(ROLE),
                context: &context,
                principal_arn: &service_principal(service),
                partition: Partition::Aws,
            })
        };
        assert_eq!(assume("sagemaker.amazonaws.com"), Decision::Allowed);
        assert_eq!(assume("ec2.amazonaws.com"), IMPLICIT);
    }

    #[test]
    fn grants_combine_as_either_reading() {
        assert_eq!(Grant::No.or(Grant::Yes), Grant::Yes);
        assert_eq!(
            Grant::No.or(Grant::Unknown { key: "k".into() }),
            Grant::Unknown { key: "k".into() }
        );
        assert_eq!(Grant::No.or(Grant::No), Grant::No);
    }
}
