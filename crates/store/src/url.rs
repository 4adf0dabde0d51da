//! Store URLs: `postgres://user:password@host:port/db` or `sqlite:PATH`.

/// `url` with any password replaced by `***`, for logs and error messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
}

/// The backend of `url`, and the URL as the driver needs it (an SQLite file is created when
/// missing).
pub(crate) fn parse(url: &str) -> Result<(Backend, String), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() || path.starts_with(":memory:") {
            return Err(
                "an in-memory SQLite database is not durable: give a file, e.g. sqlite:orders.db"
                    .to_owned(),
            );
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let mode = if path.contains("mode=") {
            String::new()
        } else {
            format!("{sep}mode=rwc")
        };
        return Ok((Backend::Sqlite, format!("sqlite://{path}{mode}")));
    }
    Err("expected postgres://user@host:port/database (the password in ORDERSTREAM_STORE or a password file, never in a flag) or sqlite:PATH".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://orderstream:s3cr3t@127.0.0.1:55432/orderstream"),
            "postgres://orderstream:***@127.0.0.1:55432/orderstream"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:orders.db"), "sqlite:orders.db");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("sqlite:data/orders.db").unwrap(),
            (
                Backend::Sqlite,
                "sqlite://data/orders.db?mode=rwc".to_owned()
            )
        );
        assert_eq!(parse("postgres://h/db").unwrap().0, Backend::Postgres);
        assert!(parse("sqlite::memory:").is_err());
        assert!(parse("mysql://h/db").is_err());
    }
}
