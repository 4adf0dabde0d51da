//! Effective configuration: defaults < config file < environment < flags.
//!
//! clap resolves flags and their `env=` bindings; values neither gives come from the TOML file
//! named by `--config` / `ORDERSTREAM_CONFIG` (default `orderstream.toml` when it exists), then
//! from the defaults documented on each field.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::security::{
    KafkaSecurity, OWNED_PROPERTIES, RegistryFile, RegistrySecurity, SecurityFile,
};

/// Settings shared by every command.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// Kafka bootstrap servers. Default `127.0.0.1:9092`.
    pub(crate) bootstrap: Option<String>,
    /// Confluent-compatible registry base URL. Default `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub(crate) registry_url: Option<String>,
    /// Layout file. Default: `topology.toml` in the working directory, else the built-in copy.
    pub(crate) topology: Option<PathBuf>,
    /// Replication profile: `auto`, `local`, `cluster`. Default `auto`.
    pub(crate) profile: Option<String>,
    /// Address for the Prometheus `/metrics` endpoint, e.g. `127.0.0.1:9464`. Default: off.
    pub(crate) metrics_addr: Option<String>,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`). Values of keys
    /// containing `password`, `secret` or `key` are masked by `config show`.
    #[serde(default)]
    pub(crate) kafka: std::collections::BTreeMap<String, String>,
    /// TLS and SASL for every Kafka client.
    #[serde(default)]
    pub(crate) security: SecurityFile,
    /// Credentials and CA for the schema registry.
    #[serde(default)]
    pub(crate) registry: RegistryFile,
}

pub(crate) const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";
pub(crate) const DEFAULT_REGISTRY_URL: &str = "http://127.0.0.1:8081/apis/ccompat/v7";

impl FileConfig {
    /// Loads the file at `path`, or the default `orderstream.toml` when `path` is `None` and it
    /// exists; an explicitly named file that is missing is an error.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("orderstream.toml"), false),
        };
        if !path.exists() {
            if required {
                return Err(crate::exit::UsageError(format!(
                    "config file {} does not exist",
                    path.display()
                ))
                .into());
            }
            return Ok(FileConfig::default());
        }
        if path.is_dir() {
            return Err(crate::exit::UsageError(format!(
                "config file {} is a directory",
                path.display()
            ))
            .into());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            crate::exit::UsageError(format!(
                "config file {} is invalid (known keys: bootstrap, registry_url, topology, profile, metrics_addr, [kafka], [security], [registry]): {e}",
                path.display()
            ))
            .into()
        })
    }
}

/// The resolved settings a command runs with.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Effective {
    pub(crate) bootstrap: String,
    pub(crate) registry_url: String,
    pub(crate) topology: Option<PathBuf>,
    pub(crate) profile: String,
    pub(crate) metrics_addr: Option<String>,
    pub(crate) kafka: std::collections::BTreeMap<String, String>,
    pub(crate) security: KafkaSecurity,
    pub(crate) registry: RegistrySecurity,
}

impl Effective {
    /// Merges flag/env values over the file over the defaults, and validates the result.
    pub(crate) fn resolve(
        flags: &crate::cli::Global,
        file: FileConfig,
    ) -> anyhow::Result<Effective> {
        let bootstrap = flags
            .bootstrap
            .clone()
            .or(file.bootstrap)
            .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_owned());
        if bootstrap.trim().is_empty() || bootstrap.split(',').any(|b| !b.contains(':')) {
            return Err(crate::exit::UsageError(format!(
                "bootstrap servers `{bootstrap}` must be a comma-separated list of host:port"
            ))
            .into());
        }
        let registry_url = flags
            .registry_url
            .clone()
            .or(file.registry_url)
            .unwrap_or_else(|| DEFAULT_REGISTRY_URL.to_owned());
        let registry_url = registry_url.trim_end_matches('/').to_owned();
        if !(registry_url.starts_with("http://") || registry_url.starts_with("https://")) {
            return Err(crate::exit::UsageError(format!(
                "registry URL `{registry_url}` must start with http:// or https://"
            ))
            .into());
        }
        if let Some(key) = file
            .kafka
            .keys()
            .find(|k| OWNED_PROPERTIES.contains(&k.as_str()))
        {
            return Err(crate::exit::UsageError(format!(
                "[kafka] {key}: set it in [security] (or its flags), which checks it and keeps passwords out of the config file"
            ))
            .into());
        }
        let env = |k: &str| std::env::var(k).ok();
        let security = KafkaSecurity::resolve(&flags.security, file.security, &env)?;
        let registry = RegistrySecurity::resolve(&flags.security, file.registry, &env)?;
        let topology = flags.topology.clone().or(file.topology).or_else(|| {
            let local = PathBuf::from("topology.toml");
            local.exists().then_some(local)
        });
        Ok(Effective {
            bootstrap,
            registry_url,
            topology,
            profile: flags
                .profile
                .clone()
                .or(file.profile)
                .unwrap_or_else(|| "auto".to_owned()),
            metrics_addr: flags.metrics_addr.clone().or(file.metrics_addr),
            kafka: file.kafka,
            security,
            registry,
        })
    }

    /// The layout: the named file, else the built-in copy.
    pub(crate) fn topology(&self) -> anyhow::Result<orderstream_topology::Topology> {
        match &self.topology {
            Some(p) => Ok(orderstream_topology::Topology::load(p)?),
            None => Ok(orderstream_topology::Topology::embedded()),
        }
    }

    /// A librdkafka config with the bootstrap servers, the security settings and the extra
    /// `[kafka]` properties.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in self.kafka_properties() {
            c.set(k, v);
        }
        c
    }

    /// The librdkafka properties every client gets besides the bootstrap servers: security
    /// first, then `[kafka]` (which cannot set the security keys). Holds secrets: hand it to
    /// client configs only, never to a log line.
    pub(crate) fn kafka_properties(&self) -> std::collections::BTreeMap<String, String> {
        let mut props: std::collections::BTreeMap<String, String> = self
            .security
            .properties()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        props.extend(self.kafka.clone());
        props
    }

    /// The registry settings for a codec, with the configured credentials and CA.
    pub(crate) fn registry_access(&self) -> orderstream_schema::RegistryAccess {
        self.registry.access()
    }

    /// The settings as TOML, secrets masked.
    pub(crate) fn masked_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        for (k, v) in &mut shown.kafka {
            let k = k.to_ascii_lowercase();
            if k.contains("password") || k.contains("secret") || k.contains("key") {
                *v = "******".to_owned();
            }
        }
        if let Some(at) = shown.registry_url.find('@') {
            // http://user:pass@host -> http://******@host
            if let Some(scheme_end) = shown.registry_url.find("://") {
                shown
                    .registry_url
                    .replace_range(scheme_end + 3..at, "******");
            }
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}
