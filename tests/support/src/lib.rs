//! Test support: the local stack started by `scripts/stack up` (real kube-apiserver + etcd,
//! moto, the SageMaker simulator), `kubectl`, and the AWS SDK clients pointed at them.
//!
//! Tests that need the stack fail — they never skip — when it is not up, with a message saying
//! how to start it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository the tests run from: found at run time from the package cargo is testing (its
/// `CARGO_MANIFEST_DIR`), not from where this crate was compiled — a build cache shared between
/// clones (CI's, a rehearsal's) may hold this crate compiled in another clone.
pub fn repo_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        // This crate lives in tests/support of the repository.
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let start = start.canonicalize().unwrap_or(start);
    start
        .ancestors()
        .find(|dir| dir.join(".ci/run").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

/// The stack's environment, read from `.stack/env` (or `$STACK_DIR/env`).
pub struct Stack {
    pub vars: BTreeMap<String, String>,
}

pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let dir = std::env::var("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join(".stack"));
        let path = dir.join("env");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}. Start the local stack first: scripts/stack up",
                path.display()
            )
        });
        let vars = text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Stack { vars }
    })
}

impl Stack {
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{key} missing from the stack env"))
    }

    /// A command with the stack's environment (and no AWS profile from the host). Without the
    /// stack's events queue: tests run in parallel, and controllers sharing one queue would take
    /// each other's messages; a test of events passes a queue of its own.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(&self.vars)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("SMPC_EVENTS_QUEUE_URL");
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.command("kubectl").args(args).output().expect("run kubectl")
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.command("kubectl");
        cmd.args(args);
        output_with_stdin(cmd, stdin)
    }

    /// `kubectl` that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs the checked-in CRD and waits until it is Established.
    pub fn install_crd(&self) {
        static DONE: OnceLock<()> = OnceLock::new();
        DONE.get_or_init(|| {
            let crd = repo_root().join("crds/processingjobs.yaml");
            self.kubectl_ok(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                crd.to_str().expect("utf-8 path"),
            ]);
            self.kubectl_ok(&[
                "wait",
                "--for=condition=Established",
                "crd/processingjobs.sagemaker.processing.dev",
                "--timeout=60s",
            ]);
            // The OpenAPI document (kubectl explain, client-side validation) is published a
            // moment after the CRD is Established.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !self.kubectl(&["explain", "processingjob.spec"]).status.success() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the CRD's OpenAPI schema was never published"
                );
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        });
    }

    /// A fresh namespace with a unique name, deleted when the guard is dropped (see
    /// `TestNamespace` for the order to declare it in).
    pub fn namespace(&self, prefix: &str) -> TestNamespace {
        let name = format!("{prefix}-{}", unique_suffix());
        self.kubectl_ok(&["create", "namespace", &name]);
        TestNamespace {
            name,
            release_timeout: RELEASE_TIMEOUT,
        }
    }

    /// `curl` against the simulator's admin API; returns the body.
    pub fn sim_admin(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let url = format!("{}{path}", self.var("SIM_ADMIN_URL"));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-f", "-X", method, &url]);
        if let Some(b) = body {
            cmd.args(["-H", "content-type: application/json", "--data", b]);
        }
        let out = cmd.output().expect("run curl");
        assert!(
            out.status.success(),
            "{method} {url} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `helm` from the stack's cache.
    pub fn helm(&self, args: &[&str]) -> Output {
        self.command(self.var("HELM")).args(args).output().expect("run helm")
    }

    /// Rewrites a ProcessingJob as etcd stores it, under the apiserver's feet: how an object
    /// written before a schema tightening looks to today's controller (the apiserver keeps
    /// custom resources as JSON under `/registry/<group>/<plural>/<namespace>/<name>` and serves
    /// what is stored without validating it again). Uses etcd's JSON gateway.
    pub fn rewrite_stored_job(&self, namespace: &str, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let dir = std::env::var("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join(".stack"));
        let port = std::fs::read_to_string(dir.join("etcd.port")).expect("the stack's etcd.port");
        let etcd = format!("http://127.0.0.1:{}", port.trim());
        let key = b64.encode(format!(
            "/registry/sagemaker.processing.dev/processingjobs/{namespace}/{name}"
        ));
        let post = |path: &str, body: serde_json::Value| -> serde_json::Value {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "-f",
                    "-X",
                    "POST",
                    &format!("{etcd}{path}"),
                    "--data",
                    &body.to_string(),
                ])
                .output()
                .expect("run curl");
            assert!(
                out.status.success(),
                "etcd {path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).expect("etcd answers JSON")
        };
        let range = post("/v3/kv/range", serde_json::json!({"key": key}));
        let value = range["kvs"][0]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{namespace}/{name} is not in etcd: {range}"));
        let mut obj: serde_json::Value =
            serde_json::from_slice(&b64.decode(value).expect("base64")).expect("a stored JSON object");
        edit(&mut obj);
        post(
            "/v3/kv/put",
            serde_json::json!({"key": key, "value": b64.encode(obj.to_string())}),
        );
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.var("AWS_REGION").to_string()))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                self.var("AWS_ACCESS_KEY_ID"),
                self.var("AWS_SECRET_ACCESS_KEY"),
                None,
                None,
                "stack",
            ))
            .load()
            .await
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        self.ec2_in(self.var("AWS_REGION")).await
    }

    pub async fn ec2_in(&self, region: &str) -> aws_sdk_ec2::Client {
        let conf = aws_sdk_ec2::config::Builder::from(&self.sdk_config().await)
            .endpoint_url(self.var("AWS_ENDPOINT_URL_EC2"))
            .region(aws_config::Region::new(region.to_string()))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    }

    /// IAM in moto (one account, 123456789012), in the commercial partition.
    pub async fn iam(&self) -> aws_sdk_iam::Client {
        self.iam_for(self.var("AWS_REGION")).await
    }

    /// IAM of `region`'s partition: moto keeps one IAM per partition, as AWS does (`cn-*`
    /// regions are signed for `cn-north-1`).
    pub async fn iam_for(&self, region: &str) -> aws_sdk_iam::Client {
        let home = if region.starts_with("cn-") {
            "cn-north-1"
        } else {
            "us-east-1"
        };
        let conf = aws_sdk_iam::config::Builder::from(&self.sdk_config().await)
            .endpoint_url(self.var("AWS_ENDPOINT_URL_IAM"))
            .region(aws_config::Region::new(home))
            .build();
        aws_sdk_iam::Client::from_conf(conf)
    }

    /// CloudWatch Logs in moto, in the stack's region.
    pub async fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        let conf = aws_sdk_cloudwatchlogs::config::Builder::from(&self.sdk_config().await)
            .endpoint_url(self.var("AWS_ENDPOINT_URL_LOGS"))
            .build();
        aws_sdk_cloudwatchlogs::Client::from_conf(conf)
    }

    pub async fn sagemaker_at(&self, endpoint: &str) -> aws_sdk_sagemaker::Client {
        let conf = aws_sdk_sagemaker::config::Builder::from(&self.sdk_config().await)
            .endpoint_url(endpoint)
            .build();
        aws_sdk_sagemaker::Client::from_conf(conf)
    }

    pub async fn sagemaker(&self) -> aws_sdk_sagemaker::Client {
        self.sagemaker_at(self.var("AWS_ENDPOINT_URL_SAGEMAKER")).await
    }
}

