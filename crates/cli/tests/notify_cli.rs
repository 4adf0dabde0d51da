//! `orderstream notify` against the real cluster, a real RabbitMQ and a real NATS server, read
//! by independent receivers (Python pika and nats-py). The broker is restarted (and NATS also
//! SIGKILLed) and the notifier SIGKILLed mid-run: every CREATED event read back from Kafka
//! must arrive, extra copies only as redeliveries carrying the same message id; unroutable
//! messages land in the alternate exchange's queue and rejected ones in the dead-letter queue
//! with their reason.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use orderstream_orders::OrderProducer;
use orderstream_producer::{ProducerConfig, ProducerTopic};
use orderstream_schema::{EventType, OrderCodec, OrderEvent, RegistryConfig};
use orderstream_testkit::{
    Spawned, TestEnv, amqp_url, nats_script, nats_url, python, rabbitmq_script,
};
use rdkafka::Message;
use serde_json::Value;
use support::{interrupt, orderstream, text};

/// Order `order`'s event `seq`: created, then paid.
fn event(prefix: &str, order: usize, seq: i64) -> OrderEvent {
    OrderEvent {
        event_type: if seq == 0 {
            EventType::Created
        } else {
            EventType::Paid
        },
        ..orderstream_orders::fixtures::lifecycle(prefix, order, seq)
    }
}

/// One notifier process; `sink_args` name the broker and its isolated names.
fn notifier(env: &TestEnv, layout: &str, group: &str, sink_args: &[&str]) -> Spawned {
    Spawned::start(
        "orderstream notify",
        Command::new(env!("CARGO_BIN_EXE_orderstream"))
            .args([
                "--topology",
                layout,
                "notify",
                "--group",
                group,
                "--for",
                "600",
            ])
            .args(["--publish-timeout", "20"])
            .args(sink_args)
            .env("ORDERSTREAM_BOOTSTRAP", &env.bootstrap)
            .env("ORDERSTREAM_REGISTRY_URL", &env.registry_url)
            .env("ORDERSTREAM_AMQP_URL", amqp_url())
            .env("ORDERSTREAM_NATS_URL", nats_url())
            .env_remove("ORDERSTREAM_CONFIG")
            .env("RUST_LOG", "warn"),
    )
}

/// Runs tests/interop/notify_receiver.py and parses its JSON.
fn receiver(args: &[&str]) -> Value {
    let script = orderstream_testkit::repo_root().join("tests/interop/notify_receiver.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run notify_receiver.py");
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "notify_receiver.py {args:?}: {stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("receiver output {stdout:?}: {e}"))
}

fn messages(v: &Value, field: &str) -> Vec<Value> {
    v[field].as_array().cloned().unwrap_or_default()
}

/// Every message's broker id is its body's event id (what receivers deduplicate by), and the
/// body is version 1 of kind `order.created`.
fn ids(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            assert_eq!(m["id"], m["event_id"], "message id = event id: {m}");
            assert_eq!(m["v"], 1, "body version: {m}");
            assert_eq!(m["kind"], "order.created", "only new orders notified: {m}");
            m["id"].as_str().expect("message id").to_owned()
        })
        .collect()
}

struct Rig {
    env: TestEnv,
    layout: String,
    orders_topic: String,
    retry_topic: String,
    dead_topic: String,
    group: String,
    prefix: String,
    codec: OrderCodec,
    producer: OrderProducer,
}

