//! Alignment workflows: the approval policy and change requests, flag
//! lifecycle (archive, first exposure, 30-day reviews), strategic
//! principles and their violations, the learnings log, post-mortems,
//! webhooks and deploy events (DORA).
//!
//! Every write is one transaction with its change record and audit entry,
//! like the rest of the store. Approving a change request is not a separate
//! write: the approved mutation carries [`ChangeMeta::approves`] and the
//! request is marked applied (and the approval audited) inside the
//! mutation's own transaction, so an approval never exists without its
//! effect, nor the effect without its approval.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::model::{ChangeMeta, Committed, FlagRecord};
use crate::{Backend, Store};

// ------------------------------------------------------------------ policy

/// How a change is treated by the approval policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeClass {
    /// Applied at once for a role that may make it.
    Reversible,
    /// Becomes a change request that another product/admin person approves.
    Irreversible,
}

/// Actions that are always irreversible; a policy cannot make them reversible.
pub const ALWAYS_IRREVERSIBLE: &[&str] = &[
    "flag.delete",
    "flag.archive",
    "flag.restore",
    "change.revert",
    "policy.update",
    "experiment.criteria",
    "north_star.update",
    "events.delete",
];

/// Reversible-by-default actions a workspace policy may additionally gate.
pub const GATEABLE: &[&str] = &["flag.update", "flag.targeting", "segment.delete"];

/// A workspace's approval policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Extra actions (from [`GATEABLE`]) that need approval in this workspace.
    #[serde(default)]
    pub require_approval: Vec<String>,
}

impl Policy {
    /// Whether `action` applies at once or needs a change request.
    pub fn classify(&self, action: &str) -> ChangeClass {
        if ALWAYS_IRREVERSIBLE.contains(&action) || self.require_approval.iter().any(|a| a == action) {
            ChangeClass::Irreversible
        } else {
            ChangeClass::Reversible
        }
    }

    /// Every problem with this policy as field errors.
    pub fn problems(&self) -> Vec<crate::FieldError> {
        self.require_approval
            .iter()
            .enumerate()
            .filter(|(_, a)| !GATEABLE.contains(&a.as_str()) && !ALWAYS_IRREVERSIBLE.contains(&a.as_str()))
            .map(|(i, a)| crate::FieldError {
                field: format!("/policy/require_approval/{i}"),
                message: format!("unknown action `{a}`; gateable actions are {}", GATEABLE.join(", ")),
            })
            .collect()
    }
}

/// A policy as stored, with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyRecord {
    /// Workspace key.
    pub workspace: String,
    /// The policy.
    pub policy: Policy,
    /// 0 for the default (never written) policy.
    pub version: i64,
    /// The actions that always need approval, whatever the policy says.
    pub always_irreversible: Vec<String>,
}

// --------------------------------------------------------- change requests

/// Status of a change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved and applied (one transaction).
    Applied,
    /// Rejected; nothing changed.
    Rejected,
}

impl RequestStatus {
    /// Wire and column name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Applied => "applied",
            RequestStatus::Rejected => "rejected",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RequestStatus::Pending,
            "applied" => RequestStatus::Applied,
            "rejected" => RequestStatus::Rejected,
            _ => return None,
        })
    }
}

/// An irreversible change waiting for, or decided by, a second person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRequest {
    /// Id.
    pub id: i64,
    /// Workspace key.
    pub workspace: String,
    /// The policy action (`flag.delete`, `flag.archive`, …).
    pub action: String,
    /// Kind of thing it changes (`flag`, `policy`, …).
    pub kind: String,
    /// Key of the thing.
    pub key: String,
    /// Environment, for environment-specific changes.
    pub environment: Option<String>,
    /// What the change needs to apply.
    pub payload: Option<Value>,
    /// Status.
    pub status: RequestStatus,
    /// Actor who asked.
    pub requested_by: String,
    /// Why.
    pub reason: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Actor who approved or rejected.
    pub decided_by: Option<String>,
    /// RFC 3339.
    pub decided_at: Option<String>,
    /// Why it was approved or rejected.
    pub decision_reason: Option<String>,
    /// The change record that applied it.
    pub applied_change_id: Option<i64>,
    /// For `change.revert`: the change it undoes.
    pub reverts_change_id: Option<i64>,
}

/// Input for a change request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChangeRequest {
    /// The policy action.
    pub action: String,
    /// Kind of thing.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Environment, if the change is confined to one.
    pub environment: Option<String>,
    /// What the change needs to apply.
    pub payload: Option<Value>,
    /// For `change.revert`: the change to undo.
    pub reverts_change_id: Option<i64>,
}

