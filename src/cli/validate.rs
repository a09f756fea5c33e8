//! `validate -f FILE...`: the network validation and the execution-role pre-flight for
//! manifests, without a cluster (the runner's credentials read EC2 and IAM).
//!
//! Exit codes: 0 no Error finding, 1 Error findings, 2 bad input, 3 AWS could not be read.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::api::{Finding, ACK_REGION_ANNOTATION};
use crate::aws::ec2::Ec2Resolver;
use crate::aws::iam::IamReader;
use crate::aws::CallCounter;
use crate::manifest::{self, LoadedJob};
use crate::network;
use crate::role;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Manifest file(s) with ProcessingJob documents; `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Region for jobs that name none (spec.region, then the services.k8s.aws/region annotation
    /// come first).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Print the number of EC2 and IAM calls made to standard error, as JSON.
    #[arg(long)]
    pub call_stats: bool,
}

#[derive(Serialize)]
struct Report {
    jobs: Vec<JobReport>,
}

#[derive(Serialize)]
struct JobReport {
    namespace: String,
    name: String,
    #[serde(rename = "vpcID")]
    vpc_id: Option<String>,
    findings: Vec<Finding>,
}

fn read_source(name: &str) -> Result<String, manifest::ManifestError> {
    let result = if name == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    } else {
        std::fs::read_to_string(name)
    };
    result.map_err(|error| manifest::ManifestError::Read {
        source_name: name.to_string(),
        error,
    })
}

/// Runs `validate`; returns the process exit code.
pub async fn run(args: ValidateArgs) -> u8 {
    let mut jobs: Vec<LoadedJob> = Vec::new();
    for file in &args.files {
        match read_source(file)
            .and_then(|text| manifest::parse_documents(if file == "-" { "<stdin>" } else { file }, &text))
        {
            Ok(found) => jobs.extend(found),
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    }
    if jobs.is_empty() {
        eprintln!("error: no ProcessingJob found in {}", args.files.join(", "));
        return 2;
    }
    for j in &jobs {
        if j.job.spec.vpc_config().is_some() && j.job.region(args.region.as_deref()).is_none() {
            eprintln!(
                "error: {}: document {}: no region for job {}: set spec.region, the {ACK_REGION_ANNOTATION} annotation, --region or AWS_REGION",
                j.source_name,
                j.document,
                j.job.metadata.name.as_deref().unwrap_or_default()
            );
            return 2;
        }
    }

    let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let calls = Arc::new(CallCounter::default());
    let mut resolvers: BTreeMap<String, Ec2Resolver> = BTreeMap::new();
    let mut iam_readers: BTreeMap<&'static str, IamReader> = BTreeMap::new();
    let mut reports = Vec::with_capacity(jobs.len());
    for j in &jobs {
        let spec = &j.job.spec;
        let mut report = JobReport {
            namespace: j.job.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            name: j.job.metadata.name.clone().unwrap_or_default(),
            vpc_id: None,
            findings: Vec::new(),
        };
        if let Some(region) = j
            .job
            .region(args.region.as_deref())
            .filter(|_| spec.vpc_config().is_some())
        {
            let resolver = resolvers.entry(region.clone()).or_insert_with(|| {
                let conf = aws_sdk_ec2::config::Builder::from(&sdk_config)
                    .region(aws_config::Region::new(region.clone()))
                    .build();
                Ec2Resolver::new(
                    aws_sdk_ec2::Client::from_conf(conf),
                    region.clone(),
                    Duration::from_secs(60),
                    calls.clone(),
                )
            });
            match resolver.snapshot(spec).await {
                Ok(snapshot) => {
                    report.vpc_id = snapshot.vpc.as_ref().map(|v| v.vpc_id.clone());
                    report.findings = network::validate(spec, &snapshot);
                    let home = crate::aws::iam_home_region(&region);
                    let iam = iam_readers.entry(home).or_insert_with(|| {
                        let conf = aws_sdk_iam::config::Builder::from(&sdk_config)
                            .region(aws_config::Region::new(home))
                            .build();
                        IamReader::new(
                            aws_sdk_iam::Client::from_conf(conf),
                            Duration::from_secs(60),
                            calls.clone(),
                        )
                    });
                    let facts = iam.role(&spec.role_arn).await;
                    let job = role::JobUnderCheck {
                        spec,
                        region: &region,
                        name: spec.processing_job_name.as_deref(),
                    };
                    report.findings.extend(role::check(job, &facts));
                }
                Err(e) => {
                    eprintln!(
                        "error: {}: cannot read the network of job {}/{}: {e}{}",
                        j.source_name,
                        report.namespace,
                        report.name,
                        unreachable_hint(&e, &region)
                    );
                    return 3;
                }
            }
        }
        reports.push(report);
    }

    let any_error = reports.iter().any(|r| network::has_errors(&r.findings));
    match args.output {
        Format::Json => match serde_json::to_string_pretty(&Report { jobs: reports }) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot render JSON: {e}");
                return 3;
            }
        },
        Format::Text => print!("{}", render_text(&reports)),
    }
    if args.call_stats {
        let stats = |service: &str| serde_json::json!({"total": calls.total(service), "byOperation": calls.by_operation(service)});
        eprintln!("{}", serde_json::json!({"ec2": stats("ec2"), "iam": stats("iam")}));
    }
    u8::from(any_error)
}

fn render_text(reports: &[JobReport]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for r in reports {
        let vpc = r.vpc_id.as_deref().unwrap_or("no VPC");
        let errors = r
            .findings
            .iter()
            .filter(|f| f.severity == crate::api::Severity::Error)
            .count();
        let verdict = if errors > 0 {
            format!("{errors} error(s)")
        } else {
            "ok".to_string()
        };
        let _ = writeln!(out, "{}/{} ({vpc}): {verdict}", r.namespace, r.name);
        if r.findings.is_empty() {
            let _ = writeln!(out, "  no findings");
        }
        let width = r.findings.iter().map(|f| f.code.len()).max().unwrap_or(0);
        for f in &r.findings {
            let _ = writeln!(
                out,
                "  {:<7} {:<width$}  {}",
                f.severity.to_string(),
                f.code,
                f.resource
            );
            let _ = writeln!(out, "          {}", f.message);
            let _ = writeln!(out, "          fix: {}", f.remediation);
        }
        out.push('\n');
    }
    out
}

/// For an error that is not AWS's answer (no error code): which region and endpoint were tried,
/// since a mistyped region or endpoint is the usual cause.
fn unreachable_hint(e: &crate::aws::AwsError, region: &str) -> String {
    if e.code.is_some() {
        return String::new();
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL_EC2")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| format!("https://ec2.{region}.amazonaws.com"));
    format!(
        "\n  the EC2 endpoint {endpoint} for region {region} could not be reached or gave no AWS answer: check the region name (spec.region, the services.k8s.aws/region annotation, --region or AWS_REGION) and the endpoint"
    )
}
