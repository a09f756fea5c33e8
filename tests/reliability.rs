//! Reliability under faults, end to end (real binary, apiserver, moto behind the fault proxy,
//! the simulator's fault injection). Each scenario ends with an invariant check — every resource
//! in its correct final state, one CreateProcessingJob per resource, no resource stuck (measured
//! at the end of every scenario: still there after deletion, or in no final state) — and the
//! suite prints the figures table of docs/reliability.md.
//!
//! Reduced sizes by default (CI); `RELIABILITY_FULL=1 cargo test --test reliability -- --nocapture`
//! runs the full sizes of the issue; `RELIABILITY_ONLY=<name>` runs one scenario.

use smpc_test_support as support;

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use support::controller::*;
use support::stack;
use support::vpc::{job_manifest_in, topology, Topology, REGION};

struct Row {
    scenario: &'static str,
    load: String,
    faults: String,
    duplicates: usize,
    lost: usize,
    stuck: usize,
    converge: f64,
}

type Scenario = fn(&Topology) -> Row;

fn full() -> bool {
    std::env::var("RELIABILITY_FULL").is_ok_and(|v| v == "1")
}

fn size(ci: usize, full_size: usize) -> usize {
    if full() {
        full_size
    } else {
        ci
    }
}

fn faulty_env() -> Vec<(String, String)> {
    vec![("AWS_ENDPOINT_URL_EC2".into(), stack().var("EC2_FAULT_PROXY_URL").into())]
}

fn start(ns: &str, extra: &[&str]) -> ControllerProcess {
    start_with_env(ns, extra, &[])
}

fn start_with_env(ns: &str, extra: &[&str], extra_env: &[(&str, &str)]) -> ControllerProcess {
    let env = faulty_env();
    let mut env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env_refs.extend_from_slice(extra_env);
    let mut args = vec!["--credentials-retry-interval", "2s"];
    args.extend_from_slice(extra);
    ControllerProcess::start(ns, &args, &env_refs)
}

fn sim_config(config: Value) {
    stack().sim_admin("PUT", "/_sim/config", Some(&config.to_string()));
}

