//! The process around the reconciler: wiring of the watches (ProcessingJobs, namespaces for the
//! tenant guard and the accounts, ACK's cross-account ConfigMaps), the tracker and the controller, readiness and gauges, leader election, the
//! ops server, signals and shutdown.

pub mod carm;
pub mod events;
mod gauges;
pub mod lease;
pub mod namespaces;
pub mod orphans;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::controller::Controller;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use tokio_util::sync::CancellationToken;

use crate::aws::AwsClients;
use crate::reconcile::tracker::Tracker;
use crate::reconcile::{self, Context, Guarded, Settings};
use crate::telemetry::metrics::{Metrics, TriggerLabels};
use lease::{LeaderElector, LeaseSettings};
use server::Health;

/// Leader election settings; `None` runs without election.
#[derive(Debug, Clone)]
pub struct Election {
    pub lease: LeaseSettings,
}

/// The fields of a resource whose change brings it to the reconciler: the spec (generation),
/// annotations (region, deletion policy, adoption), other controllers' finalizers and deletion.
/// A status-only change — the controller's own writes above all — brings nothing, nor do the
/// controller's own finalizer and write-ahead annotation: the reconcile that adds them goes on
/// at once, and a second one, started by that write's watch event, could read a cache that has
/// not yet seen the status written meanwhile.
pub fn acts_on(obj: &Guarded) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut h);
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| *k != crate::api::JOB_ANNOTATION)
        .for_each(|kv| kv.hash(&mut h));
    meta.finalizers
        .iter()
        .flatten()
        .filter(|f| *f != reconcile::FINALIZER)
        .for_each(|f| f.hash(&mut h));
    meta.deletion_timestamp.as_ref().map(|t| t.0.to_string()).hash(&mut h);
    Some(h.finish())
}

/// The annotation `kubectl apply` (client-side) keeps a second copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what reconcile never reads before an object enters the cache: the managed fields and
/// kubectl's copy of the last applied object, which together are most of a small resource's
/// size. The cache is most of the controller's memory (see docs/performance.md).
fn slim(obj: &mut Guarded) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

fn count(metrics: &Metrics, trigger: &'static str) {
    metrics.triggers.get_or_create(&TriggerLabels { trigger }).inc();
}

