//! The in-memory, published state of every environment: the compiled
//! snapshot readers evaluate against and the change feed SSE clients follow.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use sextant_core::{Reason, Snapshot};
use sextant_store::{EnvSnapshot, Kind};
use tokio::sync::broadcast;

/// Number of [`Reason`] values counted per flag.
pub const REASONS: usize = 7;

/// Index of a reason in a flag's counters.
pub fn reason_index(r: Reason) -> usize {
    match r {
        Reason::Static => 0,
        Reason::TargetingMatch => 1,
        Reason::Split => 2,
        Reason::Disabled => 3,
        Reason::PrerequisiteFailed => 4,
        Reason::Default => 5,
        Reason::Error => 6,
    }
}

/// Reason names in index order.
pub const REASON_NAMES: [&str; REASONS] = [
    "STATIC",
    "TARGETING_MATCH",
    "SPLIT",
    "DISABLED",
    "PREREQUISITE_FAILED",
    "DEFAULT",
    "ERROR",
];

/// Evaluation counts of one flag, by reason. Shared across snapshot swaps
/// so counts survive changes; the hot path only does a relaxed atomic add.
pub type FlagCounters = [AtomicU64; REASONS];

/// One published, immutable version of an environment.
#[derive(Debug)]
pub struct Published {
    /// Workspace key.
    pub workspace: String,
    /// Environment key.
    pub environment: String,
    /// Environment id.
    pub environment_id: i64,
    /// Whether production.
    pub production: bool,
    /// The compiled ruleset.
    pub snapshot: Snapshot,
    /// Flag key → index into `counters` (document order, as `Snapshot::keys`).
    pub index: HashMap<Box<str>, usize>,
    /// Counters per flag, in document order.
    pub counters: Vec<Arc<FlagCounters>>,
    /// The SDK snapshot body (JSON), rendered once at publish.
    pub sdk_body: Arc<str>,
    /// Unix seconds of publication.
    pub published_at: i64,
}

impl Published {
    /// The snapshot version.
    pub fn version(&self) -> u64 {
        self.snapshot.version()
    }

