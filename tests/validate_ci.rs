//! `validate` as a CI step sees it, through the real binary against moto: the exit code follows
//! each job's `networkValidation.mode`; a bad document (malformed, duplicate keys, refused by the
//! schema, no region) is reported with the rest still checked, and the worst outcome gives the
//! exit code; `-o junit` read by a JUnit parser; `-o github` workflow commands pointing at the
//! right lines of a multi-document file.

use smpc_test_support as support;

use serde_json::Value;
use support::vpc::{job_manifest, Topology};
use support::{controller_bin, output_with_stdin, stack};

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

/// Runs `validate` with these arguments, this standard input and these extra variables (an
/// empty value removes the variable).
fn validate(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut cmd = stack().command(controller_bin());
    cmd.arg("validate").args(args);
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let out = output_with_stdin(cmd, stdin);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn with_mode(t: &Topology, name: &str, mode: &str) -> String {
    t.manifest(name, 1, &format!("  networkValidation: {{mode: {mode}}}\n"))
}

/// A job with two Error findings: an unknown subnet beside a real one without an S3 path.
fn broken(t: &Topology, name: &str, extra: &str) -> String {
    job_manifest(
        name,
        1,
        &[t.private[0].clone(), "subnet-0000000000000dead".into()],
        &[&t.sg],
        extra,
    )
}

fn job<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["name"] == name))
        .unwrap_or_else(|| panic!("no job {name} in {out}"))
}

