//! AWS adapters: they own the SDK types; the rest of the crate works on its own small types.

pub mod assume;
pub mod ec2;
pub mod events;
pub mod iam;
pub mod logs;
pub mod sagemaker;
pub mod sqs;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub use crate::accounts::Scope;

/// How an AWS error should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Throttling: retry later with backoff.
    Throttled,
    /// 5xx, timeouts, connection problems: retry with backoff.
    Transient,
    /// The request is invalid (ValidationException and friends): retrying will not help.
    Invalid,
    /// The resource does not exist.
    NotFound,
    /// A service quota was reached: retry slowly.
    LimitExceeded,
    /// Missing or rejected credentials, or no region.
    Credentials,
    /// Anything else.
    Other,
}

impl ErrorClass {
    /// Stable reason for conditions, Events and metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorClass::Throttled => "AwsThrottled",
            ErrorClass::Transient => "AwsUnavailable",
            ErrorClass::Invalid => "AwsValidationError",
            ErrorClass::NotFound => "AwsNotFound",
            ErrorClass::LimitExceeded => "AwsLimitExceeded",
            ErrorClass::Credentials => "AwsCredentialsError",
            ErrorClass::Other => "AwsError",
        }
    }

    /// Whether retrying the same request may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::LimitExceeded | ErrorClass::Credentials
        )
    }
}

/// Classifies an AWS error from its code, HTTP status and message.
pub fn classify(code: Option<&str>, http_status: Option<u16>, message: &str) -> ErrorClass {
    let code = code.unwrap_or_default();
    let lower = message.to_ascii_lowercase();
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "SlowDown"
        | "ProvisionedThroughputExceededException" => ErrorClass::Throttled,
        "ResourceLimitExceeded" | "LimitExceededException" => ErrorClass::LimitExceeded,
        "ResourceNotFound" | "ResourceNotFoundException" | "NoSuchEntity" | "NoSuchEntityException" => {
            ErrorClass::NotFound
        }
        c if c.ends_with(".NotFound") => ErrorClass::NotFound,
        "ValidationException" if lower.contains("could not find") || lower.contains("not found") => {
            ErrorClass::NotFound
        }
        "ValidationException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "MissingParameter"
        | "SerializationException"
        | "ResourceInUse" => ErrorClass::Invalid,
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "AuthFailure"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "MissingAuthenticationToken"
        | "IncompleteSignature" => ErrorClass::Credentials,
        _ => match http_status {
            Some(s) if s >= 500 => ErrorClass::Transient,
            Some(429) => ErrorClass::Throttled,
            Some(401 | 403) => ErrorClass::Credentials,
            _ => ErrorClass::Other,
        },
    }
}

/// A failed AWS call.
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} failed ({}): {message}", code.as_deref().unwrap_or("no error code"))]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub class: ErrorClass,
    pub code: Option<String>,
    pub message: String,
}

impl AwsError {
    /// Converts an SDK error, classifying it.
    pub fn from_sdk<E, R>(
        service: &'static str,
        operation: &'static str,
        err: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        use aws_smithy_runtime_api::client::result::SdkError;
        let (code, message, status, class_hint) = match err {
            SdkError::ServiceError(ctx) => {
                let e = ctx.err();
                let status = ctx.raw().status_code();
                let message = match (e.code(), e.message()) {
                    (_, Some(m)) => m.to_string(),
                    // Not an AWS error document: say what came back.
                    (None, None) => format!("HTTP {status} without an AWS error code or message"),
                    (Some(_), None) => e.to_string(),
                };
                (e.code().map(str::to_string), message, Some(status), None)
            }
            SdkError::TimeoutError(_) => (
                None,
                "the request timed out".to_string(),
                None,
                Some(ErrorClass::Transient),
            ),
            SdkError::DispatchFailure(d) => {
                let class = if d.is_user() {
                    ErrorClass::Other
                } else {
                    ErrorClass::Transient
                };
                (
                    None,
                    format!("could not send the request: {}", error_chain(err)),
                    None,
                    Some(class),
                )
            }
            SdkError::ResponseError(_) => (
                None,
                format!("unreadable response: {}", error_chain(err)),
                None,
                Some(ErrorClass::Transient),
            ),
            SdkError::ConstructionFailure(_) => {
                let chain = error_chain(err);
                let class = if chain.contains("credential") || chain.contains("region") {
                    ErrorClass::Credentials
                } else {
                    ErrorClass::Other
                };
                (None, format!("could not build the request: {chain}"), None, Some(class))
            }
            _ => {
                let chain = error_chain(err);
                let class = if chain.contains("credential") {
                    ErrorClass::Credentials
                } else {
                    ErrorClass::Other
                };
                (None, chain, None, Some(class))
            }
        };
        let class = class_hint.unwrap_or_else(|| classify(code.as_deref(), status, &message));
        AwsError {
            service,
            operation,
            class,
            code,
            message,
        }
    }
}

