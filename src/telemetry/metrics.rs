//! Prometheus metrics. Labels are of low cardinality: never an object name.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::aws::CallObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// `watch` (the resource changed), `tracker` (its SageMaker job changed), `namespace` (its
    /// namespace's tenant guard annotations changed), `requeue` (a timer or a backoff), `ignored` (a watch event that changed nothing the controller acts on,
    /// e.g. its own status write).
    pub trigger: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsLabels {
    pub service: &'static str,
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub code: String,
    pub severity: String,
}

/// The label values each labelled family exports from start-up, at 0, as Prometheus'
/// instrumentation guidance asks: dashboards, `rate()` and alerts (an alert on a metric's absence
/// included) work on a new install, before anything has happened.
pub mod known {
    /// `smpc_reconciles_total{result}`.
    pub const RESULTS: [&str; 3] = ["ok", "error", "waiting"];
    /// `smpc_reconcile_triggers_total{trigger}` (`runtime::run_controller`).
    pub const TRIGGERS: [&str; 6] = ["watch_event", "watch", "tracker", "namespace", "carm", "requeue"];
    /// `smpc_events_total{outcome}` (`runtime::events`).
    pub const EVENT_OUTCOMES: [&str; 7] = [
        "applied",
        "duplicate",
        "unknown_job",
        "incomplete",
        "other_event",
        "malformed",
        "pending",
    ];
    /// `smpc_aws_calls_total{service="sagemaker",operation,outcome}`: the SageMaker operations the
    /// controller makes (other services' calls appear as they are made).
    pub const SAGEMAKER_OPERATIONS: [&str; 6] = [
        "CreateProcessingJob",
        "DescribeProcessingJob",
        "StopProcessingJob",
        "ListProcessingJobs",
        "AddTags",
        "ListTags",
    ];
    /// The outcomes of an AWS call (`aws::CallObserver`).
    pub const AWS_OUTCOMES: [&str; 3] = ["success", "service_error", "transport_error"];

    /// `smpc_jobs{status}`: not created yet (`None`) and every SageMaker status.
    pub fn job_statuses() -> impl Iterator<Item = &'static str> {
        std::iter::once("None").chain(crate::job::JobStatus::ALL.iter().map(|s| s.as_str()))
    }

    /// `smpc_network_findings{code,severity}`: every finding code with its severity.
    pub fn findings() -> impl Iterator<Item = (&'static str, String)> {
        crate::network::Code::ALL
            .iter()
            .map(|c| (c.as_str(), c.severity().to_string()))
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric of the controller.
pub struct Metrics {
    pub reconciles: Family<ResultLabels, Counter>,
    pub triggers: Family<TriggerLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub errors: Family<ReasonLabels, Counter>,
    pub aws_calls: Family<AwsLabels, Counter>,
    pub aws_call_duration: Family<AwsLabels, Histogram>,
    pub jobs: Family<StatusLabels, Gauge>,
    pub findings: Family<FindingLabels, Gauge>,
    pub status_patches: Counter,
    pub leader: Gauge<i64, AtomicI64>,
    pub active_jobs: Gauge<i64, AtomicI64>,
    pub orphaned_jobs: Gauge<i64, AtomicI64>,
    /// SageMaker state-change events taken from the queue, by what became of them.
    pub events: Family<OutcomeLabels, Counter>,
    pub event_receive_errors: Counter,
    /// Events owed to the controller (a creation's, a change the List showed) that did not come.
    pub events_missed: Counter,
    /// 1 while events flow and the List poll runs at its backstop interval.
    pub events_flowing: Gauge<i64, AtomicI64>,
    /// Kubernetes Events dropped because the publisher's queue was full.
    pub kube_events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let metrics = Self {
            reconciles: Family::default(),
            triggers: Family::default(),
            reconcile_duration: latency_histogram(),
            errors: Family::default(),
            aws_calls: Family::default(),
            aws_call_duration: Family::new_with_constructor(latency_histogram),
            jobs: Family::default(),
            findings: Family::default(),
            status_patches: Counter::default(),
            leader: Gauge::default(),
            active_jobs: Gauge::default(),
            orphaned_jobs: Gauge::default(),
            events: Family::default(),
            event_receive_errors: Counter::default(),
            events_missed: Counter::default(),
            events_flowing: Gauge::default(),
            kube_events_dropped: Counter::default(),
        };
        metrics.zero_known_labels();
        metrics
    }
}

