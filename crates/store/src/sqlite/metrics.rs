//! SQLite: metric and initiative definitions (admin mutations, each one
//! transaction with its change record and audit entry).

use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use super::{NewChange, SqliteStore, check_version, corrupt, json, not_found};
use crate::error::{Kind, Result, StoreError};
use crate::metrics::{
    Aggregation, Direction, InitiativeDef, InitiativeRecord, MetricDef, MetricRecord, check_initiative, check_metric,
    check_metric_delete,
};
use crate::model::{ChangeMeta, Committed};
use crate::now;

fn committed<T>(value: T, change_id: i64) -> Committed<T> {
    Committed {
        value,
        change_id,
        snapshots: Vec::new(),
        removed_environments: Vec::new(),
    }
}

fn metric_from(row: &SqliteRow) -> Result<MetricRecord> {
    let aggregation: String = row.try_get("aggregation")?;
    let direction: String = row.try_get("good_direction")?;
    Ok(MetricRecord {
        metric: MetricDef {
            key: row.try_get("key")?,
            name: row.try_get("name")?,
            aggregation: Aggregation::parse(&aggregation).ok_or_else(|| corrupt("metric aggregation", &aggregation))?,
            event: row.try_get("event")?,
            numerator: row.try_get("numerator")?,
            denominator: row.try_get("denominator")?,
            good_direction: Direction::parse(&direction).ok_or_else(|| corrupt("metric direction", &direction))?,
            unit: row.try_get("unit")?,
            description: row.try_get("description")?,
            owner: row.try_get("owner")?,
            parent: row.try_get("parent")?,
            north_star: row.try_get("north_star")?,
        },
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn initiative_from(row: &SqliteRow) -> Result<InitiativeRecord> {
    let direction: String = row.try_get("direction")?;
    Ok(InitiativeRecord {
        initiative: InitiativeDef {
            key: row.try_get("key")?,
            name: row.try_get("name")?,
            team: row.try_get("team")?,
            owner: row.try_get("owner")?,
            description: row.try_get("description")?,
            metric: row.try_get("metric")?,
            direction: Direction::parse(&direction).ok_or_else(|| corrupt("initiative direction", &direction))?,
            expected_change: row.try_get("expected_change")?,
            starts_on: row.try_get("starts_on")?,
            ends_on: row.try_get("ends_on")?,
        },
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl SqliteStore {
    pub(crate) async fn metric_rows(conn: &mut SqliteConnection, ws_id: i64) -> Result<Vec<MetricRecord>> {
        let rows = sqlx::query("SELECT * FROM metrics WHERE workspace_id = ? ORDER BY id")
            .bind(ws_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(metric_from).collect()
    }

    async fn initiative_rows(conn: &mut SqliteConnection, ws_id: i64) -> Result<Vec<InitiativeRecord>> {
        let rows = sqlx::query("SELECT * FROM initiatives WHERE workspace_id = ? ORDER BY id")
            .bind(ws_id)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(initiative_from).collect()
    }

    pub(crate) async fn list_metrics(&self, ws: &str) -> Result<Vec<MetricRecord>> {
        let mut conn = self.pool.acquire().await?;
        let ws = Self::ws_row(&mut conn, ws).await?;
        Self::metric_rows(&mut conn, ws.id).await
    }

    pub(crate) async fn get_metric(&self, ws: &str, key: &str) -> Result<MetricRecord> {
        self.list_metrics(ws)
            .await?
            .into_iter()
            .find(|m| m.metric.key == key)
            .ok_or_else(|| not_found(Kind::Metric, key))
    }

    async fn write_metric(conn: &mut SqliteConnection, ws_id: i64, rec: &MetricRecord) -> Result<()> {
        let m = &rec.metric;
        sqlx::query(
            "INSERT INTO metrics (workspace_id, key, name, aggregation, event, numerator, denominator, good_direction,
                 unit, description, owner, parent, north_star, version, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (workspace_id, key) DO UPDATE SET name = excluded.name, aggregation = excluded.aggregation,
                 event = excluded.event, numerator = excluded.numerator, denominator = excluded.denominator,
                 good_direction = excluded.good_direction, unit = excluded.unit, description = excluded.description,
                 owner = excluded.owner, parent = excluded.parent, north_star = excluded.north_star,
                 version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(ws_id)
        .bind(&m.key)
        .bind(&m.name)
        .bind(m.aggregation.as_str())
        .bind(&m.event)
        .bind(&m.numerator)
        .bind(&m.denominator)
        .bind(m.good_direction.as_str())
        .bind(&m.unit)
        .bind(&m.description)
        .bind(&m.owner)
        .bind(&m.parent)
        .bind(m.north_star)
        .bind(rec.version)
        .bind(&rec.created_at)
        .bind(&rec.updated_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn create_metric(
        &self,
        ws: &str,
        def: MetricDef,
        meta: &ChangeMeta,
    ) -> Result<Committed<MetricRecord>> {
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let ws = Self::ws_row(&mut tx, ws).await?;
        let all = Self::metric_rows(&mut tx, ws.id).await?;
        if all.iter().any(|m| m.metric.key == def.key) {
            return Err(StoreError::Conflict {
                kind: Kind::Metric,
                key: def.key,
            });
        }
        check_metric(&def, &all)?;
        let at = now();
        let rec = MetricRecord {
            metric: def,
            version: 1,
            created_at: at.clone(),
            updated_at: at,
        };
        Self::write_metric(&mut tx, ws.id, &rec).await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "create",
                workspace: Some(&ws.ws.key),
                kind: Kind::Metric,
                key: &rec.metric.key,
                environment: None,
                before: None,
                after: Some(json(&rec.metric)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(committed(rec, change_id))
    }

    pub(crate) async fn update_metric(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        def: MetricDef,
        meta: &ChangeMeta,
    ) -> Result<Committed<MetricRecord>> {
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let ws = Self::ws_row(&mut tx, ws).await?;
        let all = Self::metric_rows(&mut tx, ws.id).await?;
        let current = all
            .iter()
            .find(|m| m.metric.key == key)
            .cloned()
            .ok_or_else(|| not_found(Kind::Metric, key))?;
        check_version(expected, current.version)?;
        if def.key != key {
            return Err(StoreError::Invalid(vec![crate::FieldError {
                field: "/key".into(),
                message: format!("must be `{key}`, the metric in the path"),
            }]));
        }
        if def.north_star != current.metric.north_star {
            return Err(StoreError::Invalid(vec![crate::FieldError {
                field: "/north_star".into(),
                message:
                    "changing the North Star is an irreversible change made with POST .../metrics/{key}/north-star"
                        .into(),
            }]));
        }
        let others: Vec<MetricRecord> = all.into_iter().filter(|m| m.metric.key != key).collect();
        check_metric(&def, &others)?;
        let rec = MetricRecord {
            metric: def,
            version: current.version + 1,
            created_at: current.created_at.clone(),
            updated_at: now(),
        };
        Self::write_metric(&mut tx, ws.id, &rec).await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "update",
                workspace: Some(&ws.ws.key),
                kind: Kind::Metric,
                key,
                environment: None,
                before: Some(json(&current.metric)),
                after: Some(json(&rec.metric)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(committed(rec, change_id))
    }

    pub(crate) async fn delete_metric(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let ws = Self::ws_row(&mut tx, ws).await?;
        let all = Self::metric_rows(&mut tx, ws.id).await?;
        let current = all
            .iter()
            .find(|m| m.metric.key == key)
            .cloned()
            .ok_or_else(|| not_found(Kind::Metric, key))?;
        check_version(expected, current.version)?;
        let initiatives = Self::initiative_rows(&mut tx, ws.id).await?;
        check_metric_delete(key, &all, &initiatives)?;
        sqlx::query("DELETE FROM metrics WHERE workspace_id = ? AND key = ?")
            .bind(ws.id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "delete",
                workspace: Some(&ws.ws.key),
                kind: Kind::Metric,
                key,
                environment: None,
                before: Some(json(&current.metric)),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(committed((), change_id))
    }

    pub(crate) async fn set_north_star(
        &self,
        ws: &str,
        key: &str,
        meta: &ChangeMeta,
    ) -> Result<Committed<MetricRecord>> {
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let ws = Self::ws_row(&mut tx, ws).await?;
        let all = Self::metric_rows(&mut tx, ws.id).await?;
        let target = all
            .iter()
            .find(|m| m.metric.key == key)
            .cloned()
            .ok_or_else(|| not_found(Kind::Metric, key))?;
        if target.metric.north_star {
            return Err(StoreError::Invalid(vec![crate::FieldError {
                field: "/key".into(),
                message: format!("`{key}` is already the North Star"),
            }]));
        }
        let at = now();
        let old = all.iter().find(|m| m.metric.north_star).cloned();
        // The old North Star first: the partial unique index allows one.
        if let Some(old) = &old {
            let mut rec = old.clone();
            rec.metric.north_star = false;
            rec.metric.parent = Some(key.to_owned());
            rec.version += 1;
            rec.updated_at = at.clone();
            Self::write_metric(&mut tx, ws.id, &rec).await?;
        }
        let mut rec = target.clone();
        rec.metric.north_star = true;
        rec.metric.parent = None;
        rec.version += 1;
        rec.updated_at = at;
        Self::write_metric(&mut tx, ws.id, &rec).await?;
        let before: Value =
            serde_json::json!({"north_star": old.as_ref().map(|m| &m.metric.key), "parent": target.metric.parent});
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "change_north_star",
                workspace: Some(&ws.ws.key),
                kind: Kind::Metric,
                key,
                environment: None,
                before: Some(before),
                after: Some(serde_json::json!({"north_star": key})),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(committed(rec, change_id))
    }

    pub(crate) async fn list_initiatives(&self, ws: &str) -> Result<Vec<InitiativeRecord>> {
        let mut conn = self.pool.acquire().await?;
        let ws = Self::ws_row(&mut conn, ws).await?;
        Self::initiative_rows(&mut conn, ws.id).await
    }

    pub(crate) async fn get_initiative(&self, ws: &str, key: &str) -> Result<InitiativeRecord> {
        self.list_initiatives(ws)
            .await?
            .into_iter()
            .find(|i| i.initiative.key == key)
            .ok_or_else(|| not_found(Kind::Initiative, key))
    }

    pub(crate) async fn put_initiative(
        &self,
        ws: &str,
        def: InitiativeDef,
        create: bool,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<InitiativeRecord>> {
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let ws = Self::ws_row(&mut tx, ws).await?;
        let current = Self::initiative_rows(&mut tx, ws.id)
            .await?
            .into_iter()
            .find(|i| i.initiative.key == def.key);
        match (&current, create) {
            (Some(_), true) => {
                return Err(StoreError::Conflict {
                    kind: Kind::Initiative,
                    key: def.key,
                });
            }
            (None, false) => return Err(not_found(Kind::Initiative, &def.key)),
            (Some(c), false) => check_version(expected, c.version)?,
            (None, true) => {}
        }
        let metrics = Self::metric_rows(&mut tx, ws.id).await?;
        check_initiative(&def, &metrics)?;
        let at = now();
        let rec = InitiativeRecord {
            initiative: def,
            version: current.as_ref().map_or(1, |c| c.version + 1),
            created_at: current.as_ref().map_or_else(|| at.clone(), |c| c.created_at.clone()),
            updated_at: at,
        };
        let i = &rec.initiative;
        sqlx::query(
            "INSERT INTO initiatives (workspace_id, key, name, team, owner, description, metric, direction,
                 expected_change, starts_on, ends_on, version, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (workspace_id, key) DO UPDATE SET name = excluded.name, team = excluded.team,
                 owner = excluded.owner, description = excluded.description, metric = excluded.metric,
                 direction = excluded.direction, expected_change = excluded.expected_change,
                 starts_on = excluded.starts_on, ends_on = excluded.ends_on, version = excluded.version,
                 updated_at = excluded.updated_at",
        )
        .bind(ws.id)
        .bind(&i.key)
        .bind(&i.name)
        .bind(&i.team)
        .bind(&i.owner)
        .bind(&i.description)
        .bind(&i.metric)
        .bind(i.direction.as_str())
        .bind(i.expected_change)
        .bind(&i.starts_on)
        .bind(&i.ends_on)
        .bind(rec.version)
        .bind(&rec.created_at)
        .bind(&rec.updated_at)
        .execute(&mut *tx)
        .await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: if create { "create" } else { "update" },
                workspace: Some(&ws.ws.key),
                kind: Kind::Initiative,
                key: &rec.initiative.key,
                environment: None,
                before: current.as_ref().map(|c| json(&c.initiative)),
                after: Some(json(&rec.initiative)),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(committed(rec, change_id))
    }

    pub(crate) async fn delete_initiative(
        &self,
        ws: &str,
        key: &str,
        expected: Option<i64>,
        meta: &ChangeMeta,
    ) -> Result<Committed<()>> {
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let ws = Self::ws_row(&mut tx, ws).await?;
        let current = Self::initiative_rows(&mut tx, ws.id)
            .await?
            .into_iter()
            .find(|i| i.initiative.key == key)
            .ok_or_else(|| not_found(Kind::Initiative, key))?;
        check_version(expected, current.version)?;
        sqlx::query("DELETE FROM initiatives WHERE workspace_id = ? AND key = ?")
            .bind(ws.id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        let change_id = Self::record(
            &mut tx,
            NewChange {
                meta,
                action: "delete",
                workspace: Some(&ws.ws.key),
                kind: Kind::Initiative,
                key,
                environment: None,
                before: Some(json(&current.initiative)),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(committed((), change_id))
    }
}
