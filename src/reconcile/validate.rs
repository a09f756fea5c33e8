//! Validate: the tenant guard, the network checks and the execution-role checks, pure. Only a job that passed both becomes
//! a [`Validated`] job, and only a `Validated` job can be created.

use std::collections::BTreeMap;

use super::guard;
use super::resolve::NetworkFacts;
use super::status::{NetworkOutcome, Phase};
use crate::api::ProcessingJobSpec;
use crate::network;
use crate::role;

/// Proof that a job passed validation: built only here.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    network: NetworkOutcome,
}

impl Validated {
    pub fn network(&self) -> &NetworkOutcome {
        &self.network
    }
}

/// Why a job may not be created now.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The namespace's limits refuse something the job uses.
    Namespace(String),
    /// The network has Error findings in Enforce mode.
    Network(NetworkOutcome),
}

impl Refusal {
    /// The phase to report, and the network outcome to show beside it.
    pub fn into_report(self) -> (Phase, Option<NetworkOutcome>) {
        match self {
            Refusal::Namespace(message) => (Phase::NotAllowed { message }, None),
            Refusal::Network(outcome) => (Phase::NetworkInvalid, Some(outcome)),
        }
    }
}

/// The namespace's tenant guard.
pub fn tenant(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    spec: &ProcessingJobSpec,
) -> Result<(), Refusal> {
    match guard::refusal(namespace, annotations, spec) {
        Some(message) => Err(Refusal::Namespace(message)),
        None => Ok(()),
    }
}

/// The network checks and the role checks over what was read, for the job `name`. The role's
/// findings follow the network's in the same list, and block the same way.
pub fn network(spec: &ProcessingJobSpec, name: &str, facts: NetworkFacts) -> Result<Validated, Refusal> {
    let outcome = outcome(spec, name, facts);
    if outcome.allows_create() {
        Ok(Validated { network: outcome })
    } else {
        Err(Refusal::Network(outcome))
    }
}

/// The findings over what was read, whether they block or not (a diagnosis shows them).
pub fn outcome(spec: &ProcessingJobSpec, name: &str, facts: NetworkFacts) -> NetworkOutcome {
    match facts {
        NetworkFacts::NoVpcConfig => NetworkOutcome::NoVpcConfig,
        NetworkFacts::Skipped => NetworkOutcome::Skipped,
        NetworkFacts::Read { mode, snapshot, role } => {
            let mut findings = network::validate(spec, &snapshot);
            let job = role::JobUnderCheck {
                spec,
                region: &snapshot.region,
                name: Some(name),
            };
            findings.extend(role::check(job, &role));
            NetworkOutcome::Validated {
                mode,
                vpc_id: snapshot.vpc.as_ref().map(|v| v.vpc_id.clone()),
                findings,
            }
        }
    }
}
