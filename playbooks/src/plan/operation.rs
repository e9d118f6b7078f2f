//! Operations: every command that changes hosts is one, and the operation is an input of the
//! planner (`plan(op, input)`), not a branch in the CLI. An operation says which phases it can
//! run and which command resumes it; each one is planned into the same `Plan`, shown the same
//! way and run by the same executor. `apply` is the first; backup, restore, upgrade, CA
//! rotation and reset are planners of their own beside it. Pure data: no I/O here.

use serde::Serialize;

use super::Phase;

/// What a run is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Operation {
    /// Converge the hosts to the spec, phase by phase.
    Apply,
}

impl Operation {
    /// The command's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Apply => "apply",
        }
    }

    /// The phases this operation can run, in order (`--until`/`--skip-phases` select among
    /// them).
    pub fn phases(&self) -> &'static [Phase] {
        match self {
            Operation::Apply => &Phase::ALL,
        }
    }

    /// The command an operator runs again to finish an interrupted or failed run: each
    /// operation resumes from what the hosts and the state dir show.
    pub fn rerun(&self) -> &'static str {
        match self {
            Operation::Apply => "kubeforge apply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_runs_every_phase_and_resumes_with_apply() {
        assert_eq!(Operation::Apply.phases(), &Phase::ALL);
        assert_eq!(Operation::Apply.rerun(), "kubeforge apply");
        let json = serde_json::to_value(Operation::Apply).unwrap();
        assert_eq!(json, serde_json::json!({ "kind": "apply" }));
    }
}
