//! The execution-role pre-flight (R1–R7): a pure function from a job's spec and what IAM says
//! about its role to findings, like the network checks.
//!
//! The role's permissions are its identity policies (inline and attached) intersected with its
//! permissions boundary, evaluated with the endpoint-policy evaluator ([`crate::network::policy`]):
//! an explicit Deny in any of them wins, an Allow is needed in the identity policies *and* in the
//! boundary, and a condition that cannot be decided from the job is a Warning that names it.
//!
//! What the controller cannot see: service control policies, session policies, and resource
//! policies (bucket, key and repository policies). Within the role's own account a resource
//! policy can grant what the role's policies do not, so a missing S3, KMS or ECR permission is a
//! Warning; only an explicit Deny there is certain, and an Error. The EC2 actions and the trust
//! policy have no such second source: a missing one is an Error.

use std::sync::Arc;

use crate::api::{Finding, ProcessingJobSpec, S3DataType};
use crate::network::checks::parse_s3_uri;
use crate::network::policy::{self, Context, Decision, Denial, Grant, Policy, Request, Resources};
use crate::network::Code;
use crate::partition::Partition;

/// The SageMaker service principal that assumes the role.
pub const SAGEMAKER_SERVICE: &str = "sagemaker.amazonaws.com";

/// The log group SageMaker writes processing jobs' logs to.
pub const LOG_GROUP: &str = "/aws/sagemaker/ProcessingJobs";

/// The EC2 actions SageMaker performs with the role to attach a job's network interfaces to its
/// VPC, and whether each supports resource-level permissions (the Describe actions do not: only
/// `Resource: "*"` allows them).
pub const VPC_ACTIONS: &[(&str, bool)] = &[
    ("ec2:CreateNetworkInterface", true),
    ("ec2:CreateNetworkInterfacePermission", true),
    ("ec2:DeleteNetworkInterface", true),
    ("ec2:DeleteNetworkInterfacePermission", true),
    ("ec2:DescribeNetworkInterfaces", false),
    ("ec2:DescribeVpcs", false),
    ("ec2:DescribeDhcpOptions", false),
    ("ec2:DescribeSubnets", false),
    ("ec2:DescribeSecurityGroups", false),
];

/// One policy document of the role, as IAM returns it (decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedDocument {
    /// The inline policy's name, or the managed policy's ARN.
    pub name: String,
    pub document: String,
}

/// Everything IAM says about a role that the checks need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDocuments {
    /// The role's ARN as IAM gives it.
    pub arn: String,
    pub trust_policy: String,
    /// Inline policies, then attached managed policies (their default versions).
    pub policies: Vec<NamedDocument>,
    /// The permissions boundary's default version, if the role has one.
    pub boundary: Option<NamedDocument>,
}

/// What reading the role gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleFacts {
    /// The role's documents.
    Read(Arc<RoleDocuments>),
    /// IAM says there is no role of that name (`NoSuchEntity`).
    NotFound,
    /// The role could not be read (the controller may not read IAM, IAM unreachable, the role in
    /// another account): nothing is checked, nothing is blocked.
    NotReadable { reason: String },
}

/// The job the role is checked for: its spec, region, and SageMaker name when known.
#[derive(Debug, Clone, Copy)]
pub struct JobUnderCheck<'a> {
    pub spec: &'a ProcessingJobSpec,
    pub region: &'a str,
    pub name: Option<&'a str>,
}

