//! Events that stop without an error (measurement 1 of issue #34), end to end: a controller with
//! `--poll-interval 5s` follows SageMaker's events through a rule and a queue of this test's own;
//! the rule's target is removed, so every receive still succeeds, empty. A job created then owes
//! its InProgress event, which never comes: within twice the poll interval the flow is declared
//! broken (`smpc_events_flowing` 0, `smpc_events_missed_total` counted, a warning naming the
//! queue), the List poll is back at its normal interval, and both jobs' ends are mirrored within
//! seconds — before, the poll stayed at its five-minute backstop and neither was mirrored within
//! 90 s. Once the target is back and a new job's event is heard, events flow again.
//! A binary of its own: it moves an EventBridge rule's target.

use smpc_test_support as support;

use std::time::{Duration, Instant};

use support::controller::*;
use support::events::{boto, queue_and_rule, remove_queue_and_rule};
use support::vpc::{healthy_setup, prefixed_job_manifests};

const T: Duration = Duration::from_secs(60);

fn in_progress(ns: &str, name: &str) -> String {
    let job = wait_job(ns, name, "InProgress", T, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some("InProgress")
    });
    status_str(&job, "processingJobName").expect("a job name")
}

/// Removes (`false`) or puts back (`true`) the rule's target: the queue.
fn target(rule: &str, url: &str, present: bool) {
    boto(
        r#"
rule, url, present = args
if present == "true":
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
else:
    events.remove_targets(Rule=rule, Ids=["queue"])
"#,
        &[rule, url, if present { "true" } else { "false" }],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_that_stops_sending_is_noticed_and_the_poll_mirrors_every_end() {
    let (t, ns) = healthy_setup("10.235", "events-silence").await;
    let prefix = format!("silent-{}", support::unique_suffix());
    let url = queue_and_rule(&prefix, &prefix);
    let c = ControllerProcess::start(&ns, &["--events-queue-url", &url, "--poll-interval", "5s"], &[]);
    let manifest = |name: &str| prefixed_job_manifests(&ns, &t, &prefix, &[name]);
    wait_for("events flowing", T, || {
        (metric(&c, "smpc_events_flowing") == 1.0).then_some(())
    });
    apply(&manifest("first"));
    let first = in_progress(&ns, "first");
    // Its creation's event was heard: events flow, the poll at its backstop.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(metric(&c, "smpc_events_flowing"), 1.0);
    assert_eq!(metric(&c, "smpc_events_missed_total"), 0.0);

    // The rule loses its target: receives go on succeeding, empty.
    target(&prefix, &url, false);
    apply(&manifest("second"));
    let second = in_progress(&ns, "second");
    let silenced = Instant::now();
    wait_for("the flow declared broken", T, || {
        (metric(&c, "smpc_events_flowing") == 0.0).then_some(())
    });
    let noticed = silenced.elapsed();
    assert!(metric(&c, "smpc_events_missed_total") >= 1.0);
    let log = c.log_text();
    assert!(
        log.contains("did not arrive") && log.contains(&url),
        "a warning names the queue and what was missed:\n{log}"
    );

    // Both jobs end in SageMaker; no event tells: the poll, back at 5 s, mirrors them.
    sim_set_status(&first, r#"{"status":"Completed"}"#);
    sim_set_status(&second, r#"{"status":"Completed"}"#);
    let ended = Instant::now();
    for name in ["first", "second"] {
        wait_job(&ns, name, "Completed", Duration::from_secs(30), |j| {
            status_str(j, "processingJobStatus").as_deref() == Some("Completed")
        });
    }
    let mirrored = ended.elapsed();
    eprintln!(
        "silent rule: noticed {:.1} s after the create that owed an event; both ends mirrored {:.1} s after they happened",
        noticed.as_secs_f64(),
        mirrored.as_secs_f64()
    );
    assert!(noticed <= Duration::from_secs(15), "{noticed:?}");

    // The target is back; the next job's creation event is heard: events flow again.
    target(&prefix, &url, true);
    apply(&manifest("third"));
    in_progress(&ns, "third");
    wait_for("events flowing again", T, || {
        (metric(&c, "smpc_events_flowing") == 1.0).then_some(())
    });
    remove_queue_and_rule(&url, &prefix);
    // The namespace goes first, while the controller still runs to release its resources.
    drop(ns);
    drop(c);
}
