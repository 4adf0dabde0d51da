//! The member loop: poll a batch, then commit it in one transaction, or abort and rewind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::CommitMode;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::batch::Batch;
use super::outcome::{Reaction, react};
use super::{StageConfig, StageError, StageSummary, Transform};
use crate::member::forward::{Origin, dead_letter_headers};
use crate::{ProcessError, Record};

/// Fenced replacements tolerated within [`FENCED_WINDOW`] before the member stops: more means
/// another live member shares its transactional id and the two would fence each other forever.
const FENCED_LIMIT: usize = 3;
const FENCED_WINDOW: Duration = Duration::from_secs(60);
/// Threaded: its delivery reports are served on librdkafka's side, which `abort_transaction`
/// needs to purge what the aborted transaction had in flight.
type TxnProducer = ThreadedProducer<Deliveries>;

/// Counts failed deliveries: without transactions, a batch whose outputs did not all arrive
/// must not have its offsets committed.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Longest single poll while a batch fills (bounds how late cancellation is seen).
const MAX_POLL: Duration = Duration::from_millis(100);
/// Slack on top of twice `call_timeout` before a transactional call counts as hung.
const HUNG_GRACE: Duration = Duration::from_secs(5);

/// Runs `call` on a thread of its own and waits for it at most `limit`. librdkafka's
/// `send_offsets_to_transaction` waits for its main thread without a bound and relies on its
/// own timer to end the call; once in a while (after a fatal error of an earlier transaction)
/// that never happens. `None`: the call is still running; its thread is left to end (or not)
/// on its own, holding what `call` owns.
fn bounded<T: Send + 'static>(
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("stage-txn-call".into())
        .spawn(move || {
            let _ = tx.send(call());
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a thread for a transactional call");
        return None;
    }
    rx.recv_timeout(limit).ok()
}

/// Runs one member of a transactional stage until `cancel`; the batch in hand at cancellation
/// is committed before the member leaves its group.
///
/// # Errors
/// Invalid settings, clients that cannot be created or started, or a transactional id that
/// another live producer keeps taking over ([`StageError::Fenced`]).
pub async fn run_transactional<T: Transform>(
    cfg: StageConfig,
    transform: Arc<T>,
    cancel: CancellationToken,
) -> Result<StageSummary, StageError> {
    cfg.validate()?;
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || Member::start(cfg, rt, &cancel)?.run(&*transform, &cancel))
        .await
        .map_err(|e| StageError::Thread(e.to_string()))?
}

/// Rebalance bookkeeping shared with librdkafka's callbacks (which run inside `poll`).
#[derive(Default)]
struct StageContext {
    /// Per partition: bumped on every assign and revoke, so records polled before a
    /// rebalance are recognised as stale.
    epochs: Mutex<HashMap<i32, u64>>,
    rebalances: AtomicU64,
}

impl StageContext {
    fn epoch(&self, partition: i32) -> u64 {
        let epochs = self.epochs.lock().unwrap_or_else(PoisonError::into_inner);
        epochs.get(&partition).copied().unwrap_or(0)
    }

    fn bump(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        let mut epochs = self.epochs.lock().unwrap_or_else(PoisonError::into_inner);
        let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        for p in &parts {
            *epochs.entry(*p).or_default() += 1;
        }
        parts
    }
}

impl ClientContext for StageContext {}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = self.bump(tpl);
                info!(partitions = ?parts, "stage partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let parts = self.bump(tpl);
                let lost = consumer.assignment_lost();
                info!(partitions = ?parts, lost, "stage partitions revoked");
            }
            Rebalance::Error(e) => warn!(error = %e, "stage rebalance error"),
        }
    }
}

/// Why a transaction did not commit.
struct Failed {
    /// What to do about it.
    reaction: Reaction,
    /// For the log.
    what: String,
    /// The commit was sent but its outcome never came back: the broker may have committed it.
    undecided: bool,
}

impl Failed {
    fn kafka(op: &'static str, e: &KafkaError) -> Failed {
        Failed::new(react(e), format!("{op}: {e}"))
    }

    fn new(reaction: Reaction, what: String) -> Failed {
        Failed {
            reaction,
            what,
            undecided: false,
        }
    }
}

