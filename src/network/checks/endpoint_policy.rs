//! N7 and N13: the policy of each S3 endpoint the job's subnets use allows the job's S3 access,
//! and whether it still lets containers reach the Amazon Linux package repositories.

use std::collections::BTreeMap;

use crate::network::policy::{self, Decision, Policy};
use crate::network::snapshot::{Subnet, VpcEndpoint};

use super::routes::S3Path;
use super::{Code, Findings, Scope};

/// Parses an S3 URI (`s3://bucket/key`, virtual-hosted or path-style `https://`) into bucket
/// and key.
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        return (!bucket.is_empty()).then(|| (bucket.to_string(), key.to_string()));
    }
    let rest = uri.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.starts_with("s3.") || host.starts_with("s3-") {
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        return (!bucket.is_empty()).then(|| (bucket.to_string(), key.to_string()));
    }
    let idx = host.find(".s3.").or_else(|| host.find(".s3-"))?;
    Some((host[..idx].to_string(), path.to_string()))
}

/// N7 and N13 for every S3 endpoint the subnets use, once each, in the order of their IDs.
pub(super) fn endpoint_policies(scope: &Scope<'_>, paths: &[(&Subnet, S3Path<'_>)], f: &mut Findings) {
    let mut endpoints: BTreeMap<&str, &VpcEndpoint> = BTreeMap::new();
    for e in paths.iter().filter_map(|(_, path)| path.endpoint()) {
        endpoints.insert(e.id.as_str(), e);
    }
    for e in endpoints.values() {
        endpoint_policy(scope, e, f);
    }
}

fn endpoint_policy(scope: &Scope<'_>, endpoint: &VpcEndpoint, f: &mut Findings) {
    let document = endpoint
        .policy_document
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    let Some(document) = document else {
        // No policy: the endpoint allows full access, as AWS does by default.
        if !scope.isolation {
            f.add(
                Code::PackageRepositoriesReachable,
                &endpoint.id,
                format!("endpoint {} has the default full-access policy, so containers can install packages from the Amazon Linux repositories", endpoint.id),
            );
        }
        return;
    };
    let policy = match policy::parse(document) {
        Ok(p) => p,
        Err(e) => {
            f.add(
                Code::S3EndpointPolicyUnevaluable,
                &endpoint.id,
                format!(
                    "the policy of endpoint {} cannot be read ({e}); whether it allows the job's S3 access is unknown",
                    endpoint.id
                ),
            );
            return;
        }
    };
    let view = JobView::new(scope, endpoint, policy);
    view.job_access(scope, f);
    if !scope.isolation {
        view.package_repositories(scope.region, f);
    }
}

/// One endpoint's policy as the job's requests meet it: made by the job's role, through this
/// endpoint, from this VPC.
struct JobView<'a> {
    endpoint: &'a VpcEndpoint,
    policy: Policy,
    principal: &'a str,
    /// The condition keys known for every request of the job.
    context: BTreeMap<String, String>,
}

impl<'a> JobView<'a> {
    fn new(scope: &Scope<'a>, endpoint: &'a VpcEndpoint, policy: Policy) -> Self {
        let principal = scope.spec.role_arn.as_str();
        let mut context = BTreeMap::new();
        context.insert("aws:principalarn".to_string(), principal.to_string());
        if let Some(account) = principal.split(':').nth(4) {
            context.insert("aws:principalaccount".to_string(), account.to_string());
        }
        context.insert("aws:sourcevpce".to_string(), endpoint.id.clone());
        context.insert("aws:sourcevpc".to_string(), scope.vpc.vpc_id.clone());
        Self {
            endpoint,
            policy,
            principal,
            context,
        }
    }

    fn evaluate(&self, action: &str, resource: &str, context: &BTreeMap<String, String>) -> Decision {
        self.policy.evaluate(&policy::Request {
            action,
            resource,
            context,
            principal_arn: self.principal,
        })
    }

