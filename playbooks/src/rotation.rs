//! What one stage of a CA rotation (`certs rotate-ca`) rolls out, decided from what the hosts
//! run: the phases whose steps put the stage's files and restart every reader of them (`pki`,
//! then `etcd`, then `control-plane` where kube-apiserver is installed, then `workers` where the
//! kubelet is), and the batches they run in (every host that restarts a reader, one at a time).
//! The restarts themselves are the apply planner's (`plan::restart`): etcd members one at a time
//! behind health gates, the static pods of each control plane through the CRI followed by its
//! `/readyz` gates, kubelets when their kubeconfig or CA changes. This module only selects and
//! orders; it computes no certificate (kubeforge-pki does) and does no I/O (the CLI finds out
//! what is installed and runs the plan).

use crate::plan::{Phase, PhaseSelection, Plan};

/// What the hosts run, as the CLI found it before the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Installed {
    /// kube-apiserver's static pod manifest is on every control plane.
    pub control_plane: bool,
    /// The kubelet's kubeconfig is on every worker (and there are workers).
    pub workers: bool,
}

/// Why a rotation cannot start on a half-installed cluster: a stage would install what
/// `apply` has not installed yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is installed on {} but not on {}; a CA rotation restarts what runs and installs \
     nothing: finish `kubeforge apply` first (or remove those hosts from the spec), then rotate",
    with.join(", "), without.join(", ")
)]
pub struct HalfInstalled {
    pub what: &'static str,
    pub with: Vec<String>,
    pub without: Vec<String>,
}

/// From per-host findings (`host → installed`), whether a kind of host runs the component
/// everywhere (`true`), nowhere (`false`), or only somewhere (an error).
pub fn everywhere(
    what: &'static str,
    found: &[(String, bool)],
) -> Result<bool, Box<HalfInstalled>> {
    let (with, without): (Vec<_>, Vec<_>) = found.iter().partition(|(_, yes)| *yes);
    match (with.is_empty(), without.is_empty()) {
        (_, true) => Ok(!with.is_empty()),
        (true, false) => Ok(false),
        (false, false) => Err(Box::new(HalfInstalled {
            what,
            with: with.into_iter().map(|(h, _)| h.clone()).collect(),
            without: without.into_iter().map(|(h, _)| h.clone()).collect(),
        })),
    }
}

/// The phases of one stage's roll-out, in order: the files first (every host at once: nothing
/// restarts there), then the readers, etcd before the control plane that is its client, the
/// control plane before the kubelets that are its clients.
pub fn stage_phases(installed: Installed) -> Vec<Phase> {
    let mut phases = vec![Phase::Pki, Phase::Etcd];
    if installed.control_plane {
        phases.push(Phase::ControlPlane);
        if installed.workers {
            phases.push(Phase::Workers);
        }
    }
    phases
}

/// [`stage_phases`] as `apply`'s phase selection.
pub fn selection(installed: Installed) -> PhaseSelection {
    let phases = stage_phases(installed);
    let last = phases.last().copied();
    let skip: Vec<Phase> = Phase::ALL.into_iter().filter(|p| !phases.contains(p)).collect();
    PhaseSelection::new(last, &skip)
}

/// `until` and `skip` for the CLI's phase arguments, equal to [`selection`].
pub fn phase_args(installed: Installed) -> (Option<Phase>, Vec<Phase>) {
    let phases = stage_phases(installed);
    let last = phases.last().copied();
    let skip = Phase::ALL.into_iter().filter(|p| Some(*p) <= last && !phases.contains(p)).collect();
    (last, skip)
}

/// The stage's plan as it runs: every phase that restarts readers of the rotated files goes one
/// host at a time (a failure stops the hosts after it), so a bundle or leaf that does not work
/// takes down one host, never all. The `pki` phase only puts files and stays parallel; `etcd`
/// restarts members in its sequence, one at a time already.
pub fn roll_out(mut plan: Plan) -> Plan {
    for phase in &mut plan.phases {
        if matches!(phase.phase, Phase::ControlPlane | Phase::Workers) {
            phase.batch = Some(1);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_what_is_installed_and_readers_come_after_files() {
        let none = Installed::default();
        assert_eq!(stage_phases(none), vec![Phase::Pki, Phase::Etcd]);
        let cp = Installed { control_plane: true, workers: false };
        assert_eq!(stage_phases(cp), vec![Phase::Pki, Phase::Etcd, Phase::ControlPlane]);
        let all = Installed { control_plane: true, workers: true };
        assert_eq!(
            stage_phases(all),
            vec![Phase::Pki, Phase::Etcd, Phase::ControlPlane, Phase::Workers]
        );
        for i in [none, cp, all] {
            assert_eq!(selection(i).phases(), stage_phases(i).as_slice());
            let (until, skip) = phase_args(i);
            assert_eq!(PhaseSelection::new(until, &skip).phases(), stage_phases(i).as_slice());
        }
    }

    #[test]
    fn a_half_installed_kind_of_host_is_refused_with_the_hosts_named() {
        let f = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(h, b)| (h.to_string(), *b)).collect()
        };
        assert_eq!(everywhere("x", &f(&[("a", true), ("b", true)])), Ok(true));
        assert_eq!(everywhere("x", &f(&[("a", false), ("b", false)])), Ok(false));
        assert_eq!(everywhere("x", &[]), Ok(false));
        let err = everywhere("kube-apiserver", &f(&[("a", true), ("b", false)])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("installed on a but not on b"), "{text}");
        assert!(text.contains("finish `kubeforge apply` first"), "{text}");
    }
}
