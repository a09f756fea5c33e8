//! Packaging: the IAM policy lists exactly the AWS actions the code calls; the Helm chart lints,
//! renders into a Pod Security `restricted` namespace on the real apiserver, rejects bad values,
//! and ships the same CRD.

use smpc_test_support as support;

use std::collections::BTreeSet;

use support::{repo_root, stack};

/// `self.call("Operation", ...)` in an adapter.
fn called_operations(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join(file)).expect("adapter source");
    text.split(".call(")
        .skip(1)
        .chain(text.split(".paginate(").skip(1))
        .filter_map(|rest| rest.trim_start().strip_prefix('"').and_then(|r| r.split('"').next()))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_iam_policy_lists_exactly_the_actions_used() {
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("docs/iam-policy.json")).expect("policy"))
            .expect("json");
    let mut listed = BTreeSet::new();
    for st in policy["Statement"].as_array().expect("statements") {
        match &st["Action"] {
            serde_json::Value::String(a) => {
                listed.insert(a.clone());
            }
            serde_json::Value::Array(a) => listed.extend(a.iter().filter_map(|x| x.as_str().map(str::to_string))),
            _ => panic!("bad Action"),
        }
    }
    let mut used: BTreeSet<String> = called_operations("src/aws/ec2.rs")
        .into_iter()
        .map(|o| format!("ec2:{o}"))
        .collect();
    used.extend(
        called_operations("src/aws/sagemaker.rs")
            .into_iter()
            .map(|o| format!("sagemaker:{o}")),
    );
    used.extend(
        called_operations("src/aws/iam.rs")
            .into_iter()
            .map(|o| format!("iam:{o}")),
    );
    used.extend(
        called_operations("src/aws/logs.rs")
            .into_iter()
            .map(|o| format!("logs:{o}")),
    );
    // The events queue (docs/events.md); a batch delete is authorized as sqs:DeleteMessage.
    used.extend(
        called_operations("src/aws/sqs.rs")
            .into_iter()
            .map(|o| format!("sqs:{}", o.trim_end_matches("Batch"))),
    );
    // Cross-account jobs (docs/multi-account.md): the roles of the ConfigMaps are assumed.
    if std::fs::read_to_string(repo_root().join("src/aws/assume.rs"))
        .expect("assume.rs")
        .contains("AssumeRoleProvider::builder")
    {
        used.insert("sts:AssumeRole".into());
    }
    // Creating a job with tags needs AddTags; passing the job's role needs PassRole.
    used.insert("sagemaker:AddTags".into());
    used.insert("iam:PassRole".into());
    assert_eq!(
        listed, used,
        "docs/iam-policy.json must list exactly the actions the controller uses"
    );
    let pass = policy["Statement"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["Action"] == "iam:PassRole"))
        .expect("PassRole");
    assert_eq!(
        pass["Condition"]["StringEquals"]["iam:PassedToService"],
        "sagemaker.amazonaws.com"
    );
    assert_ne!(pass["Resource"], "*", "PassRole must be limited to a role pattern");
    // The job roles are read where they may be passed, no further.
    let read_roles = policy["Statement"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["Sid"] == "ReadTheJobRoles"))
        .expect("ReadTheJobRoles");
    assert_eq!(read_roles["Resource"], pass["Resource"]);
}

fn chart() -> String {
    repo_root()
        .join("charts/sagemaker-processing-controller")
        .display()
        .to_string()
}

fn helm(args: &[&str]) -> std::process::Output {
    stack()
        .command(stack().var("HELM"))
        .args(args)
        .output()
        .expect("run helm")
}

/// The chart's default image is a placeholder the schema refuses: every render sets one.
const IMAGE: &str = "image.repository=123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-processing-controller";

#[test]
fn the_chart_ships_the_generated_crd() {
    let chart_crd =
        std::fs::read_to_string(repo_root().join("charts/sagemaker-processing-controller/crds/processingjobs.yaml"))
            .expect("chart crd");
    let crd = std::fs::read_to_string(repo_root().join("crds/processingjobs.yaml")).expect("crd");
    assert!(
        chart_crd == crd,
        "charts/.../crds/processingjobs.yaml differs from crds/: copy it again"
    );
}

