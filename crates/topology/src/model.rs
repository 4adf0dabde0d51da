use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::TopologyError;

/// The layout bundled at build time: the repository's `topology.toml`.
const EMBEDDED: &str = include_str!("../../../topology.toml");

/// The parsed, validated topic layout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Replication settings per cluster size, by profile name (`local`, `cluster`).
    pub profiles: BTreeMap<String, Profile>,
    /// Topics by role.
    pub topics: BTreeMap<TopicRole, TopicSpec>,
}

/// Replication settings that depend on the cluster size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Copies of every partition. 3 in the 3-node layout, 1 on a single node.
    pub replication_factor: i32,
    /// Replicas that must acknowledge an `acks=all` write. 2 in the 3-node layout.
    pub min_insync_replicas: i32,
}

/// What a topic is for in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicRole {
    /// The order-event stream producers write to.
    Orders,
    /// Records waiting for a delayed retry after their in-place retries ran out.
    Retry,
    /// Records that cannot be processed.
    DeadLetter,
    /// The latest status of every order (compacted), written by the transactional stage.
    Status,
}

impl TopicRole {
    /// Every role the pipeline needs, in pipeline order.
    pub const ALL: [TopicRole; 4] = [
        TopicRole::Orders,
        TopicRole::Retry,
        TopicRole::DeadLetter,
        TopicRole::Status,
    ];

    /// The key used in `[topics.<key>]`.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicRole::Orders => "orders",
            TopicRole::Retry => "retry",
            TopicRole::DeadLetter => "dead_letter",
            TopicRole::Status => "status",
        }
    }
}

impl fmt::Display for TopicRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One topic's declared layout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// The Kafka topic name.
    pub name: String,
    /// The record field used as the Kafka key (`order_id`); `None` for unkeyed topics.
    #[serde(default)]
    pub key: Option<String>,
    /// Partition count. For keyed topics it must never change silently: it decides which
    /// partition (and so which ordering lane) a key lands in.
    pub partitions: i32,
    /// `retention.ms`; `-1` keeps records forever.
    pub retention_ms: i64,
    /// `cleanup.policy`: `delete`, `compact` or `compact,delete`.
    pub cleanup_policy: String,
}

impl TopicSpec {
    /// True when records are keyed, so the partition count decides per-key ordering.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }
}

/// The topic names the pipeline uses, resolved from the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    /// The order-event topic.
    pub orders: String,
    /// The delayed-retry topic.
    pub retry: String,
    /// The dead-letter topic.
    pub dead_letter: String,
    /// The compacted order-status topic.
    pub status: String,
}

impl TopicNames {
    /// The same names with a prefix, for isolated test or tenant namespaces.
    pub fn with_prefix(&self, prefix: &str) -> TopicNames {
        TopicNames {
            orders: format!("{prefix}{}", self.orders),
            retry: format!("{prefix}{}", self.retry),
            dead_letter: format!("{prefix}{}", self.dead_letter),
            status: format!("{prefix}{}", self.status),
        }
    }

    /// The name for a role.
    pub fn get(&self, role: TopicRole) -> &str {
        match role {
            TopicRole::Orders => &self.orders,
            TopicRole::Retry => &self.retry,
            TopicRole::DeadLetter => &self.dead_letter,
            TopicRole::Status => &self.status,
        }
    }
}

/// How to pick the replication profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileChoice {
    /// `cluster` when the cluster has at least as many brokers as its replication factor,
    /// `local` otherwise.
    Auto,
    /// A profile by name.
    Named(String),
}

/// `auto` (any case) or a profile's name; a name the layout does not define is refused when
/// it is resolved, with the names it does define.
impl From<&str> for ProfileChoice {
    fn from(s: &str) -> Self {
        if s.eq_ignore_ascii_case("auto") {
            ProfileChoice::Auto
        } else {
            ProfileChoice::Named(s.to_owned())
        }
    }
}

