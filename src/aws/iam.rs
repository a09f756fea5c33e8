//! Reads a job's execution role from IAM: the role (its trust policy and permissions boundary),
//! its inline policies, its attached managed policies and the boundary's default versions. Roles
//! are cached by ARN for a short TTL, like the VPC snapshot, so that many jobs with one role cost
//! one read; concurrent reads of the cache's misses are serialised so they share it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_iam::Client;

use super::{Adapter, AwsError, CallCounter, ErrorClass};
use crate::role::{NamedDocument, RoleDocuments, RoleFacts};

const SERVICE: &str = "iam";

/// Reads execution roles, for one partition (IAM is global within it).
pub struct IamReader {
    client: Client,
    ttl: Duration,
    calls: Arc<CallCounter>,
    cache: std::sync::Mutex<HashMap<String, (Arc<RoleFacts>, Instant)>>,
    reading: tokio::sync::Mutex<()>,
}

impl Adapter for IamReader {
    const SERVICE: &'static str = SERVICE;

    fn counter(&self) -> &CallCounter {
        &self.calls
    }
}

impl IamReader {
    pub fn new(client: Client, ttl: Duration, calls: Arc<CallCounter>) -> Self {
        Self {
            client,
            ttl,
            calls,
            cache: std::sync::Mutex::new(HashMap::new()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// Drops everything cached: the next read asks IAM afresh.
    pub fn forget(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    fn cached(&self, arn: &str) -> Option<Arc<RoleFacts>> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(arn)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(facts, _)| facts.clone())
    }

    /// What IAM says about the role `arn`. Never an error: a role IAM does not know is
    /// [`RoleFacts::NotFound`], any other failure [`RoleFacts::NotReadable`] (not cached, so the
    /// next validation tries again).
    pub async fn role(&self, arn: &str) -> Arc<RoleFacts> {
        if let Some(facts) = self.cached(arn) {
            return facts;
        }
        let _reading = self.reading.lock().await;
        if let Some(facts) = self.cached(arn) {
            return facts;
        }
        let facts = Arc::new(match self.read(arn).await {
            Ok(Some(documents)) => RoleFacts::Read(Arc::new(documents)),
            Ok(None) => RoleFacts::NotFound,
            Err(e) => RoleFacts::NotReadable {
                reason: not_readable(&e),
            },
        });
        if !matches!(*facts, RoleFacts::NotReadable { .. }) {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(arn.to_string(), (facts.clone(), Instant::now()));
            }
        }
        facts
    }

    /// The role's documents; `None` when IAM has no such role.
    async fn read(&self, arn: &str) -> Result<Option<RoleDocuments>, AwsError> {
        let Some(name) = role_name(arn) else {
            return Err(AwsError {
                service: SERVICE,
                operation: "GetRole",
                class: ErrorClass::Invalid,
                code: None,
                message: format!("{arn} is not a role ARN"),
            });
        };
        let role = match self
            .call("GetRole", self.client.get_role().role_name(name).send())
            .await
        {
            Ok(out) => out,
            Err(e) if e.class == ErrorClass::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(role) = role.role() else {
            return Ok(None);
        };
        // A role of this name in the controller's account is not the job's role when the ARN
        // names another account: the controller sees only its own account's IAM.
        if account(role.arn()) != account(arn) {
            return Err(AwsError {
                service: SERVICE,
                operation: "GetRole",
                class: ErrorClass::Other,
                code: None,
                message: format!(
                    "the role is in account {}, the controller reads IAM of account {}",
                    account(arn).unwrap_or("?"),
                    account(role.arn()).unwrap_or("?")
                ),
            });
        }
        let trust_policy = decode(role.assume_role_policy_document().unwrap_or_default());
        let boundary_arn = role
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn())
            .map(str::to_string);

        let mut policies = Vec::new();
        for policy_name in self.inline_names(name).await? {
            let out = self
                .call(
                    "GetRolePolicy",
                    self.client
                        .get_role_policy()
                        .role_name(name)
                        .policy_name(&policy_name)
                        .send(),
                )
                .await?;
            policies.push(NamedDocument {
                name: policy_name,
                document: decode(out.policy_document()),
            });
        }
        for policy_arn in self.attached_arns(name).await? {
            let document = self.managed_document(&policy_arn).await?;
            policies.push(NamedDocument {
                name: policy_arn,
                document,
            });
        }
        let boundary = match boundary_arn {
            Some(arn) => Some(NamedDocument {
                document: self.managed_document(&arn).await?,
                name: arn,
            }),
            None => None,
        };
        Ok(Some(RoleDocuments {
            arn: role.arn().to_string(),
            trust_policy,
            policies,
            boundary,
        }))
    }

    async fn inline_names(&self, role: &str) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_role_policies()
                .role_name(role)
                .set_marker(marker.take());
            let page = self.call("ListRolePolicies", request.send()).await?;
            names.extend(page.policy_names().iter().cloned());
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(names),
            }
        }
    }

    async fn attached_arns(&self, role: &str) -> Result<Vec<String>, AwsError> {
        let mut arns = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let request = self
                .client
                .list_attached_role_policies()
                .role_name(role)
                .set_marker(marker.take());
            let page = self.call("ListAttachedRolePolicies", request.send()).await?;
            arns.extend(
                page.attached_policies()
                    .iter()
                    .filter_map(|p| p.policy_arn().map(str::to_string)),
            );
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(arns),
            }
        }
    }

    /// The default version's document of a managed policy.
    async fn managed_document(&self, policy_arn: &str) -> Result<String, AwsError> {
        let policy = self
            .call("GetPolicy", self.client.get_policy().policy_arn(policy_arn).send())
            .await?;
        let version = policy
            .policy()
            .and_then(|p| p.default_version_id())
            .unwrap_or("v1")
            .to_string();
        let out = self
            .call(
                "GetPolicyVersion",
                self.client
                    .get_policy_version()
                    .policy_arn(policy_arn)
                    .version_id(version)
                    .send(),
            )
            .await?;
        Ok(decode(
            out.policy_version().and_then(|v| v.document()).unwrap_or_default(),
        ))
    }
}

/// The role's name: the last segment of its ARN's resource (`role/path/name` → `name`).
fn role_name(arn: &str) -> Option<&str> {
    arn.split(':')
        .nth(5)?
        .strip_prefix("role/")?
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
}

fn account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// IAM returns policy documents URL-encoded (RFC 3986); a document that already is JSON is kept.
fn decode(document: &str) -> String {
    let trimmed = document.trim_start();
    if trimmed.starts_with('{') {
        return document.to_string();
    }
    percent_encoding::percent_decode_str(document)
        .decode_utf8_lossy()
        .into_owned()
}

/// What the Info finding says when the role could not be read.
fn not_readable(e: &AwsError) -> String {
    match e.class {
        ErrorClass::Credentials => format!(
            "the controller may not read IAM ({e}); allow it the IAM read actions of docs/iam-policy.json on the job roles"
        ),
        _ => format!("IAM could not be read ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_decoded_once() {
        assert_eq!(decode("%7B%22Statement%22%3A%5B%5D%7D"), r#"{"Statement":[]}"#);
        assert_eq!(decode(r#"{"a":"50%25"}"#), r#"{"a":"50%25"}"#);
    }

    #[test]
    fn role_names_drop_the_path() {
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/service-role/job"),
            Some("job")
        );
        assert_eq!(role_name("arn:aws:iam::123456789012:role/job"), Some("job"));
        assert_eq!(role_name("arn:aws:iam::123456789012:user/job"), None);
    }
}
