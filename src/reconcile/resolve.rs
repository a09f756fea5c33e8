//! Resolve: what validation needs, read from the cluster and from EC2.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::{Context, Error};
use crate::api::{ProcessingJob, ProcessingJobSpec, ValidationMode, REVALIDATE_ANNOTATION};
use crate::aws::{AwsError, Scope};
use crate::network::NetworkSnapshot;
use crate::role::RoleFacts;

/// The namespace's annotations (the tenant guard's limits live there), from the namespace
/// watch's store: a GET per reconcile was one more apiserver round trip for every new job
/// (docs/performance.md). A namespace the store has not seen (the watch not synced yet, or not
/// allowed by RBAC) is read with a GET. The watch brings a namespace's jobs back once the store
/// holds its changed annotations (`runtime::namespaces`).
pub async fn namespace_annotations(ctx: &Context, job: &ProcessingJob) -> Result<BTreeMap<String, String>, Error> {
    let namespace = job.namespace().unwrap_or_default();
    if let Some(ns) = ctx.namespaces.get(&ObjectRef::new(&namespace)) {
        return Ok(ns.annotations().clone());
    }
    let ns = Api::<Namespace>::all(ctx.client.clone())
        .get(&namespace)
        .await
        .map_err(|source| Error::ReadNamespace { namespace, source })?;
    Ok(ns.metadata.annotations.unwrap_or_default())
}

/// A revalidation the user asked for with the `sagemaker.processing.dev/revalidate` annotation
/// and that no validation answered yet: its value.
pub fn revalidation_request(job: &ProcessingJob) -> Option<&str> {
    let asked = job.annotations().get(REVALIDATE_ANNOTATION)?;
    let answered = job
        .status
        .as_ref()
        .and_then(|s| s.network.as_ref())
        .and_then(|n| n.revalidation.as_deref());
    (answered != Some(asked.as_str())).then_some(asked.as_str())
}

/// What the job's network looks like, as far as validation needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkFacts {
    /// No `vpcConfig`: nothing to read.
    NoVpcConfig,
    /// `networkValidation.mode: Skip`: nothing read.
    Skipped,
    /// Read from EC2 (shared per VPC for the cache's TTL), with the execution role read from
    /// IAM (shared per role for the same TTL).
    Read {
        mode: ValidationMode,
        snapshot: NetworkSnapshot,
        role: Arc<RoleFacts>,
    },
}

/// `fresh`: read EC2 and IAM afresh, not from the caches shared by the jobs of a VPC and of a
/// role (a revalidation the user asked for, a failure diagnosis). The role is checked with the
/// network: a job without `vpcConfig` or in mode `Skip` is not validated at all.
pub async fn network(
    ctx: &Context,
    scope: &Scope,
    spec: &ProcessingJobSpec,
    fresh: bool,
) -> Result<NetworkFacts, AwsError> {
    if spec.vpc_config().is_none() {
        return Ok(NetworkFacts::NoVpcConfig);
    }
    let mode = spec.validation_mode();
    if mode == ValidationMode::Skip {
        return Ok(NetworkFacts::Skipped);
    }
    if fresh {
        ctx.network.forget(scope);
        ctx.roles.forget(scope);
    }
    // Each ID read once: a repeated subnet must not count its free IPs twice.
    let snapshot = ctx.network.snapshot(scope, &spec.with_unique_network_ids()).await?;
    let role = ctx.roles.role(scope, &spec.role_arn).await;
    Ok(NetworkFacts::Read { mode, snapshot, role })
}
