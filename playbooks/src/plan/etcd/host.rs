//! One member host's parallel part of the etcd phase: binaries from the artifact source, the
//! `etcd` system user, the unit, enabled; and the start of members whose start needs no
//! ordering (every member of a new cluster together, or a stopped member of a healthy cluster).
//! Joins and restarts of running members are sequenced (`super::sequence`).

use super::super::PlanInput;
use super::super::files::{Wanted, put_file};
use super::super::restart::Loads;
use super::super::types::{PushArtifact, Run, Step, UnitAction, UnitStep};
use super::{BIN_DIR, BINARIES, EtcdPlanError, MemberHost, PKI_FILES};
use crate::etcd_membership::{CurrentMember, Step as Membership};
use crate::render::configs::etcd::{self as unit, InitialState};

pub(crate) const UNIT: &str = crate::node::unit::ETCD;

/// What the parallel part does on one member host.
#[derive(Debug, Clone)]
pub(crate) struct Install {
    pub host: String,
    pub steps: Vec<Step>,
    /// Why etcd runs and must be restarted (one member at a time): the files it loaded differ
    /// from those it will find after this run (`super::super::restart`).
    pub restart: Option<String>,
    /// Records what the member loaded, once the phase has (re)started it.
    pub record: Option<Step>,
    /// The parallel part starts etcd (a health gate must follow).
    pub started: bool,
}

/// `systemctl start --no-block`: a member of a new cluster only reports ready once a quorum
/// has started, so starts must not wait for each other; health gates do the waiting.
pub(crate) fn start_no_block(why: &str) -> Step {
    Step::Run(Run {
        argv: ["systemctl", "start", "--no-block", UNIT].map(String::from).to_vec(),
        unless: None,
        why: why.into(),
    })
}

/// The bootstrap environment file, unless the host already has exactly this one.
pub(crate) fn bootstrap_file(
    input: PlanInput<'_>,
    m: &MemberHost<'_>,
    initial_cluster: &[(String, String)],
    state: InitialState,
) -> Option<Step> {
    let contents = unit::bootstrap_env(&input.cluster.name, initial_cluster, state);
    let wanted = Wanted {
        path: unit::BOOTSTRAP_ENV,
        contents: contents.as_bytes(),
        mode: 0o600,
        secret: false,
    };
    put_file(&m.host.name, m.facts, wanted).map(Step::PutFile)
}

/// `name=peer-url` of every listed member, named after the spec host with its peer URL.
pub(crate) fn listed_initial_cluster(
    input: PlanInput<'_>,
    current: &[CurrentMember],
) -> Vec<(String, String)> {
    current
        .iter()
        .filter_map(|c| {
            let url = c.peer_urls.first()?;
            let name = input
                .cluster
                .etcd_members()
                .find(|h| &unit::peer_url(h.address) == url)
                .map(|h| h.name.clone())
                .unwrap_or_else(|| c.name.clone());
            (!name.is_empty()).then(|| (name, url.clone()))
        })
        .collect()
}

