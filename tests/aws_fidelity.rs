//! What AWS may do and the API model cannot say, end to end with the real controller: a List
//! that sees changes late, a provisioning delay before `ProcessingStartTime`, a slow Stopping,
//! events duplicated and delivered out of order (docs/aws-fidelity.md). Each scenario switches
//! the simulator's global config on, so the scenarios of this binary run one at a time, and each
//! ends with the config reset and its calls counted after the resources settle.

use smpc_test_support as support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::controller::*;
use support::events::{queue_and_rule, remove_queue_and_rule};
use support::stack;
use support::vpc::{healthy_setup, job_manifest_in, prefixed_job_manifests};

const T: Duration = Duration::from_secs(90);

/// The simulator's config is global: one scenario at a time.
static SIM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sets the simulator's config for the scope of the guard; `{}` (the defaults) again when it
/// goes, whatever the test's outcome.
struct SimConfig;

impl SimConfig {
    fn set(config: Value) -> Self {
        stack().sim_admin("PUT", "/_sim/config", Some(&config.to_string()));
        SimConfig
    }
}

impl Drop for SimConfig {
    fn drop(&mut self) {
        stack().sim_admin("PUT", "/_sim/config", Some("{}"));
    }
}

fn calls() -> Value {
    serde_json::from_str(&stack().sim_admin("GET", "/_sim/calls", None)).unwrap_or(Value::Null)
}

fn count(v: &Value, op: &str) -> u64 {
    v[op].as_u64().unwrap_or(0)
}

fn wait_status(ns: &str, name: &str, status: &str) -> Value {
    wait_job(ns, name, status, T, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some(status)
    })
}

fn epoch(rfc3339: &str) -> f64 {
    smpc::job::epoch_of(rfc3339).unwrap_or_else(|| panic!("not a time: {rfc3339}"))
}

/// From the poll: jobs start after a provisioning delay (the start time is mirrored, later than
/// the creation), a List that lags two seconds still shows every end, a deleted running job goes
/// once SageMaker's slow Stopping ends (one Stop), and a running job costs no Describe while
/// nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn the_poll_mirrors_through_list_lag_provisioning_and_a_slow_stop() {
    let _one = SIM.lock().await;
    let (t, ns) = healthy_setup("10.231", "fidelity-poll").await;
    let _config = SimConfig::set(json!({"listLagSeconds": 2, "provisioningSeconds": 3, "stoppingSeconds": 4}));
    let c = ControllerProcess::start(&ns, &["--poll-interval", "1s"], &[]);
    let jobs = ["ends", "deleted", "runs"];
    let manifests: String = jobs
        .iter()
        .map(|j| job_manifest_in(&ns, j, 1, &t.private, &[&t.sg], ""))
        .collect();
    apply(&manifests);
    let mut names = Vec::new();
    for j in jobs {
        let job = wait_status(&ns, j, "InProgress");
        names.push(status_str(&job, "processingJobName").expect("a job name"));
    }
    // The start, provisioningSeconds after the creation, reaches the status through the lagging List.
    for j in jobs {
        let job = wait_job(&ns, j, "a processing start time", T, |j| {
            status_str(j, "processingStartTime").is_some()
        });
        let created = epoch(&status_str(&job, "creationTime").expect("creationTime"));
        let started = epoch(&status_str(&job, "processingStartTime").expect("processingStartTime"));
        assert!(started - created >= 2.9, "{j}: started {started} created {created}");
    }

    sim_set_status(&names[0], r#"{"status":"Completed"}"#);
    let before = Instant::now();
    wait_status(&ns, "ends", "Completed");
    assert!(
        before.elapsed() >= Duration::from_secs(2),
        "the List lags 2 s: the end cannot be seen sooner ({:?})",
        before.elapsed()
    );

    stack().sim_admin("DELETE", "/_sim/calls", None);
    let deleted_at = Instant::now();
    stack().kubectl_ok(&["-n", &ns, "delete", "processingjob", "deleted", "--wait=false"]);
    wait_for("the deleted resource gone", T, || {
        get_job(&ns, "deleted").is_none().then_some(())
    });
    let took = deleted_at.elapsed();
    assert!(took >= Duration::from_secs(4), "gone before Stopping ended: {took:?}");
    assert_eq!(sim_jobs()[&names[1]]["status"], "Stopped");
    assert_eq!(count(&calls(), "StopProcessingJob"), 1, "{}", calls());

    // At rest: the running job is listed, never described, and nothing is created again.
    std::thread::sleep(Duration::from_secs(2));
    stack().sim_admin("DELETE", "/_sim/calls", None);
    std::thread::sleep(Duration::from_secs(6));
    let quiet = calls();
    for op in ["DescribeProcessingJob", "CreateProcessingJob", "StopProcessingJob"] {
        assert_eq!(count(&quiet, op), 0, "{op} while nothing changed: {quiet}");
    }
    assert!(count(&quiet, "ListProcessingJobs") <= 8, "one List a poll: {quiet}");
    for name in &names {
        assert_eq!(sim_create_calls(name), 1, "{name} created once");
    }
    // The namespace goes first, while the controller still runs to release its resources.
    drop(ns);
    drop(c);
}

