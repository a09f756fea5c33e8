//! Reliability under faults, end to end (real binary, apiserver, moto behind the fault proxy,
//! the simulator's fault injection). Each scenario ends with an invariant check — every resource
//! in its correct final state, one CreateProcessingJob per resource, no resource stuck with a
//! finalizer — and the suite prints the figures table of docs/reliability.md.
//!
//! Reduced sizes by default (CI); `RELIABILITY_FULL=1 cargo test --test reliability -- --nocapture`
//! runs the full sizes of the issue.

mod support;

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use support::controller::*;
use support::stack;
use support::vpc::{job_manifest_in, topology, Topology};

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
    let env = faulty_env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
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
    let creates: Value = serde_json::from_str(&stack().sim_admin("GET", "/_sim/creates", None)).unwrap_or(Value::Null);
    let twice = job_names(ns)
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
    let resources = items(ns).len();
    twice + jobs_of_ns.saturating_sub(resources)
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
    let ns = stack().namespace("rel-throttle");
    sim_config(json!({"throttleRate": 0.2, "errorRate": 0.05}));
    proxy_config(json!({"throttleRate": 0.2, "errorRate": 0.05}));
    let _c = start(&ns, &[]);
    let (duplicates, lost, converge) = lifecycle(t, &ns, n, Duration::from_secs(240));
    clear_faults();
    Row {
        scenario: "throttling and server errors",
        load: format!("{n} jobs"),
        faults: "20% throttling + 5% 5xx on SageMaker and EC2".into(),
        duplicates,
        lost,
        stuck: 0,
        converge,
    }
}

fn kills(t: &Topology) -> Row {
    let n = size(30, 100);
    let kills = size(5, 20);
    let ns = stack().namespace("rel-kill");
    let started = Instant::now();
    let mut c = start(&ns, &[]);
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
    drop(c);
    Row {
        scenario: "controller killed (SIGKILL) and restarted",
        load: format!("{n} jobs"),
        faults: format!("{kills} kills at random moments"),
        duplicates: duplicates(&ns),
        lost: n - done,
        stuck: 0,
        converge: started.elapsed().as_secs_f64(),
    }
}

fn apiserver_restart(t: &Topology) -> Row {
    let n = size(20, 100);
    let ns = stack().namespace("rel-apiserver");
    let started = Instant::now();
    let _c = start(&ns, &[]);
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
        stuck: 0,
        converge: started.elapsed().as_secs_f64(),
    }
}

fn latency(t: &Topology) -> Row {
    let n = size(10, 50);
    let ns = stack().namespace("rel-latency");
    sim_config(json!({"latencyMs": 2000}));
    proxy_config(json!({"latencyMs": 2000}));
    let _c = start(&ns, &[]);
    let (duplicates, lost, converge) = lifecycle(t, &ns, n, Duration::from_secs(240));
    clear_faults();
    Row {
        scenario: "slow AWS",
        load: format!("{n} jobs"),
        faults: "+2 s on every AWS call".into(),
        duplicates,
        lost,
        stuck: 0,
        converge,
    }
}

fn malformed(t: &Topology) -> Row {
    let s = stack();
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
    std::thread::sleep(Duration::from_secs(2));
    let broken = json!({"apiVersion": "sagemaker.processing.dev/v1alpha1", "kind": "ProcessingJob",
        "metadata": {"name": "broken", "namespace": ns}, "spec": {"roleARN": 42, "processingResources": "lots"}});
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &broken.to_string());
    assert!(
        out.status.success(),
        "storing the malformed object: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let _c = start(&ns, &[]);
    let n = 5;
    apply_jobs(t, &ns, "good", n);
    let done = wait_status(&ns, "InProgress", n, Duration::from_secs(60));
    let flagged = wait_for(
        "an InvalidSpec Event for the malformed object",
        Duration::from_secs(60),
        || events(&ns, "broken").into_iter().find(|e| e.1 == "InvalidSpec"),
    );
    assert!(
        flagged.0 == "Warning" && flagged.2.contains("recreate it"),
        "{flagged:?}"
    );
    let _ = s.kubectl(&["-n", &ns, "delete", "processingjob", "broken", "--wait=false"]);
    Row {
        scenario: "malformed object stored in the apiserver",
        load: format!("1 malformed + {n} jobs"),
        faults: "object that does not deserialize".into(),
        duplicates: duplicates(&ns),
        lost: n - done,
        stuck: 0,
        converge: started.elapsed().as_secs_f64(),
    }
}

fn credentials(t: &Topology) -> Row {
    let n = 5;
    let ns = stack().namespace("rel-creds");
    sim_config(json!({"rejectCredentials": true}));
    let mut c = start(&ns, &[]);
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
    let done = wait_status(&ns, "InProgress", n, Duration::from_secs(60));
    Row {
        scenario: "AWS credentials refused, then fixed",
        load: format!("{n} jobs"),
        faults: "UnrecognizedClientException on every call".into(),
        duplicates: duplicates(&ns),
        lost: n - done,
        stuck: 0,
        converge: started.elapsed().as_secs_f64(),
    }
}

fn mass_delete(t: &Topology) -> Row {
    let n = size(40, 100);
    let ns = stack().namespace("rel-delete");
    let _c = start(&ns, &[]);
    apply_jobs(t, &ns, "job", n);
    let running = wait_status(&ns, "InProgress", n, Duration::from_secs(120));
    let names = job_names(&ns);
    // Counted while the resources exist: afterwards every job would look like a duplicate.
    let duplicates = duplicates(&ns);
    let started = Instant::now();
    stack().kubectl_ok(&["-n", &ns, "delete", "processingjobs", "--all", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !items(&ns).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let stuck = items(&ns).len();
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

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_survives_every_fault() {
    let s = stack();
    s.install_crd();
    clear_faults();
    let t = topology("10.80", true).await;
    t.s3_gateway_endpoint(None).await;
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("throttling", throttling),
        ("kills", kills),
        ("apiserver", apiserver_restart),
        ("latency", latency),
        ("malformed", malformed),
        ("credentials", credentials),
        ("delete", mass_delete),
    ];
    let only = std::env::var("RELIABILITY_ONLY").ok();
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
