//! Network validation: the snapshot of a job's VPC, the checks N1–N14, and S3 endpoint
//! policy evaluation. Everything here is pure; reading EC2 lives in [`crate::aws::ec2`].

pub mod checks;
pub mod codes;
pub mod policy;
pub mod snapshot;

pub use checks::validate;
pub use codes::Code;
pub use snapshot::NetworkSnapshot;

use crate::api::{Finding, Severity};

/// Whether any finding is an Error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

#[cfg(test)]
mod tests;
