//! CreateProcessingJob at SageMaker's real rate, end to end: about one create a second per account
//! and region, not adjustable (the simulator's `createsPerSecond: 1`, without burst). Sixty jobs
//! applied at once are all InProgress within N / rate × 1.1 + 5 s, with at most 1.1
//! CreateProcessingJob calls per job: once a throttle has shown the rate, creates stay under it
//! (`reconcile::pace`). A binary of its own: it sets the simulator's global create rate.

use smpc_test_support as support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::controller::*;
use support::stack;
use support::vpc::{healthy_setup, job_manifest_in};

const JOBS: usize = 60;
const RATE: f64 = 1.0;

/// The simulator's create rate for the scope of the guard; the defaults again when it goes.
struct CreateRate;

impl CreateRate {
    fn set(rate: f64) -> Self {
        let body = format!(r#"{{"createsPerSecond": {rate}}}"#);
        stack().sim_admin("PUT", "/_sim/config", Some(&body));
        CreateRate
    }
}

impl Drop for CreateRate {
    fn drop(&mut self) {
        stack().sim_admin("PUT", "/_sim/config", Some("{}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn at_one_create_a_second_creates_stay_under_the_limit() {
    let s = stack();
    let (t, ns) = healthy_setup("10.233", "pacing").await;
    let _rate = CreateRate::set(RATE);
    let c = ControllerProcess::start(&ns, &[], &[]);
    let prefix = format!("pace-{}", support::unique_suffix());
    let manifests: String = (0..JOBS)
        .map(|i| {
            let spec = format!("  processingJobName: {prefix}-{i}\n");
            job_manifest_in(&ns, &format!("job-{i}"), 1, &t.private, &[&t.sg], &spec)
        })
        .collect();
    s.sim_admin("DELETE", "/_sim/calls", None);
    let applied = Instant::now();
    apply(&manifests);
    let bound = Duration::from_secs_f64(JOBS as f64 / RATE * 1.1 + 5.0);
    let in_progress = || {
        let out = s.kubectl(&["-n", &ns, "get", "processingjobs", "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|j| status_str(j, "processingJobStatus").as_deref() == Some("InProgress"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for("every job InProgress", bound + Duration::from_secs(60), || {
        (in_progress() == JOBS).then_some(())
    });
    let took = applied.elapsed();
    let creates: u64 = (0..JOBS).map(|i| sim_create_calls(&format!("{prefix}-{i}"))).sum();
    let per_job = creates as f64 / JOBS as f64;
    eprintln!(
        "pacing at {RATE} create/s: {JOBS} jobs InProgress in {:.1} s (bound {:.0} s), {creates} CreateProcessingJob calls ({per_job:.2} per job, {} throttled)",
        took.as_secs_f64(),
        bound.as_secs_f64(),
        creates - JOBS as u64
    );
    assert!(took <= bound, "{took:?} > {bound:?}");
    assert!(per_job <= 1.1, "{creates} creates for {JOBS} jobs");
    // The namespace goes first, while the controller still runs to release its resources.
    drop(ns);
    drop(c);
}
