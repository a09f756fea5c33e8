//! Capacity-aware submission (issue #15), end to end: the real controller binary, the apiserver
//! and the simulator with an instance quota. More jobs than the quota are applied at once; every
//! one completes, none fails for quota, they are created in creation order as capacity frees, and
//! the creates are counted: no storm.
//!
//! The quota is on ml.c5.4xlarge, an instance type no other test uses, so that the tests running
//! beside this one on the shared simulator are not affected; the configuration is put back at the
//! end.

use smpc_test_support as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::controller::*;
use support::stack;

const JOBS: usize = 8;
const QUOTA: usize = 2;
const INSTANCE_TYPE: &str = "ml.c5.4xlarge";

fn manifest(ns: &str, name: &str) -> String {
    format!(
        r#"---
apiVersion: sagemaker.processing.dev/v1alpha1
kind: ProcessingJob
metadata:
  name: {name}
  namespace: {ns}
spec:
  region: us-east-1
  roleARN: arn:aws:iam::123456789012:role/SageMakerProcessingRole
  appSpecification:
    imageURI: 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3
  processingOutputConfig:
    outputs:
      - outputName: features
        s3Output: {{s3URI: "s3://ml-output/features/", localPath: /opt/ml/processing/output, s3UploadMode: EndOfJob}}
  processingResources:
    clusterConfig: {{instanceCount: 1, instanceType: {INSTANCE_TYPE}, volumeSizeInGB: 30}}
"#
    )
}

/// Puts the simulator's configuration back when dropped, even when the test fails.
struct RestoreConfig(String);

impl Drop for RestoreConfig {
    fn drop(&mut self) {
        stack().sim_admin("PUT", "/_sim/config", Some(&self.0));
    }
}

fn tag(j: &Value, key: &str) -> Option<String> {
    j["tags"].as_array().and_then(|t| {
        t.iter()
            .find(|t| t["Key"] == key)
            .and_then(|t| t["Value"].as_str().map(str::to_string))
    })
}

