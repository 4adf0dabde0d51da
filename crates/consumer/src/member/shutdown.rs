//! A consumer's end: stop fetching, drain the owners, commit what they finished, leave the
//! group, and say what was left uncommitted.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::{debug, info, warn};

use super::handler::Handler;
use super::side::{Side, SideSummary, lock};

pub(super) fn shutdown<H: Handler>(consumer: BaseConsumer<Side<H>>) -> SideSummary {
    let side = consumer.context();
    let cfg = &side.shared.cfg;
    info!(topic = %side.topic, "shutdown: stop fetching, drain, commit, leave");
    if let Ok(assignment) = consumer.assignment()
        && let Err(e) = consumer.pause(&assignment)
    {
        debug!(error = %e, "pause on shutdown");
    }
    let parts: Vec<i32> = {
        let mut table = lock(&side.table);
        table.iter_mut().map(|o| o.link.ctx.partition).collect()
    };
    let deadline = Instant::now() + cfg.shutdown_timeout;
    let counters = &side.shared.counters;
    let cancelled_before = counters.cancelled.load(Ordering::Relaxed);
    let abandoned_before = counters.forwards_abandoned.load(Ordering::Relaxed);
    let drained = side.release(&parts, deadline);
    // Work cut short: a handler cancelled or still running at the deadline, or a retry /
    // dead-letter copy whose send was interrupted (it may exist; its record comes again).
    let mut forced = counters.cancelled.load(Ordering::Relaxed) > cancelled_before
        || counters.forwards_abandoned.load(Ordering::Relaxed) > abandoned_before
        || drained.iter().any(|d| d.stuck);
    if forced {
        warn!(topic = %side.topic, "shutdown drain deadline hit: committing the frontier, in-flight work is abandoned");
    }
    let ok = side.commit_drained(&consumer, &drained) != Some(false);
    side.resolve_async_at_stop(&consumer);
    let committed = lock(&side.committed).clone();
    let mut uncommitted = BTreeMap::new();
    for d in &drained {
        let range = if ok {
            d.uncommitted.clone()
        } else {
            // the commit failed: everything after the last confirmed commit comes again
            let from = committed.get(&d.partition).copied();
            match (from, &d.uncommitted, d.committable) {
                (Some(f), Some(r), _) => Some(f.min(r.start)..r.end),
                (Some(f), None, Some(c)) if f < c => Some(f..c),
                (None, r, _) => r.clone(),
                _ => None,
            }
        };
        if let Some(r) = range {
            uncommitted.insert((side.topic.to_string(), d.partition), r);
        }
    }
    if !uncommitted.is_empty() {
        warn!(topic = %side.topic, ?uncommitted, "uncommitted ranges at shutdown (will be redelivered)");
    }
    consumer.unsubscribe();
    let topic = side.topic.to_string();
    let close_timeout = cfg.close_timeout;
    // rdkafka's drop closes the consumer queue and polls until closed, which can hang on a
    // broken cluster: it runs on a helper thread with a deadline.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("orderstream-close".to_owned())
        .spawn(move || {
            drop(consumer);
            let _ = tx.send(());
        });
    match spawned {
        Ok(_) => {
            if rx.recv_timeout(close_timeout).is_err() {
                forced = true;
                warn!(timeout = ?close_timeout, "consumer did not close in time: abandoned (forced close)");
            }
        }
        Err(e) => {
            forced = true;
            warn!(error = %e, "could not spawn the close thread");
        }
    }
    SideSummary {
        committed: committed
            .into_iter()
            .map(|(p, o)| ((topic.clone(), p), o))
            .collect(),
        uncommitted,
        forced_close: forced,
        shutdown_commit_failed: !ok,
        refused: None,
    }
}
