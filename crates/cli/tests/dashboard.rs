//! The Grafana dashboard in docs/grafana queries only metrics the processes export, and shows
//! every one of them.

use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../../../docs/grafana/orderstream.json");

/// Every `orderstream_*` name an expression queries, histogram suffixes taken off.
fn queried(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("orderstream_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
    }
    names
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_exactly_the_exported_metrics() {
    let dash: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "orderstream");
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(!all.is_empty(), "no queries in the dashboard");
    let exported: BTreeSet<&str> = orderstream_producer::metric::NAMES
        .iter()
        .chain(orderstream_consumer::metric::NAMES)
        .chain(orderstream_notify::metric::NAMES)
        .copied()
        .collect();
    let used: BTreeSet<String> = all.iter().flat_map(|e| queried(e)).collect();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(unknown.is_empty(), "queried but not exported: {unknown:?}");
    let unshown: Vec<&&str> = exported.iter().filter(|n| !used.contains(**n)).collect();
    assert!(unshown.is_empty(), "exported but on no panel: {unshown:?}");
}

#[test]
fn names_in_expressions_are_found() {
    assert_eq!(
        queried("histogram_quantile(0.99, rate(orderstream_a_seconds_bucket[5m])) + orderstream_b"),
        ["orderstream_a_seconds", "orderstream_b"]
    );
}
