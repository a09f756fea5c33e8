//! What one `validate` run found, whatever the output format: a verdict per job, the input that
//! could not be used, the objects skipped, and the exit code they give.

use serde::Serialize;

use crate::api::{Finding, Severity, ValidationMode};
use crate::manifest::ManifestError;

/// Everything a run found; every output format renders this.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub jobs: Vec<JobReport>,
    /// Input that could not be used (bad documents, jobs without a region): one entry per
    /// problem, each with its file, document, line and field where known.
    pub errors: Vec<InputError>,
    /// Objects of other kinds, skipped: `<source>: document <n>: <kind> <name> (<apiVersion>)`.
    pub skipped: Vec<String>,
}

/// One ProcessingJob and what its validation says.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub document: usize,
    /// The line of the document's first content in `file`.
    pub line: usize,
    /// `spec.networkValidation.mode` (default Enforce): whether Error findings block the job.
    pub mode: ValidationMode,
    pub verdict: Verdict,
    #[serde(rename = "vpcID")]
    pub vpc_id: Option<String>,
    pub findings: Vec<LocatedFinding>,
    /// Why the network could not be read (verdict `notChecked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A finding and the line in the manifest it is about: the line naming its resource (a subnet or
/// group ID), else the job's `vpcConfig`, else the document's first line.
#[derive(Debug, Serialize)]
pub struct LocatedFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub line: usize,
}

/// What the controller would do with the job, as far as its network tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// No Error finding (or no VPC to check): the job would be created.
    Passed,
    /// Error findings in `Enforce` mode: the job would not be created.
    Blocked,
    /// Error findings in `Warn` mode: the job would be created anyway, the findings kept in its
    /// status.
    NotBlocking,
    /// `Skip` mode: the controller does not validate the network, so neither does `validate`
    /// (no EC2 read).
    Skipped,
    /// The network could not be read from EC2: the verdict is unknown.
    NotChecked,
}

impl Verdict {
    /// The verdict of a job whose network was read: Error findings block only in Enforce mode.
    pub fn of(mode: ValidationMode, findings: &[Finding]) -> Verdict {
        let errors = findings.iter().any(|f| f.severity == Severity::Error);
        match mode {
            ValidationMode::Skip => Verdict::Skipped,
            _ if !errors => Verdict::Passed,
            ValidationMode::Enforce => Verdict::Blocked,
            ValidationMode::Warn => Verdict::NotBlocking,
        }
    }
}

