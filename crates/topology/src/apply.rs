use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::Client;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Profile, TopicRole, TopicSpec, Topology, TopologyError};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a topic whose managed configs are all described as unset is asked again before it
/// counts as drifted (brokers apply a new topic's configs asynchronously).
const UNSET_GRACE: Duration = Duration::from_secs(5);

/// What `apply` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyMode {
    /// Change nothing; report missing topics and drift.
    Check,
    /// Create missing topics; report drift without changing it.
    #[default]
    Create,
    /// Create missing topics and fix drifted topic configs. Partition counts of keyed topics and
    /// replication factors are never changed automatically: both need a planned migration.
    Fix,
}

/// One difference between the layout and the live cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The live partition count differs from the layout.
    Partitions {
        /// In the layout.
        declared: i32,
        /// On the cluster.
        live: i32,
    },
    /// The live replication factor differs from the profile.
    ReplicationFactor {
        /// In the profile.
        declared: i32,
        /// On the cluster.
        live: i32,
    },
    /// A managed topic config differs.
    Config {
        /// The topic config key.
        key: &'static str,
        /// In the layout.
        declared: String,
        /// On the cluster (`None`: not set there).
        live: Option<String>,
    },
}

impl Drift {
    /// Whether `ApplyMode::Fix` can repair it without moving keys between partitions.
    pub fn fixable(&self) -> bool {
        matches!(self, Drift::Config { .. })
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Partitions { declared, live } if live > declared => write!(
                f,
                "partitions: layout {declared}, live {live} (refusing to shrink: Kafka cannot remove partitions)"
            ),
            Drift::Partitions { declared, live } => write!(
                f,
                "partitions: layout {declared}, live {live} (not changed: adding partitions moves keys; migrate deliberately)"
            ),
            Drift::ReplicationFactor { declared, live } => write!(
                f,
                "replication factor: profile {declared}, live {live} (needs a partition reassignment)"
            ),
            Drift::Config {
                key,
                declared,
                live,
            } => write!(
                f,
                "{key}: layout {declared}, live {}",
                live.as_deref().unwrap_or("<unset>")
            ),
        }
    }
}

/// What happened to one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicAction {
    /// Created by this run.
    Created,
    /// Already matched the layout.
    Unchanged,
    /// Missing, and the mode did not allow creating it.
    Missing,
    /// Differs from the layout; see the drift list.
    Drifted,
    /// Differed; the fixable part was repaired.
    Fixed,
}

/// The outcome for one topic.
#[derive(Debug, Clone)]
pub struct TopicReport {
    /// The topic's role in the pipeline.
    pub role: TopicRole,
    /// The topic name.
    pub name: String,
    /// What was done.
    pub action: TopicAction,
    /// Remaining or repaired differences.
    pub drift: Vec<Drift>,
}

/// The outcome of applying the layout.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// The profile applied.
    pub profile: String,
    /// Per topic, in pipeline order.
    pub topics: Vec<TopicReport>,
}

impl ApplyReport {
    /// True when the cluster does not match the layout after this run.
    pub fn out_of_sync(&self) -> bool {
        self.topics.iter().any(|t| {
            matches!(t.action, TopicAction::Missing | TopicAction::Drifted)
                || (t.action == TopicAction::Fixed && t.drift.iter().any(|d| !d.fixable()))
        })
    }

    /// True when nothing was created or changed.
    pub fn unchanged(&self) -> bool {
        self.topics
            .iter()
            .all(|t| t.action == TopicAction::Unchanged)
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "profile: {}", self.profile)?;
        for t in &self.topics {
            writeln!(f, "{:<12} {:<40} {:?}", t.role.as_str(), t.name, t.action)?;
            for d in &t.drift {
                writeln!(f, "{:<12}   drift: {d}", "")?;
            }
        }
        Ok(())
    }
}

/// The topic configs the layout manages, as Kafka keys and values.
fn managed_configs(spec: &TopicSpec, profile: &Profile) -> [(&'static str, String); 4] {
    [
        (
            "min.insync.replicas",
            profile.min_insync_replicas.to_string(),
        ),
        ("retention.ms", spec.retention_ms.to_string()),
        ("cleanup.policy", spec.cleanup_policy.clone()),
        // Never elect an out-of-sync replica: that would lose acknowledged writes.
        ("unclean.leader.election.enable", "false".to_owned()),
    ]
}

/// Live partition count and replication factor of a topic; `None` when it does not exist.
///
/// Blocks for at most `timeout` (librdkafka's metadata call is synchronous); start-up code only.
pub fn live_partition_count<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<(i32, i32)>, TopologyError> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| TopologyError::Admin {
            request: "metadata",
            bootstrap: bootstrap_of(client),
            message: e.to_string(),
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => {}
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            return Ok(None);
        }
        Some(e) => {
            return Err(TopologyError::TopicAdmin {
                request: "metadata",
                topic: topic.to_owned(),
                message: RDKafkaErrorCode::from(e).to_string(),
            });
        }
    }
    if t.partitions().is_empty() {
        return Ok(None);
    }
    let partitions = i32::try_from(t.partitions().len()).unwrap_or(i32::MAX);
    let rf = t
        .partitions()
        .iter()
        .map(|p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX))
        .min()
        .unwrap_or(0);
    Ok(Some((partitions, rf)))
}

