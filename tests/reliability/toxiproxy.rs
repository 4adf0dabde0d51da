//! A client of Toxiproxy's HTTP API (scripts/toxiproxy.sh runs the server): one proxy per Kafka
//! node in front of its PROXIED listener ([`Proxies`], the clients' side), or one per link
//! between two brokers ([`Links`]), and toxics on them. The proxies are removed when their
//! value drops, even while a failed scenario unwinds.

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

/// Fails the scenario at once when Toxiproxy does not answer.
fn require_api() {
    let url = api();
    let (status, _) = call("GET", "/version", None);
    assert!(
        status == 200,
        "Toxiproxy does not answer at {url} (HTTP {status}): bash scripts/toxiproxy.sh start"
    );
}

/// A proxy from `listen` to `upstream` on 127.0.0.1, replacing one of the same name that an
/// interrupted run left holding the port.
fn create_proxy(name: &str, listen: u16, upstream: u16) {
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
}

fn add_toxic(
    proxy: &str,
    toxic: &str,
    kind: &str,
    stream: Stream,
    toxicity: f64,
    attributes: &Value,
) {
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

/// Removes every toxic and enables every proxy.
fn reset() {
    must("POST", "/reset", None);
}

fn delete_proxies<'a>(names: impl Iterator<Item = &'a str>) {
    for name in names {
        let (status, _) = call("DELETE", &format!("/proxies/{name}"), None);
        if !(200..300).contains(&status) {
            eprintln!("guard: could not delete Toxiproxy proxy {name} (HTTP {status})");
        }
    }
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
        require_api();
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
            create_proxy(&name, listen, upstream);
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
        let proxy = self.name_of(node);
        for stream in streams.iter().copied() {
            add_toxic(proxy, toxic, kind, stream, toxicity, &attributes);
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
        reset();
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        delete_proxies(self.nodes.iter().map(|(_, name, _)| name.as_str()));
    }
}

/// One proxy per link between two brokers (`scripts/kafka.sh replication-routes`: node `from`
/// fetching from, or otherwise calling, node `to`), and the cluster switched to send its
/// inter-broker traffic through them. Dropped while the cluster is still switched (a failed
/// scenario), it heals the links, switches the cluster back to direct replication (a restart
/// of every node) and only then removes the proxies.
#[derive(Debug)]
pub(crate) struct Links {
    /// (from node, to node, proxy name).
    links: Vec<(i32, i32, String)>,
    proxied: bool,
}

impl Links {
    /// Creates the link proxies, named after `scenario`; the cluster is not switched yet.
    pub(crate) fn create(scenario: &str) -> Self {
        require_api();
        let routes = orderstream_testkit::kafka_script(&["replication-routes"]);
        let mut links = Vec::new();
        for line in routes.lines().filter(|l| !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (from, to, listen, upstream): (i32, i32, u16, u16) = (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            );
            let name = format!("{scenario}-link{from}to{to}");
            create_proxy(&name, listen, upstream);
            links.push((from, to, name));
        }
        assert_eq!(
            links.len(),
            6,
            "scripts/kafka.sh replication-routes: one route per ordered pair of 3 nodes"
        );
        Self {
            links,
            proxied: false,
        }
    }

    /// Restarts every node sending its inter-broker traffic through the links.
    pub(crate) async fn switch_cluster(&mut self) {
        self.proxied = true;
        super::support::kafka(&["replication", "proxied"]).await;
    }

    /// Restarts every node replicating directly again.
    pub(crate) async fn restore_cluster(&mut self) {
        super::support::kafka(&["replication", "direct"]).await;
        self.proxied = false;
    }

    /// Adds the toxic to every link, both ways.
    pub(crate) fn add_all(&self, toxic: &str, kind: &str, toxicity: f64, attributes: &Value) {
        for (_, _, name) in &self.links {
            for stream in [Stream::Upstream, Stream::Downstream] {
                add_toxic(name, toxic, kind, stream, toxicity, attributes);
            }
        }
    }

    /// Adds the toxic, both ways, to every link from or to `node`: cut off from the other
    /// brokers, it still reaches the controller quorum and its clients.
    pub(crate) fn isolate(&self, node: i32, toxic: &str, kind: &str, attributes: &Value) {
        for (from, to, name) in &self.links {
            if *from == node || *to == node {
                for stream in [Stream::Upstream, Stream::Downstream] {
                    add_toxic(name, toxic, kind, stream, 1.0, attributes);
                }
            }
        }
    }

    /// Removes every toxic: the links are healthy again.
    pub(crate) fn heal(&self) {
        reset();
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        if self.proxied {
            let healed = std::panic::catch_unwind(reset).is_ok();
            let restored = std::panic::catch_unwind(|| {
                orderstream_testkit::kafka_script(&["replication", "direct"])
            })
            .is_ok();
            eprintln!(
                "guard: links healed: {healed}; cluster back to direct replication: {restored}"
            );
        }
        delete_proxies(self.links.iter().map(|(_, _, name)| name.as_str()));
    }
}
