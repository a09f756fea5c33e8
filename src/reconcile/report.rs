//! Report: an outcome becomes the status (server-side apply of `status` only, skipped when
//! nothing changed) and the Events of the transition. The resource's other writes are here too:
//! its finalizer and the write-ahead before a create (one metadata patch when both are due).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};

use super::observe::JobRef;
use super::status::{self, Observation};
use super::{Context, Error, FIELD_MANAGER, FINALIZER};
use crate::api::{ProcessingJob, ProcessingJobStatus, JOB_ANNOTATION};

/// Writes the status computed from `obs` when it differs from the stored one, and publishes the
/// Events of the transition. Returns the status now in force.
pub async fn report(ctx: &Context, job: &ProcessingJob, obs: &Observation) -> Result<ProcessingJobStatus, Error> {
    let prev = job.status.clone().unwrap_or_default();
    let mut next = status::desired_status(&prev, obs);
    status::answer_revalidation(
        &mut next,
        obs,
        job.annotations()
            .get(crate::api::REVALIDATE_ANNOTATION)
            .map(String::as_str),
        super::resolve::revalidation_request(job).is_some(),
    );
    if prev == next {
        return Ok(prev);
    }
    let patch = serde_json::json!({
        "apiVersion": format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
        "kind": "ProcessingJob",
        "status": next,
    });
    Api::<ProcessingJob>::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default())
        .patch_status(
            &job.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::WriteStatus)?;
    ctx.metrics.status_patches.inc();
    for e in status::transition_events(&prev, &next) {
        publish(ctx, job, e.warning, e.reason, e.note, &e.action);
    }
    Ok(next)
}

/// Records the job's name, region and account before CreateProcessingJob (the write-ahead),
/// in the resource's metadata ([`JOB_ANNOTATION`]): from here on the resource remembers the job,
/// whatever happens to this process or to its status. When the resource has no finalizer yet
/// (`with_finalizer`), the same patch adds it — one write for both, before anything of the
/// resource exists in AWS — and carries the resourceVersion read, so it fails rather than
/// overwrite finalizers changed meanwhile. Writes nothing when both are there already.
pub async fn write_ahead(ctx: &Context, job: &ProcessingJob, at: &JobRef, with_finalizer: bool) -> Result<(), Error> {
    let pin = at.pin();
    let recorded = job.annotations().get(JOB_ANNOTATION) == Some(&pin);
    if recorded && !with_finalizer {
        return Ok(());
    }
    let metadata = serde_json::json!({"annotations": {JOB_ANNOTATION: pin}});
    if with_finalizer {
        patch_metadata(ctx, job, adding_finalizer(job, metadata))
            .await
            .map_err(Error::AddFinalizer)
    } else {
        patch_metadata(ctx, job, metadata).await.map_err(Error::WriteAhead)
    }
}

/// Takes the write-ahead back after a create SageMaker refused before creating anything (its
/// quota, the credentials, its rate of creates): the next attempt then creates without first looking for a job that
/// cannot exist. Best effort: left in place, it only costs that look.
pub async fn unpin(ctx: &Context, job: &ProcessingJob) {
    let metadata = serde_json::json!({"annotations": {JOB_ANNOTATION: null}});
    if let Err(e) = patch_metadata(ctx, job, metadata).await {
        tracing::warn!(error = %e, "cannot take back the write-ahead of a job SageMaker did not create");
    }
}

/// One Event about the resource (folded into a series by the recorder when repeated), written
/// in the background: the reconcile does not wait for it.
pub fn publish(ctx: &Context, job: &ProcessingJob, warning: bool, reason: &str, note: String, action: &str) {
    // The Events tell a job's story; the log tells it too (the reconcile span names the object).
    if warning {
        tracing::warn!(reason, "{note}");
    } else {
        tracing::info!(reason, "{note}");
    }
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    ctx.events.publish(event, job.object_ref(&()));
}

/// The ProcessingJobs of a namespace, untyped: for objects the typed API cannot read.
fn untyped_api(ctx: &Context, meta: &ObjectMeta) -> (Api<DynamicObject>, String) {
    let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let ar = ApiResource::erase::<ProcessingJob>(&());
    (Api::namespaced_with(ctx.client.clone(), &ns, &ar), ns)
}

