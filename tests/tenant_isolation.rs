//! Tenant isolation at the door (issue #18): one table of cases (`tests/tenant/cases.yaml`) run
//! through both enforcement points — the chart's ValidatingAdmissionPolicy installed into the
//! real apiserver (`kubectl apply` refused with the message), and the controller's guard with
//! the policy absent (never created, `NotAllowedInNamespace`) — plus the guard function itself.
//! Then: a namespace change lets a refused job proceed without touching the resource and never
//! stops a running one; a malformed object with a finalizer can be deleted.

use smpc_test_support as support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::controller::*;
use support::vpc::{healthy_setup, topology, REGION};
use support::{repo_root, stack, unique_suffix, TestNamespace};

const T: Duration = Duration::from_secs(60);
const PREFIX: &str = "sagemaker.processing.dev/";

/// One namespace of the table: its annotations and its jobs.
struct Profile {
    name: String,
    annotations: BTreeMap<String, String>,
    jobs: Vec<Case>,
}

/// One job of the table: its spec, and the problem both enforcement points must report.
struct Case {
    name: String,
    spec: Value,
    refused: Option<String>,
}

/// The table, with `${SUBNET_A}`, `${SUBNET_B}` and `${SG}` replaced.
fn table(subnet_a: &str, subnet_b: &str, sg: &str) -> Vec<Profile> {
    let text = std::fs::read_to_string(repo_root().join("tests/tenant/cases.yaml"))
        .expect("tests/tenant/cases.yaml")
        .replace("${SUBNET_A}", subnet_a)
        .replace("${SUBNET_B}", subnet_b)
        .replace("${SG}", sg);
    let doc: Value = serde_yaml_ng::from_str(&text).expect("cases.yaml is YAML");
    let base = doc["base"].clone();
    let profiles = doc["namespaces"].as_array().expect("namespaces");
    profiles
        .iter()
        .map(|p| Profile {
            name: p["name"].as_str().expect("name").to_string(),
            annotations: p["annotations"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (format!("{PREFIX}{k}"), v.as_str().expect("string").to_string()))
                .collect(),
            jobs: p["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .map(|j| {
                    let mut spec = base.clone();
                    if let Some(patch) = j.get("spec") {
                        json_patch::merge(&mut spec, patch);
                    }
                    Case {
                        name: j["name"].as_str().expect("name").to_string(),
                        spec,
                        refused: j["refused"].as_str().map(str::to_string),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The refusal as both enforcement points word it.
fn refusal(namespace: &str, problem: &str) -> String {
    format!("namespace {namespace} does not allow this job: {problem}")
}

fn job_object(namespace: &str, case: &Case) -> Value {
    json!({
        "apiVersion": "sagemaker.processing.dev/v1alpha1",
        "kind": "ProcessingJob",
        "metadata": {"name": case.name, "namespace": namespace},
        "spec": case.spec,
    })
}

fn namespace_object(name: &str, labels: Value, annotations: &BTreeMap<String, String>) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels, "annotations": annotations}})
}

/// A fresh namespace created with its annotations (and labels) at once, deleted when dropped.
fn annotated_namespace(prefix: &str, labels: Value, annotations: &BTreeMap<String, String>) -> TestNamespace {
    let name = format!("{prefix}-{}", unique_suffix());
    let out = stack().kubectl_stdin(
        &["create", "-f", "-"],
        &namespace_object(&name, labels, annotations).to_string(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    TestNamespace::adopt(name)
}

fn kubectl_apply(obj: &Value, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["apply", "-f", "-"];
    args.extend(extra);
    stack().kubectl_stdin(&args, &obj.to_string())
}

// ---------------------------------------------------------------------------------------------
// The guard function, no stack needed.

#[test]
fn the_guard_function_agrees_with_the_table() {
    for p in table(
        "subnet-0aaa0000000000001",
        "subnet-0bbb0000000000002",
        "sg-0aaa0000000000001",
    ) {
        for case in &p.jobs {
            let spec: smpc::api::ProcessingJobSpec =
                serde_json::from_value(case.spec.clone()).unwrap_or_else(|e| panic!("{}/{}: {e}", p.name, case.name));
            let got = smpc::reconcile::guard::refusal(&p.name, &p.annotations, &spec);
            assert_eq!(
                got,
                case.refused.as_deref().map(|r| refusal(&p.name, r)),
                "{}/{}",
                p.name,
                case.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The admission policy, from the rendered chart, in the real apiserver.

/// The chart's policy and binding, deleted when dropped (they are cluster-wide).
struct InstalledPolicy {
    name: String,
}

impl InstalledPolicy {
    /// Renders the chart with the binding limited to namespaces labelled `selector`, so that the
    /// policy acts on this test's namespaces only, and installs the policy and its binding.
    fn install(release: &str, selector: (&str, &str)) -> Self {
        let s = stack();
        let chart = repo_root().join("charts/sagemaker-processing-controller");
        let select = format!(
            "admissionPolicy.namespaceSelector.matchLabels.{}={}",
            selector.0, selector.1
        );
        let out = s.helm(&[
            "template",
            release,
            chart.to_str().expect("utf-8 path"),
            "--kube-version",
            "1.33.0",
            "--set",
            "image.repository=123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-processing-controller",
            // A label value is a string, even when the random suffix is all digits (`--set`
            // would make it a number, which the apiserver refuses in matchLabels).
            "--set-string",
            &select,
            "--show-only",
            "templates/admission-policy.yaml",
        ]);
        assert!(out.status.success(), "helm: {}", String::from_utf8_lossy(&out.stderr));
        let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            rendered.contains("kind: ValidatingAdmissionPolicyBinding"),
            "{rendered}"
        );
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &rendered);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Self {
            name: format!("{release}-sagemaker-processing-controller-tenant-guard"),
        }
    }
}

impl Drop for InstalledPolicy {
    fn drop(&mut self) {
        let _ = stack().kubectl(&[
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            &self.name,
            "--ignore-not-found",
        ]);
    }
}

/// The apiserver's refusal of `obj` on a dry run, once it gives one (the policy and the
/// namespace reach the admission plugin's caches a moment after they are created).
fn refused_at_dry_run(obj: &Value, timeout: Duration) -> String {
    wait_for("the admission policy to act", timeout, || {
        let out = kubectl_apply(obj, &["--dry-run=server"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (!out.status.success() && err.contains("ValidatingAdmissionPolicy")).then_some(err)
    })
}

#[test]
fn the_admission_policy_refuses_the_table_at_apply() {
    let s = stack();
    s.install_crd();
    let label = unique_suffix();
    let profiles = table(
        "subnet-0aaa0000000000001",
        "subnet-0bbb0000000000002",
        "sg-0aaa0000000000001",
    );
    let namespaces: Vec<TestNamespace> = profiles
        .iter()
        .map(|p| {
            annotated_namespace(
                &format!("vap-{}", p.name),
                json!({"smpc-test/vap": label}),
                &p.annotations,
            )
        })
        .collect();
    let _policy = InstalledPolicy::install(&format!("vap{label}"), ("smpc-test/vap", &label));
    for (p, ns) in profiles.iter().zip(&namespaces) {
        // Every namespace is known to the policy before its cases run.
        if let Some(case) = p.jobs.iter().find(|c| c.refused.is_some()) {
            refused_at_dry_run(&job_object(ns, case), T);
        }
        for case in &p.jobs {
            let out = kubectl_apply(&job_object(ns, case), &[]);
            let err = String::from_utf8_lossy(&out.stderr);
            match &case.refused {
                Some(problem) => {
                    assert!(!out.status.success(), "{}/{} was accepted", p.name, case.name);
                    let expected = refusal(ns, problem);
                    assert!(
                        err.contains(&format!("denied request: {expected}")),
                        "{}/{}: expected {expected:?}, got {err}",
                        p.name,
                        case.name
                    );
                }
                None => assert!(out.status.success(), "{}/{} was refused: {err}", p.name, case.name),
            }
        }
    }

    // A later tightening refuses new specs, but never the metadata-only updates of a job already
    // there: the controller's finalizer, labels — or the job could not even be deleted.
    let (p, ns) = profiles
        .iter()
        .zip(&namespaces)
        .find(|(p, _)| p.name == "enforce-only")
        .expect("the enforce-only namespace");
    let accepted = p.jobs.iter().find(|c| c.refused.is_none()).expect("an allowed job");
    // networkValidation may change after creation: an update that leaves the namespace's modes
    // is refused as a create would be.
    let out = s.kubectl(&[
        "-n",
        ns,
        "patch",
        "processingjob",
        &accepted.name,
        "--type=merge",
        "-p",
        r#"{"spec":{"networkValidation":{"mode":"Skip"}}}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "switching to Skip was accepted");
    assert!(
        err.contains(
            "spec.networkValidation.mode Skip is not in sagemaker.processing.dev/allowed-validation-modes (Enforce)"
        ),
        "{err}"
    );
    s.kubectl_ok(&[
        "annotate",
        "namespace",
        ns,
        "--overwrite",
        &format!("{PREFIX}allowed-instance-types=ml.t3.*"),
    ]);
    let mut again = job_object(ns, accepted);
    again["metadata"]["name"] = json!(format!("{}-again", accepted.name));
    let err = refused_at_dry_run(&again, T);
    assert!(err.contains("instanceType ml.m5.xlarge is not in"), "{err}");
    s.kubectl_ok(&["-n", ns, "label", "processingjob", &accepted.name, "team=a"]);
    s.kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "processingjob",
        &accepted.name,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/keep"]}}"#,
    ]);
    s.kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "processingjob",
        &accepted.name,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
}

// ---------------------------------------------------------------------------------------------
// The controller's guard, the policy absent.

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_refuses_the_table_without_the_policy() {
    let s = stack();
    let mut controllers = Vec::new();
    s.install_crd();
    let t = topology("10.70", true).await;
    t.s3_gateway_endpoint(None).await;
    let profiles = table(&t.private[0], &t.private[1], &t.sg);
    let namespaces: Vec<TestNamespace> = profiles
        .iter()
        .map(|p| annotated_namespace(&format!("guard-{}", p.name), json!({}), &p.annotations))
        .collect();
    for ns in &namespaces {
        controllers.push(ControllerProcess::start(ns, &[], &[]));
    }
    for (p, ns) in profiles.iter().zip(&namespaces) {
        for case in &p.jobs {
            let mut obj = job_object(ns, case);
            obj["spec"]["region"] = json!(REGION);
            let out = kubectl_apply(&obj, &[]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    for (p, ns) in profiles.iter().zip(&namespaces) {
        for case in &p.jobs {
            let what = format!("{}/{}", p.name, case.name);
            match &case.refused {
                Some(problem) => {
                    let j = wait_job(ns, &case.name, "refused by the namespace", T, |j| {
                        condition(j, "Stalled").is_some_and(|c| c == ("True".into(), "NotAllowedInNamespace".into()))
                    });
                    assert_eq!(status_str(&j, "phase").as_deref(), Some("Blocked"), "{what}");
                    let message = condition_message(&j, "Ready");
                    let expected = refusal(ns, problem);
                    assert!(
                        message.contains(&expected),
                        "{what}: expected {expected:?}, got {message:?}"
                    );
                    assert_eq!(status_str(&j, "processingJobName"), None, "{what}");
                    assert_eq!(sim_jobs_of(&j), Vec::<String>::new(), "{what}: never created");
                }
                None => {
                    wait_job(ns, &case.name, "created", T, |j| {
                        condition(j, "Submitted").is_some_and(|c| c.0 == "True")
                    });
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Namespace changes take effect.

fn triggers(ops: &str, trigger: &str) -> u64 {
    let (_, body) = http_get(&format!("{ops}/metrics"));
    body.lines()
        .filter(|l| l.starts_with("smpc_reconcile_triggers_total{") && l.contains(&format!("trigger=\"{trigger}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_change_lets_a_refused_job_proceed_and_never_stops_a_running_one() {
    let s = stack();
    let controller;
    let (t, ns) = healthy_setup("10.71", "guard-change").await;
    let limit = |types: &str| {
        s.kubectl_ok(&[
            "annotate",
            "namespace",
            &ns,
            "--overwrite",
            &format!("{PREFIX}allowed-instance-types={types}"),
        ]);
    };
    limit("ml.t3.*");
    // Revalidation on its timer is an hour away: only the namespace watch can bring the job back.
    controller = ControllerProcess::start(&ns, &["--revalidate-interval", "1h"], &[]);
    let ops = controller.ops_url();
    apply(
        &t.manifest("etl", 1, "")
            .replace("namespace: ml", &format!("namespace: {ns}")),
    );
    let refused = wait_job(&ns, "etl", "refused by the namespace", T, |j| {
        condition(j, "Stalled").is_some_and(|c| c.1 == "NotAllowedInNamespace")
    });
    let generation = refused["metadata"]["generation"].clone();

    limit("ml.t3.*, ml.m5.*");
    let created = wait_job(&ns, "etl", "created once the namespace allows it", T, |j| {
        condition(j, "Submitted").is_some_and(|c| c.0 == "True")
    });
    assert_eq!(
        created["metadata"]["generation"], generation,
        "the resource was not touched"
    );
    assert!(triggers(&ops, "namespace") >= 1, "brought back by the namespace watch");
    let name = status_str(&created, "processingJobName").expect("job name");

    // Tightened again: the running job is left alone.
    let seen = triggers(&ops, "namespace");
    limit("ml.t3.*");
    wait_for("the tightening to reach the controller", T, || {
        (triggers(&ops, "namespace") > seen).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let j = get_job(&ns, "etl").expect("the resource");
    assert_eq!(
        status_str(&j, "processingJobStatus").as_deref(),
        Some("InProgress"),
        "{j}"
    );
    assert_eq!(
        condition(&j, "Ready").map(|c| c.1).as_deref(),
        Some("InProgress"),
        "{j}"
    );
    assert_eq!(
        sim_jobs()[&name]["status"],
        "InProgress",
        "never stopped by a tightening"
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed objects with a finalizer.

/// Written before a schema tightening: a validation mode this version no longer has.
fn make_unreadable(ns: &str, name: &str) {
    stack().rewrite_stored_job(ns, name, |obj| {
        obj["spec"]["networkValidation"] = json!({"mode": "Audit"});
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_job_with_a_finalizer_can_be_deleted() {
    let s = stack();
    // Before the namespace, so that they outlive it (see TestNamespace).
    let mut controllers = Vec::new();
    let (t, ns) = healthy_setup("10.72", "guard-malformed").await;
    s.kubectl_ok(&["annotate", "namespace", &ns, &format!("{PREFIX}max-instance-count=1")]);
    controllers.push(ControllerProcess::start(&ns, &[], &[]));
    let manifest = |name: &str, instances: u32| {
        t.manifest(name, instances, "")
            .replace("namespace: ml", &format!("namespace: {ns}"))
    };
    apply(&manifest("never-created", 2));
    apply(&manifest("running", 1));
    wait_job(&ns, "never-created", "refused", T, |j| {
        status_str(j, "phase").as_deref() == Some("Blocked")
            && j["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
    });
    let running = wait_job(&ns, "running", "created", T, |j| {
        condition(j, "Submitted").is_some_and(|c| c.0 == "True")
    });
    let job = status_str(&running, "processingJobName").expect("job name");

    // The upgrade that tightened the schema restarts the controller, which finds both unreadable.
    make_unreadable(&ns, "never-created");
    make_unreadable(&ns, "running");
    controllers[0].kill9();
    controllers.push(ControllerProcess::start(&ns, &[], &[]));
    for name in ["never-created", "running"] {
        wait_job(&ns, name, "reported unreadable", T, |j| {
            condition(j, "Stalled").is_some_and(|c| c.1 == "InvalidObject")
        });
        s.kubectl_ok(&["-n", &ns, "delete", "processingjob", name, "--wait=false"]);
    }
    // No job was created: the finalizer is released.
    wait_for("the never-created job to go", T, || {
        get_job(&ns, "never-created").is_none().then_some(())
    });
    // A job runs, and the deletion policy cannot be read: it stays, saying how to get out.
    let held = wait_job(&ns, "running", "held with the way out", T, |j| {
        condition_message(j, "Ready").contains("stop-processing-job")
    });
    assert!(
        condition_message(&held, "Ready").contains(&format!("--processing-job-name {job} --region {REGION}")),
        "{}",
        condition_message(&held, "Ready")
    );
    assert_eq!(
        sim_jobs()[&job]["status"],
        "InProgress",
        "not stopped: the spec cannot say Stop or Retain"
    );
    sim_set_status(&job, r#"{"status":"Stopped"}"#);
    wait_for("the running job's resource to go once its job ended", T, || {
        get_job(&ns, "running").is_none().then_some(())
    });
}
