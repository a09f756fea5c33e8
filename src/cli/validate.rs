//! `validate -f FILE|DIR|-...`: the network validation for manifests, without a cluster.
//!
//! A GitOps stream (`kustomize build`, a directory of manifests) mixes kinds: every
//! ProcessingJob (ours and ACK's) is validated, other objects are skipped and listed on standard
//! error. Exit codes: 0 no Error finding (also when there is no ProcessingJob at all), 1 Error
//! findings, 2 bad input, 3 AWS could not be read.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::api::{Finding, ACK_REGION_ANNOTATION};
use crate::aws::ec2::Ec2Resolver;
use crate::aws::CallCounter;
use crate::manifest::{self, Manifests};
use crate::network;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Arguments of `validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Manifest file(s) or directories (their `.yaml`, `.yml` and `.json` files, not
    /// recursively, as `kubectl apply -f`); `-` reads standard input, e.g. `kustomize build |`.
    /// Objects other than ProcessingJobs are skipped.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Region for jobs that name none (spec.region, then the services.k8s.aws/region annotation
    /// come first).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Print the number of EC2 calls made to standard error, as JSON.
    #[arg(long)]
    pub call_stats: bool,
}

#[derive(Serialize)]
struct Report {
    jobs: Vec<JobReport>,
    /// Objects of other kinds, skipped: `<source>: document <n>: <kind> <name> (<apiVersion>)`.
    skipped: Vec<String>,
}

#[derive(Serialize)]
struct JobReport {
    namespace: String,
    name: String,
    #[serde(rename = "vpcID")]
    vpc_id: Option<String>,
    findings: Vec<Finding>,
}

fn read_error(name: &std::path::Path) -> impl FnOnce(std::io::Error) -> manifest::ManifestError + '_ {
    move |error| manifest::ManifestError::Read {
        source_name: name.display().to_string(),
        error,
    }
}

/// The manifest files named by one `-f`: the file, or a directory's manifest files in name
/// order.
fn manifest_files(name: &str) -> Result<Vec<std::path::PathBuf>, manifest::ManifestError> {
    let path = std::path::Path::new(name);
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(read_error(path))? {
        let file = entry.map_err(read_error(path))?.path();
        let manifest = file
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
        if manifest && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Everything the `-f` arguments name.
fn read_all(names: &[String]) -> Result<Manifests, manifest::ManifestError> {
    let mut all = Manifests::default();
    for name in names {
        if name == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(read_error(std::path::Path::new("<stdin>")))?;
            all.extend(manifest::parse_documents("<stdin>", &text)?);
            continue;
        }
        for file in manifest_files(name)? {
            let text = std::fs::read_to_string(&file).map_err(read_error(&file))?;
            all.extend(manifest::parse_documents(&file.display().to_string(), &text)?);
        }
    }
    Ok(all)
}

/// Runs `validate`; returns the process exit code.
pub async fn run(args: ValidateArgs) -> u8 {
    let Manifests { jobs, skipped } = match read_all(&args.files) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    for s in &skipped {
        eprintln!("skipped: {s}: not a ProcessingJob");
    }
    if jobs.is_empty() {
        // A GitOps stream without jobs is nothing to refuse: the pipeline goes on.
        eprintln!(
            "no ProcessingJob found in {} ({} other object(s) skipped): nothing to validate",
            args.files
                .iter()
                .map(|f| if f == "-" { "<stdin>" } else { f.as_str() })
                .collect::<Vec<_>>()
                .join(", "),
            skipped.len()
        );
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

    // Loaded on first need: a stream of jobs without a VPC needs no AWS configuration.
    let sdk_config = tokio::sync::OnceCell::new();
    let calls = Arc::new(CallCounter::default());
    let mut resolvers: BTreeMap<String, Ec2Resolver> = BTreeMap::new();
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
            let sdk_config = sdk_config
                .get_or_init(|| aws_config::defaults(aws_config::BehaviorVersion::latest()).load())
                .await;
            let resolver = resolvers.entry(region.clone()).or_insert_with(|| {
                let conf = aws_sdk_ec2::config::Builder::from(sdk_config)
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
        Format::Json => match serde_json::to_string_pretty(&Report {
            jobs: reports,
            skipped: skipped.iter().map(ToString::to_string).collect(),
        }) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot render JSON: {e}");
                return 3;
            }
        },
        Format::Text => print!("{}", render_text(&reports)),
    }
    if args.call_stats {
        let by_op = calls.by_operation("ec2");
        eprintln!(
            "{}",
            serde_json::json!({"ec2": {"total": calls.total("ec2"), "byOperation": by_op}})
        );
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
