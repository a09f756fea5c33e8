//! Every state a resource can rest in has a bounded steady-state cost (issue #19): the real
//! controller binary, the apiserver, moto and the simulator. Resources are brought to each
//! resting state, then a quiet window counts the AWS calls and status writes the controller
//! makes (from its own /metrics), then the controller is restarted and counted again.
//!
//! The storm this guards against: a refused job (InvalidSpec, JobNameInUse) was created again
//! on every reconcile its own status write triggered — ~60 CreateProcessingJob a second.

use smpc_test_support as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::controller::*;
use support::vpc::{healthy_setup, job_manifest_in};
use support::{stack, unique_suffix};

const T: Duration = Duration::from_secs(60);
/// The tests of this file run one at a time: the simulator is shared, and another test's
/// hundreds of jobs would add pages to this one's ListProcessingJobs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An instance type SageMaker's model lists but, while this guard lives, the simulated region
/// does not offer: SageMaker refuses the create (InvalidSpec). The CRD takes only the model's
/// types, so a refused spec needs a type the region lacks. The simulator's config is global:
/// held under `SERIAL`, reset when the guard goes.
const REFUSED_TYPE: &str = "ml.p5.4xlarge";

struct RegionLacks;

impl RegionLacks {
    fn refused_type() -> Self {
        let body = format!(r#"{{"unavailableInstanceTypes": ["{REFUSED_TYPE}"]}}"#);
        stack().sim_admin("PUT", "/_sim/config", Some(&body));
        RegionLacks
    }
}

impl Drop for RegionLacks {
    fn drop(&mut self) {
        stack().sim_admin("PUT", "/_sim/config", Some("{}"));
    }
}

/// The quiet window. The poll interval is 1 s, revalidation and resync stay at their defaults.
const WINDOW: Duration = Duration::from_secs(15);

/// (service, operation) → calls, and the status writes, from a controller's /metrics.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    calls: BTreeMap<(String, String), u64>,
    status_writes: u64,
    watch_triggers: u64,
}

fn label<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
}

fn value(line: &str) -> u64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

fn counts(ops: &str) -> Counts {
    let (code, body) = http_get(&format!("{ops}/metrics"));
    assert_eq!(code, 200, "metrics: {body}");
    let mut c = Counts::default();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        if line.starts_with("smpc_aws_calls_total{") {
            *c.calls
                .entry((label(line, "service").into(), label(line, "operation").into()))
                .or_default() += value(line);
        } else if line.starts_with("smpc_status_patches_total") {
            c.status_writes = value(line);
        } else if line.starts_with("smpc_reconcile_triggers_total{") && label(line, "trigger") == "watch" {
            c.watch_triggers = value(line);
        }
    }
    c
}