    /// N7: `s3:GetObject` and `s3:ListBucket` on every input, `s3:PutObject` on every output.
    fn job_access(&self, scope: &Scope<'_>, f: &mut Findings) {
        let (endpoint, principal) = (&self.endpoint.id, self.principal);
        let inputs = scope
            .spec
            .input_uris()
            .flat_map(|uri| [(uri, "s3:GetObject"), (uri, "s3:ListBucket")]);
        let outputs = scope.spec.output_uris().map(|uri| (uri, "s3:PutObject"));
        for (uri, action) in inputs.chain(outputs) {
            let Some((bucket, key)) = parse_s3_uri(uri) else {
                f.add(
                    Code::S3EndpointPolicyUnevaluable,
                    endpoint,
                    format!("cannot tell the bucket of {uri}, so the policy of endpoint {endpoint} was not evaluated for it"),
                );
                continue;
            };
            match self.decide_for_uri(action, &bucket, &key) {
                Decision::Allowed => {}
                Decision::Denied { explicit, sid } => {
                    let why = match (explicit, sid) {
                        (true, Some(sid)) => format!("an explicit Deny (statement {sid})"),
                        (true, None) => "an explicit Deny".to_string(),
                        (false, _) => "no statement allows it".to_string(),
                    };
                    f.add(
                        Code::S3EndpointPolicyDenies,
                        endpoint,
                        format!("the policy of endpoint {endpoint} denies {action} on {uri} for role {principal}: {why}"),
                    );
                }
                Decision::Unevaluable { key: cond } => f.add(
                    Code::S3EndpointPolicyUnevaluable,
                    endpoint,
                    format!(
                        "the policy of endpoint {endpoint} decides {action} on {uri} by condition {cond}, which cannot be evaluated from the job"
                    ),
                ),
            }
        }
    }

    /// The decision for one action on one S3 URI. Objects are checked at the URI itself and at
    /// an object under it: an explicit Deny on either wins; the object under the prefix decides
    /// the rest. `s3:ListBucket` is checked on the bucket with `s3:prefix` set.
    fn decide_for_uri(&self, action: &str, bucket: &str, key: &str) -> Decision {
        if action == "s3:ListBucket" {
            let mut context = self.context.clone();
            context.insert("s3:prefix".to_string(), key.to_string());
            return self.evaluate(action, &format!("arn:aws:s3:::{bucket}"), &context);
        }
        let trimmed = key.trim_end_matches('/');
        let exact = format!("arn:aws:s3:::{bucket}/{key}");
        let inside = if trimmed.is_empty() {
            format!("arn:aws:s3:::{bucket}/object")
        } else {
            format!("arn:aws:s3:::{bucket}/{trimmed}/object")
        };
        let exact_decision = self.evaluate(action, &exact, &self.context);
        if matches!(exact_decision, Decision::Denied { explicit: true, .. }) {
            return exact_decision;
        }
        let inside_decision = self.evaluate(action, &inside, &self.context);
        match (&inside_decision, exact_decision) {
            (Decision::Denied { explicit: true, .. }, _) => inside_decision,
            (_, d @ Decision::Unevaluable { .. }) if !key.is_empty() && !key.ends_with('/') => match inside_decision {
                Decision::Allowed => d,
                other => other,
            },
            _ => inside_decision,
        }
    }

    /// N13: the Amazon Linux package repository buckets the policy still allows.
    fn package_repositories(&self, region: &str, f: &mut Findings) {
        let repos = [
            format!("packages.{region}.amazonaws.com"),
            format!("repo.{region}.amazonaws.com"),
            format!("amazonlinux.{region}.amazonaws.com"),
        ];
        let reachable: Vec<&str> = repos
            .iter()
            .map(String::as_str)
            .filter(|b| {
                self.evaluate("s3:GetObject", &format!("arn:aws:s3:::{b}/packages"), &self.context) == Decision::Allowed
            })
            .collect();
        if !reachable.is_empty() {
            let endpoint = &self.endpoint.id;
            f.add(
                Code::PackageRepositoriesReachable,
                endpoint,
                format!(
                    "the policy of endpoint {endpoint} allows the Amazon Linux package repositories ({}), so containers can install packages",
                    reachable.join(", ")
                ),
            );
        }
    }
}
