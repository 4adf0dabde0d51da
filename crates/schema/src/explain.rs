//! Why a writer schema cannot be read with a reader schema: each breach of Avro's resolution
//! rules, with the path of the field it concerns and the rule it breaks.
//!
//! apache-avro's [`SchemaCompatibility`](apache_avro::schema_compatibility::SchemaCompatibility)
//! stays the judge of *whether* two schemas are compatible; its errors name at most the
//! top-level field, and a `Partial` verdict (an enum symbol or union branch the reader lacks)
//! names nothing. A schema author needs the field and the rule, so this walk re-derives them.
//! It is pure (no I/O) and follows the specification's resolution rules: names must match (or
//! the reader aliases the writer's name), primitive types match or promote
//! (int → long → float → double, string ↔ bytes), logical types resolve as their underlying
//! type, reader fields absent from the writer need a default, writer enum symbols unknown to
//! the reader need a reader enum default, writer union branches need a reader branch.

use std::collections::{HashMap, HashSet};
use std::fmt;

use apache_avro::Schema;
use apache_avro::schema::{Alias, Name};

/// The resolution rule a [`Finding`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A reader field the writer lacks has no default.
    MissingDefault,
    /// The writer's type neither matches nor promotes to the reader's.
    TypeMismatch,
    /// A writer enum symbol the reader lacks, and the reader enum has no default.
    EnumSymbol,
    /// A writer union branch (or non-union writer type) matches no reader branch.
    UnionBranch,
    /// A named type (record, enum, fixed) renamed without an alias.
    NameMismatch,
    /// Fixed types of different sizes.
    FixedSize,
}

impl Rule {
    /// Short identifier, e.g. `missing-default`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::MissingDefault => "missing-default",
            Rule::TypeMismatch => "type-mismatch",
            Rule::EnumSymbol => "enum-symbol",
            Rule::UnionBranch => "union-branch",
            Rule::NameMismatch => "name-mismatch",
            Rule::FixedSize => "fixed-size",
        }
    }

    /// The rule in words.
    pub fn explain(self) -> &'static str {
        match self {
            Rule::MissingDefault => "a reader field the writer lacks must have a default",
            Rule::TypeMismatch => {
                "types must match or promote (int→long→float→double, string↔bytes)"
            }
            Rule::EnumSymbol => {
                "every writer enum symbol must be a reader symbol, unless the reader enum has a default"
            }
            Rule::UnionBranch => "every writer union branch must match a reader branch",
            Rule::NameMismatch => {
                "named types must keep their name (or the reader must alias the old name)"
            }
            Rule::FixedSize => "fixed types must keep their size",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One breach of the resolution rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where: the record's name and the field path, e.g. `OrderEvent.items[].quantity`.
    pub path: String,
    /// Which rule.
    pub rule: Rule,
    /// What exactly, e.g. `writer long cannot be read as string`.
    pub detail: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "field {}: {} [rule {}: {}]",
            self.path,
            self.detail,
            self.rule,
            self.rule.explain()
        )
    }
}

/// Every breach found when `reader` reads data written with `writer`; empty when none.
pub fn explain(writer: &Schema, reader: &Schema) -> Vec<Finding> {
    let mut walk = Walk {
        writer_names: names_of(writer),
        reader_names: names_of(reader),
        visiting: HashSet::new(),
        out: Vec::new(),
    };
    let root = match reader {
        Schema::Record(r) => r.name.name().to_owned(),
        _ => "(root)".to_owned(),
    };
    walk.pair(writer, reader, &root);
    walk.out
}

