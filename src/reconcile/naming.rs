//! The SageMaker job name of a resource: `spec.processingJobName`, else derived deterministically
//! from the resource — so a restarted controller finds the job it created instead of creating a
//! second one.

use sha2::{Digest, Sha256};

const MAX: usize = 63;
const HASH_LEN: usize = 8;

/// `metadata.name` shortened if needed, plus a short hash of namespace, name and UID. Always
/// matches `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`.
pub fn derived_job_name(namespace: &str, name: &str, uid: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}/{name}/{uid}").as_bytes());
    let hash: String = digest.iter().take(HASH_LEN / 2).map(|b| format!("{b:02x}")).collect();
    // Kubernetes names may hold '.', SageMaker's may not.
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let room = MAX - HASH_LEN - 1;
    let mut base: String = cleaned.chars().take(room).collect();
    while base.ends_with('-') {
        base.pop();
    }
    let base = base.trim_start_matches('-');
    if base.is_empty() {
        format!("job-{hash}")
    } else {
        format!("{base}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid(name: &str) -> bool {
        regex::Regex::new(crate::api::JOB_NAME_PATTERN)
            .map(|re| re.is_match(name))
            .unwrap_or(false)
    }

    #[test]
    fn deterministic_and_unique() {
        let a = derived_job_name("ns", "churn-features", "uid-1");
        assert_eq!(a, derived_job_name("ns", "churn-features", "uid-1"));
        assert!(a.starts_with("churn-features-"));
        assert_ne!(
            a,
            derived_job_name("ns", "churn-features", "uid-2"),
            "a recreated resource gets a new job"
        );
        assert_ne!(a, derived_job_name("other", "churn-features", "uid-1"));
    }

    #[test]
    fn long_and_dotted_names_are_shortened_and_cleaned() {
        let long = "a".repeat(253);
        let n = derived_job_name("ns", &long, "u");
        assert_eq!(n.len(), 63);
        assert!(valid(&n));
        let n = derived_job_name("ns", "my.job.v1", "u");
        assert!(n.starts_with("my-job-v1-") && valid(&n), "{n}");
        let n = derived_job_name("ns", &format!("{}.-x", "b".repeat(53)), "u");
        assert!(valid(&n), "{n}");
    }

    proptest! {
        #[test]
        fn always_a_valid_sagemaker_name(ns in "[a-z0-9-]{1,63}", name in "[a-z0-9][a-z0-9.-]{0,252}", uid in "[a-f0-9-]{36}") {
            let n = derived_job_name(&ns, &name, &uid);
            prop_assert!(valid(&n), "{}", n);
            prop_assert!(n.len() <= 63);
        }
    }
}