/// Access to the HTTP status of a raw response.
pub trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Told of every AWS call a [`CallCounter`] records, as it is recorded. The Prometheus metrics
/// implement it, so this module needs to know nothing about telemetry.
pub trait CallObserver: Send + Sync {
    /// One call: its service, operation, outcome (`success`, `service_error`, `transport_error`)
    /// and latency.
    fn observe(&self, service: &'static str, operation: &'static str, outcome: &'static str, latency: Duration);
}

/// Counts AWS calls by service, operation and outcome, with their total latency. The
/// benchmark and the tests read it; an optional [`CallObserver`] (the metrics) hears of each call.
#[derive(Default)]
pub struct CallCounter {
    inner: Mutex<BTreeMap<CallKey, (u64, Duration)>>,
    observer: Option<std::sync::Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for CallCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallCounter")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// (service, operation, outcome)
pub type CallKey = (&'static str, &'static str, &'static str);

impl CallCounter {
    /// A counter that also tells `observer` (the Prometheus metrics) of every call.
    pub fn with_observer(observer: std::sync::Arc<dyn CallObserver>) -> Self {
        Self {
            inner: Mutex::default(),
            observer: Some(observer),
        }
    }

    pub fn record(&self, service: &'static str, operation: &'static str, outcome: &'static str, latency: Duration) {
        if let Ok(mut map) = self.inner.lock() {
            let e = map.entry((service, operation, outcome)).or_default();
            e.0 += 1;
            e.1 += latency;
        }
        if let Some(o) = &self.observer {
            o.observe(service, operation, outcome, latency);
        }
    }

    /// Calls of one service, all outcomes.
    pub fn total(&self, service: &str) -> u64 {
        self.inner
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|((s, _, _), _)| *s == service)
                    .map(|(_, (n, _))| n)
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Calls per operation of one service, all outcomes.
    pub fn by_operation(&self, service: &str) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        if let Ok(m) = self.inner.lock() {
            for ((s, op, _), (n, _)) in m.iter() {
                if *s == service {
                    *out.entry(*op).or_default() += n;
                }
            }
        }
        out
    }

    /// Every counter: ((service, operation, outcome), (count, total latency)).
    pub fn snapshot(&self) -> Vec<(CallKey, (u64, Duration))> {
        self.inner
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

/// An adapter of one AWS service. Every SDK call it makes goes through [`Adapter::call`], so that
/// the call is counted under the adapter's service and its error classified.
trait Adapter {
    /// The service's name in call counts, metrics and errors.
    const SERVICE: &'static str;

    fn counter(&self) -> &CallCounter;

    /// Runs one SDK call of this service, counts it by outcome with its latency, and classifies
    /// its error.
    async fn call<T, E, R>(
        &self,
        operation: &'static str,
        fut: impl std::future::Future<Output = Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HttpStatus,
    {
        let start = std::time::Instant::now();
        let result = fut.await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(aws_smithy_runtime_api::client::result::SdkError::ServiceError(_)) => "service_error",
            Err(_) => "transport_error",
        };
        self.counter()
            .record(Self::SERVICE, operation, outcome, start.elapsed());
        result.map_err(|e| AwsError::from_sdk(Self::SERVICE, operation, &e))
    }
}

/// SDK clients per [`Scope`] (account and region), created on first use from one shared
/// configuration: a scope in another account signs with the credentials of its role
/// ([`assume::RoleCredentials`], one per role, shared by the role's clients).
pub struct AwsClients {
    sdk: aws_config::SdkConfig,
    pub calls: std::sync::Arc<CallCounter>,
    network_cache_ttl: Duration,
    sagemaker: Mutex<BTreeMap<Scope, sagemaker::SageMaker>>,
    ec2: Mutex<BTreeMap<Scope, std::sync::Arc<ec2::Ec2Resolver>>>,
    /// One IAM reader per account and partition (IAM is global within a partition).
    iam: Mutex<BTreeMap<Scope, std::sync::Arc<iam::IamReader>>>,
    logs: Mutex<BTreeMap<Scope, std::sync::Arc<logs::LogReader>>>,
    roles: Mutex<BTreeMap<String, std::sync::Arc<assume::RoleCredentials>>>,
}

impl AwsClients {
    /// Loads the standard chain (IRSA / web identity, environment, profile) and the standard
    /// variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SAGEMAKER`, `AWS_ENDPOINT_URL_EC2`,
    /// `AWS_ENDPOINT_URL_STS`, ...).
    pub async fn load(network_cache_ttl: Duration, calls: std::sync::Arc<CallCounter>) -> Self {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        Self::from_config(sdk, network_cache_ttl, calls)
    }

    pub fn from_config(
        sdk: aws_config::SdkConfig,
        network_cache_ttl: Duration,
        calls: std::sync::Arc<CallCounter>,
    ) -> Self {
        Self {
            sdk,
            calls,
            network_cache_ttl,
            sagemaker: Mutex::new(BTreeMap::new()),
            ec2: Mutex::new(BTreeMap::new()),
            iam: Mutex::new(BTreeMap::new()),
            logs: Mutex::new(BTreeMap::new()),
            roles: Mutex::new(BTreeMap::new()),
        }
    }

    /// The region of the standard configuration, if any.
    pub fn default_region(&self) -> Option<String> {
        self.sdk.region().map(|r| r.to_string())
    }

    pub fn sagemaker(&self, scope: &Scope) -> sagemaker::SageMaker {
        per_scope(&self.sagemaker, scope, || {
            let client = aws_sdk_sagemaker::Client::new(&self.scoped(scope));
            sagemaker::SageMaker::new(client, self.calls.clone())
        })
    }

    pub fn ec2(&self, scope: &Scope) -> std::sync::Arc<ec2::Ec2Resolver> {
        per_scope(&self.ec2, scope, || {
            let client = aws_sdk_ec2::Client::new(&self.scoped(scope));
            std::sync::Arc::new(ec2::Ec2Resolver::new(
                client,
                &scope.region,
                self.network_cache_ttl,
                self.calls.clone(),
            ))
        })
    }

    /// The IAM reader of the scope's account in its region's partition (roles cached for the
    /// network cache's TTL).
    pub fn iam(&self, scope: &Scope) -> std::sync::Arc<iam::IamReader> {
        let home = Scope {
            assumed: scope.assumed.clone(),
            region: iam_home_region(&scope.region).to_string(),
        };
        per_scope(&self.iam, &home, || {
            let client = aws_sdk_iam::Client::new(&self.scoped(&home));
            std::sync::Arc::new(iam::IamReader::new(client, self.network_cache_ttl, self.calls.clone()))
        })
    }

    pub fn logs(&self, scope: &Scope) -> std::sync::Arc<logs::LogReader> {
        per_scope(&self.logs, scope, || {
            let client = aws_sdk_cloudwatchlogs::Client::new(&self.scoped(scope));
            std::sync::Arc::new(logs::LogReader::new(client, self.calls.clone()))
        })
    }

    /// The SQS queue at `url`, signed for the region its URL names (else the default region),
    /// with the controller's own credentials (the queue is in the controller's account).
    pub fn queue(&self, url: &str) -> sqs::Queue {
        let client = match sqs::region_of_url(url) {
            Some(region) => aws_sdk_sqs::Client::new(&self.scoped(&Scope::own(region))),
            None => aws_sdk_sqs::Client::new(&self.sdk),
        };
        sqs::Queue::new(client, url, self.calls.clone())
    }

    /// Makes sure the scope's credentials can be had: for a role in another account, assumes it
    /// unless its credentials are cached. `Err` (service `sts`, code `AssumeRoleFailed`)
    /// carries STS's message. The controller's own credentials are not checked here.
    pub async fn sign_in(&self, scope: &Scope) -> Result<(), AwsError> {
        match &scope.assumed {
            Some(a) => self.role(&a.role_arn).check().await,
            None => Ok(()),
        }
    }

    fn role(&self, role_arn: &str) -> std::sync::Arc<assume::RoleCredentials> {
        per_scope(&self.roles, &role_arn.to_string(), || {
            std::sync::Arc::new(assume::RoleCredentials::new(
                role_arn,
                self.sdk.clone(),
                self.calls.clone(),
            ))
        })
    }

    /// The shared configuration, for the scope's region and account.
    fn scoped(&self, scope: &Scope) -> aws_config::SdkConfig {
        let builder = self
            .sdk
            .to_builder()
            .region(aws_config::Region::new(scope.region.clone()));
        match &scope.assumed {
            Some(a) => builder
                .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                    RoleProvider(self.role(&a.role_arn)),
                ))
                .build(),
            None => builder.build(),
        }
    }
}

/// A role's shared credentials, as a provider the SDK clients own.
#[derive(Debug)]
struct RoleProvider(std::sync::Arc<assume::RoleCredentials>);

impl aws_credential_types::provider::ProvideCredentials for RoleProvider {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.0.provide_credentials()
    }
}

/// The region IAM's endpoint of `region`'s partition is signed for.
pub fn iam_home_region(region: &str) -> &'static str {
    match crate::partition::Partition::of_region(region) {
        crate::partition::Partition::Aws => "us-east-1",
        crate::partition::Partition::China => "cn-north-1",
        crate::partition::Partition::GovCloud => "us-gov-west-1",
    }
}

