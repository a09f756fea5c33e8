//! GitOps: the Argo CD Lua health check and kstatus conformance, run against the statuses the
//! controller itself computes for each lifecycle state; and `validate` in a GitOps pipeline, on
//! what such pipelines feed it (`kubectl kustomize` output, a directory of mixed manifests).

use mlua::{Lua, LuaSerdeExt};
use serde_json::{json, Value};
use smpc::api::{Finding, ProcessingJobStatus, Severity, ValidationMode};
use smpc::job::{JobState, JobStatus};
use smpc::reconcile::status::{desired_status, NetworkOutcome, Observation, Phase};

fn job(status: &str) -> Phase {
    Phase::Submitted {
        job: Box::new(JobState {
            name: "j".into(),
            arn: Some("arn:aws:sagemaker:us-east-1:1:processing-job/j".into()),
            status: JobStatus::parse(status).expect("a SageMaker status"),
            failure_reason: (status == "Failed").then(|| "AlgorithmError: boom".into()),
            ..Default::default()
        }),
        adopted: false,
        problem: None,
    }
}

/// (state, phase, expected Argo CD health, kstatus: (ready, reconciling, stalled))
/// (state, phase, expected Argo CD health, kstatus: (ready, reconciling, stalled))
type LifecycleCase = (
    &'static str,
    Phase,
    &'static str,
    (&'static str, &'static str, &'static str),
);

fn lifecycle() -> Vec<LifecycleCase> {
    vec![
        (
            "creating",
            Phase::Creating { problem: None },
            "Progressing",
            ("False", "True", "False"),
        ),
        (
            "throttled",
            Phase::Waiting {
                reason: "AwsThrottled".into(),
                message: "later".into(),
            },
            "Progressing",
            ("False", "True", "False"),
        ),
        (
            "in progress",
            job("InProgress"),
            "Progressing",
            ("False", "True", "False"),
        ),
        ("stopping", job("Stopping"), "Progressing", ("False", "True", "False")),
        ("completed", job("Completed"), "Healthy", ("True", "False", "False")),
        ("failed", job("Failed"), "Degraded", ("False", "False", "True")),
        ("stopped", job("Stopped"), "Degraded", ("False", "False", "True")),
        (
            "network invalid",
            Phase::NetworkInvalid,
            "Degraded",
            ("False", "False", "True"),
        ),
        (
            "spec rejected",
            Phase::InvalidSpec { message: "bad".into() },
            "Degraded",
            ("False", "False", "True"),
        ),
        (
            "name in use",
            Phase::NameConflict {
                message: "taken".into(),
            },
            "Degraded",
            ("False", "False", "True"),
        ),
        (
            "not allowed",
            Phase::NotAllowed {
                message: "guard".into(),
            },
            "Degraded",
            ("False", "False", "True"),
        ),
    ]
}

fn resource(phase: Phase) -> Value {
    let finding = Finding {
        code: "NoS3Route".into(),
        severity: Severity::Error,
        resource: "subnet-1".into(),
        message: "m".into(),
        remediation: "r".into(),
    };
    let findings = if phase == Phase::NetworkInvalid {
        vec![finding]
    } else {
        vec![]
    };
    let obs = Observation {
        generation: Some(1),
        job_name: Some("j".into()),
        region: Some("us-east-1".into()),
        account: None,
        network: Some(NetworkOutcome::Validated {
            mode: ValidationMode::Enforce,
            vpc_id: Some("vpc-1".into()),
            findings,
        }),
        phase,
        failure: None,
    };
    let status = desired_status(&ProcessingJobStatus::default(), &obs);
    json!({"apiVersion": "sagemaker.processing.dev/v1alpha1", "kind": "ProcessingJob",
           "metadata": {"name": "j", "generation": 1}, "status": status})
}

fn argo_health(obj: &Value) -> (String, String) {
    let script = std::fs::read_to_string(
        smpc_test_support::repo_root().join("charts/sagemaker-processing-controller/files/argocd-health.lua"),
    )
    .expect("health script");
    let lua = Lua::new();
    lua.globals()
        .set("obj", lua.to_value(obj).expect("to lua"))
        .expect("set obj");
    let hs: mlua::Table = lua.load(&script).eval().expect("run health script");
    (
        hs.get::<String>("status").expect("status"),
        hs.get::<Option<String>>("message")
            .expect("message")
            .unwrap_or_default(),
    )
}

#[test]
fn argo_cd_health_for_every_lifecycle_state() {
    for (state, phase, expected, _) in lifecycle() {
        let (health, message) = argo_health(&resource(phase));
        assert_eq!(health, expected, "{state}: {message}");
    }
    // No status yet, and a spec not yet observed.
    assert_eq!(argo_health(&json!({"metadata": {"name": "j"}})).0, "Progressing");
    let mut newer = resource(job("Completed"));
    newer["metadata"]["generation"] = json!(2);
    assert_eq!(argo_health(&newer).0, "Progressing");
    let (_, message) = argo_health(&resource(job("Failed")));
    assert!(message.contains("AlgorithmError: boom"), "{message}");
}

/// kstatus rules: Ready True only when done; Reconciling and Stalled are never both True;
/// a finished resource is neither Reconciling nor Stalled unless it needs a human; every
/// condition carries observedGeneration == generation.
#[test]
fn conditions_follow_kstatus_in_every_lifecycle_state() {
    for (state, phase, _, (ready, reconciling, stalled)) in lifecycle() {
        let obj = resource(phase);
        let conditions = obj["status"]["conditions"].as_array().expect("conditions");
        let get = |t: &str| {
            conditions
                .iter()
                .find(|c| c["type"] == t)
                .map(|c| c["status"].as_str().unwrap_or_default().to_string())
        };
        assert_eq!(get("Ready").as_deref(), Some(ready), "{state}: Ready");
        assert_eq!(get("Reconciling").as_deref(), Some(reconciling), "{state}: Reconciling");
        assert_eq!(get("Stalled").as_deref(), Some(stalled), "{state}: Stalled");
        assert!(!(reconciling == "True" && stalled == "True"), "{state}");
        for c in conditions {
            assert_eq!(c["observedGeneration"], 1, "{state}: {c}");
            assert!(
                c["lastTransitionTime"].is_string() && c["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{state}: {c}"
            );
        }
        let types: Vec<&str> = conditions.iter().filter_map(|c| c["type"].as_str()).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types.len(), unique.len(), "conditions are a list-map keyed by type");
    }
}

// ---------- `validate` on GitOps streams ----------

use smpc_test_support as support;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("JSON output: {e}: {}", self.stdout))
    }
}

