//! The cluster spec `kubeforge.dev/v1alpha1` `Cluster`: its serde types, the hardened YAML
//! parse (size, depth, alias and event budgets; duplicate keys and unknown fields refused) and
//! the entry points that turn file bytes into a validated [`Cluster`] or every problem found.
//! Pure: callers read the file and hand over its bytes.

pub mod diagnostics;
pub mod types;
pub mod yaml;

use serde_saphyr::Spanned;

pub use diagnostics::{Diagnostics, Position, Problem};
pub use types::ClusterSpec;
pub use yaml::{MAX_SPEC_BYTES, Node};

use crate::model::Cluster;

/// A parsed spec. The span-carrying node tree that locates paths is built only when a problem
/// needs a position, so a valid spec is parsed once.
pub struct Parsed<'a> {
    pub spec: ClusterSpec,
    source: &'a str,
    tree: std::cell::OnceCell<Option<Spanned<Node>>>,
}

impl Parsed<'_> {
    /// Where `path` (e.g. `spec.hosts[2].address`) is written.
    pub fn locate(&self, path: &str) -> Position {
        let tree = self.tree.get_or_init(|| yaml::parse_tree(self.source).ok());
        tree.as_ref().map_or(Position::START, |t| yaml::locate(t, path))
    }
}

/// Parses and validates spec text. `origin` names the file in messages.
pub fn load_str(source: &str, origin: &str) -> Result<Cluster, Diagnostics> {
    let parsed = parse(source, origin)?;
    let locate = |path: &str| parsed.locate(path);
    crate::validate::validate(&parsed.spec, &locate)
        .map_err(|problems| Diagnostics::new(origin, source, problems))
}

/// Like [`load_str`] for raw file bytes: checks size and encoding first.
pub fn load_bytes(bytes: &[u8], origin: &str) -> Result<Cluster, Diagnostics> {
    let source = decode(bytes, origin)?;
    load_str(source, origin)
}

/// Checks size and encoding; the text without a UTF-8 byte-order mark.
pub fn decode<'a>(bytes: &'a [u8], origin: &str) -> Result<&'a str, Diagnostics> {
    let refuse = |position: Position, message: String, help: &str| {
        Diagnostics::single(origin, Problem::new("", position, message, help))
    };
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(refuse(
            Position::START,
            format!(
                "the file is {} bytes, more than the {} bytes a cluster spec may have",
                bytes.len(),
                MAX_SPEC_BYTES
            ),
            "check that this is the cluster spec; even 50,000 hosts fit in a few MiB",
        ));
    }
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(refuse(
            Position::START,
            "the file is UTF-16 encoded".into(),
            "save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)",
        ));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let good = e.valid_up_to();
            // The text before the bad byte is valid, so positions there are exact.
            let prefix = std::str::from_utf8(&bytes[..good]).unwrap_or("");
            let position = Position::of_offset(prefix, good, 0);
            let bad = bytes.get(good).copied().unwrap_or(0);
            let message = format!(
                "the file is not valid UTF-8: byte 0x{bad:02X} at line {} column {} (byte offset {good})",
                position.line, position.column
            );
            let help = "save the file as UTF-8 (e.g. `iconv -f LATIN1 -t UTF-8`); YAML specs must be UTF-8";
            // The valid text before the bad byte is the snippet; the label sits at its end.
            Err(Diagnostics::new(origin, prefix, vec![Problem::new("", position, message, help)]))
        }
    }
}

/// Parses spec text into its serde types. When that fails, the text is parsed again into a
/// node tree so that every structural problem (unknown fields, wrong types, missing fields) is
/// reported at once, each with its path, rather than only the first one serde met.
pub fn parse<'a>(source: &'a str, origin: &str) -> Result<Parsed<'a>, Diagnostics> {
    if source.len() > MAX_SPEC_BYTES {
        return Err(decode(source.as_bytes(), origin)
            .err()
            .unwrap_or_else(|| Diagnostics::new(origin, "", Vec::new())));
    }
    match serde_saphyr::from_str_with_options::<ClusterSpec>(source, yaml::options()) {
        Ok(spec) => Ok(Parsed { spec, source, tree: std::cell::OnceCell::new() }),
        Err(e) => Err(Diagnostics::new(origin, source, diagnose(source, &e))),
    }
}

