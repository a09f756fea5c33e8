//! N7 and N13: the policy of each S3 endpoint the job's subnets use allows the job's S3 access,
//! and whether it still lets containers reach the Amazon Linux package repositories.

use std::collections::BTreeMap;

use crate::api::{ProcessingJobSpec, S3DataType};
use crate::network::policy::{self, Context, Decision, Policy, Resources};
use crate::network::snapshot::{Subnet, VpcEndpoint};
use crate::partition::Partition;

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

/// What the job does with one S3 location, as SageMaker does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Listed (`s3:ListBucket` with `s3:prefix`), and every object under it read: an
    /// `S3Prefix` input, or the results of an Athena or Redshift query.
    ReadPrefix,
    /// One object read, which lists the objects to read: a `ManifestFile` input.
    ReadManifest,
    /// Objects written under it: an S3 output.
    Write,
}

/// Every S3 location the job's instances reach through the endpoint, with what they do there.
fn locations(spec: &ProcessingJobSpec) -> Vec<(&str, Use)> {
    let mut out = Vec::new();
    for input in spec.processing_inputs.iter().flatten() {
        if let Some(s3) = &input.s3_input {
            let how = match s3.s3_data_type {
                S3DataType::S3Prefix => Use::ReadPrefix,
                S3DataType::ManifestFile => Use::ReadManifest,
            };
            out.push((s3.s3_uri.as_str(), how));
        }
        // Athena and Redshift write the results themselves (not through this endpoint); the
        // job's instances then read them as a prefix.
        if let Some(dataset) = &input.dataset_definition {
            let athena = dataset
                .athena_dataset_definition
                .as_ref()
                .map(|a| a.output_s3_uri.as_str());
            let redshift = dataset
                .redshift_dataset_definition
                .as_ref()
                .map(|r| r.output_s3_uri.as_str());
            out.extend(athena.into_iter().chain(redshift).map(|uri| (uri, Use::ReadPrefix)));
        }
    }
    let outputs = spec.processing_output_config.iter().flat_map(|c| c.outputs.iter());
    out.extend(
        outputs
            .filter_map(|o| o.s3_output.as_ref())
            .map(|s3| (s3.s3_uri.as_str(), Use::Write)),
    );
    out
}

/// One request of the job, decided.
struct Checked<'a> {
    uri: &'a str,
    action: &'static str,
    /// Whether the request is about every object under the URI rather than one resource.
    under: bool,
    decision: Decision,
}

/// One endpoint's policy as the job's requests meet it: made by the job's role, through this
/// endpoint, from this VPC, over TLS, in the region's partition.
struct JobView<'a> {
    endpoint: &'a VpcEndpoint,
    policy: Policy,
    principal: &'a str,
    partition: Partition,
    /// The condition keys known for every request of the job. Anything else is unknown.
    context: Context,
}

impl<'a> JobView<'a> {
    fn new(scope: &Scope<'a>, endpoint: &'a VpcEndpoint, policy: Policy) -> Self {
        let principal = scope.spec.role_arn.as_str();
        let mut context = Context::default()
            // The role's sessions are assumed roles; aws:PrincipalArn is the role's ARN.
            .with("aws:PrincipalArn", principal)
            .with("aws:PrincipalType", "AssumedRole")
            // SageMaker and the SDKs in the container reach S3 over HTTPS.
            .with("aws:SecureTransport", "true")
            .with("aws:SourceVpce", endpoint.id.as_str())
            .with("aws:SourceVpc", scope.vpc.vpc_id.as_str())
            // AWS leaves the source IP out of requests that come through a VPC endpoint.
            .without("aws:SourceIp");
        if let Some(account) = principal.split(':').nth(4).filter(|a| !a.is_empty()) {
            context = context.with("aws:PrincipalAccount", account);
        }
        Self {
            endpoint,
            policy,
            principal,
            partition: Partition::of_region(scope.region),
            context,
        }
    }

    fn request<'r>(&'r self, action: &'r str, resources: Resources<'r>, context: &'r Context) -> policy::Request<'r> {
        policy::Request {
            action,
            resources,
            context,
            principal_arn: self.principal,
            partition: self.partition,
        }
    }

    /// The context of an object request: `s3:prefix` belongs to listing only.
    fn object_context(&self) -> Context {
        self.context.clone().without("s3:prefix")
    }

    fn object(&self, bucket: &str, key: &str) -> String {
        self.partition.s3_arn(bucket, Some(key))
    }

    /// N7: every request the job makes on its S3 locations.
    fn job_access(&self, scope: &Scope<'_>, f: &mut Findings) {
        let endpoint = &self.endpoint.id;
        for (uri, how) in locations(scope.spec) {
            let Some((bucket, key)) = parse_s3_uri(uri) else {
                f.add(
                    Code::S3EndpointPolicyUnevaluable,
                    endpoint,
                    format!("cannot tell the bucket of {uri}, so the policy of endpoint {endpoint} was not evaluated for it"),
                );
                continue;
            };
            let checked = match how {
                Use::ReadPrefix => vec![self.list(uri, &bucket, &key), self.read_under(uri, &bucket, &key)],
                Use::ReadManifest => vec![self.read_manifest(uri, &bucket, &key)],
                Use::Write => vec![self.write_under(uri, &bucket, &key)],
            };
            let manifest_readable = how == Use::ReadManifest && checked.iter().all(|c| c.decision == Decision::Allowed);
            for c in checked {
                self.report(c, f);
            }
            if manifest_readable {
                self.manifest_entries(uri, f);
            }
        }
    }

