//! `run`: the controller.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::{AwsClients, CallCounter};
use crate::reconcile::Settings;
use crate::runtime::events::EventsSettings;
use crate::runtime::lease::LeaseSettings;
use crate::runtime::server::{self, Health};
use crate::runtime::{self, Election};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{self, LogFormat};

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 500ms, 30s, 5m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration {s:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Arguments of `run`. Every flag has an environment variable.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Reconciles running at once (bounds AWS load).
    #[arg(long, env = "SMPC_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// How often active jobs are polled (one ListProcessingJobs per region).
    #[arg(long, env = "SMPC_POLL_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// URL of the SQS queue an EventBridge rule fills with SageMaker's "Processing Job State
    /// Change" events (docs/events.md): statuses follow the events within about a second, and
    /// the List poll slows to --backstop-poll-interval while they flow. Unset: polling only.
    #[arg(long, env = "SMPC_EVENTS_QUEUE_URL")]
    pub events_queue_url: Option<String>,
    /// How often active jobs are polled while events flow (a backstop against lost events).
    #[arg(long, env = "SMPC_BACKSTOP_POLL_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub backstop_poll_interval: Duration,
    /// Region for jobs without spec.region or the services.k8s.aws/region annotation.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// How long EC2 network reads are shared between jobs of one VPC.
    #[arg(long, env = "SMPC_NETWORK_CACHE_TTL", default_value = "60s", value_parser = parse_duration)]
    pub network_cache_ttl: Duration,
    /// How often a job refused for its network is validated again.
    #[arg(long, env = "SMPC_REVALIDATE_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub revalidate_interval: Duration,
    /// How often an active job is described even when ListProcessingJobs saw no change (a
    /// backstop against clock skew).
    #[arg(long, env = "SMPC_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// How often SageMaker is searched for active jobs this controller created whose resource no
    /// longer exists (orphans: reported once each, by an Event on their namespace, a log line
    /// and the gauge smpc_orphaned_jobs).
    #[arg(long, env = "SMPC_ORPHAN_SWEEP_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub orphan_sweep_interval: Duration,
    /// Stop the orphans found (StopProcessingJob), not only report them.
    #[arg(long, env = "SMPC_STOP_ORPHANS", default_value_t = false)]
    pub stop_orphans: bool,
    /// At most this many active jobs (created and not ended) per region; more wait `Queued`
    /// (reason ActiveJobLimit) in creation order. Unset: no cap (SageMaker's quota still applies).
    #[arg(long, env = "SMPC_MAX_ACTIVE_JOBS_PER_REGION", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_active_jobs_per_region: Option<u32>,
    /// How often a job is retried while AWS refuses the credentials or configuration.
    #[arg(long, env = "SMPC_CREDENTIALS_RETRY_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub credentials_retry_interval: Duration,
    /// Log format.
    #[arg(long, env = "SMPC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log level (RUST_LOG overrides it).
    #[arg(long, env = "SMPC_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Name of this replica in Events and leases (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub instance: Option<String>,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "SMPC_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    pub metrics_address: std::net::SocketAddr,
    /// Elect a leader with a Lease so that only one of several replicas acts.
    #[arg(long, env = "SMPC_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "SMPC_LEADER_ELECTION_LEASE",
        default_value = "sagemaker-processing-controller"
    )]
    pub leader_election_lease: String,
    /// After SIGTERM, how long /readyz answers 503 before the controller stops, so that
    /// monitoring and endpoints see the replica leave first.
    #[arg(long, env = "SMPC_SHUTDOWN_DELAY", default_value = "2s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// How long the lease is valid without renewal.
    #[arg(long, env = "SMPC_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// Namespace of ACK's cross-account ConfigMaps `ack-role-account-map` and
    /// `ack-role-team-map` (default: the pod's namespace, else `default`).
    #[arg(long, env = "SMPC_CARM_NAMESPACE")]
    pub carm_namespace: Option<String>,
}

/// Runs the controller; returns the process exit code.
pub async fn run(args: RunArgs) -> u8 {
    telemetry::init_logging(args.log_format, &args.log_level);
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot configure the Kubernetes client");
            return 1;
        }
    };
    let metrics = Arc::new(Metrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let calls = Arc::new(CallCounter::with_observer(metrics.clone()));
    let aws = Arc::new(AwsClients::load(args.network_cache_ttl, calls).await);
    let default_region = args.region.clone().or_else(|| aws.default_region());
    if default_region.is_none() {
        tracing::warn!("no default AWS region: jobs must set spec.region or the services.k8s.aws/region annotation");
    }
    let settings = Settings {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        poll_interval: args.poll_interval,
        default_region,
        revalidate_interval: args.revalidate_interval,
        resync_interval: args.resync_interval,
        credentials_retry_interval: args.credentials_retry_interval,
        instance: args.instance.clone().or_else(|| std::env::var("HOSTNAME").ok()),
        orphan_sweep_interval: args.orphan_sweep_interval,
        stop_orphans: args.stop_orphans,
        max_active_jobs_per_region: args.max_active_jobs_per_region,
        carm_namespace: args
            .carm_namespace
            .clone()
            .or_else(|| args.leader_election_namespace.clone())
            .unwrap_or_else(|| "default".into()),
    };
    tracing::info!(?settings, "starting controller");
    let election = args.leader_election.then(|| Election {
        lease: LeaseSettings {
            name: args.leader_election_lease.clone(),
            namespace: args
                .leader_election_namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            identity: settings
                .instance
                .clone()
                .unwrap_or_else(|| format!("controller-{}", std::process::id())),
            duration: args.lease_duration,
            renew_every: args.lease_duration / 3,
        },
    });
    let health = Arc::new(Health::default());
    let shutdown = CancellationToken::new();
    runtime::shutdown_on_signal(health.clone(), args.shutdown_delay, shutdown.clone());
    let listener = match tokio::net::TcpListener::bind(args.metrics_address).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, address = %args.metrics_address, "cannot listen for /livez, /readyz and /metrics");
            return 1;
        }
    };
    let server_stop = CancellationToken::new();
    let server = tokio::spawn(server::serve(listener, registry, health.clone(), server_stop.clone()));
    let events = args
        .events_queue_url
        .clone()
        .filter(|url| !url.is_empty())
        .map(|queue_url| EventsSettings {
            queue_url,
            backstop_interval: args.backstop_poll_interval,
        });
    runtime::run(
        client,
        aws,
        settings,
        metrics,
        health.clone(),
        election,
        events,
        shutdown,
    )
    .await;
    health.set_shutting_down();
    server_stop.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::error!(error = %e, address = %args.metrics_address, "the metrics and health server failed");
        return 1;
    }
    tracing::info!("stopped");
    0
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }
}