/// Calls per (service, operation) made between two readings.
fn delta(before: &Counts, after: &Counts) -> BTreeMap<(String, String), u64> {
    after
        .calls
        .iter()
        .map(|(k, n)| (k.clone(), n - before.calls.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn calls_of(d: &BTreeMap<(String, String), u64>, operation: &str) -> u64 {
    d.iter().filter(|((_, op), _)| op == operation).map(|(_, n)| n).sum()
}

fn stalled(j: &serde_json::Value) -> bool {
    condition(j, "Stalled").is_some_and(|c| c.0 == "True")
}

fn sagemaker_status(j: &serde_json::Value, s: &str) -> bool {
    status_str(j, "processingJobStatus").as_deref() == Some(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_resting_state_is_quiet_and_so_is_a_restart() {
    let _serial = SERIAL.lock().await;
    let mut controller;
    let (t, ns) = healthy_setup("10.44", "quiet").await;
    // Only the role every job here uses is allowed, so the `other-role` job is refused.
    stack().kubectl_ok(&[
        "annotate",
        "namespace",
        &ns,
        "sagemaker.processing.dev/allowed-role-arns=arn:aws:iam::123456789012:role/SageMakerProcessingRole",
    ]);
    controller = ControllerProcess::start(&ns, &[], &[]);
    let manifest = |name: &str, extra: &str| job_manifest_in(&ns, name, 1, &t.private, &[&t.sg], extra);
    let taken = format!("taken-{}", unique_suffix());
    sim_foreign_job(&taken).await;

    for name in ["completed", "failed", "stopped", "running"] {
        apply(&manifest(name, ""));
    }
    let _lacks = RegionLacks::refused_type();
    apply(&manifest("invalid-spec", "").replace("ml.m5.xlarge", REFUSED_TYPE));
    apply(&manifest("name-in-use", &format!("  processingJobName: {taken}\n")));
    apply(&job_manifest_in(
        &ns,
        "network-invalid",
        1,
        &["subnet-0123456789abcdef0".to_string()],
        &[&t.sg],
        "",
    ));
    apply(&manifest("not-allowed", "").replace("role/SageMakerProcessingRole", "role/SomeoneElsesRole"));

    for (name, end) in [("completed", "Completed"), ("failed", "Failed"), ("stopped", "Stopped")] {
        let job = wait_job(&ns, name, "InProgress", T, |j| sagemaker_status(j, "InProgress"));
        let job_name = status_str(&job, "processingJobName").expect("job name");
        sim_set_status(&job_name, &format!(r#"{{"status":"{end}"}}"#));
        wait_job(&ns, name, end, T, |j| sagemaker_status(j, end));
    }
    wait_job(&ns, "running", "InProgress", T, |j| sagemaker_status(j, "InProgress"));
    let settled: Vec<(&str, &str)> = vec![
        ("invalid-spec", "InvalidSpec"),
        ("name-in-use", "JobNameInUse"),
        ("network-invalid", "NetworkInvalid"),
        ("not-allowed", "NotAllowedInNamespace"),
    ];
    for (name, reason) in &settled {
        let job = wait_job(&ns, name, reason, T, stalled);
        assert_eq!(
            condition(&job, "Ready").map(|c| c.1).as_deref(),
            Some(*reason),
            "{name}"
        );
    }
    // Let the last transitions' writes land before the window opens.
    std::thread::sleep(Duration::from_secs(2));

    let ops = controller.ops_url();
    let before = counts(&ops);
    let started = Instant::now();
    std::thread::sleep(WINDOW);
    let after = counts(&ops);
    let seconds = started.elapsed().as_secs_f64();
    let quiet = delta(&before, &after);
    let writes = after.status_writes - before.status_writes;
    let watch = after.watch_triggers - before.watch_triggers;
    println!("quiet window of {seconds:.1} s with 8 resting resources (poll 1 s):");
    println!("| operation | calls |");
    println!("|---|---|");
    for ((service, op), n) in &quiet {
        println!("| {service} {op} | {n} |");
    }
    println!("| status writes | {writes} |");
    println!("| reconciles brought by watch events | {watch} |");

    // Refused, ended and blocked resources cost nothing; the running one costs one List per poll.
    for op in [
        "CreateProcessingJob",
        "DescribeProcessingJob",
        "ListTags",
        "StopProcessingJob",
    ] {
        assert_eq!(calls_of(&quiet, op), 0, "{op} during the quiet window: {quiet:?}");
    }
    let lists = calls_of(&quiet, "ListProcessingJobs");
    assert!(
        lists as f64 <= seconds + 2.0,
        "ListProcessingJobs {lists} in {seconds:.1} s with a 1 s poll"
    );
    assert!(
        quiet.keys().all(|(service, _)| service == "sagemaker"),
        "no EC2 read before the revalidation interval: {quiet:?}"
    );
    assert_eq!(writes, 0, "status writes during the quiet window");
    assert_eq!(
        watch, 0,
        "watch events that brought a resource back during the quiet window"
    );
    for (name, reason) in &settled {
        let job = get_job(&ns, name).expect("resource");
        assert_eq!(
            condition(&job, "Ready").map(|c| c.1).as_deref(),
            Some(*reason),
            "{name} flapped"
        );
    }
    assert_eq!(
        sim_create_calls(&taken),
        2,
        "the other team's create and one attempt of ours (ResourceInUse), never more"
    );

    // A restart: ended and refused resources cost no SageMaker call; the running job is
    // described once (its state was never described by this process).
    controller.kill9();
    controller = ControllerProcess::start(&ns, &[], &[]);
    let ops = controller.ops_url();
    wait_for("the restarted controller is ready", T, || {
        (http_get(&format!("{ops}/readyz")).0 == 200).then_some(())
    });
    std::thread::sleep(WINDOW);
    let restarted = counts(&ops);
    let calls = delta(&Counts::default(), &restarted);
    println!("restart, then {} s:", WINDOW.as_secs());
    println!("| operation | calls |");
    println!("|---|---|");
    for ((service, op), n) in &calls {
        println!("| {service} {op} | {n} |");
    }
    println!("| status writes | {} |", restarted.status_writes);
    for op in ["CreateProcessingJob", "ListTags", "StopProcessingJob"] {
        assert_eq!(calls_of(&calls, op), 0, "{op} after a restart: {calls:?}");
    }
    assert!(
        calls_of(&calls, "DescribeProcessingJob") <= 1,
        "only the running job may be described after a restart: {calls:?}"
    );
}

/// A controller started on a namespace holding hundreds of ended and refused resources makes no
/// SageMaker call for them (issue #19, "restart is quiet too").
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_over_hundreds_of_ended_and_refused_resources_is_quiet() {
    let _serial = SERIAL.lock().await;
    const EACH: usize = 100;
    let mut controller;
    let (t, ns) = healthy_setup("10.45", "quiet-restart").await;
    controller = ControllerProcess::start(&ns, &[], &[]);
    let manifest = |name: &str| job_manifest_in(&ns, name, 1, &t.private, &[&t.sg], "");
    let _lacks = RegionLacks::refused_type();
    let mut all = String::new();
    for i in 0..EACH {
        all.push_str(&manifest(&format!("ended-{i}")));
        all.push_str(&manifest(&format!("refused-{i}")).replace("ml.m5.xlarge", REFUSED_TYPE));
    }
    apply(&all);
    let settled = |prefix: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        wait_for(
            &format!("all {prefix} resources settled"),
            Duration::from_secs(180),
            || {
                let out = stack().kubectl_ok(&["-n", &ns, "get", "processingjobs", "-o", "json"]);
                let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let matching: Vec<serde_json::Value> = items
                    .into_iter()
                    .filter(|j| j["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
                    .collect();
                (matching.len() == EACH && matching.iter().all(pred)).then_some(matching)
            },
        )
    };
    let running = settled("ended-", &|j| sagemaker_status(j, "InProgress"));
    let names: Vec<String> = running
        .iter()
        .filter_map(|j| status_str(j, "processingJobName"))
        .collect();
    let body = serde_json::json!({"names": names, "status": "Completed"}).to_string();
    stack().sim_admin("POST", "/_sim/bulk-status", Some(&body));
    settled("ended-", &|j| sagemaker_status(j, "Completed"));
    settled("refused-", &|j| {
        condition(j, "Ready").is_some_and(|c| c.1 == "InvalidSpec")
    });

    controller.kill9();
    controller = ControllerProcess::start(&ns, &[], &[]);
    let ops = controller.ops_url();
    wait_for("the restarted controller is ready", T, || {
        (http_get(&format!("{ops}/readyz")).0 == 200).then_some(())
    });
    std::thread::sleep(Duration::from_secs(10));
    let after = counts(&ops);
    let calls = delta(&Counts::default(), &after);
    println!(
        "restart over {EACH} Completed and {EACH} InvalidSpec resources, then 10 s: AWS calls {calls:?}, status writes {}",
        after.status_writes
    );
    assert!(
        calls.is_empty(),
        "AWS calls after a restart over ended and refused resources: {calls:?}"
    );
    assert_eq!(after.status_writes, 0, "status writes after the restart");
}
