//! Kubernetes Events, published off the reconcile path.
//!
//! A reconcile hands its Events to an [`EventQueue`] and is done once its status is written, as
//! client-go's event broadcaster lets a controller go on: the status is the truth `kubectl get`
//! shows, an Event is its footnote. Publishing them inline made every reconcile of a fleet
//! starting up two API writes long (at 10,000 VbsBackups the fleet benchmark converged in 1.48x
//! the raw status-patch limit with inline Events, 1.13x without any). The queue is bounded: when
//! it is full a Normal Event is dropped and counted (`vbs_events_dropped_total`), while a Warning
//! waits for room, so failures are always told. Its publishers are few, so that Events never
//! take the API server from status writes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::metrics::{KindLabels, Metrics};

/// Events a kube [`Recorder`] publishes before [`EventRecorder`] replaces it with a fresh one.
const EVENTS_PER_RECORDER: usize = 1024;
/// Events waiting to be published, at most (a few hundred bytes each).
pub const QUEUE_CAPACITY: usize = 4096;
/// Events published at once.
const PUBLISHERS: usize = 8;

/// One Event about one object.
pub struct Pending {
    pub kind: &'static str,
    pub event: Event,
    pub regarding: ObjectReference,
}

/// The queue reconciles hand their Events to, and the task that publishes them.
pub struct EventQueue {
    sender: Mutex<Option<mpsc::Sender<Pending>>>,
    publisher: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl EventQueue {
    /// Starts the publishing task (on the current Tokio runtime).
    pub fn start(client: Client, reporter: Reporter, metrics: Arc<Metrics>) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let recorder = EventRecorder::new(client, reporter);
        let publisher = tokio::spawn(publish_all(receiver, recorder, metrics.clone()));
        EventQueue {
            sender: Mutex::new(Some(sender)),
            publisher: Mutex::new(Some(publisher)),
            metrics,
        }
    }

    /// Queues an Event. A Warning waits for room; a Normal Event finding the queue full is dropped,
    /// and so is any Event once the queue is closed.
    pub async fn publish(&self, pending: Pending) {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let kind = pending.kind;
        let refused = match sender {
            None => Some(pending),
            Some(sender) if pending.event.type_ == EventType::Warning => {
                sender.send(pending).await.err().map(|e| e.0)
            }
            Some(sender) => match sender.try_send(pending) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p)) => Some(p),
            },
        };
        if let Some(dropped) = refused {
            self.metrics
                .events_dropped
                .get_or_create(&KindLabels { kind })
                .inc();
            debug!(reason = %dropped.event.reason, "event dropped: the queue is full or closed");
        }
    }

    /// Stops taking Events and publishes those queued, for at most `grace`.
    pub async fn close(&self, grace: Duration) {
        drop(self.sender.lock().unwrap_or_else(PoisonError::into_inner).take());
        let publisher = self
            .publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(publisher) = publisher
            && tokio::time::timeout(grace, publisher).await.is_err()
        {
            warn!(?grace, "events still queued at shutdown were not published");
        }
    }
}

async fn publish_all(receiver: mpsc::Receiver<Pending>, recorder: EventRecorder, metrics: Arc<Metrics>) {
    let queued = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|pending| (pending, receiver))
    });
    queued
        .for_each_concurrent(PUBLISHERS, |pending| {
            let (recorder, metrics) = (&recorder, &metrics);
            async move {
                match recorder
                    .for_one_event()
                    .publish(&pending.event, &pending.regarding)
                    .await
                {
                    Ok(()) => {
                        metrics
                            .events
                            .get_or_create(&KindLabels { kind: pending.kind })
                            .inc();
                    }
                    Err(e) => warn!(error = %e, "cannot publish event"),
                }
            }
        })
        .await;
}

/// Hands out kube's [`Recorder`], replaced by a fresh one every [`EVENTS_PER_RECORDER`] Events.
///
/// A Recorder remembers every Event it published for six minutes (so that a repeat becomes a
/// series count on the first Event), and each publish scans that whole memory. A fleet starting up
/// publishes one Event per resource ("backup status is available"): at 10,000 VbsBackups a single
/// Recorder's memory was the largest thing in the process (about 20 MiB of peak RSS; 34 MiB of
/// heap while its table grew), and each of those publishes scanned all of it. A fresh Recorder
/// every 1,024 Events bounds both, as client-go's event correlator bounds its own (an LRU of 4,096
/// entries); a repeat that straddles a replacement becomes a new Event instead of a series count.
pub struct EventRecorder {
    client: Client,
    reporter: Reporter,
    /// The current Recorder and how many Events it was handed out for.
    current: Mutex<(Recorder, usize)>,
}

