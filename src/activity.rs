//! The activity report: a bounded summary of what the workload did (programs launched, DNS names
//! asked, outbound destinations, listening ports), whatever the decision on it, sent to the console
//! with the heartbeats (`observed`) so that it can propose a rule from what was seen. Allowed
//! activity is never audited, so without this summary a console would only learn violations.
//!
//! Cost on the supervisor's hot path: no system call. A sensor that saw something calls [`note`],
//! which is a no-op until [`enable`] (the uplink calls it when a console is configured); then one
//! uncontended lock and one hash lookup. The heartbeat thread takes what is new on its own clock.
//!
//! Bounded: per kind at most [`MAX_ENTRIES`] distinct values for the whole run, each at most
//! [`MAX_VALUE`] bytes; anything beyond is counted (`dropped`), not kept. A value repeats in the
//! next report only when it was seen again (with how often since the last one).
//!
//! Acknowledgement: [`take`] hands out what is new and forgets it; a heartbeat that fails gives it
//! back with [`restore`], so a missed beat loses nothing.
//!
//! The values are the workload's (paths, names): hostile data, which the console shows escaped.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// Distinct values kept per kind for the whole run.
pub const MAX_ENTRIES: usize = 512;
/// The longest value kept, in bytes (a DNS name is at most 253; a longer path is dropped, never
/// cut: a cut path in an allow list would name another file).
pub const MAX_VALUE: usize = 256;

/// What an entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A program launched: its absolute path as executed.
    Process,
    /// A DNS question: the name, lowercased, without a trailing dot.
    Dns,
    /// A destination reached: `ADDRESS:PORT/PROTOCOL` (`10.0.0.2:53/udp`, `[fd00::1]:443/tcp`).
    Outbound,
    /// A port bound to listen on: `PORT/PROTOCOL` (`8080/tcp`).
    Listen,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Process, Kind::Dns, Kind::Outbound, Kind::Listen];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::Dns => "dns",
            Kind::Outbound => "outbound",
            Kind::Listen => "listen",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One value seen, and how often since the previous report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub kind: Kind,
    pub value: String,
    pub count: u64,
}

/// The heartbeat's `observed` field: what is new since the last acknowledged heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    #[serde(default)]
    pub entries: Vec<Entry>,
    /// Per kind, how many sightings were not kept (over the caps) since the last report.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped: BTreeMap<Kind, u64>,
}

impl Observed {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.dropped.is_empty()
    }
}

/// The values of one kind: each with its count since the last report (0: nothing new).
#[derive(Default)]
struct Values {
    counts: HashMap<String, u64>,
    dropped: u64,
}

/// The summary of one run.
#[derive(Default)]
pub struct Summary {
    kinds: [Values; 4],
}

impl Summary {
    /// One sighting of `value`.
    pub fn note(&mut self, kind: Kind, value: &str) {
        let values = &mut self.kinds[kind.index()];
        if let Some(count) = values.counts.get_mut(value) {
            *count += 1;
        } else if value.len() > MAX_VALUE || values.counts.len() >= MAX_ENTRIES {
            values.dropped += 1;
        } else {
            values.counts.insert(value.to_owned(), 1);
        }
    }

    /// What is new since the last report, forgotten here (the values stay known).
    pub fn take(&mut self) -> Observed {
        let mut observed = Observed::default();
        for kind in Kind::ALL {
            let values = &mut self.kinds[kind.index()];
            for (value, count) in values.counts.iter_mut().filter(|(_, c)| **c > 0) {
                observed.entries.push(Entry {
                    kind,
                    value: value.clone(),
                    count: std::mem::take(count),
                });
            }
            if values.dropped > 0 {
                observed
                    .dropped
                    .insert(kind, std::mem::take(&mut values.dropped));
            }
        }
        observed
    }

    /// A report the console did not acknowledge, given back to go with the next one.
    pub fn restore(&mut self, observed: Observed) {
        for e in observed.entries {
            let values = &mut self.kinds[e.kind.index()];
            // Taken from here, so known (values are never forgotten).
            if let Some(count) = values.counts.get_mut(&e.value) {
                *count += e.count;
            }
        }
        for (kind, n) in observed.dropped {
            self.kinds[kind.index()].dropped += n;
        }
    }
}

/// The run's summary, once a console is configured.
static SUMMARY: OnceLock<Mutex<Summary>> = OnceLock::new();

fn summary() -> Option<std::sync::MutexGuard<'static, Summary>> {
    // A poisoned lock still holds a usable summary.
    SUMMARY
        .get()
        .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// Starts summarising (the uplink, when a console is configured).
pub fn enable() {
    SUMMARY.get_or_init(Mutex::default);
}

/// A sighting; `value` is only made when summarising (`None`: nothing to note).
pub fn note(kind: Kind, value: impl FnOnce() -> Option<String>) {
    if SUMMARY.get().is_none() {
        return;
    }
    if let (Some(value), Some(mut summary)) = (value(), summary()) {
        summary.note(kind, &value);
    }
}