    /// `s3:ListBucket` on the bucket, with `s3:prefix` = the key, as SageMaker lists an input.
    fn list<'u>(&self, uri: &'u str, bucket: &str, key: &str) -> Checked<'u> {
        let context = self.context.clone().with("s3:prefix", key);
        let bucket_arn = self.partition.s3_arn(bucket, None);
        let decision = self
            .policy
            .evaluate(&self.request("s3:ListBucket", Resources::One(&bucket_arn), &context));
        Checked {
            uri,
            action: "s3:ListBucket",
            under: false,
            decision,
        }
    }

    /// `s3:GetObject` on every object whose key starts with the input's key, as SageMaker
    /// reads an `S3Prefix` input: a Deny on any of them stops the job. A key that does not end
    /// in `/` may name one object (`code/job.py`) or a folder (`raw`): the read works when the
    /// policy allows either the object or everything in the folder.
    fn read_under<'u>(&self, uri: &'u str, bucket: &str, key: &str) -> Checked<'u> {
        let context = self.object_context();
        let get = |resources| self.request("s3:GetObject", resources, &context);
        let everything = self.object(bucket, key);
        let denial = self.policy.denial(&get(Resources::StartingWith(&everything)));
        let grant = if key.is_empty() || key.ends_with('/') {
            self.policy.grant(&get(Resources::StartingWith(&everything)))
        } else {
            let folder = self.object(bucket, &format!("{key}/"));
            let as_object = self.policy.grant(&get(Resources::One(&everything)));
            as_object.or(self.policy.grant(&get(Resources::StartingWith(&folder))))
        };
        Checked {
            uri,
            action: "s3:GetObject",
            under: true,
            decision: policy::decide(denial, grant),
        }
    }

    /// `s3:GetObject` on the manifest file itself.
    fn read_manifest<'u>(&self, uri: &'u str, bucket: &str, key: &str) -> Checked<'u> {
        let context = self.object_context();
        let manifest = self.object(bucket, key);
        let decision = self
            .policy
            .evaluate(&self.request("s3:GetObject", Resources::One(&manifest), &context));
        Checked {
            uri,
            action: "s3:GetObject",
            under: false,
            decision,
        }
    }

    /// The objects a manifest lists are read too, but the controller does not read the
    /// manifest: unless the policy allows `s3:GetObject` on every object of every bucket, say
    /// what to check.
    fn manifest_entries(&self, uri: &str, f: &mut Findings) {
        let context = self.object_context();
        let any_object = format!("arn:{}:s3:::", self.partition.id());
        let anywhere =
            self.policy
                .evaluate(&self.request("s3:GetObject", Resources::StartingWith(&any_object), &context));
        if anywhere != Decision::Allowed {
            let endpoint = &self.endpoint.id;
            f.add(
                Code::S3EndpointPolicyUnevaluable,
                endpoint,
                format!(
                    "the objects listed in manifest {uri} are read through endpoint {endpoint}, whose policy does not allow s3:GetObject on every object; the controller does not read manifests, so check that the policy allows s3:GetObject on each object the manifest lists"
                ),
            );
        }
    }

    /// `s3:PutObject` on every object under the output's prefix: SageMaker writes
    /// `<s3URI>/<file>` for every file the container leaves, whatever its name.
    fn write_under<'u>(&self, uri: &'u str, bucket: &str, key: &str) -> Checked<'u> {
        let context = self.object_context();
        let folder = key.trim_end_matches('/');
        let under = if folder.is_empty() {
            self.object(bucket, "")
        } else {
            self.object(bucket, &format!("{folder}/"))
        };
        let decision = self
            .policy
            .evaluate(&self.request("s3:PutObject", Resources::StartingWith(&under), &context));
        Checked {
            uri,
            action: "s3:PutObject",
            under: true,
            decision,
        }
    }

    fn report(&self, c: Checked<'_>, f: &mut Findings) {
        let (endpoint, principal) = (&self.endpoint.id, self.principal);
        let Checked {
            uri,
            action,
            under,
            decision,
        } = c;
        let on = if under { "objects under it" } else { "it" };
        match decision {
            Decision::Allowed => {}
            Decision::Denied { explicit, sid } => {
                let why = match (explicit, sid) {
                    (true, Some(sid)) => format!("an explicit Deny (statement {sid}) matches {on}"),
                    (true, None) => format!("an explicit Deny matches {on}"),
                    (false, _) if under => "no statement allows it on every object under it".to_string(),
                    (false, _) => "no statement allows it".to_string(),
                };
                f.add(
                    Code::S3EndpointPolicyDenies,
                    endpoint,
                    format!("the policy of endpoint {endpoint} denies {action} on {uri} for role {principal}: {why}"),
                );
            }
            Decision::Unevaluable { key } => {
                let by = if key.starts_with("Principal ") {
                    key
                } else {
                    format!("condition {key}")
                };
                f.add(
                    Code::S3EndpointPolicyUnevaluable,
                    endpoint,
                    format!(
                        "the policy of endpoint {endpoint} decides {action} on {uri} by {by}, which cannot be evaluated from the job"
                    ),
                );
            }
        }
    }

    /// N13: the Amazon Linux package repository buckets the policy still allows.
    fn package_repositories(&self, region: &str, f: &mut Findings) {
        let repos = [
            format!("packages.{region}.amazonaws.com"),
            format!("repo.{region}.amazonaws.com"),
            format!("amazonlinux.{region}.amazonaws.com"),
        ];
        let context = self.object_context();
        let reachable: Vec<&str> = repos
            .iter()
            .map(String::as_str)
            .filter(|b| {
                let object = self.object(b, "packages");
                self.policy
                    .evaluate(&self.request("s3:GetObject", Resources::One(&object), &context))
                    == Decision::Allowed
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
