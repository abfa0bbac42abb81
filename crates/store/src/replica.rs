//! What several replicas on one database need from the store: a feed of
//! the changes any replica commits, and leadership of a named duty (such as
//! the rollout scheduler) held by exactly one replica at a time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::{Connection, Row};

use crate::error::{Kind, Result, StoreError};
use crate::model::{Cause, Committed};

/// The PostgreSQL `NOTIFY` channel every write announces itself on.
pub(crate) const CHANNEL: &str = "sextant_changes";

/// A committed write, as announced to every replica. Carries each changed
/// environment's new snapshot version, so a replica knows exactly which
/// version a change produced and can forward it to its SSE clients as the
/// same delta the writing replica sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeNotice {
    /// The change record id (0 for writes without one, such as bootstrap).
    pub change_id: i64,
    /// What changed, when the write changed snapshots.
    pub kind: Option<Kind>,
    /// Its key.
    pub key: Option<String>,
    /// What was done (`create`, `turn_on`, …).
    pub action: Option<String>,
    /// `(environment id, snapshot version)` of every snapshot the write produced.
    pub snapshots: Vec<(i64, i64)>,
    /// Environments the write removed.
    pub removed: Vec<i64>,
}

impl ChangeNotice {
    /// The notice of a committed write.
    pub(crate) fn of<T>(c: &Committed<T>) -> ChangeNotice {
        let cause = c.snapshots.iter().find_map(|s| s.cause.as_ref());
        ChangeNotice {
            change_id: c.change_id,
            kind: cause.map(|c| c.kind),
            key: cause.map(|c| c.key.clone()),
            action: cause.map(|c| c.action.clone()),
            snapshots: c
                .snapshots
                .iter()
                .map(|s| (s.environment_id, s.snapshot.version() as i64))
                .collect(),
            removed: c.removed_environments.clone(),
        }
    }

    /// The cause to publish the snapshot `(environment, version)` with: the
    /// notice's own when it produced exactly that version.
    pub fn cause_of(&self, environment_id: i64, version: i64) -> Option<Cause> {
        let listed = self.snapshots.contains(&(environment_id, version));
        match (listed, self.kind, &self.key, &self.action) {
            (true, Some(kind), Some(key), Some(action)) => Some(Cause {
                change_id: self.change_id,
                kind,
                key: key.clone(),
                action: action.clone(),
            }),
            _ => None,
        }
    }

    pub(crate) fn to_payload(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a [`ChangeFeed`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A replica (possibly this one) committed a write.
    Change(ChangeNotice),
    /// Notices may have been missed (first connection, reconnection after
    /// a lost connection, or an unreadable notice): compare every
    /// environment's stored snapshot version with the published one.
    Resync,
}

/// The changes committed by every replica sharing the database, from
/// PostgreSQL `LISTEN`. Notices are best effort (lost while the connection
/// is down), so a [`FeedEvent::Resync`] follows every (re)connection.
pub struct ChangeFeed {
    listener: PgListener,
    /// A resync is owed once the connection is back.
    resync: bool,
}

impl ChangeFeed {
    /// Listens on its own connection (not one of the store's pool).
    pub(crate) async fn connect(options: PgConnectOptions) -> Result<ChangeFeed> {
        // Named so operators can tell it apart in `pg_stat_activity`.
        let options = options.application_name("sextant-feed");
        let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(ChangeFeed { listener, resync: true })
    }

    /// The next event. Starts with [`FeedEvent::Resync`] (changes made
    /// before listening began are caught up that way). After a lost
    /// connection the feed reconnects and yields `Resync`; an `Err` means
    /// reconnecting failed, and the next call tries again.
    pub async fn next(&mut self) -> Result<FeedEvent> {
        if self.resync {
            // Any statement reconnects and re-listens if the connection is gone.
            sqlx::query("SELECT 1").execute(&mut self.listener).await?;
            self.resync = false;
            return Ok(FeedEvent::Resync);
        }
        match self.listener.try_recv().await {
            Ok(Some(n)) => Ok(match serde_json::from_str(n.payload()) {
                Ok(notice) => FeedEvent::Change(notice),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable change notice; resyncing");
                    FeedEvent::Resync
                }
            }),
            // Lost and (eagerly) reconnected: anything in between is unknown.
            Ok(None) => Ok(FeedEvent::Resync),
            Err(e) => {
                self.resync = true;
                Err(e.into())
            }
        }
    }
}

/// The advisory lock key of a leadership name.
pub(crate) fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("sextant-leader:{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Leadership of a named duty, held until dropped or lost.
///
/// With PostgreSQL it is a session advisory lock on a connection of its
/// own: when the holder exits or dies, its connection ends and the database
/// releases the lock, so another replica's [`crate::Store::try_lead`]
/// succeeds. With SQLite (one process) it is an in-process lock.
pub struct Leadership {
    name: String,
    hold: Hold,
}

enum Hold {
    Postgres(Option<PgConnection>),
    Local(#[expect(dead_code, reason = "held for its Drop")] LocalHold),
}

/// Releases an in-process leadership on drop.
pub(crate) struct LocalHold {
    pub(crate) held: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    pub(crate) name: String,
}

impl Drop for LocalHold {
    fn drop(&mut self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

impl Leadership {
    pub(crate) fn postgres(name: &str, conn: PgConnection) -> Leadership {
        Leadership {
            name: name.to_owned(),
            hold: Hold::Postgres(Some(conn)),
        }
    }

    pub(crate) fn local(hold: LocalHold) -> Leadership {
        Leadership {
            name: hold.name.clone(),
            hold: Hold::Local(hold),
        }
    }

    /// The duty's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that leadership is still held: with PostgreSQL, that the
    /// session holding the lock is alive. Once this fails the leadership is
    /// lost for good (another replica may already lead); stop the duty and
    /// try to lead again.
    pub async fn check(&mut self) -> Result<()> {
        match &mut self.hold {
            Hold::Local(_) => Ok(()),
            Hold::Postgres(conn) => {
                let Some(c) = conn.as_mut() else {
                    return Err(StoreError::Database(format!("leadership of `{}` was lost", self.name)));
                };
                let alive = sqlx::query("SELECT 1 AS one").fetch_one(&mut *c).await;
                match alive.and_then(|row| row.try_get::<i32, _>("one")) {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        *conn = None;
                        Err(StoreError::Database(format!(
                            "leadership of `{}` was lost: {e}",
                            self.name
                        )))
                    }
                }
            }
        }
    }

    /// Gives leadership up now (dropping does too, without waiting).
    pub async fn release(mut self) {
        if let Hold::Postgres(conn) = &mut self.hold
            && let Some(c) = conn.take()
        {
            // Closing the session releases its advisory locks.
            let _ = c.close().await;
        }
    }
}
