//! Structural checks of the node tree against the spec's JSON Schema (derived from the serde
//! types, so the two cannot drift) before the typed parse: every unknown field (with a "did you
//! mean" hint), wrong type, unknown enum value and missing required field is reported at once,
//! rather than only the first one serde would meet.

use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::diagnostics::{Position, Problem};
use super::yaml::{Node, position};
use crate::validate::values::{closest, shorten};

/// More structural problems than this are summarised; a file with thousands is the wrong file.
pub const MAX_PROBLEMS: usize = 100;

/// Every structural problem in `tree` (empty when it matches the schema).
pub fn check(tree: &Spanned<Node>) -> Vec<Problem> {
    let schema = super::json_schema();
    let empty = Map::new();
    let defs = schema.get("$defs").and_then(Value::as_object).unwrap_or(&empty);
    let mut walker = Walker { defs, problems: Vec::new(), suppressed: 0 };
    let anchor = position(&tree.referenced);
    walker.walk(&schema, tree, "", anchor, None);
    if walker.suppressed > 0 {
        let n = walker.suppressed;
        walker.problems.push(Problem::new(
            "",
            Position::START,
            format!("{n} more structural problems are not shown"),
            "fix the ones above first; is this the right file?",
        ));
    }
    walker.problems
}

struct Walker<'s> {
    defs: &'s Map<String, Value>,
    problems: Vec<Problem>,
    suppressed: usize,
}

