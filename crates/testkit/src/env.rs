use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orderstream_topology::{ApplyMode, ProfileChoice, TopicNames, Topology};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Default bootstrap: node 1 of the local cluster (`scripts/kafka.sh`).
pub(crate) const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";
/// Default registry: Apicurio's Confluent-compatible API (`scripts/registry.sh`).
pub(crate) const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:8081/apis/ccompat/v7";
const HOW_TO_START: &str = "start the services with `scripts/services.sh up` (add `--nodes 3` for the fault suites), or run everything with `scripts/test.sh`";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A connection to the real cluster and registry for one test.
pub struct TestEnv {
    /// Bootstrap servers of the running cluster.
    pub bootstrap: String,
    /// Confluent-compatible registry base URL (no trailing slash).
    pub registry_url: String,
    /// Brokers registered in the cluster.
    pub brokers: usize,
    admin: AdminClient<DefaultClientContext>,
    created: Mutex<Vec<String>>,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("bootstrap", &self.bootstrap)
            .field("registry_url", &self.registry_url)
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

/// A test's private copy of the pipeline topics (orders, retry, dead letter).
#[derive(Debug, Clone)]
pub struct TestTopics {
    /// The layout with the test's prefix applied.
    pub topology: Topology,
    /// Its topic names.
    pub names: TopicNames,
}

/// Installs a test-friendly tracing subscriber once (honours `RUST_LOG`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl TestEnv {
    /// Connects to the running cluster and registry.
    ///
    /// # Panics
    /// When either is unreachable, with a message saying how to start them.
    pub async fn connect() -> TestEnv {
        init_tracing();
        let bootstrap =
            std::env::var("ORDERSTREAM_BOOTSTRAP").unwrap_or_else(|_| DEFAULT_BOOTSTRAP.into());
        let registry_url = std::env::var("ORDERSTREAM_REGISTRY_URL")
            .unwrap_or_else(|_| DEFAULT_REGISTRY_URL.into())
            .trim_end_matches('/')
            .to_owned();
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("cannot create an admin client for {bootstrap}: {e}"));
        let brokers = match admin.inner().fetch_metadata(None, Duration::from_secs(10)) {
            Ok(md) if !md.brokers().is_empty() => md.brokers().len(),
            Ok(_) => panic!("Kafka at {bootstrap} reports no brokers: {HOW_TO_START}"),
            Err(e) => panic!("Kafka is not reachable at {bootstrap} ({e}): {HOW_TO_START}"),
        };
        let probe = format!("{registry_url}/subjects");
        match reqwest::Client::new()
            .get(&probe)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => panic!(
                "schema registry at {probe} answered {}: {HOW_TO_START}",
                r.status()
            ),
            Err(e) => panic!("schema registry is not reachable at {probe} ({e}): {HOW_TO_START}"),
        }
        TestEnv {
            bootstrap,
            registry_url,
            brokers,
            admin,
            created: Mutex::new(Vec::new()),
        }
    }

    /// A name unique to this test run: `<name>-<pid>-<seq>-<random>`, legal as a topic, group,
    /// subject or transactional id.
    pub fn unique(&self, name: &str) -> String {
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let rnd = uuid::Uuid::new_v4().simple().to_string();
        format!("{clean}-{}-{seq}-{}", std::process::id(), &rnd[..8])
    }

    /// The replication factor tests use: 3 on the 3-node cluster, 1 on a single node.
    pub fn replication_factor(&self) -> i32 {
        if self.brokers >= 3 { 3 } else { 1 }
    }

    /// Creates a topic (deleted when this `TestEnv` drops) with the cluster's replication
    /// factor and `min.insync.replicas` 2 on three nodes.
    ///
    /// # Panics
    /// When Kafka refuses.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let rf = self.replication_factor();
        let min_isr = if rf >= 3 { "2" } else { "1" };
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", min_isr)
            .set("unclean.leader.election.enable", "false");
        let res = self
            .admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
        for r in res {
            if let Err((t, code)) = r {
                panic!("create topic {t}: {code}");
            }
        }
        self.track(name);
        self.wait_for_leaders(name, partitions).await;
    }

    /// Creates this test's own copy of the pipeline topics from the layout file, through the
    /// same `apply` the CLI uses.
    ///
    /// # Panics
    /// When the layout cannot be applied.
    pub async fn topics(&self, test: &str) -> TestTopics {
        self.topics_with_min_isr(test, None).await
    }

    /// [`TestEnv::topics`] with `min.insync.replicas` set to `min_isr` instead of the
    /// profile's (e.g. the replication factor itself, so one stopped broker is enough to put
    /// every partition below its minimum while the controller quorum lives).
    ///
    /// # Panics
    /// When the layout cannot be applied (also when `min_isr` exceeds the replication factor).
    pub async fn topics_with_min_isr(&self, test: &str, min_isr: Option<i32>) -> TestTopics {
        let topology = Topology::embedded().with_prefix(&format!("{}-", self.unique(test)));
        let (profile_name, mut profile) = topology
            .resolve_profile(&ProfileChoice::Auto, self.brokers)
            .unwrap_or_else(|e| panic!("{e}"));
        if let Some(n) = min_isr {
            assert!(
                (1..=profile.replication_factor).contains(&n),
                "min ISR {n} with replication factor {}",
                profile.replication_factor
            );
            profile.min_insync_replicas = n;
        }
        let report = orderstream_topology::apply(
            &self.admin,
            &topology,
            &profile_name,
            profile,
            ApplyMode::Create,
        )
        .await
        .unwrap_or_else(|e| panic!("apply layout: {e}"));
        let names = topology.names();
        for t in &report.topics {
            self.track(&t.name);
        }
        for role in orderstream_topology::TopicRole::ALL {
            let spec = topology.topic(role);
            self.wait_for_leaders(&spec.name, spec.partitions).await;
        }
        TestTopics { topology, names }
    }

    /// Writes a copy of the repository's `topology.toml` whose topic names carry a unique
    /// prefix (for driving the CLI with `--topology`); those topics are deleted on drop, even
    /// though the CLI creates them.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn topology_file(&self, test: &str) -> (std::path::PathBuf, TopicNames) {
        let prefix = format!("{}-", self.unique(test));
        let text = std::fs::read_to_string(crate::repo_root().join("topology.toml"))
            .unwrap_or_else(|e| panic!("read topology.toml: {e}"))
            .replace("name = \"", &format!("name = \"{prefix}"));
        let topology = Topology::parse(&text, "test layout").unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join("orderstream-tests");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let path = dir.join(format!("{prefix}topology.toml"));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let names = topology.names();
        for role in orderstream_topology::TopicRole::ALL {
            self.track(names.get(role));
        }
        (path, names)
    }

    /// The admin client (for tests that alter topics to provoke drift).
    pub fn admin(&self) -> &AdminClient<DefaultClientContext> {
        &self.admin
    }

    /// A new admin client of its own. After a fault the shared one ([`TestEnv::admin`]) can
    /// keep asking a dead broker (its cached controller, a connection it has not given up on)
    /// for a minute while the live brokers already answer others.
    ///
    /// # Panics
    /// When the client cannot be created (invalid configuration).
    pub fn fresh_admin(&self) -> AdminClient<DefaultClientContext> {
        self.client_config()
            .create()
            .unwrap_or_else(|e| panic!("create an admin client: {e}"))
    }

    /// Deletes topic `name` with this test's own topics when the environment is dropped.
    pub fn track(&self, name: &str) {
        if let Ok(mut c) = self.created.lock() {
            c.push(name.to_owned());
        }
    }

    async fn wait_for_leaders(&self, topic: &str, partitions: i32) {
        // A deadline, not a number of tries: each metadata fetch may itself take seconds on a
        // busy machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(md) = self
                .admin
                .inner()
                .fetch_metadata(Some(topic), Duration::from_secs(5))
            {
                let ready = md.topics().iter().any(|t| {
                    t.error().is_none()
                        && t.partitions().len() == usize::try_from(partitions).unwrap_or(0)
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                });
                if ready {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("topic {topic} did not get leaders for {partitions} partitions in time");
    }

    /// Waits until `group` is `Stable` with exactly `members` members.
    ///
    /// # Panics
    /// When that does not happen within `timeout`.
    pub async fn wait_for_group(&self, group: &str, members: usize, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = None;
        while std::time::Instant::now() < deadline {
            if let Ok(list) = self
                .admin
                .inner()
                .fetch_group_list(Some(group), Duration::from_secs(5))
            {
                last = list
                    .groups()
                    .iter()
                    .find(|g| g.name() == group)
                    .map(|g| (g.state().to_owned(), g.members().len()));
                if last
                    .as_ref()
                    .is_some_and(|(s, n)| s == "Stable" && *n == members)
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "group {group} not Stable with {members} members within {timeout:?}: last seen {last:?}"
        );
    }

    /// A unique consumer group id.
    pub fn group_id(&self, test: &str) -> String {
        self.unique(&format!("group-{test}"))
    }

    /// A unique transactional id.
    pub fn transactional_id(&self, test: &str) -> String {
        self.unique(&format!("txn-{test}"))
    }

    /// Base client settings for this cluster.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    /// A plain idempotent producer for seeding topics (Java-compatible murmur2 partitioning).
    ///
    /// # Panics
    /// When librdkafka rejects the config.
    pub fn producer(&self) -> FutureProducer {
        self.client_config()
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .unwrap_or_else(|e| panic!("create producer: {e}"))
    }

    /// Committed offsets of `group` on every partition of `topic` (`-1`: none committed).
    /// A coordinator that moves, is still loading or does not answer in time (its broker just
    /// died) is asked again, for up to 30 s.
    ///
    /// # Panics
    /// When the cluster cannot answer.
    pub async fn committed_offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partition_count(topic) {
            tpl.add_partition(topic, p);
        }
        let mut cfg = self.client_config();
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false");
        let (group, topic) = (group.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = cfg
                .create()
                .unwrap_or_else(|e| panic!("create consumer: {e}"));
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let committed = loop {
                match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                    Ok(c) => break c,
                    Err(e)
                        if std::time::Instant::now() < deadline
                            && matches!(
                                e.rdkafka_error_code(),
                                Some(
                                    RDKafkaErrorCode::NotCoordinator
                                        | RDKafkaErrorCode::CoordinatorLoadInProgress
                                        | RDKafkaErrorCode::CoordinatorNotAvailable
                                        | RDKafkaErrorCode::OperationTimedOut
                                        | RDKafkaErrorCode::RequestTimedOut
                                        | RDKafkaErrorCode::BrokerTransportFailure
                                        | RDKafkaErrorCode::AllBrokersDown
                                )
                            ) =>
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => panic!("committed offsets of {group} on {topic}: {e}"),
                }
            };
            committed
                .elements()
                .iter()
                .map(|e| {
                    let off = match e.offset() {
                        Offset::Offset(o) => o,
                        _ => -1,
                    };
                    (e.partition(), off)
                })
                .collect()
        })
        .await
        .unwrap_or_else(|e| panic!("committed offsets task: {e}"))
    }

    /// High watermarks (next offset to be written) per partition. Errors are retried for a
    /// minute: right after a fault, a partition's leader may still be moving.
    ///
    /// # Panics
    /// When the cluster cannot answer within that minute.
    pub fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        let consumer: BaseConsumer = self
            .client_config()
            .create()
            .unwrap_or_else(|e| panic!("create consumer: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        (0..self.partition_count(topic))
            .map(|p| {
                loop {
                    match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                        Ok((_, high)) => break (p, high),
                        Err(e) if std::time::Instant::now() < deadline => {
                            eprintln!("watermarks of {topic}/{p}: {e}; asking again");
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        Err(e) => panic!("watermarks of {topic}/{p}: {e}"),
                    }
                }
            })
            .collect()
    }

    /// The live partition count of a topic. Asks for a minute: right after a fault a metadata
    /// request may time out, name a partition without a leader, or reach a broker that does not
    /// know the topic yet.
    ///
    /// # Panics
    /// When the topic does not exist, or the cluster cannot say within that minute.
    pub fn partition_count(&self, topic: &str) -> i32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // After a fault the shared admin client can keep failing with transport errors for a
        // minute while the brokers already answer others: ask again through a new client.
        let mut fresh: Option<AdminClient<DefaultClientContext>> = None;
        loop {
            let admin = fresh.as_ref().unwrap_or(&self.admin);
            let answer = orderstream_topology::live_partition_count(
                admin.inner(),
                topic,
                Duration::from_secs(10),
            );
            match answer {
                Ok(Some((p, _))) => return p,
                // a broker just back may answer before it has the topic's metadata
                _ if std::time::Instant::now() < deadline => {
                    eprintln!("partitions of {topic}: {answer:?}; asking again");
                    if answer.is_err() {
                        fresh = Some(self.fresh_admin());
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Ok(None) => panic!("topic {topic} does not exist"),
                Err(e) => panic!("partitions of {topic}: {e}"),
            }
        }
    }

    /// Every record of `topic` from the beginning up to the end offsets as of this call.
    ///
    /// # Panics
    /// When the records cannot be read within `timeout`.
    pub async fn read_all(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Vec<rdkafka::message::OwnedMessage> {
        self.read_all_as(topic, timeout, "read_committed").await
    }

    /// [`TestEnv::read_all`] as a `read_uncommitted` reader: records of aborted transactions
    /// included.
    ///
    /// # Panics
    /// When the records cannot be read within `timeout`.
    pub async fn read_all_uncommitted(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Vec<rdkafka::message::OwnedMessage> {
        self.read_all_as(topic, timeout, "read_uncommitted").await
    }

    async fn read_all_as(
        &self,
        topic: &str,
        timeout: Duration,
        isolation: &'static str,
    ) -> Vec<rdkafka::message::OwnedMessage> {
        let ends = self.end_offsets(topic);
        let cfg = self.client_config();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            crate::read::read_until(cfg, &topic, &ends, timeout, isolation)
        })
        .await
        .unwrap_or_else(|e| panic!("reader task: {e}"))
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let names = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        if names.is_empty() || std::env::var_os("ORDERSTREAM_KEEP_TOPICS").is_some() {
            return;
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        // The admin future is completed by librdkafka's thread, so a plain executor can drive it
        // even while the test's runtime is shutting down.
        let _ = futures::executor::block_on(self.admin.delete_topics(&refs, &opts));
    }
}
