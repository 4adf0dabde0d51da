//! Offline schema compatibility checks, with Confluent's semantics on top of apache-avro's
//! [`SchemaCompatibility`].
//!
//! * BACKWARD: the new schema can read data written with the previous one (upgrade consumers
//!   first).
//! * FORWARD: the previous schema can read data written with the new one (upgrade producers
//!   first).
//! * FULL: both. `*_TRANSITIVE`: against every earlier version, not just the previous one.
//!
//! apache-avro answers `Full` (resolution always works) or `Partial` (resolution *may* fail for
//! some data, e.g. a writer enum symbol unknown to a reader without an enum default, or a writer
//! union branch the reader lacks). Like the Confluent registry, we count `Partial` as
//! **incompatible**.

use std::fmt;
use std::str::FromStr;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use crate::versions::{parsed_versions, versions};

/// A compatibility level, named as in the Confluent API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// `BACKWARD`: new reads previous.
    Backward,
    /// `BACKWARD_TRANSITIVE`: new reads all earlier.
    BackwardTransitive,
    /// `FORWARD`: previous reads new.
    Forward,
    /// `FORWARD_TRANSITIVE`: all earlier read new.
    ForwardTransitive,
    /// `FULL`: BACKWARD and FORWARD.
    Full,
    /// `FULL_TRANSITIVE`: BACKWARD_TRANSITIVE and FORWARD_TRANSITIVE.
    FullTransitive,
    /// `NONE`: no check.
    None,
}

impl Mode {
    /// All modes.
    pub const ALL: [Mode; 7] = [
        Mode::Backward,
        Mode::BackwardTransitive,
        Mode::Forward,
        Mode::ForwardTransitive,
        Mode::Full,
        Mode::FullTransitive,
        Mode::None,
    ];

