//! Who the registry client says it is, and which certificate authority it trusts.
//!
//! Managed registries (Confluent Cloud, Aiven, Karapace with an auth file) want HTTP basic
//! auth, often behind a private CA. Both the codec (through `schema_registry_converter`) and
//! [`crate::registry_admin`] build their HTTP client from one [`RegistryAccess`], so the two
//! can never disagree about credentials.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::error::SchemaError;

/// HTTP basic credentials. `Debug` never shows the password.
#[derive(Clone)]
pub struct BasicAuth {
    /// User name (the API key on Confluent Cloud).
    pub username: String,
    /// Password (the API secret on Confluent Cloud).
    pub password: SecretString,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"******")
            .finish()
    }
}

impl PartialEq for BasicAuth {
    fn eq(&self, other: &Self) -> bool {
        self.username == other.username && self.password() == other.password()
    }
}

impl Eq for BasicAuth {}

impl BasicAuth {
    /// The password, for the one place that sends it.
    pub(crate) fn password(&self) -> &str {
        self.password.expose_secret()
    }
}

/// Credentials and trust for the registry's HTTP client. The default is anonymous, with the
/// platform's root certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAccess {
    /// Basic auth sent with every request. Default: none.
    pub basic_auth: Option<BasicAuth>,
    /// A PEM file of CA certificates trusted in addition to the built-in roots (a private CA
    /// signing the registry's certificate). Default: none.
    pub ca_file: Option<PathBuf>,
}

impl RegistryAccess {
    /// An HTTP client builder with `timeout` and the extra CA certificates.
    ///
    /// # Errors
    /// [`SchemaError::InvalidConfig`] naming `ca_file` when it cannot be read or holds no PEM
    /// certificate.
    pub fn client_builder(&self, timeout: Duration) -> Result<reqwest::ClientBuilder, SchemaError> {
        let mut builder = reqwest::Client::builder().timeout(timeout);
        if let Some(path) = &self.ca_file {
            let bad = |message: String| SchemaError::InvalidConfig {
                field: "ca_file",
                message,
            };
            let pem = std::fs::read(path)
                .map_err(|e| bad(format!("cannot read CA file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("CA file {} is not PEM: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(format!(
                    "CA file {} holds no PEM certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let access = RegistryAccess {
            basic_auth: Some(BasicAuth {
                username: "svc".into(),
                password: SecretString::from("hunter2"),
            }),
            ca_file: None,
        };
        let shown = format!("{access:?}");
        assert!(
            shown.contains("svc") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn an_unreadable_ca_file_is_named() {
        let access = RegistryAccess {
            basic_auth: None,
            ca_file: Some("/nonexistent/ca.pem".into()),
        };
        let err = access
            .client_builder(Duration::from_secs(1))
            .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
