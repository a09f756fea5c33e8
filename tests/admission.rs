//! The CRD against a real kube-apiserver: it installs and becomes Established, the examples are
//! accepted, every admission rule rejects its invalid manifest with its specific message (and
//! `validate` rejects it offline, with the same message for the list-type and CEL rules), what
//! reaches SageMaker is immutable while the controller's knobs are not, ACK manifests are
//! accepted with only `apiVersion` changed.

use smpc_test_support as support;

use support::{repo_root, stack};

#[test]
fn crd_output_matches_the_checked_in_file() {
    let generated = smpc::api::crd_yaml().expect("render CRD");
    let committed =
        std::fs::read_to_string(repo_root().join("crds/processingjobs.yaml")).expect("read crds/processingjobs.yaml");
    assert!(
        generated == committed,
        "crds/processingjobs.yaml is stale: regenerate it with `cargo run -- crd > crds/processingjobs.yaml`"
    );
    // The binary prints the same.
    let out = std::process::Command::new(support::controller_bin())
        .arg("crd")
        .output()
        .expect("run crd");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
}

#[test]
fn crd_is_established_with_names_and_columns() {
    let s = stack();
    s.install_crd();
    let names = s.kubectl_ok(&[
        "get",
        "crd",
        "processingjobs.sagemaker.processing.dev",
        "-o",
        "jsonpath={.spec.names.shortNames} {.spec.names.categories}",
    ]);
    assert_eq!(names.trim(), r#"["smpj"] ["sagemaker"]"#);
    // The apiserver publishes a changed CRD's OpenAPI a moment after it is Established: wait for
    // the text looked for. kubectl wraps long descriptions, so words are compared, not lines.
    let explain = |field: &str, wanted: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = s.kubectl_ok(&["explain", &format!("processingjob.spec.{field}")]);
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if text.contains(wanted) || std::time::Instant::now() > deadline {
                break text;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    };
    let wanted = "Subnet IDs (1 to 16, no repeats), all in one VPC";
    let vpc = explain("networkConfig.vpcConfig", wanted);
    assert!(vpc.contains(wanted), "{vpc}");
    // The two controller knobs explain their values and defaults.
    let mode = explain("networkValidation.mode", "`Enforce` (the default)");
    for wanted in [
        "`Enforce` (the default): it stops the job from being created",
        "`Warn`: the job is created anyway",
        "`Skip`: the network is not validated",
        "sagemaker.processing.dev/revalidate",
    ] {
        assert!(mode.contains(wanted), "{wanted:?} not in: {mode}");
    }
    let deletion = explain("deletionPolicy", "`Stop` (the default)");
    for wanted in [
        "`Stop` (the default): a job still running is stopped",
        "`Retain`: the job is left as it is",
        "services.k8s.aws/deletion-policy: retain",
    ] {
        assert!(deletion.contains(wanted), "{wanted:?} not in: {deletion}");
    }
}

fn manifests(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn in_namespace(path: &std::path::Path, ns: &str) -> String {
    let text = std::fs::read_to_string(path).expect("read manifest");
    text.replace("namespace: default", &format!("namespace: {ns}"))
}

#[test]
fn every_example_is_accepted() {
    let s = stack();
    s.install_crd();
    let ns = s.namespace("examples");
    let files = manifests("examples");
    assert!(files.len() >= 4, "examples/ has too few manifests");
    for f in files {
        let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &in_namespace(&f, &ns));
        assert!(
            out.status.success(),
            "{} rejected: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every instance type SageMaker's API model lists for processing jobs is accepted at apply,
/// the 33 `*-flex` types included (the CRD's old pattern refused them): one List of a job per
/// type, applied with a server-side dry run.
#[test]
fn every_instance_type_of_sagemakers_model_is_accepted() {
    let s = stack();
    s.install_crd();
    let ns = s.namespace("instance-types");
    let example = in_namespace(&repo_root().join("examples/processingjob-no-vpc.yaml"), &ns);
    let job: serde_json::Value = serde_yaml_ng::from_str(&example).expect("the example is YAML");
    let items: Vec<serde_json::Value> = smpc::api::instance_types::PROCESSING_INSTANCE_TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut j = job.clone();
            j["metadata"]["name"] = format!("type-{i}").into();
            j["spec"]["processingResources"]["clusterConfig"]["instanceType"] = (*t).into();
            j
        })
        .collect();
    assert!(items.len() > 200 && items.iter().any(|j| j.to_string().contains("ml.m7i-flex.large")));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &list.to_string());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_invalid_manifest_is_rejected_with_its_message() {
    let s = stack();
    s.install_crd();
    let ns = s.namespace("invalid");
    let files = manifests("tests/admission/invalid");
    assert!(
        files.len() >= 25,
        "the invalid corpus must cover at least 25 rules, has {}",
        files.len()
    );
    let mut failures = Vec::new();
    for f in &files {
        let text = in_namespace(f, &ns);
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` first line", f.display()))
            .to_string();
        let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("{}: accepted, expected rejection with {expect:?}", f.display()));
        } else if !stderr.contains(&expect) {
            failures.push(format!("{}: rejected without {expect:?}: {stderr}", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn the_offline_validator_rejects_what_the_apiserver_rejects() {
    // `validate` checks manifests against the same schema and the Rust twins of its CEL rules,
    // without a cluster. Schema messages are worded by each side; the list-type and CEL messages
    // are the same text.
    let same_text = |expect: &str| {
        expect.contains("Duplicate value") || smpc::api::rules::ALL.iter().any(|r| r.message.contains(expect))
    };
    let mut failures = Vec::new();
    for f in manifests("tests/admission/invalid") {
        let text = std::fs::read_to_string(&f).expect("read");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_default();
        let found = smpc::manifest::parse_documents(&f.display().to_string(), &text);
        let refused: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        if refused.is_empty() {
            failures.push(format!("{}: accepted offline", f.display()));
        } else if same_text(expect) && !refused.iter().any(|e| e.contains(expect)) {
            failures.push(format!(
                "{}: offline message lacks {expect:?}: {refused:?}",
                f.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn what_reaches_sagemaker_is_immutable_and_the_controller_knobs_are_not() {
    let s = stack();
    s.install_crd();
    let ns = s.namespace("immutable");
    let manifest = in_namespace(&repo_root().join("examples/processingjob-no-vpc.yaml"), &ns);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let patch = |p: &str| s.kubectl(&["-n", &ns, "patch", "processingjob", "no-vpc", "--type=merge", "-p", p]);
    // Changed, added or removed: each field sent to SageMaker is refused by name.
    for (p, field) in [
        (
            r#"{"spec":{"processingResources":{"clusterConfig":{"instanceCount":2}}}}"#,
            "spec.processingResources is immutable",
        ),
        (
            r#"{"spec":{"tags":[{"key":"team","value":"a"}]}}"#,
            "spec.tags is immutable",
        ),
        (r#"{"spec":{"region":"eu-west-1"}}"#, "spec.region is immutable"),
        (
            r#"{"spec":{"networkConfig":{"vpcConfig":{"subnets":["subnet-1"],"securityGroupIDs":["sg-1"]}}}}"#,
            "spec.networkConfig is immutable",
        ),
    ] {
        let out = patch(p);
        assert!(!out.status.success(), "the update {p} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(field) && stderr.contains("create a new ProcessingJob"),
            "{p}: {stderr}"
        );
    }
    // The controller's own knobs change, are added and are removed.
    for p in [
        r#"{"spec":{"deletionPolicy":"Stop"}}"#,
        r#"{"spec":{"networkValidation":{"mode":"Warn"}}}"#,
        r#"{"spec":{"networkValidation":{"mode":"Skip","requiresInternet":true}}}"#,
        r#"{"spec":{"networkValidation":null,"deletionPolicy":null}}"#,
    ] {
        let out = patch(p);
        assert!(
            out.status.success(),
            "the update {p} was refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let spec = s.kubectl_ok(&["-n", &ns, "get", "processingjob", "no-vpc", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(&spec).expect("spec json");
    assert!(
        spec.get("deletionPolicy").is_none() && spec.get("networkValidation").is_none(),
        "{spec}"
    );
    s.kubectl_ok(&["-n", &ns, "label", "processingjob", "no-vpc", "team=growth"]);
    // Short name, category and printer columns.
    let listed = s.kubectl_ok(&["-n", &ns, "get", "sagemaker", "-o", "name"]);
    assert_eq!(
        listed.trim(),
        "processingjob.sagemaker.processing.dev/no-vpc",
        "the category lists the resource"
    );
    let wide = s.kubectl_ok(&["-n", &ns, "get", "smpj", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for column in ["NAME", "STATUS", "NETWORK", "JOB", "AGE", "FAILURE"] {
        assert!(header.contains(column), "{header}");
    }
}

#[test]
fn ack_manifests_are_accepted_with_only_the_api_version_changed() {
    let s = stack();
    s.install_crd();
    let ns = s.namespace("ack");
    for f in manifests("tests/admission/ack") {
        let original = in_namespace(&f, &ns);
        assert!(
            original.contains("apiVersion: sagemaker.services.k8s.aws/v1alpha1"),
            "{} is not an ACK manifest",
            f.display()
        );
        let ours = original.replace(
            "apiVersion: sagemaker.services.k8s.aws/v1alpha1",
            "apiVersion: sagemaker.processing.dev/v1alpha1",
        );
        let out = s.kubectl_stdin(&["apply", "--dry-run=server", "-o", "json", "-f", "-"], &ours);
        assert!(
            out.status.success(),
            "{} rejected: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Nothing was pruned: every field of the ACK spec survives.
        let stored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let sent: serde_json::Value = serde_yaml_ng::from_str(&ours).expect("yaml");
        assert_eq!(stored["spec"], sent["spec"], "{}: fields were dropped", f.display());
        // And the offline reader takes the original ACK manifest as it is.
        let found = smpc::manifest::parse_documents("ack", &original);
        assert!(found.errors.is_empty(), "{}: {:?}", f.display(), found.errors);
        assert_eq!(found.jobs.len(), 1);
    }
}

#[test]
fn every_finding_code_is_documented_with_its_severity_and_fix() {
    let doc = std::fs::read_to_string(repo_root().join("docs/findings.md")).expect("docs/findings.md");
    for code in smpc::network::Code::ALL {
        let row = format!("| `{}` | {} | {} |", code.as_str(), code.severity(), code.requirement());
        assert!(doc.contains(&row), "docs/findings.md lacks the row for {code}: {row}");
        assert!(
            doc.contains(code.remediation()),
            "docs/findings.md lacks the remediation of {code}"
        );
    }
}
