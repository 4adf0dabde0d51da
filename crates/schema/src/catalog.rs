//! Schema version files read at run time: what `orderstream schemas check|register|diff` judge.
//!
//! The codec embeds the versions it was built with ([`crate::versions`]); a check must judge
//! the files as they are on disk now (a proposed version is checked before any Rust code
//! changes, the way another team's CI would use it). So the files are read here, in version
//! order, and every file that looks like a version but cannot be used is an error: a file that
//! does not parse, a name that is not `<stem>.v<N>.avsc`, a duplicate or missing number.

use std::fs;
use std::path::{Path, PathBuf};

use apache_avro::Schema;

use crate::compat::{CompatReport, Mode, report};

/// File-name stem of the order-event versions: `order_event.v<N>.avsc`.
pub const ORDER_EVENT_STEM: &str = "order_event";

/// One schema version read from disk (or embedded in the binary).
#[derive(Debug, Clone)]
pub struct VersionFile {
    /// `N` of `<stem>.v<N>.avsc`.
    pub version: u32,
    /// Where it was read from (as given, not canonicalised).
    pub path: PathBuf,
    /// The text exactly as read.
    pub text: String,
    /// The parsed schema.
    pub schema: Schema,
}

/// Why a set of version files cannot be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A version file is not a valid Avro schema.
    #[error("{path} is not a valid Avro schema: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// apache-avro's message.
        message: String,
    },
    /// A file name that should carry a version number does not.
    #[error("{path}: expected a file named {stem}.v<N>.avsc (N = 1, 2, ... without leading zeros)")]
    Name {
        /// The file.
        path: PathBuf,
        /// The stem expected.
        stem: String,
    },
    /// Two files claim the same version.
    #[error("v{version} is given twice: {first} and {second}")]
    Duplicate {
        /// The version number.
        version: u32,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// The numbering has a hole.
    #[error(
        "version numbering has a gap: v{missing} is missing between v{before} ({before_path}) and v{after} ({after_path})"
    )]
    Gap {
        /// The first missing number.
        missing: u32,
        /// The version before the gap.
        before: u32,
        /// Its file.
        before_path: PathBuf,
        /// The version after the gap.
        after: u32,
        /// Its file.
        after_path: PathBuf,
    },
    /// A directory's versions must start at v1.
    #[error("{dir}: the first version is v{first} ({path}); versions start at v1")]
    NotFromOne {
        /// The directory.
        dir: PathBuf,
        /// The lowest version found.
        first: u32,
        /// Its file.
        path: PathBuf,
    },
    /// Nothing to check.
    #[error("no schema versions in {dir} (expected files named {stem}.v<N>.avsc)")]
    Empty {
        /// Where we looked.
        dir: PathBuf,
        /// The stem expected.
        stem: String,
    },
}

/// Version files in version order, numbered without gaps.
#[derive(Debug, Clone)]
pub struct Catalog {
    versions: Vec<VersionFile>,
}

/// `Some(N)` for `<stem>.v<N>.avsc`; `None` when the name does not start with `<stem>.`;
/// `Err` when it does but is not a well-formed version name.
fn version_of(path: &Path, stem: &str) -> Result<Option<u32>, CatalogError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(rest) = name.strip_prefix(stem).and_then(|r| r.strip_prefix('.')) else {
        return Ok(None);
    };
    let bad = || CatalogError::Name {
        path: path.to_owned(),
        stem: stem.to_owned(),
    };
    let digits = rest
        .strip_prefix('v')
        .and_then(|r| r.strip_suffix(".avsc"))
        .ok_or_else(bad)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse().map(Some).map_err(|_| bad())
}

fn read(path: &Path, version: u32) -> Result<VersionFile, CatalogError> {
    let text = fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: path.to_owned(),
        source,
    })?;
    let schema = Schema::parse_str(&text).map_err(|e| CatalogError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(VersionFile {
        version,
        path: path.to_owned(),
        text,
        schema,
    })
}

