//! Retention (`--retention-days`): audits, activity-log entries, defenders and observations older
//! than the period are deleted at start and then every hour, a batch per write transaction so
//! that ingestion never waits long. Storage takes the cutoff, so that the rule is tested with
//! any clock. Several console instances sharing a database take turns: one sweeps per hour.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::app::AppState;
use crate::store::{Expired, audits_cutoff};

/// How often a sweep runs after the first.
const EVERY: Duration = Duration::from_secs(3600);
/// A sweep is this instance's turn when no instance started one this long ago or later: a little
/// under [`EVERY`], so that the instance whose turn it was keeps it despite its timer's drift.
const TURN: Duration = Duration::from_secs(3300);
/// Rows deleted per write transaction.
const BATCH: u32 = 1000;

/// The time before which rows are deleted, `days` before `now`; `None` for 0 (keep forever).
pub fn cutoff(now: SystemTime, days: u32) -> Option<String> {
    let period = Duration::from_secs(u64::from(days) * 86_400);
    // Not before the epoch: RFC 3339 times of ours start there.
    let cutoff = now
        .checked_sub(period)
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    (days > 0).then(|| humantime::format_rfc3339_micros(cutoff).to_string())
}

/// Sweeps at once and then every [`EVERY`], for ever; with 0 days, never.
pub async fn run(state: Arc<AppState>, days: u32) {
    if days == 0 {
        eprintln!("defender-console: retention: off (--retention-days 0): everything is kept");
        return;
    }
    eprintln!(
        "defender-console: retention: audits, activity, defenders and observations older than \
         {days} days are deleted now and every hour"
    );
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        ticks.tick().await;
        let Some(cutoff) = cutoff(SystemTime::now(), days) else {
            return;
        };
        let now = SystemTime::now();
        let (at, since) = (
            humantime::format_rfc3339_micros(now).to_string(),
            humantime::format_rfc3339_micros(now.checked_sub(TURN).unwrap_or(now)).to_string(),
        );
        // A failure to ask is logged by `store`; the next tick asks again.
        if !matches!(
            state.store(move |s| s.turn("retention", &at, &since)).await,
            Ok(true)
        ) {
            continue;
        }
        let before = cutoff.clone();
        match state.store(move |s| s.expire(&before, BATCH)).await {
            Ok(expired) if expired != Expired::default() => eprintln!(
                "defender-console: retention: deleted {} audits older than {}, {} activity \
                 entries, {} defenders, {} observations older than {cutoff} ({days} days)",
                expired.audits,
                audits_cutoff(&cutoff).unwrap_or_else(|| cutoff.clone()),
                expired.activity,
                expired.defenders,
                expired.observations
            ),
            Ok(_) => {}
            // Retried at the next sweep; nothing is decided on it meanwhile.
            Err(e) => eprintln!("defender-console: retention: {}", e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs() {
        let now = humantime::parse_rfc3339("2026-12-06T10:00:00Z").unwrap();
        assert_eq!(cutoff(now, 0), None);
        assert_eq!(
            cutoff(now, 1).as_deref(),
            Some("2026-12-05T10:00:00.000000Z")
        );
        assert_eq!(
            cutoff(now, 90).as_deref(),
            Some("2026-09-07T10:00:00.000000Z")
        );
        // Beyond the epoch: everything is younger.
        assert_eq!(
            cutoff(now, u32::MAX).as_deref(),
            Some("1970-01-01T00:00:00.000000Z")
        );
    }
}
