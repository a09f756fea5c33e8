//! `-o text`: a readable report, one block per job.

use std::fmt::Write;

use super::{Report, Verdict};
use crate::api::Severity;

/// One block per job: a verdict line, then each finding with its message and fix. Input errors
/// and jobs whose network could not be read are on standard error (with the summary).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for r in &report.jobs {
        let vpc = r.vpc_id.as_deref().unwrap_or("no VPC");
        let errors = r
            .findings
            .iter()
            .filter(|f| f.finding.severity == Severity::Error)
            .count();
        let verdict = match r.verdict {
            Verdict::Passed => format!("({vpc}): ok"),
            Verdict::Blocked => format!("({vpc}): {errors} error(s)"),
            Verdict::NotBlocking => format!(
                "({vpc}): {errors} error(s), not blocking: networkValidation.mode is Warn, the job would be created anyway"
            ),
            Verdict::Skipped => {
                "skipped: networkValidation.mode is Skip, the network is not validated (EC2 not read)".to_string()
            }
            Verdict::NotChecked => "not checked: its network could not be read from EC2 (error above)".to_string(),
        };
        let _ = writeln!(out, "{}/{} {verdict}", r.namespace, r.name);
        if r.findings.is_empty() && matches!(r.verdict, Verdict::Passed) {
            let _ = writeln!(out, "  no findings");
        }
        let width = r.findings.iter().map(|f| f.finding.code.len()).max().unwrap_or(0);
        for f in r.findings.iter().map(|f| &f.finding) {
            let not_blocking = if r.verdict == Verdict::NotBlocking && f.severity == Severity::Error {
                "  (not blocking: mode Warn)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:<7} {:<width$}  {}{not_blocking}",
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
