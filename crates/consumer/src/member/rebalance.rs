//! A consumer's rebalance callbacks: an assigned partition gets an owner, a revoked one is
//! drained and its finished work committed, a lost one is dropped without a commit. librdkafka
//! runs them inside `poll`, on the poll thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::handler::{Handler, PartCtx};
use super::owner;
use super::partitions::{Drained, Owned, drain};
use super::side::{Side, lock};
use super::summary::bump;
use crate::metric as m;

impl<H: Handler> Side<H> {
    pub(super) fn assign(&self, parts: &[i32]) {
        let mut table = lock(&self.table);
        for &p in parts {
            let ctx = Arc::new(PartCtx::new(
                Arc::clone(&self.topic),
                p,
                self.from_retry,
                Arc::clone(&self.completed),
            ));
            let link = owner::spawn(&self.rt, Arc::clone(&self.shared), ctx);
            if let Some(old) = table.insert(p, Owned::new(link)) {
                old.link.kill.cancel();
            }
        }
        self.window.store(
            self.budget.window_per_partition(table.len()),
            Ordering::Relaxed,
        );
        drop(table);
        if !self.from_retry {
            self.shared.parked.own(&self.source_tps(parts));
        }
    }

    /// Removes `parts` from the table and drains their owners until `deadline`.
    pub(super) fn release(&self, parts: &[i32], deadline: Instant) -> Vec<Drained> {
        let owners: Vec<Owned> = {
            let mut table = lock(&self.table);
            let o = parts.iter().filter_map(|p| table.remove(*p)).collect();
            self.window.store(
                self.budget.window_per_partition(table.len()),
                Ordering::Relaxed,
            );
            o
        };
        let drained = drain(owners, deadline);
        // Nothing sets the released partitions' gauges any more: they leave the scrape after
        // the recorder's idle timeout (metric::GAUGE_IDLE_TIMEOUT), and the new owner reports
        // the partitions.
        if !self.from_retry {
            self.shared.parked.disown(&self.source_tps(parts));
        }
        drained
    }
}

impl<H: Handler> ClientContext for Side<H> {
    fn stats(&self, statistics: Statistics) {
        let Some(t) = statistics.topics.get(&*self.topic) else {
            return;
        };
        // stored for the partition's owner, which sets the gauge on its tick
        let mut table = lock(&self.table);
        for (p, part) in &t.partitions {
            if let Some(o) = table.get_mut(*p)
                && part.consumer_lag >= 0
            {
                o.link
                    .ctx
                    .lag_records
                    .store(part.consumer_lag, Ordering::Relaxed);
            }
        }
    }
}

/// Whether a rebalance callback moves partitions of this member. A cooperative rebalance calls
/// back every member, most with nothing to move: only the ones that move partitions count.
fn moves_partitions(rebalance: &Rebalance<'_>) -> bool {
    match rebalance {
        Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) => tpl.count() > 0,
        Rebalance::Error(_) => false,
    }
}

impl<H: Handler> ConsumerContext for Side<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let counters = &self.shared.counters;
        let moves = moves_partitions(rebalance);
        let count = |kind: &'static str| {
            if moves {
                bump(&counters.rebalances);
                metrics::counter!(m::REBALANCES, "kind" => kind).increment(1);
            }
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = self.tps(tpl);
                info!(topic = %self.topic, partitions = ?parts, "partitions assigned");
                count("assign");
                self.assign(&parts);
            }
            Rebalance::Revoke(tpl) => {
                let parts = self.tps(tpl);
                if consumer.assignment_lost() {
                    warn!(topic = %self.topic, partitions = ?parts, "partitions lost: cancelling their work without commit");
                    count("lost");
                    counters
                        .lost
                        .fetch_add(parts.len() as u64, Ordering::Relaxed);
                    let _ = self.release(&parts, Instant::now());
                    return;
                }
                info!(topic = %self.topic, partitions = ?parts, "partitions revoked: draining");
                count("revoke");
                let deadline = Instant::now() + self.shared.cfg.revoke_drain_timeout;
                let drained = self.release(&parts, deadline);
                match self.commit_drained(consumer, &drained) {
                    Some(true) => bump(&counters.revoke_ok),
                    Some(false) => bump(&counters.revoke_failed),
                    None => debug!(topic = %self.topic, "revoke: nothing new to commit"),
                }
            }
            Rebalance::Error(e) => warn!(topic = %self.topic, error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // a partition paused before it was revoked may come back paused
        if let Rebalance::Assign(tpl) = rebalance
            && let Err(e) = consumer.resume(tpl)
        {
            debug!(error = %e, "resume after assign");
        }
    }

    /// Not called for the commits this member issues (see [`Side::committed`]); it would be
    /// for synchronous ones too, so it counts nothing: each commit is counted where its outcome
    /// is known ([`Side::commit_sync`], [`Side::resolve_async`]).
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let mut c = lock(&self.committed);
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset()
                        && e.error().is_ok()
                    {
                        let ent = c.entry(e.partition()).or_insert(o);
                        *ent = (*ent).max(o);
                    }
                }
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                warn!(topic = %self.topic, error = %err, "commit failed; the next commit carries its offsets");
                self.unconfirmed.store(true, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::Rebalance;
    use rdkafka::error::KafkaError;
    use rdkafka::{Offset, TopicPartitionList};

    use super::moves_partitions;

    #[test]
    fn only_callbacks_that_move_partitions_count_as_rebalances() {
        let empty = TopicPartitionList::new();
        let mut one = TopicPartitionList::new();
        one.add_partition_offset("orders", 3, Offset::Invalid)
            .expect("partition");
        assert!(!moves_partitions(&Rebalance::Assign(&empty)));
        assert!(!moves_partitions(&Rebalance::Revoke(&empty)));
        assert!(!moves_partitions(&Rebalance::Error(KafkaError::Canceled)));
        assert!(moves_partitions(&Rebalance::Assign(&one)));
        assert!(moves_partitions(&Rebalance::Revoke(&one)));
    }
}
