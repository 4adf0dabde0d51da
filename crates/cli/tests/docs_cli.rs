//! No stale docs: every `orderstream ...` command shown in the README and `docs/` parses, every
//! CLI flag is in the configuration reference, and so is every field of the config structs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use orderstream_consumer::{ConsumerConfig, Topics};
use orderstream_notify::{NatsConfig, RabbitConfig};
use orderstream_producer::ProducerConfig;
use orderstream_schema::RegistryConfig;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn docs() -> Vec<(PathBuf, String)> {
    let mut files = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    files.extend(more);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read doc");
            (p, text)
        })
        .collect()
}

/// Lines inside fenced code blocks that run `orderstream`, without comments.
fn documented_commands() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for (path, text) in docs() {
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            // Drop comments and a trailing `&` (backgrounding is the shell's, not ours).
            let cmd = line.split(" #").next().unwrap_or_default().trim();
            let cmd = cmd.trim_end_matches('&').trim();
            if fenced && cmd.starts_with("orderstream ") {
                out.push((path.clone(), cmd.to_owned()));
            }
        }
    }
    out
}

#[test]
fn every_documented_command_parses() {
    let commands = documented_commands();
    assert!(commands.len() >= 15, "found only {commands:?}");
    for (path, cmd) in commands {
        let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let out = Command::new(env!("CARGO_BIN_EXE_orderstream"))
            .arg("--parse-only")
            .args(&args)
            .output()
            .expect("run orderstream");
        assert!(
            out.status.success(),
            "{}: `{cmd}` does not parse:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Field names from a struct's derived `Debug` output (`Name { a: .., b: .. }`), top level only.
fn debug_fields(debug: &str) -> BTreeSet<String> {
    let inner = &debug[debug.find('{').expect("struct") + 1..];
    let (mut depth, mut fields, mut token) = (0i32, BTreeSet::new(), String::new());
    for c in inner.chars() {
        match c {
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ':' if depth == 0 && !token.trim().is_empty() => {
                fields.insert(token.trim().trim_start_matches(',').trim().to_owned());
                token.clear();
                continue;
            }
            ',' if depth == 0 => token.clear(),
            '"' => {}
            _ => {}
        }
        if depth == 0 && c != ',' {
            token.push(c);
        }
    }
    fields.retain(|f| f.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    fields
}

#[test]
fn configuration_reference_covers_every_struct_field() {
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).expect("read");
    let consumer = ConsumerConfig::new("b", "g", Topics::new("a", "b", "c"));
    let structs = [
        ("ProducerConfig", format!("{:?}", ProducerConfig::default())),
        ("RegistryConfig", format!("{:?}", RegistryConfig::default())),
        ("ConsumerConfig", format!("{consumer:?}")),
        ("BackoffConfig", format!("{:?}", consumer.backoff)),
        (
            "RabbitConfig",
            format!("{:?}", RabbitConfig::new("amqp://127.0.0.1/%2f")),
        ),
        (
            "NatsConfig",
            format!("{:?}", NatsConfig::new("nats://127.0.0.1:4222")),
        ),
        (
            "StageConfig",
            format!(
                "{:?}",
                orderstream_consumer::StageConfig::new("b", "g", "in", "out", "dlq", "t")
            ),
        ),
    ];
    for (name, debug) in structs {
        let fields = debug_fields(&debug);
        assert!(fields.len() >= 4, "{name}: parsed {fields:?} from {debug}");
        for f in fields {
            assert!(
                reference.contains(&format!("| `{f}` |")),
                "docs/configuration.md lacks {name}.{f}"
            );
        }
    }
}

#[test]
fn configuration_reference_covers_every_flag() {
    let reference = std::fs::read_to_string(root().join("docs/configuration.md")).expect("read");
    let subcommands = [
        vec![],
        vec!["up"],
        vec!["topics", "apply"],
        vec!["schemas", "check"],
        vec!["schemas", "register"],
        vec!["schemas", "diff"],
        vec!["produce"],
        vec!["consume"],
        vec!["notify"],
        vec!["relay"],
        vec!["stage"],
        vec!["dlq", "list"],
        vec!["dlq", "replay"],
        vec!["demo"],
        vec!["watch"],
    ];
    for sub in subcommands {
        let out = Command::new(env!("CARGO_BIN_EXE_orderstream"))
            .args(&sub)
            .arg("--help")
            .output()
            .expect("help");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in help
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.trim_end_matches([',', '.', ']', ')', '`']))
            .filter(|w| !matches!(*w, "--help" | "--version"))
        {
            let flag = flag.split('=').next().unwrap_or(flag);
            assert!(
                reference.contains(&format!("`{flag}`")),
                "`orderstream {} {flag}` is not in docs/configuration.md",
                sub.join(" ")
            );
        }
    }
}
