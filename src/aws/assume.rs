//! Credentials of a role in another account (ACK's CARM): `sts:AssumeRole` through the
//! controller's own credentials, one provider per role, its credentials cached and renewed
//! before they expire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;

use super::{error_chain, AwsError, CallCounter, ErrorClass};

/// Credentials are renewed this long before they expire, so that no call is signed with
/// credentials about to lapse (the SDK's own identity cache uses a similar buffer).
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The session name the controller's AssumeRole calls carry (CloudTrail of the target account
/// shows it).
const SESSION_NAME: &str = "sagemaker-processing-controller";

/// The credentials of one role, assumed on first use and again shortly before they expire.
/// Shared by every client of the role, so the SDK clients and the reconciler's explicit check
/// ([`RoleCredentials::check`]) cost one AssumeRole per session, not one per call.
#[derive(Debug)]
pub struct RoleCredentials {
    role_arn: String,
    base: aws_config::SdkConfig,
    provider: tokio::sync::OnceCell<aws_config::sts::AssumeRoleProvider>,
    current: Mutex<Option<Credentials>>,
    /// Serialises renewals, so that many reconciles at once assume the role once.
    renewing: tokio::sync::Mutex<()>,
    calls: Arc<CallCounter>,
}

impl RoleCredentials {
    /// `base`: the controller's own configuration (its credentials sign the AssumeRole; STS's
    /// endpoint comes from it: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`).
    pub fn new(role_arn: &str, base: aws_config::SdkConfig, calls: Arc<CallCounter>) -> Self {
        RoleCredentials {
            role_arn: role_arn.to_string(),
            base,
            provider: tokio::sync::OnceCell::new(),
            current: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
            calls,
        }
    }

    fn fresh(&self) -> Option<Credentials> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|c| c.expiry().is_none_or(|at| at > SystemTime::now() + RENEW_BEFORE))
            .cloned()
    }

    /// The role's credentials: cached, or assumed now.
    async fn credentials(&self) -> provider::Result {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _one = self.renewing.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let provider = self
            .provider
            .get_or_init(|| async {
                aws_config::sts::AssumeRoleProvider::builder(&self.role_arn)
                    .session_name(SESSION_NAME)
                    .configure(&self.base)
                    .build()
                    .await
            })
            .await;
        let start = std::time::Instant::now();
        let result = provider.provide_credentials().await;
        let outcome = if result.is_ok() { "success" } else { "service_error" };
        self.calls.record("sts", "AssumeRole", outcome, start.elapsed());
        if let Ok(c) = &result {
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
        }
        result
    }

    /// Assumes the role unless its credentials are cached: `Err` carries STS's message.
    pub async fn check(&self) -> Result<(), AwsError> {
        self.credentials()
            .await
            .map(|_| ())
            .map_err(|e| assume_failed(&self.role_arn, &e))
    }
}

impl ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(self.credentials())
    }
}

/// A failed AssumeRole as an AWS error: service `sts`, code `AssumeRoleFailed`, STS's message.
fn assume_failed(role_arn: &str, e: &CredentialsError) -> AwsError {
    AwsError {
        service: "sts",
        operation: "AssumeRole",
        class: ErrorClass::Credentials,
        code: Some(crate::accounts::ASSUME_ROLE_FAILED.into()),
        message: format!("cannot assume {role_arn}: {}", error_chain(e)),
    }
}
