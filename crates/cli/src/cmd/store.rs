//! `consume --store`: a group member whose effects go to a database with a durable inbox.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use orderstream_consumer::ConsumerConfig;
use orderstream_store::{OrderStore, StoreConfig, StoreProcessor, redact};

use crate::cmd::consume::ConsumeArgs;
use crate::exit;
use crate::settings::Effective;

/// The store URL from `--store` / `ORDERSTREAM_STORE` and the password file, if any. A URL with
/// a password given as a flag is refused: `ps` shows flags to every user of the machine.
pub(crate) fn url(args: &ConsumeArgs) -> anyhow::Result<Option<String>> {
    let Some(url) = args.store.clone() else {
        return Ok(None);
    };
    refuse_flag_password(
        &url,
        "ORDERSTREAM_STORE",
        "--store",
        "or the password in --store-password-file",
    )?;
    let Some(file) = &args.store_password_file else {
        return Ok(Some(url));
    };
    let password = std::fs::read_to_string(file)
        .map_err(|e| exit::UsageError(format!("--store-password-file {}: {e}", file.display())))?;
    let password = password.lines().next().unwrap_or("").trim_end();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(exit::UsageError(
            "--store-password-file needs a postgres:// URL in --store".to_owned(),
        )
        .into());
    };
    let Some((user, host)) = rest.split_once('@') else {
        return Err(exit::UsageError(
            "--store-password-file needs a user in --store's URL (postgres://user@host/db)"
                .to_owned(),
        )
        .into());
    };
    Ok(Some(format!(
        "{scheme}://{user}:{}@{host}",
        percent_encode(password)
    )))
}

/// Refuses a URL with a password given as a flag (`ps` shows flags to every user of the
/// machine); the same URL from the environment variable `env` is fine.
pub(crate) fn refuse_flag_password(
    url: &str,
    env: &str,
    flag: &str,
    alternative: &str,
) -> anyhow::Result<()> {
    let from_env = std::env::var(env).ok().as_deref() == Some(url);
    if !from_env && redact(url) != url {
        return Err(exit::UsageError(format!(
            "{flag}: a password on the command line is visible to every user (ps); put the whole URL in {env}{}",
            if alternative.is_empty() { String::new() } else { format!(" {alternative}") }
        ))
        .into());
    }
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs one member with the store processor until `for_secs` or a signal.
pub(crate) async fn consume(
    settings: &Effective,
    cfg: ConsumerConfig,
    url: &str,
    for_secs: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let store = OrderStore::connect(&StoreConfig::new(url))
        .await
        .map_err(|e| exit::UsageError::of(&e))?;
    let processor = Arc::new(StoreProcessor::new(
        crate::cmd::consume::codec(settings)?,
        store.clone(),
    ));
    let cancel = crate::cmd::consume::stop_token(for_secs);
    let ticker = {
        let p = Arc::clone(&processor);
        crate::cmd::consume::spawn_progress(cancel.clone(), move |last| {
            let n = p.counts();
            tracing::info!(
                applied = n.applied,
                per_sec = (n.applied - last) / 5,
                duplicates = n.duplicates,
                illegal = n.illegal,
                early = n.early,
                store_failures = n.store_failures,
                "progress"
            );
            n.applied
        })
    };
    let run = orderstream_consumer::run_batched(cfg, Arc::clone(&processor), cancel)
        .await
        .context("consumer failed")?;
    ticker.abort();
    let n = processor.counts();
    let counts = store.counts().await?;
    println!(
        "consumed: processed {} | parked in retry topic {} | dead-lettered {}\n\
         this process: applied {} | duplicates recognised by the store {} | unknown kinds {} | illegal transitions {} | ahead of a missing predecessor (retried) {} | batches the store failed {}\n\
         store {} (queried): events in the inbox {} | orders {} | by state {:?}\n\
         commits: {} ({} failed) | rebalances {}",
        run.processed,
        run.parked,
        run.dead_lettered,
        n.applied,
        n.duplicates,
        n.unknown_kinds,
        n.illegal,
        n.early,
        n.store_failures,
        store.url(),
        counts.inbox,
        counts.orders,
        counts.by_state,
        run.commits,
        run.commit_failures,
        run.rebalances,
    );
    store.close().await;
    Ok(if run.stopped_cleanly() {
        exit::SUCCESS
    } else {
        ExitCode::from(exit::INCOMPLETE)
    })
}
