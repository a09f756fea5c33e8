//! The AWS I/O the reconciler needs, as narrow traits: implemented by the AWS adapters for the
//! controller, and by in-memory fakes for the in-process tests.

use futures::future::BoxFuture;
use futures::FutureExt;

use std::sync::Arc;

use crate::api::{ProcessingJobSpec, Tag};
use crate::aws::logs::StreamTail;
use crate::aws::{AwsClients, AwsError, Scope};
use crate::job::JobState;
use crate::network::NetworkSnapshot;
use crate::role::RoleFacts;

/// An AWS answer, later.
pub type Answer<'a, T> = BoxFuture<'a, Result<T, AwsError>>;

/// The job to create: its name, the spec, and the tags that tie it to the resource.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    pub name: &'a str,
    pub spec: &'a ProcessingJobSpec,
    pub tags: &'a [Tag],
}

/// SageMaker processing jobs, in one account and region ([`Scope`]) per call.
pub trait JobService: Send + Sync {
    /// Makes sure the scope's account can be reached: for a role in another account, assumes it
    /// (once per session: cached). `Err` with code `AssumeRoleFailed` carries STS's message.
    fn sign_in<'a>(&'a self, scope: &'a Scope) -> Answer<'a, ()> {
        let _ = scope;
        async { Ok(()) }.boxed()
    }

    /// CreateProcessingJob; returns the job's ARN.
    fn create<'a>(&'a self, scope: &'a Scope, job: NewJob<'a>) -> Answer<'a, String>;
    fn describe<'a>(&'a self, scope: &'a Scope, name: &'a str) -> Answer<'a, JobState>;
    fn stop<'a>(&'a self, scope: &'a Scope, name: &'a str) -> Answer<'a, ()>;
    /// The job's tags as (key, value) pairs.
    fn tags<'a>(&'a self, scope: &'a Scope, arn: &'a str) -> Answer<'a, Vec<(String, String)>>;
    /// Adds one tag to the job.
    fn add_tag<'a>(&'a self, scope: &'a Scope, arn: &'a str, tag: (&'a str, &'a str)) -> Answer<'a, ()>;
}

/// What EC2 says about a job's network.
pub trait NetworkReader: Send + Sync {
    fn snapshot<'a>(&'a self, scope: &'a Scope, spec: &'a ProcessingJobSpec) -> Answer<'a, NetworkSnapshot>;

    /// Forgets what was read in the scope's account and region, so that the next snapshot is fresh.
    fn forget(&self, scope: &Scope);
}

/// What IAM says about a job's execution role.
pub trait RoleReader: Send + Sync {
    /// The role `arn`, read through the IAM of the scope's account and partition (cached for a TTL). Never an
    /// error: an unreadable role is [`RoleFacts::NotReadable`].
    fn role<'a>(&'a self, scope: &'a Scope, arn: &'a str) -> BoxFuture<'a, Arc<RoleFacts>>;

    /// Forgets the roles read in the scope's account and partition, so that the next read is fresh.
    fn forget(&self, scope: &Scope);
}

/// The CloudWatch Logs of a job.
pub trait JobLogs: Send + Sync {
    /// The last `lines` lines of each of the job's log streams.
    fn tail<'a>(&'a self, scope: &'a Scope, job_name: &'a str, lines: i32) -> Answer<'a, Vec<StreamTail>>;
}

impl JobService for AwsClients {
    fn sign_in<'a>(&'a self, scope: &'a Scope) -> Answer<'a, ()> {
        async move { AwsClients::sign_in(self, scope).await }.boxed()
    }

    fn create<'a>(&'a self, scope: &'a Scope, job: NewJob<'a>) -> Answer<'a, String> {
        async move { self.sagemaker(scope).create(job.name, job.spec, job.tags).await }.boxed()
    }

    fn describe<'a>(&'a self, scope: &'a Scope, name: &'a str) -> Answer<'a, JobState> {
        async move { self.sagemaker(scope).describe(name).await }.boxed()
    }

    fn stop<'a>(&'a self, scope: &'a Scope, name: &'a str) -> Answer<'a, ()> {
        async move { self.sagemaker(scope).stop(name).await }.boxed()
    }

    fn tags<'a>(&'a self, scope: &'a Scope, arn: &'a str) -> Answer<'a, Vec<(String, String)>> {
        async move { self.sagemaker(scope).tags(arn).await }.boxed()
    }

    fn add_tag<'a>(&'a self, scope: &'a Scope, arn: &'a str, tag: (&'a str, &'a str)) -> Answer<'a, ()> {
        async move { self.sagemaker(scope).add_tag(arn, tag.0, tag.1).await }.boxed()
    }
}

impl NetworkReader for AwsClients {
    fn snapshot<'a>(&'a self, scope: &'a Scope, spec: &'a ProcessingJobSpec) -> Answer<'a, NetworkSnapshot> {
        async move { self.ec2(scope).snapshot(spec).await }.boxed()
    }

    fn forget(&self, scope: &Scope) {
        self.ec2(scope).forget()
    }
}

impl RoleReader for AwsClients {
    fn role<'a>(&'a self, scope: &'a Scope, arn: &'a str) -> BoxFuture<'a, Arc<RoleFacts>> {
        async move { self.iam(scope).role(arn).await }.boxed()
    }

    fn forget(&self, scope: &Scope) {
        self.iam(scope).forget()
    }
}

impl JobLogs for AwsClients {
    fn tail<'a>(&'a self, scope: &'a Scope, job_name: &'a str, lines: i32) -> Answer<'a, Vec<StreamTail>> {
        async move { self.logs(scope).tail(job_name, lines).await }.boxed()
    }
}