    /// The Confluent name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Backward => "BACKWARD",
            Mode::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Mode::Forward => "FORWARD",
            Mode::ForwardTransitive => "FORWARD_TRANSITIVE",
            Mode::Full => "FULL",
            Mode::FullTransitive => "FULL_TRANSITIVE",
            Mode::None => "NONE",
        }
    }

    /// Whether the new schema must read older data.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            Mode::Backward | Mode::BackwardTransitive | Mode::Full | Mode::FullTransitive
        )
    }

    /// Whether older schemas must read new data.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            Mode::Forward | Mode::ForwardTransitive | Mode::Full | Mode::FullTransitive
        )
    }

    /// Whether every earlier version is checked, not just the previous one.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Mode::BackwardTransitive | Mode::ForwardTransitive | Mode::FullTransitive
        )
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error parsing a [`Mode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown compatibility mode {0:?} (BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE)"
)]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == norm)
            .ok_or_else(|| ParseModeError(s.to_owned()))
    }
}

/// Can data written with `writer` be read with `reader` in every case (Avro resolution rules)?
///
/// apache-avro's [`SchemaCompatibility`] gives the verdict; the reason names each field and the
/// rule it breaks ([`crate::explain`]).
///
/// # Errors
/// A human-readable reason, one `field <path>: <what> [rule <id>: <rule>]` line per breach.
pub fn compatible(writer: &Schema, reader: &Schema) -> Result<(), String> {
    let verdict = SchemaCompatibility::can_read(writer, reader);
    if matches!(verdict, Ok(Compatibility::Full)) {
        return Ok(());
    }
    let findings = crate::explain::explain(writer, reader);
    if !findings.is_empty() {
        return Err(findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"));
    }
    Err(match verdict {
        Err(e) => e.to_string(),
        _ => "partial: some writer values cannot be resolved (enum symbol or union branch missing in the reader)"
            .to_owned(),
    })
}

/// Which reader/writer direction a check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Direction {
    /// The newer schema reads data of the older one.
    NewReadsOld,
    /// The older schema reads data of the newer one.
    OldReadsNew,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::NewReadsOld => "new reads old",
            Direction::OldReadsNew => "old reads new",
        })
    }
}

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index (0-based, in the slice given to [`check`]) of the older schema.
    pub older: usize,
    /// Index of the newer schema.
    pub newer: usize,
    /// The direction that failed.
    pub direction: Direction,
    /// Why.
    pub reason: String,
}

/// One row of a [`CompatReport`]: an (older, newer) version pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatRow {
    /// The older version number.
    pub older: u32,
    /// The newer version number.
    pub newer: u32,
    /// New reads old; `None` when the mode does not check it.
    pub backward: Option<Result<(), String>>,
    /// Old reads new; `None` when the mode does not check it.
    pub forward: Option<Result<(), String>>,
}

impl CompatRow {
    /// Whether every checked direction passed.
    pub fn ok(&self) -> bool {
        !matches!(self.backward, Some(Err(_))) && !matches!(self.forward, Some(Err(_)))
    }
}

/// The result of checking a sequence of versions under a mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatReport {
    /// The mode checked.
    pub mode: Mode,
    /// The pairs checked, in order.
    pub rows: Vec<CompatRow>,
}

impl CompatReport {
    /// Whether no check failed (the CLI exits non-zero otherwise).
    pub fn is_ok(&self) -> bool {
        self.rows.iter().all(CompatRow::ok)
    }

    /// The failed rows.
    pub fn violations(&self) -> impl Iterator<Item = &CompatRow> {
        self.rows.iter().filter(|r| !r.ok())
    }
}

fn cell(v: &Option<Result<(), String>>) -> &'static str {
    match v {
        None => "-",
        Some(Ok(())) => "ok",
        Some(Err(_)) => "FAIL",
    }
}

impl fmt::Display for CompatReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "compatibility mode: {}", self.mode)?;
        writeln!(
            f,
            "{:<8} {:<8} {:<14} {:<14} verdict",
            "older", "newer", "new reads old", "old reads new"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<8} {:<8} {:<14} {:<14} {}",
                format!("v{}", r.older),
                format!("v{}", r.newer),
                cell(&r.backward),
                cell(&r.forward),
                if r.ok() { "compatible" } else { "INCOMPATIBLE" }
            )?;
        }
        for r in self.violations() {
            for (reader, writer, res) in [
                (r.newer, r.older, &r.backward),
                (r.older, r.newer, &r.forward),
            ] {
                if let Some(Err(e)) = res {
                    writeln!(f, "  v{reader} cannot read v{writer} data:")?;
                    for line in e.lines() {
                        writeln!(f, "    {line}")?;
                    }
                }
            }
        }
        if self.rows.is_empty() {
            writeln!(f, "(nothing to compare)")?;
        }
        write!(
            f,
            "result: {}",
            if self.is_ok() { "OK" } else { "VIOLATIONS" }
        )
    }
}

/// Checks `schemas` (oldest first, labelled with `labels`) under `mode` the way a registry
/// would when each was registered in turn.
pub fn report(schemas: &[Schema], labels: &[u32], mode: Mode) -> CompatReport {
    let mut rows = Vec::new();
    if mode != Mode::None {
        for newer in 1..schemas.len() {
            let olders = if mode.is_transitive() {
                0..newer
            } else {
                newer - 1..newer
            };
            for older in olders {
                let (o, n) = (&schemas[older], &schemas[newer]);
                let label = |i: usize| {
                    labels
                        .get(i)
                        .copied()
                        .unwrap_or_else(|| u32::try_from(i + 1).unwrap_or(u32::MAX))
                };
                rows.push(CompatRow {
                    older: label(older),
                    newer: label(newer),
                    backward: mode.checks_backward().then(|| compatible(o, n)),
                    forward: mode.checks_forward().then(|| compatible(n, o)),
                });
            }
        }
    }
    CompatReport { mode, rows }
}

/// Checks `schemas` (oldest first) under `mode`; empty when compatible.
pub fn check(schemas: &[Schema], mode: Mode) -> Vec<Violation> {
    let labels: Vec<u32> = (1..=schemas.len())
        .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
        .collect();
    let rep = report(schemas, &labels, mode);
    let index = |v: u32| labels.iter().position(|l| *l == v).unwrap_or(0);
    let mut out = Vec::new();
    for r in &rep.rows {
        for (dir, res) in [
            (Direction::NewReadsOld, &r.backward),
            (Direction::OldReadsNew, &r.forward),
        ] {
            if let Some(Err(reason)) = res {
                out.push(Violation {
                    older: index(r.older),
                    newer: index(r.newer),
                    direction: dir,
                    reason: reason.clone(),
                });
            }
        }
    }
    out
}

/// Checks every version in `schemas/` under `mode` (what `orderstream schemas check` prints).
pub fn check_versions(mode: Mode) -> CompatReport {
    let labels: Vec<u32> = versions().iter().map(|v| v.version).collect();
    report(parsed_versions(), &labels, mode)
}
