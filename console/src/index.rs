//! The bitmap index of audits kept up: each complete chunk of stored events is sealed into it
//! ([`Store::seal`](crate::store::Store::seal)) as soon as one is waiting, one after the other
//! (a backlog after an upgrade too), and the newest in part as it grows; then the store is asked
//! again every few seconds. Every
//! instance sharing a database runs it; a chunk another one sealed first is skipped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::AppState;

/// How long it waits when no chunk is waiting (or sealing failed): the newest events are counted
/// from the events meanwhile, a few chunks at most.
const EVERY: Duration = Duration::from_secs(2);

/// The newest chunk is sealed in part only when nothing was sealed for this long: under steady
/// ingestion a chunk completes every few seconds (6.5 s at 10,000 events/s), and its parts would
/// be bitmaps written again and again for nothing (ingestion on PostgreSQL fell from 11,295 to
/// 9,796 events/s with them); a quiet database, or a slow stream, gets its newest events sealed
/// within this much plus one pass.
const PARTS_AFTER: Duration = Duration::from_secs(10);

/// Seals chunks for ever.
pub async fn run(state: Arc<AppState>) {
    let mut last = Instant::now();
    loop {
        let parts = last.elapsed() >= PARTS_AFTER;
        match state.store(move |s| s.seal(parts)).await {
            // The next one may be waiting already.
            Ok(Some(sealed)) => {
                last = Instant::now();
                match sealed.upto {
                    None => log::info!(
                        "index: sealed chunk {} ({} events)",
                        sealed.chunk,
                        sealed.events
                    ),
                    Some(upto) => log::info!(
                        "index: sealed chunk {} to position {upto} ({} events)",
                        sealed.chunk,
                        sealed.events
                    ),
                }
                continue;
            }
            Ok(None) => {}
            // Tried again after the pause; counts meanwhile read the events.
            Err(e) => log::warn!("index: {}", e.message),
        }
        tokio::time::sleep(EVERY).await;
    }
}
