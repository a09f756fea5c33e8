//! What operators look at: the Grafana dashboard (`docs/grafana-dashboard.json`, shipped by the
//! chart as a ConfigMap for Grafana's sidecar) queries only metrics a running controller
//! exports, and the alerting rules (`docs/prometheus-rules.yaml`, shipped as a PrometheusRule)
//! pass the real promtool's `check rules` and the unit tests of `tests/alerts/`.

use smpc_test_support as support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::controller::*;
use support::vpc::{healthy_setup, job_manifest_in};
use support::{repo_root, stack, unique_suffix};

const T: Duration = Duration::from_secs(60);
const CHART: &str = "charts/sagemaker-processing-controller";
/// The chart's default image is a placeholder the schema refuses: every render sets one.
const IMAGE: &str = "image.repository=123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-processing-controller";

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("YAML: {e}\n{text}"))
}

/// `helm template` of one template of the chart with `sets`; its stdout.
fn render(template: &str, sets: &[&str]) -> String {
    let chart = repo_root().join(CHART).display().to_string();
    let mut args = vec![
        "template",
        "smpc",
        chart.as_str(),
        "--namespace",
        "smpc-system",
        "--kube-version",
        "1.33.0",
        "--set",
        IMAGE,
        "--show-only",
        template,
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = stack()
        .command(stack().var("HELM"))
        .args(&args)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "{sets:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = stack()
        .command(stack().var("PROMTOOL"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool (scripts/stack up builds it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// Metric names in PromQL

/// Words of PromQL that are not metric names where they stand without a parenthesis after them.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "atan2",
    "inf",
    "nan",
    "Inf",
    "NaN",
];

/// Blanks the parts of `expr` that hold no metric name: string literals, label matchers
/// (`{…}`), ranges and subqueries (`[…]`) and the label lists of grouping and matching clauses
/// (`by (…)`, `on (…)`, …).
fn strip_non_names(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if !escaped && d == c {
                        break;
                    }
                    escaped = !escaped && d == '\\' && c != '`';
                }
                out.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    // Label lists after by/without/on/ignoring/group_left/group_right.
    let clause = regex::Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)").expect("regex");
    clause.replace_all(&out, " ").into_owned()
}

/// The metric names an expression selects: every identifier that is neither a function or
/// aggregation (followed by `(`), nor a keyword, nor part of a number or duration.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let text = strip_non_names(expr);
    let token = regex::Regex::new(r"[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?").expect("regex");
    token
        .find_iter(&text)
        .map(|m| m.as_str())
        .filter(|t| !t.starts_with(|c: char| c.is_ascii_digit()) && !t.ends_with('('))
        .filter(|t| !KEYWORDS.contains(t))
        .map(str::to_string)
        .collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    for (expr, names) in [
        (
            r#"sum by (service, operation) (rate(smpc_aws_calls_total{outcome!="success",x=~"a|b"}[$__rate_interval]))"#,
            &["smpc_aws_calls_total"][..],
        ),
        (
            r#"histogram_quantile(0.99, sum by (le) (rate(smpc_reconcile_duration_seconds_bucket[5m])))"#,
            &["smpc_reconcile_duration_seconds_bucket"],
        ),
        (
            r#"max(smpc_jobs{status="Failed"}) - (max(smpc_jobs{status="Failed"} offset 1h) or vector(0)) >= 3"#,
            &["smpc_jobs"],
        ),
        (
            r#"max by (job) (smpc_tracked_jobs) > 0 unless on (job) sum(rate(smpc_aws_calls_total[10m])) > 0"#,
            &["smpc_tracked_jobs", "smpc_aws_calls_total"],
        ),
        ("absent(smpc_leader) and up == 1e3", &["smpc_leader", "up"]),
        ("sum(rate(smcp_typo_total[1m]))", &["smcp_typo_total"]),
    ] {
        let expected: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        assert_eq!(metric_names(expr), expected, "{expr}");
    }
}

/// Every PromQL expression of a Grafana dashboard: the panels' targets (rows nest panels) and
/// the query variables (`label_values(metric, label)` selects `metric`).
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    out.push(expr.clone());
                }
                for child in map.values() {
                    walk(child, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    let label_values = regex::Regex::new(r"^label_values\((.*),\s*[a-zA-Z_]+\)$").expect("regex");
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] == "query" {
            let query = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .unwrap_or_default();
            let caps = label_values.captures(query);
            let selector = caps.and_then(|c| c.get(1)).map(|m| m.as_str().to_string());
            out.push(selector.unwrap_or_else(|| panic!("variable {}: {query}", var["name"])));
        }
    }
    out
}