fn codes(job: &Value) -> Vec<String> {
    job["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["code"].as_str().map(str::to_string))
        .collect()
}

fn temp_file(name: &str, text: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("smpc-validate-ci-{}", support::unique_suffix()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    (dir, path)
}

/// Error findings block a job only in Enforce mode, as in the controller: a Warn-mode job with
/// them passes (reported, marked not blocking), a Skip-mode job is not read from EC2 at all.
#[tokio::test]
async fn the_exit_code_follows_each_jobs_validation_mode() {
    let t = support::vpc::topology("10.160", true).await; // no S3 path: NoS3Route is an Error
    let warn = with_mode(&t, "warned", "Warn");
    let skip = with_mode(&t, "skipped", "Skip");

    let run = validate(&["-f", "-", "-o", "json"], &format!("{warn}{skip}"), &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let out = run.json();
    let warned = job(&out, "warned");
    assert_eq!(
        (&warned["mode"], &warned["verdict"]),
        (&"Warn".into(), &"notBlocking".into())
    );
    assert!(codes(warned).contains(&"NoS3Route".into()), "{warned}");
    let skipped = job(&out, "skipped");
    assert_eq!(
        (&skipped["mode"], &skipped["verdict"]),
        (&"Skip".into(), &"skipped".into())
    );
    assert_eq!(
        (&skipped["vpcID"], &skipped["findings"]),
        (&Value::Null, &serde_json::json!([]))
    );

    // Text: the errors are shown and marked, the skipped job says why.
    let run = validate(&["-f", "-"], &format!("{warn}{skip}"), &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("ml/warned (")
            && run
                .stdout
                .contains("error(s), not blocking: networkValidation.mode is Warn")
            && run.stdout.contains("NoS3Route")
            && run.stdout.contains("(not blocking: mode Warn)")
            && run
                .stdout
                .contains("ml/skipped skipped: networkValidation.mode is Skip"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("1 with Error findings not blocking (mode Warn), 1 skipped (mode Skip): exit 0"),
        "{}",
        run.stderr
    );

    // A Skip-mode job costs no EC2 call.
    let run = validate(&["-f", "-", "-o", "json", "--call-stats"], &skip, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(r#""ec2":{"byOperation":{},"total":0}"#)
            && run.stderr.contains(r#""iam":{"byOperation":{},"total":0}"#),
        "{}",
        run.stderr
    );

    // The same network in Enforce mode (the default) blocks: exit 1.
    let run = validate(
        &["-f", "-", "-o", "json"],
        &format!("{warn}{skip}{}", t.manifest("enforced", 1, "")),
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(job(&run.json(), "enforced")["verdict"], "blocked");
}

/// A stream with good jobs, malformed YAML, two manifests run together without `---`, a job the
/// schema refuses and a job without a region: every bad document is reported (stderr and the
/// JSON's `errors`), every good job is still checked, and the exit code is 2 even beside a
/// blocked job; a network that cannot be read outranks it with 3.
#[tokio::test]
async fn bad_documents_are_reported_and_the_rest_still_checked() {
    let t = support::vpc::topology("10.161", true).await;
    let ok = with_mode(&t, "first", "Warn");
    let concatenated = format!(
        "{}{}",
        t.manifest("merged-a", 1, "").trim_start_matches("---\n"),
        t.manifest("merged-b", 1, "").trim_start_matches("---\n")
    );
    let stream = format!(
        "{ok}---\nkind: [unclosed\n---\n{concatenated}{}{}{}",
        t.manifest("too-small", 0, ""),
        t.manifest("no-region", 1, "").replace("  region: us-east-1\n", ""),
        t.manifest("blocked", 1, ""),
    );
    let run = validate(
        &["-f", "-", "-o", "json"],
        &stream,
        &[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "")],
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stderr, run.stdout);
    let out = run.json();
    let names: Vec<&str> = out["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["first", "blocked"], "{out}");
    assert_eq!(job(&out, "blocked")["verdict"], "blocked");

    let line_of = |needle: &str| stream.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    let errors = out["errors"].as_array().expect("errors");
    let find = |document: u64| -> &Value {
        errors
            .iter()
            .find(|e| e["document"] == document)
            .unwrap_or_else(|| panic!("no error for document {document}: {errors:?}"))
    };
    assert_eq!(errors.len(), 4, "{errors:#?}");
    let yaml = find(2);
    assert_eq!(
        (&yaml["file"], yaml["line"].as_u64()),
        (&"<stdin>".into(), line_of("[unclosed").map(|l| l as u64))
    );
    assert!(
        yaml["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("not valid YAML")),
        "{yaml}"
    );
    // The second manifest's apiVersion is the first duplicate key.
    let duplicate = find(3);
    let second_api_version = stream
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("apiVersion"))
        .map(|(i, _)| i as u64 + 1)
        .nth(2);
    assert_eq!(
        (&duplicate["field"], duplicate["line"].as_u64()),
        (&"apiVersion".into(), second_api_version),
        "{duplicate}"
    );
    assert!(
        duplicate["message"]
            .as_str()
            .is_some_and(|m| m.contains("without a `---`")),
        "{duplicate}"
    );
    let invalid = find(4);
    assert_eq!(
        (&invalid["job"], &invalid["field"], &invalid["message"]),
        (
            &"too-small".into(),
            &"spec.processingResources.clusterConfig.instanceCount".into(),
            &"0 is less than the minimum 1".into()
        )
    );
    let region = find(5);
    assert_eq!(
        (&region["job"], &region["field"]),
        (&"no-region".into(), &"spec.region".into())
    );
    for e in errors {
        assert!(
            run.stderr
                .contains(&format!("error: <stdin>: document {}", e["document"])),
            "{e} not on stderr: {}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("4 input error(s): exit 2"), "{}", run.stderr);

    // EC2 unreachable: the jobs cannot be checked, 3 outranks the bad input's 2.
    let run = validate(
        &["-f", "-", "-o", "json"],
        &stream,
        &[
            ("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9"),
            ("AWS_MAX_ATTEMPTS", "1"),
        ],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    let out = run.json();
    assert_eq!(job(&out, "first")["verdict"], "notChecked");
    assert!(
        job(&out, "first")["error"]
            .as_str()
            .is_some_and(|e| e.contains("http://127.0.0.1:9")),
        "{out}"
    );
    assert_eq!(
        out["errors"].as_array().map(Vec::len),
        Some(3),
        "the region-less job is no error with a region"
    );
}

/// `-o junit` read by a JUnit parser (and counted with an XML reader): one suite, one case per
/// job named namespace/name with the file as class, a failure per blocking Error finding, the
/// rest in system-out, Skip as skipped, a bad document as an error.
#[tokio::test]
async fn junit_output_has_a_case_per_job_and_a_failure_per_error() {
    use quick_xml::events::Event;

    let t = support::vpc::topology("10.162", true).await;
    let text = format!(
        "{}{}{}{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\n",
        broken(&t, "blocked", ""),
        broken(&t, "warned", "  networkValidation: {mode: Warn}\n"),
        with_mode(&t, "skipped", "Skip"),
        t.manifest("too-small", 0, ""),
    );
    let (dir, path) = temp_file("jobs.yaml", &text);
    let file = path.display().to_string();
    let json = validate(&["-f", &file, "-o", "json"], "", &[]).json();
    let blocking = job(&json, "blocked")["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "Error")
        .count();
    assert_eq!(blocking, 2, "SubnetNotFound and NoS3Route: {json}");

    let run = validate(&["-f", &file, "-o", "junit"], "", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let suites = junit_parser::from_reader(std::io::Cursor::new(run.stdout.as_bytes()))
        .unwrap_or_else(|e| panic!("not JUnit: {e}: {}", run.stdout));
    assert_eq!(suites.suites.len(), 1, "one testsuite per run");
    let suite = &suites.suites[0];
    assert_eq!(
        (suite.tests, suite.failures, suite.errors, suite.skipped),
        (4, 1, 1, 1),
        "{}",
        run.stdout
    );
    let case = |name: &str| {
        suite.cases.iter().find(|c| c.original_name == name).unwrap_or_else(|| {
            panic!(
                "no case {name}: {:?}",
                suite.cases.iter().map(|c| &c.original_name).collect::<Vec<_>>()
            )
        })
    };
    let blocked = case("ml/blocked");
    assert_eq!(blocked.classname.as_deref(), Some(file.as_str()));
    let failure = blocked.status.failure_as_ref();
    assert!(
        ["SubnetNotFound", "NoS3Route"].contains(&failure.failure_type.as_str()),
        "{failure:?}"
    );
    assert!(
        failure.message.contains(": ") && failure.text.contains("remediation: "),
        "{failure:?}"
    );
    let warned = case("ml/warned");
    assert!(warned.status.is_success(), "{:?}", warned.status);
    let out = warned.system_out.as_deref().unwrap_or_default();
    assert!(
        out.contains("Error NoS3Route (not blocking: networkValidation.mode is Warn)"),
        "{out}"
    );
    assert!(case("ml/skipped").status.is_skipped());
    let bad = case("document 4 (too-small)");
    assert_eq!(bad.classname.as_deref(), Some(file.as_str()));
    assert!(
        bad.status
            .error_as_ref()
            .message
            .contains("spec.processingResources.clusterConfig.instanceCount"),
        "{:?}",
        bad.status
    );

    // Every blocking Error finding is its own <failure>, with the finding's code as its type.
    let mut reader = quick_xml::Reader::from_str(&run.stdout);
    let (mut current, mut failures) = (String::new(), Vec::new());
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &str| {
                    e.try_get_attribute(name)
                        .ok()
                        .flatten()
                        .and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .ok()
                                .map(|v| v.into_owned())
                        })
                        .unwrap_or_default()
                };
                match e.name().as_ref() {
                    "testcase" => current = attr("name"),
                    "failure" => failures.push((current.clone(), attr("type"))),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    failures.sort();
    assert_eq!(
        failures,
        [
            ("ml/blocked".to_string(), "NoS3Route".to_string()),
            ("ml/blocked".to_string(), "SubnetNotFound".to_string())
        ]
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `-o github`: one workflow command per finding and bad document, in GitHub's format, each
/// pointing at a line of its own document in a multi-document file, with the path relative to
/// the workspace.
#[tokio::test]
async fn github_commands_point_at_the_lines_of_each_document() {
    let t = support::vpc::topology("10.163", true).await;
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\n{}{}{}",
        broken(&t, "blocked", ""),
        broken(&t, "warned", "  networkValidation: {mode: Warn}\n"),
        t.manifest("too-small", 0, ""),
    );
    let (dir, path) = temp_file("jobs.yaml", &text);
    let run = validate(
        &["-f", &path.display().to_string(), "-o", "github"],
        "",
        &[("GITHUB_WORKSPACE", &dir.display().to_string())],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);

    // The documents' line ranges in the file (1-based): they start at each `---`.
    let starts: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "---")
        .map(|(i, _)| i + 1)
        .collect();
    let range = |doc: usize| starts[doc]..starts.get(doc + 1).copied().unwrap_or(usize::MAX);
    let (blocked_doc, warned_doc, invalid_doc) = (range(0), range(1), range(2));
    let dead_line = |r: &std::ops::Range<usize>| {
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .find(|(n, l)| r.contains(n) && l.contains("subnet-0000000000000dead"))
            .map(|(n, _)| n)
            .expect("the subnets line")
    };

    let pattern = regex::Regex::new(r"^::(error|warning|notice) file=([^,:]+),line=(\d+),title=([A-Za-z0-9]+)::(.+)$")
        .expect("regex");
    let mut commands = Vec::new();
    for line in run.stdout.lines() {
        let c = pattern
            .captures(line)
            .unwrap_or_else(|| panic!("not a workflow command: {line}"));
        assert_eq!(&c[2], "jobs.yaml", "relative to GITHUB_WORKSPACE");
        let n: usize = c[3].parse().expect("line number");
        commands.push((c[1].to_string(), n, c[4].to_string(), c[5].to_string()));
    }
    let find = |level: &str, title: &str, job: &str| {
        commands
            .iter()
            .find(|(l, _, t, m)| l == level && t == title && m.starts_with(&format!("ml/{job}: ")))
            .unwrap_or_else(|| panic!("no {level} {title} for {job}: {commands:#?}"))
    };
    // The blocked job: errors on its own subnets line.
    let (_, line, _, message) = find("error", "SubnetNotFound", "blocked");
    assert_eq!(*line, dead_line(&blocked_doc), "{message}");
    assert!(message.contains(" — fix: "), "{message}");
    let (_, line, _, _) = find("error", "NoS3Route", "blocked");
    assert!(blocked_doc.contains(line), "{line} outside {blocked_doc:?}");
    // The same subnets in the Warn-mode job: warnings, on the Warn-mode job's lines.
    let (_, line, _, message) = find("warning", "SubnetNotFound", "warned");
    assert_eq!(*line, dead_line(&warned_doc));
    assert!(
        message.contains("not blocking (networkValidation.mode is Warn)"),
        "{message}"
    );
    assert!(
        !commands
            .iter()
            .any(|(l, _, _, m)| l == "error" && m.starts_with("ml/warned")),
        "{commands:#?}"
    );
    // Advice is a notice; the refused document an error at its field.
    assert!(commands.iter().any(|(l, ..)| l == "notice"), "{commands:#?}");
    let (_, line, _, message) = commands
        .iter()
        .find(|(l, _, t, _)| l == "error" && t == "InvalidManifest")
        .expect("the refused job");
    let count_line = text
        .lines()
        .enumerate()
        .find(|(i, l)| invalid_doc.contains(&(i + 1)) && l.contains("instanceCount: 0"))
        .map(|(i, _)| i + 1);
    assert_eq!(Some(*line), count_line, "{message}");
    assert!(
        message.contains("too-small: spec.processingResources.clusterConfig.instanceCount"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