fn validate(args: &[&str], stdin: &str) -> Run {
    let mut cmd = support::stack().command(support::controller_bin());
    cmd.arg("validate").args(args);
    let out = support::output_with_stdin(cmd, stdin);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh directory with these files.
fn directory(files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("smpc-gitops-{}", support::unique_suffix()));
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write manifest");
    }
    dir
}

fn ack(manifest: &str) -> String {
    manifest.replace(
        "apiVersion: sagemaker.processing.dev/v1alpha1",
        "apiVersion: sagemaker.services.k8s.aws/v1alpha1",
    )
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ml-team\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec: {containers: [{name: api, image: nginx}]}\n";

/// `kubectl kustomize` (kustomize built into kubectl) renders an overlay with a namespace, a
/// generated ConfigMap, a Deployment, one of our jobs and an ACK job: both jobs are validated
/// against the VPC, the rest is skipped and listed; the verdict follows the jobs' findings.
#[tokio::test]
async fn kustomize_output_validates_every_processing_job_and_skips_the_rest() {
    let t = support::vpc::topology("10.140", true).await;
    let kustomization = "namespace: ml-team\nresources:\n- namespace.yaml\n- deployment.yaml\n- job.yaml\n- ack-job.yaml\nconfigMapGenerator:\n- name: settings\n  literals: [LOG_LEVEL=info]\n";
    let dir = directory(&[
        ("kustomization.yaml", kustomization),
        ("namespace.yaml", NAMESPACE),
        ("deployment.yaml", DEPLOYMENT),
        ("job.yaml", &t.manifest("ours", 1, "")),
        ("ack-job.yaml", &ack(&t.manifest("theirs", 1, ""))),
    ]);
    let built = support::stack().kubectl_ok(&["kustomize", &dir.display().to_string()]);
    assert!(built.contains("kind: ConfigMap") && built.contains("sagemaker.services.k8s.aws/v1alpha1"));

    // No S3 path yet: both jobs have an Error finding.
    let run = validate(&["-f", "-", "-o", "json"], &built);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let out = run.json();
    let jobs: Vec<(&str, &str)> = out["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| (j["namespace"].as_str().unwrap_or(""), j["name"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(jobs.len(), 2, "{out}");
    assert!(
        jobs.contains(&("ml-team", "ours")) && jobs.contains(&("ml-team", "theirs")),
        "{jobs:?}"
    );
    for j in out["jobs"].as_array().expect("jobs") {
        assert_eq!(j["vpcID"], Value::String(t.vpc.clone()));
        assert!(j["findings"].to_string().contains("NoS3Route"), "{j}");
    }
    let skipped: Vec<&str> = out["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    for kind in [
        "Namespace ml-team (v1)",
        "ConfigMap settings-",
        "Deployment api (apps/v1)",
    ] {
        assert!(skipped.iter().any(|s| s.contains(kind)), "{kind} not in {skipped:?}");
        assert!(run.stderr.contains(kind), "{kind} not listed on stderr: {}", run.stderr);
    }

    // With an S3 gateway endpoint, the same stream passes.
    t.s3_gateway_endpoint(None).await;
    let run = validate(&["-f", "-", "-o", "json"], &built);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(run.json()["jobs"].as_array().map(Vec::len), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

/// `-f dir/` reads the directory's .yaml, .yml and .json files in name order, not its
/// subdirectories (as `kubectl apply -f dir/`), and nothing else.
#[tokio::test]
async fn a_directory_of_mixed_manifests_is_validated_job_by_job() {
    let t = support::vpc::topology("10.141", true).await;
    let no_vpc =
        std::fs::read_to_string(support::repo_root().join("examples/processingjob-no-vpc.yaml")).expect("example");
    let as_json = serde_json::to_string(&serde_yaml_ng::from_str::<Value>(&no_vpc).expect("yaml")).expect("json");
    let dir = directory(&[
        ("00-namespace.yaml", &format!("{NAMESPACE}---\n{DEPLOYMENT}")),
        ("10-job.yml", &t.manifest("in-vpc", 1, "")),
        ("20-job.json", &as_json),
        ("README.md", "# not a manifest: [unclosed"),
        ("nested/30-job.yaml", &t.manifest("nested", 1, "")),
    ]);
    let run = validate(&["-f", &dir.display().to_string()], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with(&format!("ml/in-vpc ({}): ", t.vpc)) && l.ends_with(" error(s)"))
            && run.stdout.contains("default/no-vpc (no VPC): ok")
            && !run.stdout.contains("nested"),
        "{}",
        run.stdout
    );
    let first = dir.join("00-namespace.yaml").display().to_string();
    assert!(
        run.stderr
            .contains(&format!("skipped: {first}: document 1: Namespace ml-team"))
            && run
                .stderr
                .contains(&format!("skipped: {first}: document 2: Deployment api")),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_stream_without_processing_jobs_passes_and_says_so() {
    let run = validate(
        &["-f", "-", "-o", "json"],
        &format!("{NAMESPACE}---\n{DEPLOYMENT}---\n"),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no ProcessingJob found in <stdin> (2 other object(s) skipped): nothing to validate"),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["jobs"], serde_json::json!([]));
    assert_eq!(run.json()["skipped"].as_array().map(Vec::len), Some(2));
    // An empty stream and an empty directory are no error either.
    assert_eq!(validate(&["-f", "-"], "").code, 0);
    let empty = directory(&[("notes.txt", "nothing")]);
    let run = validate(&["-f", &empty.display().to_string()], "");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("no ProcessingJob found"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn malformed_yaml_and_invalid_jobs_in_a_stream_are_bad_input() {
    let no_vpc =
        std::fs::read_to_string(support::repo_root().join("examples/processingjob-no-vpc.yaml")).expect("example");
    // Malformed YAML in one file of a directory: the file and document are named.
    let dir = directory(&[
        ("a.yaml", &no_vpc),
        ("b.yaml", &format!("{NAMESPACE}---\nkind: [unclosed\n")),
    ]);
    let run = validate(&["-f", &dir.display().to_string()], "");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let bad = dir.join("b.yaml").display().to_string();
    assert!(
        run.stderr.contains(&format!("{bad}: document 2: not valid YAML")),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(dir);
    // A ProcessingJob the schema refuses, among other kinds: document and field named.
    for (broken, field) in [
        (
            "instanceCount: 1",
            "instanceCount: 0",
            "spec.processingResources.clusterConfig.instanceCount",
        ),
        (
            "deletionPolicy: Retain",
            "deletionPolicy: Retain\n  tags: [{key: a, value: x}, {key: a, value: y}]",
            "spec.tags: tag keys must be unique",
        ),
    ]
    .map(|(from, to, field)| (no_vpc.replace(from, to), field))
    {
        let run = validate(&["-f", "-"], &format!("{NAMESPACE}---\n{broken}"));
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(
            run.stderr.contains("<stdin>: document 2 (no-vpc)") && run.stderr.contains(field),
            "{field}: {}",
            run.stderr
        );
    }
    // A document that is no Kubernetes object.
    let run = validate(&["-f", "-"], "just a string\n");
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("<stdin>: document 1: not a Kubernetes object"),
        "{}",
        run.stderr
    );
}
