//! What changed between two versions of a schema, field by field (`orderstream schemas diff`).
//! Pure: a reviewer's summary, not a verdict (that is [`crate::compat`]).

use std::collections::HashMap;
use std::fmt;

use apache_avro::Schema;

use crate::explain::{kind_name, names_of};

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A field only the new version has.
    FieldAdded {
        /// Field path, e.g. `OrderEvent.channel`.
        path: String,
        /// Its type.
        ty: String,
        /// Its default as JSON, if any.
        default: Option<String>,
    },
    /// A field only the old version has.
    FieldRemoved {
        /// Field path.
        path: String,
        /// Whether it had a default (old readers need one to read new data).
        had_default: bool,
    },
    /// A field (or array item, map value) whose type changed.
    TypeChanged {
        /// Path.
        path: String,
        /// Old type.
        from: String,
        /// New type.
        to: String,
    },
    /// A field whose default changed, appeared or disappeared.
    DefaultChanged {
        /// Field path.
        path: String,
        /// Old default as JSON.
        from: Option<String>,
        /// New default as JSON.
        to: Option<String>,
    },
    /// Enum symbols added or removed, or the enum default changed.
    EnumChanged {
        /// Path of the field holding the enum.
        path: String,
        /// Symbols only the new version has.
        added: Vec<String>,
        /// Symbols only the old version has.
        removed: Vec<String>,
        /// The enum default, old and new, when it changed.
        default: Option<(Option<String>, Option<String>)>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |d: &Option<String>| d.clone().unwrap_or_else(|| "(none)".to_owned());
        match self {
            Change::FieldAdded { path, ty, default } => {
                write!(f, "+ {path}: {ty}, default {}", opt(default))
            }
            Change::FieldRemoved { path, had_default } => write!(
                f,
                "- {path} ({})",
                if *had_default {
                    "had a default"
                } else {
                    "had no default"
                }
            ),
            Change::TypeChanged { path, from, to } => write!(f, "~ {path}: {from} -> {to}"),
            Change::DefaultChanged { path, from, to } => {
                write!(f, "~ {path}: default {} -> {}", opt(from), opt(to))
            }
            Change::EnumChanged {
                path,
                added,
                removed,
                default,
            } => {
                write!(f, "~ {path}: enum")?;
                if !added.is_empty() {
                    write!(f, " +[{}]", added.join(", "))?;
                }
                if !removed.is_empty() {
                    write!(f, " -[{}]", removed.join(", "))?;
                }
                if let Some((a, b)) = default {
                    write!(f, " default {} -> {}", opt(a), opt(b))?;
                }
                Ok(())
            }
        }
    }
}

/// The changes from `old` to `new`, in field order.
pub fn diff(old: &Schema, new: &Schema) -> Vec<Change> {
    let mut d = Diff {
        old_names: names_of(old),
        new_names: names_of(new),
        out: Vec::new(),
        depth: 0,
    };
    let root = match new {
        Schema::Record(r) => r.name.name().to_owned(),
        _ => "(root)".to_owned(),
    };
    d.pair(old, new, &root);
    d.out
}

struct Diff<'a> {
    old_names: HashMap<String, &'a Schema>,
    new_names: HashMap<String, &'a Schema>,
    out: Vec<Change>,
    /// Recursive types: stop descending after a generous depth.
    depth: usize,
}

impl<'a> Diff<'a> {
    fn deref(names: &HashMap<String, &'a Schema>, s: &'a Schema) -> &'a Schema {
        match s {
            Schema::Ref { name } => names.get(&name.to_string()).copied().unwrap_or(s),
            _ => s,
        }
    }

    fn pair(&mut self, old: &'a Schema, new: &'a Schema, path: &str) {
        if self.depth > 32 {
            return;
        }
        self.depth += 1;
        let (o, n) = (
            Self::deref(&self.old_names, old),
            Self::deref(&self.new_names, new),
        );
        match (o, n) {
            (Schema::Record(or), Schema::Record(nr)) => {
                for nf in &nr.fields {
                    let fp = format!("{path}.{}", nf.name);
                    match or.fields.iter().find(|of| of.name == nf.name) {
                        Some(of) => {
                            let (a, b) = (
                                of.default.as_ref().map(ToString::to_string),
                                nf.default.as_ref().map(ToString::to_string),
                            );
                            if a != b {
                                self.out.push(Change::DefaultChanged {
                                    path: fp.clone(),
                                    from: a,
                                    to: b,
                                });
                            }
                            self.pair(&of.schema, &nf.schema, &fp);
                        }
                        None => self.out.push(Change::FieldAdded {
                            path: fp,
                            ty: kind_name(&nf.schema),
                            default: nf.default.as_ref().map(ToString::to_string),
                        }),
                    }
                }
                for of in or
                    .fields
                    .iter()
                    .filter(|of| !nr.fields.iter().any(|nf| nf.name == of.name))
                {
                    self.out.push(Change::FieldRemoved {
                        path: format!("{path}.{}", of.name),
                        had_default: of.default.is_some(),
                    });
                }
            }
            (Schema::Enum(oe), Schema::Enum(ne)) => {
                let added: Vec<String> = ne
                    .symbols
                    .iter()
                    .filter(|s| !oe.symbols.contains(s))
                    .cloned()
                    .collect();
                let removed: Vec<String> = oe
                    .symbols
                    .iter()
                    .filter(|s| !ne.symbols.contains(s))
                    .cloned()
                    .collect();
                let default =
                    (oe.default != ne.default).then(|| (oe.default.clone(), ne.default.clone()));
                if !added.is_empty() || !removed.is_empty() || default.is_some() {
                    self.out.push(Change::EnumChanged {
                        path: path.to_owned(),
                        added,
                        removed,
                        default,
                    });
                }
            }
            (Schema::Array(oa), Schema::Array(na)) => {
                self.pair(&oa.items, &na.items, &format!("{path}[]"));
            }
            (Schema::Map(om), Schema::Map(nm)) => {
                self.pair(&om.types, &nm.types, &format!("{path}{{}}"));
            }
            _ => {
                let (a, b) = (kind_name(o), kind_name(n));
                if a != b {
                    self.out.push(Change::TypeChanged {
                        path: path.to_owned(),
                        from: a,
                        to: b,
                    });
                }
            }
        }
        self.depth -= 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn v2_to_v3_adds_channel() {
        let v = crate::versions::parsed_versions();
        let changes = diff(&v[1], &v[2]);
        assert_eq!(
            changes,
            vec![Change::FieldAdded {
                path: "OrderEvent.channel".into(),
                ty: "union [null, string]".into(),
                default: Some("null".into()),
            }]
        );
        assert!(diff(&v[2], &v[2]).is_empty());
    }

    #[test]
    fn type_enum_and_removal() {
        let p = |s: &str| Schema::parse_str(s).unwrap();
        let old = p(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":"int"},{"name":"e","type":{"type":"enum","name":"E","symbols":["X","Y"]}}]}"#,
        );
        let new = p(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"e","type":{"type":"enum","name":"E","symbols":["X","Z"],"default":"X"}}]}"#,
        );
        let got: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "~ R.a: long -> string",
                "~ R.e: enum +[Z] -[Y] default (none) -> X",
                "- R.b (had no default)",
            ]
        );
    }
}
