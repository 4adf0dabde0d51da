//! How every Kafka client and the registry client prove who they are and protect the link: the
//! `[security]` and `[registry]` config sections, their flags and `ORDERSTREAM_*` variables,
//! checked at start-up and turned into librdkafka properties and a [`RegistryAccess`].
//!
//! Passwords come only from the environment or from files: a flag value shows in `ps`, and a
//! value in the config file ends up in version control. They are held as `SecretString`, which
//! neither `Debug` nor `config show` reveals.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use orderstream_schema::secrecy::{ExposeSecret, SecretString};
use orderstream_schema::{BasicAuth, RegistryAccess};
use serde::{Deserialize, Serialize, Serializer};

use crate::exit::UsageError;

/// `security.protocol`: what protects the connection to the brokers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SecurityProtocol {
    /// No TLS, no authentication (a local cluster).
    #[default]
    Plaintext,
    /// TLS; with a client certificate and key, mutual TLS.
    Ssl,
    /// SASL authentication without TLS (only on trusted networks).
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    /// SASL authentication over TLS (Confluent Cloud, MSK, Aiven, Redpanda Cloud).
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    fn librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
pub(crate) enum SaslMechanism {
    /// User name and password sent as they are (only over TLS).
    #[value(name = "PLAIN", alias = "plain")]
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[value(name = "SCRAM-SHA-512", alias = "scram-sha-512")]
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The `[security]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecurityFile {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub(crate) protocol: Option<SecurityProtocol>,
    /// PEM file of the CA certificates that signed the brokers' certificates. Default: the
    /// system's trust store.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (needs `key_file`).
    pub(crate) cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (needs `cert_file`).
    pub(crate) key_file: Option<PathBuf>,
    /// File holding the password of an encrypted `key_file`.
    pub(crate) key_password_file: Option<PathBuf>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (with a `sasl_*` protocol).
    pub(crate) mechanism: Option<SaslMechanism>,
    /// SASL user name (the API key on Confluent Cloud).
    pub(crate) username: Option<String>,
    /// File holding the SASL password (or set `ORDERSTREAM_SASL_PASSWORD`).
    pub(crate) password_file: Option<PathBuf>,
    /// Refused with a pointer to the two accepted sources.
    #[serde(default, skip_serializing)]
    pub(crate) password: Option<serde::de::IgnoredAny>,
}

/// The `[registry]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistryFile {
    /// HTTP basic-auth user name (the API key on Confluent Cloud).
    pub(crate) username: Option<String>,
    /// File holding the registry password (or set `ORDERSTREAM_REGISTRY_PASSWORD`).
    pub(crate) password_file: Option<PathBuf>,
    /// PEM file of a CA to trust for the registry's HTTPS certificate, in addition to the
    /// built-in roots.
    pub(crate) ca_file: Option<PathBuf>,
    /// Refused with a pointer to the two accepted sources.
    #[serde(default, skip_serializing)]
    pub(crate) password: Option<serde::de::IgnoredAny>,
}

/// Security flags (every command). Passwords have no flag: environment or file only.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Security")]
pub(crate) struct SecurityFlags {
    /// Kafka security protocol [default: plaintext].
    #[arg(long, global = true, env = "ORDERSTREAM_SECURITY_PROTOCOL", value_enum)]
    pub(crate) security_protocol: Option<SecurityProtocol>,
    /// PEM CA certificates that signed the brokers' certificates [default: the system's].
    #[arg(long, global = true, env = "ORDERSTREAM_SSL_CA_FILE")]
    pub(crate) ssl_ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS.
    #[arg(long, global = true, env = "ORDERSTREAM_SSL_CERT_FILE")]
    pub(crate) ssl_cert_file: Option<PathBuf>,
    /// PEM client private key, for mutual TLS.
    #[arg(long, global = true, env = "ORDERSTREAM_SSL_KEY_FILE")]
    pub(crate) ssl_key_file: Option<PathBuf>,
    /// File holding the password of an encrypted client key (or ORDERSTREAM_SSL_KEY_PASSWORD).
    #[arg(long, global = true, env = "ORDERSTREAM_SSL_KEY_PASSWORD_FILE")]
    pub(crate) ssl_key_password_file: Option<PathBuf>,
    /// SASL mechanism.
    #[arg(long, global = true, env = "ORDERSTREAM_SASL_MECHANISM", value_enum)]
    pub(crate) sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name.
    #[arg(long, global = true, env = "ORDERSTREAM_SASL_USERNAME")]
    pub(crate) sasl_username: Option<String>,
    /// File holding the SASL password (or ORDERSTREAM_SASL_PASSWORD).
    #[arg(long, global = true, env = "ORDERSTREAM_SASL_PASSWORD_FILE")]
    pub(crate) sasl_password_file: Option<PathBuf>,
    /// Schema registry basic-auth user name.
    #[arg(long, global = true, env = "ORDERSTREAM_REGISTRY_USERNAME")]
    pub(crate) registry_username: Option<String>,
    /// File holding the registry password (or ORDERSTREAM_REGISTRY_PASSWORD).
    #[arg(long, global = true, env = "ORDERSTREAM_REGISTRY_PASSWORD_FILE")]
    pub(crate) registry_password_file: Option<PathBuf>,
    /// PEM CA to trust for the registry's HTTPS certificate.
    #[arg(long, global = true, env = "ORDERSTREAM_REGISTRY_CA_FILE")]
    pub(crate) registry_ca_file: Option<PathBuf>,
}

/// A password and where it came from (named in messages and in `config show`, never shown).
#[derive(Debug, Clone)]
pub(crate) struct Password {
    value: SecretString,
    source: String,
}

impl Password {
    /// From `env` when set, else from `file`; both is ambiguous and refused. `file` is the
    /// flag's (or its `*_FILE` variable's), else the config file's, which `env` overrides.
    fn resolve(
        env: &str,
        env_value: Option<String>,
        flag_file: Option<&Path>,
        config_file: Option<&Path>,
    ) -> anyhow::Result<Option<Password>> {
        let env_value = env_value.filter(|v| !v.is_empty());
        let file = match (&env_value, flag_file) {
            (_, Some(f)) => Some(f),
            (Some(_), None) => None,
            (None, None) => config_file,
        };
        match (env_value, file) {
            (Some(_), Some(f)) => Err(usage(format!(
                "the password is given twice, by {env} and by the file {}: keep one",
                f.display()
            ))),
            (Some(v), None) => Ok(Some(Password {
                value: SecretString::from(v),
                source: format!("environment variable {env}"),
            })),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    usage(format!(
                        "cannot read the password file {}: {e}",
                        f.display()
                    ))
                })?;
                // One trailing newline is how editors and `echo` leave the file.
                let value = text.strip_suffix('\n').unwrap_or(&text);
                let value = value.strip_suffix('\r').unwrap_or(value);
                if value.is_empty() {
                    return Err(usage(format!("the password file {} is empty", f.display())));
                }
                Ok(Some(Password {
                    value: SecretString::from(value.to_owned()),
                    source: format!("file {}", f.display()),
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

/// SASL credentials.
#[derive(Debug, Clone)]
pub(crate) struct Sasl {
    mechanism: SaslMechanism,
    username: String,
    password: Password,
}

/// The resolved Kafka security settings every client is built with.
#[derive(Debug, Clone, Default)]
pub(crate) struct KafkaSecurity {
    protocol: SecurityProtocol,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    key_password: Option<Password>,
    sasl: Option<Sasl>,
}

/// librdkafka properties `[security]` owns: setting them in `[kafka]` too would make two
/// sources disagree, and would put a password in the config file.
pub(crate) const OWNED_PROPERTIES: &[&str] = &[
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
];

fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// A PEM file that must exist and hold `what` (`CERTIFICATE` or `PRIVATE KEY`). Only the
/// file's name is ever printed, never its content.
fn check_pem(flag: &str, path: &Path, what: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| usage(format!("{flag}: cannot read {}: {e}", path.display())))?;
    if !text.contains("-----BEGIN") || !text.contains(what) {
        return Err(usage(format!(
            "{flag}: {} does not hold a PEM {what}",
            path.display()
        )));
    }
    Ok(())
}

impl KafkaSecurity {
    /// Flags over environment over the `[security]` section, validated.
    pub(crate) fn resolve(
        flags: &SecurityFlags,
        file: SecurityFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<KafkaSecurity> {
        if file.password.is_some() {
            return Err(usage(
                "[security] password: passwords are not read from the config file; set ORDERSTREAM_SASL_PASSWORD or [security] password_file".to_owned(),
            ));
        }
        let protocol = flags
            .security_protocol
            .or(file.protocol)
            .unwrap_or_default();
        let ca_file = flags.ssl_ca_file.clone().or(file.ca_file);
        let cert_file = flags.ssl_cert_file.clone().or(file.cert_file);
        let key_file = flags.ssl_key_file.clone().or(file.key_file);
        let key_password = Password::resolve(
            "ORDERSTREAM_SSL_KEY_PASSWORD",
            env("ORDERSTREAM_SSL_KEY_PASSWORD"),
            flags.ssl_key_password_file.as_deref(),
            file.key_password_file.as_deref(),
        )?;
        let mechanism = flags.sasl_mechanism.or(file.mechanism);
        let username = flags.sasl_username.clone().or(file.username);
        let password = Password::resolve(
            "ORDERSTREAM_SASL_PASSWORD",
            env("ORDERSTREAM_SASL_PASSWORD"),
            flags.sasl_password_file.as_deref(),
            file.password_file.as_deref(),
        )?;
        let name = protocol.librdkafka();

        if !protocol.tls() {
            for (set, what) in [
                (ca_file.is_some(), "a CA file"),
                (cert_file.is_some(), "a client certificate"),
                (key_file.is_some(), "a client key"),
            ] {
                if set {
                    return Err(usage(format!(
                        "{what} is set but the security protocol is {name}, which has no TLS: use ssl or sasl_ssl"
                    )));
                }
            }
        }
        match (&cert_file, &key_file) {
            (Some(_), None) => {
                return Err(usage(
                    "a client certificate needs its private key: set --ssl-key-file".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(usage(
                    "a client key needs its certificate: set --ssl-cert-file".to_owned(),
                ));
            }
            _ => {}
        }
        if key_password.is_some() && key_file.is_none() {
            return Err(usage(
                "a key password is set but no client key: set --ssl-key-file".to_owned(),
            ));
        }
        if let Some(p) = &ca_file {
            check_pem("--ssl-ca-file", p, "CERTIFICATE")?;
        }
        if let Some(p) = &cert_file {
            check_pem("--ssl-cert-file", p, "CERTIFICATE")?;
        }
        if let Some(p) = &key_file {
            check_pem("--ssl-key-file", p, "PRIVATE KEY")?;
        }

        let sasl = if protocol.sasl() {
            let Some(mechanism) = mechanism else {
                return Err(usage(format!(
                    "security protocol {name} needs a SASL mechanism: --sasl-mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )));
            };
            let Some(username) = username.filter(|u| !u.is_empty()) else {
                return Err(usage(format!(
                    "security protocol {name} needs a user name: --sasl-username"
                )));
            };
            let Some(password) = password else {
                return Err(usage(format!(
                    "SASL user \"{username}\" needs a password: set ORDERSTREAM_SASL_PASSWORD or --sasl-password-file"
                )));
            };
            if mechanism == SaslMechanism::Plain && !protocol.tls() {
                tracing::warn!(
                    protocol = name,
                    "SASL PLAIN without TLS sends the password readable on the network"
                );
            }
            Some(Sasl {
                mechanism,
                username,
                password,
            })
        } else {
            for (set, what) in [
                (mechanism.is_some(), "a SASL mechanism"),
                (username.is_some(), "a SASL user name"),
                (password.is_some(), "a SASL password"),
            ] {
                if set {
                    return Err(usage(format!(
                        "{what} is set but the security protocol is {name}: use sasl_ssl (or sasl_plaintext)"
                    )));
                }
            }
            None
        };
        Ok(KafkaSecurity {
            protocol,
            ca_file,
            cert_file,
            key_file,
            key_password,
            sasl,
        })
    }

    /// The librdkafka properties, secrets included: for building clients only.
    pub(crate) fn properties(&self) -> Vec<(&'static str, String)> {
        let path = |p: &PathBuf| p.display().to_string();
        let mut props = vec![("security.protocol", self.protocol.librdkafka().to_owned())];
        if let Some(p) = &self.ca_file {
            props.push(("ssl.ca.location", path(p)));
        }
        if let Some(p) = &self.cert_file {
            props.push(("ssl.certificate.location", path(p)));
        }
        if let Some(p) = &self.key_file {
            props.push(("ssl.key.location", path(p)));
        }
        if let Some(p) = &self.key_password {
            props.push(("ssl.key.password", p.value.expose_secret().to_owned()));
        }
        if let Some(s) = &self.sasl {
            props.push(("sasl.mechanism", s.mechanism.librdkafka().to_owned()));
            props.push(("sasl.username", s.username.clone()));
            props.push(("sasl.password", s.password.value.expose_secret().to_owned()));
        }
        props
    }
}

/// What `config show` prints for a password.
fn shown(p: Option<&Password>) -> Option<String> {
    p.map(|p| format!("****** (from {})", p.source))
}

impl Serialize for KafkaSecurity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            protocol: SecurityProtocol,
            ca_file: Option<&'a PathBuf>,
            cert_file: Option<&'a PathBuf>,
            key_file: Option<&'a PathBuf>,
            key_password: Option<String>,
            mechanism: Option<SaslMechanism>,
            username: Option<&'a str>,
            password: Option<String>,
        }
        Shown {
            protocol: self.protocol,
            ca_file: self.ca_file.as_ref(),
            cert_file: self.cert_file.as_ref(),
            key_file: self.key_file.as_ref(),
            key_password: shown(self.key_password.as_ref()),
            mechanism: self.sasl.as_ref().map(|x| x.mechanism),
            username: self.sasl.as_ref().map(|x| x.username.as_str()),
            password: shown(self.sasl.as_ref().map(|x| &x.password)),
        }
        .serialize(s)
    }
}

/// The resolved registry access (credentials and CA), with where the password came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistrySecurity {
    username: Option<String>,
    password: Option<Password>,
    ca_file: Option<PathBuf>,
}

impl RegistrySecurity {
    /// Flags over environment over the `[registry]` section, validated.
    pub(crate) fn resolve(
        flags: &SecurityFlags,
        file: RegistryFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<RegistrySecurity> {
        if file.password.is_some() {
            return Err(usage(
                "[registry] password: passwords are not read from the config file; set ORDERSTREAM_REGISTRY_PASSWORD or [registry] password_file".to_owned(),
            ));
        }
        let username = flags
            .registry_username
            .clone()
            .or(file.username)
            .filter(|u| !u.is_empty());
        let password = Password::resolve(
            "ORDERSTREAM_REGISTRY_PASSWORD",
            env("ORDERSTREAM_REGISTRY_PASSWORD"),
            flags.registry_password_file.as_deref(),
            file.password_file.as_deref(),
        )?;
        let ca_file = flags.registry_ca_file.clone().or(file.ca_file);
        match (&username, &password) {
            (Some(u), None) => {
                return Err(usage(format!(
                    "registry user \"{u}\" needs a password: set ORDERSTREAM_REGISTRY_PASSWORD or --registry-password-file"
                )));
            }
            (None, Some(p)) => {
                return Err(usage(format!(
                    "a registry password is set (from {}) but no user: set --registry-username",
                    p.source
                )));
            }
            _ => {}
        }
        if let Some(p) = &ca_file {
            check_pem("--registry-ca-file", p, "CERTIFICATE")?;
        }
        Ok(RegistrySecurity {
            username,
            password,
            ca_file,
        })
    }

    /// The access the registry clients are built with.
    pub(crate) fn access(&self) -> RegistryAccess {
        RegistryAccess {
            basic_auth: self
                .username
                .clone()
                .zip(self.password.as_ref())
                .map(|(username, p)| BasicAuth {
                    username,
                    password: p.value.clone(),
                }),
            ca_file: self.ca_file.clone(),
        }
    }
}

impl Serialize for RegistrySecurity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            username: Option<&'a str>,
            password: Option<String>,
            ca_file: Option<&'a PathBuf>,
        }
        Shown {
            username: self.username.as_deref(),
            password: shown(self.password.as_ref()),
            ca_file: self.ca_file.as_ref(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!("-----BEGIN {body}-----\nAAAA\n-----END {body}-----\n"),
        )
        .expect("write");
        p
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("orderstream-sec-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    fn resolve(flags: &SecurityFlags, file: SecurityFile) -> anyhow::Result<KafkaSecurity> {
        KafkaSecurity::resolve(flags, file, &none)
    }

    #[test]
    fn the_default_is_plaintext_with_nothing_else() {
        let s = resolve(&SecurityFlags::default(), SecurityFile::default()).expect("ok");
        assert_eq!(
            s.properties(),
            vec![("security.protocol", "plaintext".to_owned())]
        );
    }

    #[test]
    fn sasl_ssl_from_env_password_never_shows_it() {
        let dir = tmp();
        let flags = SecurityFlags {
            security_protocol: Some(SecurityProtocol::SaslSsl),
            ssl_ca_file: Some(pem(&dir, "ca.pem", "CERTIFICATE")),
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("svc".into()),
            ..SecurityFlags::default()
        };
        let env = |k: &str| (k == "ORDERSTREAM_SASL_PASSWORD").then(|| "hunter2".to_owned());
        let s = KafkaSecurity::resolve(&flags, SecurityFile::default(), &env).expect("ok");
        let props: std::collections::BTreeMap<_, _> = s.properties().into_iter().collect();
        assert_eq!(props["security.protocol"], "sasl_ssl");
        assert_eq!(props["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(props["sasl.password"], "hunter2");
        let debug = format!("{s:?}");
        let shown = toml::to_string(&s).expect("toml");
        for text in [&debug, &shown] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert!(shown.contains("ORDERSTREAM_SASL_PASSWORD"), "{shown}");
    }

    #[test]
    fn the_password_file_loses_its_trailing_newline() {
        let dir = tmp();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let flags = SecurityFlags {
            security_protocol: Some(SecurityProtocol::SaslSsl),
            sasl_mechanism: Some(SaslMechanism::Plain),
            sasl_username: Some("svc".into()),
            sasl_password_file: Some(pw),
            ..SecurityFlags::default()
        };
        let s = resolve(&flags, SecurityFile::default()).expect("ok");
        assert!(
            s.properties()
                .contains(&("sasl.password", "s3cret".to_owned()))
        );
    }

    #[test]
    fn invalid_combinations_are_refused_with_a_reason() {
        let dir = tmp();
        let cert = pem(&dir, "c.pem", "CERTIFICATE");
        let key = pem(&dir, "k.pem", "PRIVATE KEY");
        let cases: Vec<(SecurityFlags, &str)> = vec![
            (
                SecurityFlags {
                    security_protocol: Some(SecurityProtocol::Ssl),
                    ssl_key_file: Some(key.clone()),
                    ..SecurityFlags::default()
                },
                "needs its certificate",
            ),
            (
                SecurityFlags {
                    security_protocol: Some(SecurityProtocol::Ssl),
                    ssl_cert_file: Some(cert.clone()),
                    ..SecurityFlags::default()
                },
                "needs its private key",
            ),
            (
                SecurityFlags {
                    ssl_ca_file: Some(cert.clone()),
                    ..SecurityFlags::default()
                },
                "has no TLS",
            ),
            (
                SecurityFlags {
                    security_protocol: Some(SecurityProtocol::SaslSsl),
                    sasl_username: Some("svc".into()),
                    ..SecurityFlags::default()
                },
                "needs a SASL mechanism",
            ),
            (
                SecurityFlags {
                    security_protocol: Some(SecurityProtocol::SaslSsl),
                    sasl_mechanism: Some(SaslMechanism::ScramSha256),
                    sasl_username: Some("svc".into()),
                    ..SecurityFlags::default()
                },
                "needs a password",
            ),
            (
                SecurityFlags {
                    security_protocol: Some(SecurityProtocol::Ssl),
                    sasl_username: Some("svc".into()),
                    ..SecurityFlags::default()
                },
                "use sasl_ssl",
            ),
            (
                SecurityFlags {
                    security_protocol: Some(SecurityProtocol::Ssl),
                    ssl_cert_file: Some(key.clone()),
                    ssl_key_file: Some(cert.clone()),
                    ..SecurityFlags::default()
                },
                "does not hold a PEM",
            ),
            (
                SecurityFlags {
                    security_protocol: Some(SecurityProtocol::Ssl),
                    ssl_ca_file: Some(dir.join("missing.pem")),
                    ..SecurityFlags::default()
                },
                "missing.pem",
            ),
        ];
        for (flags, want) in cases {
            let err = resolve(&flags, SecurityFile::default()).expect_err(want);
            assert!(err.to_string().contains(want), "{want}: {err}");
            assert!(err.is::<UsageError>(), "exit code 2: {err}");
        }
    }

    #[test]
    fn a_password_in_the_config_file_is_refused() {
        let file: SecurityFile =
            toml::from_str("protocol = \"sasl_ssl\"\npassword = \"x\"").expect("parses");
        let err = resolve(&SecurityFlags::default(), file).expect_err("refused");
        assert!(
            err.to_string().contains("ORDERSTREAM_SASL_PASSWORD"),
            "{err}"
        );
        let reg: RegistryFile =
            toml::from_str("username = \"u\"\npassword = \"x\"").expect("parses");
        let err =
            RegistrySecurity::resolve(&SecurityFlags::default(), reg, &none).expect_err("refused");
        assert!(
            err.to_string().contains("ORDERSTREAM_REGISTRY_PASSWORD"),
            "{err}"
        );
    }

    #[test]
    fn the_environment_overrides_the_config_files_password_file() {
        let file = RegistryFile {
            username: Some("u".into()),
            password_file: Some("/nonexistent/pw".into()),
            ..RegistryFile::default()
        };
        let env = |k: &str| (k == "ORDERSTREAM_REGISTRY_PASSWORD").then(|| "from-env".to_owned());
        let r = RegistrySecurity::resolve(&SecurityFlags::default(), file, &env).expect("env wins");
        let auth = r.access().basic_auth.expect("auth");
        assert_eq!(auth.password.expose_secret(), "from-env");
    }

    #[test]
    fn a_password_given_twice_is_ambiguous() {
        let dir = tmp();
        let pw = dir.join("pw");
        std::fs::write(&pw, "a").expect("write");
        let flags = SecurityFlags {
            registry_username: Some("u".into()),
            registry_password_file: Some(pw),
            ..SecurityFlags::default()
        };
        let env = |k: &str| (k == "ORDERSTREAM_REGISTRY_PASSWORD").then(|| "b".to_owned());
        let err =
            RegistrySecurity::resolve(&flags, RegistryFile::default(), &env).expect_err("twice");
        assert!(err.to_string().contains("given twice"), "{err}");
    }
}