/// Input that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputError {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `namespace/name` of the job, when the document is a ProcessingJob with a name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    /// One entry per problem: a refused job lists each field the schema or a rule refuses.
    pub fn from_manifest(e: &ManifestError) -> Vec<InputError> {
        let position = e.position();
        let base = InputError {
            file: e.source_name().to_string(),
            document: position.map(|(d, _)| d),
            line: position.map(|(_, l)| l),
            job: None,
            field: None,
            message: e.detail(),
        };
        match e {
            ManifestError::Invalid { name, problems, .. } => problems
                .iter()
                .map(|p| InputError {
                    line: Some(p.line),
                    job: Some(name.clone()),
                    field: Some(p.field.clone()),
                    message: p.message.clone(),
                    ..base.clone()
                })
                .collect(),
            ManifestError::DuplicateKey { key: Some(key), .. } => vec![InputError {
                field: Some(key.clone()),
                message: crate::manifest::duplicate_key_message(Some(key)),
                ..base
            }],
            _ => vec![base],
        }
    }

    /// `file: document n: ` as the text output names places.
    pub fn place(&self) -> String {
        match self.document {
            Some(d) => format!("{}: document {d}", self.file),
            None => self.file.clone(),
        }
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.place())?;
        if let Some(job) = &self.job {
            write!(f, " ({job})")?;
        }
        match &self.field {
            Some(field) => write!(f, ": {field}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl Report {
    /// The exit code. Each outcome has its code, and when a run has several the worst wins:
    /// **3** (a job's network could not be read: its verdict is unknown) over **2** (some input
    /// could not be used) over **1** (an Error finding blocks a job in Enforce mode) over **0**.
    /// A higher code means the run knows less, so a CI step never passes over input it could not
    /// check, and every outcome is printed whatever the code.
    pub fn exit_code(&self) -> u8 {
        if self.jobs.iter().any(|j| j.verdict == Verdict::NotChecked) {
            3
        } else if !self.errors.is_empty() {
            2
        } else if self.jobs.iter().any(|j| j.verdict == Verdict::Blocked) {
            1
        } else {
            0
        }
    }

    /// One line for the log: how many jobs got which verdict, and the exit code.
    pub fn summary(&self) -> String {
        let count = |v: Verdict| self.jobs.iter().filter(|j| j.verdict == v).count();
        let mut parts = vec![format!("{} ProcessingJob(s)", self.jobs.len())];
        for (verdict, label) in [
            (Verdict::Passed, "passed"),
            (Verdict::Blocked, "blocked by Error findings"),
            (Verdict::NotBlocking, "with Error findings not blocking (mode Warn)"),
            (Verdict::Skipped, "skipped (mode Skip)"),
            (Verdict::NotChecked, "not checked (EC2 unreadable)"),
        ] {
            let n = count(verdict);
            if n > 0 {
                parts.push(format!("{n} {label}"));
            }
        }
        if !self.errors.is_empty() {
            parts.push(format!("{} input error(s)", self.errors.len()));
        }
        format!("{}: exit {}", parts.join(", "), self.exit_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(severity: Severity) -> Finding {
        Finding {
            code: "NoS3Route".into(),
            severity,
            resource: "subnet-1".into(),
            message: "m".into(),
            remediation: "r".into(),
        }
    }

    fn job(verdict: Verdict) -> JobReport {
        JobReport {
            namespace: "ml".into(),
            name: "j".into(),
            file: "f.yaml".into(),
            document: 1,
            line: 1,
            mode: ValidationMode::Enforce,
            verdict,
            vpc_id: None,
            findings: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn error_findings_block_only_in_enforce_mode() {
        let errors = [finding(Severity::Warning), finding(Severity::Error)];
        let warnings = [finding(Severity::Warning)];
        assert_eq!(Verdict::of(ValidationMode::Enforce, &errors), Verdict::Blocked);
        assert_eq!(Verdict::of(ValidationMode::Warn, &errors), Verdict::NotBlocking);
        assert_eq!(Verdict::of(ValidationMode::Skip, &errors), Verdict::Skipped);
        assert_eq!(Verdict::of(ValidationMode::Enforce, &warnings), Verdict::Passed);
        assert_eq!(Verdict::of(ValidationMode::Warn, &[]), Verdict::Passed);
    }

    #[test]
    fn the_worst_outcome_gives_the_exit_code() {
        let error = InputError {
            file: "f".into(),
            document: Some(1),
            line: Some(1),
            job: None,
            field: None,
            message: "m".into(),
        };
        let report = |verdicts: &[Verdict], errors: usize| Report {
            jobs: verdicts.iter().map(|v| job(*v)).collect(),
            errors: vec![error.clone(); errors],
            skipped: Vec::new(),
        };
        use Verdict::*;
        assert_eq!(report(&[], 0).exit_code(), 0);
        assert_eq!(report(&[Passed, NotBlocking, Skipped], 0).exit_code(), 0);
        assert_eq!(report(&[Passed, Blocked, NotBlocking], 0).exit_code(), 1);
        assert_eq!(report(&[Blocked], 1).exit_code(), 2);
        assert_eq!(report(&[Blocked, NotChecked], 1).exit_code(), 3);
        assert_eq!(report(&[Passed, NotChecked], 0).exit_code(), 3);
        assert_eq!(
            report(&[Passed, Blocked, NotBlocking], 1).summary(),
            "3 ProcessingJob(s), 1 passed, 1 blocked by Error findings, 1 with Error findings not blocking (mode Warn), 1 input error(s): exit 2"
        );
    }
}