/// Ends the jobs an earlier run of this test left running (its controller killed by a failure
/// before it stopped them): they would hold the quota this run measures.
fn end_leftovers() {
    if let Value::Object(jobs) = sim_jobs() {
        for (name, j) in jobs {
            let ours = tag(&j, "sagemaker.processing.dev/namespace").is_some_and(|n| n.starts_with("quotas-"));
            if ours && matches!(j["status"].as_str(), Some("InProgress" | "Stopping")) {
                sim_set_status(&name, r#"{"status":"Stopped"}"#);
            }
        }
    }
}

/// The simulator's jobs of the namespace: resource name → (status, createdAt).
fn sim_jobs_in(ns: &str) -> BTreeMap<String, (String, f64)> {
    let mut out = BTreeMap::new();
    if let Value::Object(jobs) = sim_jobs() {
        for j in jobs.values() {
            if tag(j, "sagemaker.processing.dev/namespace").as_deref() == Some(ns) {
                if let Some(name) = tag(j, "sagemaker.processing.dev/name") {
                    let status = j["status"].as_str().unwrap_or_default().to_string();
                    out.insert(name, (status, j["createdAt"].as_f64().unwrap_or_default()));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn more_jobs_than_the_quota_all_complete_in_creation_order_without_a_create_storm() {
    let s = stack();
    s.install_crd();
    let _c;
    let ns = s.namespace("quotas");
    end_leftovers();
    let saved = s.sim_admin("GET", "/_sim/config", None);
    let mut config: Value = serde_json::from_str(&saved).expect("the simulator's configuration");
    config["instanceQuota"][INSTANCE_TYPE] = QUOTA.into();
    let _restore = RestoreConfig(saved);
    s.sim_admin("PUT", "/_sim/config", Some(&config.to_string()));
    _c = ControllerProcess::start(&ns, &[], &[]);

    // The quota's worth first, so that the queue's order is the rest's creation order.
    let names: Vec<String> = (0..JOBS).map(|i| format!("q-{i}")).collect();
    let first: String = names[..QUOTA].iter().map(|n| manifest(&ns, n)).collect();
    apply(&first);
    wait_for("the first jobs run", Duration::from_secs(60), || {
        let jobs = sim_jobs_in(&ns);
        (jobs.values().filter(|(s, _)| s == "InProgress").count() == QUOTA).then_some(())
    });
    let rest: String = names[QUOTA..].iter().map(|n| manifest(&ns, n)).collect();
    apply(&rest);

    // Every job over the quota is queued, saying why, and `kubectl get` shows it.
    for name in &names[QUOTA..] {
        let job = wait_job(&ns, name, "Queued", Duration::from_secs(60), |j| {
            status_str(j, "phase").as_deref() == Some("Queued")
        });
        assert_eq!(
            condition(&job, "Reconciling"),
            Some(("True".into(), "QuotaExceeded".into()))
        );
        let message = condition_message(&job, "Reconciling");
        assert!(
            message.contains(&format!(
                "The account-level service limit '{INSTANCE_TYPE} for processing job usage' is {QUOTA} Instances"
            )),
            "SageMaker's message in the condition: {message}"
        );
        assert_eq!(job["status"]["processingJobName"], Value::Null, "nothing was created");
    }
    let table = s.kubectl_ok(&["-n", &ns, "get", "processingjobs", &names[QUOTA]]);
    assert!(
        table.contains("Queued") && table.contains("QuotaExceeded"),
        "kubectl get shows the queue:\n{table}"
    );

    // Complete the running jobs as they appear (a second each), until every job completed.
    let start = Instant::now();
    let mut releases = 0usize;
    loop {
        let jobs = sim_jobs_in(&ns);
        let running: Vec<&String> = jobs
            .iter()
            .filter(|(_, (s, _))| s == "InProgress")
            .map(|(n, _)| n)
            .collect();
        assert!(running.len() <= QUOTA, "over the quota: {jobs:?}");
        let completed = jobs.values().filter(|(s, _)| s == "Completed").count();
        if completed == JOBS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "not every job completed: {jobs:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
        for name in running {
            let job = get_job(&ns, name).and_then(|j| status_str(&j, "processingJobName"));
            if let Some(job) = job {
                sim_set_status(&job, r#"{"status":"Completed"}"#);
                releases += 1;
            }
        }
    }
    let took = start.elapsed();

    // Every resource mirrors its completion; none failed or stalled for quota.
    for name in &names {
        let job = wait_job(&ns, name, "Completed", Duration::from_secs(60), |j| {
            condition(j, "Ready") == Some(("True".into(), "Completed".into()))
        });
        assert_eq!(condition(&job, "Stalled").map(|c| c.0), Some("False".into()), "{name}");
    }

    // Created in creation order.
    let jobs = sim_jobs_in(&ns);
    let mut by_creation: Vec<(&String, f64)> = jobs.iter().map(|(n, (_, at))| (n, *at)).collect();
    by_creation.sort_by(|a, b| a.1.total_cmp(&b.1));
    let order: Vec<&str> = by_creation.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        order[QUOTA..],
        names[QUOTA..].iter().map(String::as_str).collect::<Vec<_>>()[..]
    );

    // No create storm: each job created once, plus one refused attempt per queued job on arrival
    // and at most one refused probe per release of capacity.
    let creates: Value = serde_json::from_str(&s.sim_admin("GET", "/_sim/creates", None)).unwrap_or(Value::Null);
    let attempts: u64 = names
        .iter()
        .filter_map(|n| get_job(&ns, n).and_then(|j| status_str(&j, "processingJobName")))
        .map(|job| creates[&job].as_u64().unwrap_or(0))
        .sum();
    let bound = (JOBS + (JOBS - QUOTA) + releases) as u64;
    println!(
        "{JOBS} jobs, quota {QUOTA}: {attempts} CreateProcessingJob attempts (bound {bound}), {releases} releases, all completed {took:?} after the first release"
    );
    assert!(attempts <= bound, "{attempts} create attempts for {JOBS} jobs: a storm");
    for name in &names[QUOTA..] {
        let queued = events(&ns, name).iter().filter(|e| e.1 == "JobQueued").count();
        assert_eq!(queued, 1, "{name}: one JobQueued Event");
    }
}
