//! The watch of ACK's cross-account ConfigMaps (`ack-role-account-map`, `ack-role-team-map`) in
//! the controller's namespace. What they say goes into the [`Directory`] the reconciler reads,
//! so a mapping added or changed takes effect without a restart; and a change brings back the
//! jobs it may concern (those not created yet, and those waiting for their account), the way the
//! namespace watch does for a namespace's annotations.
//!
//! One watch per ConfigMap, by name (`metadata.name` field selector, which RBAC `resourceNames`
//! allows): the other ConfigMaps of the namespace never travel.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{future, stream, Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};

use crate::accounts::{Directory, ACCOUNT_MAP, ACCOUNT_NOT_MAPPED, ASSUME_ROLE_FAILED, TEAM_MAP};
use crate::api::{JobPhase, ProcessingJob};
use crate::reconcile::Guarded;

/// What one ConfigMap's watch has seen since its last (re-)list began.
#[derive(Debug, Default)]
pub struct MapSeen {
    /// The ConfigMap showed up in the current list: one that did not is gone.
    listed: bool,
}

impl MapSeen {
    /// Records the event in `directory`; returns whether the mapping changed.
    pub fn absorb(&mut self, directory: &Directory, name: &str, event: &watcher::Event<ConfigMap>) -> bool {
        let data = |cm: &ConfigMap| -> BTreeMap<String, String> { cm.data.clone().unwrap_or_default() };
        match event {
            watcher::Event::Init => {
                self.listed = false;
                false
            }
            watcher::Event::InitApply(cm) => {
                self.listed = true;
                directory.set_map(name, Some(data(cm)))
            }
            watcher::Event::Apply(cm) => directory.set_map(name, Some(data(cm))),
            // Deleted, or deleted while the watch was away (absent from the re-list).
            watcher::Event::Delete(_) => directory.set_map(name, None),
            watcher::Event::InitDone if !self.listed => directory.set_map(name, None),
            watcher::Event::InitDone => false,
        }
    }
}

/// Whether a change of the mappings may concern the job: it was not created yet (its account
/// is resolved when it is), or it waits for its account.
pub fn concerned(job: &ProcessingJob) -> bool {
    let Some(status) = &job.status else {
        return true;
    };
    let waits_for_account = status
        .conditions
        .iter()
        .any(|c| c.reason == ACCOUNT_NOT_MAPPED || c.reason == ASSUME_ROLE_FAILED);
    let created = matches!(
        status.phase,
        Some(JobPhase::Created | JobPhase::Adopted | JobPhase::Refused)
    );
    waits_for_account || !created
}

fn concerned_jobs(store: &Store<Guarded>) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter(|obj| obj.0.as_ref().is_ok_and(concerned))
        .map(|obj| ObjectRef::from_obj(obj.as_ref()))
        .collect()
}

/// The jobs to reconcile because a mapping changed; keeps `directory` current.
pub fn changes(
    client: Client,
    directory: Arc<Directory>,
    store: Store<Guarded>,
) -> impl Stream<Item = ObjectRef<Guarded>> + Send + 'static {
    let api = Api::<ConfigMap>::namespaced(client, &directory.controller_namespace);
    let watch = |name: &'static str| {
        let directory = directory.clone();
        let mut seen = MapSeen::default();
        watcher(api.clone(), watcher::Config::default().fields(&format!("metadata.name={name}")))
            .default_backoff()
            .filter_map(move |event| {
                future::ready(match event {
                    Ok(event) => seen.absorb(&directory, name, &event).then(|| {
                        let keys = match &event {
                            watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                                cm.data.as_ref().map_or(0, |d| d.len())
                            }
                            _ => 0,
                        };
                        tracing::info!(configmap = name, entries = keys, "cross-account mapping changed");
                    }),
                    Err(e) => {
                        tracing::warn!(configmap = name, error = %e, "cannot watch the cross-account ConfigMap: mapping changes are noticed only on the revalidation timer (RBAC: get, list and watch configmaps in the controller's namespace)");
                        None
                    }
                })
            })
    };
    stream::select(watch(ACCOUNT_MAP), watch(TEAM_MAP)).flat_map(move |()| stream::iter(concerned_jobs(&store)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(ACCOUNT_MAP.into()),
                ..Default::default()
            },
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn the_directory_follows_the_configmap_through_changes_deletes_and_relists() {
        use watcher::Event::*;
        let d = Directory::new("sys");
        let mut seen = MapSeen::default();
        let role = "arn:aws:iam::222222222222:role/r";
        assert!(!seen.absorb(&d, ACCOUNT_MAP, &Init));
        assert!(
            !seen.absorb(&d, ACCOUNT_MAP, &InitDone),
            "absent from the start: nothing changed"
        );
        assert_eq!(d.maps().accounts, None);
        assert!(
            seen.absorb(&d, ACCOUNT_MAP, &Apply(cm(&[("222222222222", role)]))),
            "created"
        );
        assert!(d.maps().accounts.is_some_and(|m| m.contains_key("222222222222")));
        assert!(
            !seen.absorb(&d, ACCOUNT_MAP, &Apply(cm(&[("222222222222", role)]))),
            "unchanged"
        );
        // A re-list after a disconnect that no longer shows it: it was deleted meanwhile.
        assert!(!seen.absorb(&d, ACCOUNT_MAP, &Init));
        assert!(seen.absorb(&d, ACCOUNT_MAP, &InitDone));
        assert_eq!(d.maps().accounts, None);
        assert!(seen.absorb(&d, ACCOUNT_MAP, &InitApply(cm(&[]))));
        assert!(!seen.absorb(&d, ACCOUNT_MAP, &InitDone));
        assert_eq!(d.maps().accounts, Some(BTreeMap::new()));
        assert!(seen.absorb(&d, ACCOUNT_MAP, &Delete(cm(&[]))));
        assert_eq!(d.maps().accounts, None);
    }

    #[test]
    fn only_jobs_not_created_or_waiting_for_their_account_are_brought_back() {
        let job = |status: serde_json::Value| -> ProcessingJob {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "sagemaker.processing.dev/v1alpha1", "kind": "ProcessingJob",
                "metadata": {"name": "j", "namespace": "n"},
                "spec": {
                    "appSpecification": {"imageURI": "i"},
                    "processingResources": {"clusterConfig": {"instanceCount": 1, "instanceType": "ml.m5.large", "volumeSizeInGB": 1}},
                    "roleARN": "arn:aws:iam::111111111111:role/r"
                },
                "status": status
            }))
            .expect("job")
        };
        let condition = |reason: &str| serde_json::json!({"type": "Reconciling", "status": "True", "reason": reason, "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        assert!(concerned(&job(serde_json::json!(null))));
        assert!(concerned(&job(
            serde_json::json!({"phase": "Pending", "conditions": [condition(ACCOUNT_NOT_MAPPED)]})
        )));
        assert!(concerned(&job(serde_json::json!({"phase": "Blocked"}))));
        assert!(!concerned(&job(
            serde_json::json!({"phase": "Created", "conditions": [condition("InProgress")]})
        )));
        assert!(concerned(&job(
            serde_json::json!({"phase": "Created", "conditions": [condition(ASSUME_ROLE_FAILED)]})
        )));
    }
}
