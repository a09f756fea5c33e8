//! The container image, run the way a cluster runs it: built by `scripts/image` (a static binary
//! in an image FROM scratch) and started with podman — read-only root filesystem, user
//! 65532:65532 — against the local stack, where it drives a job to Completed. Also: `--help` and
//! `crd` from the image, no shell in it, its size, labels and files.
//!
//! `SMPC_IMAGE_ARCHIVE=<path>` tests an OCI archive built before instead of running
//! `scripts/image`. podman runs with its own storage under `target/image/podman`, with the
//! flags this sandbox needs (see docs/development.md). When podman or buildah is missing or
//! cannot run, the tests fail and say so; they never skip.

use smpc_test_support as support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use support::controller::{apply, condition, get_job, sim_set_status, status_str, wait_for};
use support::vpc::{healthy_setup, job_manifest_in};
use support::{repo_root, stack, unique_suffix};

/// The size the issue sets for the image (uncompressed, as `podman images` shows it).
const MAX_IMAGE_BYTES: u64 = 40 * 1024 * 1024;
const USER: &str = "65532:65532";
const T: Duration = Duration::from_secs(90);

/// podman with storage of its own and the settings the sandbox needs.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        // setrlimit and the pids cgroup controller are refused here: no default ulimits, no
        // pids limit; crun refuses the cgroup setup where runc does not.
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env_remove("CONTAINER_HOST")
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args([
                "--storage-driver",
                "vfs",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ]);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap_or_else(|e| {
            panic!("cannot run podman: {e}. Install it with `apt-get install podman runc` (.ci/run does)")
        })
    }

    /// podman that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The image under test, loaded into the test's podman storage.
struct Image {
    archive: PathBuf,
    /// `localhost/sagemaker-processing-controller:<version>-<revision>`
    reference: String,
    podman: Podman,
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let archive = match std::env::var_os("SMPC_IMAGE_ARCHIVE") {
            Some(path) => PathBuf::from(path),
            None => build_image(),
        };
        assert!(archive.is_file(), "no image archive at {}", archive.display());
        let podman = podman();
        let archive_arg = archive.to_str().expect("utf-8 archive path");
        let loaded = podman.ok(&["load", "--quiet", "--input", archive_arg]);
        // "Loaded image: localhost/sagemaker-processing-controller:0.1.0-abc"
        let reference = loaded
            .lines()
            .filter_map(|l| l.split_once("Loaded image"))
            .filter_map(|(_, r)| r.trim_start_matches(['(', 's', ')', ':', ' ']).split(',').next())
            .map(|r| r.trim().to_string())
            .next()
            .unwrap_or_else(|| panic!("podman load named no image: {loaded}"));
        // Keep the storage to this image: older builds would pile up (vfs stores full copies).
        for line in podman.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).lines() {
            if line != reference {
                let _ = podman.run(&["rmi", "--force", line]);
            }
        }
        Image {
            archive,
            reference,
            podman,
        }
    })
}

/// Runs `scripts/image` (incremental: cargo and buildah redo only what changed) and returns the
/// archive it wrote.
fn build_image() -> PathBuf {
    for (tool, package) in [("buildah", "buildah"), ("musl-gcc", "musl-tools")] {
        assert!(
            which(tool),
            "{tool} is not installed: `apt-get install {package}` (.ci/run installs the image toolchain)"
        );
    }
    let started = std::time::Instant::now();
    let out = Command::new(repo_root().join("scripts/image"))
        .current_dir(repo_root())
        .output()
        .expect("run scripts/image");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/image failed ({}):\n{stderr}", out.status);
    for line in stderr.lines().filter(|l| l.starts_with("==>")) {
        eprintln!("{line}");
    }
    eprintln!("scripts/image took {:.0?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("scripts/image printed no archive path:\n{stderr}"))
            .trim(),
    )
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
        .unwrap_or(false)
}

