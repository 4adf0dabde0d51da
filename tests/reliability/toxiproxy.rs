//! A client of Toxiproxy's HTTP API (scripts/toxiproxy.sh runs the server): one proxy per Kafka
//! node in front of its PROXIED listener, and toxics on them. The proxies are removed when the
//! [`Proxies`] value drops, even while a failed scenario unwinds.

use std::process::Command;

use serde_json::{Value, json};

/// Toxiproxy's API, `ORDERSTREAM_TOXIPROXY_URL` (scripts/reliability.sh sets it).
fn api() -> String {
    std::env::var("ORDERSTREAM_TOXIPROXY_URL").unwrap_or_else(|_| {
        panic!(
            "ORDERSTREAM_TOXIPROXY_URL is not set: run scripts/reliability.sh, or \
             bash scripts/toxiproxy.sh start && eval \"$(bash scripts/toxiproxy.sh env)\""
        )
    })
}

/// `curl` against the API: (HTTP status, body). Status 0: no answer within 10 s. Never panics
/// (the guard calls it while unwinding).
fn call(method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let url = format!("{}{path}", api_or_empty());
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--max-time",
        "10",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(b) = body {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data",
            &b.to_string(),
        ]);
    }
    let Ok(out) = cmd.arg(&url).output() else {
        return (0, String::new());
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn api_or_empty() -> String {
    std::env::var("ORDERSTREAM_TOXIPROXY_URL").unwrap_or_default()
}

fn must(method: &str, path: &str, body: Option<&Value>) -> String {
    let (status, text) = call(method, path, body);
    assert!(
        (200..300).contains(&status),
        "Toxiproxy {method} {path} answered {status}: {text}"
    );
    text
}

/// Which way a toxic acts: on bytes to the broker, or back to the client.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Upstream,
    Downstream,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// One proxy per Kafka node: clients bootstrapping through [`Proxies::bootstrap`] reach every
/// broker only through them (the brokers advertise the proxies' ports on that listener).
#[derive(Debug)]
pub(crate) struct Proxies {
    /// (node, proxy name, listen port).
    nodes: Vec<(i32, String, u16)>,
}

impl Proxies {
    /// Creates the proxies `scripts/kafka.sh proxy-routes` lists, named after `scenario`.
    pub(crate) fn create(scenario: &str) -> Self {
        let url = api();
        let (status, _) = call("GET", "/version", None);
        assert!(
            status == 200,
            "Toxiproxy does not answer at {url} (HTTP {status}): bash scripts/toxiproxy.sh start"
        );
        // A proxy left by an interrupted run would hold the listen port.
        must("POST", "/reset", None);
        let routes = orderstream_testkit::kafka_script(&["proxy-routes"]);
        let mut nodes = Vec::new();
        for line in routes.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (node, listen, upstream): (i32, u16, u16) = (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            );
            let name = format!("{scenario}-node{node}");
            call("DELETE", &format!("/proxies/{name}"), None);
            must(
                "POST",
                "/proxies",
                Some(&json!({
                    "name": name,
                    "listen": format!("127.0.0.1:{listen}"),
                    "upstream": format!("127.0.0.1:{upstream}"),
                    "enabled": true,
                })),
            );
            nodes.push((node, name, listen));
        }
        assert!(
            !nodes.is_empty(),
            "scripts/kafka.sh proxy-routes listed no route"
        );
        Self { nodes }
    }

    /// The bootstrap list through the proxies.
    pub(crate) fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|(_, _, port)| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn name_of(&self, node: i32) -> &str {
        self.nodes
            .iter()
            .find(|(n, _, _)| *n == node)
            .map(|(_, name, _)| name.as_str())
            .unwrap_or_else(|| panic!("no proxy for node {node}"))
    }

    /// Adds toxic `toxic` of `kind` with `attributes` to node `node`'s proxy, both ways.
    pub(crate) fn add(&self, node: i32, toxic: &str, kind: &str, toxicity: f64, attributes: Value) {
        self.add_on(
            node,
            &[Stream::Upstream, Stream::Downstream],
            toxic,
            kind,
            toxicity,
            attributes,
        );
    }

    /// Adds the toxic to node `node`'s replies only: requests still reach the broker.
    pub(crate) fn add_to_replies(&self, node: i32, toxic: &str, kind: &str, attributes: Value) {
        self.add_on(node, &[Stream::Downstream], toxic, kind, 1.0, attributes);
    }

    fn add_on(
        &self,
        node: i32,
        streams: &[Stream],
        toxic: &str,
        kind: &str,
        toxicity: f64,
        attributes: Value,
    ) {
        let proxy = self.name_of(node).to_owned();
        for stream in streams.iter().copied() {
            must(
                "POST",
                &format!("/proxies/{proxy}/toxics"),
                Some(&json!({
                    "name": format!("{toxic}-{}", stream.name()),
                    "type": kind,
                    "stream": stream.name(),
                    "toxicity": toxicity,
                    "attributes": attributes,
                })),
            );
        }
    }

    /// Adds the toxic to every node's proxy.
    pub(crate) fn add_all(&self, toxic: &str, kind: &str, toxicity: f64, attributes: &Value) {
        for (node, _, _) in &self.nodes {
            self.add(*node, toxic, kind, toxicity, attributes.clone());
        }
    }

    /// Enables or disables node `node`'s proxy: disabled, it closes every connection and
    /// refuses new ones.
    pub(crate) fn set_enabled(&self, node: i32, enabled: bool) {
        let proxy = self.name_of(node).to_owned();
        must(
            "POST",
            &format!("/proxies/{proxy}"),
            Some(&json!({ "enabled": enabled })),
        );
    }

    /// Removes every toxic and enables every proxy: the network is healthy again.
    pub(crate) fn heal(&self) {
        must("POST", "/reset", None);
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for (_, name, _) in &self.nodes {
            let (status, _) = call("DELETE", &format!("/proxies/{name}"), None);
            if !(200..300).contains(&status) {
                eprintln!("guard: could not delete Toxiproxy proxy {name} (HTTP {status})");
            }
        }
    }
}