struct Member {
    cfg: StageConfig,
    rt: Handle,
    consumer: BaseConsumer<StageContext>,
    /// Shared with a call that may outlive its bound (see [`bounded`]).
    producer: Arc<TxnProducer>,
    summary: StageSummary,
    fenced_at: Vec<Instant>,
}

impl Member {
    fn start(
        cfg: StageConfig,
        rt: Handle,
        cancel: &CancellationToken,
    ) -> Result<Member, StageError> {
        let client_err = |client: &'static str| {
            let id = cfg.transactional_id.clone();
            move |source| StageError::Client {
                client,
                transactional_id: id,
                source,
            }
        };
        let consumer: BaseConsumer<StageContext> = cfg
            .consumer_config()
            .create_with_context(StageContext::default())
            .map_err(client_err("consumer"))?;
        let producer = Arc::new(new_producer(&cfg, cancel)?);
        consumer
            .subscribe(&[&cfg.source])
            .map_err(client_err("consumer"))?;
        info!(
            transactional_id = %cfg.transactional_id,
            group = %cfg.group_id,
            source = %cfg.source,
            output = %cfg.output,
            "stage member started"
        );
        Ok(Member {
            cfg,
            rt,
            consumer,
            producer,
            summary: StageSummary::default(),
            fenced_at: Vec::new(),
        })
    }

    fn run<T: Transform>(
        mut self,
        transform: &T,
        cancel: &CancellationToken,
    ) -> Result<StageSummary, StageError> {
        let mut batch = Batch::default();
        let mut attempt = 0u32;
        loop {
            if !cancel.is_cancelled() {
                self.fill(&mut batch, cancel);
            }
            self.drop_stale(&mut batch);
            if batch.is_empty() {
                if cancel.is_cancelled() {
                    break;
                }
                continue;
            }
            match self.transact(&batch, transform, attempt) {
                Ok((outputs, dead)) => {
                    self.summary.transactions += 1;
                    self.summary.records += batch.len() as u64;
                    self.summary.outputs += outputs;
                    self.summary.dead_lettered += dead;
                    debug!(
                        records = batch.len(),
                        outputs, dead, "transaction committed"
                    );
                    batch.clear();
                    attempt = 0;
                }
                Err(failed) => {
                    self.summary.aborted += 1;
                    if failed.undecided {
                        self.summary.undecided += batch.len() as u64;
                    }
                    warn!(
                        records = batch.len(),
                        attempt,
                        reason = %failed.what,
                        "transaction aborted; its records will be processed again"
                    );
                    self.recover(&batch, failed.reaction, cancel)?;
                    batch.clear();
                    attempt = attempt.saturating_add(1);
                    if cancel.is_cancelled() {
                        break;
                    }
                    std::thread::sleep(self.cfg.backoff.delay(attempt));
                }
            }
        }
        self.summary.rebalances = self.consumer.context().rebalances.load(Ordering::Relaxed);
        self.consumer.unsubscribe();
        Ok(self.summary)
    }

    /// Polls until the batch is full, `commit_interval` after its first record, or cancelled.
    fn fill(&mut self, batch: &mut Batch, cancel: &CancellationToken) {
        let mut first_at: Option<Instant> = None;
        while batch.len() < self.cfg.max_batch_records && !cancel.is_cancelled() {
            let wait = match first_at {
                Some(t) if t.elapsed() >= self.cfg.commit_interval => break,
                Some(t) => (self.cfg.commit_interval - t.elapsed()).min(MAX_POLL),
                None => MAX_POLL,
            };
            let polled = self.consumer.poll(wait);
            // a rebalance served by this poll makes earlier records of its partitions stale
            drop_stale(&self.consumer, &mut self.summary, batch);
            match polled {
                Some(Ok(m)) => {
                    let epoch = self.consumer.context().epoch(m.partition());
                    batch.push(Record::from_message(&self.cfg.source, &m), epoch);
                }
                Some(Err(e)) => warn!(error = %e, "stage poll error"),
                None => {}
            }
            if batch.is_empty() {
                first_at = None;
            } else if first_at.is_none() {
                first_at = Some(Instant::now());
            }
        }
    }

    fn drop_stale(&mut self, batch: &mut Batch) {
        drop_stale(&self.consumer, &mut self.summary, batch);
    }

    /// One transaction: outputs and dead letters of every record, then the offsets, then commit.
    fn transact<T: Transform>(
        &self,
        batch: &Batch,
        transform: &T,
        attempt: u32,
    ) -> Result<(u64, u64), Failed> {
        let transactional = self.cfg.transactional;
        let failed_before = self.producer.context().failed.load(Ordering::Relaxed);
        if transactional {
            self.producer
                .begin_transaction()
                .map_err(|e| Failed::kafka("begin_transaction", &e))?;
        }
        let (mut outputs, mut dead) = (0u64, 0u64);
        for rec in batch.records() {
            match self.rt.block_on(transform.transform(rec, attempt)) {
                Ok(outs) => {
                    for o in outs {
                        self.send(&self.cfg.output, Some(&o.key), Some(&o.payload), None)?;
                        outputs += 1;
                    }
                }
                Err(e @ ProcessError::Permanent { .. }) => {
                    let hs = dead_letter_headers(rec, &Origin::own(rec), &e, &self.cfg.group_id);
                    self.send(&self.cfg.dead_letter, rec.key(), rec.payload(), Some(hs))?;
                    dead += 1;
                }
                Err(e) => {
                    return Err(Failed::new(
                        Reaction::Abort,
                        format!(
                            "transient failure at {}/{}@{}: {e}",
                            rec.topic(),
                            rec.partition(),
                            rec.offset()
                        ),
                    ));
                }
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (p, next) in batch.commit_offsets() {
            offsets
                .add_partition_offset(&self.cfg.source, p, Offset::Offset(next))
                .map_err(|e| Failed::kafka("offsets", &e))?;
        }
        if !transactional {
            return self
                .commit_plain(&offsets, failed_before)
                .map(|()| (outputs, dead));
        }
        self.still_a_member()?;
        self.send_offsets(&offsets)?;
        self.still_a_member()?;
        self.commit()?;
        Ok((outputs, dead))
    }

    /// librdkafka learns of a lost membership on its own threads (and may then send offsets
    /// without a generation), while the revoke reaches us only at the next poll: check first.
    fn still_a_member(&self) -> Result<(), Failed> {
        if self.consumer.assignment_lost() {
            return Err(Failed::new(
                Reaction::Abort,
                "the group took this member's partitions".into(),
            ));
        }
        Ok(())
    }

    /// Commits, repeating a commit that timed out: it is resumable and may already be on the
    /// broker, so aborting it instead could leave it committed while the batch is processed
    /// again. A commit still undecided after `transaction_timeout` replaces the producer; the
    /// rewind then starts from the offsets the broker holds.
    fn commit(&self) -> Result<(), Failed> {
        let started = Instant::now();
        loop {
            match self.producer.commit_transaction(self.cfg.call_timeout) {
                Ok(()) => return Ok(()),
                Err(e)
                    if react(&e) == Reaction::RetryCall
                        && started.elapsed() < self.cfg.transaction_timeout =>
                {
                    warn!(error = %e, "commit_transaction undecided; repeating it");
                }
                Err(e) if react(&e) == Reaction::RetryCall => {
                    return Err(Failed {
                        undecided: true,
                        ..Failed::new(
                            Reaction::Replace,
                            format!(
                                "commit_transaction undecided after {:?}: {e}",
                                started.elapsed()
                            ),
                        )
                    });
                }
                // a fatal error may come after the commit reached the coordinator; an abortable
                // one means it did not
                Err(e) => {
                    let failed = Failed::kafka("commit_transaction", &e);
                    return Err(Failed {
                        undecided: failed.reaction != Reaction::Abort,
                        ..failed
                    });
                }
            }
        }
    }

    /// Without transactions: every output acknowledged, then the offsets committed.
    fn commit_plain(&self, offsets: &TopicPartitionList, failed_before: u64) -> Result<(), Failed> {
        let abort = |what: String| Failed::new(Reaction::Abort, what);
        self.producer
            .flush(self.cfg.call_timeout)
            .map_err(|e| abort(format!("flush: {e}")))?;
        let failed = self.producer.context().failed.load(Ordering::Relaxed) - failed_before;
        if failed > 0 {
            return Err(abort(format!("{failed} output(s) not acknowledged")));
        }
        self.consumer
            .commit(offsets, CommitMode::Sync)
            .map_err(|e| abort(format!("commit offsets: {e}")))
    }

    /// Adds the batch's offsets to the transaction, repeating the call while librdkafka says
    /// it may be repeated (at most 3 times). A call that does not return within twice
    /// `call_timeout` (see [`bounded`]) replaces the producer: the transaction never
    /// committed, and the new producer's `init_transactions` aborts it.
    fn send_offsets(&self, offsets: &TopicPartitionList) -> Result<(), Failed> {
        let limit = self.cfg.call_timeout * 2 + HUNG_GRACE;
        let mut tries = 0;
        loop {
            let group = self.consumer.group_metadata().ok_or_else(|| {
                Failed::new(
                    Reaction::Abort,
                    "no group metadata (not a group member yet)".into(),
                )
            })?;
            let (producer, offsets_owned, timeout) = (
                Arc::clone(&self.producer),
                offsets.clone(),
                self.cfg.call_timeout,
            );
            let call =
                move || producer.send_offsets_to_transaction(&offsets_owned, &group, timeout);
            match bounded(limit, call) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) if react(&e) == Reaction::RetryCall && tries < 3 => {
                    tries += 1;
                    warn!(op = "send_offsets_to_transaction", error = %e, tries, "transactional call failed; repeating it");
                }
                Some(Err(e)) => return Err(Failed::kafka("send_offsets_to_transaction", &e)),
                None => {
                    return Err(Failed::new(
                        Reaction::Replace,
                        format!("send_offsets_to_transaction did not return within {limit:?}"),
                    ));
                }
            }
        }
    }

    fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<Vec<(String, Vec<u8>)>>,
    ) -> Result<(), Failed> {
        let headers = headers.map(|hs| {
            hs.iter()
                .fold(OwnedHeaders::new_with_capacity(hs.len()), |acc, (k, v)| {
                    acc.insert(Header {
                        key: k,
                        value: Some(v),
                    })
                })
        });
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = payload {
            record = record.payload(v);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < self.cfg.call_timeout =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(Failed::kafka("produce", &e)),
            }
        }
    }

    /// After a failed transaction: abort it (or replace the producer), then move every
    /// partition still owned back to the batch's first offset.
    fn recover(
        &mut self,
        batch: &Batch,
        reaction: Reaction,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let mut reaction = reaction;
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            warn!(?code, reason, "the producer failed fatally; replacing it");
            reaction = if matches!(
                code,
                RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced
            ) {
                Reaction::Fenced
            } else {
                Reaction::Replace
            };
        }
        if self.cfg.transactional
            && matches!(reaction, Reaction::Abort | Reaction::RetryCall)
            && let Err(e) = self.producer.abort_transaction(self.cfg.call_timeout)
        {
            warn!(error = %e, "abort_transaction failed; replacing the producer");
            reaction = match react(&e) {
                Reaction::Fenced => Reaction::Fenced,
                _ => Reaction::Replace,
            };
        }
        if matches!(reaction, Reaction::Replace | Reaction::Fenced) {
            if reaction == Reaction::Fenced {
                let now = Instant::now();
                self.fenced_at
                    .retain(|t| now.duration_since(*t) < FENCED_WINDOW);
                self.fenced_at.push(now);
                if self.fenced_at.len() >= FENCED_LIMIT {
                    return Err(StageError::Fenced {
                        transactional_id: self.cfg.transactional_id.clone(),
                    });
                }
            }
            // init_transactions on the new handle ends whatever the old one left open: aborted,
            // or committed if its commit had reached the coordinator (hence the rewind below
            // goes to the broker's committed offsets, not to the batch's start)
            self.producer = Arc::new(new_producer(&self.cfg, cancel)?);
            self.summary.producer_replacements += 1;
        }
        self.rewind(batch, reaction, cancel)
    }

    /// Moves the batch's partitions back to where their next transaction must start, retrying
    /// (coordinators move while brokers restart) until `transaction_timeout`. It never
    /// rejoins the group instead: records librdkafka already holds past the batch would then
    /// be delivered before the revoke, and committed over the batch's own.
    ///
    /// # Errors
    /// [`StageError::Rewind`] when the positions could not be moved back in time: the member
    /// stops with the batch uncommitted rather than commit past it.
    fn rewind(
        &self,
        batch: &Batch,
        reaction: Reaction,
        cancel: &CancellationToken,
    ) -> Result<(), StageError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            match self.seek_back(batch, reaction) {
                Ok(()) => return Ok(()),
                Err(e)
                    if started.elapsed() < self.cfg.transaction_timeout
                        && !cancel.is_cancelled() =>
                {
                    attempt += 1;
                    warn!(error = %e, attempt, "rewind failed; retrying it");
                    std::thread::sleep(self.cfg.backoff.delay(attempt));
                }
                Err(source) => {
                    return Err(StageError::Rewind {
                        transactional_id: self.cfg.transactional_id.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// One try at the rewind. After an abort the batch's first offsets are exactly the
    /// committed ones (each batch starts where the previous committed one ended), so no broker
    /// is asked. After a replaced producer the old transaction may have committed: the
    /// broker's committed offsets decide (the batch's first offset where none is committed).
    /// Partitions revoked since the batch was polled are left alone: their next owner, this
    /// member included, starts from the committed offsets.
    fn seek_back(&self, batch: &Batch, reaction: Reaction) -> Result<(), KafkaError> {
        if self.consumer.assignment_lost() {
            return Ok(());
        }
        let assigned = self.consumer.assignment()?;
        let ctx = self.consumer.context();
        let owned: Vec<(i32, i64)> = batch
            .rewind_offsets()
            .filter(|(p, _, epoch)| {
                ctx.epoch(*p) == *epoch && assigned.find_partition(&self.cfg.source, *p).is_some()
            })
            .map(|(p, first, _)| (p, first))
            .collect();
        if owned.is_empty() {
            return Ok(());
        }
        let committed = if matches!(reaction, Reaction::Replace | Reaction::Fenced) {
            let mut asked = TopicPartitionList::new();
            for (p, _) in &owned {
                asked.add_partition(&self.cfg.source, *p);
            }
            Some(
                self.consumer
                    .committed_offsets(asked, self.cfg.call_timeout)?,
            )
        } else {
            None
        };
        let mut to = TopicPartitionList::new();
        for (p, first) in owned {
            let at = committed
                .as_ref()
                .and_then(|c| c.find_partition(&self.cfg.source, p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(first);
            to.add_partition_offset(&self.cfg.source, p, Offset::Offset(at))?;
        }
        let result = self.consumer.seek_partitions(to, self.cfg.call_timeout)?;
        for e in result.elements() {
            e.error()?;
        }
        Ok(())
    }
}

fn drop_stale(
    consumer: &BaseConsumer<StageContext>,
    summary: &mut StageSummary,
    batch: &mut Batch,
) {
    let ctx = consumer.context();
    let dropped = batch.drop_stale(|p| ctx.epoch(p));
    if dropped > 0 {
        summary.dropped_on_revoke += dropped as u64;
        info!(
            dropped,
            "records of revoked partitions dropped before their transaction"
        );
    }
}

/// A transactional producer, initialised: this fences any earlier producer with the same
/// transactional id and aborts its open transaction.
fn new_producer(cfg: &StageConfig, cancel: &CancellationToken) -> Result<TxnProducer, StageError> {
    let err = |source| StageError::Client {
        client: "producer",
        transactional_id: cfg.transactional_id.clone(),
        source,
    };
    let producer: TxnProducer = cfg
        .producer_config()
        .create_with_context(Deliveries::default())
        .map_err(err)?;
    if !cfg.transactional {
        return Ok(producer);
    }
    let mut attempt = 0;
    loop {
        match producer.init_transactions(cfg.call_timeout) {
            Ok(()) => return Ok(producer),
            Err(e)
                if react(&e) == Reaction::RetryCall && attempt < 10 && !cancel.is_cancelled() =>
            {
                attempt += 1;
                warn!(error = %e, attempt, "init_transactions failed; retrying");
                std::thread::sleep(cfg.backoff.delay(attempt));
            }
            Err(e) => return Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_returns_in_time_is_answered_and_one_that_hangs_is_given_up() {
        assert_eq!(bounded(Duration::from_secs(5), || 7), Some(7));
        let started = Instant::now();
        let hung = bounded(Duration::from_millis(200), || {
            std::thread::sleep(Duration::from_secs(3));
            7
        });
        assert_eq!(hung, None);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited for the hung call"
        );
    }
}