/// Named types of a schema by full name, so `Ref`s can be followed.
pub(crate) fn names_of(schema: &Schema) -> HashMap<String, &Schema> {
    fn visit<'a>(s: &'a Schema, out: &mut HashMap<String, &'a Schema>) {
        match s {
            Schema::Record(r) if out.insert(r.name.to_string(), s).is_none() => {
                for f in &r.fields {
                    visit(&f.schema, out);
                }
            }
            Schema::Enum(e) => {
                out.insert(e.name.to_string(), s);
            }
            Schema::Fixed(x) | Schema::Duration(x) => {
                out.insert(x.name.to_string(), s);
            }
            Schema::Array(a) => visit(&a.items, out),
            Schema::Map(m) => visit(&m.types, out),
            Schema::Union(u) => u.variants().iter().for_each(|v| visit(v, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    visit(schema, &mut out);
    out
}

/// The underlying Avro type a logical type resolves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
}

fn kind(s: &Schema) -> Kind {
    use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
    match s {
        Schema::Null => Kind::Null,
        Schema::Boolean => Kind::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Kind::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Kind::Long,
        Schema::Float => Kind::Float,
        Schema::Double => Kind::Double,
        Schema::Bytes | Schema::BigDecimal => Kind::Bytes,
        Schema::Decimal(d) => match d.inner {
            InnerDecimalSchema::Bytes => Kind::Bytes,
            InnerDecimalSchema::Fixed(_) => Kind::Fixed,
        },
        Schema::String => Kind::String,
        Schema::Uuid(UuidSchema::Fixed(_)) => Kind::Fixed,
        Schema::Uuid(UuidSchema::Bytes) => Kind::Bytes,
        Schema::Uuid(UuidSchema::String) => Kind::String,
        Schema::Array(_) => Kind::Array,
        Schema::Map(_) => Kind::Map,
        Schema::Union(_) => Kind::Union,
        Schema::Record(_) => Kind::Record,
        Schema::Enum(_) => Kind::Enum,
        Schema::Fixed(_) | Schema::Duration(_) => Kind::Fixed,
        // Refs are followed before `kind` is asked.
        Schema::Ref { .. } => Kind::Record,
    }
}

pub(crate) fn kind_name(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("record {}", r.name.name()),
        Schema::Enum(e) => format!("enum {}", e.name.name()),
        Schema::Fixed(x) | Schema::Duration(x) => format!("fixed {}", x.name.name()),
        Schema::Union(u) => format!(
            "union [{}]",
            u.variants()
                .iter()
                .map(kind_name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Schema::Array(_) => "array".to_owned(),
        Schema::Map(_) => "map".to_owned(),
        Schema::Ref { name } => name.name().to_owned(),
        other => format!("{:?}", kind(other)).to_ascii_lowercase(),
    }
}

fn promotes(w: Kind, r: Kind) -> bool {
    use Kind as K;
    w == r
        || matches!(
            (w, r),
            (K::Int, K::Long | K::Float | K::Double)
                | (K::Long, K::Float | K::Double)
                | (K::Float, K::Double)
                | (K::String, K::Bytes)
                | (K::Bytes, K::String)
        )
}

fn aliased(name: &Name, aliases: Option<&Vec<Alias>>, writer: &Name) -> bool {
    name.name() == writer.name()
        || aliases.is_some_and(|a| a.iter().any(|al| al.name() == writer.name()))
}

struct Walk<'a> {
    writer_names: HashMap<String, &'a Schema>,
    reader_names: HashMap<String, &'a Schema>,
    /// (writer, reader) named-type pairs on the current path: recursive types end the walk.
    visiting: HashSet<(String, String)>,
    out: Vec<Finding>,
}

impl<'a> Walk<'a> {
    fn push(&mut self, path: &str, rule: Rule, detail: String) {
        self.out.push(Finding {
            path: path.to_owned(),
            rule,
            detail,
        });
    }

    fn deref(&self, s: &'a Schema, writer: bool) -> &'a Schema {
        match s {
            Schema::Ref { name } => {
                let names = if writer {
                    &self.writer_names
                } else {
                    &self.reader_names
                };
                names.get(&name.to_string()).copied().unwrap_or(s)
            }
            _ => s,
        }
    }

    /// Whether `w` would be resolved against `r` at all (the branch a union reader picks).
    fn could_match(&self, w: &'a Schema, r: &'a Schema) -> bool {
        let (w, r) = (self.deref(w, true), self.deref(r, false));
        match (w, r) {
            (Schema::Record(a), Schema::Record(b)) => aliased(&b.name, b.aliases.as_ref(), &a.name),
            (Schema::Enum(a), Schema::Enum(b)) => aliased(&b.name, b.aliases.as_ref(), &a.name),
            (Schema::Fixed(a), Schema::Fixed(b)) => aliased(&b.name, b.aliases.as_ref(), &a.name),
            _ => promotes(kind(w), kind(r)),
        }
    }

    fn pair(&mut self, w: &'a Schema, r: &'a Schema, path: &str) {
        let (w, r) = (self.deref(w, true), self.deref(r, false));
        match (w, r) {
            (Schema::Union(wu), Schema::Union(_)) => {
                for branch in wu.variants() {
                    self.union_reader(branch, r, path);
                }
            }
            (Schema::Union(wu), _) => {
                for branch in wu.variants() {
                    if self.could_match(branch, r) {
                        self.pair(branch, r, path);
                    } else {
                        self.push(
                            path,
                            Rule::UnionBranch,
                            format!(
                                "writer union branch {} cannot be read as {}",
                                kind_name(branch),
                                kind_name(r)
                            ),
                        );
                    }
                }
            }
            (_, Schema::Union(_)) => self.union_reader(w, r, path),
            (Schema::Record(wr), Schema::Record(rr)) => {
                if !aliased(&rr.name, rr.aliases.as_ref(), &wr.name) {
                    self.push(
                        path,
                        Rule::NameMismatch,
                        format!(
                            "record {} renamed to {} without an alias",
                            wr.name.name(),
                            rr.name.name()
                        ),
                    );
                    return;
                }
                let key = (wr.name.to_string(), rr.name.to_string());
                if !self.visiting.insert(key.clone()) {
                    return;
                }
                for rf in &rr.fields {
                    let field_path = format!("{path}.{}", rf.name);
                    let wf = wr
                        .fields
                        .iter()
                        .find(|wf| wf.name == rf.name || rf.aliases.contains(&wf.name));
                    match wf {
                        Some(wf) => self.pair(&wf.schema, &rf.schema, &field_path),
                        None if rf.default.is_none() => self.push(
                            &field_path,
                            Rule::MissingDefault,
                            format!(
                                "the writer has no field {} and the reader's has no default",
                                rf.name
                            ),
                        ),
                        None => {}
                    }
                }
                self.visiting.remove(&key);
            }
            (Schema::Enum(we), Schema::Enum(re)) => {
                if !aliased(&re.name, re.aliases.as_ref(), &we.name) {
                    self.push(
                        path,
                        Rule::NameMismatch,
                        format!(
                            "enum {} renamed to {} without an alias",
                            we.name.name(),
                            re.name.name()
                        ),
                    );
                    return;
                }
                if re.default.is_none() {
                    for sym in we.symbols.iter().filter(|s| !re.symbols.contains(s)) {
                        self.push(
                            path,
                            Rule::EnumSymbol,
                            format!(
                                "writer symbol {sym} of enum {} is unknown to the reader, which has no enum default",
                                re.name.name()
                            ),
                        );
                    }
                }
            }
            (Schema::Fixed(wx), Schema::Fixed(rx)) => {
                if !aliased(&rx.name, rx.aliases.as_ref(), &wx.name) {
                    self.push(
                        path,
                        Rule::NameMismatch,
                        format!(
                            "fixed {} renamed to {} without an alias",
                            wx.name.name(),
                            rx.name.name()
                        ),
                    );
                } else if wx.size != rx.size {
                    self.push(
                        path,
                        Rule::FixedSize,
                        format!("size changed from {} to {}", wx.size, rx.size),
                    );
                }
            }
            (Schema::Array(wa), Schema::Array(ra)) => {
                self.pair(&wa.items, &ra.items, &format!("{path}[]"));
            }
            (Schema::Map(wm), Schema::Map(rm)) => {
                self.pair(&wm.types, &rm.types, &format!("{path}{{}}"));
            }
            _ => {
                if !promotes(kind(w), kind(r)) {
                    self.push(
                        path,
                        Rule::TypeMismatch,
                        format!("writer {} cannot be read as {}", kind_name(w), kind_name(r)),
                    );
                }
            }
        }
    }

    /// A (non-union) writer type, or each branch of a writer union, against a reader union.
    fn union_reader(&mut self, w: &'a Schema, r: &'a Schema, path: &str) {
        let Schema::Union(ru) = r else {
            return self.pair(w, r, path);
        };
        match ru.variants().iter().find(|b| self.could_match(w, b)) {
            Some(branch) => self.pair(w, branch, path),
            None => self.push(
                path,
                Rule::UnionBranch,
                format!(
                    "writer {} matches no branch of the reader {}",
                    kind_name(w),
                    kind_name(r)
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    fn one(w: &str, r: &str) -> Vec<Finding> {
        explain(&record(w), &record(r))
    }

    #[test]
    fn identical_and_promotions_are_clean() {
        let f = r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#;
        assert!(one(f, f).is_empty());
        assert!(
            one(
                r#"{"name":"a","type":"int"},{"name":"b","type":"string"}"#,
                r#"{"name":"a","type":"double"},{"name":"b","type":"bytes"}"#
            )
            .is_empty()
        );
    }

    #[test]
    fn names_the_field_and_rule() {
        let got = one(
            r#"{"name":"a","type":"long"}"#,
            r#"{"name":"a","type":"int"},{"name":"b","type":"int"}"#,
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].path.as_str(), got[0].rule),
            ("R.a", Rule::TypeMismatch)
        );
        assert_eq!(
            (got[1].path.as_str(), got[1].rule),
            ("R.b", Rule::MissingDefault)
        );
        assert!(
            got[0]
                .to_string()
                .contains("writer long cannot be read as int")
        );
    }

    #[test]
    fn nested_records_arrays_and_enums() {
        let w = r#"{"name":"items","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"q","type":"string"}]}}},
                   {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}"#;
        let r = r#"{"name":"items","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"q","type":"int"}]}}},
                   {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}}"#;
        let got = one(w, r);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].path, "R.items[].q");
        assert_eq!(got[1].rule, Rule::EnumSymbol);
        assert!(got[1].detail.contains("writer symbol C"));
        // With a reader enum default the unknown symbol resolves to it.
        let r_default = r#"{"name":"items","type":{"type":"array","items":{"type":"record","name":"L","fields":[{"name":"q","type":"string"}]}}},
                   {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}}"#;
        assert!(one(w, r_default).is_empty());
    }

    #[test]
    fn unions_and_renames() {
        let got = one(
            r#"{"name":"n","type":["null","string","long"]}"#,
            r#"{"name":"n","type":["null","string"]}"#,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].path.as_str(), got[0].rule),
            ("R.n", Rule::UnionBranch)
        );
        // A reader union reads a plain writer type through its matching branch.
        assert!(
            one(
                r#"{"name":"n","type":"string"}"#,
                r#"{"name":"n","type":["null","string"]}"#
            )
            .is_empty()
        );
        // Renamed field with the old name as an alias: resolvable.
        assert!(
            one(
                r#"{"name":"x","type":"int"}"#,
                r#"{"name":"y","type":"int","aliases":["x"]}"#
            )
            .is_empty()
        );
        let renamed = explain(
            &record(r#"{"name":"x","type":"int"}"#),
            &Schema::parse_str(
                r#"{"type":"record","name":"S","namespace":"t","fields":[{"name":"x","type":"int"}]}"#,
            )
            .unwrap(),
        );
        assert_eq!(renamed[0].rule, Rule::NameMismatch);
    }

    #[test]
    fn recursive_types_terminate() {
        let s = Schema::parse_str(
            r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap();
        assert!(explain(&s, &s).is_empty());
    }
}