/// The entry of `key` in `map`, made on first use.
fn per_scope<K: Ord + Clone, T: Clone>(map: &Mutex<BTreeMap<K, T>>, key: &K, make: impl FnOnce() -> T) -> T {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key.clone()).or_insert_with(make).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        use ErrorClass::*;
        let cases = [
            (Some("ThrottlingException"), Some(400), "", Throttled),
            (Some("RequestLimitExceeded"), Some(503), "", Throttled),
            (Some("InternalFailure"), Some(500), "", Transient),
            (None, Some(503), "", Transient),
            (Some("ValidationException"), Some(400), "bad", Invalid),
            (
                Some("ValidationException"),
                Some(400),
                "Could not find requested job with name x",
                NotFound,
            ),
            (Some("InvalidSubnetID.NotFound"), Some(400), "", NotFound),
            (Some("ResourceLimitExceeded"), Some(400), "", LimitExceeded),
            (Some("UnrecognizedClientException"), Some(400), "", Credentials),
        ];
        for (code, status, message, class) in cases {
            assert_eq!(classify(code, status, message), class, "{code:?} {status:?} {message}");
        }
        assert!(ErrorClass::Throttled.is_retryable());
        assert!(!ErrorClass::Invalid.is_retryable());
    }

    #[derive(Default)]
    struct Heard(Mutex<Vec<(CallKey, Duration)>>);

    impl CallObserver for Heard {
        fn observe(&self, service: &'static str, operation: &'static str, outcome: &'static str, latency: Duration) {
            if let Ok(mut heard) = self.0.lock() {
                heard.push(((service, operation, outcome), latency));
            }
        }
    }

    #[test]
    fn the_observer_hears_every_recorded_call() {
        let heard = std::sync::Arc::new(Heard::default());
        let calls = CallCounter::with_observer(heard.clone());
        calls.record("ec2", "DescribeSubnets", "success", Duration::from_millis(3));
        calls.record("ec2", "DescribeSubnets", "service_error", Duration::from_millis(5));
        calls.record("sagemaker", "CreateProcessingJob", "success", Duration::from_millis(7));
        assert_eq!(calls.total("ec2"), 2);
        assert_eq!(
            calls.by_operation("sagemaker"),
            BTreeMap::from([("CreateProcessingJob", 1)])
        );
        let heard = heard.0.lock().expect("observer lock").clone();
        assert_eq!(
            heard,
            vec![
                (("ec2", "DescribeSubnets", "success"), Duration::from_millis(3)),
                (("ec2", "DescribeSubnets", "service_error"), Duration::from_millis(5)),
                (
                    ("sagemaker", "CreateProcessingJob", "success"),
                    Duration::from_millis(7)
                ),
            ]
        );
    }

    #[test]
    fn a_counter_without_observer_still_counts() {
        let calls = CallCounter::default();
        calls.record("ec2", "DescribeVpcs", "success", Duration::from_millis(1));
        assert_eq!(
            calls.snapshot(),
            vec![(("ec2", "DescribeVpcs", "success"), (1, Duration::from_millis(1)))]
        );
    }
}