impl Metrics {
    /// Creates every known label set of every labelled family at 0 ([`known`]).
    fn zero_known_labels(&self) {
        for result in known::RESULTS {
            drop(self.reconciles.get_or_create(&ResultLabels { result }));
        }
        for trigger in known::TRIGGERS {
            drop(self.triggers.get_or_create(&TriggerLabels { trigger }));
        }
        for reason in crate::reconcile::Error::REASONS {
            drop(self.errors.get_or_create(&ReasonLabels { reason }));
        }
        for outcome in known::EVENT_OUTCOMES {
            drop(self.events.get_or_create(&OutcomeLabels { outcome }));
        }
        for operation in known::SAGEMAKER_OPERATIONS {
            for outcome in known::AWS_OUTCOMES {
                let labels = AwsLabels {
                    service: "sagemaker",
                    operation,
                    outcome,
                };
                drop(self.aws_calls.get_or_create(&labels));
                drop(self.aws_call_duration.get_or_create(&labels));
            }
        }
        self.set_jobs(std::iter::empty());
        self.set_findings(std::iter::empty());
    }

    /// Sets `smpc_jobs` to these counts by status: every known status is exported, at 0 when
    /// it has no resource, and a status this build does not know appears while it is counted.
    pub fn set_jobs(&self, counts: impl IntoIterator<Item = (String, i64)>) {
        let mut all: std::collections::BTreeMap<String, i64> =
            known::job_statuses().map(|s| (s.to_string(), 0)).collect();
        all.extend(counts);
        self.jobs.clear();
        for (status, n) in all {
            self.jobs.get_or_create(&StatusLabels { status }).set(n);
        }
    }

    /// Sets `smpc_network_findings` to these counts by (code, severity), as [`Self::set_jobs`].
    pub fn set_findings(&self, counts: impl IntoIterator<Item = ((String, String), i64)>) {
        let mut all: std::collections::BTreeMap<(String, String), i64> = known::findings()
            .map(|(code, severity)| ((code.to_string(), severity), 0))
            .collect();
        all.extend(counts);
        self.findings.clear();
        for ((code, severity), n) in all {
            self.findings.get_or_create(&FindingLabels { code, severity }).set(n);
        }
    }

    /// Registers everything under the `smpc_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("smpc");
        r.register(
            "reconciles",
            "Reconciles by result (ok, error, waiting: a stop in progress)",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_triggers",
            "What brought resources to the reconciler: watch, tracker, namespace, carm (a cross-account ConfigMap), requeue; ignored counts watch events that changed nothing the controller acts on",
            self.triggers.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            self.reconcile_duration.clone(),
        );
        r.register("reconcile_errors", "Failed reconciles by reason", self.errors.clone());
        r.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome",
            self.aws_calls.clone(),
        );
        r.register(
            "aws_call_duration_seconds",
            "Latency of AWS API calls",
            self.aws_call_duration.clone(),
        );
        r.register(
            "jobs",
            "ProcessingJob resources by SageMaker status (None: not created)",
            self.jobs.clone(),
        );
        r.register(
            "network_findings",
            "Network findings of current resources by code and severity",
            self.findings.clone(),
        );
        r.register(
            "status_patches",
            "Status writes to the Kubernetes API",
            self.status_patches.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader lease",
            self.leader.clone(),
        );
        r.register(
            "tracked_jobs",
            "Active SageMaker jobs being polled",
            self.active_jobs.clone(),
        );
        r.register(
            "orphaned_jobs",
            "Active SageMaker jobs of this controller whose resource no longer exists, found by the last orphan sweep",
            self.orphaned_jobs.clone(),
        );
        r.register(
            "events",
            "SageMaker state-change events taken from the queue, by outcome: applied, duplicate, unknown_job, incomplete, other_event, malformed, pending",
            self.events.clone(),
        );
        r.register(
            "event_receive_errors",
            "Failed receives from the events queue (the List poll returns to its normal interval)",
            self.event_receive_errors.clone(),
        );
        r.register(
            "events_missed",
            "SageMaker events owed to the controller (a job's creation, a change the List showed) that did not arrive within twice the poll interval: the flow stopped without an error, and the List poll is back at its normal interval",
            self.events_missed.clone(),
        );
        r.register(
            "events_flowing",
            "1 while events flow and the List poll runs at its backstop interval",
            self.events_flowing.clone(),
        );
        r.register(
            "kubernetes_events_dropped",
            "Kubernetes Events dropped, not written, because the apiserver could not take them as fast as they came (the status still says everything)",
            self.kube_events_dropped.clone(),
        );
    }
}

