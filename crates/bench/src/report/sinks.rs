//! The sections of the workloads that write somewhere other than a consumer's handler: the
//! transactional stage, the order projection in PostgreSQL and the notification sinks.

use std::fmt::Write as _;

use crate::notify::Notify;
use crate::stage::Stage;
use crate::store::Store;
use crate::util::{Mmm, PARTITIONS};

pub(super) fn stage(s: &mut String, w: &Stage) {
    let _ = writeln!(
        s,
        "## Transactional stage\n\nThe order-status stage (`run_transactional`, decode + JSON status record \
         per event) drains a {}-record backlog ({} partitions) with a fresh group per run, at most {} records per \
         transaction (commit interval 100 ms); the baseline is the same loop at least once \
         (`StageConfig::transactional = false`: idempotent producer flushed, then a plain offset commit). Rates count \
         from the first transformed record to the member's stop; rounds interleaved.\n\n\
         | variant | records/s | vs at least once |\n|---|---|---|\n\
         | transactions (exactly once) | {} | {}× |\n\
         | at least once (baseline) | {} | 1.00× |\n\n\
         Transactions per transactional drain: {}.",
        w.records,
        PARTITIONS,
        w.batch,
        Mmm::of(&w.transactional).fmt(0),
        w.ratio().fmt(2),
        Mmm::of(&w.plain).fmt(0),
        Mmm::of(&w.transactions).fmt(0),
    );
    for e in &w.errors {
        let _ = writeln!(s, "\n- error: {e}");
    }
    let _ = writeln!(s);
}

pub(super) fn store(s: &mut String, w: &Store) {
    let _ = writeln!(
        s,
        "## Order projection in PostgreSQL\n\n`StoreProcessor` (decode, then inbox + order state machine + \
         customer totals) drains a {}-record backlog of complete order lifecycles ({} partitions, key order, a fresh group and \
         a fresh database per run, so every event has its effect). Batched: one database transaction per partition \
         batch of up to {} records; per record: `max_batch_records = 1`, one transaction per event, on a {}-record \
         backlog of the same shape. Each run checks, in the database, that every event was applied once and every \
         order ended delivered, and that nothing was refused. The baseline is the plain drain of the batched \
         variant's backlog (decode + key order, no store, the consumer drain's batch handler). Store rates count from the first \
         batch to the last event applied; rounds interleaved.\n\n\
         | variant | effects/s | vs plain drain | batched vs it |\n|---|---|---|---|\n\
         | batched transactions | {} | {}× | 1.00× |\n\
         | one transaction per record | {} | {}× | {}× |\n\
         | plain drain, no store (baseline) | {} | 1.00× | |",
        w.records,
        PARTITIONS,
        w.batch,
        w.single_records,
        Mmm::of(&w.batched).fmt(0),
        w.batched_vs_drain().fmt(2),
        Mmm::of(&w.single).fmt(0),
        w.single_vs_drain().fmt(3),
        w.batched_vs_single().fmt(1),
        Mmm::of(&w.drain).fmt(0),
    );
    for e in &w.errors {
        let _ = writeln!(s, "\n- error: {e}");
    }
    let _ = writeln!(s);
}

pub(super) fn notify(s: &mut String, w: &Notify) {
    let _ = writeln!(
        s,
        "## Notifications\n\n{} notifications of new orders ({} B JSON bodies) per round, the same messages to each \
         sink, rounds interleaved. Our sinks publish rounds of {} (one partition's batch) and await every confirm: \
         RabbitMQ = `RabbitSink` (one connection, confirm-mode channel, persistent messages, durable quorum queue, \
         `mandatory` with an alternate exchange); NATS = `NatsSink` (JetStream file stream, `Nats-Msg-Id`, publish acks). \
         Baseline = a new channel per message, no confirms, no persistence flag, classic transient queue (the textbook \
         example). Kafka forward = the same bodies through an idempotent producer (acks=all, linger 5 ms) to a {}-partition topic.\n\n\
         | sink | notifications/s | our RabbitMQ sink vs it |\n|---|---|---|",
        w.messages,
        w.body_bytes,
        crate::notify::BATCH,
        PARTITIONS
    );
    let _ = writeln!(
        s,
        "| RabbitMQ sink (ours) | {} | 1.00× |",
        Notify::m(&w.rabbit).fmt(0)
    );
    let _ = writeln!(
        s,
        "| channel per publish, no confirms (baseline) | {} | {}× |",
        Notify::m(&w.baseline).fmt(0),
        w.rabbit_vs_baseline().fmt(1)
    );
    let _ = writeln!(
        s,
        "| NATS JetStream sink (ours) | {} | {}× |",
        Notify::m(&w.nats).fmt(0),
        w.rabbit_vs_nats().fmt(2)
    );
    let _ = writeln!(
        s,
        "| Kafka→Kafka forward | {} | {}× |",
        Notify::m(&w.kafka).fmt(0),
        w.rabbit_vs_kafka().fmt(2)
    );
    for e in &w.errors {
        let _ = writeln!(s, "\n- error: {e}");
    }
    let _ = writeln!(s);
}