fn bootstrap_of<C: ClientContext>(client: &Client<C>) -> String {
    // librdkafka does not expose the configured bootstrap list; the broker names it knows are the
    // most useful context we have.
    client
        .fetch_metadata(None, Duration::from_millis(1))
        .map(|m| {
            m.brokers()
                .iter()
                .map(|b| format!("{}:{}", b.host(), b.port()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|_| "the configured bootstrap servers".to_owned())
}

/// Applies the layout under `profile` to the cluster behind `admin`.
pub async fn apply<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topology: &Topology,
    profile_name: &str,
    profile: Profile,
    mode: ApplyMode,
) -> Result<ApplyReport, TopologyError> {
    let opts = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    let mut reports = Vec::new();
    for role in TopicRole::ALL {
        let spec = topology.topic(role);
        let report = match live_partition_count(admin.inner(), &spec.name, ADMIN_TIMEOUT)? {
            None if mode == ApplyMode::Check => TopicReport {
                role,
                name: spec.name.clone(),
                action: TopicAction::Missing,
                drift: Vec::new(),
            },
            None => {
                create(admin, &opts, spec, &profile).await?;
                wait_until_visible(admin, spec).await?;
                // A broker may describe a just-created topic before it has applied its
                // configs: a `topics apply` right after this one must not report drift.
                wait_until_configs_visible(admin, &opts, spec, &profile, "create_topics").await?;
                TopicReport {
                    role,
                    name: spec.name.clone(),
                    action: TopicAction::Created,
                    drift: Vec::new(),
                }
            }
            Some((partitions, rf)) => {
                let drift = drift_of(admin, &opts, spec, &profile, partitions, rf).await?;
                let action = if drift.is_empty() {
                    TopicAction::Unchanged
                } else if mode == ApplyMode::Fix && drift.iter().any(Drift::fixable) {
                    fix_configs(admin, &opts, spec, &profile).await?;
                    wait_until_configs_visible(admin, &opts, spec, &profile, "alter_configs")
                        .await?;
                    TopicAction::Fixed
                } else {
                    TopicAction::Drifted
                };
                TopicReport {
                    role,
                    name: spec.name.clone(),
                    action,
                    drift,
                }
            }
        };
        let what = if mode == ApplyMode::Check {
            "layout compared"
        } else {
            "layout applied"
        };
        tracing::info!(topic = %report.name, role = role.as_str(), action = ?report.action, drift = report.drift.len(), "{what}");
        reports.push(report);
    }
    Ok(ApplyReport {
        profile: profile_name.to_owned(),
        topics: reports,
    })
}

async fn create<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    opts: &AdminOptions,
    spec: &TopicSpec,
    profile: &Profile,
) -> Result<(), TopologyError> {
    let configs = managed_configs(spec, profile);
    let mut topic = NewTopic::new(
        &spec.name,
        spec.partitions,
        TopicReplication::Fixed(profile.replication_factor),
    );
    for (k, v) in &configs {
        topic = topic.set(k, v);
    }
    let results = admin
        .create_topics([&topic], opts)
        .await
        .map_err(|e| admin_error("create_topics", admin, &e))?;
    for r in results {
        match r {
            Ok(_) => {}
            // Another process created it between our check and our create: the next apply
            // reports any drift.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(TopologyError::TopicAdmin {
                    request: "create_topics",
                    topic: name,
                    message: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Waits until the new topic's metadata shows all its partitions, so a command run right after
/// `apply` (or a producer's partition-count guard) sees the topic.
async fn wait_until_visible<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    spec: &TopicSpec,
) -> Result<(), TopologyError> {
    poll_until_converged("create_topics", &spec.name, async || {
        let live = live_partition_count(admin.inner(), &spec.name, Duration::from_secs(5))?;
        Ok(if live.is_some_and(|(p, _)| p == spec.partitions) {
            None
        } else {
            Some("created, but not visible in metadata".to_owned())
        })
    })
    .await
}

/// Re-runs `probe` every 100 ms until it reports nothing left to wait for (`None`) or
/// [`ADMIN_TIMEOUT`] passes; then what it last reported becomes the error.
async fn poll_until_converged(
    request: &'static str,
    topic: &str,
    mut probe: impl AsyncFnMut() -> Result<Option<String>, TopologyError>,
) -> Result<(), TopologyError> {
    let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
    loop {
        let Some(pending) = probe().await? else {
            return Ok(());
        };
        if std::time::Instant::now() > deadline {
            return Err(TopologyError::TopicAdmin {
                request,
                topic: topic.to_owned(),
                message: format!("{pending} after {ADMIN_TIMEOUT:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn drift_of<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    opts: &AdminOptions,
    spec: &TopicSpec,
    profile: &Profile,
    partitions: i32,
    rf: i32,
) -> Result<Vec<Drift>, TopologyError> {
    let mut drift = Vec::new();
    if partitions != spec.partitions {
        drift.push(Drift::Partitions {
            declared: spec.partitions,
            live: partitions,
        });
    }
    if rf != profile.replication_factor {
        drift.push(Drift::ReplicationFactor {
            declared: profile.replication_factor,
            live: rf,
        });
    }
    // A broker that has not yet applied a new topic's config records describes every managed
    // config as unset; that is lag, not drift, so a topic whose managed configs are *all* unset
    // is asked again for a moment before it counts as drifted.
    let managed = managed_configs(spec, profile);
    let deadline = std::time::Instant::now() + UNSET_GRACE;
    let live = loop {
        let live = describe(admin, opts, &spec.name).await?;
        let all_unset = managed.iter().all(|(key, _)| !live.contains_key(*key));
        if !all_unset || std::time::Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (key, declared) in managed {
        let value = live.get(key).cloned();
        if value.as_deref() != Some(declared.as_str()) {
            drift.push(Drift::Config {
                key,
                declared,
                live: value,
            });
        }
    }
    Ok(drift)
}

async fn describe<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    opts: &AdminOptions,
    topic: &str,
) -> Result<HashMap<String, String>, TopologyError> {
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], opts)
        .await
        .map_err(|e| admin_error("describe_configs", admin, &e))?;
    let mut out = HashMap::new();
    for r in results {
        let resource = r.map_err(|code| TopologyError::TopicAdmin {
            request: "describe_configs",
            topic: topic.to_owned(),
            message: code.to_string(),
        })?;
        for e in resource.entries {
            if let Some(v) = e.value {
                out.insert(e.name, v);
            }
        }
    }
    Ok(out)
}

/// Sets every managed config. AlterConfigs (non-incremental) replaces the topic's dynamic
/// configs as a whole, so topic overrides outside the managed set are reset to broker defaults:
/// the layout file is the single source of truth.
async fn fix_configs<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    opts: &AdminOptions,
    spec: &TopicSpec,
    profile: &Profile,
) -> Result<(), TopologyError> {
    let configs = managed_configs(spec, profile);
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&spec.name));
    for (k, v) in &configs {
        alter = alter.set(k, v);
    }
    let results = admin
        .alter_configs([&alter], opts)
        .await
        .map_err(|e| admin_error("alter_configs", admin, &e))?;
    for r in results {
        r.map_err(|(_, code)| TopologyError::TopicAdmin {
            request: "alter_configs",
            topic: spec.name.clone(),
            message: code.to_string(),
        })?;
    }
    Ok(())
}

/// Waits until `describe_configs` reports the managed values just set (by `request`): brokers
/// apply the controller's metadata asynchronously, and a `topics diff` run right after `apply`
/// must not see other values.
async fn wait_until_configs_visible<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    opts: &AdminOptions,
    spec: &TopicSpec,
    profile: &Profile,
    request: &'static str,
) -> Result<(), TopologyError> {
    poll_until_converged(request, &spec.name, async || {
        let live = describe(admin, opts, &spec.name).await?;
        let stale: Vec<&str> = managed_configs(spec, profile)
            .iter()
            .filter(|(k, v)| live.get(*k) != Some(v))
            .map(|(k, _)| *k)
            .collect();
        Ok((!stale.is_empty()).then(|| {
            format!(
                "set, but {} still reported with other values",
                stale.join(", ")
            )
        }))
    })
    .await
}

fn admin_error<C: ClientContext>(
    request: &'static str,
    admin: &AdminClient<C>,
    e: &KafkaError,
) -> TopologyError {
    TopologyError::Admin {
        request,
        bootstrap: bootstrap_of(admin.inner()),
        message: e.to_string(),
    }
}