    /// Counts one evaluation of the flag at `index`.
    pub fn count(&self, index: usize, reason: Reason) {
        if let Some(c) = self.counters.get(index) {
            c[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A change, as fanned out to SSE clients.
#[derive(Debug)]
pub struct LiveEvent {
    /// The snapshot version it produced.
    pub version: u64,
    /// The SDK `change` event data (JSON).
    pub sdk_change: String,
    /// Unix seconds.
    pub at: i64,
}

/// One environment's live slot.
pub struct EnvSlot {
    current: ArcSwap<Published>,
    /// Fan-out of changes. Bounded: a receiver that falls this far behind
    /// gets `Lagged` and its stream is closed (slow clients are dropped,
    /// memory stays bounded).
    events: broadcast::Sender<Arc<LiveEvent>>,
    /// The last changes, for `Last-Event-ID` replay. Bounded by `replay`.
    recent: Mutex<VecDeque<Arc<LiveEvent>>>,
    replay: usize,
}

impl EnvSlot {
    /// The current published version; an `Arc` clone, never torn.
    pub fn load(&self) -> Arc<Published> {
        self.current.load_full()
    }

    /// A receiver of future changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.events.subscribe()
    }

    /// Changes after `version`, if all of them are still retained.
    pub fn since(&self, version: u64) -> Option<Vec<Arc<LiveEvent>>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let missed: Vec<_> = recent.iter().filter(|e| e.version > version).cloned().collect();
        let current = self.current.load().version();
        let complete = match missed.first() {
            None => version == current,
            Some(first) => first.version == version + 1,
        };
        complete.then_some(missed)
    }
}

/// Every environment's slot, plus evaluation counters that outlive swaps.
pub struct Live {
    slots: RwLock<HashMap<i64, Arc<EnvSlot>>>,
    counters: Mutex<HashMap<(i64, String), Arc<FlagCounters>>>,
    buffer: usize,
    replay: usize,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Live {
    /// Empty; `buffer` bounds each SSE client's backlog, `replay` the
    /// changes kept for resume.
    pub fn new(buffer: usize, replay: usize) -> Self {
        Live {
            slots: RwLock::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            replay,
        }
    }

    /// The slot of an environment.
    pub fn slot(&self, environment_id: i64) -> Option<Arc<EnvSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&environment_id)
            .cloned()
    }

    /// All slots.
    pub fn all(&self) -> Vec<Arc<EnvSlot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Every flag's counters: (workspace, environment, flag, counters).
    pub fn counters(&self) -> Vec<(String, String, String, Arc<FlagCounters>)> {
        let mut out = Vec::new();
        for slot in self.all() {
            let p = slot.load();
            for (key, c) in p.snapshot.keys().zip(&p.counters) {
                out.push((p.workspace.clone(), p.environment.clone(), key.to_owned(), c.clone()));
            }
        }
        out
    }

    /// Removes an environment: its streams end (their sender is dropped).
    pub fn remove(&self, environment_id: i64) {
        self.slots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&environment_id);
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| *id != environment_id);
    }

    /// Atomically swaps in a new version of an environment and notifies its
    /// SSE clients. Callers publish in version order (the server serialises
    /// local writes and changes from other replicas with one lock); an older
    /// version than the current one is ignored.
    pub fn publish(&self, env: EnvSnapshot) {
        let id = env.environment_id;
        let counters: Vec<Arc<FlagCounters>> = {
            let mut all = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            env.snapshot
                .keys()
                .map(|k| all.entry((id, k.to_owned())).or_default().clone())
                .collect()
        };
        let index = env
            .snapshot
            .keys()
            .enumerate()
            .map(|(i, k)| (Box::from(k), i))
            .collect();
        let version = env.snapshot.version();
        let sdk_body: Arc<str> = json!({
            "workspace": env.workspace,
            "environment": env.environment,
            "version": version,
            "document": env.document,
        })
        .to_string()
        .into();
        // The version SSE clients of this process hold. A change that does
        // not follow it directly (a replica applying several changes made
        // elsewhere at once) is sent as the whole document.
        let previous = self.slot(id).map(|s| s.load().version());
        let contiguous = previous.is_none_or(|p| p + 1 == version);
        let event = env.cause.as_ref().map(|cause| {
            let mut change = json!({"version": version, "previous": previous.unwrap_or(version.saturating_sub(1))});
            match cause.kind {
                _ if !contiguous => {
                    change["document"] = serde_json::to_value(&env.document).unwrap_or(Value::Null);
                }
                Kind::Flag => {
                    let flag = env.document.flags.iter().find(|f| f.key == cause.key);
                    change["flags"] = json!(flag.into_iter().collect::<Vec<_>>());
                    change["deleted_flags"] = json!(if flag.is_none() { vec![&cause.key] } else { vec![] });
                }
                Kind::Segment => {
                    let seg = env.document.segments.iter().find(|s| s.key == cause.key);
                    change["segments"] = json!(seg.into_iter().collect::<Vec<_>>());
                    change["deleted_segments"] = json!(if seg.is_none() { vec![&cause.key] } else { vec![] });
                }
                _ => change["document"] = serde_json::to_value(&env.document).unwrap_or(Value::Null),
            }
            Arc::new(LiveEvent {
                version,
                sdk_change: change.to_string(),
                at: unix_now(),
            })
        });
        let published = Arc::new(Published {
            workspace: env.workspace,
            environment: env.environment,
            environment_id: id,
            production: env.production,
            snapshot: env.snapshot,
            index,
            counters,
            sdk_body,
            published_at: unix_now(),
        });
        let existing = self.slot(id);
        let slot = match existing {
            Some(slot) => {
                if slot.load().version() >= version && env.cause.is_some() {
                    return;
                }
                slot.current.store(published);
                slot
            }
            None => {
                let slot = Arc::new(EnvSlot {
                    current: ArcSwap::from(published),
                    events: broadcast::channel(self.buffer).0,
                    recent: Mutex::new(VecDeque::with_capacity(self.replay)),
                    replay: self.replay,
                });
                self.slots
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, slot.clone());
                slot
            }
        };
        if let Some(event) = event {
            {
                let mut recent = slot.recent.lock().unwrap_or_else(|e| e.into_inner());
                if recent.len() >= slot.replay {
                    recent.pop_front();
                }
                if slot.replay > 0 {
                    recent.push_back(event.clone());
                }
            }
            // No receivers is fine: nobody is streaming this environment.
            let _ = slot.events.send(event);
        }
    }
}
