//! The transactional outbox: a service changes its own rows and records the order event that
//! change produced **in one database transaction** ([`OrderStore::begin`], [`record`]); the
//! relay ([`OrderStore::pending`], [`OrderStore::mark_sent`]) publishes unsent rows through the
//! idempotent producer and marks them sent. A crash between publish and mark publishes the row
//! again: the event id makes the second copy harmless downstream (the consumer's inbox). A row
//! committed to the outbox is never lost: it stays unsent until a publish of it was
//! acknowledged.

use std::collections::HashSet;

use orderstream_schema::OrderEvent;
use sqlx::Row;

use crate::{OrderStore, StoreError};

/// A transaction on the store: the service's own statements and [`record`] commit together.
pub type StoreTx = sqlx::Transaction<'static, sqlx::Any>;

/// An unsent outbox row.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OutboxRow {
    /// Position in the outbox (assigned at insert, increasing).
    pub id: i64,
    /// The event to publish.
    pub event: OrderEvent,
}

/// Outbox row counts for orders whose id starts with a prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxCounts {
    /// Rows recorded.
    pub recorded: u64,
    /// Rows not yet marked sent.
    pub unsent: u64,
}

/// Records `event` in the outbox inside `tx`: published by the relay once `tx` commits, never if
/// it rolls back.
///
/// # Errors
/// [`StoreError::Outbox`] (the event id is already recorded, or the database failed).
pub async fn record(tx: &mut StoreTx, event: &OrderEvent) -> Result<(), StoreError> {
    let fail = |source| StoreError::Outbox {
        what: format!(
            "recording event {} of order {}",
            event.event_id, event.order_id
        ),
        source,
    };
    let json = serde_json::to_string(event).map_err(|e| fail(sqlx::Error::Encode(Box::new(e))))?;
    sqlx::query("INSERT INTO outbox (event_id, order_id, event_json) VALUES ($1, $2, $3)")
        .bind(event.event_id.as_str())
        .bind(event.order_id.as_str())
        .bind(json)
        .execute(&mut **tx)
        .await
        .map_err(fail)?;
    Ok(())
}

impl OrderStore {
    /// Begins a transaction for a service's change and its [`record`]ed events.
    ///
    /// # Errors
    /// [`StoreError::Outbox`] when no connection can be had.
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        self.pool()
            .begin()
            .await
            .map_err(|source| StoreError::Outbox {
                what: "beginning a transaction".to_owned(),
                source,
            })
    }

    /// Up to `limit` unsent rows in id order, **at most one per order**: an order's next event
    /// is handed out only after its earlier one was marked sent, so a failed publish can never
    /// be overtaken by a later event of the same order.
    ///
    /// # Errors
    /// [`StoreError::Outbox`].
    pub async fn pending(&self, limit: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let fail = |source| StoreError::Outbox {
            what: "reading unsent rows".to_owned(),
            source,
        };
        let rows = sqlx::query(
            "SELECT id, order_id, event_json FROM outbox WHERE sent = 0 ORDER BY id LIMIT $1",
        )
        .bind(i64::try_from(limit.saturating_mul(4)).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(fail)?;
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(limit.min(rows.len()));
        for r in rows {
            let order: String = r.try_get("order_id").map_err(fail)?;
            if !seen.insert(order) {
                continue;
            }
            let json: String = r.try_get("event_json").map_err(fail)?;
            let event =
                serde_json::from_str(&json).map_err(|e| fail(sqlx::Error::Decode(Box::new(e))))?;
            out.push(OutboxRow {
                id: r.try_get("id").map_err(fail)?,
                event,
            });
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    /// Marks rows sent (their publish was acknowledged).
    ///
    /// # Errors
    /// [`StoreError::Outbox`].
    pub async fn mark_sent(&self, ids: &[i64]) -> Result<u64, StoreError> {
        let fail = |source| StoreError::Outbox {
            what: format!("marking {} rows sent", ids.len()),
            source,
        };
        let mut tx = self.pool().begin().await.map_err(fail)?;
        let mut marked = 0;
        for chunk in ids.chunks(500) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            // Integers only, formatted here: no injection possible.
            marked += sqlx::query(&format!(
                "UPDATE outbox SET sent = 1 WHERE id IN ({})",
                list.join(",")
            ))
            .execute(&mut *tx)
            .await
            .map_err(fail)?
            .rows_affected();
        }
        tx.commit().await.map_err(fail)?;
        Ok(marked)
    }

    /// Outbox counts for orders whose id starts with `prefix`.
    ///
    /// # Errors
    /// [`StoreError::Outbox`].
    pub async fn outbox_counts(&self, prefix: &str) -> Result<OutboxCounts, StoreError> {
        let fail = |source| StoreError::Outbox {
            what: "counting rows".to_owned(),
            source,
        };
        let r = sqlx::query(
            "SELECT COUNT(*) AS recorded, COALESCE(SUM(1 - sent), 0) AS unsent FROM outbox WHERE order_id LIKE $1",
        )
        .bind(format!("{prefix}%"))
        .fetch_one(self.pool())
        .await
        .map_err(fail)?;
        let n = |c: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(r.try_get::<i64, _>(c).map_err(fail)?).unwrap_or(0))
        };
        Ok(OutboxCounts {
            recorded: n("recorded")?,
            unsent: n("unsent")?,
        })
    }
}
