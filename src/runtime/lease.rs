//! Leader election with a `coordination.k8s.io/v1` Lease: with several replicas only the
//! holder reconciles. Optimistic concurrency (resourceVersion) decides races.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a lease is valid without renewal; another replica takes over after it.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leader,
    Follower(String),
}

pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl LeaderElector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let me = &self.settings.identity;
        let duration_s = self.settings.duration.as_secs().max(1) as i32;
        let existing = match self.api.get_opt(&self.settings.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(duration_s),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Leader),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Follower(String::new())),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let held_by_me = &holder == me;
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(d)) => {
                renewed.0.as_millisecond() + i64::from(d) * 1000 < Timestamp::now().as_millisecond()
            }
            _ => true,
        };
        if !held_by_me && !holder.is_empty() && !expired {
            return Ok(Attempt::Follower(holder));
        }
        let mut lease = existing;
        let mut new_spec = spec.clone();
        if !held_by_me {
            new_spec.holder_identity = Some(me.clone());
            new_spec.acquire_time = Some(now());
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.renew_time = Some(now());
        new_spec.lease_duration_seconds = Some(duration_s);
        lease.spec = Some(new_spec);
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leader),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Follower(holder)),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the lease. Returns false when cancelled first.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> bool {
        let mut last_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leader) => {
                    tracing::info!(
                        identity = self.settings.identity,
                        lease = self.settings.name,
                        "acquired the leader lease"
                    );
                    return true;
                }
                Ok(Attempt::Follower(holder)) => {
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(holder, "standing by: another replica holds the leader lease");
                        last_holder = Some(holder);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.settings.renew_every) => {}
            }
        }
    }

    /// Renews the lease until `shutdown`; cancels `lost` as soon as the lease cannot be held.
    pub async fn hold(&self, shutdown: CancellationToken, lost: CancellationToken) {
        let mut last_renewal = tokio::time::Instant::now();
        // Give up before the lease can expire, so two replicas never act at once.
        let deadline = self.settings.duration.mul_f64(2.0 / 3.0);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.release().await;
                    return;
                }
                _ = tokio::time::sleep(self.settings.renew_every) => {}
            }
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leader) => last_renewal = tokio::time::Instant::now(),
                Ok(Attempt::Follower(holder)) => {
                    tracing::error!(holder, "lost the leader lease");
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    if last_renewal.elapsed() > deadline {
                        tracing::error!("leader lease not renewed in time");
                        lost.cancel();
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up so that another replica takes over at once.
    async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await {
            let mine = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&self.settings.identity);
            if mine {
                if let Some(spec) = lease.spec.as_mut() {
                    spec.holder_identity = None;
                }
                match self
                    .api
                    .replace(&self.settings.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => tracing::info!("released the leader lease"),
                    Err(e) => tracing::warn!(error = %e, "cannot release the leader lease"),
                }
            }
        }
    }
}
