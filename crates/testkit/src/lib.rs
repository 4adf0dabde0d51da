//! The integration-test harness every orderstream test uses.
//!
//! [`TestEnv::connect`] finds the running Kafka cluster and schema registry (addresses from
//! `ORDERSTREAM_BOOTSTRAP` and `ORDERSTREAM_REGISTRY_URL`, loopback defaults) and fails the test
//! with instructions when they are not running: a test that needs the cluster never passes
//! silently without it. Each test gets unique topic, group and transactional ids; topics it
//! created are deleted when the `TestEnv` is dropped.

mod assignments;
mod describe;
mod env;
mod process;
mod read;
mod scripts;
mod wait;

pub use assignments::Assignment;
pub use describe::partitions_per_member;
pub use env::{TestEnv, TestTopics, init_tracing};
pub use process::Spawned;
pub use scripts::{
    amqp_url, drop_database, fresh_database, kafka_script, nats_script, nats_url, python,
    rabbitmq_script, registry_script, repo_root, try_fresh_database,
};
pub use wait::{poll_until, wait_until};
