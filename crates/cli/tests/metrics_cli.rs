//! `/metrics` scraped from running `produce` and `consume` processes returns the named series
//! with values that match what the processes did.

mod support;

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
            l.strip_prefix("produced: sent ")?
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
    // Commits follow processing on the commit interval.
    let page = scrape_until(cport, "orderstream_consumer_commits_total", 1.0).await;
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