/// How long dropping a `TestNamespace` waits for the controller to release its ProcessingJobs.
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A fresh namespace, deleted when dropped. The stack runs kube-controller-manager, so a deleted
/// namespace really goes away once what it holds is gone — ProcessingJobs only once a controller
/// watching the namespace has released their finalizers. So dropping the guard deletes the
/// namespace and waits (at most a minute) until its ProcessingJobs are gone; the namespace
/// controller removes the emptied namespace a few seconds later by itself.
///
/// Declare the guard after (so that it is dropped before) the controller process watching the
/// namespace, which must still run when the guard is dropped:
/// `let c; let ns = stack().namespace(..); c = ControllerProcess::start(&ns, ..);`
///
/// A failing test may leave its namespace behind: while unwinding from a panic the guard only
/// asks for the deletion and does not wait, so the namespace stays Terminating if its controller
/// is gone before it released the jobs.
pub struct TestNamespace {
    pub name: String,
    /// How long dropping the guard waits for its ProcessingJobs to be released.
    release_timeout: std::time::Duration,
}

impl TestNamespace {
    pub fn new(prefix: &str) -> Self {
        stack().namespace(prefix)
    }

    /// The guard of a namespace the caller created (with its own labels or annotations).
    pub fn adopt(name: String) -> Self {
        TestNamespace {
            name,
            release_timeout: RELEASE_TIMEOUT,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Waits up to `timeout` on drop for the ProcessingJobs to be released (a benchmark's
    /// thousands take longer than a test's few).
    pub fn with_release_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.release_timeout = timeout;
        self
    }

    /// The namespace as JSON, or `None` once it is gone.
    pub fn get(&self) -> Option<serde_json::Value> {
        namespace_json(&self.name)
    }

    /// `kubectl delete namespace --wait=false`: marks it for deletion and returns.
    pub fn delete(&self) {
        stack().kubectl_ok(&["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
    }

    /// The names of the ProcessingJobs still in the namespace, or `None` when they cannot be
    /// listed (the apiserver being restarted by another test).
    fn processing_jobs(&self) -> Option<Vec<String>> {
        let out = stack().kubectl(&["-n", &self.name, "get", "processingjobs", "-o", "name"]);
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
    }
}

impl std::ops::Deref for TestNamespace {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl AsRef<str> for TestNamespace {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = stack().kubectl(&["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
        if std::thread::panicking() {
            return;
        }
        let deadline = std::time::Instant::now() + self.release_timeout;
        loop {
            let left = self.processing_jobs();
            if left.as_ref().is_some_and(Vec::is_empty) {
                return;
            }
            if std::time::Instant::now() >= deadline {
                let names = left.unwrap_or_default();
                panic!(
                    "namespace {} still holds {} ProcessingJobs {:?} after its deletion (is a controller \
                     watching it still running?), e.g. {:?}",
                    self.name,
                    names.len(),
                    self.release_timeout,
                    &names[..names.len().min(5)]
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// A namespace as JSON, or `None` when it does not exist. Other failures (the apiserver being
/// restarted by another test) are retried for a minute: they do not mean the namespace is gone.
pub fn namespace_json(name: &str) -> Option<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = stack().kubectl(&["get", "namespace", name, "-o", "json"]);
        if out.status.success() {
            return Some(serde_json::from_slice(&out.stdout).expect("namespace JSON"));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("NotFound") {
            return None;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl get namespace {name}: {err}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A short suffix unique to this process and call.
/// Runs `cmd` with `stdin` on its standard input; its status, stdout and stderr.
pub fn output_with_stdin(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the command");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("the command's output")
}

pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:x}{}",
        std::process::id() % 4096,
        nanos % 65536,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The controller binary built by cargo for this test run: beside the test executable's
/// `deps/` folder (where cargo puts a package's binaries for its integration tests).
pub fn controller_bin() -> PathBuf {
    let name = "sagemaker-processing-controller";
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found next to {}: run the tests with cargo test",
                exe.display()
            )
        })
}

pub mod controller;
pub mod events;
pub mod iam;
pub mod vpc;