#[test]
fn helm_lint_is_clean() {
    let out = helm(&["lint", "--strict", &chart(), "--set", IMAGE]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_chart_applies_to_a_restricted_namespace() {
    let s = stack();
    let team = s.namespace("chart-team");
    let watch = format!("watchNamespace={team}");
    for (label, sets) in [
        ("default", vec![]),
        (
            "scoped-ha",
            vec![
                "--set",
                "replicas=2",
                "--set",
                watch.as_str(),
                "--set",
                "serviceAccount.roleArn=arn:aws:iam::123456789012:role/smpc",
                "--set",
                "region=eu-west-1",
            ],
        ),
    ] {
        let ns = s.namespace(&format!("chart-{label}"));
        s.kubectl_ok(&[
            "label",
            "namespace",
            &ns,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ]);
        let chart = chart();
        let mut args = vec![
            "template",
            "smpc",
            &chart,
            "--namespace",
            &ns,
            "--include-crds",
            "--kube-version",
            "1.33.0",
            "--set",
            IMAGE,
        ];
        args.extend(sets.iter().copied());
        let out = helm(&args);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
        if label == "scoped-ha" {
            assert!(
                rendered.contains("kind: PodDisruptionBudget") && rendered.contains("kind: Role\n"),
                "{rendered}"
            );
            assert!(rendered.contains("eks.amazonaws.com/role-arn"));
        }
        assert!(!rendered.contains("\"*\""), "no wildcards in RBAC");
        // The CRD goes in server-side; the rest is a server-side dry run.
        let (crd, rest) = rendered
            .split_once("\n---\n# Source: sagemaker-processing-controller/templates/")
            .map(|(a, b)| (a.to_string(), format!("# Source: {b}")))
            .unwrap_or_default();
        assert!(crd.contains("CustomResourceDefinition"), "the CRD is rendered first");
        let out = s.kubectl_stdin(
            &[
                "apply",
                "--dry-run=server",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
            ],
            &crd,
        );
        assert!(
            out.status.success(),
            "{label} CRD: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &rest);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("violate PodSecurity"),
            "{label}: {stderr}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("deployment.apps/smpc-sagemaker-processing-controller created (server dry run)"),
            "{stdout}"
        );
    }
}

#[test]
fn bad_values_are_rejected_by_the_schema() {
    for (set, needle) in [
        ("replicas=0", "replicas"),
        ("log.format=xml", "format"),
        ("pollInterval=soon", "pollInterval"),
        ("concurrency=0", "concurrency"),
        ("serviceAccount.roleArn=not-an-arn", "roleArn"),
        ("unknownValue=1", "unknownValue"),
        ("resyncInterval=often", "resyncInterval"),
        ("orphans.sweepInterval=1d", "sweepInterval"),
        ("topologySpreadConstraints=x", "topologySpreadConstraints"),
        ("admissionPolicy.validationActions={Block}", "validationActions"),
        ("carm.accountRoles.12345=arn:aws:iam::123456789012:role/r", "12345"),
        ("carm.teamRoles.team-a=not-a-role", "teamRoles"),
    ] {
        let out = helm(&["template", "smpc", &chart(), "--set", IMAGE, "--set", set]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(stderr.contains(needle), "{set}: {stderr}");
    }
    // Several replicas without leader election would let two controllers act.
    let out = helm(&[
        "template",
        "smpc",
        &chart(),
        "--set",
        IMAGE,
        "--set",
        "replicas=2",
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(!out.status.success());
    // Without an image the install fails at once, saying what to set and where to read.
    let out = helm(&["template", "smpc", &chart()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the placeholder image was accepted");
    assert!(
        stderr.contains("/image/repository") && stderr.contains("docs/install.md"),
        "{stderr}"
    );
}

/// The values someone installing on EKS sets: security contexts, priority class, spread, names,
/// intervals; and the region: a warning in NOTES, an error with requireRegion.
#[test]
fn operational_values_reach_the_deployment() {
    let chart = chart();
    let render = |sets: &[&str]| -> String {
        let mut args = vec![
            "template",
            "smpc",
            chart.as_str(),
            "--kube-version",
            "1.33.0",
            "--set",
            IMAGE,
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = helm(&args);
        assert!(
            out.status.success(),
            "{sets:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let defaults = render(&[]);
    assert!(defaults.contains("readOnlyRootFilesystem: true"), "{defaults}");
    assert!(defaults.contains("runAsUser: 65532"));
    assert!(!defaults.contains("priorityClassName"));
    for env in [
        "SMPC_RESYNC_INTERVAL",
        "SMPC_CREDENTIALS_RETRY_INTERVAL",
        "SMPC_SHUTDOWN_DELAY",
        "SMPC_ORPHAN_SWEEP_INTERVAL",
        "SMPC_STOP_ORPHANS",
    ] {
        assert!(defaults.contains(env), "{env} missing");
    }
    let custom = render(&[
        "priorityClassName=system-cluster-critical",
        "securityContext.readOnlyRootFilesystem=false",
        "podSecurityContext.runAsUser=1000",
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "resyncInterval=3m",
        "fullnameOverride=smpc-ctl",
    ]);
    assert!(
        custom.contains("priorityClassName: \"system-cluster-critical\""),
        "{custom}"
    );
    assert!(custom.contains("readOnlyRootFilesystem: false"));
    assert!(custom.contains("runAsUser: 1000"));
    assert!(custom.contains("topologyKey: topology.kubernetes.io/zone"));
    assert!(custom.contains("value: \"3m\""));
    assert!(custom.contains("name: smpc-ctl\n"), "{custom}");
    // The cap per region: off by default, an environment variable when set.
    assert!(!defaults.contains("SMPC_MAX_ACTIVE_JOBS_PER_REGION"));
    let capped = render(&["maxActiveJobsPerRegion=20"]);
    assert!(
        capped.contains("name: SMPC_MAX_ACTIVE_JOBS_PER_REGION\n              value: \"20\""),
        "{capped}"
    );
    let renamed = render(&["nameOverride=processing"]);
    assert!(renamed.contains("name: smpc-processing\n"), "{renamed}");

    // No region: NOTES warns and names the service account for the IRSA trust policy; with
    // requireRegion the install fails.
    // A dry run against the stack's apiserver renders NOTES as an install would.
    let notes = |sets: &[&str]| -> String {
        let mut args = vec![
            "install",
            "my-sagemaker-processing-controller",
            chart.as_str(),
            "--namespace",
            "default",
            "--dry-run=server",
            "--set",
            IMAGE,
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = helm(&args);
        assert!(
            out.status.success(),
            "{sets:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_once("NOTES:")
            .map(|(_, n)| n.to_string())
            .unwrap_or_default()
    };
    let warned = notes(&[]);
    assert!(warned.contains("WARNING: region is empty"), "{warned}");
    // A release name that contains the chart's name is the object name as it is.
    assert!(
        warned.contains("system:serviceaccount:default:my-sagemaker-processing-controller\n")
            || warned.contains("system:serviceaccount:default:my-sagemaker-processing-controller)"),
        "{warned}"
    );
    assert!(!warned.contains("kubectl apply -f examples/"), "{warned}");
    assert!(!notes(&["region=eu-west-1"]).contains("WARNING"));
    let out = helm(&[
        "template",
        "smpc",
        &chart,
        "--kube-version",
        "1.33.0",
        "--set",
        IMAGE,
        "--set",
        "requireRegion=true",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("requireRegion"));
}

/// The tenant guard's admission policy is on by default, follows `watchNamespace`, and can be
/// turned off (clusters older than 1.30, or a policy of the platform's own).
#[test]
fn the_admission_policy_is_on_by_default_and_can_be_turned_off() {
    let chart_path = chart();
    let render = |sets: &[&str]| {
        let mut args = vec![
            "template",
            "smpc",
            &chart_path,
            "--kube-version",
            "1.33.0",
            "--set",
            IMAGE,
        ];
        args.extend(sets.iter().flat_map(|s| ["--set", *s]));
        let out = helm(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let default = render(&[]);
    assert!(
        default.contains("kind: ValidatingAdmissionPolicy\n")
            && default.contains("kind: ValidatingAdmissionPolicyBinding")
    );
    assert!(default.contains("validationActions: [\"Deny\"]"), "{default}");
    let scoped = render(&["watchNamespace=team-a"]);
    assert!(scoped.contains("kubernetes.io/metadata.name: team-a"), "{scoped}");
    let off = render(&["admissionPolicy.enabled=false"]);
    assert!(!off.contains("ValidatingAdmissionPolicy"), "{off}");
}

/// `help`, `help <command>` and `help --help` print help and succeed, like `--help`.
#[test]
fn help_works_in_every_spelling() {
    let bin = smpc_test_support::controller_bin();
    for args in [&["help"][..], &["help", "--help"], &["help", "validate"], &["--help"]] {
        let out = std::process::Command::new(&bin)
            .args(args)
            .output()
            .expect("run the binary");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Usage:"), "{args:?} printed no usage: {text}");
    }
    let validate = std::process::Command::new(&bin)
        .args(["help", "validate"])
        .output()
        .expect("run the binary");
    assert!(String::from_utf8_lossy(&validate.stdout).contains("--call-stats"));
    let unknown = std::process::Command::new(&bin)
        .args(["help", "nope"])
        .output()
        .expect("run the binary");
    assert_eq!(unknown.status.code(), Some(2));
}

/// The dashboard and alert values: lint with both on, and the schema refuses bad ones.
#[test]
fn dashboard_and_alert_values_are_checked() {
    let chart = chart();
    let out = helm(&[
        "lint",
        "--strict",
        &chart,
        "--set",
        IMAGE,
        "--set",
        "dashboard.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "prometheusRule.disabled={SmpcOrphanedJobs}",
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (set, needle) in [
        ("dashboard.enabled=yes", "enabled"),
        ("dashboard.label=bad label", "label"),
        ("dashboard.namespace=Monitoring", "namespace"),
        ("dashboard.folder=x", "folder"),
        ("prometheusRule.disabled={SmpcNoSuchAlert}", "disabled"),
        ("prometheusRule.ruleLabels.team[0]=x", "ruleLabels"),
        ("prometheusRule.interval=1m", "interval"),
    ] {
        let out = helm(&[
            "template",
            "smpc",
            &chart,
            "--kube-version",
            "1.33.0",
            "--set",
            IMAGE,
            "--set",
            set,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(stderr.contains(needle), "{set}: {stderr}");
    }
}

/// ACK's cross-account ConfigMaps from values, in the release namespace, and the RBAC to watch
/// them by name; none without entries.
#[test]
fn the_chart_creates_the_carm_configmaps_from_values() {
    let out = helm(&[
        "template",
        "smpc",
        &chart(),
        "--namespace",
        "ml-system",
        "--kube-version",
        "1.33.0",
        "--set",
        IMAGE,
        "--set",
        "carm.accountRoles.222222222222=arn:aws:iam::222222222222:role/smpc",
        "--set",
        "carm.teamRoles.team-a=arn:aws:iam::333333333333:role/team-a",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "name: ack-role-account-map",
        "\"222222222222\": \"arn:aws:iam::222222222222:role/smpc\"",
        "name: ack-role-team-map",
        "\"team-a\": \"arn:aws:iam::333333333333:role/team-a\"",
        "resourceNames: [\"ack-role-account-map\", \"ack-role-team-map\"]",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    let lint = helm(&[
        "lint",
        "--strict",
        &chart(),
        "--set",
        IMAGE,
        "--set",
        "carm.accountRoles.222222222222=arn:aws:iam::222222222222:role/smpc",
    ]);
    assert!(lint.status.success(), "{}", String::from_utf8_lossy(&lint.stdout));
    let plain = helm(&["template", "smpc", &chart(), "--kube-version", "1.33.0", "--set", IMAGE]);
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(
        !plain.contains("kind: ConfigMap\nmetadata:\n  name: ack-role"),
        "no ConfigMap without entries"
    );
    assert!(plain.contains("-carm"), "the RBAC to watch them is always there");
}
