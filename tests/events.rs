//! Event-driven status end to end: the simulator publishes each job's state changes to moto's
//! EventBridge, a rule of this test's own routes them to an SQS queue of its own, and a
//! controller with `--events-queue-url` and a one-hour backstop poll mirrors them within seconds
//! with no Describe and no List; a malformed message is counted and deleted without stopping
//! the consumer; once the queue is gone the List poll catches up. A test binary of its own: it
//! reads the simulator's global call counters.

use smpc_test_support as support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::controller::*;
use support::events::{boto, queue_and_rule, queued, remove_queue_and_rule};
use support::stack;
use support::vpc::{healthy_setup, prefixed_job_manifests};

fn calls() -> Value {
    serde_json::from_str(&stack().sim_admin("GET", "/_sim/calls", None)).unwrap_or(Value::Null)
}

fn count(v: &Value, op: &str) -> u64 {
    v[op].as_u64().unwrap_or(0)
}

fn wait_status(ns: &str, name: &str, status: &str, within: Duration) -> Value {
    wait_job(ns, name, status, within, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some(status)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn events_drive_the_status_and_the_poll_catches_up_when_they_stop() {
    let s = stack();
    let _c;
    let (t, ns) = healthy_setup("10.41", "e2e-events").await;
    let prefix = format!("evt-{}", support::unique_suffix());
    let url = queue_and_rule(&prefix, &prefix);
    _c = ControllerProcess::start(
        &ns,
        &[
            "--events-queue-url",
            &url,
            "--poll-interval",
            "2s",
            "--backstop-poll-interval",
            "1h",
        ],
        &[],
    );
    let c = &_c;
    // One poll a whole poll interval after the queue answered, then the backstop.
    wait_for("the poll at its backstop interval", Duration::from_secs(30), || {
        (metric(c, "smpc_events_flowing") == 1.0).then_some(())
    });

    let jobs = ["done", "failed", "after-malformed", "after-gap"];
    apply(&prefixed_job_manifests(&ns, &t, &prefix, &jobs));
    for j in jobs {
        wait_status(&ns, j, "InProgress", Duration::from_secs(60));
    }

    // Completed and Failed, mirrored from the events alone: no Describe, no List.
    s.sim_admin("DELETE", "/_sim/calls", None);
    let changed = Instant::now();
    sim_set_status(&format!("{prefix}-done"), r#"{"status":"Completed"}"#);
    sim_set_status(
        &format!("{prefix}-failed"),
        r#"{"status":"Failed","failureReason":"AlgorithmError: exit code 1"}"#,
    );
    wait_status(&ns, "done", "Completed", Duration::from_secs(10));
    let failed = wait_status(&ns, "failed", "Failed", Duration::from_secs(10));
    let lag = changed.elapsed();
    println!("both ends mirrored {lag:?} after the change");
    assert_eq!(
        status_str(&failed, "failureReason").as_deref(),
        Some("AlgorithmError: exit code 1")
    );
    assert_eq!(condition(&failed, "Ready"), Some(("False".into(), "Failed".into())));
    let during = calls();
    assert_eq!(count(&during, "DescribeProcessingJob"), 0, "{during}");
    assert_eq!(count(&during, "ListProcessingJobs"), 0, "{during}");
    // Every message deleted once its status was written.
    wait_for("the queue emptied", Duration::from_secs(10), || {
        (queued(&url) == 0).then_some(())
    });
    assert!(metric(c, r#"smpc_events_total{outcome="applied"}"#) >= 2.0);

    // A malformed message: counted, deleted, and the consumer goes on.
    boto(
        r#"sqs.send_message(QueueUrl=args[0], MessageBody="{not an event")"#,
        &[&url],
    );
    wait_for("the malformed message counted", Duration::from_secs(30), || {
        (metric(c, r#"smpc_events_total{outcome="malformed"}"#) == 1.0).then_some(())
    });
    sim_set_status(&format!("{prefix}-after-malformed"), r#"{"status":"Completed"}"#);
    wait_status(&ns, "after-malformed", "Completed", Duration::from_secs(10));
    wait_for("the queue emptied", Duration::from_secs(10), || {
        (queued(&url) == 0).then_some(())
    });
    let after = calls();
    assert_eq!(count(&after, "DescribeProcessingJob"), 0, "{after}");
    assert_eq!(count(&after, "ListProcessingJobs"), 0, "{after}");

    // The queue goes away: the poll is back at its 2 s interval and catches the change up with
    // List and Describe.
    remove_queue_and_rule(&url, &prefix);
    sim_set_status(&format!("{prefix}-after-gap"), r#"{"status":"Completed"}"#);
    wait_status(&ns, "after-gap", "Completed", Duration::from_secs(60));
    let caught_up = calls();
    assert!(count(&caught_up, "ListProcessingJobs") >= 1, "{caught_up}");
    assert!(count(&caught_up, "DescribeProcessingJob") >= 1, "{caught_up}");
    assert!(metric(c, "smpc_event_receive_errors_total") >= 1.0);
    assert_eq!(metric(c, "smpc_events_flowing"), 0.0);
}