impl Catalog {
    /// Every `<stem>.v<N>.avsc` in `dir`, which must number v1, v2, ... without gaps. Files
    /// with other stems are not ours and are left alone; a `<stem>.*` file with a malformed
    /// version is an error (it would otherwise be silently skipped).
    ///
    /// # Errors
    /// Any [`CatalogError`].
    pub fn load_dir(dir: &Path, stem: &str) -> Result<Self, CatalogError> {
        let entries = fs::read_dir(dir).map_err(|source| CatalogError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| CatalogError::Read {
                    path: dir.to_owned(),
                    source,
                })?
                .path();
            if let Some(version) = version_of(&path, stem)? {
                found.push((version, path));
            }
        }
        let catalog = Self::from_numbered(found, Some((dir, stem)))?;
        match catalog.versions.first() {
            Some(first) if first.version != 1 => Err(CatalogError::NotFromOne {
                dir: dir.to_owned(),
                first: first.version,
                path: first.path.clone(),
            }),
            _ => Ok(catalog),
        }
    }

    /// The given files, each named `<anything>.v<N>.avsc`, in version order; they must number
    /// without gaps but may start anywhere (e.g. checking v3 against a proposed v4).
    ///
    /// # Errors
    /// Any [`CatalogError`].
    pub fn load_files(paths: &[PathBuf]) -> Result<Self, CatalogError> {
        let mut found = Vec::with_capacity(paths.len());
        for path in paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // The stem is whatever precedes `.v<N>.avsc`.
            let stem = name
                .rsplit_once(".v")
                .map(|(stem, _)| stem)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| CatalogError::Name {
                    path: path.clone(),
                    stem: "<name>".to_owned(),
                })?;
            let version = version_of(path, stem)?.ok_or_else(|| CatalogError::Name {
                path: path.clone(),
                stem: stem.to_owned(),
            })?;
            found.push((version, path.clone()));
        }
        Self::from_numbered(found, None)
    }

    /// The versions embedded in this binary (what its codec resolves against).
    pub fn embedded() -> Self {
        let versions = crate::versions::versions()
            .iter()
            .zip(crate::versions::parsed_versions())
            .map(|(v, schema)| VersionFile {
                version: v.version,
                path: PathBuf::from(v.path),
                text: v.text.to_owned(),
                schema: schema.clone(),
            })
            .collect();
        Catalog { versions }
    }

    fn from_numbered(
        mut found: Vec<(u32, PathBuf)>,
        dir: Option<(&Path, &str)>,
    ) -> Result<Self, CatalogError> {
        found.sort();
        if let Some((dir, stem)) = dir
            && found.is_empty()
        {
            return Err(CatalogError::Empty {
                dir: dir.to_owned(),
                stem: stem.to_owned(),
            });
        }
        for pair in found.windows(2) {
            let ((a, pa), (b, pb)) = (&pair[0], &pair[1]);
            if a == b {
                return Err(CatalogError::Duplicate {
                    version: *a,
                    first: pa.clone(),
                    second: pb.clone(),
                });
            }
            if *b != a + 1 {
                return Err(CatalogError::Gap {
                    missing: a + 1,
                    before: *a,
                    before_path: pa.clone(),
                    after: *b,
                    after_path: pb.clone(),
                });
            }
        }
        let versions = found
            .iter()
            .map(|(v, p)| read(p, *v))
            .collect::<Result<_, _>>()?;
        Ok(Catalog { versions })
    }

    /// Adds `path` as the next version (a proposed schema not yet under `schemas/`). A file
    /// named `*.v<N>.avsc` must be numbered as the next version; any other name takes it.
    /// A path already in the catalog is not added twice.
    ///
    /// # Errors
    /// [`CatalogError::Gap`] / [`CatalogError::Duplicate`] for a wrong number, or a read or
    /// parse error.
    pub fn with_candidate(mut self, path: &Path) -> Result<Self, CatalogError> {
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if self.versions.iter().any(|v| same(&v.path, path)) {
            return Ok(self);
        }
        let next = self.versions.last().map_or(1, |v| v.version + 1);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let numbered = name
            .rsplit_once(".v")
            .and_then(|(stem, _)| version_of(path, stem).ok().flatten());
        if let (Some(n), Some(last)) = (numbered, self.versions.last()) {
            if n <= last.version {
                let first = self
                    .versions
                    .iter()
                    .find(|v| v.version == n)
                    .map_or_else(|| last.path.clone(), |v| v.path.clone());
                return Err(CatalogError::Duplicate {
                    version: n,
                    first,
                    second: path.to_owned(),
                });
            }
            if n != next {
                return Err(CatalogError::Gap {
                    missing: next,
                    before: last.version,
                    before_path: last.path.clone(),
                    after: n,
                    after_path: path.to_owned(),
                });
            }
        }
        self.versions.push(read(path, next)?);
        Ok(self)
    }

    /// The versions, oldest first.
    pub fn versions(&self) -> &[VersionFile] {
        &self.versions
    }

    /// The newest version, if any.
    pub fn latest(&self) -> Option<&VersionFile> {
        self.versions.last()
    }

    /// The version numbered `n`.
    pub fn get(&self, n: u32) -> Option<&VersionFile> {
        self.versions.iter().find(|v| v.version == n)
    }

    /// Checks the versions under `mode`, as a registry would when each was registered in turn.
    pub fn report(&self, mode: Mode) -> CompatReport {
        let schemas: Vec<Schema> = self.versions.iter().map(|v| v.schema.clone()).collect();
        let labels: Vec<u32> = self.versions.iter().map(|v| v.version).collect();
        report(&schemas, &labels, mode)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn version_names() {
        let v = |s: &str| version_of(Path::new(s), "order_event");
        assert_eq!(v("schemas/order_event.v12.avsc").unwrap(), Some(12));
        assert_eq!(v("schemas/customer.v1.avsc").unwrap(), None);
        assert_eq!(v("order_eventually.v1.avsc").unwrap(), None);
        for bad in [
            "order_event.avsc",
            "order_event.v04.avsc",
            "order_event.v4-draft.avsc",
            "order_event.v.avsc",
            "order_event.v4.json",
        ] {
            assert!(
                matches!(v(bad), Err(CatalogError::Name { .. })),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn embedded_is_dense_from_one() {
        let c = Catalog::embedded();
        for (i, v) in c.versions().iter().enumerate() {
            assert_eq!(v.version as usize, i + 1);
        }
    }
}