fn podman() -> Podman {
    assert!(
        which("podman") && which("runc"),
        "podman and runc are required to run the image: `apt-get install podman runc` (.ci/run installs them)"
    );
    let dir = repo_root().join("target/image/podman");
    std::fs::create_dir_all(&dir).expect("podman dir");
    std::fs::write(
        dir.join("containers.conf"),
        "[containers]\ndefault_ulimits = []\npids_limit = 0\nlog_driver = \"k8s-file\"\n",
    )
    .expect("containers.conf");
    let p = Podman { dir };
    let info = p.run(&[
        "info",
        "--format",
        "{{.Store.GraphDriverName}} {{.Host.OCIRuntime.Name}}",
    ]);
    assert!(
        info.status.success(),
        "podman does not work on this machine: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    p
}

/// `podman run --rm` of the image as the chart runs it (read-only, non-root), with `args`.
fn run_image(args: &[&str]) -> Output {
    let img = image();
    let mut all = vec!["run", "--rm", "--pull=never", "--read-only", "--user", USER];
    all.extend_from_slice(args);
    img.podman.run(&all)
}

fn inspect_image(format: &str) -> String {
    let img = image();
    img.podman
        .ok(&["image", "inspect", "--format", format, &img.reference])
        .trim()
        .to_string()
}

#[test]
fn help_and_crd_work_from_the_image() {
    let img = image();
    let out = run_image(&[&img.reference, "--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "--help: {}", String::from_utf8_lossy(&out.stderr));
    for sub in ["run", "validate", "crd"] {
        assert!(stdout.contains(sub), "--help lists no `{sub}`:\n{stdout}");
    }
    let out = run_image(&[&img.reference, "crd"]);
    assert!(out.status.success(), "crd: {}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read_to_string(repo_root().join("crds/processingjobs.yaml")).expect("crd");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "`crd` from the image differs from crds/processingjobs.yaml"
    );
}

#[test]
fn the_image_is_small_and_has_nothing_but_the_binary() {
    let img = image();
    let size: u64 = inspect_image("{{.Size}}").parse().expect("image size");
    let archive = std::fs::metadata(&img.archive).expect("archive").len();
    eprintln!(
        "image {}: {:.1} MiB uncompressed, archive {:.1} MiB ({})",
        img.reference,
        size as f64 / 1048576.0,
        archive as f64 / 1048576.0,
        img.archive.display()
    );
    assert!(
        size < MAX_IMAGE_BYTES,
        "the image is {size} bytes, more than {MAX_IMAGE_BYTES}"
    );

    // No shell: the only way in is the controller.
    let out = run_image(&["--entrypoint", "/bin/sh", &img.reference, "-c", "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the image has a shell");
    assert!(
        stderr.contains("/bin/sh") && stderr.contains("no such file or directory"),
        "podman failed for another reason than a missing shell: {stderr}"
    );

    // Its files: the binary and the CA bundle the AWS SDK verifies TLS with, nothing else.
    let name = format!("image-files-{}", unique_suffix());
    img.podman.ok(&["create", "--name", &name, &img.reference]);
    let export = img.podman.run(&["export", &name]);
    let _ = img.podman.run(&["rm", "--force", &name]);
    assert!(
        export.status.success(),
        "podman export: {}",
        String::from_utf8_lossy(&export.stderr)
    );
    let files = tar_files(&export.stdout);
    assert_eq!(
        files,
        vec![
            "etc/ssl/certs/ca-certificates.crt".to_string(),
            "sagemaker-processing-controller".to_string()
        ],
        "the image's files"
    );

    // What the chart relies on and registries show.
    assert_eq!(inspect_image("{{.Config.User}}"), USER);
    assert_eq!(
        inspect_image("{{json .Config.Entrypoint}}"),
        r#"["/sagemaker-processing-controller"]"#
    );
    assert_eq!(inspect_image("{{json .Config.Cmd}}"), r#"["run"]"#);
    let labels: Value = serde_json::from_str(&inspect_image("{{json .Labels}}")).expect("labels");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(labels["org.opencontainers.image.version"], version);
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    for key in ["source", "revision", "created"] {
        assert!(
            labels[format!("org.opencontainers.image.{key}")]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "label org.opencontainers.image.{key} missing: {labels}"
        );
    }
    let revision = labels["org.opencontainers.image.revision"].as_str().unwrap_or_default();
    let tag = img.reference.rsplit(':').next().unwrap_or_default();
    assert!(
        revision.len() >= 12 && tag.starts_with(&format!("{version}-{}", &revision[..12])),
        "tag {tag} is not <version>-<revision> (revision {revision})"
    );

    // The SBOM next to the archive lists what the binary is made of.
    if std::env::var_os("SMPC_IMAGE_ARCHIVE").is_none() {
        let sbom_path = img.archive.with_extension("cdx.json");
        let sbom: Value = serde_json::from_str(
            &std::fs::read_to_string(&sbom_path).unwrap_or_else(|e| panic!("no SBOM at {}: {e}", sbom_path.display())),
        )
        .expect("SBOM json");
        assert_eq!(sbom["bomFormat"], "CycloneDX");
        let components: Vec<&str> = sbom["components"]
            .as_array()
            .map(|c| c.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        for dep in ["kube-client", "aws-sdk-sagemaker", "aws-lc-sys", "tokio"] {
            assert!(components.contains(&dep), "{dep} missing from the SBOM");
        }
        assert!(!components.contains(&"mlua"), "dev-dependencies are not in the binary");
    }
}

/// Regular files in a tar stream, sorted.
fn tar_files(tar: &[u8]) -> Vec<String> {
    let dir = repo_root().join("target/image");
    let path = dir.join(format!("export-{}.tar", unique_suffix()));
    std::fs::write(&path, tar).expect("write export");
    let out = Command::new("tar")
        .args(["--list", "--verbose", "--file"])
        .arg(&path)
        .output()
        .expect("run tar");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr));
    let mut files: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|f| f.trim_start_matches("./").to_string())
        .collect();
    files.sort();
    files
}

/// A controller container, removed (with its kubeconfig) when dropped; its log is printed when
/// the test fails.
struct Controller {
    name: String,
    kubeconfig: PathBuf,
}

impl Controller {
    fn logs(&self) -> String {
        let out = image().podman.run(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of container {} ---\n{}", self.name, self.logs());
        }
        let _ = image().podman.run(&["rm", "--force", "--time", "2", &self.name]);
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// The stack's kubeconfig, flattened (certificates inline) into a file the container's user can
/// read.
fn kubeconfig_for_container() -> PathBuf {
    let text = stack().kubectl_ok(&["config", "view", "--raw", "--flatten", "--minify"]);
    let path = repo_root().join(format!("target/image/kubeconfig-{}", unique_suffix()));
    std::fs::write(&path, text).expect("write kubeconfig");
    set_mode(&path, 0o644);
    path
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_a_job_to_completed() {
    let img = image();
    let controller;
    let (t, ns) = healthy_setup("10.121", "image").await;
    let kubeconfig = kubeconfig_for_container();
    let mount = format!("{}:/etc/smpc/kubeconfig:ro", kubeconfig.display());
    let name = format!("smpc-{ns}");
    // Before `podman run`: whatever it leaves behind is removed. Declared before the namespace,
    // so the namespace is deleted while the controller still runs.
    controller = Controller {
        name: name.clone(),
        kubeconfig,
    };
    let mut args: Vec<String> = [
        "run",
        "--detach",
        "--pull=never",
        "--name",
        &name,
        // The stack listens on loopback.
        "--network",
        "host",
        "--read-only",
        "--user",
        USER,
        "--volume",
        &mount,
        "--env",
        "KUBECONFIG=/etc/smpc/kubeconfig",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (key, value) in stack().vars.iter().filter(|(k, _)| k.starts_with("AWS_")) {
        args.extend(["--env".to_string(), format!("{key}={value}")]);
    }
    args.push(img.reference.clone());
    args.extend(
        [
            "run",
            "--namespace",
            &ns,
            "--poll-interval",
            "1s",
            "--metrics-address",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]
        .map(str::to_string),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    img.podman.ok(&args);

    // It runs as 65532 (the kernel says so, not the flag).
    let pid = img
        .podman
        .ok(&["inspect", "--format", "{{.State.Pid}}", &name])
        .trim()
        .to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("the container's process {pid} is gone ({e}):\n{}", controller.logs()));
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default();
    assert_eq!(
        uids.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65532"; 4],
        "{uids}"
    );

    apply(&job_manifest_in(&ns, "from-image", 1, &t.private, &[&t.sg], ""));
    let job = wait_for("the job InProgress", T, || {
        get_job(&ns, "from-image").filter(|j| status_str(j, "processingJobStatus").as_deref() == Some("InProgress"))
    });
    assert_eq!(
        condition(&job, "NetworkValidated"),
        Some(("True".into(), "Valid".into()))
    );
    let job_name = status_str(&job, "processingJobName").expect("status.processingJobName");
    sim_set_status(&job_name, r#"{"status":"Completed"}"#);
    let job = wait_for("the job Completed", T, || {
        get_job(&ns, "from-image").filter(|j| status_str(j, "processingJobStatus").as_deref() == Some("Completed"))
    });
    assert_eq!(condition(&job, "Ready"), Some(("True".into(), "Completed".into())));

    // Its ops server answers (on the host's loopback: host network).
    let address = wait_for("the ops server address in the log", T, || {
        ops_address(&controller.logs())
    });
    let (code, _) = support::controller::http_get(&format!("http://{address}/readyz"));
    assert_eq!(code, 200, "/readyz");
}

/// The address of /livez, /readyz and /metrics from the JSON log (one object a line, fields
/// flattened).
fn ops_address(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"].as_str().is_some_and(|m| m.starts_with("serving /livez")))
        .and_then(|l| l["address"].as_str().map(str::to_string))
}