/// Runs the controller until `shutdown`.
pub async fn run_controller(
    client: Client,
    aws: Arc<AwsClients>,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: Option<events::EventsSettings>,
    shutdown: CancellationToken,
) {
    let api: Api<Guarded> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded();
    let tracker = Arc::new(Tracker::new(trigger_tx, settings.resync_interval));
    let (namespaces, namespace_writer) = reflector::store();
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            crate::reconcile::Ports::aws(aws.clone()),
            tracker.clone(),
            settings.clone(),
            metrics.clone(),
        )
        .with_namespaces(namespaces),
    );
    let (store, writer) = reflector::store();
    let poller = match events {
        None => tokio::spawn(
            tracker
                .clone()
                .run(aws.clone(), settings.poll_interval, shutdown.clone()),
        ),
        // SageMaker's events drive the status; the List poll is the backstop.
        Some(events) => tokio::spawn(events::run(
            events,
            settings.poll_interval,
            aws.clone(),
            tracker.clone(),
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
        )),
    };
    let (seen, acted) = (metrics.clone(), metrics.clone());
    let changes = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .applied_objects()
        .inspect_ok(move |_| count(&seen, "watch_event"))
        .predicate_filter(acts_on, Default::default())
        .inspect_ok(move |_| count(&acted, "watch"));
    let tracked = {
        let metrics = metrics.clone();
        trigger_rx.inspect(move |_| count(&metrics, "tracker"))
    };
    let guard_changed = {
        let metrics = metrics.clone();
        namespaces::changes(
            client.clone(),
            settings.namespace.as_deref(),
            store.clone(),
            ctx.accounts.clone(),
            namespace_writer,
        )
        .inspect(move |_| count(&metrics, "namespace"))
    };
    let mapping_changed = {
        let metrics = metrics.clone();
        carm::changes(client.clone(), ctx.accounts.clone(), store.clone()).inspect(move |_| count(&metrics, "carm"))
    };
    let gauges = tokio::spawn(gauges::report(
        store.clone(),
        tracker,
        metrics.clone(),
        health,
        shutdown.clone(),
    ));
    let sweep = tokio::spawn(orphans::run(
        store.clone(),
        aws,
        ctx.accounts.clone(),
        client,
        settings.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let stop = shutdown.clone();
    Controller::for_stream(changes, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .reconcile_on(tracked)
        .reconcile_on(guard_changed)
        .reconcile_on(mapping_changed)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
        .for_each(|result| {
            let metrics = metrics.clone();
            async move {
                match result {
                    Ok((obj, action)) => {
                        if action != kube::runtime::controller::Action::await_change() {
                            count(&metrics, "requeue");
                        }
                        tracing::debug!(object = %obj, "reconciled")
                    }
                    Err(kube::runtime::controller::Error::ReconcilerFailed(e, obj)) => {
                        count(&metrics, "requeue");
                        if e.is_wait() {
                            tracing::info!(object = %obj, reason = e.reason(), "{e}")
                        } else {
                            tracing::warn!(object = %obj, reason = e.reason(), error = %e, "reconcile failed")
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "controller error"),
                }
            }
        })
        .await;
    shutdown.cancel();
    // The Events of the last reconciles, written before the process ends.
    if tokio::time::timeout(Duration::from_secs(5), ctx.events.flush())
        .await
        .is_err()
    {
        tracing::warn!("shutting down with Kubernetes Events not yet written");
    }
    let _ = poller.await;
    let _ = gauges.await;
    let _ = sweep.await;
}

/// Runs the controller, under leader election when `election` is set, driven by SageMaker's
/// events when `events` is set. Returns when `shutdown` is cancelled.
#[allow(clippy::too_many_arguments)] // the process's parts, each built once by `cli/run.rs`
pub async fn run(
    client: Client,
    aws: Arc<AwsClients>,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    election: Option<Election>,
    events: Option<events::EventsSettings>,
    shutdown: CancellationToken,
) {
    let Some(election) = election else {
        // Without election this replica is the only one, so it leads.
        metrics.leader.set(1);
        run_controller(client, aws, settings, metrics.clone(), health, events, shutdown).await;
        metrics.leader.set(0);
        return;
    };
    let elector = Arc::new(LeaderElector::new(client.clone(), election.lease));
    // A standby replica is healthy: it is ready to take over.
    health.set_ready(true);
    if !elector.acquire(&shutdown).await {
        return;
    }
    health.set_ready(false);
    metrics.leader.set(1);
    let lost = CancellationToken::new();
    let holder = tokio::spawn({
        let elector = elector.clone();
        let (shutdown, lost) = (shutdown.clone(), lost.clone());
        async move { elector.hold(shutdown, lost).await }
    });
    let watchdog = {
        let lost = lost.clone();
        tokio::spawn(async move {
            lost.cancelled().await;
            // Stop acting at once: another replica may hold the lease now.
            tracing::error!("leader lease lost: exiting so that only the new leader acts");
            std::process::exit(1);
        })
    };
    run_controller(
        client,
        aws,
        settings,
        metrics.clone(),
        health,
        events,
        shutdown.child_token(),
    )
    .await;
    let _ = holder.await;
    watchdog.abort();
    metrics.leader.set(0);
}

/// Cancels `shutdown` after SIGTERM / SIGINT, once `/readyz` has said 503 for `delay`.
pub fn shutdown_on_signal(health: Arc<Health>, delay: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(delay = ?delay, "shutting down: not ready any more");
        health.set_shutting_down();
        tokio::time::sleep(delay).await;
        shutdown.cancel();
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_no_managed_fields_nor_kubectls_copy_of_the_object() {
        let obj: Guarded = serde_json::from_value(serde_json::json!({
            "apiVersion": "sagemaker.processing.dev/v1alpha1",
            "kind": "ProcessingJob",
            "metadata": {
                "name": "j", "namespace": "n", "generation": 1,
                "annotations": {LAST_APPLIED: "{\"a copy\": true}", "team": "a"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {}}]
            },
            "spec": {}
        }))
        .expect("guarded");
        let mut slimmed = obj.clone();
        slim(&mut slimmed);
        let meta = slimmed.meta();
        assert!(meta.managed_fields.is_none());
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations.get("team").map(String::as_str), Some("a"));
        // Nothing the controller acts on changed.
        assert_eq!(slimmed.meta().generation, obj.meta().generation);
    }
}