impl Rig {
    async fn new(test: &str) -> Rig {
        let env = TestEnv::connect().await;
        let (layout, names) = env.topology_file(test);
        let layout = layout.to_str().expect("utf-8").to_owned();
        assert!(
            orderstream(&env, &["--topology", &layout, "topics", "apply"])
                .status
                .success()
        );
        let codec = OrderCodec::new(RegistryConfig {
            url: env.registry_url.clone(),
            ..RegistryConfig::default()
        })
        .expect("codec");
        let producer = OrderProducer::new(
            ProducerConfig {
                bootstrap_servers: env.bootstrap.clone(),
                ..ProducerConfig::default()
            },
            codec.clone(),
            ProducerTopic::new(names.orders.clone(), env.partition_count(&names.orders)),
        )
        .await
        .expect("producer");
        Rig {
            group: env.group_id(test),
            prefix: env.unique("o"),
            orders_topic: names.orders,
            retry_topic: names.retry,
            dead_topic: names.dead_letter,
            layout,
            env,
            codec,
            producer,
        }
    }

    /// Produces event `seq` of each order in `orders`; all acknowledged.
    async fn produce(&self, orders: std::ops::Range<usize>, seq: i64) {
        let mut pending = Vec::new();
        for order in orders {
            pending.push(
                self.producer
                    .enqueue(&event(&self.prefix, order, seq))
                    .await,
            );
        }
        for p in pending {
            assert!(p.outcome().await.is_delivered(), "every send acknowledged");
        }
    }

