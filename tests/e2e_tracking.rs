//! With many active jobs, status is tracked with batched ListProcessingJobs: Describe calls per
//! poll interval follow the jobs that changed, not all jobs. A test binary of its own, because
//! it reads the simulator's global call counters.

use smpc_test_support as support;

use std::time::Duration;

use serde_json::Value;
use support::controller::*;
use support::stack;
use support::vpc::{healthy_setup, job_manifest_in};

const JOBS: usize = 50;

fn calls() -> Value {
    serde_json::from_str(&stack().sim_admin("GET", "/_sim/calls", None)).unwrap_or(Value::Null)
}

fn count(v: &Value, op: &str) -> u64 {
    v[op].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_calls_follow_changed_jobs_not_all_jobs() {
    let s = stack();
    let _c;
    let (t, ns) = healthy_setup("10.40", "e2e-tracking").await;
    _c = ControllerProcess::start(&ns, &[], &[]);
    s.sim_admin("DELETE", "/_sim/calls", None);
    let manifests: String = (0..JOBS)
        .map(|i| job_manifest_in(&ns, &format!("job-{i}"), 1, &t.private, &[&t.sg], ""))
        .collect();
    apply(&manifests);

    // Every job created (the create answer says InProgress: no Describe needed).
    let names: Vec<String> = (0..JOBS)
        .map(|i| {
            let job = wait_job(&ns, &format!("job-{i}"), "InProgress", Duration::from_secs(120), |j| {
                status_str(j, "processingJobStatus").as_deref() == Some("InProgress")
            });
            status_str(&job, "processingJobName").expect("job name")
        })
        .collect();

    // Created from the create answer alone: no Describe so far.
    assert_eq!(count(&calls(), "DescribeProcessingJob"), 0, "no Describe after create");

    // Quiet period: several polls, no job changes, no Describe.
    s.sim_admin("DELETE", "/_sim/calls", None);
    std::thread::sleep(Duration::from_secs(5));
    let quiet = calls();
    assert!(
        count(&quiet, "ListProcessingJobs") >= 3,
        "the tracker polls with List: {quiet}"
    );
    assert_eq!(
        count(&quiet, "DescribeProcessingJob"),
        0,
        "no Describe while nothing changed: {quiet}"
    );

    // Five jobs end: about five Describes, not fifty.
    s.sim_admin("DELETE", "/_sim/calls", None);
    for name in &names[..5] {
        sim_set_status(name, r#"{"status":"Completed"}"#);
    }
    for i in 0..5 {
        wait_job(&ns, &format!("job-{i}"), "Completed", Duration::from_secs(30), |j| {
            status_str(j, "processingJobStatus").as_deref() == Some("Completed")
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    let after = calls();
    let describes = count(&after, "DescribeProcessingJob");
    assert!(
        (5..=10).contains(&describes),
        "Describe calls should follow the 5 changed jobs, got {describes}: {after}"
    );
    assert_eq!(count(&after, "CreateProcessingJob"), 0);
    for name in &names {
        assert_eq!(sim_create_calls(name), 1, "{name} created once");
    }
}
