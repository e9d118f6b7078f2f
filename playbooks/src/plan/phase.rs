//! Phase names (part of the CLI) and the `--until` / `--skip-phases` selection.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The phases of `apply`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Preflight,
    Os,
    Runtime,
    Pki,
    Etcd,
    #[serde(rename = "loadbalancer")]
    LoadBalancer,
    ControlPlane,
    Workers,
    Addons,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Preflight,
        Phase::Os,
        Phase::Runtime,
        Phase::Pki,
        Phase::Etcd,
        Phase::LoadBalancer,
        Phase::ControlPlane,
        Phase::Workers,
        Phase::Addons,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Preflight => "preflight",
            Phase::Os => "os",
            Phase::Runtime => "runtime",
            Phase::Pki => "pki",
            Phase::Etcd => "etcd",
            Phase::LoadBalancer => "loadbalancer",
            Phase::ControlPlane => "control-plane",
            Phase::Workers => "workers",
            Phase::Addons => "addons",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A phase name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown phase `{0}`; phases are: preflight, os, runtime, pki, etcd, loadbalancer, control-plane, workers, addons"
)]
pub struct UnknownPhase(pub String);

impl FromStr for Phase {
    type Err = UnknownPhase;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

/// Which phases a run covers: every phase up to `until`, minus `skip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseSelection {
    phases: Vec<Phase>,
}

impl PhaseSelection {
    pub fn new(until: Option<Phase>, skip: &[Phase]) -> Self {
        let last = until.unwrap_or(Phase::Addons);
        let phases = Phase::ALL.into_iter().filter(|p| *p <= last && !skip.contains(p)).collect();
        PhaseSelection { phases }
    }

    pub fn all() -> Self {
        PhaseSelection::new(None, &[])
    }

    /// Parses `--skip-phases a,b`.
    pub fn parse_list(list: &str) -> Result<Vec<Phase>, UnknownPhase> {
        list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect()
    }

    pub fn contains(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }

    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_selects_a_prefix_and_skip_removes() {
        let s = PhaseSelection::new(Some(Phase::Runtime), &[Phase::Os]);
        assert_eq!(s.phases(), &[Phase::Preflight, Phase::Runtime]);
        assert_eq!(PhaseSelection::all().phases().len(), 9);
    }

    #[test]
    fn names_round_trip_and_unknown_is_named() {
        for p in Phase::ALL {
            assert_eq!(p.name().parse::<Phase>(), Ok(p));
        }
        assert_eq!(
            PhaseSelection::parse_list("os,control-plane"),
            Ok(vec![Phase::Os, Phase::ControlPlane])
        );
        let err = PhaseSelection::parse_list("os,runtim").unwrap_err();
        assert!(err.to_string().contains("`runtim`"));
    }
}