    /// Produces event 0 (CREATED) of each order in `orders` in the background, `per_tick`
    /// every 100 ms, so the notifier is publishing when a fault strikes; every send acknowledged.
    fn produce_paced(
        &self,
        orders: std::ops::Range<usize>,
        per_tick: usize,
    ) -> tokio::task::JoinHandle<usize> {
        let (producer, prefix) = (self.producer.clone(), self.prefix.clone());
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let all: Vec<usize> = orders.collect();
            for chunk in all.chunks(per_tick) {
                tick.tick().await;
                for &order in chunk {
                    pending.push(producer.enqueue(&event(&prefix, order, 0)).await);
                }
            }
            let n = pending.len();
            for p in pending {
                assert!(p.outcome().await.is_delivered(), "every send acknowledged");
            }
            n
        })
    }

    /// Waits until the group has committed the end of every orders partition, and its retry
    /// group the end of every retry partition that holds records (a record parked during an
    /// outage is notified from there).
    async fn caught_up(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let retry_group = format!("{}.retry", self.group);
        loop {
            let ends = self.env.end_offsets(&self.orders_topic);
            let orders_done = self
                .env
                .committed_offsets(&self.group, &self.orders_topic)
                .await
                == ends;
            let retry_ends = self.env.end_offsets(&self.retry_topic);
            let retry_committed = self
                .env
                .committed_offsets(&retry_group, &self.retry_topic)
                .await;
            let retry_done = retry_ends
                .iter()
                .all(|(p, end)| *end == 0 || retry_committed.get(p) == Some(end));
            if orders_done && retry_done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the notifier group did not commit the end of {} and {} within {within:?}",
                self.orders_topic,
                self.retry_topic
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Records parked in the retry topic (each a notification that failed at least once) and
    /// dead-lettered (none may be).
    fn parked_and_dead(&self) -> (i64, i64) {
        let sum = |t: &str| self.env.end_offsets(t).values().sum::<i64>();
        (sum(&self.retry_topic), sum(&self.dead_topic))
    }

    /// The CREATED event ids in the orders topic, read back by an independent reader.
    async fn created_in_kafka(&self) -> BTreeSet<String> {
        let mut created = BTreeSet::new();
        for m in self
            .env
            .read_all(&self.orders_topic, Duration::from_secs(60))
            .await
        {
            let e = self
                .codec
                .decode(m.payload().expect("value"))
                .await
                .expect("decode")
                .event;
            if e.event_type == EventType::Created {
                assert!(
                    created.insert(e.event_id),
                    "the producer wrote no duplicate"
                );
            }
        }
        created
    }
}

/// Messages in a JetStream stream, from the server's monitoring endpoint (`scripts/nats.sh`
/// serves it on `NATS_MONITOR_PORT`, default 28222).
async fn stream_messages(stream: &str) -> u64 {
    let port = std::env::var("NATS_MONITOR_PORT").unwrap_or_else(|_| "28222".to_owned());
    let jsz: Value = reqwest::get(format!("http://127.0.0.1:{port}/jsz?streams=true"))
        .await
        .expect("NATS monitoring endpoint")
        .json()
        .await
        .expect("jsz JSON");
    jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
        .find(|s| s["name"] == stream)
        .and_then(|s| s["state"]["messages"].as_u64())
        .unwrap_or(0)
}

/// Copies per message id beyond the first.
fn extra_copies(ids: &[String]) -> usize {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in ids {
        *seen.entry(id).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_receives_every_new_order_through_a_notifier_kill_and_a_broker_crash() {
    let rig = Rig::new("notify-rmq").await;
    let exchange = rig.env.unique("notify");
    let sink: Vec<&str> = vec![
        "--to",
        "rabbitmq",
        "--exchange",
        &exchange,
        "--queue",
        &exchange,
    ];
    let mut member = notifier(&rig.env, &rig.layout, &rig.group, &sink);

    rig.produce(0..200, 0).await;
    rig.produce(0..100, 1).await;
    // New orders keep coming (300/s for 6 s) while the notifier is SIGKILLed and replaced.
    let flow = rig.produce_paced(200..2_000, 30);
    tokio::time::sleep(Duration::from_secs(3)).await;
    member.kill();
    member = notifier(&rig.env, &rig.layout, &rig.group, &sink);
    rig.produce(100..200, 1).await;
    assert_eq!(flow.await.expect("producer task"), 1_800);
    rig.caught_up(Duration::from_secs(120)).await;
    // A backlog of 10,000 keeps the next member publishing without pause; RabbitMQ crashes
    // (SIGKILL) while the queue fills (asked of the broker itself: the member may publish the
    // whole backlog within one commit interval, so committed offsets come too late), with
    // publishes awaiting their confirmation.
    member.kill();
    let amqp = amqp_url();
    let depth = |at_least: u64, timeout: &str| -> u64 {
        let got = receiver(&[
            "rabbitmq-depth",
            &amqp,
            &exchange,
            &at_least.to_string(),
            timeout,
        ]);
        got["depth"].as_u64().expect("queue depth")
    };
    let before = depth(0, "0");
    rig.produce(2_000..12_000, 0).await;
    member = notifier(&rig.env, &rig.layout, &rig.group, &sink);
    let at_kill = depth(before + 1_000, "120");
    assert!(
        at_kill >= before + 1_000,
        "the backlog did not start moving ({} of 10 000 queued)",
        at_kill - before
    );
    assert!(
        at_kill < before + 10_000,
        "the backlog is still being published when RabbitMQ dies ({} of 10 000 queued)",
        at_kill - before
    );
    println!(
        "RabbitMQ killed with {} of the backlog's 10 000 queued",
        at_kill - before
    );
    rabbitmq_script(&["kill"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    rabbitmq_script(&["start"]);
    rig.produce(12_000..12_100, 0).await;
    rig.caught_up(Duration::from_secs(240)).await;

    // An independent receiver rejects 5 and takes the rest; the 5 end in the dead-letter queue.
    let dead_queue = format!("{exchange}.dead");
    let got = receiver(&[
        "rabbitmq",
        &amqp,
        &exchange,
        "--reject",
        "5",
        "--dead",
        &dead_queue,
    ]);
    let received = ids(&messages(&got, "received"));
    let rejected = ids(&messages(&got, "rejected"));
    let dead = messages(&got, "dead");

    // Unroutable: with the queue gone, new orders land in the alternate exchange's queue.
    receiver(&["rabbitmq-delete-queue", &amqp, &exchange]);
    let before_unroutable = rig.created_in_kafka().await;
    rig.produce(12_100..12_120, 0).await;
    rig.caught_up(Duration::from_secs(60)).await;
    let out = interrupt(member);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    for line in stderr.lines().filter(|l| l.contains("RabbitMQ")) {
        println!("notifier: {line}");
    }
    let unroutable_queue = format!("{exchange}.unroutable");
    let unroutable = ids(&messages(
        &receiver(&["rabbitmq", &amqp, &unroutable_queue]),
        "received",
    ));

    let created = rig.created_in_kafka().await;
    let late: BTreeSet<String> = created.difference(&before_unroutable).cloned().collect();
    let mut all = received.clone();
    all.extend(rejected.iter().cloned());
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    let lost = before_unroutable.difference(&unique).count();
    let foreign = unique.difference(&before_unroutable).count();
    let (parked, dead_lettered) = rig.parked_and_dead();
    println!(
        "CREATED in Kafka {}; delivered {} messages, {} distinct; lost {lost}; not from Kafka {foreign}; redelivered copies {}; rejected to the dead-letter queue {}; unroutable {}; parked in the retry topic {parked}; dead-lettered in Kafka {dead_lettered}",
        before_unroutable.len(),
        all.len(),
        unique.len(),
        extra_copies(&all),
        dead.len(),
        unroutable.len()
    );
    assert_eq!(before_unroutable.len(), 12_100);
    assert_eq!(dead_lettered, 0, "no notification was given up on");
    assert_eq!(
        (lost, foreign),
        (0, 0),
        "every new order notified, nothing else"
    );
    assert_eq!(rejected.len(), 5);
    let dead_ids: BTreeSet<String> = ids(&dead).into_iter().collect();
    assert_eq!(
        dead_ids,
        rejected.iter().cloned().collect::<BTreeSet<_>>(),
        "rejected messages end in the dead-letter queue"
    );
    assert!(
        dead.iter().all(|m| m["reason"] == "rejected"),
        "x-death reason: {dead:?}"
    );
    assert_eq!(
        unroutable.iter().cloned().collect::<BTreeSet<_>>(),
        late,
        "unroutable messages end in the alternate exchange's queue"
    );
    assert!(
        stdout.contains("returned 0"),
        "the alternate exchange takes unroutable messages, none returned: {stdout}"
    );
    let reconnects: u64 = stdout
        .split("reconnects ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("reconnects in the summary");
    assert!(
        reconnects >= 1,
        "the member saw the broker restart: {stdout}"
    );
    receiver(&["rabbitmq-delete", &amqp, &exchange]);
}

/// The NATS test crashes the one shared server; the demo test needs it up from start to end,
/// so the two never overlap (the RabbitMQ test touches neither).
static NATS_SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stores_every_new_order_once_through_server_crashes_and_a_notifier_kill() {
    let _server = NATS_SERVER.lock().await;
    let rig = Rig::new("notify-nats").await;
    let stream = rig.env.unique("NOTIFY").replace(['.', '-'], "_");
    let subjects = rig.env.unique("notify").replace('.', "_");
    let sink: Vec<&str> = vec![
        "--to",
        "nats",
        "--stream",
        &stream,
        "--subject-prefix",
        &subjects,
    ];
    let mut member = notifier(&rig.env, &rig.layout, &rig.group, &sink);

    rig.produce(0..200, 0).await;
    rig.produce(0..100, 1).await;
    // New orders keep coming (300/s for 6 s) while the notifier is SIGKILLed and replaced and
    // the server restarted cleanly.
    let flow = rig.produce_paced(200..2_000, 30);
    tokio::time::sleep(Duration::from_secs(3)).await;
    member.kill();
    member = notifier(&rig.env, &rig.layout, &rig.group, &sink);
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats_script(&["restart"]);
    assert_eq!(flow.await.expect("producer task"), 1_800);
    rig.caught_up(Duration::from_secs(120)).await;
    // A backlog of 10,000 keeps the next member publishing without pause; the server crashes
    // (SIGKILL) while the stream fills (asked of the server's monitoring endpoint), with
    // publishes awaiting their acknowledgement.
    member.kill();
    let before = stream_messages(&stream).await;
    rig.produce(2_000..12_000, 0).await;
    member = notifier(&rig.env, &rig.layout, &rig.group, &sink);
    // The killed member's partitions move on once its session times out (45 s).
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let stored = stream_messages(&stream).await;
        if stored >= before + 1_000 {
            break stored;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog did not start moving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        at_kill < before + 10_000,
        "the backlog is still being published when NATS dies ({} of 10 000 stored)",
        at_kill - before
    );
    nats_script(&["kill"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats_script(&["start"]);
    rig.produce(12_000..12_100, 0).await;
    rig.caught_up(Duration::from_secs(240)).await;
    let out = interrupt(member);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    for line in stderr.lines().filter(|l| l.contains("JetStream")) {
        println!("notifier: {line}");
    }

    let got = receiver(&["nats", &nats_url(), &stream, &format!("{subjects}.>")]);
    let stored = ids(&messages(&got, "received"));
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    let created = rig.created_in_kafka().await;
    let lost = created.difference(&unique).count();
    let foreign = unique.difference(&created).count();
    let (parked, dead_lettered) = rig.parked_and_dead();
    println!(
        "CREATED in Kafka {}; stored in the stream {}, {} distinct; lost {lost}; not from Kafka {foreign}; parked in the retry topic {parked}; dead-lettered in Kafka {dead_lettered}",
        created.len(),
        stored.len(),
        unique.len()
    );
    assert_eq!(created.len(), 12_100);
    assert_eq!(dead_lettered, 0, "no notification was given up on");
    assert_eq!(
        (lost, foreign),
        (0, 0),
        "every new order notified, nothing else"
    );
    assert_eq!(
        extra_copies(&stored),
        0,
        "JetStream stored each message id once (Nats-Msg-Id within the duplicate window)"
    );
    let reconnects: u64 = stdout
        .split("reconnects ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("reconnects in the summary");
    assert!(reconnects >= 1, "the member saw the server crash: {stdout}");
    receiver(&["nats-delete-stream", &nats_url(), &stream]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_notifies_every_new_order_and_the_stream_holds_them() {
    let _server = NATS_SERVER.lock().await;
    let env = TestEnv::connect().await;
    let (layout, _) = env.topology_file("demo-notify");
    let layout = layout.to_str().expect("utf-8");
    let out = Command::new(env!("CARGO_BIN_EXE_orderstream"))
        .args([
            "--topology",
            layout,
            "demo",
            "--events",
            "3000",
            "--rate",
            "0",
        ])
        .args(["--members", "2", "--services", "2", "--notify", "nats"])
        .env("ORDERSTREAM_BOOTSTRAP", &env.bootstrap)
        .env("ORDERSTREAM_REGISTRY_URL", &env.registry_url)
        .env("ORDERSTREAM_NATS_URL", nats_url())
        .env_remove("ORDERSTREAM_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run orderstream demo");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("every new order notified"), "{stdout}");
    let figure = |label: &str| -> u64 {
        stdout
            .lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` figure: {stdout}"))
    };
    let created = figure("orders created in this run");
    assert!(created > 0, "{stdout}");
    assert_eq!(figure("new-order notifications confirmed"), created);
    // What the stream holds, read by an independent receiver.
    let stream = stdout
        .split(" stream ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no stream named: {stdout}"))
        .to_owned();
    let subjects = format!(
        "orderstream.demo.{}.>",
        stream
            .trim_start_matches("ORDERSTREAM_DEMO_")
            .to_ascii_lowercase()
    );
    let stored = ids(&messages(
        &receiver(&["nats", &nats_url(), &stream, &subjects]),
        "received",
    ));
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(
        (stored.len() as u64, unique.len() as u64),
        (created, created),
        "one stored notification per order created"
    );
    receiver(&["nats-delete-stream", &nats_url(), &stream]);
}