/// Every problem behind a failed typed parse.
fn diagnose(source: &str, typed: &serde_saphyr::Error) -> Vec<Problem> {
    let tree = match yaml::parse_tree(source) {
        Ok(tree) => tree,
        Err(e) => return vec![yaml::problem_from_error(&e, source, None)],
    };
    if let Some(problem) = document_shape(&tree) {
        return vec![problem];
    }
    let mut structural = structure::check(&tree);
    if !structural.is_empty() {
        structural.extend(semantic_despite_structure(&tree, &structural));
        return structural;
    }
    vec![yaml::problem_from_error(typed, source, Some(&tree))]
}

/// The semantic problems of a spec that also has structural ones, so that one run reports
/// both (a wrong enum value and an overlapping subnet, say). The values the structural problems
/// name are left out and the rest is typed and validated; nothing is added when the rest
/// cannot be typed (a required part was wrong), and no semantic problem is reported inside a
/// part that was left out.
fn semantic_despite_structure(tree: &Spanned<Node>, structural: &[Problem]) -> Vec<Problem> {
    let pruned: Vec<&str> =
        structural.iter().map(|p| p.path.as_str()).filter(|p| !p.is_empty()).collect();
    if pruned.len() != structural.len() {
        return Vec::new(); // a problem with the document itself: nothing else is meaningful
    }
    let Some(value) = to_json(tree, "", &pruned) else { return Vec::new() };
    let Ok(spec) = serde_json::from_value::<ClusterSpec>(value) else { return Vec::new() };
    let locate = |path: &str| yaml::locate(tree, path);
    let Err(problems) = crate::validate::validate(&spec, &locate) else { return Vec::new() };
    let inside = |path: &str, part: &str| {
        path == part
            || path.starts_with(&format!("{part}."))
            || path.starts_with(&format!("{part}["))
    };
    problems
        .into_iter()
        .filter(|p| !pruned.iter().any(|part| inside(&p.path, part) || inside(part, &p.path)))
        .collect()
}

/// The node tree as JSON for serde, without the values at `pruned` paths (`spec.pki.x`,
/// `spec.hosts[2].roles[0]`). `None` for a number JSON cannot hold.
fn to_json(node: &Spanned<Node>, path: &str, pruned: &[&str]) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match &node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
            (Ok(v), _) => Value::from(v),
            (_, Ok(v)) => Value::from(v),
            _ => return None,
        },
        Node::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number)?,
        Node::Str(s) => Value::String(s.clone()),
        Node::Seq(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if !pruned.contains(&item_path.as_str()) {
                    out.push(to_json(item, &item_path, pruned)?);
                }
            }
            Value::Array(out)
        }
        Node::Map(entries) => {
            let mut out = serde_json::Map::new();
            for (key, value) in entries {
                let key_path = if path.is_empty() {
                    key.value.clone()
                } else {
                    format!("{path}.{}", key.value)
                };
                if !pruned.contains(&key_path.as_str()) {
                    out.insert(key.value.clone(), to_json(value, &key_path, pruned)?);
                }
            }
            Value::Object(out)
        }
    })
}

mod structure;

/// An empty file or a top level that is not a mapping.
fn document_shape(tree: &Spanned<Node>) -> Option<Problem> {
    let position = yaml::position(&tree.referenced);
    match &tree.value {
        Node::Null => Some(Problem::new(
            "",
            Position::START,
            "the file is empty",
            "write a cluster spec; `kubeforge init` writes a commented example",
        )),
        Node::Map(_) => None,
        other => Some(Problem::new(
            "",
            position,
            format!("the document is {}, not a mapping", other.kind()),
            "a cluster spec is a mapping with apiVersion, kind, metadata and spec; `kubeforge init` writes an example",
        )),
    }
}

/// The JSON Schema of the spec, as `kubeforge schema` prints it.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ClusterSpec);
    serde_json::to_value(&schema).unwrap_or(serde_json::Value::Null)
}