pub(crate) fn install(
    input: PlanInput<'_>,
    m: &MemberHost<'_>,
    membership: &[Membership],
    current: &[CurrentMember],
) -> Result<Install, EtcdPlanError> {
    let name = m.host.name.as_str();
    let facts = m.facts;
    let mut steps = Vec::new();
    for bin in BINARIES {
        let dest = format!("{BIN_DIR}/{bin}");
        let on_host = facts.files.get(&dest).and_then(|f| f.sha256());
        match input.artifacts.get(bin) {
            Some(a) if on_host != Some(a.sha256.as_str()) => {
                steps.push(Step::PushArtifact(PushArtifact {
                    name: bin.to_string(),
                    local_path: a.path.clone(),
                    sha256: a.sha256.clone(),
                    dest,
                    mode: 0o755,
                    unverified: a.unverified,
                }));
            }
            None if bin == "etcd" && on_host.is_none() => {
                return Err(EtcdPlanError::MissingBinary { host: name.to_string() });
            }
            _ => {}
        }
    }
    let tree = input.tree.hosts.get(name);
    let tree_file = |path: &str| tree.and_then(|t| t.get(path));
    if let Some(file) = tree_file(unit::SYSUSERS) {
        let wanted = Wanted {
            path: unit::SYSUSERS,
            contents: &file.contents,
            mode: file.mode,
            secret: file.secret,
        };
        if let Some(put) = put_file(name, facts, wanted) {
            // Create the user from the same lines first: should this fail, the file is not
            // written yet and the next plan tries again.
            let lines: Vec<String> = String::from_utf8_lossy(&file.contents)
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(String::from)
                .collect();
            let mut argv = vec!["systemd-sysusers".to_string()];
            for line in lines {
                argv.push("--inline".into());
                argv.push(line);
            }
            steps.push(Step::Run(Run {
                argv,
                unless: None,
                why: format!("the `{}` system user etcd runs as", unit::USER),
            }));
            steps.push(Step::PutFile(put));
        }
    }
    if let Some(file) = tree_file(unit::UNIT) {
        let wanted =
            Wanted { path: unit::UNIT, contents: &file.contents, mode: file.mode, secret: false };
        if let Some(put) = put_file(name, facts, wanted) {
            steps.push(Step::PutFile(put));
            steps.push(Step::Unit(UnitStep {
                unit: String::new(),
                action: UnitAction::DaemonReload,
                why: "etcd's unit changed".into(),
            }));
        }
    }
    let unit_state = facts.units.get(UNIT);
    if !unit_state.is_some_and(|u| u.is_enabled()) {
        steps.push(Step::Unit(UnitStep {
            unit: UNIT.into(),
            action: UnitAction::Enable,
            why: "etcd must start at boot".into(),
        }));
    }

    let mut started = false;
    let bootstrap = membership.iter().find_map(|s| match s {
        Membership::Bootstrap { initial_cluster } => Some(initial_cluster),
        _ => None,
    });
    if let Some(initial_cluster) = bootstrap {
        if !m.has_data {
            steps.extend(bootstrap_file(input, m, initial_cluster, InitialState::New));
        }
        if !m.active {
            steps.push(start_no_block("a new cluster: every member starts together"));
            started = true;
        }
    } else if let Some(listed) = m.listed {
        if m.has_data {
            let env_absent =
                facts.files.get(unit::BOOTSTRAP_ENV).and_then(|f| f.sha256()).is_none();
            if env_absent {
                // etcd ignores it now that it has data; the unit needs it to exist.
                let initial_cluster = listed_initial_cluster(input, current);
                steps.extend(bootstrap_file(input, m, &initial_cluster, InitialState::Existing));
            }
            if !m.active {
                steps.push(start_no_block("a member of the cluster is not running"));
                started = true;
            }
        } else if !listed.is_learner && !m.active {
            // A voter that never started: a member of a bootstrap that was interrupted (etcd
            // names those from the initial cluster: it joins with state `new` and the same
            // members and token), or one added as a voter by hand (no name yet: `existing`).
            let state =
                if listed.name.is_empty() { InitialState::Existing } else { InitialState::New };
            let initial_cluster = listed_initial_cluster(input, current);
            steps.extend(bootstrap_file(input, m, &initial_cluster, state));
            steps.push(start_no_block("a voting member that has never started"));
            started = true;
        }
    }

    let mut loads = Loads::new(UNIT).file(input, name, facts, unit::UNIT);
    for path in PKI_FILES {
        loads = loads.file(input, name, facts, path);
    }
    let loads = loads.binary(input, facts, "etcd", &format!("{BIN_DIR}/etcd"));
    let restart = loads.stale(facts);
    let record = loads.record_step(name, facts);
    Ok(Install { host: name.to_string(), steps, restart, record, started })
}
