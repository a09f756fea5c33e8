//! `logs NAME` against the real apiserver (the resource, its status written through the status
//! subresource) and moto's CloudWatch Logs (streams and events written with the SDK): merge order,
//! `--tail`, `--follow` ending, and each error's exit code.

use smpc_test_support as support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::vpc::REGION;
use support::{controller_bin, stack, unique_suffix};

fn logs(ns: &str, args: &[&str]) -> Output {
    stack()
        .command(controller_bin())
        .args(["logs", "-n", ns])
        .args(args)
        .output()
        .expect("run logs")
}

fn text(o: &Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn set_status(ns: &str, name: &str, status: serde_json::Value) {
    let patch = serde_json::json!({ "status": status }).to_string();
    stack().kubectl_ok(&[
        "-n",
        ns,
        "patch",
        "processingjob",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
}

/// Two streams of one job whose lines interleave in time.
async fn write_streams(job: &str) {
    let logs = stack().logs().await;
    let base = support::iam::now_millis();
    for (stream, lines) in [
        ("algo-1-1700000000", [(0, "one: start"), (20, "one: done")]),
        ("algo-2-1700000000", [(10, "two: start"), (30, "two: done")]),
    ] {
        let lines = lines.map(|(dt, line)| (base + dt, line));
        support::iam::put_log_lines(&logs, &format!("{job}/{stream}"), &lines).await;
    }
}

#[test]
fn logs_of_a_job_merged_tailed_followed_and_each_error() {
    let s = stack();
    s.install_crd();
    let ns = s.namespace("logs");
    let job = format!("logs-job-{}", unique_suffix());
    let manifest = format!(
        r#"apiVersion: sagemaker.processing.dev/v1alpha1
kind: ProcessingJob
metadata: {{name: report, namespace: {ns}}}
spec:
  region: {REGION}
  roleARN: arn:aws:iam::123456789012:role/SageMakerProcessingRole
  appSpecification: {{imageURI: 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3}}
  processingResources:
    clusterConfig: {{instanceCount: 2, instanceType: ml.m5.xlarge, volumeSizeInGB: 30}}
"#,
        ns = ns.as_str()
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (code, _, err) = text(&logs(ns.as_str(), &["missing"]));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no ProcessingJob missing"), "{err}");

    let (code, _, err) = text(&logs(ns.as_str(), &["report"]));
    assert_eq!(code, Some(4), "no status yet: {err}");

    set_status(
        ns.as_str(),
        "report",
        serde_json::json!({"phase": "Blocked", "conditions": [{"type": "Ready", "status": "False", "reason": "NetworkInvalid", "message": "NoS3Route: subnet-1 has no route to S3", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
    );
    let (code, _, err) = text(&logs(ns.as_str(), &["report"]));
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("Blocked") && err.contains("NetworkInvalid"), "{err}");

    set_status(
        ns.as_str(),
        "report",
        serde_json::json!({"phase": "Created", "processingJobName": job, "region": REGION, "processingJobStatus": "InProgress", "conditions": []}),
    );
    let (code, _, err) = text(&logs(ns.as_str(), &["report"]));
    assert_eq!(code, Some(5), "no streams yet: {err}");
    assert!(err.contains(&job), "{err}");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(write_streams(&job));
    let (code, out, err) = text(&logs(ns.as_str(), &["report"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "[algo-1-1700000000] one: start",
            "[algo-2-1700000000] two: start",
            "[algo-1-1700000000] one: done",
            "[algo-2-1700000000] two: done"
        ]
    );
    let (code, out, err) = text(&logs(ns.as_str(), &["report", "--tail", "1"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["[algo-2-1700000000] two: done"]);

    // --follow on an ended job: prints what is there, then ends by itself.
    set_status(
        ns.as_str(),
        "report",
        serde_json::json!({"processingJobStatus": "Completed"}),
    );
    let started = Instant::now();
    let (code, out, err) = text(&logs(ns.as_str(), &["report", "--follow", "--interval", "200ms"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