/// Runs every role check for one job.
pub fn check(job: JobUnderCheck<'_>, facts: &RoleFacts) -> Vec<Finding> {
    let role = job.spec.role_arn.as_str();
    let mut f = Findings::default();
    let documents = match facts {
        RoleFacts::NotFound => {
            f.add(
                Code::RoleNotFound,
                role,
                format!("IAM has no role {role}: SageMaker cannot run the job with it"),
            );
            return f.0;
        }
        RoleFacts::NotReadable { reason } => {
            f.add(
                Code::RoleNotChecked,
                role,
                format!("the execution role {role} was not checked: {reason}"),
            );
            return f.0;
        }
        RoleFacts::Read(documents) => documents,
    };
    let view = RoleView::new(job, role);
    view.trust(&documents.trust_policy, &mut f);
    let Some(permissions) = Permissions::parse(documents, role, &mut f) else {
        return f.0;
    };
    if job.spec.vpc_config().is_some() {
        view.vpc(&permissions, &mut f);
    }
    view.s3(&permissions, &mut f);
    view.kms(&permissions, &mut f);
    view.logs(&permissions, &mut f);
    view.ecr(&permissions, &mut f);
    f.0
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, code: Code, resource: &str, message: impl Into<String>) {
        self.0.push(Finding {
            code: code.as_str().to_string(),
            severity: code.severity(),
            resource: resource.to_string(),
            message: message.into(),
            remediation: code.remediation().to_string(),
        });
    }
}

/// The outcome of one request against the role's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Allowed,
    /// An explicit Deny in this policy (its Sid, if any).
    Denied {
        policy: String,
        sid: Option<String>,
    },
    /// No Allow: in the identity policies, or (`boundary`) in the permissions boundary.
    NotGranted {
        boundary: bool,
    },
    /// Depends on a condition or principal the controller cannot decide.
    Unknown {
        key: String,
    },
}

/// The role's identity policies and boundary, parsed.
struct Permissions {
    identity: Vec<(String, Policy)>,
    boundary: Option<(String, Policy)>,
}

impl Permissions {
    /// Parses every document; a document that cannot be read makes the role's permissions
    /// unknown: one Warning per such document, and `None`.
    fn parse(documents: &RoleDocuments, role: &str, f: &mut Findings) -> Option<Self> {
        let mut unreadable = false;
        let mut read = |d: &NamedDocument, what: &str| match policy::parse(&d.document) {
            Ok(p) => Some((d.name.clone(), p)),
            Err(e) => {
                unreadable = true;
                f.add(
                    Code::RolePolicyUnevaluable,
                    role,
                    format!(
                        "the {what} {} of role {role} cannot be read ({e}); its permissions were not checked",
                        d.name
                    ),
                );
                None
            }
        };
        let identity: Vec<_> = documents.policies.iter().filter_map(|d| read(d, "policy")).collect();
        let boundary = documents
            .boundary
            .as_ref()
            .and_then(|d| read(d, "permissions boundary"));
        (!unreadable).then_some(Self { identity, boundary })
    }

    /// IAM's rule for a role: an explicit Deny anywhere wins; then an Allow is needed in the
    /// identity policies and, when there is one, in the boundary; then anything undecidable
    /// leaves the outcome unknown.
    fn decide(&self, req: &Request<'_>) -> Verdict {
        let all = self.identity.iter().chain(self.boundary.iter());
        let mut unknown_deny = None;
        for (name, p) in all {
            match p.denial(req) {
                Denial::Explicit { sid } => {
                    return Verdict::Denied {
                        policy: name.clone(),
                        sid,
                    }
                }
                Denial::Unknown { key } => unknown_deny = unknown_deny.or(Some(key)),
                Denial::None => {}
            }
        }
        let grant = self.identity.iter().fold(Grant::No, |g, (_, p)| g.or(p.grant(req)));
        let bounded = self.boundary.as_ref().map_or(Grant::Yes, |(_, p)| p.grant(req));
        match (grant, bounded) {
            (Grant::No, _) => Verdict::NotGranted { boundary: false },
            (_, Grant::No) => Verdict::NotGranted { boundary: true },
            (Grant::Unknown { key }, _) | (_, Grant::Unknown { key }) => Verdict::Unknown {
                key: unknown_deny.unwrap_or(key),
            },
            (Grant::Yes, Grant::Yes) => unknown_deny.map_or(Verdict::Allowed, |key| Verdict::Unknown { key }),
        }
    }

