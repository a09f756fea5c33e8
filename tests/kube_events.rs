//! The controller's Kubernetes Events against the real apiserver: `reconcile::publisher` writes
//! them itself (not with kube's `Recorder`, which kept every Event it wrote in memory), so the
//! apiserver must take what it writes: a new Event, and a repeat folded into the first one's
//! series by a patch.

use smpc_test_support as support;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::Resource;
use prometheus_client::metrics::counter::Counter;
use smpc::reconcile::publisher::{EventPublisher, EventWriter};
use support::stack;

fn event(reason: &str, note: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Test".into(),
        secondary: None,
    }
}

#[test]
fn a_repeated_event_is_counted_into_the_series_of_the_first_by_the_real_apiserver() {
    let s = stack();
    let ns = s.namespace("kube-events");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(s.var("KUBECONFIG")).expect("stack kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config");
        let client = kube::Client::try_from(config).expect("kube client");
        let subject: ConfigMap = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "subject"}
        }))
        .expect("config map");
        let subject = Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
            .create(&PostParams::default(), &subject)
            .await
            .expect("create the subject");
        let regarding = subject.object_ref(&());
        let dropped = Counter::default();
        let publisher = EventPublisher::new(
            EventWriter::new(
                client.clone(),
                Reporter {
                    controller: "smpc-test".into(),
                    instance: None,
                },
            ),
            dropped.clone(),
        );
        publisher.publish(event("Repeated", "first"), regarding.clone());
        publisher.publish(event("Repeated", "second"), regarding.clone());
        publisher.publish(event("Repeated", "third"), regarding.clone());
        publisher.publish(event("Other", "once"), regarding.clone());
        publisher.flush().await;
        assert_eq!(dropped.get(), 0);

        let events = Api::<K8sEvent>::namespaced(client, &ns.name)
            .list(&Default::default())
            .await
            .expect("list events");
        let mut by_reason: Vec<(String, Option<i32>, String)> = events
            .items
            .iter()
            .map(|e| {
                assert_eq!(e.reporting_controller.as_deref(), Some("smpc-test"));
                assert_eq!(e.type_.as_deref(), Some("Warning"));
                let about = e.regarding.as_ref().and_then(|r| r.name.clone());
                assert_eq!(about.as_deref(), Some("subject"));
                (
                    e.reason.clone().unwrap_or_default(),
                    e.series.as_ref().map(|s| s.count),
                    e.note.clone().unwrap_or_default(),
                )
            })
            .collect();
        by_reason.sort();
        assert_eq!(
            by_reason,
            [
                ("Other".to_string(), None, "once".to_string()),
                // As kube's recorder did: the first note stays, the series counts the repeats.
                ("Repeated".to_string(), Some(3), "first".to_string()),
            ]
        );
    });
}
