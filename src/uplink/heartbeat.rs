//! Heartbeats: every few seconds the console hears which defender this is, what it protects and
//! which policy revision it enforces (the console's defenders page), and what the workload was seen
//! doing since the last heartbeat it acknowledged (`observed`, the activity report: activity.rs).
//! They also serve as the uplink's clock for writing folded `defender` events.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Shared, lock};
use crate::activity::{self, Observed};

/// How often; the console shows a defender as connected while it heard from it lately.
const INTERVAL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(5);

/// The body of `POST /api/v1/defenders/heartbeat`.
#[derive(Serialize)]
struct Beat<'a> {
    id: &'a str,
    container: &'a str,
    image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    version: &'static str,
    /// The console revision in force (`null` under `--policy` or the default).
    revision: Option<&'a str>,
    /// The ports the web application firewall actually sits in front of: taken over at their
    /// bind and protected by the WAAS rule in force (left out when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    protects: Vec<u16>,
    /// Left out when nothing is new (and by a defender with no console, which never beats).
    #[serde(skip_serializing_if = "Observed::is_empty")]
    observed: Observed,
}

/// Runs forever (the thread ends with the process).
pub(super) fn run(shared: &Shared) {
    loop {
        beat(shared, TIMEOUT);
        lock(&shared.reports).flush_due(Instant::now());
        std::thread::sleep(INTERVAL);
    }
}

/// One heartbeat, with what is new in the activity report; what the console did not acknowledge
/// (any failure) goes with the next one.
pub(super) fn beat(shared: &Shared, timeout: Duration) {
    let in_force = shared.live.current();
    let observed = activity::take();
    let beat = Beat {
        id: &shared.instance,
        container: &shared.scope.container,
        image: &shared.scope.image,
        task: shared.scope.task.as_deref(),
        cluster: shared.scope.cluster.as_deref(),
        family: shared.scope.family.as_deref(),
        service: shared.scope.service.as_deref(),
        version: env!("CARGO_PKG_VERSION"),
        revision: in_force.source.revision(),
        protects: {
            let in_force = shared.waas.current();
            crate::waas::proxy::protected_ports()
                .into_iter()
                .filter(|port| in_force.app(*port).is_some())
                .collect()
        },
        observed,
    };
    let body = serde_json::to_vec(&beat).expect("a heartbeat always serializes");
    let ticket = shared.exchange();
    match shared.client.heartbeat(&body, timeout) {
        Ok(()) => shared.reached(ticket),
        Err(e) => {
            activity::restore(beat.observed);
            shared.missed(ticket, &e);
        }
    }
}
