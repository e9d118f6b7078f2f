//! Unified line diffs for plan output (3 lines of context), via `similar`. Callers decide what
//! may be diffed: secrets never reach this function.

/// A unified diff of `old` → `new` with the given header names; empty when equal.
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut out = diff.unified_diff().context_radius(3).header(old_name, new_name).to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_lines_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let d = unified_diff(old, new, "x (on h)", "x (planned)");
        assert!(d.starts_with("--- x (on h)\n+++ x (planned)\n@@ -2,7 +2,7 @@\n"), "{d}");
        assert!(d.contains("\n-e\n+E\n"), "{d}");
        assert_eq!(unified_diff(old, old, "a", "b"), "");
    }

    #[test]
    fn missing_final_newline_is_marked() {
        let d = unified_diff("a\n", "a\nb", "o", "n");
        assert!(d.contains("+b"), "{d}");
        assert!(d.ends_with('\n'));
    }
}