/// One stored change record (without its audit hashes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeRecord {
    /// Id.
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// Workspace key.
    pub workspace: Option<String>,
    /// Kind of thing.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Environment.
    pub environment: Option<String>,
    /// Reason.
    pub reason: Option<String>,
    /// JSON before.
    pub before: Option<Value>,
    /// JSON after.
    pub after: Option<Value>,
}

// --------------------------------------------------------------- lifecycle

/// Lifecycle facts about a flag kept beside its definition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlagLifecycle {
    /// Flag key.
    pub flag: String,
    /// When it was archived (by an approved change request).
    pub archived_at: Option<String>,
    /// First evaluation or exposure in a production environment.
    pub first_exposed_at: Option<String>,
    /// The production environment of that first exposure.
    pub first_exposed_env: Option<String>,
}

/// The 30-day review's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// Remove the feature.
    Kill,
    /// Change it and look again.
    Iterate,
    /// Keep it (launch).
    Keep,
}

impl ReviewDecision {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Kill => "kill",
            ReviewDecision::Iterate => "iterate",
            ReviewDecision::Keep => "keep",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "kill" => ReviewDecision::Kill,
            "iterate" => ReviewDecision::Iterate,
            "keep" => ReviewDecision::Keep,
            _ => return None,
        })
    }
}

/// A flag's 30-day review.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagReview {
    /// Id.
    pub id: i64,
    /// Workspace key.
    pub workspace: String,
    /// Flag key.
    pub flag: String,
    /// First exposure in production.
    pub first_exposed_at: String,
    /// 30 days after the first exposure.
    pub due_at: String,
    /// The decision, once reviewed.
    pub decision: Option<ReviewDecision>,
    /// The hypothesis' metric at review time.
    pub metric: Option<String>,
    /// The hypothesised (minimum) relative effect, signed by direction.
    pub hypothesised_effect: Option<f64>,
    /// The relative movement observed.
    pub observed_effect: Option<f64>,
    /// Notes.
    pub notes: Option<String>,
    /// Who reviewed.
    pub reviewer: Option<String>,
    /// RFC 3339.
    pub reviewed_at: Option<String>,
}

/// The outcome recorded by a 30-day review.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewOutcome {
    /// Kill, iterate or keep.
    pub decision: ReviewDecision,
    /// The relative movement of the hypothesis' metric observed.
    pub observed_effect: Option<f64>,
    /// Notes (also the learning's text).
    pub notes: Option<String>,
    /// Link to the evidence (dashboard, analysis).
    pub evidence: Option<String>,
}

// -------------------------------------------------- principles, violations

/// A named strategic principle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principle {
    /// Key, unique in the workspace.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What it asks of everyone.
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A declared, justified violation of a principle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Id.
    pub id: i64,
    /// Principle key.
    pub principle: String,
    /// What violates it (`flag:checkout`, `change:42`, …).
    pub subject: String,
    /// Why it is worth it.
    pub justification: String,
    /// The accountable owner.
    pub owner: String,
    /// When it must be looked at again (YYYY-MM-DD).
    pub review_date: String,
    /// Who declared it.
    pub created_by: String,
    /// RFC 3339.
    pub created_at: String,
    /// When it was resolved.
    pub resolved_at: Option<String>,
    /// How it was resolved.
    pub resolution: Option<String>,
}

/// Input for a violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewViolation {
    /// Principle key (must exist).
    pub principle: String,
    /// What violates it.
    pub subject: String,
    /// Why it is worth it.
    pub justification: String,
    /// The accountable owner.
    pub owner: String,
    /// YYYY-MM-DD.
    pub review_date: String,
}

// --------------------------------------------------------------- learnings

/// One entry of the learnings log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Learning {
    /// Id.
    pub id: i64,
    /// Workspace key.
    pub workspace: String,
    /// `experiment`, `review`, `post_mortem` or `manual`.
    pub source: String,
    /// What it came from (`experiment:checkout-v2`, `flag:x`, …).
    pub source_ref: Option<String>,
    /// What was learned.
    pub what: String,
    /// Link to the evidence.
    pub evidence: Option<String>,
    /// Who owns the learning.
    pub owner: String,
    /// RFC 3339.
    pub at: String,
}

/// Input for [`Store::record_learning`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLearning {
    /// `experiment`, `review`, `post_mortem` or `manual`.
    pub source: String,
    /// What it came from.
    pub source_ref: Option<String>,
    /// What was learned.
    pub what: String,
    /// Link to the evidence.
    pub evidence: Option<String>,
    /// Who owns it.
    pub owner: String,
}

