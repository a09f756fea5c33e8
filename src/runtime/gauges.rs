//! Readiness and the gauges read from the controller's cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use super::server::Health;
use crate::reconcile::tracker::Tracker;
use crate::reconcile::Guarded;
use crate::telemetry::metrics::Metrics;

/// Marks the controller ready once its cache synced, then keeps the gauges of jobs by status
/// and findings by code up to date from the cache.
pub async fn report(
    store: Store<Guarded>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    // kube's readiness signal wakes only its latest waiter (the controller's runner also waits
    // on it), so poll it rather than wait once.
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
    health.set_ready(true);
    tracing::info!("caches synced: ready");
    loop {
        let mut jobs: BTreeMap<String, i64> = BTreeMap::new();
        let mut findings: BTreeMap<(String, String), i64> = BTreeMap::new();
        for obj in store.state() {
            let Ok(job) = &obj.0 else { continue };
            let status = job.status.as_ref();
            let phase = status
                .and_then(|s| s.processing_job_status.clone())
                .unwrap_or_else(|| "None".into());
            *jobs.entry(phase).or_default() += 1;
            for f in status
                .and_then(|s| s.network.as_ref())
                .map(|n| n.findings.as_slice())
                .unwrap_or(&[])
            {
                *findings.entry((f.code.clone(), f.severity.to_string())).or_default() += 1;
            }
        }
        metrics.set_jobs(jobs);
        metrics.set_findings(findings);
        metrics.active_jobs.set(tracker.active() as i64);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
