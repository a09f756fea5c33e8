//! End to end: the real controller binary as a process, the real kube-apiserver, moto (EC2) and
//! the SageMaker simulator. Each test has its own namespace and its own controller watching it.

use smpc_test_support as support;

use std::time::Duration;

use serde_json::Value;
use support::controller::*;
use support::vpc::{healthy_setup, job_manifest_in, topology, Topology};
use support::{stack, unique_suffix, TestNamespace};

const T: Duration = Duration::from_secs(60);

/// A healthy VPC (private subnets + S3 gateway endpoint, self-referencing group) and a namespace
/// with a controller. The namespace comes last: destructured, it is dropped (deleted) first,
/// while its controller still runs to release the jobs.
async fn setup(prefix: &str, cidr: &str) -> (Topology, ControllerProcess, TestNamespace) {
    let (t, ns) = healthy_setup(cidr, prefix).await;
    let c = ControllerProcess::start(&ns, &[], &[]);
    (t, c, ns)
}

fn manifest(t: &Topology, ns: &str, name: &str, instances: u32, extra: &str) -> String {
    job_manifest_in(ns, name, instances, &t.private, &[&t.sg], extra)
}

fn job_name_of(job: &Value) -> String {
    status_str(job, "processingJobName").expect("status.processingJobName")
}