/// Filters for the learnings log.
#[derive(Debug, Clone, Default)]
pub struct LearningFilter {
    /// Case-insensitive text in `what`, `evidence` or `source_ref`.
    pub text: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Source.
    pub source: Option<String>,
    /// RFC 3339 lower bound (inclusive).
    pub since: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<String>,
}

// ------------------------------------------------------------ post-mortems

/// A post-mortem of an initiative whose metric did not move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostMortem {
    /// Id.
    pub id: i64,
    /// Initiative key.
    pub initiative: String,
    /// Owner.
    pub owner: String,
    /// RFC 3339.
    pub due_at: String,
    /// What we expected.
    pub expected: Option<String>,
    /// What happened.
    pub happened: Option<String>,
    /// What we learned.
    pub learned: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once written.
    pub completed_at: Option<String>,
}

// ---------------------------------------------------------------- webhooks

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// Id.
    pub id: i64,
    /// Workspace key.
    pub workspace: String,
    /// Where to POST.
    pub url: String,
    /// The HMAC-SHA256 key (never returned by the API after creation).
    #[serde(skip)]
    pub secret: String,
    /// Event types delivered.
    pub events: Vec<String>,
    /// Whether deliveries are made.
    pub active: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// One delivery of one event to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Id.
    pub id: i64,
    /// Webhook id.
    pub webhook_id: i64,
    /// Event type.
    pub event: String,
    /// The JSON body sent.
    pub payload: String,
    /// `pending`, `delivered` or `failed` (retries exhausted).
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// HTTP status of the last attempt.
    pub last_status: Option<i64>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub delivered_at: Option<String>,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// HTTP status, if a response came.
    pub status: Option<i64>,
    /// Error text, if it failed.
    pub error: Option<String>,
    /// Delivered (2xx).
    pub delivered: bool,
    /// When to try again (`None`: do not; the delivery fails if not delivered).
    pub retry_at: Option<String>,
}

// ----------------------------------------------------------------- deploys

/// Outcome of a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// Deployed and healthy.
    Success,
    /// The deploy failed.
    Failed,
    /// A rollback to an earlier version.
    Rollback,
}

impl DeployStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Success => "success",
            DeployStatus::Failed => "failed",
            DeployStatus::Rollback => "rollback",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => DeployStatus::Success,
            "failed" => DeployStatus::Failed,
            "rollback" => DeployStatus::Rollback,
            _ => return None,
        })
    }
}

/// A deploy event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deploy {
    /// Id.
    pub id: i64,
    /// Service.
    pub service: String,
    /// Version deployed.
    pub version: String,
    /// RFC 3339: when the (last) commit was made.
    pub commit_at: String,
    /// RFC 3339: when it reached production.
    pub deployed_at: String,
    /// Outcome.
    pub status: DeployStatus,
}

/// Input for a deploy event (times are RFC 3339, validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeploy {
    /// Service.
    pub service: String,
    /// Version.
    pub version: String,
    /// RFC 3339.
    pub commit_at: String,
    /// RFC 3339.
    pub deployed_at: String,
    /// Outcome.
    pub status: DeployStatus,
}

/// A production kill switch: a flag turned off in a production environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KillSwitch {
    /// Change record id.
    pub change_id: i64,
    /// RFC 3339.
    pub at: String,
    /// Flag key.
    pub flag: String,
    /// Environment.
    pub environment: String,
    /// Who.
    pub actor: String,
}

/// Dispatches a call to the backend (the same as the crate's `on!`).
macro_rules! db {
    ($self:ident, $db:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($db) => $call,
            Backend::Postgres($db) => $call,
        }
    };
}

impl Store {
    // Policy and change requests.

    /// The workspace's approval policy (the default if never set).
    pub async fn get_policy(&self, ws: &str) -> Result<PolicyRecord> {
        db!(self, db => db.get_policy(ws).await)
    }

    /// Sets the approval policy. Only called when applying an approved
    /// `policy.update` change request (`meta.approves`).
    pub async fn set_policy(&self, ws: &str, policy: &Policy, meta: &ChangeMeta) -> Result<Committed<PolicyRecord>> {
        db!(self, db => db.set_policy(ws, policy, meta).await)
    }

    /// Files a change request (audited).
    pub async fn create_change_request(
        &self,
        ws: &str,
        request: &NewChangeRequest,
        meta: &ChangeMeta,
    ) -> Result<Committed<ChangeRequest>> {
        db!(self, db => db.create_change_request(ws, request, meta).await)
    }