    /// The worst verdict over several requests (every one must be allowed).
    fn decide_all<'r>(&self, requests: impl IntoIterator<Item = Request<'r>>) -> Verdict {
        let mut worst = Verdict::Allowed;
        for req in requests {
            let v = self.decide(&req);
            worst = match (&worst, &v) {
                (Verdict::Denied { .. }, _) => worst,
                (_, Verdict::Denied { .. }) => v,
                (Verdict::NotGranted { .. }, _) => worst,
                (_, Verdict::NotGranted { .. }) => v,
                (Verdict::Unknown { .. }, _) => worst,
                _ => v,
            };
        }
        worst
    }
}

/// Why a request is not allowed, for a message.
fn why(v: &Verdict) -> String {
    match v {
        Verdict::Denied { policy, sid: Some(sid) } => {
            format!("an explicit Deny (statement {sid} of {policy}) matches")
        }
        Verdict::Denied { policy, sid: None } => format!("an explicit Deny in {policy} matches"),
        Verdict::NotGranted { boundary: true } => "the permissions boundary does not allow it".into(),
        Verdict::NotGranted { boundary: false } => "no policy of the role allows it".into(),
        Verdict::Unknown { key } => format!("it depends on {key}, which the controller cannot decide"),
        Verdict::Allowed => "it is allowed".into(),
    }
}

/// The job's requests as the role makes them: in the job's region and partition, by the role.
struct RoleView<'a> {
    job: JobUnderCheck<'a>,
    role: &'a str,
    account: &'a str,
    partition: Partition,
    context: Context,
}

impl<'a> RoleView<'a> {
    fn new(job: JobUnderCheck<'a>, role: &'a str) -> Self {
        let account = role.split(':').nth(4).unwrap_or_default();
        let context = Context::default()
            .with("aws:PrincipalArn", role)
            .with("aws:PrincipalAccount", account)
            .with("aws:PrincipalType", "AssumedRole")
            .with("aws:SecureTransport", "true")
            .with("aws:RequestedRegion", job.region);
        Self {
            job,
            role,
            account,
            partition: Partition::of_region(job.region),
            context,
        }
    }

    fn request<'r>(&'r self, action: &'r str, resources: Resources<'r>, context: &'r Context) -> Request<'r> {
        Request {
            action,
            resources,
            context,
            principal_arn: self.role,
            partition: self.partition,
        }
    }

