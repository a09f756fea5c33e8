//! The real controller binary as a process against the stack, and helpers to watch resources.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{controller_bin, repo_root, stack, unique_suffix};

/// A running `sagemaker-processing-controller run`, killed when dropped.
pub struct ControllerProcess {
    child: Child,
    pub log: PathBuf,
}

impl ControllerProcess {
    /// Starts a controller watching `namespace` with a short poll interval. `SMPC_CONTROLLER_BIN`
    /// runs another build instead (e.g. an older one, to show a regression test fails on it).
    pub fn start(namespace: &str, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let bin = std::env::var("SMPC_CONTROLLER_BIN").unwrap_or_else(|_| controller_bin().display().to_string());
        Self::spawn(&bin, namespace, extra_args, extra_env)
    }

    /// Starts another build of the controller (the benchmark runs the release binary).
    pub fn start_binary(bin: &str, namespace: &str, extra_args: &[&str]) -> Self {
        Self::spawn(bin, namespace, extra_args, &[])
    }

    fn spawn(bin: &str, namespace: &str, extra_args: &[&str], extra_env: &[(&str, &str)]) -> Self {
        let dir = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("controller-{namespace}-{}.log", unique_suffix()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = stack()
            .command(bin)
            .args(["run", "--namespace", namespace])
            .args(
                [
                    ("--poll-interval", "1s"),
                    ("--log-format", "text"),
                    ("--metrics-address", "127.0.0.1:0"),
                    ("--log-level", "info,smpc=debug"),
                ]
                .iter()
                .filter(|(flag, _)| !extra_args.contains(flag))
                .flat_map(|(flag, value)| [*flag, *value]),
            )
            .args(extra_args)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start controller");
        Self { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// The base URL of /livez, /readyz and /metrics, from the log line announcing it.
    pub fn ops_url(&self) -> String {
        let text = wait_for("the ops server address in the log", Duration::from_secs(30), || {
            let t = self.log_text();
            t.contains("serving /livez").then_some(t)
        });
        let clean: String = strip_ansi(&text);
        let line = clean.lines().find(|l| l.contains("serving /livez")).unwrap_or_default();
        let addr = line
            .split("address=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default();
        format!("http://{addr}")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The resource as JSON, or `None` when it does not exist.
pub fn get_job(ns: &str, name: &str) -> Option<Value> {
    let out = stack().kubectl(&["-n", ns, "get", "processingjob", name, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// (status, reason) of a condition.
pub fn condition(job: &Value, type_: &str) -> Option<(String, String)> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// The message of the condition `type_` ("" when there is none).
pub fn condition_message(job: &Value, type_: &str) -> String {
    job["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

pub fn status_str(job: &Value, field: &str) -> Option<String> {
    job["status"][field].as_str().map(str::to_string)
}

/// Waits until the resource's status satisfies `pred`; returns the resource.
pub fn wait_job(ns: &str, name: &str, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(&format!("{ns}/{name}: {what}"), timeout, || {
        get_job(ns, name).filter(|j| pred(j))
    })
}

/// Events about one object: (type, reason, message).
pub fn events(ns: &str, name: &str) -> Vec<(String, String, String)> {
    let out = stack().kubectl_ok(&[
        "-n",
        ns,
        "get",
        "events",
        "-o",
        "json",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|e| {
                    (
                        e["type"].as_str().unwrap_or_default().to_string(),
                        e["reason"].as_str().unwrap_or_default().to_string(),
                        e["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The simulator's jobs: name → {status, arn, tags, createCalls}.
pub fn sim_jobs() -> Value {
    serde_json::from_str(&stack().sim_admin("GET", "/_sim/jobs", None)).unwrap_or(Value::Null)
}

/// The simulator's jobs created for one resource (tagged with its UID), by name: a resource the
/// controller refused has none, whatever the job would have been called.
pub fn sim_jobs_of(resource: &Value) -> Vec<String> {
    let uid = resource["metadata"]["uid"].as_str().unwrap_or_default();
    let tagged = |job: &Value| {
        job["tags"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["Key"] == "sagemaker.processing.dev/uid" && t["Value"] == uid)
        })
    };
    match sim_jobs() {
        Value::Object(jobs) => jobs.iter().filter(|(_, j)| tagged(j)).map(|(n, _)| n.clone()).collect(),
        Value::Array(jobs) => jobs
            .iter()
            .filter(|e| tagged(&e[1]))
            .filter_map(|e| e[0].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// CreateProcessingJob requests the simulator received for a job name.
pub fn sim_create_calls(job_name: &str) -> u64 {
    let creates: Value = serde_json::from_str(&stack().sim_admin("GET", "/_sim/creates", None)).unwrap_or(Value::Null);
    creates[job_name].as_u64().unwrap_or(0)
}

/// Creates a job named `name` in the simulator as another team would: not tagged for any
/// resource.
pub async fn sim_foreign_job(name: &str) {
    use aws_sdk_sagemaker::types::{
        AppSpecification, ProcessingClusterConfig, ProcessingInstanceType, ProcessingResources,
    };
    stack()
        .sagemaker()
        .await
        .create_processing_job()
        .processing_job_name(name)
        .role_arn("arn:aws:iam::123456789012:role/Other")
        .app_specification(AppSpecification::builder().image_uri("img").build())
        .processing_resources(
            ProcessingResources::builder()
                .cluster_config(
                    ProcessingClusterConfig::builder()
                        .instance_count(1)
                        .instance_type(ProcessingInstanceType::MlM5Xlarge)
                        .volume_size_in_gb(1)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("foreign job");
}

pub fn sim_set_status(job_name: &str, body: &str) {
    stack().sim_admin("POST", &format!("/_sim/jobs/{job_name}/status"), Some(body));
}

pub fn apply(manifest: &str) {
    let out = stack().kubectl_stdin(&["apply", "-f", "-"], manifest);
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A sample of a controller's metrics (`name{labels}` → value; 0 when absent).
pub fn metric(c: &ControllerProcess, sample: &str) -> f64 {
    let (_, body) = http_get(&format!("{}/metrics", c.ops_url()));
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// GET a URL; (status code, body).
pub fn http_get(url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