/// The status of an object whose spec cannot be parsed, read on its own: `Ok(None)` when it has
/// none, `Err` when it cannot be parsed either.
pub async fn raw_status(
    ctx: &Context,
    meta: &ObjectMeta,
) -> Result<Result<Option<ProcessingJobStatus>, String>, Error> {
    let (api, _) = untyped_api(ctx, meta);
    let obj = api
        .get(meta.name.as_deref().unwrap_or_default())
        .await
        .map_err(Error::ReadObject)?;
    Ok(match obj.data.get("status") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(status) => serde_json::from_value(status.clone())
            .map(Some)
            .map_err(|e| e.to_string()),
    })
}

/// Adds the controller's finalizer to a resource this reconcile does not create a job for (a
/// job it creates gets it with the write-ahead, [`write_ahead`]), before its status is written;
/// the reconcile goes on. (kube's finalizer helper stops after adding it and waits for the watch
/// to bring the object back: a second trip through the queue for every new resource —
/// docs/performance.md.) The patch carries the resourceVersion read, so it fails rather than
/// overwrite finalizers changed meanwhile.
pub async fn add_finalizer(ctx: &Context, job: &ProcessingJob) -> Result<(), Error> {
    patch_metadata(ctx, job, adding_finalizer(job, serde_json::json!({})))
        .await
        .map_err(Error::AddFinalizer)
}

/// `metadata` with the finalizers read plus the controller's, and the resourceVersion read.
fn adding_finalizer(job: &ProcessingJob, mut metadata: serde_json::Value) -> serde_json::Value {
    let mut finalizers = job.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    metadata["finalizers"] = serde_json::json!(finalizers);
    metadata["resourceVersion"] = serde_json::json!(job.metadata.resource_version);
    metadata
}

/// A merge patch of the resource's metadata.
async fn patch_metadata(ctx: &Context, job: &ProcessingJob, metadata: serde_json::Value) -> Result<(), kube::Error> {
    Api::<ProcessingJob>::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default())
        .patch(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "metadata": metadata })),
        )
        .await
        .map(|_| ())
}

/// Removes the controller's finalizer from an object the finalizer helper cannot parse. The
/// patch carries the resourceVersion read, so it fails rather than drop a finalizer added
/// meanwhile.
pub async fn release_finalizer(ctx: &Context, meta: &ObjectMeta) -> Result<(), Error> {
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let rest: Vec<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
    let (api, ns) = untyped_api(ctx, meta);
    let name = meta.name.clone().unwrap_or_default();
    let patch = serde_json::json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::ReleaseFinalizer)?;
    tracing::info!(
        namespace = ns,
        name,
        "finalizer released from a malformed ProcessingJob: no SageMaker job runs for it"
    );
    Ok(())
}

/// A stored object the controller cannot read: say so in its status (when the apiserver lets
/// us) and in an Event. `deleting`: why its deletion waits, when it does.
pub async fn invalid_object(ctx: &Context, invalid: &InvalidObject, deleting: Option<&str>) {
    let (api, ns) = untyped_api(ctx, &invalid.metadata);
    let name = invalid.metadata.name.clone().unwrap_or_default();
    tracing::warn!(namespace = ns, name, error = %invalid.error, deleting, "malformed ProcessingJob");
    let ar = ApiResource::erase::<ProcessingJob>(&());
    let since = invalid
        .metadata
        .creation_timestamp
        .clone()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let message = match deleting {
        None => format!(
            "the object cannot be read: {}; recreate it with a valid spec",
            invalid.error
        ),
        Some(why) => format!(
            "the object cannot be read: {}; its deletion waits: {why}",
            invalid.error
        ),
    };
    let condition = |t: &str, s: &str| serde_json::json!({"type": t, "status": s, "reason": "InvalidObject", "message": message, "lastTransitionTime": since});
    let patch = serde_json::json!({"status": {"conditions": [
        condition(status::READY, "False"), condition(status::STALLED, "True"), condition(status::RECONCILING, "False")
    ]}});
    // The apiserver may refuse even a status write for an object its schema cannot read: the
    // Event below still tells the user.
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(namespace = ns, name, error = %e, "cannot write the status of the malformed object");
    }
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(ar.api_version.clone()),
        kind: Some(ar.kind.clone()),
        name: Some(name),
        namespace: Some(ns),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidSpec".into(),
        note: Some(message),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.events.publish(event, reference);
}
