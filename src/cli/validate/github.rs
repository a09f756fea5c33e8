//! `-o github`: GitHub Actions workflow commands, which GitHub shows as annotations on the
//! manifest's lines in the run and in pull requests:
//!
//! `::error file=<path>,line=<line>,title=<code>::<namespace>/<name>: <message> — fix: <remediation>`
//!
//! A blocking Error finding is an `::error`; Warnings, and Errors that do not block (Warn mode),
//! `::warning`; Info `::notice`. A finding points at the line naming its resource (a subnet or
//! group ID), else at `vpcConfig`, else at the document's first line. Bad input is an `::error`
//! at its line. Standard input has no file: its annotations carry no position.

use super::{JobReport, Report, Verdict};
use crate::api::Severity;

pub fn render(report: &Report) -> String {
    let workspace = std::env::var("GITHUB_WORKSPACE").ok();
    render_in(report, workspace.as_deref())
}

/// The commands, with paths made relative to the workspace (GitHub matches annotations to the
/// repository's files by relative path).
fn render_in(report: &Report, workspace: Option<&str>) -> String {
    let mut out = String::new();
    for j in &report.jobs {
        job_commands(j, workspace, &mut out);
    }
    for e in &report.errors {
        let message = match &e.field {
            Some(field) => format!("{field}: {}", e.message),
            None => e.message.clone(),
        };
        let message = match &e.job {
            Some(job) => format!("{job}: {message}"),
            None => message,
        };
        out.push_str(&command(
            "error",
            &e.file,
            e.line,
            "InvalidManifest",
            &message,
            workspace,
        ));
    }
    out
}

fn job_commands(j: &JobReport, workspace: Option<&str>, out: &mut String) {
    let job = format!("{}/{}", j.namespace, j.name);
    match j.verdict {
        Verdict::Skipped => out.push_str(&command(
            "notice",
            &j.file,
            Some(j.line),
            "ValidationSkipped",
            &format!("{job}: networkValidation.mode is Skip: the network is not validated"),
            workspace,
        )),
        Verdict::NotChecked => out.push_str(&command(
            "error",
            &j.file,
            Some(j.line),
            "NetworkNotRead",
            &format!(
                "{job}: the network could not be read from EC2: {}",
                j.error.as_deref().unwrap_or_default()
            ),
            workspace,
        )),
        _ => {}
    }
    for f in &j.findings {
        let x = &f.finding;
        let (level, note) = match x.severity {
            Severity::Error if j.verdict == Verdict::NotBlocking => {
                ("warning", "not blocking (networkValidation.mode is Warn): ")
            }
            Severity::Error => ("error", ""),
            Severity::Warning => ("warning", ""),
            Severity::Info => ("notice", ""),
        };
        let message = format!("{job}: {note}{} — fix: {}", x.message, x.remediation);
        out.push_str(&command(level, &j.file, Some(f.line), &x.code, &message, workspace));
    }
}

/// One workflow command line.
fn command(
    level: &str,
    file: &str,
    line: Option<usize>,
    title: &str,
    message: &str,
    workspace: Option<&str>,
) -> String {
    let mut properties = Vec::new();
    if file != "<stdin>" {
        properties.push(format!("file={}", escape_property(&relative(file, workspace))));
        if let Some(line) = line {
            properties.push(format!("line={line}"));
        }
    }
    properties.push(format!("title={}", escape_property(title)));
    format!("::{level} {}::{}\n", properties.join(","), escape_data(message))
}

fn relative(file: &str, workspace: Option<&str>) -> String {
    let file = file.strip_prefix("./").unwrap_or(file);
    workspace
        .map(|w| w.trim_end_matches('/'))
        .filter(|w| !w.is_empty())
        .and_then(|w| file.strip_prefix(w))
        .and_then(|f| f.strip_prefix('/'))
        .unwrap_or(file)
        .to_string()
}

/// GitHub's escaping of a command's message (`escapeData` in `@actions/core`).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// GitHub's escaping of a command's property value (`escapeProperty`): also `:` and `,`, which
/// delimit properties.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_github_toolkit_does() {
        assert_eq!(escape_data("100% a:b,c\r\nd"), "100%25 a:b,c%0D%0Ad");
        assert_eq!(escape_property("100% a:b,c\r\nd"), "100%25 a%3Ab%2Cc%0D%0Ad");
        assert_eq!(
            command("error", "deploy/a,b.yaml", Some(7), "NoS3Route", "x\ny", None),
            "::error file=deploy/a%2Cb.yaml,line=7,title=NoS3Route::x%0Ay\n"
        );
        assert_eq!(
            command("notice", "<stdin>", Some(7), "T", "m", None),
            "::notice title=T::m\n"
        );
    }

    #[test]
    fn paths_are_relative_to_the_workspace() {
        assert_eq!(relative("./jobs/a.yaml", None), "jobs/a.yaml");
        assert_eq!(relative("/w/repo/jobs/a.yaml", Some("/w/repo/")), "jobs/a.yaml");
        assert_eq!(relative("/elsewhere/a.yaml", Some("/w/repo")), "/elsewhere/a.yaml");
    }
}