impl<'s> Walker<'s> {
    fn report(&mut self, path: &str, at: Position, message: String, help: String) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.suppressed += 1;
        } else {
            self.problems.push(Problem::new(path, at, message, help));
        }
    }

    fn resolve(&self, mut schema: &'s Value) -> &'s Value {
        // Definitions never refer to themselves directly; the bound guards a malformed schema.
        for _ in 0..8 {
            let Some(r) = schema.get("$ref").and_then(Value::as_str) else { break };
            match r.strip_prefix("#/$defs/").and_then(|name| self.defs.get(name)) {
                Some(def) => schema = def,
                None => break,
            }
        }
        schema
    }

    /// `anchor` is where to point for this node (its key for collections); `key` is its name.
    fn walk(
        &mut self,
        schema: &'s Value,
        node: &Spanned<Node>,
        path: &str,
        anchor: Position,
        key: Option<&str>,
    ) {
        let schema = self.resolve(schema);
        let alternatives =
            schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array);
        if let Some(alts) = alternatives {
            let alts: Vec<&Value> = alts.iter().map(|a| self.resolve(a)).collect();
            if matches!(node.value, Node::Null) && alts.iter().any(|a| allows(a, "null")) {
                return;
            }
            let consts: Vec<&str> =
                alts.iter().filter_map(|a| a.get("const").and_then(Value::as_str)).collect();
            if !consts.is_empty() && consts.len() == alts.len() {
                self.enumeration(&consts, node, path, anchor);
                return;
            }
            if let Some(alt) = alts.iter().find(|a| !allows(a, "null") || a.get("type").is_none()) {
                self.walk(alt, node, path, anchor, key);
            }
            return;
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let values: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
            self.enumeration(&values, node, path, anchor);
            return;
        }
        let node_anchor = match node.value {
            Node::Map(_) | Node::Seq(_) => anchor,
            _ => position(&node.referenced),
        };
        let expected = types(schema);
        if matches!(node.value, Node::Null) && expected.contains(&"null") {
            return;
        }
        let fits = expected.is_empty()
            || expected.iter().any(|t| match (*t, &node.value) {
                ("object", Node::Map(_)) | ("array", Node::Seq(_)) => true,
                ("integer", Node::Int(_)) => true,
                ("number", Node::Int(_) | Node::Float(_)) => true,
                ("boolean", Node::Bool(_)) => true,
                // serde reads any scalar into a string field (`1.30` stays "1.30").
                ("string", Node::Str(_) | Node::Int(_) | Node::Float(_) | Node::Bool(_)) => true,
                _ => false,
            });
        if !fits {
            let want = expected.iter().find(|t| **t != "null").copied().unwrap_or("value");
            let name = key.unwrap_or("the document");
            self.report(
                path,
                node_anchor,
                format!("expected {}, found {}", describe(want), node.value.kind()),
                type_help(want, name, schema),
            );
            return;
        }
        match &node.value {
            Node::Map(entries) => self.object(schema, entries, path, anchor),
            Node::Seq(items) => {
                let item_schema = schema.get("items").unwrap_or(&Value::Null);
                if item_schema.is_null() {
                    return;
                }
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.walk(item_schema, item, &item_path, position(&item.referenced), key);
                }
            }
            Node::Int(n) => self.range(schema, *n, path, node_anchor),
            _ => {}
        }
    }

    fn object(
        &mut self,
        schema: &'s Value,
        entries: &[(Spanned<String>, Spanned<Node>)],
        path: &str,
        anchor: Position,
    ) {
        // Every object in the spec schema lists its properties; a free-form map would not.
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
        let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
        for (k, v) in entries {
            let child = join(&k.value);
            match properties.get(&k.value) {
                Some(prop) => self.walk(prop, v, &child, position(&k.referenced), Some(&k.value)),
                None => {
                    let names = properties.keys().map(String::as_str);
                    let help = match closest(&k.value, names) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => format!(
                            "fields allowed here: {}",
                            properties.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                    let message = format!("unknown field `{}`", shorten(&k.value));
                    self.report(&child, position(&k.referenced), message, help);
                }
            }
        }
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = required.as_str() else { continue };
            // A misspelt key already says "did you mean `name`?"; one report is enough.
            let misspelt = entries.iter().any(|(k, _)| {
                !properties.contains_key(&k.value) && closest(&k.value, [name]).is_some()
            });
            if !misspelt && !entries.iter().any(|(k, _)| k.value == name) {
                let help = match properties.get(name).and_then(|p| p.get("description")) {
                    Some(Value::String(d)) => format!("add `{name}:` ({})", first_sentence(d)),
                    _ => format!("add `{name}:`"),
                };
                let owner =
                    if path.is_empty() { "the document".to_string() } else { format!("`{path}`") };
                self.report(&join(name), anchor, format!("{owner} is missing `{name}`"), help);
            }
        }
    }

    fn enumeration(&mut self, values: &[&str], node: &Spanned<Node>, path: &str, anchor: Position) {
        let text = match &node.value {
            Node::Str(s) => s.clone(),
            Node::Int(n) => n.to_string(),
            Node::Float(f) => f.to_string(),
            Node::Bool(b) => b.to_string(),
            other => {
                self.report(
                    path,
                    anchor,
                    format!("expected one of {}, found {}", values.join(", "), other.kind()),
                    format!("write one of: {}", values.join(", ")),
                );
                return;
            }
        };
        if values.contains(&text.as_str()) {
            return;
        }
        let help = match closest(&text, values.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? (one of: {})", values.join(", ")),
            None => format!("write one of: {}", values.join(", ")),
        };
        let at = position(&node.referenced);
        self.report(path, at, format!("unknown value `{}`", shorten(&text)), help);
    }

    fn range(&mut self, schema: &Value, n: i128, path: &str, at: Position) {
        let min = schema.get("minimum").and_then(Value::as_i64).map(i128::from);
        let max = schema.get("maximum").and_then(Value::as_u64).map(i128::from);
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            let (lo, hi) = (min.unwrap_or(0), max.unwrap_or(i128::MAX));
            self.report(
                path,
                at,
                format!("{n} is out of range"),
                format!("use a number from {lo} to {hi}"),
            );
        }
    }
}

fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn allows(schema: &Value, ty: &str) -> bool {
    types(schema).contains(&ty)
}

fn describe(ty: &str) -> &'static str {
    match ty {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        _ => "a value",
    }
}

