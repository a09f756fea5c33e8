//! How long each stage of a reconcile takes, as debug events of the target `smpc::stages`
//! (`--log-level info,smpc::stages=debug`): one line per stage with its wall-clock start and its
//! duration, inside the reconcile's span (which names the object). The benchmark reads them to
//! say where the time between apply and Submitted goes (docs/performance.md). Off by default:
//! when the target is disabled, a stage costs one check of the filter.

use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The log target of the stage events.
pub const TARGET: &str = "smpc::stages";

/// Awaits `fut`, logging how long it took as `stage`.
pub async fn timed<F: Future>(stage: &'static str, fut: F) -> F::Output {
    if !tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        return fut.await;
    }
    let start = epoch_now();
    let clock = Instant::now();
    let out = fut.await;
    tracing::debug!(target: TARGET, stage, start, secs = clock.elapsed().as_secs_f64(), "stage");
    out
}

/// Logs that the events consumer handed `object`'s state change to its reconcile: the stage
/// `event`, from the moment the message was received (`received`, epoch seconds) until then —
/// the time it waited for a slot of the consumer and for its decision. With the time SageMaker
/// published the event (the simulator's record) and the time the resource showed it, the
/// benchmark splits an event's lag into the queue's part and the controller's.
pub fn handed(object: &str, received: f64) {
    if tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        let secs = (epoch_now() - received).max(0.0);
        tracing::debug!(target: TARGET, object = %object, stage = "event", start = received, secs, "stage");
    }
}

/// Seconds since the epoch, now.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