    /// A workspace's change requests, newest first, optionally by status.
    pub async fn list_change_requests(&self, ws: &str, status: Option<RequestStatus>) -> Result<Vec<ChangeRequest>> {
        db!(self, db => db.list_change_requests(ws, status).await)
    }

    /// One change request.
    pub async fn get_change_request(&self, ws: &str, id: i64) -> Result<ChangeRequest> {
        db!(self, db => db.get_change_request(ws, id).await)
    }

    /// Rejects a pending request (audited); refused for its own requester.
    pub async fn reject_change_request(
        &self,
        ws: &str,
        id: i64,
        meta: &ChangeMeta,
    ) -> Result<Committed<ChangeRequest>> {
        db!(self, db => db.reject_change_request(ws, id, meta).await)
    }

    /// One change record.
    pub async fn get_change(&self, id: i64) -> Result<ChangeRecord> {
        db!(self, db => db.get_change(id).await)
    }

    /// The newest change record of a thing, if any.
    pub async fn last_change(&self, ws: &str, kind: &str, key: &str) -> Result<Option<ChangeRecord>> {
        db!(self, db => db.last_change(ws, kind, key).await)
    }

    /// Change records of a workspace in `[since, until)`, oldest first.
    pub async fn changes_between(&self, ws: &str, since: &str, until: &str) -> Result<Vec<ChangeRecord>> {
        db!(self, db => db.changes_between(ws, since, until).await)
    }

    // Flag lifecycle.

    /// Archives a flag: turned off everywhere and marked archived, in one
    /// transaction (applied from an approved `flag.archive` request).
    pub async fn archive_flag(&self, ws: &str, key: &str, meta: &ChangeMeta) -> Result<Committed<FlagRecord>> {
        let change = |flag: &mut sextant_core::Flag| {
            for t in flag.environments.values_mut() {
                t.enabled = false;
            }
            Ok(())
        };
        db!(self, db => db.update_flag(ws, key, None, None, "archive", meta, change).await)
    }

    /// Restores an archived flag (still off everywhere).
    pub async fn restore_flag(&self, ws: &str, key: &str, meta: &ChangeMeta) -> Result<Committed<FlagRecord>> {
        db!(self, db => db.update_flag(ws, key, None, None, "restore", meta, |_| Ok(())).await)
    }

    /// Lifecycle facts of every flag that has any.
    pub async fn list_lifecycle(&self, ws: &str) -> Result<Vec<FlagLifecycle>> {
        db!(self, db => db.list_lifecycle(ws).await)
    }

    /// Records an evaluation or exposure of `flag` in production at `at`.
    /// The first one per flag opens its 30-day review; later ones change
    /// nothing. Returns the review when this call opened it.
    pub async fn record_exposure(&self, ws: &str, env: &str, flag: &str, at: &str) -> Result<Option<FlagReview>> {
        db!(self, db => db.record_exposure(ws, env, flag, at).await)
    }

    /// A workspace's 30-day reviews, by due date.
    pub async fn list_reviews(&self, ws: &str) -> Result<Vec<FlagReview>> {
        db!(self, db => db.list_reviews(ws).await)
    }

    /// Records a 30-day review's decision and its learning, in one transaction.
    pub async fn complete_review(
        &self,
        ws: &str,
        flag: &str,
        outcome: &ReviewOutcome,
        meta: &ChangeMeta,
    ) -> Result<Committed<FlagReview>> {
        db!(self, db => db.complete_review(ws, flag, outcome, meta).await)
    }

    // Principles and violations.

    /// A workspace's principles.
    pub async fn list_principles(&self, ws: &str) -> Result<Vec<Principle>> {
        db!(self, db => db.list_principles(ws).await)
    }

