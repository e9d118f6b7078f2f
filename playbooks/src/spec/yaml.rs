//! The YAML layer: serde-saphyr options with budgets that bound hostile input, a span-carrying
//! node tree used to locate any YAML path in the file, and the translation of serde-saphyr
//! errors into [`Problem`]s. It knows nothing about what a cluster spec means.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::diagnostics::{Position, Problem};

/// Largest spec accepted, in bytes. A 50,000-host spec is about 5 MiB.
pub const MAX_SPEC_BYTES: usize = 32 * 1024 * 1024;
/// Deepest nesting of mappings and sequences; the schema itself needs 6.
pub const MAX_DEPTH: usize = 32;
/// Most aliases (`*name`) in one file.
pub const MAX_ALIASES: usize = 10_000;
/// Most events an alias may replay in total; stops "billion laughs" expansion.
pub const MAX_REPLAYED_EVENTS: usize = 200_000;

/// Parser options for cluster specs: duplicate keys are errors, YAML 1.1 booleans are
/// refused, and every budget is sized for a 50,000-host spec but not far beyond.
pub fn options() -> serde_saphyr::Options {
    let budget = serde_saphyr::budget! {
        max_reader_input_bytes: Some(MAX_SPEC_BYTES),
        flow_nesting_limit: MAX_DEPTH,
        max_events: 2_000_000,
        max_aliases: MAX_ALIASES,
        max_anchors: MAX_ALIASES,
        max_recorded_anchor_events: MAX_REPLAYED_EVENTS,
        max_recorded_anchor_bytes: 4 * 1024 * 1024,
        max_depth: MAX_DEPTH,
        max_inclusion_depth: 0,
        max_documents: 1,
        max_nodes: 1_000_000,
        max_total_scalar_bytes: MAX_SPEC_BYTES,
        max_merge_keys: 1_000,
    };
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    alias_limits.max_replay_stack_depth = MAX_DEPTH;
    alias_limits.max_alias_expansions_per_anchor = MAX_ALIASES;
    serde_saphyr::options! {
        budget: budget,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        alias_limits: alias_limits,
        strict_booleans: true,
        with_snippet: false,
    }
}

/// A YAML value with the position of every node, for locating paths and checking structure.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    /// How the node reads to a user, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (null)",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    pub fn get(&self, key: &str) -> Option<&Spanned<Node>> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
        Ok(Node::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<KeyText, Spanned<Node>>()? {
            entries.push((entry.0.0, entry.1));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key as text (numbers and booleans as written), with its position.
struct KeyText(Spanned<String>);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Spanned::<String>::deserialize(deserializer).map(KeyText)
    }
}

/// Converts a serde-saphyr location into ours.
pub fn position(location: &Location) -> Position {
    let span = location.span();
    Position {
        line: location.line().max(1),
        column: location.column().max(1),
        offset: span.byte_offset().unwrap_or(0) as usize,
        len: span.byte_len().unwrap_or(0) as usize,
    }
}

/// Parses `source` into a node tree, enforcing the budgets.
pub fn parse_tree(source: &str) -> Result<Spanned<Node>, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(source, options())
}

/// Like [`position`], computing the byte offset from line and column when the scanner did not
/// record it (its syntax errors carry only line and column).
pub fn position_in(source: &str, location: &Location) -> Position {
    let mut p = position(location);
    if location.span().byte_offset().is_none() {
        let line_start: usize = source
            .split_inclusive('\n')
            .take(p.line.saturating_sub(1) as usize)
            .map(str::len)
            .sum();
        let line = source.get(line_start..).unwrap_or("");
        let column: usize =
            line.chars().take(p.column.saturating_sub(1) as usize).map(char::len_utf8).sum();
        p.offset = (line_start + column).min(source.len());
        p.len = line.get(column..).and_then(|r| r.chars().next()).map_or(0, char::len_utf8);
        if p.len == 1 && source.as_bytes().get(p.offset) == Some(&b'\n') {
            p.len = 0;
        }
    }
    p
}

/// A serde-saphyr error as a problem; `tree` (when the syntax was fine) names the path.
pub fn problem_from_error(
    err: &serde_saphyr::Error,
    source: &str,
    tree: Option<&Spanned<Node>>,
) -> Problem {
    use serde_saphyr::MessageFormatter;
    let inner = err.without_snippet();
    let raw = serde_saphyr::UserMessageFormatter.format_message(inner).into_owned();
    let position = err.location().map(|l| position_in(source, &l)).unwrap_or(Position::START);
    let path = tree.map(|t| path_at(t, position.offset)).unwrap_or_default();
    let (message, help) = explain(&raw);
    Problem::new(path, position, message, help)
}