impl Topology {
    /// The layout compiled into the binary (the repository's `topology.toml`).
    pub fn embedded() -> Topology {
        // The embedded file is validated by this crate's tests, so failing here is a build defect.
        #[allow(clippy::expect_used)]
        Topology::parse(EMBEDDED, "embedded topology.toml")
            .expect("embedded topology.toml is valid")
    }

    /// Reads and validates a layout file.
    pub fn load(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Topology::parse(&text, &path.display().to_string())
    }

    /// Parses and validates layout text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Topology, TopologyError> {
        let topology: Topology = toml::from_str(text).map_err(|e| TopologyError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        topology.validate()?;
        Ok(topology)
    }

    fn validate(&self) -> Result<(), TopologyError> {
        let invalid = |m: String| Err(TopologyError::Invalid(m));
        if self.profiles.is_empty() {
            return invalid("no [profiles.*] defined".into());
        }
        for (name, p) in &self.profiles {
            if p.replication_factor < 1 {
                return invalid(format!("profile {name}: replication_factor must be >= 1"));
            }
            if p.min_insync_replicas < 1 || p.min_insync_replicas > p.replication_factor {
                return invalid(format!(
                    "profile {name}: min_insync_replicas {} must be between 1 and replication_factor {}",
                    p.min_insync_replicas, p.replication_factor
                ));
            }
        }
        for role in TopicRole::ALL {
            if !self.topics.contains_key(&role) {
                return invalid(format!("[topics.{role}] is missing"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (role, t) in &self.topics {
            if !valid_topic_name(&t.name) {
                return invalid(format!(
                    "topics.{role}: `{}` is not a legal Kafka topic name ([a-zA-Z0-9._-], 1..=249 chars)",
                    t.name
                ));
            }
            if !seen.insert(&t.name) {
                return invalid(format!("topic name `{}` is used twice", t.name));
            }
            if t.partitions < 1 {
                return invalid(format!("topics.{role}: partitions must be >= 1"));
            }
            if t.retention_ms < -1 || t.retention_ms == 0 {
                return invalid(format!(
                    "topics.{role}: retention_ms must be -1 or positive"
                ));
            }
            if !matches!(
                t.cleanup_policy.as_str(),
                "delete" | "compact" | "compact,delete" | "delete,compact"
            ) {
                return invalid(format!(
                    "topics.{role}: cleanup_policy `{}` is not delete, compact or compact,delete",
                    t.cleanup_policy
                ));
            }
        }
        // Retry and dead-letter topics keep the source key and partition; a different count
        // would scatter one order's records across partitions.
        let orders = self.topic(TopicRole::Orders);
        for role in [TopicRole::Retry, TopicRole::DeadLetter] {
            let t = self.topic(role);
            if t.partitions != orders.partitions {
                return invalid(format!(
                    "topics.{role} has {} partitions but topics.orders has {}: they must match so a key keeps its partition",
                    t.partitions, orders.partitions
                ));
            }
        }
        Ok(())
    }

    /// The spec for a role (all roles are present after validation).
    pub fn topic(&self, role: TopicRole) -> &TopicSpec {
        // validate() guarantees every role is present.
        #[allow(clippy::indexing_slicing)]
        &self.topics[&role]
    }

    /// The topic names by role.
    pub fn names(&self) -> TopicNames {
        TopicNames {
            orders: self.topic(TopicRole::Orders).name.clone(),
            retry: self.topic(TopicRole::Retry).name.clone(),
            dead_letter: self.topic(TopicRole::DeadLetter).name.clone(),
            status: self.topic(TopicRole::Status).name.clone(),
        }
    }

    /// A copy whose topic names carry a prefix (tests and tenants get their own namespace).
    pub fn with_prefix(&self, prefix: &str) -> Topology {
        let mut t = self.clone();
        for spec in t.topics.values_mut() {
            spec.name = format!("{prefix}{}", spec.name);
        }
        t
    }

    /// Looks up a profile by name.
    pub fn profile(&self, name: &str) -> Result<Profile, TopologyError> {
        self.profiles
            .get(name)
            .copied()
            .ok_or_else(|| TopologyError::UnknownProfile {
                name: name.to_owned(),
                known: self.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Resolves a profile choice against a cluster with `brokers` brokers: `Auto` takes the
    /// profile with the highest replication factor the cluster can host.
    pub fn resolve_profile(
        &self,
        choice: &ProfileChoice,
        brokers: usize,
    ) -> Result<(String, Profile), TopologyError> {
        match choice {
            ProfileChoice::Named(name) => Ok((name.clone(), self.profile(name)?)),
            ProfileChoice::Auto => self
                .profiles
                .iter()
                .filter(|(_, p)| {
                    usize::try_from(p.replication_factor).is_ok_and(|rf| rf <= brokers)
                })
                .max_by_key(|(_, p)| p.replication_factor)
                .map(|(n, p)| (n.clone(), *p))
                .ok_or_else(|| {
                    TopologyError::Invalid(format!(
                        "no profile fits a cluster of {brokers} broker(s)"
                    ))
                }),
        }
    }
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_layout_is_valid_and_complete() {
        let t = Topology::embedded();
        assert_eq!(
            t.profile("cluster").map(|p| p.replication_factor).ok(),
            Some(3)
        );
        assert_eq!(
            t.profile("cluster").map(|p| p.min_insync_replicas).ok(),
            Some(2)
        );
        assert_eq!(
            t.profile("local").map(|p| p.replication_factor).ok(),
            Some(1)
        );
        assert!(t.topic(TopicRole::Orders).is_keyed());
    }

    #[test]
    fn auto_profile_follows_broker_count() {
        let t = Topology::embedded();
        let pick = |n| {
            t.resolve_profile(&ProfileChoice::Auto, n)
                .map(|(name, _)| name)
                .ok()
        };
        assert_eq!(pick(1).as_deref(), Some("local"));
        assert_eq!(pick(3).as_deref(), Some("cluster"));
        assert_eq!(pick(0), None);
    }

    fn with(replace: &str, by: &str) -> Result<Topology, TopologyError> {
        let text = EMBEDDED.replacen(replace, by, 1);
        assert_ne!(text, EMBEDDED, "fixture edit `{replace}` did not apply");
        Topology::parse(&text, "test")
    }

    #[test]
    fn rejects_broken_layouts_with_clear_errors() {
        let cases = [
            (
                "min_insync_replicas = 2",
                "min_insync_replicas = 4",
                "min_insync_replicas 4",
            ),
            (
                "partitions = 6",
                "partitions = 0",
                "partitions must be >= 1",
            ),
            (
                "name = \"orders.events\"",
                "name = \"orders events\"",
                "not a legal Kafka topic name",
            ),
            (
                "cleanup_policy = \"delete\"",
                "cleanup_policy = \"shred\"",
                "cleanup_policy `shred`",
            ),
            (
                "[topics.retry]\nname = \"orders.events.retry\"\nkey = \"order_id\"\npartitions = 6",
                "[topics.retry]\nname = \"orders.events.retry\"\nkey = \"order_id\"\npartitions = 3",
                "must match",
            ),
            (
                "replication_factor = 3",
                "replication_factr = 3",
                "unknown field",
            ),
        ];
        for (from, to, expect) in cases {
            let err = with(from, to)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains(expect),
                "editing `{from}` -> `{to}`: got `{err}`"
            );
        }
    }

    #[test]
    fn unknown_profile_lists_known_ones() {
        let err = Topology::embedded()
            .profile("huge")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("profile `huge` is not defined in the layout (known: cluster, local)")
        );
    }

    #[test]
    fn prefix_renames_every_topic() {
        let t = Topology::embedded().with_prefix("t-1-");
        assert_eq!(t.names().orders, "t-1-orders.events");
        assert_eq!(t.names().dead_letter, "t-1-orders.events.dlq");
        assert_eq!(Topology::embedded().names().with_prefix("t-1-"), t.names());
    }
}
