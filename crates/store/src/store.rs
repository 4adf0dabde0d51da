//! [`OrderStore`]: the pool, the batch transaction and the read queries.

use std::collections::BTreeMap;
use std::time::Duration;

use orderstream_orders::{OrderState, transition};
use orderstream_schema::{EventType, OrderEvent};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use crate::StoreError;
use crate::url::{Backend, parse};

/// Settings of an [`OrderStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database` or `sqlite:PATH` (created when missing).
    /// The password belongs in the URL only when the URL comes from the environment or a file.
    pub url: String,
    /// Connections of the pool (PostgreSQL; SQLite always uses one: it has one writer).
    /// Default 8.
    pub max_connections: u32,
    /// How long a batch waits for a connection, and the connect timeout. Default 5 s.
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    /// Settings for `url`, defaults otherwise.
    pub fn new(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// One event to apply, with where it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The decoded event.
    pub event: &'a OrderEvent,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Applied: its id is now in the inbox, the order and the customer's totals changed.
    Applied,
    /// Already applied before (its id is in the inbox, or its sequence is not above the
    /// order's last): no effect.
    Duplicate,
    /// A kind this build does not know (a newer producer's enum symbol, read as `UNKNOWN`):
    /// recorded in the inbox, no effect on the order.
    UnknownKind,
    /// Illegal in the order's current state, but an earlier event of the order has not been
    /// applied yet (its sequence is above the next one expected): nothing written. The missing
    /// one may still come (e.g. it waits in the retry topic after a consumer restart), so
    /// this is worth retrying, unlike [`Effect::Illegal`].
    Early {
        /// The sequence the order expects next.
        expected: i64,
    },
    /// Illegal in the order's current state: nothing written.
    Illegal {
        /// The order's state before, if it exists.
        from: Option<OrderState>,
    },
}

/// A row of `orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// Current state.
    pub state: OrderState,
    /// Sequence of the last applied event.
    pub last_sequence: i64,
    /// The customer.
    pub customer_id: String,
}

/// Row counts, for summaries and checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Events in the inbox (applied or unknown kinds), i.e. distinct event ids with an effect.
    pub inbox: u64,
    /// Orders.
    pub orders: u64,
    /// Orders per state name.
    pub by_state: BTreeMap<String, u64>,
}

fn state_name(s: OrderState) -> &'static str {
    match s {
        OrderState::Created => "created",
        OrderState::Paid => "paid",
        OrderState::Shipped => "shipped",
        OrderState::Delivered => "delivered",
        OrderState::Cancelled => "cancelled",
        _ => "other",
    }
}

fn state_of(name: &str) -> Option<OrderState> {
    Some(match name {
        "created" => OrderState::Created,
        "paid" => OrderState::Paid,
        "shipped" => OrderState::Shipped,
        "delivered" => OrderState::Delivered,
        "cancelled" => OrderState::Cancelled,
        _ => return None,
    })
}

/// The order projection in a database. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct OrderStore {
    pool: AnyPool,
    url: String,
}

