//! Embeds every `schemas/order_event.v<N>.avsc` (N = 1, 2, ... without gaps), so adding a
//! version is adding a file. The naming rules are the run-time catalog's
//! (`crates/schema/src/catalog.rs`); a file that breaks them fails the build with its name.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../schemas");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut found: Vec<(u32, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let name = entry
            .expect("directory entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let Some(rest) = name.strip_prefix("order_event.") else {
            continue;
        };
        let n = rest
            .strip_prefix('v')
            .and_then(|r| r.strip_suffix(".avsc"))
            .filter(|d| !d.is_empty() && !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or_else(|| {
                panic!("schemas/{name}: expected a file named order_event.v<N>.avsc (N = 1, 2, ... without leading zeros)")
            });
        found.push((n, name));
    }
    found.sort();
    for (i, (n, name)) in found.iter().enumerate() {
        let want = u32::try_from(i + 1).expect("fewer than 2^32 versions");
        assert!(
            *n == want,
            "schemas/{name}: version numbering has a gap or duplicate: expected v{want}"
        );
    }
    assert!(!found.is_empty(), "no schemas/order_event.v<N>.avsc files");
    let mut out = String::new();
    let _ = writeln!(out, "static VERSIONS: [SchemaVersion; {}] = [", found.len());
    for (n, _) in &found {
        let _ = writeln!(out, "    version!({n}),");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("versions.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
