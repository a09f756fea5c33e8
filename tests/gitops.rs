//! GitOps health: the Argo CD Lua health check and kstatus conformance, run against the statuses
//! the controller itself computes for each lifecycle state.

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
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/sagemaker-processing-controller/files/argocd-health.lua"
    ))
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