fn in_progress(j: &Value) -> bool {
    status_str(j, "processingJobStatus").as_deref() == Some("InProgress") && j["status"]["processingJobARN"].is_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_validated_created_mirrored_and_completed() {
    let (t, _c, ns) = setup("e2e-ok", "10.30").await;
    apply(&manifest(&t, &ns, "churn", 2, ""));
    let job = wait_job(&ns, "churn", "InProgress", T, in_progress);
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("True".into(), "Valid".into()))
    );
    assert_eq!(condition(&job, "Submitted"), Some(("True".into(), "Created".into())));
    assert_eq!(condition(&job, "Ready"), Some(("False".into(), "InProgress".into())));
    assert_eq!(condition(&job, "Reconciling").map(|c| c.0), Some("True".into()));
    assert!(job["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "sagemaker.processing.dev/job")));
    let name = job_name_of(&job);
    assert!(
        name.starts_with("churn-") && name.len() == "churn-".len() + 8,
        "derived name {name}"
    );
    assert_eq!(sim_jobs()[&name]["status"], "InProgress");

    sim_set_status(&name, r#"{"status":"Completed","exitMessage":"all good"}"#);
    let out = stack().kubectl(&[
        "-n",
        &ns,
        "wait",
        "--for=condition=Ready",
        "processingjob/churn",
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let job = get_job(&ns, "churn").expect("job");
    let st = &job["status"];
    for field in [
        "processingJobARN",
        "creationTime",
        "processingStartTime",
        "processingEndTime",
        "lastModifiedTime",
        "region",
        "logsUrl",
    ] {
        assert!(st[field].is_string(), "status.{field} missing: {st}");
    }
    assert_eq!(st["processingJobStatus"], "Completed");
    assert_eq!(st["exitMessage"], "all good");
    assert_eq!(st["network"]["vpcID"], Value::String(t.vpc.clone()));
    assert_eq!(st["observedGeneration"], job["metadata"]["generation"]);
    assert_eq!(condition(&job, "Stalled").map(|c| c.0), Some("False".into()));
    assert_eq!(condition(&job, "Reconciling").map(|c| c.0), Some("False".into()));
    assert!(st["logsUrl"].as_str().is_some_and(|u| u.contains(&name)));

    let reasons: Vec<String> = events(&ns, "churn").into_iter().map(|e| e.1).collect();
    for r in ["NetworkValidated", "JobCreated", "JobStatusChanged"] {
        assert!(reasons.contains(&r.to_string()), "event {r} missing from {reasons:?}");
    }
    assert_eq!(sim_create_calls(&name), 1, "exactly one CreateProcessingJob");
    // The job's tags tie it to the resource.
    let tags = sim_jobs()[&name]["tags"].to_string();
    let uid = job["metadata"]["uid"].as_str().expect("uid");
    assert!(
        tags.contains("sagemaker.processing.dev/uid") && tags.contains(uid),
        "{tags}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_job_shows_why_and_stalls() {
    let (t, _c, ns) = setup("e2e-fail", "10.31").await;
    apply(&manifest(&t, &ns, "report", 1, ""));
    let job = wait_job(&ns, "report", "InProgress", T, in_progress);
    let name = job_name_of(&job);
    sim_set_status(
        &name,
        r#"{"status":"Failed","failureReason":"AlgorithmError: division by zero\nTraceback ...","exitMessage":"exit 1"}"#,
    );
    let job = wait_job(&ns, "report", "Failed", T, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some("Failed")
    });
    assert_eq!(
        status_str(&job, "failureReason").as_deref(),
        Some("AlgorithmError: division by zero\nTraceback ...")
    );
    assert_eq!(condition(&job, "Ready"), Some(("False".into(), "Failed".into())));
    assert_eq!(condition(&job, "Stalled"), Some(("True".into(), "Failed".into())));
    assert_eq!(condition(&job, "Reconciling").map(|c| c.0), Some("False".into()));
    let failed = wait_for("JobFailed event", T, || {
        events(&ns, "report").into_iter().find(|e| e.1 == "JobFailed")
    });
    assert_eq!(failed.0, "Warning");
    assert_eq!(
        failed.2.lines().next(),
        Some("AlgorithmError: division by zero"),
        "the Event carries the first line of failureReason"
    );
    // Then the last log lines, or why there are none (this job wrote no logs).
    assert!(
        failed
            .2
            .contains("\nlast log lines:\nno log lines in /aws/sagemaker/ProcessingJobs"),
        "{}",
        failed.2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_network_is_never_created() {
    let s = stack();
    s.install_crd();
    // No S3 endpoint and no NAT: the private subnets cannot reach S3; the group lacks a
    // self-referencing rule for a 3-instance job.
    let t = topology("10.32", true).await;
    let lonely = t
        .ec2
        .create_security_group()
        .group_name(format!("lonely-{}", unique_suffix()))
        .description("no self reference")
        .vpc_id(&t.vpc)
        .send()
        .await
        .expect("sg");
    let lonely = lonely.group_id().expect("id").to_string();
    let _c;
    let ns = s.namespace("e2e-broken");
    _c = ControllerProcess::start(&ns, &[], &[]);
    apply(&job_manifest_in(&ns, "broken", 3, &t.private, &[&lonely], ""));
    let job = wait_job(&ns, "broken", "Stalled", T, |j| {
        condition(j, "Stalled").is_some_and(|c| c.0 == "True")
    });
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("False".into(), "NetworkInvalid".into()))
    );
    assert_eq!(
        condition(&job, "Ready"),
        Some(("False".into(), "NetworkInvalid".into()))
    );
    assert_eq!(condition(&job, "Submitted").map(|c| c.0), Some("False".into()));
    let codes: Vec<&str> = job["status"]["network"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert!(
        codes.contains(&"NoS3Route") && codes.contains(&"MissingSelfReferencingIngress"),
        "{codes:?}"
    );
    assert!(job["status"]["processingJobARN"].is_null());
    // Give it a few polls: still nothing created.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        status_str(&job, "processingJobName"),
        None,
        "never created: no job name"
    );
    assert_eq!(
        sim_jobs_of(&job),
        Vec::<String>::new(),
        "a job with a broken network must never be created"
    );
    let reasons: Vec<String> = events(&ns, "broken").into_iter().map(|e| e.1).collect();
    assert!(reasons.contains(&"NetworkInvalid".to_string()), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn warn_mode_creates_anyway_and_keeps_the_findings() {
    let s = stack();
    s.install_crd();
    let t = topology("10.33", true).await; // no S3 path at all
    let _c;
    let ns = s.namespace("e2e-warn");
    _c = ControllerProcess::start(&ns, &[], &[]);
    apply(&manifest(&t, &ns, "warned", 1, "  networkValidation: {mode: Warn}\n"));
    let job = wait_job(&ns, "warned", "InProgress", T, in_progress);
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("True".into(), "WarnMode".into()))
    );
    assert!(job["status"]["network"]["findings"].to_string().contains("NoS3Route"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_without_vpc_config_runs_without_validation() {
    let s = stack();
    s.install_crd();
    let _c;
    let ns = s.namespace("e2e-novpc");
    _c = ControllerProcess::start(&ns, &[], &[]);
    let manifest = std::fs::read_to_string(support::repo_root().join("examples/processingjob-no-vpc.yaml"))
        .expect("example")
        .replace("namespace: default", &format!("namespace: {ns}"));
    apply(&manifest);
    let job = wait_job(&ns, "no-vpc", "InProgress", T, in_progress);
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("True".into(), "NoVpcConfig".into()))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_in_progress_job_stops_it_first() {
    let (t, _c, ns) = setup("e2e-stop", "10.34").await;
    apply(&manifest(&t, &ns, "to-stop", 1, ""));
    let job = wait_job(&ns, "to-stop", "InProgress", T, in_progress);
    let name = job_name_of(&job);
    stack().kubectl_ok(&["-n", &ns, "delete", "processingjob", "to-stop", "--wait=false"]);
    // While SageMaker stops the job the resource stays, held by the finalizer.
    wait_for("StopProcessingJob", T, || {
        let s = sim_jobs()[&name]["status"].as_str().map(str::to_string);
        s.filter(|s| s == "Stopping" || s == "Stopped")
    });
    wait_for("the resource to disappear", T, || {
        get_job(&ns, "to-stop").is_none().then_some(())
    });
    assert_eq!(
        sim_jobs()[&name]["status"],
        "Stopped",
        "the resource was released only after Stopped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retained_jobs_are_released_at_once_and_keep_running() {
    let (t, _c, ns) = setup("e2e-retain", "10.35").await;
    apply(&manifest(&t, &ns, "keep", 1, "  deletionPolicy: Retain\n"));
    // ACK's annotation works the same.
    let ack = manifest(&t, &ns, "keep-ack", 1, "").replace(
        "  namespace: ",
        "  annotations: {services.k8s.aws/deletion-policy: retain}\n  namespace: ",
    );
    apply(&ack);
    for name in ["keep", "keep-ack"] {
        let job = wait_job(&ns, name, "InProgress", T, in_progress);
        let job_name = job_name_of(&job);
        stack().kubectl_ok(&["-n", &ns, "delete", "processingjob", name, "--timeout=30s"]);
        assert!(get_job(&ns, name).is_none());
        assert_eq!(
            sim_jobs()[&job_name]["status"],
            "InProgress",
            "{name}: a retained job keeps running"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_right_after_create_does_not_create_twice() {
    let s = stack();
    s.install_crd();
    let t = topology("10.36", true).await;
    t.s3_gateway_endpoint(None).await;
    let _c;
    let ns = s.namespace("e2e-crash");
    let mut crashing = ControllerProcess::start(&ns, &[], &[("SMPC_FAILPOINT", "abort-after-create")]);
    apply(&manifest(&t, &ns, "crashy", 1, ""));
    let exit = crashing.wait_exit(T).expect("the controller aborts at the failpoint");
    assert!(!exit.success());
    let job = get_job(&ns, "crashy").expect("job");
    assert!(
        job["status"]["processingJobARN"].is_null(),
        "the crash happened before the status was written"
    );
    // Only the write-ahead records the job: `<region>/<name>` in the resource's metadata.
    let pin = job["metadata"]["annotations"]["sagemaker.processing.dev/job"]
        .as_str()
        .expect("the write-ahead annotation")
        .to_string();
    let name = pin.rsplit('/').next().unwrap_or_default().to_string();
    assert_eq!(sim_create_calls(&name), 1);

    _c = ControllerProcess::start(&ns, &[], &[]);
    let job = wait_job(&ns, "crashy", "InProgress after restart", T, in_progress);
    assert_eq!(job_name_of(&job), name);
    assert_eq!(condition(&job, "Submitted"), Some(("True".into(), "Adopted".into())));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sim_create_calls(&name),
        1,
        "the restarted controller found the job instead of creating it again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sagemaker_rejections_and_foreign_jobs_stall_with_the_reason() {
    let (t, _c, ns) = setup("e2e-reject", "10.37").await;
    // An instance type of SageMaker's model (the CRD accepts it) that the region does not
    // offer: SageMaker refuses the create. No other test of this binary uses the type.
    stack().sim_admin(
        "PUT",
        "/_sim/config",
        Some(r#"{"unavailableInstanceTypes": ["ml.p5.4xlarge"]}"#),
    );
    apply(&manifest(&t, &ns, "bad-type", 1, "").replace("ml.m5.xlarge", "ml.p5.4xlarge"));
    let job = wait_job(&ns, "bad-type", "Stalled", T, |j| {
        condition(j, "Stalled").is_some_and(|c| c.0 == "True")
    });
    stack().sim_admin("PUT", "/_sim/config", Some("{}"));
    assert_eq!(condition(&job, "Ready"), Some(("False".into(), "InvalidSpec".into())));
    let message = job["status"]["conditions"].to_string();
    assert!(
        message.contains("ml.p5.4xlarge") && message.contains("not supported"),
        "{message}"
    );

    // A job with the same name created by someone else.
    let taken = format!("taken-{}", unique_suffix());
    sim_foreign_job(&taken).await;
    apply(&manifest(
        &t,
        &ns,
        "clash",
        1,
        &format!("  processingJobName: {taken}\n"),
    ));
    let job = wait_job(&ns, "clash", "Stalled", T, |j| {
        condition(j, "Stalled").is_some_and(|c| c.0 == "True")
    });
    assert_eq!(condition(&job, "Ready"), Some(("False".into(), "JobNameInUse".into())));
    let reasons: Vec<String> = events(&ns, "clash").into_iter().map(|e| e.1).collect();
    assert!(reasons.contains(&"AwsError".to_string()), "{reasons:?}");
}