    /// `arn:<partition>:<service>:<region>:<account>:<rest>`
    fn arn(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{rest}",
            self.partition.id(),
            self.job.region,
            self.account
        )
    }

    /// R2: the trust policy lets SageMaker assume the role. SageMaker says which account and
    /// job it acts for (`aws:SourceAccount`, `aws:SourceArn`), so the usual confused-deputy
    /// conditions are decided.
    fn trust(&self, document: &str, f: &mut Findings) {
        let role = self.role;
        let trust = match policy::parse_trust_policy(document) {
            Ok(p) => p,
            Err(e) => {
                f.add(
                    Code::RolePolicyUnevaluable,
                    role,
                    format!("the trust policy of role {role} cannot be read ({e}); whether SageMaker may assume it is unknown"),
                );
                return;
            }
        };
        let mut context = Context::default()
            .with("aws:SourceAccount", self.account)
            .with("aws:SecureTransport", "true");
        if let Some(name) = self.job.name {
            let job_arn = self.arn("sagemaker", &format!("processing-job/{}", name.to_lowercase()));
            context = context.with("aws:SourceArn", job_arn);
        }
        let service = policy::service_principal(SAGEMAKER_SERVICE);
        let decision = trust.evaluate(&Request {
            action: "sts:AssumeRole",
            resources: Resources::One(role),
            context: &context,
            principal_arn: &service,
            partition: self.partition,
        });
        match decision {
            Decision::Allowed => {}
            Decision::Denied { explicit, sid } => {
                let why = match (explicit, sid) {
                    (true, Some(sid)) => format!("its statement {sid} denies it"),
                    (true, None) => "an explicit Deny matches".into(),
                    (false, _) => format!("no statement allows {SAGEMAKER_SERVICE} sts:AssumeRole"),
                };
                f.add(
                    Code::RoleNotAssumableBySageMaker,
                    role,
                    format!("the trust policy of role {role} does not let SageMaker assume it: {why}"),
                );
            }
            Decision::Unevaluable { key } => f.add(
                Code::RolePolicyUnevaluable,
                role,
                format!("whether the trust policy of role {role} lets {SAGEMAKER_SERVICE} assume it depends on {key}, which the controller cannot decide"),
            ),
        }
    }

    /// R3: the EC2 actions SageMaker performs with the role to put the job's network
    /// interfaces in the VPC.
    fn vpc(&self, permissions: &Permissions, f: &mut Findings) {
        let Some(vpc) = self.job.spec.vpc_config() else {
            return;
        };
        let interfaces = self.arn("ec2", "network-interface/");
        let subnets: Vec<String> = vpc
            .subnets
            .iter()
            .map(|s| self.arn("ec2", &format!("subnet/{s}")))
            .collect();
        let groups: Vec<String> = vpc
            .security_group_ids
            .iter()
            .map(|g| self.arn("ec2", &format!("security-group/{g}")))
            .collect();
        let mut missing = Vec::new();
        for (action, resource_level) in VPC_ACTIONS {
            let requests: Vec<Request<'_>> = if !resource_level {
                vec![self.request(action, Resources::One("*"), &self.context)]
            } else if *action == "ec2:CreateNetworkInterface" {
                std::iter::once(Resources::StartingWith(&interfaces))
                    .chain(subnets.iter().chain(&groups).map(|a| Resources::One(a)))
                    .map(|r| self.request(action, r, &self.context))
                    .collect()
            } else {
                vec![self.request(action, Resources::StartingWith(&interfaces), &self.context)]
            };
            match permissions.decide_all(requests) {
                Verdict::Allowed => {}
                Verdict::Unknown { key } => f.add(
                    Code::RolePolicyUnevaluable,
                    self.role,
                    format!(
                        "whether role {} may call {action} depends on {key}, which the controller cannot decide",
                        self.role
                    ),
                ),
                v => missing.push(format!("{action} ({})", why(&v))),
            }
        }
        if !missing.is_empty() {
            f.add(
                Code::RoleMissingVpcPermissions,
                self.role,
                format!(
                    "SageMaker cannot attach the job's network interfaces to the VPC with role {}: {}; the job would fail with an internal error",
                    self.role,
                    missing.join(", ")
                ),
            );
        }
    }

    /// R4: the role reads every input and writes every output.
    fn s3(&self, permissions: &Permissions, f: &mut Findings) {
        let object_context = self.context.clone().without("s3:prefix");
        for (uri, how) in s3_locations(self.job.spec) {
            let Some((bucket, key)) = parse_s3_uri(uri) else {
                f.add(
                    Code::RolePolicyUnevaluable,
                    self.role,
                    format!("cannot tell the bucket of {uri}, so the role's access to it was not checked"),
                );
                continue;
            };
            let object = |k: &str| self.partition.s3_arn(&bucket, Some(k));
            let mut checked: Vec<(&str, Verdict)> = Vec::new();
            match how {
                S3Use::ReadPrefix => {
                    let list_context = self.context.clone().with("s3:prefix", key.as_str());
                    let bucket_arn = self.partition.s3_arn(&bucket, None);
                    let list = self.request("s3:ListBucket", Resources::One(&bucket_arn), &list_context);
                    checked.push(("s3:ListBucket", permissions.decide(&list)));
                    let everything = object(&key);
                    let under = self.request("s3:GetObject", Resources::StartingWith(&everything), &object_context);
                    let mut verdict = permissions.decide(&under);
                    // A key without a trailing `/` may name one object: reading it is enough.
                    if !key.is_empty() && !key.ends_with('/') && verdict != Verdict::Allowed {
                        let one = self.request("s3:GetObject", Resources::One(&everything), &object_context);
                        let folder = object(&format!("{key}/"));
                        let folder = self.request("s3:GetObject", Resources::StartingWith(&folder), &object_context);
                        let as_object = permissions.decide(&one);
                        let as_folder = permissions.decide(&folder);
                        if as_object == Verdict::Allowed || as_folder == Verdict::Allowed {
                            verdict = Verdict::Allowed;
                        }
                    }
                    checked.push(("s3:GetObject", verdict));
                }
                S3Use::ReadManifest => {
                    let manifest = object(&key);
                    let one = self.request("s3:GetObject", Resources::One(&manifest), &object_context);
                    checked.push(("s3:GetObject", permissions.decide(&one)));
                }
                S3Use::Write => {
                    let folder = key.trim_end_matches('/');
                    let under = if folder.is_empty() {
                        object("")
                    } else {
                        object(&format!("{folder}/"))
                    };
                    let put = self.request("s3:PutObject", Resources::StartingWith(&under), &object_context);
                    checked.push(("s3:PutObject", permissions.decide(&put)));
                }
            }
            for (action, verdict) in checked {
                let code = match &verdict {
                    Verdict::Allowed => continue,
                    Verdict::Denied { .. } => Code::RoleS3AccessDenied,
                    Verdict::NotGranted { .. } => Code::RoleS3AccessNotGranted,
                    Verdict::Unknown { .. } => Code::RolePolicyUnevaluable,
                };
                let tail = if code == Code::RoleS3AccessNotGranted {
                    "; unless the bucket's policy grants it to the role, the job will fail"
                } else {
                    ""
                };
                f.add(
                    code,
                    self.role,
                    format!("role {} and {action} on {uri}: {}{tail}", self.role, why(&verdict)),
                );
            }
        }
    }

    /// R5: the KMS keys the job names.
    fn kms(&self, permissions: &Permissions, f: &mut Findings) {
        let spec = self.job.spec;
        let volume = spec.processing_resources.cluster_config.volume_kms_key_id.as_deref();
        let output = spec
            .processing_output_config
            .as_ref()
            .and_then(|o| o.kms_key_id.as_deref());
        let uses = volume
            .map(|k| (k, &["kms:CreateGrant"][..], "volume key"))
            .into_iter()
            .chain(output.map(|k| (k, &["kms:GenerateDataKey", "kms:Encrypt"][..], "output key")));
        for (key, actions, what) in uses {
            let Some(arn) = self.key_arn(key) else {
                f.add(
                    Code::RolePolicyUnevaluable,
                    self.role,
                    format!("the {what} {key} is an alias: the controller does not look up the key behind it, so check that role {} may call {} on that key", self.role, actions.join(" and ")),
                );
                continue;
            };
            for action in actions {
                let verdict = permissions.decide(&self.request(action, Resources::One(&arn), &self.context));
                let code = match &verdict {
                    Verdict::Allowed => continue,
                    Verdict::Denied { .. } => Code::RoleKmsAccessDenied,
                    Verdict::NotGranted { .. } => Code::RoleKmsAccessNotGranted,
                    Verdict::Unknown { .. } => Code::RolePolicyUnevaluable,
                };
                f.add(
                    code,
                    self.role,
                    format!("role {} and {action} on the {what} {key}: {}", self.role, why(&verdict)),
                );
            }
        }
    }

    /// The ARN of a KMS key given as an ARN or a key ID; `None` for an alias.
    fn key_arn(&self, key: &str) -> Option<String> {
        if key.starts_with("alias/") || (key.starts_with("arn:") && key.contains(":alias/")) {
            return None;
        }
        if key.starts_with("arn:") {
            return Some(key.to_string());
        }
        Some(self.arn("kms", &format!("key/{key}")))
    }

    /// R6: the role writes the job's logs (a Warning: the job runs, its logs are lost).
    fn logs(&self, permissions: &Permissions, f: &mut Findings) {
        let streams = match self.job.name {
            Some(name) => format!("log-group:{LOG_GROUP}:log-stream:{name}/"),
            None => format!("log-group:{LOG_GROUP}:log-stream:"),
        };
        let streams = self.arn("logs", &streams);
        let mut missing = Vec::new();
        for action in ["logs:CreateLogStream", "logs:PutLogEvents"] {
            let verdict = permissions.decide(&self.request(action, Resources::StartingWith(&streams), &self.context));
            if verdict != Verdict::Allowed {
                missing.push(format!("{action} ({})", why(&verdict)));
            }
        }
        if !missing.is_empty() {
            f.add(
                Code::RoleLogsAccessMissing,
                self.role,
                format!(
                    "role {} may not write the job's logs to {LOG_GROUP}: {}; the job runs but its logs are lost",
                    self.role,
                    missing.join(", ")
                ),
            );
        }
    }

    /// R7: a private ECR image of the role's own account is pulled with the role.
    fn ecr(&self, permissions: &Permissions, f: &mut Findings) {
        let Some((account, region, repository)) = ecr_image(&self.job.spec.app_specification.image_uri) else {
            return;
        };
        if account != self.account {
            return;
        }
        let repository_arn = format!(
            "arn:{}:ecr:{region}:{account}:repository/{repository}",
            Partition::of_region(region).id()
        );
        let token = self.request("ecr:GetAuthorizationToken", Resources::One("*"), &self.context);
        let pulls = [
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchCheckLayerAvailability",
        ]
        .map(|a| self.request(a, Resources::One(&repository_arn), &self.context));
        let verdict = permissions.decide_all(std::iter::once(token).chain(pulls));
        let code = match &verdict {
            Verdict::Allowed => return,
            Verdict::Denied { .. } => Code::RoleEcrPullDenied,
            Verdict::NotGranted { .. } => Code::RoleEcrPullNotGranted,
            Verdict::Unknown { .. } => Code::RolePolicyUnevaluable,
        };
        f.add(
            code,
            self.role,
            format!(
                "role {} and pulling the image from {repository_arn}: {}",
                self.role,
                why(&verdict)
            ),
        );
    }
}

