//! End to end, the controller's knobs changed after creation (issue #11 item 8): the real
//! controller binary, the real kube-apiserver (whose CEL rules let only `networkValidation` and
//! `deletionPolicy` change), moto (EC2) and the SageMaker simulator.

use smpc_test_support as support;

use std::time::Duration;

use serde_json::Value;
use support::controller::*;
use support::stack;
use support::vpc::{healthy_setup, job_manifest_in, topology};

const T: Duration = Duration::from_secs(60);

fn in_progress(j: &Value) -> bool {
    status_str(j, "processingJobStatus").as_deref() == Some("InProgress") && j["status"]["processingJobARN"].is_string()
}

fn observed(j: &Value) -> bool {
    j["status"]["observedGeneration"] == j["metadata"]["generation"]
}

fn patch(ns: &str, name: &str, spec: &str) {
    stack().kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "processingjob",
        name,
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{spec}}}"#),
    ]);
}

/// The escape hatch for a wrong verdict: a job blocked by its network in Enforce mode proceeds
/// once its mode is switched to Warn, and its status and an Event say why; switching back does
/// not touch the job that now exists.
#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_job_switched_to_warn_is_created_and_says_so() {
    let s = stack();
    s.install_crd();
    let t = topology("10.142", true).await; // no S3 path: NoS3Route on both subnets
    let _c;
    let ns = s.namespace("e2e-hatch");
    _c = ControllerProcess::start(&ns, &[], &[]);
    apply(&job_manifest_in(&ns, "hatch", 1, &t.private, &[&t.sg], ""));
    let job = wait_job(&ns, "hatch", "Stalled by the network", T, |j| {
        condition(j, "Stalled").is_some_and(|c| c.0 == "True")
    });
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("False".into(), "NetworkInvalid".into()))
    );
    // Never created: no job name yet (the name is derived from the resource, so the one count
    // below after the switch also covers the blocked time).
    assert_eq!(status_str(&job, "processingJobName"), None);

    patch(&ns, "hatch", r#"{"networkValidation":{"mode":"Warn"}}"#);
    let job = wait_job(&ns, "hatch", "InProgress after the switch", T, |j| {
        in_progress(j) && observed(j)
    });
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("True".into(), "WarnMode".into()))
    );
    let message = condition_message(&job, "NetworkValidated");
    assert!(
        message.contains("networkValidation.mode was changed to Warn") && message.contains("NoS3Route"),
        "{message}"
    );
    assert!(job["status"]["network"]["findings"].to_string().contains("NoS3Route"));
    let warned = wait_for("the NetworkValidated Warning", T, || {
        events(&ns, "hatch")
            .into_iter()
            .find(|e| e.1 == "NetworkValidated" && e.2.contains("changed to Warn"))
    });
    assert_eq!(warned.0, "Warning");
    let name = status_str(&job, "processingJobName").expect("name");
    assert_eq!(sim_create_calls(&name), 1);

    // Back to Enforce once the job exists: recorded as observed, never validated or created again.
    patch(&ns, "hatch", r#"{"networkValidation":{"mode":"Enforce"}}"#);
    let job = wait_job(&ns, "hatch", "the new generation observed", T, observed);
    assert_eq!(job["metadata"]["generation"], 3);
    std::thread::sleep(Duration::from_secs(2));
    let job = get_job(&ns, "hatch").expect("job");
    assert!(in_progress(&job), "{}", job["status"]);
    assert_eq!(
        condition(&job, "NetworkValidated").map(|c| c.1),
        Some("WarnMode".into())
    );
    assert_eq!(sim_create_calls(&name), 1, "a created job was created again");
    assert_eq!(sim_jobs()[&name]["status"], "InProgress");
}

/// `deletionPolicy` changed on a running job applies when the resource is deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_job_switched_to_retain_is_retained_on_delete() {
    // The controller is declared first so that it outlives the namespace's deletion.
    let _c;
    let (t, ns) = healthy_setup("10.143", "e2e-late-retain").await;
    _c = ControllerProcess::start(&ns, &[], &[]);
    apply(&job_manifest_in(&ns, "late", 1, &t.private, &[&t.sg], ""));
    let job = wait_job(&ns, "late", "InProgress", T, in_progress);
    let name = status_str(&job, "processingJobName").expect("name");
    patch(&ns, "late", r#"{"deletionPolicy":"Retain"}"#);
    wait_job(&ns, "late", "the new generation observed", T, observed);
    stack().kubectl_ok(&["-n", &ns, "delete", "processingjob", "late", "--timeout=30s"]);
    assert!(get_job(&ns, "late").is_none());
    assert_eq!(
        sim_jobs()[&name]["status"],
        "InProgress",
        "the job was stopped although deletionPolicy is Retain"
    );
    assert_eq!(sim_create_calls(&name), 1);
    let tags = sim_jobs()[&name]["tags"].to_string();
    assert!(tags.contains("sagemaker.processing.dev/retained"), "{tags}");
}
