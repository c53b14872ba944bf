//! The bitmap index of audits kept up: each complete chunk of stored events is sealed into it
//! ([`Store::seal`](crate::store::Store::seal)) as soon as one is waiting, one after the other
//! (a backlog after an upgrade too), and the newest in part as it grows; then the store is asked
//! again every few seconds. Every
//! instance sharing a database runs it; a chunk another one sealed first is skipped.

use std::sync::Arc;
use std::time::Duration;

use crate::app::AppState;

/// How long it waits when no chunk is waiting (or sealing failed): the newest events are counted
/// from the events meanwhile, a few chunks at most.
const EVERY: Duration = Duration::from_secs(2);

/// Seals chunks for ever.
pub async fn run(state: Arc<AppState>) {
    loop {
        match state.store(|s| s.seal()).await {
            // The next one may be waiting already.
            Ok(Some(sealed)) => {
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
