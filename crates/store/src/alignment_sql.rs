//! The SQL of the alignment workflows (see `crate::alignment`), written
//! once for both backends like `rollout_sql!` in `rollouts.rs`: the
//! statements use the syntax SQLite and PostgreSQL both accept (`$n`
//! parameters, `RETURNING id`, `ON CONFLICT`, `TRUE`/`FALSE`), and
//! `alignment_sql!` is instantiated in `sqlite/alignment.rs` and
//! `postgres/alignment.rs` with each backend's store, connection and row
//! types (each store provides `begin_write`, `record` and `ws_row`).

/// A non-document write: one transaction with its change record.
macro_rules! write_tx {
    ($self:ident, $tx:ident => $body:block) => {{
        let (_guard, mut $tx) = $self.begin_write().await?;
        let out = $body;
        $tx.commit().await?;
        Ok(out)
    }};
}
pub(crate) use write_tx;

/// The alignment SQL for one backend: `$store` (its store type), `$conn`
/// (its connection) and `$row` (its row).
macro_rules! alignment_sql {
    ($store:ty, $conn:ty, $row:ty) => {
        use serde_json::Value;
        use sqlx::Row;

        use crate::alignment::*;
        use crate::doc::{NewChange, corrupt, json, not_found};
        use crate::error::{FieldError, Kind, Result, StoreError};
        use crate::model::{ChangeMeta, Committed};
        use crate::now;

        /// Days from first production exposure to the flag's review.
        pub(crate) const REVIEW_AFTER_DAYS: i64 = 30;

        /// Called by `record` after every change record, inside its transaction:
        /// applies the bookkeeping a change implies.
        ///
        /// - With `meta.approves`, the change applies that change request: the
        ///   request must be pending and asked for by someone else; it is marked
        ///   applied and the approval gets its own audit entry.
        /// - Archiving or restoring a flag updates its lifecycle row.
        pub(super) async fn after_record(
            conn: &mut $conn,
            meta: &ChangeMeta,
            action: &str,
            workspace: Option<&str>,
            (kind, key): (Kind, &str),
            change_id: i64,
        ) -> Result<()> {
            if kind == Kind::Flag
                && let Some(ws) = workspace
            {
                match action {
                    "archive" | "restore" => {
                        let archived = (action == "archive").then(now);
                        sqlx::query(
                            "INSERT INTO flag_lifecycle (workspace, flag, archived_at) VALUES ($1, $2, $3)
                             ON CONFLICT (workspace, flag) DO UPDATE SET archived_at = excluded.archived_at",
                        )
                        .bind(ws)
                        .bind(key)
                        .bind(archived)
                        .execute(&mut *conn)
                        .await?;
                    }
                    "delete" => {
                        sqlx::query("DELETE FROM flag_lifecycle WHERE workspace = $1 AND flag = $2")
                            .bind(ws)
                            .bind(key)
                            .execute(&mut *conn)
                            .await?;
                    }
                    _ => {}
                }
            }
            let Some(id) = meta.approves else {
                return Ok(());
            };
            let ws = workspace.unwrap_or_default();
            let request = request_in(conn, ws, id).await?;
            if request.status != RequestStatus::Pending {
                return Err(StoreError::NotPending {
                    id,
                    status: request.status.as_str(),
                });
            }
            if request.requested_by == meta.actor {
                return Err(StoreError::SelfApproval { id });
            }
            let at = now();
            sqlx::query(
                "UPDATE change_requests SET status = 'applied', decided_by = $1, decided_at = $2, decision_reason = $3,
                     applied_change_id = $4 WHERE id = $5",
            )
            .bind(&meta.actor)
            .bind(&at)
            .bind(&meta.reason)
            .bind(change_id)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            let after = request_in(conn, ws, id).await?;
            let plain = ChangeMeta::new(meta.actor.clone(), meta.reason.clone());
            let key = id.to_string();
            Box::pin(<$store>::record(
                conn,
                NewChange {
                    meta: &plain,
                    action: "approve",
                    workspace: Some(ws),
                    kind: Kind::ChangeRequest,
                    key: &key,
                    environment: None,
                    before: Some(json(&request)),
                    after: Some(json(&after)),
                },
            ))
            .await?;
            Ok(())
        }

        async fn request_in(conn: &mut $conn, ws: &str, id: i64) -> Result<ChangeRequest> {
            let row = sqlx::query("SELECT * FROM change_requests WHERE id = $1 AND workspace = $2")
                .bind(id)
                .bind(ws)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| not_found(Kind::ChangeRequest, &id.to_string()))?;
            request_from(&row)
        }

        fn parse_json(row: &$row, col: &str) -> Result<Option<Value>> {
            let text: Option<String> = row.try_get(col)?;
            text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(col, e)))
                .transpose()
        }

        fn request_from(row: &$row) -> Result<ChangeRequest> {
            let status: String = row.try_get("status")?;
            Ok(ChangeRequest {
                id: row.try_get("id")?,
                workspace: row.try_get("workspace")?,
                action: row.try_get("action")?,
                kind: row.try_get("kind")?,
                key: row.try_get("key")?,
                environment: row.try_get("environment")?,
                payload: parse_json(row, "payload")?,
                status: RequestStatus::parse(&status).ok_or_else(|| corrupt("change request status", &status))?,
                requested_by: row.try_get("requested_by")?,
                reason: row.try_get("reason")?,
                created_at: row.try_get("created_at")?,
                decided_by: row.try_get("decided_by")?,
                decided_at: row.try_get("decided_at")?,
                decision_reason: row.try_get("decision_reason")?,
                applied_change_id: row.try_get("applied_change_id")?,
                reverts_change_id: row.try_get("reverts_change_id")?,
            })
        }

        fn change_from(row: &$row) -> Result<ChangeRecord> {
            Ok(ChangeRecord {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                workspace: row.try_get("workspace")?,
                kind: row.try_get("kind")?,
                key: row.try_get("key")?,
                environment: row.try_get("environment")?,
                reason: row.try_get("reason")?,
                before: parse_json(row, "before")?,
                after: parse_json(row, "after")?,
            })
        }

        fn review_from(row: &$row) -> Result<FlagReview> {
            let decision: Option<String> = row.try_get("decision")?;
            Ok(FlagReview {
                id: row.try_get("id")?,
                workspace: row.try_get("workspace")?,
                flag: row.try_get("flag")?,
                first_exposed_at: row.try_get("first_exposed_at")?,
                due_at: row.try_get("due_at")?,
                decision: decision
                    .map(|d| ReviewDecision::parse(&d).ok_or_else(|| corrupt("review decision", &d)))
                    .transpose()?,
                metric: row.try_get("metric")?,
                hypothesised_effect: row.try_get("hypothesised_effect")?,
                observed_effect: row.try_get("observed_effect")?,
                notes: row.try_get("notes")?,
                reviewer: row.try_get("reviewer")?,
                reviewed_at: row.try_get("reviewed_at")?,
            })
        }

        fn principle_from(row: &$row) -> Result<Principle> {
            Ok(Principle {
                key: row.try_get("key")?,
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn violation_from(row: &$row) -> Result<Violation> {
            Ok(Violation {
                id: row.try_get("id")?,
                principle: row.try_get("principle")?,
                subject: row.try_get("subject")?,
                justification: row.try_get("justification")?,
                owner: row.try_get("owner")?,
                review_date: row.try_get("review_date")?,
                created_by: row.try_get("created_by")?,
                created_at: row.try_get("created_at")?,
                resolved_at: row.try_get("resolved_at")?,
                resolution: row.try_get("resolution")?,
            })
        }

        fn learning_from(row: &$row) -> Result<Learning> {
            Ok(Learning {
                id: row.try_get("id")?,
                workspace: row.try_get("workspace")?,
                source: row.try_get("source")?,
                source_ref: row.try_get("source_ref")?,
                what: row.try_get("what")?,
                evidence: row.try_get("evidence")?,
                owner: row.try_get("owner")?,
                at: row.try_get("at")?,
            })
        }

        fn post_mortem_from(row: &$row) -> Result<PostMortem> {
            Ok(PostMortem {
                id: row.try_get("id")?,
                initiative: row.try_get("initiative")?,
                owner: row.try_get("owner")?,
                due_at: row.try_get("due_at")?,
                expected: row.try_get("expected")?,
                happened: row.try_get("happened")?,
                learned: row.try_get("learned")?,
                created_at: row.try_get("created_at")?,
                completed_at: row.try_get("completed_at")?,
            })
        }

        fn webhook_from(row: &$row) -> Result<Webhook> {
            let events: String = row.try_get("events")?;
            Ok(Webhook {
                id: row.try_get("id")?,
                workspace: row.try_get("workspace")?,
                url: row.try_get("url")?,
                secret: row.try_get("secret")?,
                events: serde_json::from_str(&events).map_err(|e| corrupt("webhook events", e))?,
                active: row.try_get("active")?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn delivery_from(row: &$row) -> Result<Delivery> {
            Ok(Delivery {
                id: row.try_get("id")?,
                webhook_id: row.try_get("webhook_id")?,
                event: row.try_get("event")?,
                payload: row.try_get("payload")?,
                status: row.try_get("status")?,
                attempts: row.try_get("attempts")?,
                last_status: row.try_get("last_status")?,
                last_error: row.try_get("last_error")?,
                next_attempt_at: row.try_get("next_attempt_at")?,
                created_at: row.try_get("created_at")?,
                delivered_at: row.try_get("delivered_at")?,
            })
        }

        fn deploy_from(row: &$row) -> Result<Deploy> {
            let status: String = row.try_get("status")?;
            Ok(Deploy {
                id: row.try_get("id")?,
                service: row.try_get("service")?,
                version: row.try_get("version")?,
                commit_at: row.try_get("commit_at")?,
                deployed_at: row.try_get("deployed_at")?,
                status: DeployStatus::parse(&status).ok_or_else(|| corrupt("deploy status", &status))?,
            })
        }

        /// `at` plus `days`, as RFC 3339 UTC with milliseconds.
        fn plus_days(at: &str, days: i64) -> Result<String> {
            let t = chrono::DateTime::parse_from_rfc3339(at).map_err(|e| {
                StoreError::Invalid(vec![FieldError {
                    field: "/at".into(),
                    message: format!("`{at}` is not an RFC 3339 time: {e}"),
                }])
            })?;
            Ok((t.with_timezone(&chrono::Utc) + chrono::Duration::days(days))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        }

        async fn ensure_workspace(conn: &mut $conn, ws: &str) -> Result<()> {
            <$store>::ws_row(conn, ws).await.map(|_| ())
        }

        fn committed<T>(value: T, change_id: i64) -> Committed<T> {
            Committed {
                value,
                change_id,
                snapshots: Vec::new(),
                removed_environments: Vec::new(),
            }
        }

        impl $store {
            // ----------------------------------------------------- policy, requests

            pub(crate) async fn get_policy(&self, ws: &str) -> Result<PolicyRecord> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                policy_in(&mut conn, ws).await
            }

            pub(crate) async fn set_policy(
                &self,
                ws: &str,
                policy: &Policy,
                meta: &ChangeMeta,
            ) -> Result<Committed<PolicyRecord>> {
                let problems = policy.problems();
                if !problems.is_empty() {
                    return Err(StoreError::Invalid(problems));
                }
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let before = policy_in(&mut tx, ws).await?;
                    sqlx::query(
                        "INSERT INTO policies (workspace, policy, version, updated_at) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (workspace) DO UPDATE SET policy = excluded.policy, version = excluded.version,
                             updated_at = excluded.updated_at",
                    )
                    .bind(ws)
                    .bind(json(policy).to_string())
                    .bind(before.version + 1)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?;
                    let after = policy_in(&mut tx, ws).await?;
                    let id = Self::record(&mut tx, NewChange {
                        meta, action: "update", workspace: Some(ws), kind: Kind::Policy, key: ws, environment: None,
                        before: Some(json(&before.policy)), after: Some(json(&after.policy)),
                    }).await?;
                    committed(after, id)
                })
            }

            pub(crate) async fn create_change_request(
                &self,
                ws: &str,
                r: &NewChangeRequest,
                meta: &ChangeMeta,
            ) -> Result<Committed<ChangeRequest>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let id = sqlx::query(
                        "INSERT INTO change_requests (workspace, action, kind, key, environment, payload, status,
                             requested_by, reason, created_at, reverts_change_id)
                         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10) RETURNING id",
                    )
                    .bind(ws)
                    .bind(&r.action)
                    .bind(&r.kind)
                    .bind(&r.key)
                    .bind(&r.environment)
                    .bind(r.payload.as_ref().map(Value::to_string))
                    .bind(&meta.actor)
                    .bind(&meta.reason)
                    .bind(now())
                    .bind(r.reverts_change_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get::<i64, _>("id")?;
                    let request = request_in(&mut tx, ws, id).await?;
                    let key = id.to_string();
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "request", workspace: Some(ws), kind: Kind::ChangeRequest, key: &key,
                        environment: None, before: None, after: Some(json(&request)),
                    }).await?;
                    committed(request, change)
                })
            }

            pub(crate) async fn list_change_requests(
                &self,
                ws: &str,
                status: Option<RequestStatus>,
            ) -> Result<Vec<ChangeRequest>> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                let rows = sqlx::query(
                    "SELECT * FROM change_requests WHERE workspace = $1 AND ($2 IS NULL OR status = $2) ORDER BY id DESC",
                )
                .bind(ws)
                .bind(status.map(RequestStatus::as_str))
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(request_from).collect()
            }

            pub(crate) async fn get_change_request(&self, ws: &str, id: i64) -> Result<ChangeRequest> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                request_in(&mut conn, ws, id).await
            }

            pub(crate) async fn reject_change_request(
                &self,
                ws: &str,
                id: i64,
                meta: &ChangeMeta,
            ) -> Result<Committed<ChangeRequest>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let before = request_in(&mut tx, ws, id).await?;
                    if before.status != RequestStatus::Pending {
                        return Err(StoreError::NotPending { id, status: before.status.as_str() });
                    }
                    if before.requested_by == meta.actor {
                        return Err(StoreError::SelfApproval { id });
                    }
                    sqlx::query(
                        "UPDATE change_requests SET status = 'rejected', decided_by = $1, decided_at = $2, decision_reason = $3
                         WHERE id = $4",
                    )
                    .bind(&meta.actor)
                    .bind(now())
                    .bind(&meta.reason)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    let after = request_in(&mut tx, ws, id).await?;
                    let key = id.to_string();
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "reject", workspace: Some(ws), kind: Kind::ChangeRequest, key: &key,
                        environment: None, before: Some(json(&before)), after: Some(json(&after)),
                    }).await?;
                    committed(after, change)
                })
            }

            pub(crate) async fn get_change(&self, id: i64) -> Result<ChangeRecord> {
                let row = sqlx::query("SELECT * FROM changes WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or_else(|| not_found(Kind::Change, &id.to_string()))?;
                change_from(&row)
            }

            pub(crate) async fn last_change(&self, ws: &str, kind: &str, key: &str) -> Result<Option<ChangeRecord>> {
                let row = sqlx::query(
                    "SELECT * FROM changes WHERE workspace = $1 AND kind = $2 AND key = $3 ORDER BY id DESC LIMIT 1",
                )
                .bind(ws)
                .bind(kind)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(change_from).transpose()
            }

            pub(crate) async fn changes_between(&self, ws: &str, since: &str, until: &str) -> Result<Vec<ChangeRecord>> {
                let rows = sqlx::query("SELECT * FROM changes WHERE workspace = $1 AND at >= $2 AND at < $3 ORDER BY id")
                    .bind(ws)
                    .bind(since)
                    .bind(until)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(change_from).collect()
            }

            // -------------------------------------------------------------- lifecycle

            pub(crate) async fn list_lifecycle(&self, ws: &str) -> Result<Vec<FlagLifecycle>> {
                let rows = sqlx::query("SELECT * FROM flag_lifecycle WHERE workspace = $1 ORDER BY flag")
                    .bind(ws)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(FlagLifecycle {
                            flag: row.try_get("flag")?,
                            archived_at: row.try_get("archived_at")?,
                            first_exposed_at: row.try_get("first_exposed_at")?,
                            first_exposed_env: row.try_get("first_exposed_env")?,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn record_exposure(
                &self,
                ws: &str,
                env: &str,
                flag: &str,
                at: &str,
            ) -> Result<Option<FlagReview>> {
                let due = plus_days(at, REVIEW_AFTER_DAYS)?;
                $crate::alignment_sql::write_tx!(self, tx => {
                    let known = sqlx::query("SELECT first_exposed_at FROM flag_lifecycle WHERE workspace = $1 AND flag = $2")
                        .bind(ws)
                        .bind(flag)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let already = match &known {
                        Some(row) => row.try_get::<Option<String>, _>("first_exposed_at")?.is_some(),
                        None => false,
                    };
                    if already {
                        None
                    } else {
                        let ws_row = Self::ws_row(&mut tx, ws).await?;
                        let flags = Self::flag_rows(&mut tx, ws_row.id).await?;
                        let rec = flags.iter().find(|f| f.flag.key == flag).ok_or_else(|| not_found(Kind::Flag, flag))?;
                        sqlx::query(
                            "INSERT INTO flag_lifecycle (workspace, flag, first_exposed_at, first_exposed_env) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (workspace, flag) DO UPDATE SET first_exposed_at = excluded.first_exposed_at,
                                 first_exposed_env = excluded.first_exposed_env",
                        )
                        .bind(ws)
                        .bind(flag)
                        .bind(at)
                        .bind(env)
                        .execute(&mut *tx)
                        .await?;
                        let h = rec.flag.hypothesis.as_ref().filter(|h| !h.operational);
                        let effect = h.and_then(|h| {
                            h.minimum_effect.map(|e| match h.direction {
                                Some(sextant_core::Direction::Decrease) => -e.abs(),
                                _ => e.abs(),
                            })
                        });
                        // Operational flags (kill switches) are not features; they get no review.
                        let review = if rec.flag.hypothesis.as_ref().is_some_and(|h| h.operational) {
                            None
                        } else {
                            sqlx::query(
                                "INSERT INTO flag_reviews (workspace, flag, first_exposed_at, due_at, metric, hypothesised_effect)
                                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace, flag) DO NOTHING",
                            )
                            .bind(ws)
                            .bind(flag)
                            .bind(at)
                            .bind(&due)
                            .bind(h.and_then(|h| h.metric.clone()))
                            .bind(effect)
                            .execute(&mut *tx)
                            .await?;
                            let row = sqlx::query("SELECT * FROM flag_reviews WHERE workspace = $1 AND flag = $2")
                                .bind(ws)
                                .bind(flag)
                                .fetch_one(&mut *tx)
                                .await?;
                            Some(review_from(&row)?)
                        };
                        let meta = ChangeMeta::new("system", Some(format!("first exposure in `{env}`")));
                        Self::record(&mut tx, NewChange {
                            meta: &meta, action: "first_exposure", workspace: Some(ws), kind: Kind::Flag, key: flag,
                            environment: Some(env), before: None,
                            after: Some(serde_json::json!({"first_exposed_at": at, "review_due_at": review.as_ref().map(|r| &r.due_at)})),
                        }).await?;
                        review
                    }
                })
            }

            pub(crate) async fn list_reviews(&self, ws: &str) -> Result<Vec<FlagReview>> {
                let rows = sqlx::query("SELECT * FROM flag_reviews WHERE workspace = $1 ORDER BY due_at, id")
                    .bind(ws)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(review_from).collect()
            }

            pub(crate) async fn complete_review(
                &self,
                ws: &str,
                flag: &str,
                o: &ReviewOutcome,
                meta: &ChangeMeta,
            ) -> Result<Committed<FlagReview>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    let row = sqlx::query("SELECT * FROM flag_reviews WHERE workspace = $1 AND flag = $2")
                        .bind(ws)
                        .bind(flag)
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| not_found(Kind::Review, flag))?;
                    let before = review_from(&row)?;
                    let at = now();
                    sqlx::query(
                        "UPDATE flag_reviews SET decision = $1, observed_effect = $2, notes = $3, reviewer = $4, reviewed_at = $5
                         WHERE id = $6",
                    )
                    .bind(o.decision.as_str())
                    .bind(o.observed_effect)
                    .bind(&o.notes)
                    .bind(&meta.actor)
                    .bind(&at)
                    .bind(before.id)
                    .execute(&mut *tx)
                    .await?;
                    let row = sqlx::query("SELECT * FROM flag_reviews WHERE id = $1").bind(before.id).fetch_one(&mut *tx).await?;
                    let after = review_from(&row)?;
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "review", workspace: Some(ws), kind: Kind::Review, key: flag, environment: None,
                        before: Some(json(&before)), after: Some(json(&after)),
                    }).await?;
                    let movement = match (after.observed_effect, after.hypothesised_effect) {
                        (Some(o), Some(h)) => format!("; observed {:+.1}% vs hypothesised {:+.1}%", o * 100.0, h * 100.0),
                        (Some(o), None) => format!("; observed {:+.1}%", o * 100.0),
                        _ => String::new(),
                    };
                    let what = format!(
                        "30-day review of `{flag}`: {}{movement}{}",
                        o.decision.as_str(),
                        o.notes.as_deref().map(|n| format!(". {n}")).unwrap_or_default()
                    );
                    insert_learning(&mut tx, ws, &NewLearning {
                        source: "review".into(), source_ref: Some(format!("flag:{flag}")), what,
                        evidence: o.evidence.clone(), owner: meta.actor.clone(),
                    }, meta).await?;
                    committed(after, change)
                })
            }

            // ------------------------------------------------- principles, violations

            pub(crate) async fn list_principles(&self, ws: &str) -> Result<Vec<Principle>> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                let rows = sqlx::query("SELECT * FROM principles WHERE workspace = $1 ORDER BY id")
                    .bind(ws)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter().map(principle_from).collect()
            }

            pub(crate) async fn create_principle(
                &self,
                ws: &str,
                key: &str,
                name: &str,
                description: &str,
                meta: &ChangeMeta,
            ) -> Result<Committed<Principle>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let exists = sqlx::query("SELECT 1 FROM principles WHERE workspace = $1 AND key = $2")
                        .bind(ws).bind(key).fetch_optional(&mut *tx).await?;
                    if exists.is_some() {
                        return Err(StoreError::Conflict { kind: Kind::Principle, key: key.to_owned() });
                    }
                    sqlx::query("INSERT INTO principles (workspace, key, name, description, created_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(ws).bind(key).bind(name).bind(description).bind(now())
                        .execute(&mut *tx).await?;
                    let row = sqlx::query("SELECT * FROM principles WHERE workspace = $1 AND key = $2")
                        .bind(ws).bind(key).fetch_one(&mut *tx).await?;
                    let p = principle_from(&row)?;
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "create", workspace: Some(ws), kind: Kind::Principle, key, environment: None,
                        before: None, after: Some(json(&p)),
                    }).await?;
                    committed(p, change)
                })
            }

            pub(crate) async fn create_violation(
                &self,
                ws: &str,
                v: &NewViolation,
                meta: &ChangeMeta,
            ) -> Result<Committed<Violation>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let exists = sqlx::query("SELECT 1 FROM principles WHERE workspace = $1 AND key = $2")
                        .bind(ws).bind(&v.principle).fetch_optional(&mut *tx).await?;
                    if exists.is_none() {
                        return Err(not_found(Kind::Principle, &v.principle));
                    }
                    let id = sqlx::query(
                        "INSERT INTO violations (workspace, principle, subject, justification, owner, review_date, created_by, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    )
                    .bind(ws).bind(&v.principle).bind(&v.subject).bind(&v.justification).bind(&v.owner)
                    .bind(&v.review_date).bind(&meta.actor).bind(now())
                    .fetch_one(&mut *tx).await?.try_get::<i64, _>("id")?;
                    let row = sqlx::query("SELECT * FROM violations WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                    let out = violation_from(&row)?;
                    let key = id.to_string();
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "declare", workspace: Some(ws), kind: Kind::Violation, key: &key, environment: None,
                        before: None, after: Some(json(&out)),
                    }).await?;
                    committed(out, change)
                })
            }

            pub(crate) async fn list_violations(&self, ws: &str, open_only: bool) -> Result<Vec<Violation>> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                let rows = sqlx::query(
                    "SELECT * FROM violations WHERE workspace = $1 AND ($2 = FALSE OR resolved_at IS NULL) ORDER BY review_date, id",
                )
                .bind(ws)
                .bind(open_only)
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(violation_from).collect()
            }

            pub(crate) async fn resolve_violation(
                &self,
                ws: &str,
                id: i64,
                resolution: &str,
                meta: &ChangeMeta,
            ) -> Result<Committed<Violation>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    let row = sqlx::query("SELECT * FROM violations WHERE id = $1 AND workspace = $2")
                        .bind(id).bind(ws).fetch_optional(&mut *tx).await?
                        .ok_or_else(|| not_found(Kind::Violation, &id.to_string()))?;
                    let before = violation_from(&row)?;
                    sqlx::query("UPDATE violations SET resolved_at = $1, resolution = $2 WHERE id = $3")
                        .bind(now()).bind(resolution).bind(id).execute(&mut *tx).await?;
                    let row = sqlx::query("SELECT * FROM violations WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                    let after = violation_from(&row)?;
                    let key = id.to_string();
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "resolve", workspace: Some(ws), kind: Kind::Violation, key: &key, environment: None,
                        before: Some(json(&before)), after: Some(json(&after)),
                    }).await?;
                    committed(after, change)
                })
            }

            // -------------------------------------------------------------- learnings

            pub(crate) async fn record_learning(
                &self,
                ws: &str,
                l: &NewLearning,
                meta: &ChangeMeta,
            ) -> Result<Committed<Learning>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    insert_learning(&mut tx, ws, l, meta).await?
                })
            }

            pub(crate) async fn list_learnings(&self, ws: &str, f: &LearningFilter) -> Result<Vec<Learning>> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                let pattern = f.text.as_ref().map(|t| {
                    let escaped = t
                        .to_lowercase()
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    format!("%{escaped}%")
                });
                let rows = sqlx::query(
                    "SELECT * FROM learnings WHERE workspace = $1
                       AND ($2 IS NULL OR lower(what) LIKE $2 ESCAPE '\\' OR lower(COALESCE(evidence, '')) LIKE $2 ESCAPE '\\'
                            OR lower(COALESCE(source_ref, '')) LIKE $2 ESCAPE '\\')
                       AND ($3 IS NULL OR owner = $3) AND ($4 IS NULL OR source = $4)
                       AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at < $6)
                     ORDER BY at DESC, id DESC",
                )
                .bind(ws)
                .bind(pattern)
                .bind(&f.owner)
                .bind(&f.source)
                .bind(&f.since)
                .bind(&f.until)
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(learning_from).collect()
            }

            // ----------------------------------------------------------- post-mortems

            pub(crate) async fn open_post_mortem(
                &self,
                ws: &str,
                initiative: &str,
                owner: &str,
                due_at: &str,
                expected: &str,
                meta: &ChangeMeta,
            ) -> Result<Committed<PostMortem>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let existing = sqlx::query("SELECT * FROM post_mortems WHERE workspace = $1 AND initiative = $2")
                        .bind(ws).bind(initiative).fetch_optional(&mut *tx).await?;
                    match existing {
                        Some(row) => committed(post_mortem_from(&row)?, 0),
                        None => {
                            sqlx::query(
                                "INSERT INTO post_mortems (workspace, initiative, owner, due_at, expected, created_at)
                                 VALUES ($1, $2, $3, $4, $5, $6)",
                            )
                            .bind(ws).bind(initiative).bind(owner).bind(due_at).bind(expected).bind(now())
                            .execute(&mut *tx).await?;
                            let row = sqlx::query("SELECT * FROM post_mortems WHERE workspace = $1 AND initiative = $2")
                                .bind(ws).bind(initiative).fetch_one(&mut *tx).await?;
                            let pm = post_mortem_from(&row)?;
                            let change = Self::record(&mut tx, NewChange {
                                meta, action: "open", workspace: Some(ws), kind: Kind::PostMortem, key: initiative,
                                environment: None, before: None, after: Some(json(&pm)),
                            }).await?;
                            committed(pm, change)
                        }
                    }
                })
            }

            pub(crate) async fn list_post_mortems(&self, ws: &str) -> Result<Vec<PostMortem>> {
                let rows = sqlx::query("SELECT * FROM post_mortems WHERE workspace = $1 ORDER BY due_at, id")
                    .bind(ws)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(post_mortem_from).collect()
            }

            pub(crate) async fn complete_post_mortem(
                &self,
                ws: &str,
                initiative: &str,
                expected: Option<&str>,
                happened: &str,
                learned: &str,
                meta: &ChangeMeta,
            ) -> Result<Committed<PostMortem>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    let row = sqlx::query("SELECT * FROM post_mortems WHERE workspace = $1 AND initiative = $2")
                        .bind(ws).bind(initiative).fetch_optional(&mut *tx).await?
                        .ok_or_else(|| not_found(Kind::PostMortem, initiative))?;
                    let before = post_mortem_from(&row)?;
                    sqlx::query(
                        "UPDATE post_mortems SET expected = COALESCE($1, expected), happened = $2, learned = $3, completed_at = $4
                         WHERE id = $5",
                    )
                    .bind(expected).bind(happened).bind(learned).bind(now()).bind(before.id)
                    .execute(&mut *tx).await?;
                    let row = sqlx::query("SELECT * FROM post_mortems WHERE id = $1").bind(before.id).fetch_one(&mut *tx).await?;
                    let after = post_mortem_from(&row)?;
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "complete", workspace: Some(ws), kind: Kind::PostMortem, key: initiative,
                        environment: None, before: Some(json(&before)), after: Some(json(&after)),
                    }).await?;
                    insert_learning(&mut tx, ws, &NewLearning {
                        source: "post_mortem".into(), source_ref: Some(format!("initiative:{initiative}")),
                        what: learned.to_owned(), evidence: None, owner: after.owner.clone(),
                    }, meta).await?;
                    committed(after, change)
                })
            }

            // --------------------------------------------------------------- webhooks

            pub(crate) async fn create_webhook(
                &self,
                ws: &str,
                url: &str,
                secret: &str,
                events: &[String],
                meta: &ChangeMeta,
            ) -> Result<Committed<Webhook>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let id = sqlx::query(
                        "INSERT INTO webhooks (workspace, url, secret, events, active, created_at) VALUES ($1, $2, $3, $4, TRUE, $5) RETURNING id",
                    )
                    .bind(ws).bind(url).bind(secret).bind(json(&events).to_string()).bind(now())
                    .fetch_one(&mut *tx).await?.try_get::<i64, _>("id")?;
                    let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                    let hook = webhook_from(&row)?;
                    let key = id.to_string();
                    // The secret never enters the change record (`Webhook` skips it).
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "create", workspace: Some(ws), kind: Kind::Webhook, key: &key, environment: None,
                        before: None, after: Some(json(&hook)),
                    }).await?;
                    committed(hook, change)
                })
            }

            pub(crate) async fn list_webhooks(&self, ws: &str) -> Result<Vec<Webhook>> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                let rows = sqlx::query("SELECT * FROM webhooks WHERE workspace = $1 ORDER BY id")
                    .bind(ws)
                    .fetch_all(&mut *conn)
                    .await?;
                rows.iter().map(webhook_from).collect()
            }

            pub(crate) async fn delete_webhook(&self, ws: &str, id: i64, meta: &ChangeMeta) -> Result<Committed<()>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1 AND workspace = $2")
                        .bind(id).bind(ws).fetch_optional(&mut *tx).await?
                        .ok_or_else(|| not_found(Kind::Webhook, &id.to_string()))?;
                    let hook = webhook_from(&row)?;
                    sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *tx).await?;
                    let key = id.to_string();
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "delete", workspace: Some(ws), kind: Kind::Webhook, key: &key, environment: None,
                        before: Some(json(&hook)), after: None,
                    }).await?;
                    committed((), change)
                })
            }

            pub(crate) async fn enqueue_event(&self, ws: &str, event: &str, payload: &Value) -> Result<Vec<Delivery>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    let hooks = sqlx::query("SELECT * FROM webhooks WHERE workspace = $1 AND active ORDER BY id")
                        .bind(ws).fetch_all(&mut *tx).await?;
                    let at = now();
                    let mut out = Vec::new();
                    for row in &hooks {
                        let hook = webhook_from(row)?;
                        if !hook.events.iter().any(|e| e == event || e == "*") {
                            continue;
                        }
                        let body = serde_json::json!({"event": event, "workspace": ws, "at": at, "data": payload});
                        let id = sqlx::query(
                            "INSERT INTO webhook_deliveries (webhook_id, event, payload, status, attempts, next_attempt_at, created_at)
                             VALUES ($1, $2, $3, 'pending', 0, $4, $5) RETURNING id",
                        )
                        .bind(hook.id).bind(event).bind(body.to_string()).bind(&at).bind(&at)
                        .fetch_one(&mut *tx).await?.try_get::<i64, _>("id")?;
                        let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                        out.push(delivery_from(&row)?);
                    }
                    out
                })
            }

            pub(crate) async fn due_deliveries(&self, now_at: &str, limit: i64) -> Result<Vec<(Webhook, Delivery)>> {
                let rows = sqlx::query(
                    "SELECT d.* FROM webhook_deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= $1
                     ORDER BY d.next_attempt_at, d.id LIMIT $2",
                )
                .bind(now_at)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::new();
                for row in &rows {
                    let d = delivery_from(row)?;
                    let hook = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
                        .bind(d.webhook_id)
                        .fetch_one(&self.pool)
                        .await?;
                    out.push((webhook_from(&hook)?, d));
                }
                Ok(out)
            }

            pub(crate) async fn record_attempt(&self, delivery: i64, o: &AttemptOutcome) -> Result<Delivery> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    let status = if o.delivered { "delivered" } else if o.retry_at.is_some() { "pending" } else { "failed" };
                    sqlx::query(
                        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, last_error = $3,
                             next_attempt_at = $4, delivered_at = CASE WHEN $5 THEN $6 ELSE delivered_at END WHERE id = $7",
                    )
                    .bind(status).bind(o.status).bind(&o.error).bind(&o.retry_at).bind(o.delivered).bind(now()).bind(delivery)
                    .execute(&mut *tx).await?;
                    let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1").bind(delivery).fetch_optional(&mut *tx).await?
                        .ok_or_else(|| not_found(Kind::Delivery, &delivery.to_string()))?;
                    delivery_from(&row)?
                })
            }

            pub(crate) async fn list_deliveries(&self, ws: &str, webhook: i64) -> Result<Vec<Delivery>> {
                let hook = sqlx::query("SELECT 1 FROM webhooks WHERE id = $1 AND workspace = $2")
                    .bind(webhook)
                    .bind(ws)
                    .fetch_optional(&self.pool)
                    .await?;
                if hook.is_none() {
                    return Err(not_found(Kind::Webhook, &webhook.to_string()));
                }
                let rows = sqlx::query("SELECT * FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT 500")
                    .bind(webhook)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(delivery_from).collect()
            }

            pub(crate) async fn redeliver(&self, ws: &str, webhook: i64, delivery: i64) -> Result<Delivery> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    let row = sqlx::query(
                        "SELECT d.* FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
                         WHERE d.id = $1 AND d.webhook_id = $2 AND w.workspace = $3",
                    )
                    .bind(delivery).bind(webhook).bind(ws).fetch_optional(&mut *tx).await?
                    .ok_or_else(|| not_found(Kind::Delivery, &delivery.to_string()))?;
                    let old = delivery_from(&row)?;
                    let at = now();
                    let id = sqlx::query(
                        "INSERT INTO webhook_deliveries (webhook_id, event, payload, status, attempts, next_attempt_at, created_at)
                         VALUES ($1, $2, $3, 'pending', 0, $4, $5) RETURNING id",
                    )
                    .bind(old.webhook_id).bind(&old.event).bind(&old.payload).bind(&at).bind(&at)
                    .fetch_one(&mut *tx).await?.try_get::<i64, _>("id")?;
                    let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                    delivery_from(&row)?
                })
            }

            // ---------------------------------------------------------------- deploys

            pub(crate) async fn record_deploy(&self, ws: &str, d: &NewDeploy, meta: &ChangeMeta) -> Result<Committed<Deploy>> {
                $crate::alignment_sql::write_tx!(self, tx => {
                    ensure_workspace(&mut tx, ws).await?;
                    let id = sqlx::query(
                        "INSERT INTO deploys (workspace, service, version, commit_at, deployed_at, status, created_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    )
                    .bind(ws).bind(&d.service).bind(&d.version).bind(&d.commit_at).bind(&d.deployed_at)
                    .bind(d.status.as_str()).bind(now())
                    .fetch_one(&mut *tx).await?.try_get::<i64, _>("id")?;
                    let row = sqlx::query("SELECT * FROM deploys WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                    let out = deploy_from(&row)?;
                    let change = Self::record(&mut tx, NewChange {
                        meta, action: "record", workspace: Some(ws), kind: Kind::Deploy, key: &d.service, environment: None,
                        before: None, after: Some(json(&out)),
                    }).await?;
                    committed(out, change)
                })
            }

            pub(crate) async fn list_deploys(&self, ws: &str, since: &str, until: &str) -> Result<Vec<Deploy>> {
                let mut conn = self.pool.acquire().await?;
                ensure_workspace(&mut conn, ws).await?;
                let rows = sqlx::query(
                    "SELECT * FROM deploys WHERE workspace = $1 AND deployed_at >= $2 AND deployed_at < $3 ORDER BY deployed_at, id",
                )
                .bind(ws)
                .bind(since)
                .bind(until)
                .fetch_all(&mut *conn)
                .await?;
                rows.iter().map(deploy_from).collect()
            }

            pub(crate) async fn list_kill_switches(&self, ws: &str, since: &str, until: &str) -> Result<Vec<KillSwitch>> {
                let mut conn = self.pool.acquire().await?;
                let ws_row = Self::ws_row(&mut conn, ws).await?;
                let production: Vec<String> = Self::env_rows(&mut conn, ws_row.id)
                    .await?
                    .into_iter()
                    .filter(|e| e.production)
                    .map(|e| e.key)
                    .collect();
                let rows = sqlx::query(
                    "SELECT * FROM changes WHERE workspace = $1 AND kind = 'flag' AND action IN ('turn_off', 'kill')
                       AND at >= $2 AND at < $3 ORDER BY id",
                )
                .bind(ws)
                .bind(since)
                .bind(until)
                .fetch_all(&mut *conn)
                .await?;
                let mut out = Vec::new();
                for row in &rows {
                    let c = change_from(row)?;
                    let Some(env) = c.environment else { continue };
                    if production.contains(&env) {
                        out.push(KillSwitch {
                            change_id: c.id,
                            at: c.at,
                            flag: c.key,
                            environment: env,
                            actor: c.actor,
                        });
                    }
                }
                Ok(out)
            }
        }

        async fn policy_in(conn: &mut $conn, ws: &str) -> Result<PolicyRecord> {
            let row = sqlx::query("SELECT policy, version FROM policies WHERE workspace = $1")
                .bind(ws)
                .fetch_optional(&mut *conn)
                .await?;
            let (policy, version) = match row {
                Some(row) => {
                    let text: String = row.try_get("policy")?;
                    (
                        serde_json::from_str(&text).map_err(|e| corrupt("policy", e))?,
                        row.try_get("version")?,
                    )
                }
                None => (Policy::default(), 0),
            };
            Ok(PolicyRecord {
                workspace: ws.to_owned(),
                policy,
                version,
                always_irreversible: ALWAYS_IRREVERSIBLE.iter().map(|s| (*s).to_owned()).collect(),
            })
        }

        pub(crate) async fn insert_learning(
            conn: &mut $conn,
            ws: &str,
            l: &NewLearning,
            meta: &ChangeMeta,
        ) -> Result<Committed<Learning>> {
            let id = sqlx::query(
                "INSERT INTO learnings (workspace, source, source_ref, what, evidence, owner, at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(ws)
            .bind(&l.source)
            .bind(&l.source_ref)
            .bind(&l.what)
            .bind(&l.evidence)
            .bind(&l.owner)
            .bind(now())
            .fetch_one(&mut *conn)
            .await?
            .try_get::<i64, _>("id")?;
            let row = sqlx::query("SELECT * FROM learnings WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
            let learning = learning_from(&row)?;
            let key = id.to_string();
            let change = <$store>::record(
                conn,
                NewChange {
                    meta,
                    action: "record",
                    workspace: Some(ws),
                    kind: Kind::Learning,
                    key: &key,
                    environment: None,
                    before: None,
                    after: Some(json(&learning)),
                },
            )
            .await?;
            Ok(committed(learning, change))
        }
    };
}
pub(crate) use alignment_sql;
