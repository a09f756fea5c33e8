//! Deleting a namespace, end to end (issue #20): the real controller binary, the real
//! kube-apiserver with kube-controller-manager's namespace controller, moto (EC2) and the
//! SageMaker simulator. The namespace controller deletes the namespace's ProcessingJobs; their
//! finalizers hold the namespace until the controller has done what each job's deletion policy
//! says — Stop: stopped in SageMaker first; Retain: left running, released at once. Without a
//! controller the namespace waits, its conditions naming what remains, and completes once a
//! controller runs again. Each job is stopped exactly once; nothing is left running behind.

use smpc_test_support as support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::controller::*;
use support::vpc::{job_manifest_in, topology, Topology};
use support::{stack, TestNamespace};

const T: Duration = Duration::from_secs(60);
/// The namespace controller re-checks a namespace whose content still has finalizers every ~8 s.
const GONE: Duration = Duration::from_secs(90);
const FINALIZER: &str = "sagemaker.processing.dev/job";

/// A healthy VPC: private subnets behind an S3 gateway endpoint, a self-referencing group.
async fn healthy_vpc(cidr: &str) -> Topology {
    stack().install_crd();
    let t = topology(cidr, true).await;
    t.s3_gateway_endpoint(None).await;
    t
}

fn in_progress(j: &Value) -> bool {
    status_str(j, "processingJobStatus").as_deref() == Some("InProgress") && j["status"]["processingJobARN"].is_string()
}

/// Applies the jobs and waits until each runs in SageMaker; returns their SageMaker names.
fn run_jobs(t: &Topology, ns: &str, jobs: &[(&str, &str)]) -> Vec<String> {
    for (name, extra) in jobs {
        let mut manifest = job_manifest_in(ns, name, 1, &t.private, &[&t.sg], "");
        if extra.starts_with("  annotations:") {
            manifest = manifest.replace("  namespace: ", &format!("{extra}  namespace: "));
        } else {
            manifest.push_str(extra);
        }
        apply(&manifest);
    }
    jobs.iter()
        .map(|(name, _)| {
            let job = wait_job(ns, name, "InProgress", T, in_progress);
            let sm = status_str(&job, "processingJobName").expect("status.processingJobName");
            assert_eq!(sim_jobs()[&sm]["status"], "InProgress");
            sm
        })
        .collect()
}

fn sim_status(job: &str) -> String {
    sim_jobs()[job]["status"].as_str().unwrap_or("absent").to_string()
}

