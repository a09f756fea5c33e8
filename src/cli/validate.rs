//! `validate -f FILE|DIR|-...`: the network validation and the execution-role pre-flight for
//! manifests, without a cluster (the runner's credentials read EC2 and IAM).
//!
//! A GitOps stream (`kustomize build`, a directory of manifests) mixes kinds: every
//! ProcessingJob (ours and ACK's) is validated, other objects are skipped and listed on standard
//! error. A bad document is reported and the others are still checked. Each job is judged as the
//! controller would judge it, by its `networkValidation.mode`. The exit code is the worst outcome
//! ([`Report::exit_code`]): 3 a network could not be read, 2 bad input, 1 an Error finding
//! blocks a job, 0 otherwise. Output: text, JSON, JUnit XML or GitHub workflow commands.

mod github;
mod junit;
mod outcome;
mod text;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{ValidationMode, ACK_REGION_ANNOTATION};
use crate::aws::ec2::Ec2Resolver;
use crate::aws::iam::IamReader;
use crate::aws::CallCounter;
use crate::manifest::{self, LoadedJob, Manifests};
use crate::network::{self, NetworkSnapshot};
use crate::role;

pub use outcome::{InputError, JobReport, LocatedFinding, Report, Verdict};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A readable report per job.
    Text,
    /// The report as one JSON document (jobs, errors, skipped).
    Json,
    /// JUnit XML: a test case per ProcessingJob, a failure per blocking Error finding (GitLab,
    /// Jenkins, Azure DevOps and other CI systems show them natively).
    Junit,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`), shown as annotations on
    /// the manifest's lines.
    Github,
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
    /// Print the number of EC2 and IAM calls made to standard error, as JSON.
    #[arg(long)]
    pub call_stats: bool,
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

/// Everything the `-f` arguments name; a source that cannot be read is an error of its own and
/// the others are still read.
fn read_all(names: &[String]) -> Manifests {
    let mut all = Manifests::default();
    for name in names {
        if name == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => all.extend(manifest::parse_documents("<stdin>", &text)),
                Err(e) => all.errors.push(read_error(std::path::Path::new("<stdin>"))(e)),
            }
            continue;
        }
        let files = match manifest_files(name) {
            Ok(files) => files,
            Err(e) => {
                all.errors.push(e);
                continue;
            }
        };
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => all.extend(manifest::parse_documents(&file.display().to_string(), &text)),
                Err(e) => all.errors.push(read_error(&file)(e)),
            }
        }
    }
    all
}

/// Runs `validate`; returns the process exit code.
pub async fn run(args: ValidateArgs) -> u8 {
    let Manifests { jobs, skipped, errors } = read_all(&args.files);
    for s in &skipped {
        eprintln!("skipped: {s}: not a ProcessingJob");
    }
    if jobs.is_empty() && errors.is_empty() {
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
    let mut report = Report {
        errors: errors.iter().flat_map(InputError::from_manifest).collect(),
        skipped: skipped.iter().map(ToString::to_string).collect(),
        ..Report::default()
    };
    let mut aws = AwsReaders::default();
    for j in &jobs {
        match check_job(j, args.region.as_deref(), &mut aws).await {
            Ok(job) => report.jobs.push(job),
            Err(e) => report.errors.push(e),
        }
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    for j in report.jobs.iter().filter(|j| j.verdict == Verdict::NotChecked) {
        eprintln!(
            "error: {}: cannot read the network of job {}/{}: {}",
            j.file,
            j.namespace,
            j.name,
            j.error.as_deref().unwrap_or_default()
        );
    }

    match args.output {
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: cannot render JSON: {e}");
                return 3;
            }
        },
        Format::Text => print!("{}", text::render(&report)),
        Format::Junit => print!("{}", junit::render(&report)),
        Format::Github => print!("{}", github::render(&report)),
    }
    if args.call_stats {
        let calls = &aws.calls;
        let stats = |service: &str| serde_json::json!({"total": calls.total(service), "byOperation": calls.by_operation(service)});
        eprintln!("{}", serde_json::json!({"ec2": stats("ec2"), "iam": stats("iam")}));
    }
    if !report.jobs.is_empty() || !report.errors.is_empty() {
        eprintln!("{}", report.summary());
    }
    report.exit_code()
}

/// Judges one job as the controller would: by its validation mode, on its network as read from
/// EC2. A job in a VPC without any region is bad input.
async fn check_job(j: &LoadedJob, default_region: Option<&str>, aws: &mut AwsReaders) -> Result<JobReport, InputError> {
    let spec = &j.job.spec;
    let mode = spec.validation_mode();
    let mut report = JobReport {
        namespace: j.job.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: j.job.metadata.name.clone().unwrap_or_default(),
        file: j.source_name.clone(),
        document: j.document,
        line: j.line,
        mode,
        verdict: Verdict::Passed,
        vpc_id: None,
        findings: Vec::new(),
        error: None,
    };
    if mode == ValidationMode::Skip {
        report.verdict = Verdict::Skipped;
        return Ok(report);
    }
    if spec.vpc_config().is_none() {
        return Ok(report); // runs outside any VPC: nothing to validate
    }
    let Some(region) = j.job.region(default_region) else {
        return Err(InputError {
            file: j.source_name.clone(),
            document: Some(j.document),
            line: Some(j.line_of_field("spec").unwrap_or(j.line)),
            job: Some(report.name),
            field: Some("spec.region".into()),
            message: format!(
                "no region for the job: set spec.region, the {ACK_REGION_ANNOTATION} annotation, --region or AWS_REGION"
            ),
        });
    };
    match aws.snapshot(&region, spec).await {
        Ok(snapshot) => {
            report.vpc_id = snapshot.vpc.as_ref().map(|v| v.vpc_id.clone());
            let vpc_line = j.line_of_field("spec.networkConfig.vpcConfig").unwrap_or(j.line);
            // The execution-role pre-flight, as the controller runs it beside the network.
            let role_facts = aws.role(&region, &spec.role_arn).await;
            let under_check = role::JobUnderCheck {
                spec,
                region: &region,
                name: spec.processing_job_name.as_deref(),
            };
            let role_findings = role::check(under_check, &role_facts);
            report.findings = network::validate(spec, &snapshot)
                .into_iter()
                .chain(role_findings)
                .map(|finding| LocatedFinding {
                    line: j.line_mentioning(&finding.resource).unwrap_or(vpc_line),
                    finding,
                })
                .collect();
            let findings: Vec<_> = report.findings.iter().map(|f| f.finding.clone()).collect();
            report.verdict = Verdict::of(mode, &findings);
        }
        Err(e) => {
            report.verdict = Verdict::NotChecked;
            report.error = Some(e);
        }
    }
    Ok(report)
}

/// EC2 readers, one per region, and IAM readers, one per partition, sharing one call counter. The AWS configuration is loaded on
/// first need: a stream of jobs without a VPC needs none. A region that could not be read is
/// not asked again in this run (credentials, endpoint and region errors hold for every job).
#[derive(Default)]
struct AwsReaders {
    sdk_config: Option<aws_config::SdkConfig>,
    resolvers: BTreeMap<String, Ec2Resolver>,
    /// IAM is global per partition: one reader per partition's home region.
    iam: BTreeMap<&'static str, IamReader>,
    unreadable: BTreeMap<String, String>,
    calls: Arc<CallCounter>,
}

impl AwsReaders {
    async fn snapshot(
        &mut self,
        region: &str,
        spec: &crate::api::ProcessingJobSpec,
    ) -> Result<NetworkSnapshot, String> {
        if let Some(e) = self.unreadable.get(region) {
            return Err(e.clone());
        }
        let sdk_config = self.sdk_config().await;
        let calls = self.calls.clone();
        let resolver = self.resolvers.entry(region.to_string()).or_insert_with(|| {
            let conf = aws_sdk_ec2::config::Builder::from(&sdk_config)
                .region(aws_config::Region::new(region.to_string()))
                .build();
            Ec2Resolver::new(
                aws_sdk_ec2::Client::from_conf(conf),
                region.to_string(),
                Duration::from_secs(60),
                calls,
            )
        });
        resolver.snapshot(spec).await.map_err(|e| {
            let message = format!("{e}{}", unreachable_hint(&e, region));
            self.unreadable.insert(region.to_string(), message.clone());
            message
        })
    }
}

impl AwsReaders {
    /// The AWS configuration, loaded on first need (the standard chain).
    async fn sdk_config(&mut self) -> aws_config::SdkConfig {
        if let Some(config) = &self.sdk_config {
            return config.clone();
        }
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        self.sdk_config = Some(config.clone());
        config
    }

    /// The execution role as IAM describes it (read once per role; unreadable IAM is a fact the
    /// checks report, never an error of the run).
    async fn role(&mut self, region: &str, role_arn: &str) -> Arc<role::RoleFacts> {
        let home = crate::aws::iam_home_region(region);
        let sdk_config = self.sdk_config().await;
        let calls = self.calls.clone();
        let reader = self.iam.entry(home).or_insert_with(|| {
            let conf = aws_sdk_iam::config::Builder::from(&sdk_config)
                .region(aws_config::Region::new(home))
                .build();
            IamReader::new(aws_sdk_iam::Client::from_conf(conf), Duration::from_secs(60), calls)
        });
        reader.role(role_arn).await
    }
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
