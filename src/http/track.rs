//! Takeovers started by the service, while they run: their phase events so far and a channel
//! for new ones, so that `GET /api/v1/takeovers/{id}/events` can replay and then follow. A
//! finished takeover is removed; its events are then read from the audit in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, Notify};

use crate::engine::{Engine, EventSink, PhaseEvent, TakeoverReport, TakeoverRequest};

use super::metrics::Metrics;

#[derive(Debug, Clone)]
pub enum TrackEvent {
    Phase(PhaseEvent),
    Done(Box<TakeoverReport>),
}

pub struct Track {
    /// Events so far; the lock is also held while sending, so a subscriber that copies them
    /// and subscribes under it misses nothing and sees nothing twice.
    past: Mutex<Vec<TrackEvent>>,
    tx: broadcast::Sender<TrackEvent>,
}

impl Track {
    fn push(&self, ev: TrackEvent) {
        let mut past = self.past.lock().expect("track");
        past.push(ev.clone());
        let _ = self.tx.send(ev);
    }

    /// The events so far and a receiver for the rest.
    pub fn follow(&self) -> (Vec<TrackEvent>, broadcast::Receiver<TrackEvent>) {
        let past = self.past.lock().expect("track");
        (past.clone(), self.tx.subscribe())
    }
}

#[derive(Default)]
pub struct Tracks {
    running: Mutex<HashMap<String, Arc<Track>>>,
    idle: Notify,
}

impl Tracks {
    pub fn get(&self, id: &str) -> Option<Arc<Track>> {
        self.running.lock().expect("tracks").get(id).cloned()
    }

    /// Starts a takeover in its own task; the handle ends with its report.
    /// Whether takeover `id` runs in this process now.
    pub fn is_running(&self, id: &str) -> bool {
        self.running.lock().expect("tracks").contains_key(id)
    }

    pub fn start(
        self: &Arc<Self>,
        engine: &Engine,
        metrics: &Arc<Metrics>,
        req: TakeoverRequest,
    ) -> (String, tokio::task::JoinHandle<TakeoverReport>) {
        let id = Engine::new_id();
        let (tx, _) = broadcast::channel(256);
        let track = Arc::new(Track { past: Mutex::new(Vec::new()), tx });
        self.running.lock().expect("tracks").insert(id.clone(), track.clone());
        let sink_track = track.clone();
        let sink_metrics = metrics.clone();
        let sink: EventSink = Arc::new(move |ev: &PhaseEvent| {
            sink_metrics.phase(ev);
            sink_track.push(TrackEvent::Phase(ev.clone()));
        });
        let (engine, metrics, tracks, tid) = (engine.clone(), metrics.clone(), self.clone(), id.clone());
        let handle = tokio::spawn(async move {
            // However this task ends (a panic, a cancelled task at shutdown), the takeover stops
            // counting as running here: followers and graceful shutdown do not wait for ever.
            let _running = Running { tracks, id: tid.clone() };
            let report = engine.takeover_with_id(tid, req, Some(sink)).await;
            metrics.takeover_finished(&report);
            track.push(TrackEvent::Done(Box::new(report.clone())));
            report
        });
        (id, handle)
    }

    fn finished(&self, id: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(id);
        if running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Waits until no takeover started here is running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running.lock().expect("tracks").is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// A takeover started here, counted as running until this is dropped.
struct Running {
    tracks: Arc<Tracks>,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tracks.finished(&self.id);
    }
}
