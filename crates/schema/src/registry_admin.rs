//! Administrative calls of the Confluent schema registry REST API (also served by Apicurio's
//! `ccompat` API): compatibility levels, compatibility tests, registration, subject deletion.
//!
//! Used by `orderstream schemas register` / `schemas check --registry URL` and by the tests.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::access::{BasicAuth, RegistryAccess};
use crate::compat::Mode;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

use crate::error_chain as chain;

/// Errors of [`RegistryAdmin`] calls.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum AdminError {
    /// The registry could not be reached or did not answer in time.
    #[error("schema registry {url} unreachable: {message}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// HTTP 409: the schema is incompatible with the subject's earlier versions under its
    /// compatibility level.
    #[error("schema rejected as incompatible for subject {subject} (HTTP 409): {message}")]
    Incompatible {
        /// The subject.
        subject: String,
        /// The registry's message.
        message: String,
    },
    /// HTTP 404 (subject, version or schema not found).
    #[error("not found at {url}: {message}")]
    NotFound {
        /// The request URL.
        url: String,
        /// The registry's error code (e.g. 40401 subject, 40403 schema), if given.
        error_code: Option<i64>,
        /// The registry's message.
        message: String,
    },
    /// HTTP 401 or 403: the credentials were refused, or lack the permission asked for.
    #[error("schema registry {url} refused {who} (HTTP {status}): {message}")]
    Unauthorized {
        /// The request URL.
        url: String,
        /// `user "<name>"`, or `anonymous access` when no credentials were configured.
        who: String,
        /// 401 (not authenticated) or 403 (not permitted).
        status: u16,
        /// The registry's message or body.
        message: String,
    },
    /// Any other non-success status.
    #[error("schema registry {url} answered HTTP {status}: {message}")]
    Http {
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The registry's error code, if given.
        error_code: Option<i64>,
        /// The registry's message or body.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected answer from {url}: {message}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl AdminError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            AdminError::Unreachable { .. } => true,
            AdminError::Http { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

/// A small client for the administrative endpoints.
#[derive(Debug, Clone)]
pub struct RegistryAdmin {
    client: reqwest::Client,
    base: String,
    auth: Option<BasicAuth>,
}

fn enc(subject: &str) -> String {
    // Subjects are path segments: escape what would break the path.
    subject
        .replace('%', "%25")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23")
        .replace(' ', "%20")
}

impl RegistryAdmin {
    /// A client for the Confluent-compatible API at `base_url` (e.g.
    /// `http://127.0.0.1:8081/apis/ccompat/v7`; a trailing `/` is tolerated).
    ///
    /// # Errors
    /// [`AdminError::Unreachable`] if the HTTP client cannot be built.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, AdminError> {
        Self::with_access(base_url, timeout, &RegistryAccess::default())
    }

    /// As [`RegistryAdmin::new`], authenticating and trusting CAs as `access` says.
    ///
    /// # Errors
    /// [`AdminError::Unreachable`] if the HTTP client cannot be built (an unreadable CA file).
    pub fn with_access(
        base_url: &str,
        timeout: Duration,
        access: &RegistryAccess,
    ) -> Result<Self, AdminError> {
        let unbuildable = |message: String| AdminError::Unreachable {
            url: base_url.to_owned(),
            message,
        };
        let client = access
            .client_builder(timeout)
            .map_err(|e| unbuildable(e.to_string()))?
            .build()
            .map_err(|e| unbuildable(e.to_string()))?;
        Ok(RegistryAdmin {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            auth: access.basic_auth.clone(),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        subject: Option<&str>,
    ) -> Result<Value, AdminError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .client
            .request(method, &url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some(auth) = &self.auth {
            req = req.basic_auth(&auth.username, Some(auth.password()));
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| AdminError::Unreachable {
            url: url.clone(),
            message: chain(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| AdminError::Unreachable {
            url: url.clone(),
            message: chain(&e),
        })?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| AdminError::BadResponse {
                url,
                message: format!("not JSON: {text}"),
            });
        }
        let error_code = json
            .as_ref()
            .and_then(|j| j.get("error_code"))
            .and_then(Value::as_i64);
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Value::as_str)
            .map_or(text.clone(), str::to_owned);
        Err(match status {
            StatusCode::CONFLICT => AdminError::Incompatible {
                subject: subject.unwrap_or_default().to_owned(),
                message,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => AdminError::Unauthorized {
                url,
                who: self.auth.as_ref().map_or_else(
                    || "anonymous access".to_owned(),
                    |a| format!("user \"{}\"", a.username),
                ),
                status: status.as_u16(),
                message,
            },
            StatusCode::NOT_FOUND => AdminError::NotFound {
                url,
                error_code,
                message,
            },
            _ => AdminError::Http {
                url,
                status: status.as_u16(),
                error_code,
                message,
            },
        })
    }

    /// `PUT /config/{subject}`: sets the subject's compatibility level.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn set_compatibility(&self, subject: &str, mode: Mode) -> Result<(), AdminError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/config/{}", enc(subject)),
            Some(json!({ "compatibility": mode.as_str() })),
            Some(subject),
        )
        .await
        .map(|_| ())
    }

    /// `GET /config/{subject}`: the subject's compatibility level, `None` if not set on the
    /// subject.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn get_compatibility(&self, subject: &str) -> Result<Option<String>, AdminError> {
        match self
            .call(
                reqwest::Method::GET,
                &format!("/config/{}", enc(subject)),
                None,
                Some(subject),
            )
            .await
        {
            Ok(v) => Ok(v
                .get("compatibilityLevel")
                .or_else(|| v.get("compatibility"))
                .and_then(Value::as_str)
                .map(str::to_owned)),
            Err(AdminError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /compatibility/subjects/{subject}/versions/latest`: would `schema_text` be accepted
    /// under the subject's compatibility level? (The registry checks against the latest
    /// version, or all versions for transitive levels.) A subject without versions is
    /// compatible with anything.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn test_compatibility(
        &self,
        subject: &str,
        schema_text: &str,
    ) -> Result<bool, AdminError> {
        let v = match self
            .call(
                reqwest::Method::POST,
                &format!("/compatibility/subjects/{}/versions/latest", enc(subject)),
                Some(json!({ "schema": schema_text, "schemaType": "AVRO" })),
                Some(subject),
            )
            .await
        {
            Ok(v) => v,
            Err(AdminError::NotFound { .. }) => return Ok(true),
            Err(e) => return Err(e),
        };
        v.get("is_compatible")
            .and_then(Value::as_bool)
            .ok_or_else(|| AdminError::BadResponse {
                url: self.base.clone(),
                message: format!("no is_compatible in {v}"),
            })
    }

    /// `POST /subjects/{subject}/versions`: registers `schema_text` (or returns the id of the
    /// identical registered schema).
    ///
    /// # Errors
    /// [`AdminError::Incompatible`] on HTTP 409, other [`AdminError`]s.
    pub async fn register(&self, subject: &str, schema_text: &str) -> Result<u32, AdminError> {
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{}/versions", enc(subject)),
                Some(json!({ "schema": schema_text, "schemaType": "AVRO" })),
                Some(subject),
            )
            .await?;
        v.get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| AdminError::BadResponse {
                url: self.base.clone(),
                message: format!("no id in {v}"),
            })
    }

    /// `GET /schemas/ids/{id}`: the schema text registered under `id`.
    ///
    /// # Errors
    /// [`AdminError::NotFound`] for an unknown id, other [`AdminError`]s.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, AdminError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/schemas/ids/{id}"),
                None,
                None,
            )
            .await?;
        v.get("schema")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AdminError::BadResponse {
                url: self.base.clone(),
                message: format!("no schema in {v}"),
            })
    }

    /// `GET /subjects/{subject}/versions`: the version numbers under `subject`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, AdminError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/subjects/{}/versions", enc(subject)),
                None,
                Some(subject),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| AdminError::BadResponse {
            url: self.base.clone(),
            message: e.to_string(),
        })
    }

    /// `DELETE /subjects/{subject}` (soft) then `?permanent=true` (hard). A subject that does
    /// not exist is not an error.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn delete_subject(&self, subject: &str) -> Result<(), AdminError> {
        for suffix in ["", "?permanent=true"] {
            match self
                .call(
                    reqwest::Method::DELETE,
                    &format!("/subjects/{}{suffix}", enc(subject)),
                    None,
                    Some(subject),
                )
                .await
            {
                Ok(_) | Err(AdminError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `GET /subjects`.
    ///
    /// # Errors
    /// [`AdminError`].
    pub async fn list_subjects(&self) -> Result<Vec<String>, AdminError> {
        let v = self
            .call(reqwest::Method::GET, "/subjects", None, None)
            .await?;
        serde_json::from_value(v).map_err(|e| AdminError::BadResponse {
            url: self.base.clone(),
            message: e.to_string(),
        })
    }
}
