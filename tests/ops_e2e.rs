//! Operations end to end: /metrics counters move with the jobs, /readyz before sync and during
//! shutdown, leader election between two controller processes, the namespace tenant guard.

use smpc_test_support as support;

use std::time::Duration;

use support::controller::*;
use support::vpc::{healthy_setup, job_manifest_in};
use support::{stack, unique_suffix};

const T: Duration = Duration::from_secs(60);

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn lease_holder(ns: &str, lease: &str) -> String {
    stack().kubectl_ok(&["-n", ns, "get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}"])
}

fn in_progress(j: &serde_json::Value) -> bool {
    status_str(j, "processingJobStatus").as_deref() == Some("InProgress")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_the_jobs() {
    let c;
    let (t, ns) = healthy_setup("10.50", "ops-metrics").await;
    c = ControllerProcess::start(&ns, &[], &[]);
    let url = c.ops_url();
    wait_for("ready", T, || {
        (http_get(&format!("{url}/readyz")).0 == 200).then_some(())
    });
    assert_eq!(http_get(&format!("{url}/livez")).0, 200);

    apply(&job_manifest_in(&ns, "metered", 1, &t.private, &[&t.sg], ""));
    let job = wait_job(&ns, "metered", "InProgress", T, in_progress);
    sim_set_status(
        &status_str(&job, "processingJobName").expect("name"),
        r#"{"status":"Completed"}"#,
    );
    wait_job(&ns, "metered", "Completed", T, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some("Completed")
    });

    let text = wait_for("jobs gauge", T, || {
        let (code, body) = http_get(&format!("{url}/metrics"));
        (code == 200 && metric(&body, r#"smpc_jobs{status="Completed"}"#) == 1.0).then_some(body)
    });
    // One reconcile adds the finalizer and creates the job, one mirrors Completed.
    assert!(metric(&text, r#"smpc_reconciles_total{result="ok"}"#) >= 2.0, "{text}");
    assert_eq!(
        metric(
            &text,
            r#"smpc_aws_calls_total{service="sagemaker",operation="CreateProcessingJob",outcome="success"}"#
        ),
        1.0
    );
    assert!(
        metric(
            &text,
            r#"smpc_aws_calls_total{service="sagemaker",operation="ListProcessingJobs",outcome="success"}"#
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            r#"smpc_aws_calls_total{service="ec2",operation="DescribeRouteTables",outcome="success"}"#
        ) >= 1.0
    );
    assert!(metric(&text, r#"smpc_status_patches_total"#) >= 2.0);
    // Without leader election this replica is the only one: it leads.
    assert_eq!(metric(&text, "smpc_leader"), 1.0, "{text}");
    // The log tells the job's story at info level, without colour codes in a file.
    let log = c.log_text();
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log file");
    for story in [
        "reason=\"NetworkValidated\"",
        "reason=\"JobCreated\"",
        "InProgress → Completed",
    ] {
        assert!(
            log.lines().any(|l| l.contains(" INFO ") && l.contains(story)),
            "no info line with {story}"
        );
    }
    assert_eq!(
        metric(
            &text,
            r#"smpc_network_findings{code="PackageRepositoriesReachable",severity="Info"}"#
        ),
        1.0
    );
    assert!(text.contains("smpc_reconcile_duration_seconds_bucket"));
    assert!(!text.contains("metered"), "object names never appear in labels");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_before_caches_sync_and_during_shutdown() {
    let s = stack();
    // An apiserver that cannot be reached: the caches never sync.
    let dir = std::env::temp_dir().join(format!("smpc-kubeconfig-{}", unique_suffix()));
    let config = std::fs::read_to_string(s.var("KUBECONFIG")).expect("kubeconfig");
    let broken: String = config
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server:") {
                "    server: https://127.0.0.1:1".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&dir, broken).expect("write kubeconfig");
    let unsynced = ControllerProcess::start("nowhere", &[], &[("KUBECONFIG", dir.to_str().expect("path"))]);
    let url = unsynced.ops_url();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(http_get(&format!("{url}/livez")).0, 200);
    assert_eq!(
        http_get(&format!("{url}/readyz")).0,
        503,
        "not ready before the caches synced"
    );
    drop(unsynced);

    s.install_crd();
    let ns = s.namespace("ops-ready");
    let mut c = ControllerProcess::start(&ns, &["--shutdown-delay", "3s"], &[]);
    let url = c.ops_url();
    wait_for("ready after sync", T, || {
        (http_get(&format!("{url}/readyz")).0 == 200).then_some(())
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &c.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        http_get(&format!("{url}/readyz")).0,
        503,
        "not ready while shutting down"
    );
    let status = c.wait_exit(Duration::from_secs(20)).expect("graceful exit");
    assert!(status.success(), "graceful shutdown exits 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_elect_one_leader_and_fail_over() {
    // Declared first, dropped last: the replica left running releases the jobs when the
    // namespace is deleted.
    let (mut a, mut b);
    let (t, ns) = healthy_setup("10.51", "ops-leader").await;
    let lease = format!("lease-{}", unique_suffix());
    let args = |id: &str| -> Vec<String> {
        [
            "--leader-election",
            "--leader-election-namespace",
            &ns,
            "--leader-election-lease",
            &lease,
            "--lease-duration",
            "6s",
            "--instance",
            id,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let a_args = args("replica-a");
    let b_args = args("replica-b");
    a = ControllerProcess::start(&ns, &a_args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    b = ControllerProcess::start(&ns, &b_args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    let manifests: String = (0..10)
        .map(|i| job_manifest_in(&ns, &format!("job-{i}"), 1, &t.private, &[&t.sg], ""))
        .collect();
    apply(&manifests);
    let names: Vec<String> = (0..10)
        .map(|i| {
            status_str(
                &wait_job(&ns, &format!("job-{i}"), "InProgress", T, in_progress),
                "processingJobName",
            )
            .expect("name")
        })
        .collect();
    let holder = lease_holder(&ns, &lease);
    assert!(holder == "replica-a" || holder == "replica-b", "holder {holder}");
    let follower_log = if holder == "replica-a" {
        b.log_text()
    } else {
        a.log_text()
    };
    assert!(!follower_log.contains("reconciled"), "the follower must not reconcile");

    // Kill the leader; the other replica takes over within the lease duration and finishes.
    if holder == "replica-a" {
        a.kill9();
    } else {
        b.kill9();
    }
    for n in &names {
        sim_set_status(n, r#"{"status":"Completed"}"#);
    }
    let more: String = (10..15)
        .map(|i| job_manifest_in(&ns, &format!("job-{i}"), 1, &t.private, &[&t.sg], ""))
        .collect();
    apply(&more);
    for i in 0..10 {
        wait_job(&ns, &format!("job-{i}"), "Completed after failover", T, |j| {
            status_str(j, "processingJobStatus").as_deref() == Some("Completed")
        });
    }
    let mut all = names.clone();
    for i in 10..15 {
        all.push(
            status_str(
                &wait_job(&ns, &format!("job-{i}"), "InProgress after failover", T, in_progress),
                "processingJobName",
            )
            .expect("name"),
        );
    }
    let new_holder = lease_holder(&ns, &lease);
    assert_ne!(new_holder, holder);
    for n in &all {
        assert_eq!(sim_create_calls(n), 1, "{n} created exactly once across both replicas");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_guard_refuses_other_teams_roles_subnets_and_groups() {
    let s = stack();
    let _c;
    let (t, ns) = healthy_setup("10.52", "ops-tenant").await;
    s.kubectl_ok(&[
        "annotate",
        "namespace",
        &ns,
        "sagemaker.processing.dev/allowed-role-arns=arn:aws:iam::123456789012:role/SageMakerProcessing*",
        &format!(
            "sagemaker.processing.dev/allowed-subnets={},{}",
            t.private[0], t.private[1]
        ),
        &format!("sagemaker.processing.dev/allowed-security-groups={}", t.sg),
    ]);
    let other_sg = t
        .ec2
        .create_security_group()
        .group_name(format!("other-{}", unique_suffix()))
        .description("another team")
        .vpc_id(&t.vpc)
        .send()
        .await
        .expect("sg")
        .group_id()
        .expect("id")
        .to_string();
    _c = ControllerProcess::start(&ns, &[], &[]);
    let allowed = job_manifest_in(&ns, "allowed", 1, &t.private, &[&t.sg], "");
    let wrong_role = allowed
        .replace("name: allowed", "name: wrong-role")
        .replace("role/SageMakerProcessingRole", "role/OtherTeamRole");
    let wrong_subnet = job_manifest_in(
        &ns,
        "wrong-subnet",
        1,
        &[t.private[0].clone(), t.public.clone()],
        &[&t.sg],
        "",
    );
    let wrong_group = job_manifest_in(&ns, "wrong-group", 1, &t.private, &[&other_sg], "");
    apply(&format!("{allowed}{wrong_role}{wrong_subnet}{wrong_group}"));
    wait_job(&ns, "allowed", "InProgress", T, in_progress);
    for (name, needle) in [
        ("wrong-role", "OtherTeamRole"),
        ("wrong-subnet", t.public.as_str()),
        ("wrong-group", other_sg.as_str()),
    ] {
        let job = wait_job(&ns, name, "refused", T, |j| {
            condition(j, "Stalled").is_some_and(|c| c.0 == "True")
        });
        assert_eq!(
            condition(&job, "Ready"),
            Some(("False".into(), "NotAllowedInNamespace".into())),
            "{name}"
        );
        let message = job["status"]["conditions"].to_string();
        assert!(message.contains(needle), "{name}: {message}");
        // Never created: no job name, and no job of this resource in SageMaker.
        assert_eq!(status_str(&job, "processingJobName"), None, "{name}");
        assert_eq!(sim_jobs_of(&job), Vec::<String>::new(), "{name} must never be created");
        let reasons: Vec<String> = events(&ns, name).into_iter().map(|e| e.1).collect();
        assert!(
            reasons.contains(&"NotAllowedInNamespace".to_string()),
            "{name}: {reasons:?}"
        );
    }
}

/// After fixing the network, `sagemaker.processing.dev/revalidate: <new value>` validates the
/// job again at once, with a fresh read of EC2: not after the revalidation interval, and not from
/// the network cache the jobs of a VPC share (which a mere touch of the resource still reads).
#[tokio::test(flavor = "multi_thread")]
async fn the_revalidate_annotation_lets_a_fixed_network_through_at_once() {
    let c; // dropped after the namespace: the controller releases the job when it is deleted
    let s = stack();
    s.install_crd();
    let t = support::vpc::topology("10.53", true).await;
    let ns = s.namespace("ops-revalidate");
    c = ControllerProcess::start(ns.as_str(), &[], &[]);
    apply(&job_manifest_in(ns.as_str(), "fixme", 1, &t.private, &[&t.sg], ""));
    let blocked = |j: &serde_json::Value| {
        status_str(j, "phase").as_deref() == Some("Blocked")
            && j.pointer("/status/network/findings")
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|f| f["code"] == "NoS3Route"))
    };
    wait_job(ns.as_str(), "fixme", "Blocked with NoS3Route", T, blocked);

    // The fix, as docs/findings.md says: an S3 gateway endpoint on the subnets' route table.
    t.s3_gateway_endpoint(None).await;
    // A touch revalidates from the shared cache (60 s): still blocked.
    s.kubectl_ok(&["-n", ns.as_str(), "annotate", "processingjob/fixme", "touched=1"]);
    std::thread::sleep(Duration::from_secs(3));
    let job = get_job(ns.as_str(), "fixme").expect("job");
    assert!(blocked(&job), "{job:#}");
    // `kubectl get` says why the job is not running, and names no job that was never created.
    let columns = printed_columns(ns.as_str(), "fixme");
    assert_eq!(columns["PHASE"], "Blocked", "{columns:?}");
    assert_eq!(columns["REASON"], "NetworkInvalid", "{columns:?}");
    assert_eq!(columns["JOB"], "", "{columns:?}");

    let asked = std::time::Instant::now();
    s.kubectl_ok(&[
        "-n",
        ns.as_str(),
        "annotate",
        "processingjob/fixme",
        "sagemaker.processing.dev/revalidate=route-fixed",
    ]);
    let job = wait_job(ns.as_str(), "fixme", "created", Duration::from_secs(20), |j| {
        status_str(j, "processingJobStatus").as_deref() == Some("InProgress")
    });
    assert_eq!(
        job.pointer("/status/network/revalidation").and_then(|v| v.as_str()),
        Some("route-fixed")
    );
    println!("revalidated and created {:?} after the annotation", asked.elapsed());
    let columns = printed_columns(ns.as_str(), "fixme");
    assert_eq!(columns["PHASE"], "Created", "{columns:?}");
    assert_eq!(columns["STATUS"], "InProgress", "{columns:?}");
    assert!(columns["JOB"].starts_with("fixme-"), "{columns:?}");
    drop(ns);
    drop(c);
}

/// The columns `kubectl get` prints for one resource, by header (cut at the headers' positions:
/// an empty column is blank).
fn printed_columns(ns: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let out = stack().kubectl_ok(&["-n", ns, "get", "processingjob", name]);
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let row = lines.next().unwrap_or_default();
    let starts: Vec<(usize, &str)> = header
        .split_whitespace()
        .map(|h| (header.find(h).unwrap_or(0), h))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, (start, h))| {
            let end = starts.get(i + 1).map_or(row.len(), |(s, _)| *s).min(row.len());
            let value = row.get((*start).min(end)..end).unwrap_or_default().trim();
            (h.to_string(), value.to_string())
        })
        .collect()
}

/// A region that does not exist: `validate` says which region and endpoint it tried, not only
/// that a call failed without an error code.
#[test]
fn validate_names_the_region_and_endpoint_it_could_not_reach() {
    let s = stack();
    let dir = std::env::temp_dir().join(format!("smpc-mars-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("job.yaml");
    let manifest = job_manifest_in(
        "default",
        "mars",
        1,
        &["subnet-0a1b2c3d4e5f60001".to_string()],
        &["sg-0a1b2c3d4e5f60001"],
        "",
    );
    // No spec.region: the job takes --region.
    let manifest: String = manifest
        .lines()
        .filter(|l| l.trim() != format!("region: {}", support::vpc::REGION))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&file, manifest).expect("write manifest");
    let out = s
        .command(support::controller_bin())
        .args(["validate", "--region", "mars-1", "-f"])
        .arg(&file)
        .env_remove("AWS_REGION")
        .output()
        .expect("run validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("for region mars-1"), "{stderr}");
    assert!(stderr.contains("check the region name"), "{stderr}");
    assert!(!stderr.contains("unhandled error"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