/// StopProcessingJob calls a controller made, from its /metrics: (all, successful).
fn stop_calls(c: &ControllerProcess) -> (u64, u64) {
    let (code, body) = http_get(&format!("{}/metrics", c.ops_url()));
    assert_eq!(code, 200, "metrics: {body}");
    let mut all = 0;
    let mut ok = 0;
    for line in body
        .lines()
        .filter(|l| l.starts_with("smpc_aws_calls_total{") && l.contains(r#"operation="StopProcessingJob""#))
    {
        let n = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        all += n;
        if line.contains(r#"outcome="success""#) {
            ok += n;
        }
    }
    (all, ok)
}

/// A namespace condition: (status, message).
fn ns_condition(ns: &Value, type_: &str) -> Option<(String, String)> {
    ns["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// Waits until the namespace is gone. While it exists, `check` sees it (and may assert).
fn wait_namespace_gone(ns: &TestNamespace, mut check: impl FnMut(&Value)) -> Duration {
    let start = Instant::now();
    wait_for(&format!("namespace {} to disappear", ns.name), GONE, || {
        match ns.get() {
            None => Some(()),
            Some(v) => {
                check(&v);
                None
            }
        }
    });
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_namespace_stops_its_jobs_before_it_goes() {
    let t = healthy_vpc("10.60").await;
    let c: ControllerProcess;
    let ns = TestNamespace::new("nsdel-stop");
    c = ControllerProcess::start(&ns, &[], &[]);
    let jobs = run_jobs(&t, &ns, &[("first", ""), ("second", "  deletionPolicy: Stop\n")]);
    assert_eq!(stop_calls(&c), (0, 0));

    ns.delete();
    let took = wait_namespace_gone(&ns, |v| {
        assert_eq!(v["status"]["phase"], "Terminating");
        // Read after the namespace: had its finalizers been released before a job was Stopped,
        // the job could still be seen running here.
        for j in &jobs {
            let s = sim_status(j);
            assert!(
                ["InProgress", "Stopping", "Stopped"].contains(&s.as_str()),
                "{j}: {s} while the namespace exists"
            );
        }
    });
    eprintln!("namespace {} gone {took:?} after the delete", ns.name);
    for j in &jobs {
        assert_eq!(sim_status(j), "Stopped", "{j}: stopped before its namespace went away");
    }
    assert_eq!(stop_calls(&c), (2, 2), "one StopProcessingJob per job, each successful");
    // The controller keeps running with its namespace gone; it stops nothing more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stop_calls(&c), (2, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_namespace_leaves_retained_jobs_running() {
    let t = healthy_vpc("10.61").await;
    let c: ControllerProcess;
    let ns = TestNamespace::new("nsdel-retain");
    c = ControllerProcess::start(&ns, &[], &[]);
    let jobs = run_jobs(
        &t,
        &ns,
        &[
            ("keep", "  deletionPolicy: Retain\n"),
            (
                "keep-ack",
                "  annotations: {services.k8s.aws/deletion-policy: retain}\n",
            ),
        ],
    );

    ns.delete();
    let took = wait_namespace_gone(&ns, |_| {});
    eprintln!("namespace {} gone {took:?} after the delete", ns.name);
    for j in &jobs {
        assert_eq!(sim_status(j), "InProgress", "{j}: a retained job keeps running");
    }
    assert_eq!(stop_calls(&c), (0, 0), "nothing stopped");
    // The simulator keeps no running jobs behind this test.
    for j in &jobs {
        sim_set_status(j, r#"{"status":"Completed"}"#);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_controller_the_namespace_waits_and_completes_when_one_runs() {
    let t = healthy_vpc("10.62").await;
    let mut first: ControllerProcess;
    let second: ControllerProcess;
    let ns = TestNamespace::new("nsdel-down");
    first = ControllerProcess::start(&ns, &[], &[]);
    let jobs = run_jobs(&t, &ns, &[("alpha", ""), ("beta", "")]);
    first.kill9();

    ns.delete();
    // The namespace controller deletes the ProcessingJobs; their finalizers hold them, and the
    // namespace reports what remains.
    let waiting = wait_for("the namespace to report its remaining content", T, || {
        let v = ns.get().expect("the namespace waits for its finalizers");
        let content = ns_condition(&v, "NamespaceContentRemaining")?;
        let finalizers = ns_condition(&v, "NamespaceFinalizersRemaining")?;
        (content.0 == "True" && finalizers.0 == "True").then_some((v, content.1, finalizers.1))
    });
    let (v, content, finalizers) = waiting;
    eprintln!("namespace {} waiting: {content} / {finalizers}", ns.name);
    assert_eq!(v["status"]["phase"], "Terminating");
    assert!(
        content.contains("processingjobs.sagemaker.processing.dev has 2 resource instances"),
        "{content}"
    );
    assert!(
        finalizers.contains(&format!("{FINALIZER} in 2 resource instances")),
        "{finalizers}"
    );
    for name in ["alpha", "beta"] {
        let job = get_job(&ns, name).expect("held by the finalizer");
        assert!(
            job["metadata"]["deletionTimestamp"].is_string(),
            "{name} is being deleted"
        );
    }
    // Nothing stops the jobs without a controller, and the namespace keeps waiting.
    std::thread::sleep(Duration::from_secs(10));
    assert!(ns.get().is_some(), "the namespace waits for the controller");
    for j in &jobs {
        assert_eq!(sim_status(j), "InProgress", "{j}");
    }

    second = ControllerProcess::start(&ns, &[], &[]);
    let took = wait_namespace_gone(&ns, |_| {});
    eprintln!("namespace {} gone {took:?} after the controller started", ns.name);
    for j in &jobs {
        assert_eq!(sim_status(j), "Stopped", "{j}: stopped before its namespace went away");
    }
    assert_eq!(stop_calls(&second), (2, 2), "one StopProcessingJob per job");
}
