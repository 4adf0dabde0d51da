//! `relay`: publishes the store's outbox through the idempotent producer, in order per order,
//! and marks each row sent only after Kafka acknowledged it.

use std::process::ExitCode;
use std::time::Duration;

use orderstream_store::{OrderStore, StoreConfig};

use crate::cmd::consume::stop_token;
use crate::cmd::produce::{ProduceArgs, build_producer};
use crate::exit;
use crate::settings::Effective;

/// Options of `relay`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RelayArgs {
    /// The store whose outbox is published: `sqlite:PATH` or `postgres://user@host:port/db`. A
    /// URL with a password only in ORDERSTREAM_STORE, never as a flag.
    #[arg(long, env = "ORDERSTREAM_STORE", hide_env_values = true)]
    pub(crate) store: String,
    /// Rows published per round (at most one per order; the next waits for its predecessor).
    #[arg(long, env = "ORDERSTREAM_RELAY_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) batch: u32,
    /// Milliseconds to wait when the outbox has nothing unsent.
    #[arg(long, env = "ORDERSTREAM_RELAY_POLL_MS", default_value_t = 200)]
    pub(crate) poll_ms: u64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long = "for", env = "ORDERSTREAM_RELAY_FOR", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) for_secs: Option<u64>,
}

/// `orderstream relay`.
pub(crate) async fn run(settings: &Effective, args: RelayArgs) -> anyhow::Result<ExitCode> {
    crate::cmd::store::refuse_flag_password(&args.store, "ORDERSTREAM_STORE", "--store", "")?;
    // First: a signal during start-up must end the relay cleanly, not kill it.
    let cancel = stop_token(args.for_secs);
    if let Some(path) = missing_sqlite_file(&args.store) {
        return Err(exit::UsageError(format!(
            "no SQLite store at {path}: the relay publishes the outbox of an existing store (the one `consume --store` or the services write)"
        ))
        .into());
    }
    let store = OrderStore::connect(&StoreConfig::new(&args.store))
        .await
        .map_err(|e| exit::UsageError::of(&e))?;
    crate::cmd::topics::connect_admin(settings)?;
    let producer = build_producer(
        settings,
        &ProduceArgs {
            count: None,
            duration: None,
            services: 1,
            rate: 0,
            open_orders: 1,
            window: 1,
            linger_ms: 5,
            compression: crate::choices::Codec::Lz4,
            quiet: true,
        },
    )
    .await?;
    // Long-running: a registry that does not answer yet is only warned about.
    crate::cmd::schemas::check_registry(settings).await?;
    let (mut published, mut marked, mut failed) = (0u64, 0u64, 0u64);
    let poll = Duration::from_millis(args.poll_ms);
    while !cancel.is_cancelled() {
        let rows = match store.pending(args.batch as usize).await {
            Ok(rows) => rows,
            Err(e) => {
                // The database is down: nothing is lost (rows stay unsent); try again.
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "outbox unreadable; retrying"
                );
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if rows.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(poll) => continue,
            }
        }
        // A round is finished even when cancellation comes meanwhile: its rows are marked
        // only after their acknowledgements.
        let mut pending = Vec::with_capacity(rows.len());
        for row in &rows {
            pending.push((row.id, producer.enqueue(&row.event).await));
        }
        published += rows.len() as u64;
        let mut sent = Vec::with_capacity(rows.len());
        for (id, p) in pending {
            let outcome = p.outcome().await;
            if outcome.is_delivered() {
                sent.push(id);
            } else {
                failed += 1;
                tracing::warn!(
                    outbox_id = id,
                    ?outcome,
                    "outbox row not acknowledged; stays unsent"
                );
            }
        }
        match store.mark_sent(&sent).await {
            Ok(n) => marked += n,
            // Published but not marked: published again next round, harmless downstream.
            Err(e) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                rows = sent.len(),
                "marking rows sent failed"
            ),
        }
    }
    let flush = producer.shutdown(Duration::from_secs(10)).await;
    println!(
        "relay {}: published {published} | marked sent {marked} | not acknowledged (left unsent) {failed} | producer flush {}",
        store.url(),
        if flush.complete {
            "complete"
        } else {
            "INCOMPLETE"
        }
    );
    store.close().await;
    Ok(if flush.complete && failed == 0 {
        exit::SUCCESS
    } else {
        ExitCode::from(exit::INCOMPLETE)
    })
}

/// The file of an `sqlite:` store URL when it does not exist: connecting would create an empty
/// store, and a mistyped path would then read as "nothing to publish".
fn missing_sqlite_file(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite:")?;
    let path = path.strip_prefix("//").unwrap_or(path);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !std::path::Path::new(path).exists()).then_some(path)
}
