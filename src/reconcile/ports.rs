//! The AWS I/O the reconciler needs, as two narrow traits: implemented by the AWS adapters for
//! the controller, and by in-memory fakes for the in-process tests.

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::api::{ProcessingJobSpec, Tag};
use crate::aws::{AwsClients, AwsError};
use crate::job::JobState;
use crate::network::NetworkSnapshot;

/// SageMaker processing jobs, in one region per call.
pub trait JobService: Send + Sync {
    /// CreateProcessingJob; returns the job's ARN.
    fn create<'a>(
        &'a self,
        region: &'a str,
        name: &'a str,
        spec: &'a ProcessingJobSpec,
        tags: &'a [Tag],
    ) -> BoxFuture<'a, Result<String, AwsError>>;
    fn describe<'a>(&'a self, region: &'a str, name: &'a str) -> BoxFuture<'a, Result<JobState, AwsError>>;
    fn stop<'a>(&'a self, region: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), AwsError>>;
    /// The job's tags as (key, value) pairs.
    fn tags<'a>(&'a self, region: &'a str, arn: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, AwsError>>;
}

/// What EC2 says about a job's network.
pub trait NetworkReader: Send + Sync {
    fn snapshot<'a>(
        &'a self,
        region: &'a str,
        spec: &'a ProcessingJobSpec,
    ) -> BoxFuture<'a, Result<NetworkSnapshot, AwsError>>;
}

impl JobService for AwsClients {
    fn create<'a>(
        &'a self,
        region: &'a str,
        name: &'a str,
        spec: &'a ProcessingJobSpec,
        tags: &'a [Tag],
    ) -> BoxFuture<'a, Result<String, AwsError>> {
        async move { self.sagemaker(region).create(name, spec, tags).await }.boxed()
    }

    fn describe<'a>(&'a self, region: &'a str, name: &'a str) -> BoxFuture<'a, Result<JobState, AwsError>> {
        async move { self.sagemaker(region).describe(name).await }.boxed()
    }

    fn stop<'a>(&'a self, region: &'a str, name: &'a str) -> BoxFuture<'a, Result<(), AwsError>> {
        async move { self.sagemaker(region).stop(name).await }.boxed()
    }

    fn tags<'a>(&'a self, region: &'a str, arn: &'a str) -> BoxFuture<'a, Result<Vec<(String, String)>, AwsError>> {
        async move { self.sagemaker(region).tags(arn).await }.boxed()
    }
}

impl NetworkReader for AwsClients {
    fn snapshot<'a>(
        &'a self,
        region: &'a str,
        spec: &'a ProcessingJobSpec,
    ) -> BoxFuture<'a, Result<NetworkSnapshot, AwsError>> {
        async move { self.ec2(region).snapshot(spec).await }.boxed()
    }
}