/// The AWS call counter reports every call here.
impl CallObserver for Metrics {
    fn observe(&self, service: &'static str, operation: &'static str, outcome: &'static str, latency: Duration) {
        let labels = AwsLabels {
            service,
            operation,
            outcome,
        };
        self.aws_calls.get_or_create(&labels).inc();
        self.aws_call_duration
            .get_or_create(&labels)
            .observe(latency.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::aws::CallCounter;

    #[test]
    fn aws_calls_counted_by_the_call_counter_reach_the_metrics() {
        let metrics = Arc::new(Metrics::default());
        let calls = CallCounter::with_observer(metrics.clone());
        calls.record("ec2", "DescribeSubnets", "success", Duration::from_millis(20));
        calls.record("ec2", "DescribeSubnets", "success", Duration::from_millis(30));
        let labels = AwsLabels {
            service: "ec2",
            operation: "DescribeSubnets",
            outcome: "success",
        };
        assert_eq!(metrics.aws_calls.get_or_create(&labels).get(), 2);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
        assert!(text.contains(
            r#"smpc_aws_call_duration_seconds_count{service="ec2",operation="DescribeSubnets",outcome="success"} 2"#
        ));
    }

    /// The names the registry exposes (counters with their `_total` suffix), from the text
    /// exposition's `# TYPE` lines.
    fn exposed_names() -> std::collections::BTreeSet<String> {
        let metrics = Metrics::default();
        // A family without a label set prints nothing: give each one.
        drop(metrics.reconciles.get_or_create(&ResultLabels { result: "ok" }));
        drop(metrics.triggers.get_or_create(&TriggerLabels { trigger: "watch" }));
        drop(metrics.errors.get_or_create(&ReasonLabels { reason: "x" }));
        drop(metrics.events.get_or_create(&OutcomeLabels { outcome: "applied" }));
        metrics.observe("ec2", "DescribeSubnets", "success", Duration::from_millis(1));
        drop(metrics.jobs.get_or_create(&StatusLabels { status: "None".into() }));
        let finding = FindingLabels {
            code: "NoS3Route".into(),
            severity: "Error".into(),
        };
        drop(metrics.findings.get_or_create(&finding));
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            })
            .collect()
    }

    /// A controller that has done nothing exports every family with its known label values at
    /// 0 (Prometheus' guidance): the dashboard's and the alerts' queries find them on a new
    /// install.
    #[test]
    fn a_fresh_registry_exports_every_known_label_value_at_zero() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
        for wanted in [
            r#"smpc_reconciles_total{result="error"} 0"#.to_string(),
            r#"smpc_reconcile_triggers_total{trigger="tracker"} 0"#.to_string(),
            r#"smpc_reconcile_errors_total{reason="AwsThrottled"} 0"#.to_string(),
            r#"smpc_jobs{status="None"} 0"#.to_string(),
            r#"smpc_jobs{status="Failed"} 0"#.to_string(),
            r#"smpc_network_findings{code="NoS3Route",severity="Error"} 0"#.to_string(),
            r#"smpc_events_total{outcome="applied"} 0"#.to_string(),
            r#"smpc_aws_calls_total{service="sagemaker",operation="CreateProcessingJob",outcome="success"} 0"#
                .to_string(),
        ] {
            assert!(text.contains(&wanted), "{wanted} missing from:\n{text}");
        }
        for code in crate::network::Code::ALL {
            assert!(text.contains(&format!(r#"code="{}""#, code.as_str())), "{code:?}");
        }
        // The gauges keep their zeros when the counts are set.
        metrics.set_jobs([("Completed".to_string(), 2)]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
        assert!(text.contains(r#"smpc_jobs{status="Completed"} 2"#), "{text}");
        assert!(text.contains(r#"smpc_jobs{status="InProgress"} 0"#), "{text}");
    }

    #[test]
    fn every_metric_is_documented() {
        // The package's directory at run time: a shared build cache may hold this test compiled
        // in another clone.
        let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let doc =
            std::fs::read_to_string(std::path::Path::new(&root).join("docs/metrics.md")).expect("docs/metrics.md");
        let documented: std::collections::BTreeSet<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `smpc_"))
            .filter_map(|l| l.split_once('`'))
            .map(|(rest, _)| format!("smpc_{rest}"))
            .collect();
        let exposed = exposed_names();
        assert!(exposed.len() >= 10, "the registry exposes too few metrics: {exposed:?}");
        assert_eq!(documented, exposed, "docs/metrics.md's table and the registry differ");
    }
}