impl EventRecorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        EventRecorder {
            client,
            reporter,
            current: Mutex::new((recorder, 0)),
        }
    }

    /// The Recorder to publish one Event with. (A clone shares its memory of Events; the one
    /// replaced is dropped when its last publish in flight is done.)
    pub fn for_one_event(&self) -> Recorder {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.1 >= EVENTS_PER_RECORDER {
            *current = (Recorder::new(self.client.clone(), self.reporter.clone()), 0);
        }
        current.1 += 1;
        current.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn reporter() -> Reporter {
        Reporter {
            controller: "vbs-operator".into(),
            instance: None,
        }
    }

    fn pending(type_: EventType, n: usize) -> Pending {
        Pending {
            kind: "VbsBackup",
            event: Event {
                type_,
                reason: "Available".into(),
                note: Some(format!("event {n}")),
                action: "Sync".into(),
                secondary: None,
            },
            regarding: ObjectReference {
                api_version: Some("vbs.io/v1alpha1".into()),
                kind: Some("VbsBackup".into()),
                name: Some(format!("b{n}")),
                namespace: Some("default".into()),
                ..ObjectReference::default()
            },
        }
    }

    /// Answers an Event POST with the Event it sent.
    async fn answer((request, send): (Request<Body>, tower_test::mock::SendResponse<Response<Body>>)) {
        let body = request.into_body().collect_bytes().await.expect("body");
        send.send_response(
            Response::builder()
                .status(201)
                .body(Body::from(body.to_vec()))
                .expect("response"),
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_normal_events_and_keeps_warnings() {
        let (service, mut handle): (_, Handle) = tower_test::mock::pair();
        let metrics = Arc::new(Metrics::default());
        let queue = EventQueue::start(Client::new(service, "default"), reporter(), metrics.clone());
        let count = |family: &prometheus_client::metrics::family::Family<
            KindLabels,
            prometheus_client::metrics::counter::Counter,
        >| { family.get_or_create(&KindLabels { kind: "VbsBackup" }).get() };
        // Every publisher busy with an API server that does not answer yet, then a full queue.
        let mut requests = Vec::new();
        for n in 0..PUBLISHERS {
            queue.publish(pending(EventType::Normal, n)).await;
            requests.push(handle.next_request().await.expect("a publisher's request"));
        }
        for n in 0..QUEUE_CAPACITY {
            queue.publish(pending(EventType::Normal, PUBLISHERS + n)).await;
        }
        assert_eq!(count(&metrics.events_dropped), 0);
        queue.publish(pending(EventType::Normal, 0)).await;
        assert_eq!(count(&metrics.events_dropped), 1, "a Normal Event is dropped");

        // A Warning waits for room instead.
        let mut warning = Box::pin(queue.publish(pending(EventType::Warning, 0)));
        assert!(futures::poll!(&mut warning).is_pending());
        answer(requests.remove(0)).await;
        tokio::time::timeout(Duration::from_secs(10), warning)
            .await
            .expect("the Warning was queued once a publisher was free");
        assert_eq!(count(&metrics.events_dropped), 1);

        // Closing publishes everything queued, the Warning included.
        for request in requests {
            answer(request).await;
        }
        let api = tokio::spawn(async move {
            while let Some(request) = handle.next_request().await {
                answer(request).await;
            }
        });
        queue.close(Duration::from_secs(60)).await;
        api.abort();
        assert_eq!(count(&metrics.events), (PUBLISHERS + QUEUE_CAPACITY + 1) as u64);
        assert_eq!(count(&metrics.events_dropped), 1);
        // Closed: nothing more is taken.
        queue.publish(pending(EventType::Warning, 1)).await;
        assert_eq!(count(&metrics.events_dropped), 2);
    }

    #[tokio::test]
    async fn the_event_recorder_is_renewed_after_a_bounded_number_of_events() {
        let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let recorder = EventRecorder::new(Client::new(service, "default"), reporter());
        let handed_out = |r: &EventRecorder| r.current.lock().map(|c| c.1).unwrap_or_default();
        for _ in 0..EVENTS_PER_RECORDER {
            recorder.for_one_event();
        }
        assert_eq!(handed_out(&recorder), EVENTS_PER_RECORDER);
        recorder.for_one_event();
        assert_eq!(
            handed_out(&recorder),
            1,
            "a fresh Recorder (with an empty memory) took over"
        );
    }
}