/// What the job does with an S3 location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S3Use {
    ReadPrefix,
    ReadManifest,
    Write,
}

/// The S3 locations the role reads and writes for the job.
fn s3_locations(spec: &ProcessingJobSpec) -> Vec<(&str, S3Use)> {
    let mut out: Vec<(&str, S3Use)> = spec
        .processing_inputs
        .iter()
        .flatten()
        .filter_map(|i| i.s3_input.as_ref())
        .map(|s3| {
            let how = match s3.s3_data_type {
                S3DataType::S3Prefix => S3Use::ReadPrefix,
                S3DataType::ManifestFile => S3Use::ReadManifest,
            };
            (s3.s3_uri.as_str(), how)
        })
        .collect();
    out.extend(spec.output_uris().map(|u| (u, S3Use::Write)));
    out
}

/// `(account, region, repository)` of an image in a private ECR registry
/// (`<account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag|@digest]`).
pub fn ecr_image(uri: &str) -> Option<(&str, &str, &str)> {
    let (host, path) = uri.split_once('/')?;
    let mut parts = host.split('.');
    let account = parts.next()?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if parts.next()? != "dkr" || parts.next()? != "ecr" {
        return None;
    }
    let region = parts.next()?;
    let repository = path.split('@').next()?;
    let repository = match repository.rsplit_once(':') {
        Some((r, _tag)) => r,
        None => repository,
    };
    Some((account, region, repository))
}

#[cfg(test)]
mod tests;
