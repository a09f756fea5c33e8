//! `-o junit`: JUnit XML, the test report format GitLab (`artifacts:reports:junit`), Jenkins,
//! Azure DevOps and most CI systems display natively.
//!
//! One `<testsuite>` per run; one `<testcase>` per ProcessingJob, named `namespace/name`, its
//! class the manifest file; a `<failure>` per Error finding that blocks the job (Enforce mode),
//! with code, resource, message and remediation; the other findings (warnings, info, errors not
//! blocking in Warn mode) in `<system-out>`; a job in Skip mode `<skipped/>`; a job whose network
//! could not be read, and each bad document, a test case with `<error>`s (a bad document's case
//! is named `document <n>`, with the job's name when it has one). The suite's counts are of test
//! cases, as JUnit counts them.

use std::fmt::Write;

use super::{InputError, JobReport, LocatedFinding, Report, Verdict};
use crate::api::Severity;

const SUITE: &str = "sagemaker-processing-controller validate";

/// One test case's outcome elements and output, before it is written.
#[derive(Default)]
struct Case {
    name: String,
    classname: String,
    line: Option<usize>,
    failures: Vec<(String, String, String)>, // (type, message, body)
    errors: Vec<(String, String, String)>,
    skipped: Option<String>,
    out: String,
}

pub fn render(report: &Report) -> String {
    let mut cases: Vec<Case> = report.jobs.iter().map(job_case).collect();
    cases.extend(input_cases(&report.errors));
    let count = |f: fn(&Case) -> bool| cases.iter().filter(|c| f(c)).count();
    let (tests, failures, errors, skipped) = (
        cases.len(),
        count(|c| !c.failures.is_empty()),
        count(|c| !c.errors.is_empty()),
        count(|c| c.skipped.is_some()),
    );
    let totals = format!(r#"tests="{tests}" failures="{failures}" errors="{errors}" skipped="{skipped}""#);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(xml, r#"<testsuites name="{SUITE}" {totals}>"#);
    let _ = writeln!(xml, r#"  <testsuite name="{SUITE}" {totals}>"#);
    for c in &cases {
        write_case(&mut xml, c);
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

fn job_case(j: &JobReport) -> Case {
    let mut case = Case {
        name: format!("{}/{}", j.namespace, j.name),
        classname: j.file.clone(),
        line: Some(j.line),
        ..Case::default()
    };
    match j.verdict {
        Verdict::Skipped => {
            case.skipped = Some("networkValidation.mode is Skip: the network is not validated".into());
        }
        Verdict::NotChecked => case.errors.push((
            "NetworkNotRead".into(),
            "the network could not be read from EC2".into(),
            j.error.clone().unwrap_or_default(),
        )),
        Verdict::Passed if j.vpc_id.is_none() && j.findings.is_empty() => {
            case.out = "no vpcConfig: the job runs outside any VPC, nothing to validate\n".into();
        }
        _ => {}
    }
    for f in &j.findings {
        let blocking = j.verdict == Verdict::Blocked && f.finding.severity == Severity::Error;
        if blocking {
            case.failures.push((
                f.finding.code.clone(),
                format!("{}: {}", f.finding.resource, f.finding.message),
                finding_text(j, f, ""),
            ));
        } else {
            let note = if f.finding.severity == Severity::Error {
                " (not blocking: networkValidation.mode is Warn)"
            } else {
                ""
            };
            case.out.push_str(&finding_text(j, f, note));
        }
    }
    case
}

fn finding_text(j: &JobReport, f: &LocatedFinding, note: &str) -> String {
    let x = &f.finding;
    format!(
        "{} {}{note}\nresource: {}\nmessage: {}\nremediation: {}\nat: {}:{}\n\n",
        x.severity, x.code, x.resource, x.message, x.remediation, j.file, f.line
    )
}

/// Bad input: one test case per document, an `<error>` per problem.
fn input_cases(errors: &[InputError]) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for e in errors {
        // The class is the file already.
        let place = e.document.map_or_else(|| e.file.clone(), |d| format!("document {d}"));
        let name = match &e.job {
            Some(job) => format!("{place} ({job})"),
            None => place,
        };
        let problem = match &e.field {
            Some(field) => format!("{field}: {}", e.message),
            None => e.message.clone(),
        };
        let body = match e.line {
            Some(line) => format!("{e}\nat: {}:{line}\n", e.file),
            None => format!("{e}\n"),
        };
        let error = ("InvalidManifest".to_string(), problem, body);
        match cases.iter_mut().find(|c| c.name == name && c.classname == e.file) {
            Some(case) => case.errors.push(error),
            None => cases.push(Case {
                name,
                classname: e.file.clone(),
                line: e.line,
                errors: vec![error],
                ..Case::default()
            }),
        }
    }
    cases
}

fn write_case(xml: &mut String, c: &Case) {
    let line = c.line.map(|l| format!(r#" line="{l}""#)).unwrap_or_default();
    let _ = write!(
        xml,
        r#"    <testcase name="{}" classname="{}" file="{}"{line}"#,
        escape(&c.name),
        escape(&c.classname),
        escape(&c.classname)
    );
    if c.failures.is_empty() && c.errors.is_empty() && c.skipped.is_none() && c.out.is_empty() {
        xml.push_str("/>\n");
        return;
    }
    xml.push_str(">\n");
    if let Some(message) = &c.skipped {
        let _ = writeln!(xml, r#"      <skipped message="{}"/>"#, escape(message));
    }
    for (element, list) in [("error", &c.errors), ("failure", &c.failures)] {
        for (kind, message, body) in list {
            let _ = writeln!(
                xml,
                r#"      <{element} type="{}" message="{}">{}</{element}>"#,
                escape(kind),
                escape(message),
                escape_text(body)
            );
        }
    }
    if !c.out.is_empty() {
        let _ = writeln!(xml, "      <system-out>{}</system-out>", escape_text(&c.out));
    }
    xml.push_str("    </testcase>\n");
}

/// Escaping for an attribute value: line breaks and tabs as character references, or XML
/// parsers would turn them into spaces.
fn escape(s: &str) -> String {
    escape_xml(s, true)
}

/// Escaping for element text: line breaks stay as they are.
fn escape_text(s: &str) -> String {
    escape_xml(s, false)
}

/// Characters XML 1.0 cannot carry at all are dropped.
fn escape_xml(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' if !attribute => out.push(c),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(
            escape("a<b> & \"c\" 'd'\n\u{1}e"),
            "a&lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;&#10;e"
        );
        assert_eq!(escape_text("a\n<b>\u{1}"), "a\n&lt;b&gt;");
    }
}