fn type_help(ty: &str, name: &str, schema: &Value) -> String {
    match ty {
        "object" => format!("write the fields of `{name}` on the lines below it, indented"),
        "array" => format!("write `{name}` as a list: `[a, b]`, or one `- item` per line below it"),
        "integer" => match schema.get("maximum").and_then(Value::as_u64) {
            Some(max) => format!("write a whole number from 0 to {max}, without quotes"),
            None => "write a whole number without quotes".into(),
        },
        "string" => format!("write `{name}` as a single value, e.g. `{name}: value`"),
        _ => format!("write a value for `{name}`"),
    }
}

fn first_sentence(text: &str) -> String {
    let line = text.replace('\n', " ");
    let end = line.find(". ").map(|i| i + 1).unwrap_or(line.len());
    line[..end].trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::parse_tree;

    fn problems(src: &str) -> Vec<(String, u64, u64, String, String)> {
        let tree = parse_tree(src).unwrap();
        check(&tree).into_iter().map(|p| (p.path, p.line, p.column, p.message, p.help)).collect()
    }

    const HEAD: &str = "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nmetadata: {name: a}\n";

    #[test]
    fn reports_every_unknown_field_with_hints() {
        let src = format!(
            "{HEAD}spec:\n  kubernetesVersion: v1.33.1\n  hosts:\n    - name: a\n      adress: 10.0.0.1\n      roles: [control-plane]\n  netwrok: {{}}\n"
        );
        let p = problems(&src);
        // The missing `address` is not reported twice: the hint on `adress` covers it.
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].0, "spec.hosts[0].adress");
        assert_eq!((p[0].1, p[0].2), (8, 7));
        assert_eq!(p[0].4, "did you mean `address`?");
        assert_eq!(p[1].0, "spec.netwrok");
        assert_eq!(p[1].4, "did you mean `network`?");
        let missing = problems(&format!("{HEAD}spec:\n  hosts: []\n"));
        assert_eq!(missing[0].0, "spec.kubernetesVersion");
        assert!(missing[0].3.contains("`spec` is missing `kubernetesVersion`"), "{missing:?}");
    }

    #[test]
    fn reports_wrong_types_enums_and_ranges() {
        let src = format!(
            "{HEAD}spec:\n  kubernetesVersion: v1.33.1\n  ssh: {{port: 70000, hostKeyPolicy: acept-new}}\n  etcd: {{topology: [x]}}\n  hosts: {{name: a}}\n"
        );
        let p = problems(&src);
        let paths: Vec<&str> = p.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            paths,
            ["spec.ssh.port", "spec.ssh.hostKeyPolicy", "spec.etcd.topology", "spec.hosts"],
            "{p:?}"
        );
        assert!(p[0].3.contains("70000 is out of range"));
        assert!(p[1].4.starts_with("did you mean `accept-new`?"));
        assert!(p[2].3.contains("found a list"));
        assert!(p[3].3.contains("expected a list, found a mapping"));
    }

    #[test]
    fn a_valid_document_has_no_structural_problems() {
        let src = format!(
            "{HEAD}spec:\n  kubernetesVersion: v1.33.1\n  network: ~\n  hosts:\n    - {{name: a, address: 10.0.0.1, roles: [control-plane], ssh: {{port: 22}}}}\n"
        );
        assert_eq!(problems(&src), vec![]);
    }

    #[test]
    fn problems_are_capped() {
        let mut src = format!("{HEAD}spec:\n  kubernetesVersion: v1.33.1\n  hosts:\n");
        for i in 0..300 {
            src.push_str(&format!(
                "    - {{name: h{i}, address: 10.0.0.1, roles: [control-plane], x: 1}}\n"
            ));
        }
        let p = problems(&src);
        assert_eq!(p.len(), MAX_PROBLEMS + 1);
        assert!(p[MAX_PROBLEMS].3.contains("200 more"));
    }
}