/// A destination reached over TCP (`stream`) or UDP; `dest` is only worked out when summarising.
pub fn reached(stream: bool, dest: impl FnOnce() -> Option<SocketAddr>) {
    note(Kind::Outbound, || {
        dest().map(|d| format!("{d}/{}", protocol(stream)))
    });
}

/// A local address bound; its port is a listening port unless 0 (the kernel's pick).
pub fn bound(stream: bool, local: impl FnOnce() -> Option<SocketAddr>) {
    note(Kind::Listen, || {
        local()
            .filter(|l| l.port() != 0)
            .map(|l| format!("{}/{}", l.port(), protocol(stream)))
    });
}

fn protocol(stream: bool) -> &'static str {
    match stream {
        true => "tcp",
        false => "udp",
    }
}

/// What is new since the last report (nothing when not summarising).
pub fn take() -> Observed {
    summary().map(|mut s| s.take()).unwrap_or_default()
}

/// A report that was not acknowledged.
pub fn restore(observed: Observed) {
    if let Some(mut s) = summary() {
        s.restore(observed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(o: &Observed) -> Vec<(Kind, &str, u64)> {
        let mut v: Vec<_> = o
            .entries
            .iter()
            .map(|e| (e.kind, e.value.as_str(), e.count))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_report_holds_what_is_new_with_counts_and_repeats_only_what_was_seen_again() {
        let mut s = Summary::default();
        s.note(Kind::Process, "/bin/sh");
        s.note(Kind::Process, "/bin/sh");
        s.note(Kind::Dns, "web.test");
        s.note(Kind::Outbound, "10.0.0.1:80/tcp");
        let first = s.take();
        assert_eq!(
            entries(&first),
            [
                (Kind::Process, "/bin/sh", 2),
                (Kind::Dns, "web.test", 1),
                (Kind::Outbound, "10.0.0.1:80/tcp", 1),
            ]
        );
        assert!(s.take().is_empty(), "nothing new, nothing sent");
        s.note(Kind::Dns, "web.test");
        assert_eq!(entries(&s.take()), [(Kind::Dns, "web.test", 1)]);
    }

    #[test]
    fn distinct_values_and_their_length_are_capped_and_the_rest_counted() {
        let mut s = Summary::default();
        for i in 0..MAX_ENTRIES + 10 {
            s.note(Kind::Dns, &format!("n{i}.test"));
        }
        s.note(Kind::Process, &format!("/{}", "a".repeat(MAX_VALUE)));
        s.note(Kind::Process, &format!("/{}", "b".repeat(MAX_VALUE - 1)));
        let o = s.take();
        let dns = o.entries.iter().filter(|e| e.kind == Kind::Dns).count();
        assert_eq!(dns, MAX_ENTRIES);
        assert_eq!(o.dropped.get(&Kind::Dns), Some(&10));
        assert_eq!(o.dropped.get(&Kind::Process), Some(&1));
        assert!(o.entries.iter().all(|e| e.value.len() <= MAX_VALUE));
        // A value kept before the cap is still counted once the cap is reached.
        s.note(Kind::Dns, "n0.test");
        s.note(Kind::Dns, "new.test");
        let o = s.take();
        assert_eq!(entries(&o), [(Kind::Dns, "n0.test", 1)]);
        assert_eq!(o.dropped.get(&Kind::Dns), Some(&1));
    }

    #[test]
    fn a_report_not_acknowledged_goes_with_the_next_one() {
        let mut s = Summary::default();
        s.note(Kind::Listen, "8080/tcp");
        s.note(Kind::Process, &"x".repeat(MAX_VALUE + 1));
        let missed = s.take();
        s.note(Kind::Listen, "8080/tcp");
        s.note(Kind::Listen, "9090/udp");
        s.restore(missed);
        let o = s.take();
        assert_eq!(
            entries(&o),
            [(Kind::Listen, "8080/tcp", 2), (Kind::Listen, "9090/udp", 1)]
        );
        assert_eq!(o.dropped.get(&Kind::Process), Some(&1));
        assert!(s.take().is_empty(), "acknowledged: gone");
    }

    #[test]
    fn the_wire_shape() {
        let mut s = Summary::default();
        s.note(Kind::Outbound, "10.53.0.1:53/udp");
        s.note(Kind::Dns, &"d".repeat(MAX_VALUE + 1));
        let json = serde_json::to_value(s.take()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "entries": [{"kind": "outbound", "value": "10.53.0.1:53/udp", "count": 1}],
                "dropped": {"dns": 1}
            })
        );
        let back: Observed = serde_json::from_value(json).unwrap();
        assert_eq!(back.entries.len(), 1);
        assert!(serde_json::from_str::<Observed>(r#"{"entries": [], "extra": 1}"#).is_err());
    }
}