impl OrderStore {
    /// Connects, and applies pending migrations.
    ///
    /// # Errors
    /// [`StoreError::InvalidConfig`], [`StoreError::Connect`] or [`StoreError::Migrate`].
    pub async fn connect(cfg: &StoreConfig) -> Result<Self, StoreError> {
        let redacted = crate::redact(&cfg.url);
        let (backend, url) = parse(&cfg.url).map_err(|message| StoreError::InvalidConfig {
            url: redacted.clone(),
            message,
        })?;
        if cfg.max_connections == 0 {
            return Err(StoreError::InvalidConfig {
                url: redacted,
                message: "max_connections must be ≥ 1".to_owned(),
            });
        }
        sqlx::any::install_default_drivers();
        let connections = match backend {
            Backend::Sqlite => 1,
            Backend::Postgres => cfg.max_connections,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(cfg.acquire_timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers do not block the writer; FULL: a commit survives power
                        // loss; busy_timeout: other processes' writes are waited for.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 5000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redacted.clone(),
                source,
            })?;
        crate::migrate::run(&pool, backend, &cfg.url).await?;
        Ok(OrderStore {
            pool,
            url: redacted,
        })
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The URL, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies `inputs` (one partition's batch, at most one event per order) in one
    /// transaction, inbox included. On error nothing of the batch is applied.
    ///
    /// # Errors
    /// [`StoreError::Apply`] (the database failed or is unreachable: transient).
    pub async fn apply_batch(&self, inputs: &[Input<'_>]) -> Result<Vec<Effect>, StoreError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        self.apply_tx(inputs)
            .await
            .map_err(|source| StoreError::Apply {
                topic: inputs[0].topic.to_owned(),
                partition: inputs[0].partition,
                first: inputs.iter().map(|i| i.offset).min().unwrap_or(-1),
                last: inputs.iter().map(|i| i.offset).max().unwrap_or(-1),
                records: inputs.len(),
                source,
            })
    }

    async fn apply_tx(&self, inputs: &[Input<'_>]) -> Result<Vec<Effect>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut effects = Vec::with_capacity(inputs.len());
        // customer -> (orders, paid) deltas, applied in key order so that concurrent batches
        // lock customer rows in one global order (no deadlock between partitions).
        let mut totals: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for input in inputs {
            let e = input.event;
            let current =
                sqlx::query("SELECT state, last_sequence FROM orders WHERE order_id = $1")
                    .bind(e.order_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| -> Result<(Option<OrderState>, i64), sqlx::Error> {
                        let state: String = r.try_get("state")?;
                        Ok((state_of(&state), r.try_get("last_sequence")?))
                    })
                    .transpose()?;
            if let Some((_, last)) = current
                && e.sequence <= last
            {
                effects.push(Effect::Duplicate);
                continue;
            }
            let from = current.and_then(|(s, _)| s);
            let (kind, next) = if e.event_type == EventType::Unknown {
                ("unknown", None)
            } else {
                match transition(from, e.event_type) {
                    Some(next) => (e.event_type.symbol(), Some(next)),
                    None => {
                        // Sequences are 0, 1, 2, ... per order: a jump means a predecessor is
                        // missing, and with it the event may become legal.
                        let expected = current.map_or(0, |(_, last)| last + 1);
                        effects.push(if e.sequence > expected {
                            Effect::Early { expected }
                        } else {
                            Effect::Illegal { from }
                        });
                        continue;
                    }
                }
            };
            let fresh = sqlx::query(
                "INSERT INTO inbox (event_id, order_id, source_topic, source_partition, source_offset, kind) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(e.event_id.as_str())
            .bind(e.order_id.as_str())
            .bind(input.topic)
            .bind(input.partition)
            .bind(input.offset)
            .bind(kind)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !fresh {
                effects.push(Effect::Duplicate);
                continue;
            }
            let Some(next) = next else {
                if current.is_some() {
                    sqlx::query("UPDATE orders SET last_sequence = $1 WHERE order_id = $2")
                        .bind(e.sequence)
                        .bind(e.order_id.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                effects.push(Effect::UnknownKind);
                continue;
            };
            sqlx::query(
                "INSERT INTO orders (order_id, customer_id, state, last_sequence, amount_minor) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO UPDATE SET \
                 state = excluded.state, last_sequence = excluded.last_sequence, amount_minor = excluded.amount_minor",
            )
            .bind(e.order_id.as_str())
            .bind(e.customer_id.as_str())
            .bind(state_name(next))
            .bind(e.sequence)
            .bind(e.amount_minor)
            .execute(&mut *tx)
            .await?;
            let t = totals.entry(e.customer_id.as_str()).or_default();
            match e.event_type {
                EventType::Created => t.0 += 1,
                EventType::Paid => t.1 += e.amount_minor,
                EventType::Cancelled if from == Some(OrderState::Paid) => t.1 -= e.amount_minor,
                _ => {}
            }
            effects.push(Effect::Applied);
        }
        for (customer, (orders, paid)) in totals {
            sqlx::query(
                "INSERT INTO customer_totals (customer_id, orders, paid_minor) VALUES ($1, $2, $3) \
                 ON CONFLICT (customer_id) DO UPDATE SET orders = customer_totals.orders + excluded.orders, \
                 paid_minor = customer_totals.paid_minor + excluded.paid_minor",
            )
            .bind(customer)
            .bind(orders)
            .bind(paid)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(effects)
    }

    /// Row counts.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let q = |source| StoreError::Query { source };
        let count = |sql: &'static str| async move {
            sqlx::query(sql)
                .fetch_one(&self.pool)
                .await
                .and_then(|r| r.try_get::<i64, _>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
        };
        let inbox = count("SELECT COUNT(*) FROM inbox").await.map_err(q)?;
        let orders = count("SELECT COUNT(*) FROM orders").await.map_err(q)?;
        let mut by_state = BTreeMap::new();
        for r in sqlx::query("SELECT state, COUNT(*) AS n FROM orders GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(q)?
        {
            let state: String = r.try_get("state").map_err(q)?;
            let n: i64 = r.try_get("n").map_err(q)?;
            by_state.insert(state, u64::try_from(n).unwrap_or(0));
        }
        Ok(StoreCounts {
            inbox,
            orders,
            by_state,
        })
    }

    /// Every order whose id starts with `prefix` (tests and reports select their own).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn orders(&self, prefix: &str) -> Result<BTreeMap<String, OrderRow>, StoreError> {
        let q = |source| StoreError::Query { source };
        let mut out = BTreeMap::new();
        for r in sqlx::query(
            "SELECT order_id, customer_id, state, last_sequence FROM orders WHERE order_id LIKE $1",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await
        .map_err(q)?
        {
            let state: String = r.try_get("state").map_err(q)?;
            let Some(state) = state_of(&state) else {
                continue;
            };
            out.insert(
                r.try_get("order_id").map_err(q)?,
                OrderRow {
                    state,
                    last_sequence: r.try_get("last_sequence").map_err(q)?,
                    customer_id: r.try_get("customer_id").map_err(q)?,
                },
            );
        }
        Ok(out)
    }

    /// Event ids in the inbox for orders whose id starts with `prefix`, with how many times each
    /// appears (the primary key makes that 1; the check does not take it on trust).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn inbox(&self, prefix: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let q = |source| StoreError::Query { source };
        let mut out = BTreeMap::new();
        for r in sqlx::query(
            "SELECT event_id, COUNT(*) AS n FROM inbox WHERE order_id LIKE $1 GROUP BY event_id",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await
        .map_err(q)?
        {
            let n: i64 = r.try_get("n").map_err(q)?;
            out.insert(
                r.try_get("event_id").map_err(q)?,
                u64::try_from(n).unwrap_or(0),
            );
        }
        Ok(out)
    }

    /// Every inbox row of `topic`: `(event_id, order_id, partition, offset)`, in partition and
    /// offset order: which source records the store applied (for audits against the topic).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn inbox_records(
        &self,
        topic: &str,
    ) -> Result<Vec<(String, String, i32, i64)>, StoreError> {
        let q = |source| StoreError::Query { source };
        let mut out = Vec::new();
        for r in sqlx::query(
            "SELECT event_id, order_id, CAST(source_partition AS BIGINT) AS source_partition, \
             source_offset FROM inbox \
             WHERE source_topic = $1 ORDER BY source_partition, source_offset",
        )
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .map_err(q)?
        {
            let p: i64 = r.try_get("source_partition").map_err(q)?;
            out.push((
                r.try_get("event_id").map_err(q)?,
                r.try_get("order_id").map_err(q)?,
                i32::try_from(p).unwrap_or(-1),
                r.try_get("source_offset").map_err(q)?,
            ));
        }
        Ok(out)
    }

    /// Per-customer (orders, paid) totals for customers whose id starts with `prefix`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn customer_totals(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, (i64, i64)>, StoreError> {
        let q = |source| StoreError::Query { source };
        let mut out = BTreeMap::new();
        for r in sqlx::query(
            "SELECT customer_id, orders, paid_minor FROM customer_totals WHERE customer_id LIKE $1",
        )
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await
        .map_err(q)?
        {
            out.insert(
                r.try_get("customer_id").map_err(q)?,
                (
                    r.try_get("orders").map_err(q)?,
                    r.try_get("paid_minor").map_err(q)?,
                ),
            );
        }
        Ok(out)
    }

    /// Closes the pool (waits for connections in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