/// From events: every event published twice, and the events of one publishing tick shuffled.
/// A duplicate is counted as such and changes nothing; a Stopping event delivered after the
/// Stopped one does not move the status back; each job is created once.
#[tokio::test(flavor = "multi_thread")]
async fn duplicated_and_reordered_events_change_nothing() {
    let _one = SIM.lock().await;
    let (t, ns) = healthy_setup("10.232", "fidelity-events").await;
    let prefix = format!("fid-{}", support::unique_suffix());
    let queue = queue_and_rule(&prefix, &prefix);
    let _config = SimConfig::set(json!({"duplicateEvents": 1.0, "reorderEvents": true}));
    let c = ControllerProcess::start(
        &ns,
        &[
            "--events-queue-url",
            &queue,
            "--poll-interval",
            "2s",
            "--backstop-poll-interval",
            "1h",
        ],
        &[],
    );
    let jobs = ["completes", "stops", "fails"];
    apply(&prefixed_job_manifests(&ns, &t, &prefix, &jobs));
    for j in jobs {
        wait_status(&ns, j, "InProgress");
    }
    sim_set_status(&format!("{prefix}-completes"), r#"{"status":"Completed"}"#);
    // Stopping then Stopped within one publishing tick: shuffled, the Stopped event may come first.
    sim_set_status(&format!("{prefix}-stops"), r#"{"status":"Stopping"}"#);
    sim_set_status(&format!("{prefix}-stops"), r#"{"status":"Stopped"}"#);
    stack().sim_admin(
        "POST",
        &format!("/_sim/jobs/{prefix}-fails/fail"),
        Some(r#"{"class":"CapacityError"}"#),
    );
    wait_status(&ns, "completes", "Completed");
    wait_status(&ns, "stops", "Stopped");
    let failed = wait_status(&ns, "fails", "Failed");
    assert!(
        status_str(&failed, "failureReason").is_some_and(|r| r.starts_with("CapacityError:")),
        "{failed}"
    );
    // Every duplicate has arrived and been taken for one: the status stays.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        status_str(&get_job(&ns, "stops").expect("stops"), "processingJobStatus").as_deref(),
        Some("Stopped")
    );
    let (_, metrics) = http_get(&format!("{}/metrics", c.ops_url()));
    let duplicates: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"smpc_events_total{outcome="duplicate"} "#)?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(duplicates >= 3.0, "duplicates counted: {duplicates}\n{metrics}");
    for j in jobs {
        assert_eq!(sim_create_calls(&format!("{prefix}-{j}")), 1, "{j} created once");
    }
    remove_queue_and_rule(&queue, &prefix);
    // The namespace goes first, while the controller still runs to release its resources.
    drop(ns);
    drop(c);
}

/// A create is not a change: with SageMaker's clock half a minute ahead of this machine's, the
/// poll lists each new job with a LastModifiedTime later than anything the controller could
/// know from its create — before, every job cost a Describe for its own creation. Now a job
/// costs its create and one Describe, when it ends.
#[tokio::test(flavor = "multi_thread")]
async fn in_poll_mode_a_job_costs_its_create_and_one_describe_whatever_the_clocks() {
    let _one = SIM.lock().await;
    let (t, ns) = healthy_setup("10.234", "fidelity-skew").await;
    let _config = SimConfig::set(json!({"clockSkewSeconds": 30}));
    let c = ControllerProcess::start(&ns, &["--poll-interval", "1s"], &[]);
    let jobs: Vec<String> = (0..10).map(|i| format!("skewed-{i}")).collect();
    let manifests: String = jobs
        .iter()
        .map(|j| job_manifest_in(&ns, j, 1, &t.private, &[&t.sg], ""))
        .collect();
    stack().sim_admin("DELETE", "/_sim/calls", None);
    apply(&manifests);
    let names: Vec<String> = jobs
        .iter()
        .map(|j| status_str(&wait_status(&ns, j, "InProgress"), "processingJobName").expect("a job name"))
        .collect();
    // Several polls see the new jobs.
    std::thread::sleep(Duration::from_secs(4));
    let body = json!({"names": names, "status": "Completed"}).to_string();
    stack().sim_admin("POST", "/_sim/bulk-status", Some(&body));
    for j in &jobs {
        wait_status(&ns, j, "Completed");
    }
    std::thread::sleep(Duration::from_secs(2));
    let v = calls();
    let (creates, describes) = (count(&v, "CreateProcessingJob"), count(&v, "DescribeProcessingJob"));
    eprintln!(
        "SageMaker 30 s ahead, poll mode: {creates} creates, {describes} describes for {} jobs ({v})",
        jobs.len()
    );
    assert_eq!(creates, jobs.len() as u64, "{v}");
    assert_eq!(describes, jobs.len() as u64, "one Describe a job, at its end: {v}");
    // The namespace goes first, while the controller still runs to release its resources.
    drop(ns);
    drop(c);
}