    /// Creates a principle.
    pub async fn create_principle(
        &self,
        ws: &str,
        key: &str,
        name: &str,
        description: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<Principle>> {
        db!(self, db => db.create_principle(ws, key, name, description, meta).await)
    }

    /// Declares a violation of a principle.
    pub async fn create_violation(
        &self,
        ws: &str,
        v: &NewViolation,
        meta: &ChangeMeta,
    ) -> Result<Committed<Violation>> {
        db!(self, db => db.create_violation(ws, v, meta).await)
    }

    /// Violations; `open_only` leaves out resolved ones.
    pub async fn list_violations(&self, ws: &str, open_only: bool) -> Result<Vec<Violation>> {
        db!(self, db => db.list_violations(ws, open_only).await)
    }

    /// Resolves a violation.
    pub async fn resolve_violation(
        &self,
        ws: &str,
        id: i64,
        resolution: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<Violation>> {
        db!(self, db => db.resolve_violation(ws, id, resolution, meta).await)
    }

    // Learnings.

    /// Appends a learning (experiment decisions, reviews, post-mortems and
    /// people call this). Audited like every write.
    pub async fn record_learning(&self, ws: &str, l: &NewLearning, meta: &ChangeMeta) -> Result<Committed<Learning>> {
        db!(self, db => db.record_learning(ws, l, meta).await)
    }

    /// Searches the learnings log, newest first.
    pub async fn list_learnings(&self, ws: &str, filter: &LearningFilter) -> Result<Vec<Learning>> {
        db!(self, db => db.list_learnings(ws, filter).await)
    }

    // Post-mortems.

    /// Opens a post-mortem for an initiative (idempotent: an existing one is returned).
    pub async fn open_post_mortem(
        &self,
        ws: &str,
        initiative: &str,
        owner: &str,
        due_at: &str,
        expected: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<PostMortem>> {
        db!(self, db => db.open_post_mortem(ws, initiative, owner, due_at, expected, meta).await)
    }

    /// A workspace's post-mortems.
    pub async fn list_post_mortems(&self, ws: &str) -> Result<Vec<PostMortem>> {
        db!(self, db => db.list_post_mortems(ws).await)
    }

    /// Writes a post-mortem (what happened, what we learned) and its learning.
    pub async fn complete_post_mortem(
        &self,
        ws: &str,
        initiative: &str,
        expected: Option<&str>,
        happened: &str,
        learned: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<PostMortem>> {
        db!(self, db => db.complete_post_mortem(ws, initiative, expected, happened, learned, meta).await)
    }

    // Webhooks.

    /// Creates a webhook subscription.
    pub async fn create_webhook(
        &self,
        ws: &str,
        url: &str,
        secret: &str,
        events: &[String],
        meta: &ChangeMeta,
    ) -> Result<Committed<Webhook>> {
        db!(self, db => db.create_webhook(ws, url, secret, events, meta).await)
    }

    /// A workspace's webhooks.
    pub async fn list_webhooks(&self, ws: &str) -> Result<Vec<Webhook>> {
        db!(self, db => db.list_webhooks(ws).await)
    }

    /// Deletes a webhook and its delivery log.
    pub async fn delete_webhook(&self, ws: &str, id: i64, meta: &ChangeMeta) -> Result<Committed<()>> {
        db!(self, db => db.delete_webhook(ws, id, meta).await)
    }

    /// Queues `event` for every active webhook of `ws` subscribed to it;
    /// returns the new deliveries.
    pub async fn enqueue_event(&self, ws: &str, event: &str, payload: &Value) -> Result<Vec<Delivery>> {
        db!(self, db => db.enqueue_event(ws, event, payload).await)
    }

    /// Deliveries due at `now` (pending, next attempt not in the future).
    pub async fn due_deliveries(&self, now: &str, limit: i64) -> Result<Vec<(Webhook, Delivery)>> {
        db!(self, db => db.due_deliveries(now, limit).await)
    }

    /// Records one attempt's outcome.
    pub async fn record_attempt(&self, delivery: i64, outcome: &AttemptOutcome) -> Result<Delivery> {
        db!(self, db => db.record_attempt(delivery, outcome).await)
    }

    /// A webhook's delivery log, newest first.
    pub async fn list_deliveries(&self, ws: &str, webhook: i64) -> Result<Vec<Delivery>> {
        db!(self, db => db.list_deliveries(ws, webhook).await)
    }

    /// Queues a delivery again as a new pending delivery (redelivery).
    pub async fn redeliver(&self, ws: &str, webhook: i64, delivery: i64) -> Result<Delivery> {
        db!(self, db => db.redeliver(ws, webhook, delivery).await)
    }

    // Deploys.

    /// Records a deploy event.
    pub async fn record_deploy(&self, ws: &str, d: &NewDeploy, meta: &ChangeMeta) -> Result<Committed<Deploy>> {
        db!(self, db => db.record_deploy(ws, d, meta).await)
    }

    /// A workspace's deploys in `[since, until)`, by deploy time.
    pub async fn list_deploys(&self, ws: &str, since: &str, until: &str) -> Result<Vec<Deploy>> {
        db!(self, db => db.list_deploys(ws, since, until).await)
    }

    /// Kill switches (flags turned off in production) in `[since, until)`.
    pub async fn list_kill_switches(&self, ws: &str, since: &str, until: &str) -> Result<Vec<KillSwitch>> {
        db!(self, db => db.list_kill_switches(ws, since, until).await)
    }
}
