//! Why a reconcile failed, and when to try again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::finalizer;
use kube::runtime::reflector::ObjectRef;
use rand::Rng;

use super::Guarded;
use crate::aws::{AwsError, ErrorClass};

/// A failed reconcile: one variant per failed operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read namespace {namespace}: {source}")]
    ReadNamespace {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status: {0}")]
    WriteStatus(#[source] kube::Error),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("waiting for SageMaker job {0} to stop before releasing the resource")]
    WaitingForStop(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("cannot read the object: {0}")]
    ReadObject(#[source] kube::Error),
    #[error("cannot remove the finalizer: {0}")]
    ReleaseFinalizer(#[source] kube::Error),
    #[error("cannot add the finalizer: {0}")]
    AddFinalizer(#[source] kube::Error),
    #[error("cannot record the job before creating it: {0}")]
    WriteAhead(#[source] kube::Error),
    /// The account the job was created in cannot be reached (no role maps to it any more).
    #[error("{0}")]
    AccountUnreachable(String),
}

impl Error {
    /// Every reason a failed reconcile is counted under (`smpc_reconcile_errors_total`; a wait
    /// is not a failure): exported at 0 from start-up.
    pub const REASONS: [&'static str; 14] = [
        "NamespaceUnreadable",
        "StatusWriteFailed",
        "WriteAheadFailed",
        "AwsThrottled",
        "AwsUnavailable",
        "AwsValidationError",
        "AwsNotFound",
        "AwsLimitExceeded",
        "AwsCredentialsError",
        "AwsError",
        "FinalizerError",
        "ObjectUnreadable",
        "FinalizerReleaseFailed",
        crate::accounts::ACCOUNT_NOT_MAPPED,
    ];

    /// Stable reason for logs, metric labels, conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self.innermost() {
            Error::ReadNamespace { .. } => "NamespaceUnreadable",
            Error::WriteStatus(_) => "StatusWriteFailed",
            Error::WriteAhead(_) => "WriteAheadFailed",
            Error::Aws(e) => e.class.reason(),
            Error::WaitingForStop(_) => "WaitingForStop",
            Error::Finalizer(_) | Error::AddFinalizer(_) => "FinalizerError",
            Error::ReadObject(_) => "ObjectUnreadable",
            Error::ReleaseFinalizer(_) => "FinalizerReleaseFailed",
            Error::AccountUnreachable(_) => crate::accounts::ACCOUNT_NOT_MAPPED,
        }
    }

    /// A normal wait (a stop in progress), not a failure: not logged nor counted as an error.
    pub fn is_wait(&self) -> bool {
        matches!(self.innermost(), Error::WaitingForStop(_))
    }

    /// The error inside the finalizer's wrapping.
    pub fn innermost(&self) -> &Error {
        match self {
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.innermost(),
                _ => self,
            },
            other => other,
        }
    }
}

/// Per-object backoff: transient problems retry with jittered exponential delays, bounded;
/// quota problems start slower; waiting for a stop follows the poll interval.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<ObjectRef<Guarded>, u32>>,
}

impl Backoff {
    /// The delay before the next attempt after `error`; counts the failure.
    pub fn next(&self, object: ObjectRef<Guarded>, error: &Error, poll_interval: Duration) -> Action {
        if let Error::WaitingForStop(_) = error.innermost() {
            return Action::requeue(poll_interval);
        }
        let attempt = {
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = f.entry(object).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let jitter = rand::rng().random_range(0.5..1.5);
        Action::requeue(delay(error, attempt).mul_f64(jitter).max(Duration::from_millis(200)))
    }

    /// Consecutive failures of the object so far.
    pub fn failures(&self, object: &ObjectRef<Guarded>) -> u32 {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(object).copied().unwrap_or(0)
    }

    /// A success resets the object's backoff.
    pub fn reset(&self, object: &ObjectRef<Guarded>) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(object);
    }
}

/// The delay before jitter: doubling from 1 s (30 s for quota errors), at most 5 minutes.
fn delay(error: &Error, attempt: u32) -> Duration {
    let base = match error.innermost() {
        Error::Aws(e) if e.class == ErrorClass::LimitExceeded => 30.0,
        _ => 1.0,
    };
    Duration::from_secs_f64((base * 2f64.powi(attempt.clamp(1, 16) as i32 - 1)).min(300.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws(class: ErrorClass) -> Error {
        Error::Aws(AwsError {
            service: "sagemaker",
            operation: "DescribeProcessingJob",
            class,
            code: None,
            message: "m".into(),
        })
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let e = aws(ErrorClass::Throttled);
        assert_eq!(delay(&e, 1), Duration::from_secs(1));
        assert_eq!(delay(&e, 4), Duration::from_secs(8));
        assert_eq!(delay(&e, 40), Duration::from_secs(300));
        assert_eq!(delay(&aws(ErrorClass::LimitExceeded), 1), Duration::from_secs(30));
    }

    /// Every reason `reason()` can give for a failure is one of [`Error::REASONS`].
    #[test]
    fn every_failure_reason_is_known() {
        let classes = [
            ErrorClass::Throttled,
            ErrorClass::Transient,
            ErrorClass::Invalid,
            ErrorClass::NotFound,
            ErrorClass::LimitExceeded,
            ErrorClass::Credentials,
            ErrorClass::Other,
        ];
        let kube = || kube::Error::LinesCodecMaxLineLengthExceeded;
        let mut errors: Vec<Error> = classes
            .iter()
            .map(|class| {
                Error::Aws(AwsError {
                    service: "sagemaker",
                    operation: "DescribeProcessingJob",
                    class: *class,
                    code: None,
                    message: String::new(),
                })
            })
            .collect();
        errors.extend([
            Error::WriteStatus(kube()),
            Error::WriteAhead(kube()),
            Error::ReadObject(kube()),
            Error::ReleaseFinalizer(kube()),
            Error::AddFinalizer(kube()),
            Error::AccountUnreachable("x".into()),
        ]);
        for e in &errors {
            assert!(Error::REASONS.contains(&e.reason()), "{} not in REASONS", e.reason());
        }
    }

    #[test]
    fn reasons_see_through_the_finalizer() {
        let wrapped = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(aws(ErrorClass::Credentials))));
        assert_eq!(wrapped.reason(), "AwsCredentialsError");
        let stop = Error::Finalizer(Box::new(finalizer::Error::CleanupFailed(Error::WaitingForStop(
            "j".into(),
        ))));
        let b = Backoff::default();
        assert_eq!(
            b.next(ObjectRef::new("x"), &stop, Duration::from_secs(7)),
            Action::requeue(Duration::from_secs(7))
        );
    }
}
