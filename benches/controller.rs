//! Benchmark of the whole controller on the local stack. Not a timed test: it prints figures
//! and targets (met or not) and writes JSON; it fails only if the run itself breaks.
//!
//! `scripts/bench [N]` builds the release binary and runs it; in CI it runs with N = 100 against
//! the debug binary. Settings (environment): BENCH_JOBS (100), BENCH_CREATE_RATE (50 creates/s
//! allowed by the simulator), BENCH_POLL (5s), BENCH_CONCURRENCY (16), BENCH_CONTROLLER (path
//! of the controller binary; default: the one cargo built with this target).

use smpc_test_support as support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::controller::ControllerProcess;
use support::stack;
use support::vpc::{job_manifest_in, topology};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (values.len() as f64 - 1.0)).round() as usize;
    values[idx.min(values.len() - 1)]
}

/// (user+system CPU seconds, peak RSS in MB) of a process, from /proc.
fn cpu_and_peak_rss(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = 100.0; // USER_HZ on Linux
    let cpu = fields.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / ticks
        + fields.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / ticks;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kb / 1024.0)
}

/// The apiserver's request counters for processingjobs writes: (PATCH main resource, PATCH status).
fn apiserver_writes() -> (f64, f64) {
    let text = stack().kubectl_ok(&["get", "--raw", "/metrics"]);
    let mut main = 0.0;
    let mut status = 0.0;
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        if !line.contains("resource=\"processingjobs\"")
            || !(line.contains("verb=\"PATCH\"") || line.contains("verb=\"APPLY\""))
        {
            continue;
        }
        let v: f64 = line.rsplit(' ').next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
        if line.contains("subresource=\"status\"") {
            status += v;
        } else if line.contains("subresource=\"\"") {
            main += v;
        }
    }
    (main, status)
}

fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// The resources of the namespace, as JSON.
fn jobs_json(ns: &str) -> Vec<Value> {
    let out = stack().kubectl_ok(&["-n", ns, "get", "processingjobs", "-o", "json"]);
    serde_json::from_str::<Value>(&out)
        .ok()
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn main() {
    let n: usize = env_or("BENCH_JOBS", 100);
    let create_rate: f64 = env_or("BENCH_CREATE_RATE", 50.0);
    let poll: f64 = env_or("BENCH_POLL", 5.0);
    let concurrency: u32 = env_or("BENCH_CONCURRENCY", 16);
    let bin = std::env::var("BENCH_CONTROLLER").unwrap_or_else(|_| support::controller_bin().display().to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let s = stack();
    s.install_crd();
    let t = runtime.block_on(async {
        let t = topology("10.90", true).await;
        t.s3_gateway_endpoint(None).await;
        t
    });
    // Declared before the namespace so that it still runs, releasing the jobs, when the
    // namespace is deleted at the end.
    let controller;
    let ns = s.namespace("bench");
    s.sim_admin(
        "PUT",
        "/_sim/config",
        Some(&json!({"createsPerSecond": create_rate}).to_string()),
    );
    s.sim_admin("DELETE", "/_sim/calls", None);
    let writes_before = apiserver_writes();

    let poll_arg = format!("{poll}s");
    let conc_arg = concurrency.to_string();
    controller = ControllerProcess::start_binary(
        &bin,
        &ns,
        &[
            "--poll-interval",
            &poll_arg,
            "--concurrency",
            &conc_arg,
            "--log-level",
            "info",
        ],
    );
    let ops = controller.ops_url();
    eprintln!("bench: {n} jobs, {create_rate} creates/s, poll {poll}s, concurrency {concurrency}, controller {bin}");

    // Create the resources through the API, 32 at a time, each with its own creation time.
    let started = Instant::now();
    let (applied_at, client): (BTreeMap<String, f64>, kube::Client) = runtime.block_on(async {
        use futures::StreamExt;
        let kubeconfig = kube::config::Kubeconfig::read_from(s.var("KUBECONFIG")).expect("stack kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config");
        let client = kube::Client::try_from(config).expect("kube client");
        let api: kube::Api<smpc::api::ProcessingJob> = kube::Api::namespaced(client.clone(), &ns);
        let created: BTreeMap<String, f64> = futures::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                let manifest = job_manifest_in(&ns, &format!("job-{i}"), 1, &t.private, &[&t.sg], "");
                async move {
                    let job: smpc::api::ProcessingJob = serde_yaml_ng::from_str(&manifest).expect("manifest");
                    let at = now();
                    api.create(&Default::default(), &job).await.expect("create resource");
                    (format!("job-{i}"), at)
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        (created, client)
    });
    let applied_secs = started.elapsed().as_secs_f64();

    // Until every resource says Submitted.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut names: BTreeMap<String, String> = BTreeMap::new(); // resource → job name
    loop {
        let items = jobs_json(&ns);
        let submitted: Vec<&Value> = items
            .iter()
            .filter(|j| {
                j["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Submitted" && c["status"] == "True"))
            })
            .collect();
        for j in &submitted {
            if let (Some(r), Some(jn)) = (
                j["metadata"]["name"].as_str(),
                j["status"]["processingJobName"].as_str(),
            ) {
                names.insert(r.to_string(), jn.to_string());
            }
        }
        if submitted.len() == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} submitted after 600 s",
            submitted.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let all_submitted = started.elapsed().as_secs_f64();
    let sim_jobs: Value = serde_json::from_str(&s.sim_admin("GET", "/_sim/jobs", None)).expect("sim jobs");
    let mut create_latency: Vec<f64> = names
        .iter()
        .filter_map(|(r, jn)| Some(sim_jobs[jn]["createdAt"].as_f64()? - applied_at.get(r)?))
        .collect();

    // Complete every job at once; a watch records when each shows Completed.
    let job_names: Vec<&String> = names.values().collect();
    let (completed_at, seen): (f64, BTreeMap<String, f64>) = runtime.block_on(async {
        use futures::StreamExt;
        use kube::runtime::watcher::{watcher, Event};
        let api: kube::Api<smpc::api::ProcessingJob> = kube::Api::namespaced(client.clone(), &ns);
        let mut stream = std::pin::pin!(watcher(api, Default::default()));
        let mut seen: BTreeMap<String, f64> = BTreeMap::new();
        let mut completed_at = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while seen.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} completed after 600 s",
                seen.len()
            );
            let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await else {
                continue;
            };
            match event.expect("watch") {
                Event::InitDone if completed_at.is_none() => {
                    let body = json!({"names": job_names, "status": "Completed"}).to_string();
                    let done: Value =
                        serde_json::from_str(&stack().sim_admin("POST", "/_sim/bulk-status", Some(&body)))
                            .expect("bulk status");
                    completed_at = done["at"].as_f64();
                }
                Event::Apply(job) | Event::InitApply(job) if completed_at.is_some() => {
                    let done =
                        job.status.as_ref().and_then(|s| s.processing_job_status.as_deref()) == Some("Completed");
                    if done {
                        seen.entry(job.metadata.name.clone().unwrap_or_default())
                            .or_insert_with(now);
                    }
                }
                _ => {}
            }
        }
        (completed_at.expect("completed"), seen)
    });
    let all_mirrored = seen.values().fold(0.0f64, |m, t| m.max(*t)) - completed_at;
    let mut lag: Vec<f64> = seen.values().map(|t| t - completed_at).collect();
    std::thread::sleep(Duration::from_secs(2));

    let (cpu, rss) = cpu_and_peak_rss(controller.pid());
    let metrics = support::controller::http_get(&format!("{ops}/metrics")).1;
    let calls: BTreeMap<String, u64> =
        serde_json::from_str(&s.sim_admin("GET", "/_sim/calls", None)).unwrap_or_default();
    let writes_after = apiserver_writes();
    // The controller keeps running until the end: dropping the namespace (declared after it)
    // deletes the resources, which the controller must release.
    s.sim_admin("PUT", "/_sim/config", Some("{}"));

    let nf = n as f64;
    let sm_total: u64 = calls.values().sum();
    let ec2_calls = metric_sum(&metrics, "smpc_aws_calls_total{service=\"ec2\"");
    let status_patches = writes_after.1 - writes_before.1;
    let main_patches = writes_after.0 - writes_before.0;
    let p50_create = percentile(&mut create_latency, 50.0);
    let p99_create = percentile(&mut create_latency, 99.0);
    let p50_lag = percentile(&mut lag, 50.0);
    let p99_lag = percentile(&mut lag, 99.0);
    let submit_target = nf / create_rate + 5.0;

    let rows: Vec<(String, String, String, Option<bool>)> = vec![
        (
            "time to create the resources (s)".into(),
            format!("{applied_secs:.1}"),
            "".into(),
            None,
        ),
        (
            "time until all Submitted (s)".into(),
            format!("{all_submitted:.1}"),
            format!("≤ {submit_target:.0} (N / create rate + 5)"),
            Some(all_submitted <= submit_target),
        ),
        (
            "apply → CreateProcessingJob p50 / p99 (s)".into(),
            format!("{p50_create:.2} / {p99_create:.2}"),
            "".into(),
            None,
        ),
        (
            "time until all show Completed (s)".into(),
            format!("{all_mirrored:.1}"),
            "".into(),
            None,
        ),
        (
            "status lag p50 / p99 (s)".into(),
            format!("{p50_lag:.2} / {p99_lag:.2}"),
            format!("p99 ≤ {:.0} (poll + 2)", poll + 2.0),
            Some(p99_lag <= poll + 2.0),
        ),
        (
            "SageMaker calls per job".into(),
            format!("{:.2}", sm_total as f64 / nf),
            "≤ 3".into(),
            Some(sm_total as f64 / nf <= 3.0),
        ),
        (
            "  by operation".into(),
            calls
                .iter()
                .map(|(k, v)| format!("{k} {:.2}", *v as f64 / nf))
                .collect::<Vec<_>>()
                .join(", "),
            "".into(),
            None,
        ),
        (
            "EC2 calls per job".into(),
            format!("{:.3}", ec2_calls / nf),
            "≤ 0.05 at N = 1000".into(),
            (n >= 1000).then_some(ec2_calls / nf <= 0.05),
        ),
        (
            "status patches per job".into(),
            format!("{:.2}", status_patches / nf),
            "≤ 4".into(),
            Some(status_patches / nf <= 4.0),
        ),
        (
            "other ProcessingJob patches per job (finalizer)".into(),
            format!("{:.2}", main_patches / nf),
            "".into(),
            None,
        ),
        ("controller CPU (s)".into(), format!("{cpu:.1}"), "".into(), None),
        (
            "controller peak RSS (MB)".into(),
            format!("{rss:.1}"),
            "≤ 100 at N = 1000".into(),
            (n >= 1000).then_some(rss <= 100.0),
        ),
    ];
    println!("\nController benchmark: N = {n}, {create_rate} creates/s, poll {poll}s, concurrency {concurrency}");
    println!("{:<48} {:>28}  {:<28} met", "figure", "value", "target");
    for (name, value, target, met) in &rows {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!("{name:<48} {value:>28}  {target:<28} {met}");
    }
    let report = json!({
        "jobs": n, "createsPerSecond": create_rate, "pollSeconds": poll, "concurrency": concurrency,
        "createResourcesSeconds": applied_secs, "allSubmittedSeconds": all_submitted, "createLatencyP50": p50_create, "createLatencyP99": p99_create,
        "allCompletedSeconds": all_mirrored, "statusLagP50": p50_lag, "statusLagP99": p99_lag,
        "sagemakerCallsPerJob": sm_total as f64 / nf, "sagemakerCallsByOperation": calls,
        "ec2CallsPerJob": ec2_calls / nf, "statusPatchesPerJob": status_patches / nf,
        "finalizerPatchesPerJob": main_patches / nf, "controllerCpuSeconds": cpu, "controllerPeakRssMb": rss,
        "targetsMet": rows.iter().filter_map(|r| r.3).all(|m| m),
    });
    let dir = support::repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let path = dir.join(format!("controller-{n}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()).expect("write report");
    println!("\nJSON: {}", path.display());
}