/// Rewrites the parser's wording into a message and a remedy a cluster operator can act on.
fn explain(raw: &str) -> (String, String) {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("duplicate mapping key") {
        let key = raw.split('`').nth(1).unwrap_or("");
        return (
            format!("the key `{key}` appears twice in the same mapping"),
            "remove one of them; YAML keeps only one value per key".into(),
        );
    }
    // Budget breaches read like "limits breached: Depth { depth: 33 }"; name the limit instead.
    let breach = lower.split("limits breached:").nth(1).unwrap_or("");
    let (message, help) = if breach.contains("document") {
        (
            "the file holds more than one YAML document".to_string(),
            "put exactly one cluster spec in the file (no `---` separated documents)",
        )
    } else if breach.contains("depth") || lower.contains("recursion") || lower.contains("nesting") {
        (
            format!("the YAML nests deeper than {MAX_DEPTH} levels"),
            "a cluster spec nests at most a few levels; check the indentation and brackets",
        )
    } else if breach.contains("alias") || breach.contains("anchor") || lower.contains("replay") {
        (
            "the YAML expands anchors and aliases (`&name`/`*name`) beyond kubeforge's limit"
                .to_string(),
            "a cluster spec needs few anchors and aliases; write the values out instead",
        )
    } else if !breach.is_empty() {
        (
            "the YAML has more nodes or text than a cluster spec may have".to_string(),
            "check that this is the cluster spec; even 50,000 hosts fit comfortably",
        )
    } else if lower.contains("tab") {
        (raw.to_string(), "indent with spaces; YAML does not allow tabs for indentation")
    } else if lower.contains("quoted") {
        (raw.to_string(), "a quote is not closed: end the quoted value on the same line")
    } else if lower.contains("end of input") || lower.contains("eof") {
        (raw.to_string(), "the file ends early: close the open quote, bracket or brace")
    } else {
        (raw.to_string(), "check the YAML syntax at this position (indentation, quotes, brackets)")
    };
    (message, help.to_string())
}

/// The YAML path of the innermost node that contains byte `offset` (`` when none).
pub fn path_at(tree: &Spanned<Node>, offset: usize) -> String {
    let mut path = String::new();
    let mut node = tree;
    'descend: loop {
        match &node.value {
            Node::Map(entries) => {
                // The last entry starting at or before the offset holds it.
                let hit = entries.iter().rev().find(|(k, _)| start(&k.referenced) <= offset);
                let Some((key, value)) = hit else { break };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key.value);
                if offset < start(&value.referenced) {
                    break;
                }
                node = value;
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    if start(&item.referenced) <= offset {
                        path.push_str(&format!("[{i}]"));
                        node = item;
                        continue 'descend;
                    }
                }
                break;
            }
            _ => break,
        }
    }
    path
}

fn start(location: &Location) -> usize {
    location.span().byte_offset().unwrap_or(0) as usize
}

/// Finds where `path` is written: the value for scalars, the key for mappings and lists, and
/// for a path that is absent, the key of its deepest present ancestor.
pub fn locate(tree: &Spanned<Node>, path: &str) -> Position {
    let mut best = position(&tree.referenced);
    let mut node = tree;
    for segment in segments(path) {
        let next = match (&node.value, segment) {
            (Node::Map(entries), Segment::Key(key)) => {
                entries.iter().find(|(k, _)| k.value == key).map(|(k, v)| (Some(k), v))
            }
            (Node::Seq(items), Segment::Index(i)) => items.get(i).map(|v| (None, v)),
            _ => None,
        };
        let Some((key, value)) = next else { return best };
        best = match (&value.value, key) {
            (Node::Map(_) | Node::Seq(_) | Node::Null, Some(k)) => position(&k.referenced),
            _ => position(&value.referenced),
        };
        node = value;
    }
    best
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').map(|(k, r)| (k, Some(r))).unwrap_or((part, None));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        if let Some(rest) = rest {
            for index in rest.split('[') {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    out.push(Segment::Index(i));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str =
        "a: 1\nspec:\n  hosts:\n    - name: x\n      address: 10.0.0.1\n    - name: y\n";

    #[test]
    fn locate_finds_values_keys_and_ancestors() {
        let tree = parse_tree(SRC).unwrap();
        let p = locate(&tree, "spec.hosts[0].address");
        assert_eq!((p.line, p.column), (5, 16));
        let p = locate(&tree, "spec.hosts");
        assert_eq!((p.line, p.column), (3, 3));
        let p = locate(&tree, "spec.hosts[1].address");
        assert_eq!((p.line, p.column), (6, 7));
        let p = locate(&tree, "spec.nothing.deeper");
        assert_eq!((p.line, p.column), (2, 1));
    }

    #[test]
    fn path_at_names_the_innermost_node() {
        let tree = parse_tree(SRC).unwrap();
        let offset = SRC.find("10.0.0.1").unwrap();
        assert_eq!(path_at(&tree, offset), "spec.hosts[0].address");
        let offset = SRC.find("name: y").unwrap();
        assert_eq!(path_at(&tree, offset), "spec.hosts[1].name");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_tree("a: 1\na: 2\n").unwrap_err();
        let p = problem_from_error(&err, "a: 1\na: 2\n", None);
        assert_eq!((p.line, p.column), (2, 1));
        assert!(p.message.contains("`a` appears twice"), "{}", p.message);
    }
}