fn proxy_config(config: Value) {
    let url = format!("{}/_proxy/config", stack().var("EC2_FAULT_PROXY_URL"));
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f", "-X", "PUT", &url, "--data", &config.to_string()])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "proxy config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn clear_faults() {
    sim_config(json!({}));
    proxy_config(json!({}));
}

fn apply_jobs(t: &Topology, ns: &str, prefix: &str, n: usize) {
    let manifests: String = (0..n)
        .map(|i| job_manifest_in(ns, &format!("{prefix}-{i}"), 1, &t.private, &[&t.sg], ""))
        .collect();
    apply(&manifests);
}

fn items(ns: &str) -> Vec<Value> {
    let out = stack().kubectl(&["-n", ns, "get", "processingjobs", "-o", "json"]);
    if !out.status.success() {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn count_status(ns: &str, status: &str) -> usize {
    items(ns)
        .iter()
        .filter(|j| j["status"]["processingJobStatus"] == status)
        .count()
}

/// Waits until `n` resources have the SageMaker status; returns how many did.
fn wait_status(ns: &str, status: &str, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let c = count_status(ns, status);
        if c >= n || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn job_names(ns: &str) -> Vec<String> {
    items(ns)
        .iter()
        .filter_map(|j| j["status"]["processingJobName"].as_str().map(str::to_string))
        .collect()
}

/// Duplicate creates: SageMaker jobs of this namespace beyond one per resource (whatever their
/// names), plus job names that CreateProcessingJob reached more than once.
fn duplicates(ns: &str) -> usize {
    duplicates_among(ns, &job_names(ns), items(ns).len())
}

/// Duplicate creates when some resources are already gone: `names` are the job names of all the
/// scenario's resources, `resources` how many there were.
fn duplicates_among(ns: &str, names: &[String], resources: usize) -> usize {
    let creates: Value = serde_json::from_str(&stack().sim_admin("GET", "/_sim/creates", None)).unwrap_or(Value::Null);
    let twice = names
        .iter()
        .filter(|n| creates[n.as_str()].as_u64().unwrap_or(0) > 1)
        .count();
    let ns_tag = json!({"Key": "sagemaker.processing.dev/namespace", "Value": ns});
    let jobs_of_ns = sim_jobs()
        .as_object()
        .map(|m| {
            m.values()
                .filter(|j| j["tags"].as_array().is_some_and(|t| t.contains(&ns_tag)))
                .count()
        })
        .unwrap_or(0);
    twice + jobs_of_ns.saturating_sub(resources)
}

fn is_true(job: &Value, type_: &str) -> bool {
    condition(job, type_).is_some_and(|(status, _)| status == "True")
}

/// Stuck: resources of the namespace still present after deletion (deletionTimestamp set), or
/// in no final state (neither `Ready` nor `Stalled` True). Deleted resources that are gone count
/// as released.
fn stuck(ns: &str) -> usize {
    items(ns)
        .iter()
        .filter(|j| !j["metadata"]["deletionTimestamp"].is_null() || !(is_true(j, "Ready") || is_true(j, "Stalled")))
        .count()
}

fn wait_gone(ns: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !items(ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn complete_all(ns: &str) {
    let names = job_names(ns);
    stack().sim_admin(
        "POST",
        "/_sim/bulk-status",
        Some(&json!({"names": names, "status": "Completed"}).to_string()),
    );
}

/// The common lifecycle under a fault: apply n jobs, all created once, completed and mirrored.
fn lifecycle(t: &Topology, ns: &str, n: usize, timeout: Duration) -> (usize, usize, f64) {
    let started = Instant::now();
    apply_jobs(t, ns, "job", n);
    wait_status(ns, "InProgress", n, timeout);
    // Jobs that some create never reached are caught below as lost.
    complete_all(ns);
    let done = wait_status(ns, "Completed", n, timeout);
    (duplicates(ns), n - done, started.elapsed().as_secs_f64())
}

fn throttling(t: &Topology) -> Row {
    let n = size(40, 200);
    let _c;
    let ns = stack().namespace("rel-throttle");
    sim_config(json!({"throttleRate": 0.2, "errorRate": 0.05}));
    proxy_config(json!({"throttleRate": 0.2, "errorRate": 0.05}));
    _c = start(&ns, &[]);
    let (duplicates, lost, converge) = lifecycle(t, &ns, n, Duration::from_secs(240));
    clear_faults();
    Row {
        scenario: "throttling and server errors",
        load: format!("{n} jobs"),
        faults: "20% throttling + 5% 5xx on SageMaker and EC2".into(),
        duplicates,
        lost,
        stuck: stuck(&ns),
        converge,
    }
}

fn kills(t: &Topology) -> Row {
    let n = size(30, 100);
    let kills = size(5, 20);
    let mut c;
    let ns = stack().namespace("rel-kill");
    let started = Instant::now();
    c = start(&ns, &[]);
    apply_jobs(t, &ns, "job", n);
    let mut rng = rand::rng();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
        c.kill9();
        c = start(&ns, &[]);
    }
    wait_status(&ns, "InProgress", n, Duration::from_secs(180));
    complete_all(&ns);
    let done = wait_status(&ns, "Completed", n, Duration::from_secs(180));
    Row {
        scenario: "controller killed (SIGKILL) and restarted",
        load: format!("{n} jobs"),
        faults: format!("{kills} kills at random moments"),
        duplicates: duplicates(&ns),
        lost: n - done,
        stuck: stuck(&ns),
        converge: started.elapsed().as_secs_f64(),
    }
}

fn apiserver_restart(t: &Topology) -> Row {
    let n = size(20, 100);
    let _c;
    let ns = stack().namespace("rel-apiserver");
    let started = Instant::now();
    _c = start(&ns, &[]);
    apply_jobs(t, &ns, "job", n);
    std::thread::sleep(Duration::from_secs(1));
    let out = std::process::Command::new(support::repo_root().join("scripts/stack"))
        .args(["restart-apiserver", "10"])
        .output()
        .expect("restart apiserver");
    assert!(
        out.status.success(),
        "restart-apiserver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_status(&ns, "InProgress", n, Duration::from_secs(180));
    complete_all(&ns);
    let done = wait_status(&ns, "Completed", n, Duration::from_secs(180));
    Row {
        scenario: "kube-apiserver stopped and restarted",
        load: format!("{n} jobs"),
        faults: "apiserver down 10 s mid-run".into(),
        duplicates: duplicates(&ns),
        lost: n - done,
        stuck: stuck(&ns),
        converge: started.elapsed().as_secs_f64(),
    }
}

fn latency(t: &Topology) -> Row {
    let n = size(10, 50);
    let _c;
    let ns = stack().namespace("rel-latency");
    sim_config(json!({"latencyMs": 2000}));
    proxy_config(json!({"latencyMs": 2000}));
    _c = start(&ns, &[]);
    let (duplicates, lost, converge) = lifecycle(t, &ns, n, Duration::from_secs(240));
    clear_faults();
    Row {
        scenario: "slow AWS",
        load: format!("{n} jobs"),
        faults: "+2 s on every AWS call".into(),
        duplicates,
        lost,
        stuck: stuck(&ns),
        converge,
    }
}

fn malformed(t: &Topology) -> Row {
    let s = stack();
    let _c;
    let ns = s.namespace("rel-malformed");
    // A CRD without rules, as before validation existed, lets a malformed object in.
    let permissive = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "processingjobs.sagemaker.processing.dev"},
        "spec": {"group": "sagemaker.processing.dev", "scope": "Namespaced",
            "names": {"kind": "ProcessingJob", "plural": "processingjobs", "singular": "processingjob", "shortNames": ["smpj"], "categories": ["sagemaker"]},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
    });
    s.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &permissive.to_string(),
    );
    let broken = json!({"apiVersion": "sagemaker.processing.dev/v1alpha1", "kind": "ProcessingJob",
        "metadata": {"name": "broken", "namespace": ns.as_str()}, "spec": {"roleARN": 42, "processingResources": "lots"}});
    // The apiserver validates with the permissive schema a moment after the CRD update (longer
    // right after it restarted): retry until it does.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &broken.to_string());
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "storing the malformed object: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let crd = support::repo_root().join("crds/processingjobs.yaml");
    s.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        crd.to_str().expect("path"),
    ]);
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    _c = start(&ns, &[]);
    let n = 5;
    apply_jobs(t, &ns, "good", n);
    wait_status(&ns, "InProgress", n, Duration::from_secs(60));
    let flagged = wait_for(
        "an InvalidSpec Event for the malformed object",
        Duration::from_secs(60),
        || events(&ns, "broken").into_iter().find(|e| e.1 == "InvalidSpec"),
    );
    assert!(
        flagged.0 == "Warning" && flagged.2.contains("recreate it"),
        "{flagged:?}"
    );
    complete_all(&ns);
    let done = wait_status(&ns, "Completed", n, Duration::from_secs(60));
    s.kubectl_ok(&["-n", &ns, "delete", "processingjob", "broken", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_job(&ns, "broken").is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    Row {
        scenario: "malformed object stored in the apiserver",
        load: format!("1 malformed + {n} jobs"),
        faults: "object that does not deserialize".into(),
        duplicates: duplicates(&ns),
        lost: n - done,
        stuck: stuck(&ns),
        converge: started.elapsed().as_secs_f64(),
    }
}

fn credentials(t: &Topology) -> Row {
    let n = 5;
    let mut c;
    let ns = stack().namespace("rel-creds");
    sim_config(json!({"rejectCredentials": true}));
    c = start(&ns, &[]);
    let started = Instant::now();
    apply_jobs(t, &ns, "job", n);
    for i in 0..n {
        wait_job(
            &ns,
            &format!("job-{i}"),
            "AwsCredentialsError",
            Duration::from_secs(60),
            |j| condition(j, "Reconciling") == Some(("True".into(), "AwsCredentialsError".into())),
        );
    }
    assert!(
        events(&ns, "job-0")
            .iter()
            .any(|e| e.1 == "AwsError" && e.0 == "Warning"),
        "an AwsError Event"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        c.wait_exit(Duration::from_millis(10)).is_none(),
        "no crash while the credentials are refused"
    );
    sim_config(json!({}));
    wait_status(&ns, "InProgress", n, Duration::from_secs(60));
    complete_all(&ns);
    let done = wait_status(&ns, "Completed", n, Duration::from_secs(60));
    Row {
        scenario: "AWS credentials refused, then fixed",
        load: format!("{n} jobs"),
        faults: "UnrecognizedClientException on every call".into(),
        duplicates: duplicates(&ns),
        lost: n - done,
        stuck: stuck(&ns),
        converge: started.elapsed().as_secs_f64(),
    }
}

fn mass_delete(t: &Topology) -> Row {
    let n = size(40, 100);
    let _c;
    let ns = stack().namespace("rel-delete");
    _c = start(&ns, &[]);
    apply_jobs(t, &ns, "job", n);
    let running = wait_status(&ns, "InProgress", n, Duration::from_secs(120));
    let names = job_names(&ns);
    // Counted while the resources exist: afterwards every job would look like a duplicate.
    let duplicates = duplicates(&ns);
    let started = Instant::now();
    stack().kubectl_ok(&["-n", &ns, "delete", "processingjobs", "--all", "--wait=false"]);
    wait_gone(&ns, Duration::from_secs(180));
    let stuck = stuck(&ns);
    let sim = sim_jobs();
    let not_stopped = names.iter().filter(|n| sim[n.as_str()]["status"] != "Stopped").count();
    Row {
        scenario: "delete InProgress jobs at once",
        load: format!("{n} jobs"),
        faults: "mass deletion".into(),
        duplicates,
        lost: (n - running) + not_stopped,
        stuck,
        converge: started.elapsed().as_secs_f64(),
    }
}

/// Deleted while AWS refuses the credentials: the resource reports the blocked deletion beside
/// the job's fields.
fn deletion_blocked(job: &Value) -> bool {
    !job["metadata"]["deletionTimestamp"].is_null()
        && job["status"]["processingJobARN"].is_string()
        && condition(job, "Reconciling") == Some(("True".into(), "DeletionBlocked".into()))
}

fn credentials_during_delete(t: &Topology) -> Row {
    let n = size(5, 20);
    let hold = Duration::from_secs(5);
    let _c;
    let ns = stack().namespace("rel-creds-delete");
    _c = start(&ns, &[]);
    apply_jobs(t, &ns, "job", n);
    let running = wait_status(&ns, "InProgress", n, Duration::from_secs(120));
    assert_eq!(
        running, n,
        "setup: every job InProgress before the credentials are refused"
    );
    let names = job_names(&ns);
    // Counted while the resources exist: afterwards every job would look like a duplicate.
    let duplicates = duplicates(&ns);
    sim_config(json!({"rejectCredentials": true}));
    stack().kubectl_ok(&["-n", &ns, "delete", "processingjobs", "--all", "--wait=false"]);
    let kept = |what: &str| {
        let items = items(&ns);
        assert_eq!(
            items.len(),
            n,
            "{what}: {} of {n} resources released while AWS refused the credentials",
            n - items.len()
        );
        items
    };
    wait_for(
        "every deleted resource to report Reconciling/DeletionBlocked with its job's ARN",
        Duration::from_secs(60),
        || {
            kept("waiting for DeletionBlocked")
                .iter()
                .all(deletion_blocked)
                .then_some(())
        },
    );
    let hold_until = Instant::now() + hold;
    while Instant::now() < hold_until {
        let items = kept("holding");
        let blocked = items.iter().filter(|j| deletion_blocked(j)).count();
        assert_eq!(
            blocked, n,
            "every resource reports DeletionBlocked with its job's ARN while refused"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let started = Instant::now();
    sim_config(json!({}));
    wait_gone(&ns, Duration::from_secs(120));
    let stuck = stuck(&ns);
    let sim = sim_jobs();
    let not_stopped = names.iter().filter(|n| sim[n.as_str()]["status"] != "Stopped").count();
    Row {
        scenario: "credentials refused during delete",
        load: format!("{n} jobs"),
        faults: format!(
            "UnrecognizedClientException on every call while deleted, {} s",
            hold.as_secs()
        ),
        duplicates,
        lost: (n - running) + not_stopped,
        stuck,
        converge: started.elapsed().as_secs_f64(),
    }
}

const OTHER_REGION: &str = "eu-west-3";

/// A job manifest without `spec.region`: ACK's annotation names the region.
fn annotated_manifest(t: &Topology, ns: &str, name: &str, region: &str) -> String {
    let manifest = job_manifest_in(ns, name, 1, &t.private, &[&t.sg], "");
    let spec_region = format!("  region: {REGION}\n");
    let ns_line = format!("  namespace: {ns}\n");
    assert!(
        manifest.contains(&spec_region) && manifest.contains(&ns_line),
        "the manifest template changed: {manifest}"
    );
    manifest.replacen(&spec_region, "", 1).replacen(
        &ns_line,
        &format!("{ns_line}  annotations:\n    services.k8s.aws/region: {region}\n"),
        1,
    )
}

fn region_changed(t: &Topology) -> Row {
    let n = size(6, 20);
    // The controller started after the region change releases the jobs when the namespace goes.
    let _c;
    let ns = stack().namespace("rel-region");
    // Jobs live in the region they were created in, as in SageMaker.
    sim_config(json!({"regional": true}));
    let c = start(&ns, &[]);
    let manifests: String = (0..n)
        .map(|i| annotated_manifest(t, &ns, &format!("job-{i}"), REGION))
        .collect();
    apply(&manifests);
    let running = wait_status(&ns, "InProgress", n, Duration::from_secs(120));
    assert_eq!(running, n, "setup: every job InProgress before the region changes");
    let job_of: std::collections::BTreeMap<String, String> = items(&ns)
        .iter()
        .filter_map(|j| {
            Some((
                j["metadata"]["name"].as_str()?.to_string(),
                j["status"]["processingJobName"].as_str()?.to_string(),
            ))
        })
        .collect();
    let names: Vec<String> = job_of.values().cloned().collect();
    drop(c);
    let started = Instant::now();
    stack().kubectl_ok(&[
        "-n",
        &ns,
        "annotate",
        "processingjobs",
        "--all",
        "--overwrite",
        &format!("services.k8s.aws/region={OTHER_REGION}"),
    ]);
    _c = start_with_env(&ns, &["--region", OTHER_REGION], &[("AWS_REGION", OTHER_REGION)]);
    // Half the resources are deleted while their jobs run; the others' jobs complete.
    let (deleted, kept): (Vec<_>, Vec<_>) = job_of.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let deleted: Vec<(&String, &String)> = deleted.into_iter().map(|(_, kv)| kv).collect();
    let kept: Vec<(&String, &String)> = kept.into_iter().map(|(_, kv)| kv).collect();
    let mut delete = vec!["-n", ns.as_str(), "delete", "processingjob", "--wait=false"];
    delete.extend(deleted.iter().map(|(resource, _)| resource.as_str()));
    stack().kubectl_ok(&delete);
    let kept_jobs: Vec<&String> = kept.iter().map(|(_, job)| *job).collect();
    stack().sim_admin(
        "POST",
        "/_sim/bulk-status",
        Some(&json!({"names": kept_jobs, "status": "Completed"}).to_string()),
    );
    let settled = || {
        let items = items(&ns);
        let present = |r: &str| items.iter().any(|j| j["metadata"]["name"] == r);
        deleted.iter().all(|(r, _)| !present(r)) && count_status(&ns, "Completed") == kept.len()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !settled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let converge = started.elapsed().as_secs_f64();
    // Kept resources: mirrored to Completed, still naming the region the job was created in.
    let not_mirrored = kept
        .iter()
        .filter(|(r, _)| {
            get_job(&ns, r)
                .is_none_or(|j| j["status"]["processingJobStatus"] != "Completed" || j["status"]["region"] != REGION)
        })
        .count();
    // Deleted resources: their jobs stopped, which only a StopProcessingJob sent to the region
    // they run in can do (the simulator's jobs are regional here).
    let sim = sim_jobs();
    let not_stopped = deleted
        .iter()
        .filter(|(_, job)| sim[job.as_str()]["status"] != "Stopped")
        .count();
    if not_mirrored + not_stopped > 0 {
        eprintln!(
            "region changed: {not_mirrored} of {} kept resources not Completed in {REGION}, {not_stopped} of {} deleted jobs not Stopped",
            kept.len(),
            deleted.len()
        );
    }
    Row {
        scenario: "region annotation changed",
        load: format!("{n} jobs"),
        faults: format!("annotation and controller region {REGION} → {OTHER_REGION}, restart"),
        duplicates: duplicates_among(&ns, &names, n),
        lost: not_mirrored + not_stopped,
        stuck: stuck(&ns),
        converge,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_survives_every_fault() {
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("throttling", throttling),
        ("kills", kills),
        ("apiserver", apiserver_restart),
        ("latency", latency),
        ("malformed", malformed),
        ("credentials", credentials),
        ("delete", mass_delete),
        ("credentials-delete", credentials_during_delete),
        ("region", region_changed),
    ];
    let only = std::env::var("RELIABILITY_ONLY").ok();
    if let Some(o) = &only {
        let valid: Vec<&str> = scenarios.iter().map(|(name, _)| *name).collect();
        assert!(
            valid.contains(&o.as_str()),
            "RELIABILITY_ONLY={o:?} names no scenario; valid names: {}",
            valid.join(", ")
        );
    }
    let s = stack();
    s.install_crd();
    clear_faults();
    let t = topology("10.80", true).await;
    t.s3_gateway_endpoint(None).await;
    let mut rows = Vec::new();
    for (name, scenario) in scenarios {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        eprintln!("reliability: {name}");
        rows.push(scenario(&t));
        clear_faults();
    }
    println!("\n| scenario | load | faults injected | duplicate creates | lost | stuck | time to converge (s) |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} |",
            r.scenario, r.load, r.faults, r.duplicates, r.lost, r.stuck, r.converge
        );
    }
    for r in &rows {
        assert_eq!(
            (r.duplicates, r.lost, r.stuck),
            (0, 0, 0),
            "{}: duplicates, lost, stuck",
            r.scenario
        );
    }
}
