//! Evaluation of a VPC endpoint policy for the S3 requests a job makes.
//!
//! IAM's rules as they apply to endpoint policies: statements match on principal, action
//! (case-insensitive, `*` and `?` wildcards), resource (case-sensitive wildcards) and
//! condition; an explicit Deny wins over any Allow; without a matching Allow the request is
//! implicitly denied. A condition the job cannot decide (an unknown key or operator) makes the
//! outcome *unevaluable*, never a silent pass.

use std::collections::BTreeMap;

use serde_json::Value;

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

/// A request the job makes through the endpoint.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub action: &'a str,
    pub resource: &'a str,
    /// Condition keys known for this request (lower-cased key → value).
    pub context: &'a BTreeMap<String, String>,
    /// The principal making the request (the job's role ARN).
    pub principal_arn: &'a str,
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
    /// A condition key or operator that cannot be decided from the job.
    Unevaluable {
        key: String,
    },
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
            resources: matcher(obj, "Resource", index)?,
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
}

fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

fn principal_listed(list: &[String], principal_arn: &str) -> bool {
    let account = account_of(principal_arn);
    list.iter().any(|p| {
        p == "*"
            || p == principal_arn
            || Some(p.as_str()) == account
            || account.is_some_and(|a| p == &format!("arn:aws:iam::{a}:root"))
    })
}

impl PrincipalMatch {
    fn matches(&self, principal_arn: &str) -> bool {
        match self {
            PrincipalMatch::Any => true,
            PrincipalMatch::Only(list) => principal_listed(list, principal_arn),
            PrincipalMatch::Except(list) => !principal_listed(list, principal_arn),
        }
    }
}

/// Three-valued result of a condition block.
enum Truth {
    True,
    False,
    Unknown(String),
}

fn eval_clause(clause: &ConditionClause, context: &BTreeMap<String, String>) -> Truth {
    let (op, if_exists) = match clause.operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (clause.operator.as_str(), false),
    };
    if op == "Null" {
        let present = context.contains_key(&clause.key.to_lowercase());
        let want_absent = clause.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
        return if present != want_absent {
            Truth::True
        } else {
            Truth::False
        };
    }
    let Some(value) = context.get(&clause.key.to_lowercase()) else {
        return Truth::Unknown(clause.key.clone());
    };
    let _ = if_exists; // the key is known here, so IfExists changes nothing
    let result = match op {
        "StringEquals" | "ArnEquals" => clause.values.iter().any(|v| v == value),
        "StringNotEquals" | "ArnNotEquals" => clause.values.iter().all(|v| v != value),
        "StringEqualsIgnoreCase" => clause.values.iter().any(|v| v.eq_ignore_ascii_case(value)),
        "StringNotEqualsIgnoreCase" => clause.values.iter().all(|v| !v.eq_ignore_ascii_case(value)),
        "StringLike" | "ArnLike" => clause.values.iter().any(|v| wildcard_match(v, value, false)),
        "StringNotLike" | "ArnNotLike" => clause.values.iter().all(|v| !wildcard_match(v, value, false)),
        _ => return Truth::Unknown(format!("{} (operator {})", clause.key, clause.operator)),
    };
    if result {
        Truth::True
    } else {
        Truth::False
    }
}

fn eval_conditions(st: &Statement, context: &BTreeMap<String, String>) -> Truth {
    let mut unknown = None;
    for clause in &st.conditions {
        match eval_clause(clause, context) {
            Truth::False => return Truth::False,
            Truth::Unknown(k) => unknown = unknown.or(Some(k)),
            Truth::True => {}
        }
    }
    match unknown {
        Some(k) => Truth::Unknown(k),
        None => Truth::True,
    }
}

impl Policy {
    /// Decides one request: explicit Deny wins, then Allow, else implicit deny.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut allowed = false;
        let mut unknown_allow: Option<String> = None;
        let mut unknown_deny: Option<String> = None;
        for st in &self.statements {
            if !st.principal.matches(req.principal_arn)
                || !st.actions.matches(req.action, true)
                || !st.resources.matches(req.resource, false)
            {
                continue;
            }
            match (st.effect, eval_conditions(st, req.context)) {
                (Effect::Deny, Truth::True) => {
                    return Decision::Denied {
                        explicit: true,
                        sid: st.sid.clone(),
                    }
                }
                (Effect::Deny, Truth::Unknown(k)) => unknown_deny = unknown_deny.or(Some(k)),
                (Effect::Allow, Truth::True) => allowed = true,
                (Effect::Allow, Truth::Unknown(k)) => unknown_allow = unknown_allow.or(Some(k)),
                (_, Truth::False) => {}
            }
        }
        if let Some(key) = unknown_deny {
            return Decision::Unevaluable { key };
        }
        if allowed {
            return Decision::Allowed;
        }
        if let Some(key) = unknown_allow {
            return Decision::Unevaluable { key };
        }
        Decision::Denied {
            explicit: false,
            sid: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> BTreeMap<String, String> {
        BTreeMap::from([(
            "aws:principalarn".to_string(),
            "arn:aws:iam::123456789012:role/job".to_string(),
        )])
    }

    fn decide(policy: &str, action: &str, resource: &str) -> Decision {
        let p = parse(policy).expect("policy parses");
        let context = ctx();
        p.evaluate(&Request {
            action,
            resource,
            context: &context,
            principal_arn: "arn:aws:iam::123456789012:role/job",
        })
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
}
