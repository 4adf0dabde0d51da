//! `/metrics` scraped from running `produce` and `consume` processes returns the named series
//! with values that match what the processes did; commits are counted by result, and a
//! partition's gauges are exported only by the member that owns it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use orderstream_testkit::TestEnv;
use support::{interrupt, orderstream, start, text};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The sum of every sample of `series` (over all label sets) in a Prometheus text page;
/// `None` when the series is absent.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(series) && l[series.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
}

/// Every sample of the metric `name` in a Prometheus text page: its labels and value.
fn samples(page: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => r.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// The sum of the samples of `name` whose label `key` is `value`; `None` when there are none.
fn sample_where(page: &str, name: &str, key: &str, value: &str) -> Option<f64> {
    samples(page, name)
        .into_iter()
        .filter(|(l, _)| l.get(key).is_some_and(|v| v == value))
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
}

/// The per-partition gauges of the consumer.
const PARTITION_GAUGES: [&str; 3] = [
    "orderstream_consumer_lag_records",
    "orderstream_consumer_lag_seconds",
    "orderstream_consumer_in_flight_records",
];

/// The `(topic, partition)`s that any per-partition gauge on the page reports.
fn gauge_partitions(page: &str) -> BTreeSet<(String, String)> {
    PARTITION_GAUGES
        .iter()
        .flat_map(|g| samples(page, g))
        .filter_map(|(l, _)| Some((l.get("topic")?.clone(), l.get("partition")?.clone())))
        .collect()
}

async fn scrape(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Scrapes until `series` reaches `at_least` or the deadline passes; returns the last page.
async fn scrape_until(port: u16, series: &str, at_least: f64) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut page = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(&url).await {
            page = r.text().await.unwrap_or_default();
            if sample(&page, series).is_some_and(|v| v >= at_least) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_expose_prometheus_metrics() {
    let env = TestEnv::connect().await;
    let (layout, _) = env.topology_file("metrics");
    let layout = layout.to_str().expect("utf-8");
    assert!(
        orderstream(&env, &["--topology", layout, "topics", "apply"])
            .status
            .success()
    );

    let pport = free_port();
    let producer = start(
        &env,
        &[
            "--topology",
            layout,
            "--metrics-addr",
            &format!("127.0.0.1:{pport}"),
            "produce",
            "--duration",
            "8",
            "--rate",
            "100",
            "--quiet",
        ],
    );
    let page = scrape_until(pport, "orderstream_producer_acked_total", 50.0).await;
    for series in [
        "orderstream_producer_sent_total",
        "orderstream_producer_acked_total",
        "orderstream_producer_ack_latency_seconds_count",
        "orderstream_producer_in_flight_records",
    ] {
        assert!(
            sample(&page, series).is_some(),
            "{series} missing from:\n{page}"
        );
    }
    // Every producer metric exported so far has its HELP and TYPE lines.
    assert_described(&page, orderstream_producer::metric::NAMES);
    let acked = sample(&page, "orderstream_producer_acked_total").unwrap_or(0.0);
    assert!(acked >= 50.0, "acked {acked}");
    let p99_bucket_le_10s =
        sample(&page, "orderstream_producer_ack_latency_seconds_sum").unwrap_or(-1.0);
    assert!(p99_bucket_le_10s >= 0.0);
    let out = producer.wait(Duration::from_secs(120));
    assert!(out.status.success(), "{:?}", text(&out));
    let produced: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("produced: events ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("summary line");

    let cport = free_port();
    let group = env.group_id("metrics");
    let consumer = start(
        &env,
        &[
            "--topology",
            layout,
            "--metrics-addr",
            &format!("127.0.0.1:{cport}"),
            "consume",
            "--group",
            &group,
            "--for",
            "300",
        ],
    );
    let page = scrape_until(
        cport,
        "orderstream_consumer_processed_total",
        produced as f64,
    )
    .await;
    let processed = sample(&page, "orderstream_consumer_processed_total").unwrap_or(0.0);
    assert!(
        processed >= produced as f64,
        "processed {processed} of {produced}:\n{page}"
    );
    // Commits follow processing on the commit interval; an asynchronous one is counted when the
    // coordinator's committed offsets are read back (after a quiet interval).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut page = scrape(cport).await;
    while Instant::now() < deadline
        && sample_where(&page, "orderstream_consumer_commits_total", "result", "ok")
            .is_none_or(|v| v < 1.0)
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        page = scrape(cport).await;
    }
    let commits = samples(&page, "orderstream_consumer_commits_total");
    let ok = sample_where(&page, "orderstream_consumer_commits_total", "result", "ok");
    assert!(
        ok.is_some_and(|v| v >= 1.0),
        "no commits_total{{result=\"ok\"}}: {commits:?}\n{page}"
    );
    for (labels, v) in &commits {
        let (mode, result) = (labels.get("mode"), labels.get("result"));
        assert!(
            matches!(mode.map(String::as_str), Some("sync" | "async"))
                && matches!(result.map(String::as_str), Some("ok" | "failed")),
            "commits_total sample without mode/result: {labels:?} {v}"
        );
        assert!(
            result.is_none_or(|r| r != "failed") || *v == 0.0,
            "failed commits in a healthy run: {labels:?} {v}\n{page}"
        );
    }
    // More commits are counted ok as more records are processed (the second consumer below
    // takes partitions over; the first commits on revoke).
    let ok_before = ok.unwrap_or(0.0);
    for series in [
        "orderstream_consumer_commits_total",
        "orderstream_consumer_rebalances_total",
        "orderstream_consumer_handler_duration_seconds_count",
        "orderstream_consumer_in_flight_records",
    ] {
        assert!(
            sample(&page, series).is_some(),
            "{series} missing from:\n{page}"
        );
    }
    assert_described(&page, orderstream_consumer::metric::NAMES);

    // A second member of the group takes partitions over: the first one's gauges of the
    // partitions it gave up leave its scrape after the idle timeout, the gauges of those it
    // keeps stay, and no partition is exported by both.
    let all = gauge_partitions(&page);
    assert!(
        all.len() >= 2,
        "the first member exports fewer than two partitions: {all:?}\n{page}"
    );
    let bport = free_port();
    let second = start(
        &env,
        &[
            "--topology",
            layout,
            "--metrics-addr",
            &format!("127.0.0.1:{bport}"),
            "consume",
            "--group",
            &group,
            "--for",
            "300",
        ],
    );
    let timeout = orderstream_consumer::metric::GAUGE_IDLE_TIMEOUT;
    let split = |a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>| {
        !a.is_empty()
            && !b.is_empty()
            && a.is_disjoint(b)
            && a.union(b).cloned().collect::<BTreeSet<_>>() == all
    };
    let deadline = Instant::now() + Duration::from_secs(90) + timeout;
    let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
    let mut pages = (String::new(), String::new());
    while Instant::now() < deadline {
        pages = (scrape(cport).await, scrape(bport).await);
        (a, b) = (gauge_partitions(&pages.0), gauge_partitions(&pages.1));
        if split(&a, &b) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        split(&a, &b),
        "partition gauges not split between the members after the idle timeout ({timeout:?}):\n\
         all {all:?}\nfirst {a:?}\nsecond {b:?}\nboth {:?}\nfirst page:\n{}",
        a.intersection(&b).collect::<Vec<_>>(),
        pages.0
    );
    // Owned partitions keep their gauges past the timeout without any rebalance.
    tokio::time::sleep(timeout + Duration::from_secs(2)).await;
    let pages = (scrape(cport).await, scrape(bport).await);
    let (a2, b2) = (gauge_partitions(&pages.0), gauge_partitions(&pages.1));
    assert!(
        a2 == a && b2 == b,
        "partition gauges changed without a rebalance:\nfirst {a:?} -> {a2:?}\nsecond {b:?} -> {b2:?}"
    );
    let ok_after = sample_where(
        &pages.0,
        "orderstream_consumer_commits_total",
        "result",
        "ok",
    )
    .unwrap_or(0.0);
    assert!(
        ok_after > ok_before,
        "no commit of the first member counted ok after the revoke: {ok_before} -> {ok_after}\n{}",
        pages.0
    );
    for p in [&pages.0, &pages.1] {
        let failed = sample_where(p, "orderstream_consumer_commits_total", "result", "failed");
        assert!(
            failed.is_none_or(|v| v == 0.0),
            "failed commits in a healthy run:\n{p}"
        );
    }
    let out = interrupt(second);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = interrupt(consumer);
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Every metric of `names` that the page exports has HELP text and a TYPE (at least one of
/// them does: a page of undescribed metrics fails).
fn assert_described(page: &str, names: &[&str]) {
    let exported: Vec<&&str> = names
        .iter()
        .filter(|n| page.lines().any(|l| l.starts_with(**n)))
        .collect();
    assert!(!exported.is_empty(), "none of {names:?} exported:\n{page}");
    for name in exported {
        assert!(
            page.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 8),
            "no HELP text for {name}:\n{page}"
        );
        assert!(
            page.lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} "))),
            "no TYPE for {name}:\n{page}"
        );
    }
}
