//! The namespace watch. The tenant guard's limits live in namespace annotations, and a job the
//! guard refused waits in `Blocked`: when a namespace's limits change, its ProcessingJobs are
//! brought back to the reconciler, so a job the namespace now allows proceeds at once, without
//! anyone touching the resource. Only jobs that were never created are checked by the guard: a
//! running job is never stopped by a later tightening.
//!
//! The same holds for ACK's account annotations (`services.k8s.aws/owner-account-id`,
//! `services.k8s.aws/team-id`): the watch records them in the [`Directory`] the reconciler reads,
//! and a change brings the namespace's jobs back, so they are checked in their new account.
//!
//! Metadata only (no spec or status of namespaces travels), and only changes of the guard's and
//! the account annotations count: labels, other annotations and the first sight of a namespace
//! bring nothing.
//!
//! The watch also fills a store of the namespaces' metadata, which reconciles read instead of a
//! GET per job; it is written before a change brings the namespace's jobs back, so they see it.

use std::collections::{BTreeMap, HashMap};

use futures::{future, stream, Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use crate::accounts::{self, Directory};
use crate::reconcile::guard;
use crate::reconcile::Guarded;

/// The guard's limits of each namespace seen, to tell a change from a re-list.
#[derive(Debug, Default)]
pub struct LimitsSeen(HashMap<String, BTreeMap<&'static str, String>>);

impl LimitsSeen {
    /// The namespace whose limits this event changed, if any. The first sight of a namespace
    /// is no change: its jobs are reconciled through their own watch.
    pub fn changed(&mut self, event: &watcher::Event<PartialObjectMeta<Namespace>>) -> Option<String> {
        match event {
            watcher::Event::Apply(ns) | watcher::Event::InitApply(ns) => {
                let name = ns.name_any();
                let annotations = ns.annotations();
                let limits = guard::limits(annotations)
                    .into_iter()
                    .map(|(k, v)| (k, v.to_string()))
                    .chain(
                        accounts::ANNOTATIONS
                            .iter()
                            .filter_map(|k| annotations.get(*k).map(|v| (*k, v.clone()))),
                    )
                    .collect();
                let before = self.0.insert(name.clone(), limits);
                (before.is_some() && before.as_ref() != self.0.get(&name)).then_some(name)
            }
            watcher::Event::Delete(ns) => {
                self.0.remove(&ns.name_any());
                None
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}

/// Keeps the directory's copy of the namespaces' account annotations current.
fn record(directory: &Directory, event: &watcher::Event<PartialObjectMeta<Namespace>>) {
    match event {
        watcher::Event::Apply(ns) | watcher::Event::InitApply(ns) => {
            directory.set_namespace(&ns.name_any(), Some(ns.annotations()))
        }
        watcher::Event::Delete(ns) => directory.set_namespace(&ns.name_any(), None),
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

/// The ProcessingJobs of `namespace` in the controller's cache.
fn jobs_in(store: &Store<Guarded>, namespace: &str) -> Vec<ObjectRef<Guarded>> {
    store
        .state()
        .iter()
        .filter(|job| job.namespace().as_deref() == Some(namespace))
        .map(|job| ObjectRef::from_obj(job.as_ref()))
        .collect()
}

/// The jobs to reconcile because their namespace's limits changed. `scope`: the one namespace
/// the controller serves (watched by name, which RBAC `resourceNames` allows), else all.
/// `namespaces`: filled with every namespace seen.
pub fn changes(
    client: Client,
    scope: Option<&str>,
    store: Store<Guarded>,
    directory: std::sync::Arc<Directory>,
    namespaces: reflector::store::Writer<PartialObjectMeta<Namespace>>,
) -> impl Stream<Item = ObjectRef<Guarded>> + Send + 'static {
    let config = match scope {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let mut seen = LimitsSeen::default();
    // An Api of PartialObjectMeta makes metadata-only requests (kube's metadata watcher).
    watcher(Api::<PartialObjectMeta<Namespace>>::all(client), config)
        .default_backoff()
        .reflect(namespaces)
        .filter_map(move |event| {
            future::ready(match event {
                Ok(event) => {
                    record(&directory, &event);
                    seen.changed(&event)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch namespaces: changes of the tenant guard's annotations are noticed only on the revalidation timer (RBAC: list and watch namespaces)");
                    None
                }
            })
        })
        .flat_map(move |namespace| {
            let jobs = jobs_in(&store, &namespace);
            tracing::info!(namespace, jobs = jobs.len(), "tenant guard annotations changed: re-evaluating the namespace's jobs");
            stream::iter(jobs)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn ns(name: &str, annotations: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    #[test]
    fn only_a_change_of_the_guard_annotations_counts() {
        use watcher::Event::*;
        let mut seen = LimitsSeen::default();
        assert_eq!(seen.changed(&Init), None);
        assert_eq!(seen.changed(&InitApply(ns("a", &[]))), None, "first sight");
        assert_eq!(seen.changed(&InitDone), None);
        assert_eq!(
            seen.changed(&Apply(ns("a", &[("team", "x")]))),
            None,
            "not a guard annotation"
        );
        assert_eq!(
            seen.changed(&Apply(ns("a", &[(guard::ALLOWED_SUBNETS, "subnet-1")]))),
            Some("a".into())
        );
        assert_eq!(
            seen.changed(&Apply(ns("a", &[(guard::ALLOWED_SUBNETS, "subnet-1"), ("team", "y")]))),
            None
        );
        // A re-list after a disconnect: a change made meanwhile counts, an unchanged one not.
        assert_eq!(
            seen.changed(&InitApply(ns("a", &[(guard::ALLOWED_SUBNETS, "subnet-1")]))),
            None
        );
        assert_eq!(seen.changed(&InitApply(ns("a", &[]))), Some("a".into()), "removed");
        assert_eq!(seen.changed(&Delete(ns("a", &[]))), None);
        assert_eq!(
            seen.changed(&Apply(ns("a", &[(guard::MAX_INSTANCE_COUNT, "1")]))),
            None,
            "recreated: first sight"
        );
        assert_eq!(
            seen.changed(&Apply(ns(
                "a",
                &[
                    (guard::MAX_INSTANCE_COUNT, "1"),
                    (accounts::OWNER_ACCOUNT_ANNOTATION, "222222222222")
                ]
            ))),
            Some("a".into()),
            "an account annotation counts"
        );
        assert_eq!(
            seen.changed(&Apply(ns(
                "a",
                &[(guard::MAX_INSTANCE_COUNT, "1"), (accounts::TEAM_ANNOTATION, "x")]
            ))),
            Some("a".into()),
            "so does the team"
        );
    }
}