/// The expressions as Prometheus evaluates them: Grafana's interval variables replaced.
fn as_prometheus_sees_it(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

fn rule_expressions(rules: &Value) -> Vec<(String, String)> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().unwrap_or_default().to_string(),
                r["expr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The dashboard

#[test]
fn the_chart_ships_the_documented_dashboard_and_rules() {
    for (docs, chart) in [
        (
            "docs/grafana-dashboard.json",
            "charts/sagemaker-processing-controller/files/grafana-dashboard.json",
        ),
        (
            "docs/prometheus-rules.yaml",
            "charts/sagemaker-processing-controller/files/prometheus-rules.yaml",
        ),
    ] {
        assert!(read(docs) == read(chart), "{chart} differs from {docs}: copy it again");
    }
}

/// Off by default; on, a ConfigMap with the sidecar's label (configurable) holding exactly
/// docs/grafana-dashboard.json.
#[test]
fn the_chart_renders_the_dashboard_for_the_grafana_sidecar() {
    let chart = repo_root().join(CHART).display().to_string();
    let out = stack()
        .command(stack().var("HELM"))
        .args(["template", "smpc", &chart, "--kube-version", "1.33.0", "--set", IMAGE])
        .output()
        .expect("run helm");
    let defaults = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !defaults.contains("grafana_dashboard") && !defaults.contains("PrometheusRule"));

    // The apiserver takes it as it is (a server-side dry run).
    let ns = stack().namespace("obs-dashboard");
    let in_ns = format!("dashboard.namespace={ns}");
    let text = render("templates/grafana-dashboard.yaml", &["dashboard.enabled=true", &in_ns]);
    let out = stack().kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &text);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(ns);

    let rendered = yaml(&render("templates/grafana-dashboard.yaml", &["dashboard.enabled=true"]));
    assert_eq!(rendered["kind"], "ConfigMap");
    assert_eq!(rendered["metadata"]["namespace"], "smpc-system");
    assert_eq!(rendered["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = serde_json::from_str(
        rendered["data"]["sagemaker-processing-controller.json"]
            .as_str()
            .expect("the dashboard's key"),
    )
    .expect("the ConfigMap holds JSON");
    let documented: Value = serde_json::from_str(&read("docs/grafana-dashboard.json")).expect("dashboard JSON");
    assert_eq!(shipped, documented);

    let custom = yaml(&render(
        "templates/grafana-dashboard.yaml",
        &[
            "dashboard.enabled=true",
            "dashboard.label=dashboards",
            "dashboard.labelValue=smpc",
            "dashboard.namespace=monitoring",
            "dashboard.annotations.grafana_folder=SageMaker",
        ],
    ));
    assert_eq!(custom["metadata"]["labels"]["dashboards"], "smpc");
    assert!(custom["metadata"]["labels"].get("grafana_dashboard").is_none());
    assert_eq!(custom["metadata"]["namespace"], "monitoring");
    assert_eq!(custom["metadata"]["annotations"]["grafana_folder"], "SageMaker");
}

/// Every expression parses with Prometheus' own parser: promtool checks them as recording
/// rules.
#[test]
fn every_dashboard_expression_parses_with_promtool() {
    let dashboard: Value = serde_json::from_str(&read("docs/grafana-dashboard.json")).expect("dashboard JSON");
    let exprs = dashboard_expressions(&dashboard);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let rules = serde_json::json!({
        "groups": [{
            "name": "dashboard",
            "rules": exprs.iter().enumerate().map(|(i, e)| serde_json::json!({
                "record": format!("smpc:dashboard_expression_{i}"),
                "expr": as_prometheus_sees_it(e),
            })).collect::<Vec<_>>(),
        }]
    });
    let dir = std::env::temp_dir().join(format!("smpc-dashboard-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("dashboard.rules.json"), rules.to_string()).expect("write rules");
    let (ok, text) = promtool(&["check", "rules", "dashboard.rules.json"], &dir);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The stack's EC2 fault proxy, cleared again when dropped (even when the test fails).
struct Ec2Faults;

impl Ec2Faults {
    fn set(config: &str) -> Self {
        let url = format!("{}/_proxy/config", stack().var("EC2_FAULT_PROXY_URL"));
        let out = std::process::Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", &url, "--data", config])
            .output()
            .expect("curl");
        assert!(out.status.success(), "proxy: {}", String::from_utf8_lossy(&out.stderr));
        Ec2Faults
    }
}

impl Drop for Ec2Faults {
    fn drop(&mut self) {
        let url = format!("{}/_proxy/config", stack().var("EC2_FAULT_PROXY_URL"));
        let _ = std::process::Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", &url, "--data", "{}"])
            .output();
    }
}

/// The dashboard as the chart renders it for the Grafana sidecar.
fn rendered_dashboard() -> Value {
    let rendered = yaml(&render("templates/grafana-dashboard.yaml", &["dashboard.enabled=true"]));
    serde_json::from_str(
        rendered["data"]["sagemaker-processing-controller.json"]
            .as_str()
            .expect("the dashboard's key"),
    )
    .expect("dashboard JSON")
}

/// The names of the samples of a text exposition (`name{labels} value` or `name value`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The dashboard rendered by the chart, and the alerting rules, select only metrics that a
/// running controller exports. The scrape is made complete first: the controller drives a job
/// to Completed (jobs, findings, AWS calls and their latency, the tracker) after its EC2 reads
/// failed for a while (reconcile errors) — a family with no sample is not in the exposition.
#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let dashboard = rendered_dashboard();
    let mut queried: Vec<(String, String)> = dashboard_expressions(&dashboard)
        .into_iter()
        .map(|e| ("dashboard".to_string(), e))
        .collect();
    queried.extend(rule_expressions(&yaml(&read("docs/prometheus-rules.yaml"))));

    let c;
    let (t, ns) = healthy_setup("10.157", "obs-metrics").await;
    let faults = Ec2Faults::set(r#"{"errorRate":1.0}"#);
    let proxy = stack().var("EC2_FAULT_PROXY_URL").to_string();
    // A queue of this test's own, so that the events panels' metrics are exported too.
    let prefix = format!("obs-{}", unique_suffix());
    let queue = support::events::queue_and_rule(&prefix, &prefix);
    c = ControllerProcess::start(
        &ns,
        &["--events-queue-url", &queue],
        &[("AWS_ENDPOINT_URL_EC2", proxy.as_str())],
    );
    let url = c.ops_url();
    let spec = format!("  processingJobName: {prefix}-observed\n");
    apply(&job_manifest_in(&ns, "observed", 1, &t.private, &[&t.sg], &spec));
    wait_for("a reconcile error while EC2 fails", T, || {
        let (code, body) = http_get(&format!("{url}/metrics"));
        (code == 200 && body.contains("smpc_reconcile_errors_total{")).then_some(())
    });
    drop(faults);
    let job = wait_job(&ns, "observed", "InProgress once EC2 answers", T, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some("InProgress")
    });
    sim_set_status(
        &status_str(&job, "processingJobName").expect("name"),
        r#"{"status":"Completed"}"#,
    );
    wait_job(&ns, "observed", "Completed", T, |j| {
        status_str(j, "processingJobStatus").as_deref() == Some("Completed")
    });
    let exposed = wait_for("the gauges of the completed job", T, || {
        let (code, body) = http_get(&format!("{url}/metrics"));
        (code == 200
            && body.contains(r#"smpc_jobs{status="Completed"} 1"#)
            && body.contains(r#"smpc_events_total{outcome="applied"}"#))
        .then(|| sample_names(&body))
    });
    support::events::remove_queue_and_rule(&queue, &prefix);

    let missing: Vec<String> = queried
        .iter()
        .flat_map(|(source, expr)| {
            metric_names(expr)
                .into_iter()
                .filter(|name| !exposed.contains(name))
                .map(move |name| format!("{name} (in {source}: {expr})"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "metrics queried but not exported:\n{}\nexported: {exposed:?}",
        missing.join("\n")
    );
    // And the dashboard shows every family the controller exports.
    let documented: Vec<String> = read("docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_string())
        .filter(|name| name.starts_with("smpc_"))
        .collect();
    assert!(documented.len() >= 10, "{documented:?}");
    let on_dashboard: BTreeSet<String> = dashboard_expressions(&dashboard)
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    for family in &documented {
        assert!(
            on_dashboard.iter().any(|n| n.starts_with(family.as_str())),
            "no dashboard panel shows {family}"
        );
    }
    drop(ns);
    drop(c);
}

/// A controller that has done nothing — no resource in its namespace, no events queue — already
/// exports every metric the dashboard and the alerting rules query, on its first scrape once it
/// is ready: labelled families carry their known label values at 0 (Prometheus' instrumentation
/// guidance), so `rate()`, the panels and absence alerts work on a new install.
#[test]
fn the_first_scrape_of_an_idle_controller_has_every_queried_metric() {
    let dashboard = rendered_dashboard();
    let mut queried: BTreeSet<String> = dashboard_expressions(&dashboard)
        .iter()
        .flat_map(|e| metric_names(e))
        .collect();
    queried.extend(
        rule_expressions(&yaml(&read("docs/prometheus-rules.yaml")))
            .iter()
            .flat_map(|(_, e)| metric_names(e)),
    );
    assert!(queried.len() >= 15, "too few metrics queried: {queried:?}");
    let s = stack();
    s.install_crd();
    let ns = s.namespace("obs-idle");
    let c = ControllerProcess::start(&ns, &[], &[]);
    let url = c.ops_url();
    wait_for("the controller ready", T, || {
        (http_get(&format!("{url}/readyz")).0 == 200).then_some(())
    });
    let (code, body) = http_get(&format!("{url}/metrics"));
    assert_eq!(code, 200);
    let exposed = sample_names(&body);
    let missing: Vec<&String> = queried.iter().filter(|name| !exposed.contains(*name)).collect();
    assert!(
        missing.is_empty(),
        "an idle controller's first scrape lacks {missing:?}\n{body}"
    );
    for family in [
        "smpc_jobs{",
        "smpc_network_findings{",
        "smpc_reconcile_errors_total{",
        "smpc_reconcile_triggers_total{",
        "smpc_reconciles_total{",
    ] {
        assert!(body.contains(family), "{family} missing");
    }
    drop(ns);
    drop(c);
}

// ---------------------------------------------------------------------------------------------
// The alerts

fn alert_names() -> Vec<String> {
    rule_expressions(&yaml(&read("docs/prometheus-rules.yaml")))
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// `promtool check rules` on the rules file and `promtool test rules` on tests/alerts/, whose
/// cases show every alert both firing and not firing.
#[test]
fn promtool_checks_and_unit_tests_the_alerts() {
    let root = repo_root();
    let (ok, text) = promtool(&["check", "rules", "docs/prometheus-rules.yaml"], &root);
    assert!(ok, "{text}");
    let alerts = alert_names();
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{text}"
    );
    for required in [
        "SmpcNoLeader",
        "SmpcControllerAbsent",
        "SmpcJobsFailing",
        "SmpcAwsErrorsSustained",
        "SmpcAwsThrottled",
        "SmpcReconcileErrors",
        "SmpcStatusTrackingStalled",
        "SmpcOrphanedJobs",
    ] {
        assert!(alerts.iter().any(|a| a == required), "{required} missing: {alerts:?}");
    }

    let tests: Vec<PathBuf> = std::fs::read_dir(root.join("tests/alerts"))
        .expect("tests/alerts")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    assert!(!tests.is_empty());
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for file in &tests {
        let doc = yaml(&std::fs::read_to_string(file).expect("test file"));
        for case in doc["tests"].as_array().into_iter().flatten() {
            for check in case["alert_rule_test"].as_array().into_iter().flatten() {
                let name = check["alertname"].as_str().unwrap_or_default().to_string();
                if check["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                    firing.insert(name);
                } else {
                    silent.insert(name);
                }
            }
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "no unit test shows {alert} firing");
        assert!(silent.contains(alert), "no unit test shows {alert} not firing");
    }
    let mut args = vec!["test".to_string(), "rules".to_string()];
    args.extend(tests.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, text) = promtool(&args, &root);
    assert!(ok, "{text}");
    assert!(!text.contains("FAILED"), "{text}");
}

/// The PrometheusRule the chart renders holds the same rules (less the disabled ones, with the
/// extra labels), and promtool accepts its groups; `prometheusRule.disabled` names only alerts
/// that exist.
#[test]
fn the_chart_renders_the_rules_as_a_prometheus_rule() {
    let rendered = yaml(&render(
        "templates/prometheusrule.yaml",
        &[
            "prometheusRule.enabled=true",
            "prometheusRule.labels.release=kube-prometheus-stack",
            "prometheusRule.ruleLabels.team=ml-platform",
            "prometheusRule.disabled={SmpcJobsFailing}",
        ],
    ));
    assert_eq!(rendered["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rendered["kind"], "PrometheusRule");
    assert_eq!(rendered["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let file = yaml(&read("docs/prometheus-rules.yaml"));
    let shipped = rule_expressions(&rendered["spec"]);
    let expected: Vec<(String, String)> = rule_expressions(&file)
        .into_iter()
        .filter(|(name, _)| name != "SmpcJobsFailing")
        .collect();
    assert_eq!(shipped, expected);
    for rule in rendered["spec"]["groups"][0]["rules"].as_array().expect("rules") {
        assert_eq!(rule["labels"]["team"], "ml-platform", "{rule}");
        assert!(rule["labels"]["severity"].is_string(), "{rule}");
        assert!(rule["annotations"]["description"].is_string(), "{rule}");
    }

    let dir = std::env::temp_dir().join(format!("smpc-prometheusrule-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rendered.rules.json"), rendered["spec"].to_string()).expect("write");
    let (ok, text) = promtool(&["check", "rules", "rendered.rules.json"], &dir);
    assert!(ok, "{text}");
    let _ = std::fs::remove_dir_all(dir);

    let schema: Value =
        serde_json::from_str(&read("charts/sagemaker-processing-controller/values.schema.json")).expect("schema");
    let allowed: BTreeSet<String> = schema["properties"]["prometheusRule"]["properties"]["disabled"]["items"]["enum"]
        .as_array()
        .expect("enum of alert names")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(allowed, alert_names().into_iter().collect::<BTreeSet<_>>());
}
