//! The connections the PostgreSQL store keeps for itself, outside the pool: the one that
//! `LISTEN`s for policy changes made by any instance, and the leases (session advisory locks),
//! each on its own connection so that the lock ends when its holder's connection does.

use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{Lease, StoreError};

/// The wait before listening again after the connection failed (doubling up to the maximum).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a lease's check that its connection still answers may take.
const LEASE_CHECK: Duration = Duration::from_secs(5);

/// Listens on `channel` for ever, waking `changes` at each notification, and also each time it
/// (re)connects: what was announced while it was not listening is found by the check it wakes.
pub async fn run(
    config: Config,
    tls: MakeRustlsConnect,
    channel: &'static str,
    changes: Arc<Notify>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match listen(&config, &tls, channel, &changes).await {
            Ok(()) => log::warn!("the database closed the connection listening for policy changes"),
            Err(e) => log::error!("listening for policy changes: {e}"),
        }
        // Meanwhile the app's periodic check keeps the long polls current.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's worth of listening; returns when it ends.
async fn listen(
    config: &Config,
    tls: &MakeRustlsConnect,
    channel: &str,
    changes: &Arc<Notify>,
) -> Result<(), StoreError> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let wake = changes.clone();
    // Notifications arrive on the connection itself, which must be polled for the client's
    // `LISTEN` to complete at all.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(StoreError::from(e)),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    changes.notify_one();
    let ended = driver.await;
    drop(client);
    ended.map_err(|e| StoreError {
        source: format!("the listening task: {e}").into(),
    })?
}

/// A session advisory lock held on a connection of its own.
struct Held {
    client: tokio_postgres::Client,
    handle: tokio::runtime::Handle,
}

impl Lease for Held {
    fn held(&self) -> bool {
        // A connection cut without a word (a partition) looks open until a query fails: one
        // round trip proves the session, and with it the lock, still lives.
        !self.client.is_closed()
            && self.handle.block_on(async {
                tokio::time::timeout(LEASE_CHECK, self.client.simple_query("SELECT 1"))
                    .await
                    .is_ok_and(|r| r.is_ok())
            })
    }
}

/// The advisory lock key of a lease's name: the first 8 bytes of its SHA-256.
pub(super) fn key(name: &str) -> i64 {
    let digest = sha2::Sha256::digest(name.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The lease `name` if no other instance holds it: `None` if one does.
pub async fn lease(
    config: Config,
    tls: MakeRustlsConnect,
    name: &str,
) -> Result<Option<Box<dyn Lease>>, StoreError> {
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::warn!("a lease's connection to the database ended: {e}");
        }
    });
    let taken: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key(name)])
        .await?
        .get(0);
    Ok(taken.then(|| {
        Box::new(Held {
            client,
            handle: tokio::runtime::Handle::current(),
        }) as Box<dyn Lease>
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_differ_by_name_and_stay_the_same() {
        assert_eq!(super::key("webhook:a"), super::key("webhook:a"));
        assert_ne!(super::key("webhook:a"), super::key("webhook:b"));
    }
}
