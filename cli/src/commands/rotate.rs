//! `kubeforge certs rotate-ca` executed: replaces one CA (`--ca etcd|kubernetes|front-proxy`),
//! the three together (`all`) or the service-account key (`sa`) in the stages of
//! `kubeforge_pki::RotationStage`, each one written to the state dir and then rolled out by the
//! normal apply machinery for the phases `kubeforge_playbooks::rotation` selects from what the
//! hosts run (`pki`, `etcd`, and `control-plane`/`workers` where Kubernetes is installed): the
//! planner's restart records restart etcd members one at a time behind health gates, then each
//! control plane's static pods behind `/readyz`, then kubelets, when their files change.
//! It owns `<state>/rotation.json` (which CA, which stage, since when), written atomically under
//! the state lock; it decides nothing about certificates (kubeforge-pki does) nor about steps
//! on hosts (the planner does). A rotation refuses to start while a host is unreachable or an
//! etcd member is unhealthy, and running the command again continues from the first
//! unfinished stage.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kubeforge_pki::{Rotated, RotationStage};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::pki_inputs::pki_request;
use kubeforge_playbooks::plan::Operation;
use kubeforge_playbooks::rotation::{self, Installed};
use miette::{IntoDiagnostic as _, WrapErr as _, miette};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::plan::{Prepared, prepare_for, print_plan};
use crate::context::{Global, OutputFormat};
use crate::exec::events::{EventSink, JsonLines};
use crate::exec::lock::ApplyLock;
use crate::exec::progress::ProgressBars;
use crate::exec::{AuditLog, ExecOptions, execute};
use crate::state::StateDir;

/// The record's file in the state dir.
pub const ROTATION_FILE: &str = "rotation.json";
/// `stage` once every stage has run.
pub const DONE: &str = "done";

/// `<state>/rotation.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    /// `etcd`, `kubernetes`, `front-proxy`, `all` or `sa`.
    pub ca: String,
    /// The first unfinished stage (`trust-both`, `reissue-leaves`, `drop-old`) or `done`.
    pub stage: String,
    /// Stages whose roll-out finished, in order.
    pub completed: Vec<String>,
    /// RFC 3339.
    pub started_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl RotationRecord {
    pub fn is_done(&self) -> bool {
        self.stage == DONE
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn record_path(state: &Path) -> PathBuf {
    state.join(ROTATION_FILE)
}

/// The record, `None` when no rotation was ever started.
pub fn load_record(state: &Path) -> miette::Result<Option<RotationRecord>> {
    let path = record_path(state);
    match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).into_diagnostic().wrap_err_with(|| {
                format!("{} is not a rotation record; fix or move it", path.display())
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            Err(e).into_diagnostic().wrap_err_with(|| format!("cannot read {}", path.display()))
        }
    }
}

/// Writes the record atomically (temp file, then rename). The caller holds the state lock.
pub fn save_record(state: &Path, record: &RotationRecord) -> miette::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(record).into_diagnostic()?;
    bytes.push(b'\n');
    crate::state::replace(&record_path(state), &bytes, 0o600)
}

/// `--ca` values.
pub fn parse_ca(s: &str) -> Result<Rotated, String> {
    Rotated::parse(s).ok_or_else(|| {
        let known: Vec<&str> = Rotated::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown CA {s:?}; known: {}", known.join(", "))
    })
}

/// `--status`: the record as it is (human or JSON).
pub fn status(state: &StateDir, output: OutputFormat) -> miette::Result<ExitCode> {
    let record = load_record(state.root())?;
    let files = state.load_pki()?;
    let what = record.as_ref().and_then(|r| Rotated::parse(&r.ca));
    let from_files: serde_json::Map<String, serde_json::Value> = Rotated::ALL
        .into_iter()
        .filter(|r| *r != Rotated::AllCas)
        .filter_map(|r| {
            let st = kubeforge_pki::stage_of_rotated(&files, r)?;
            Some((r.as_str().to_string(), st.as_str().into()))
        })
        .collect();
    match output {
        OutputFormat::Json => {
            let json = serde_json::json!({
                "rotation": record,
                "filesAt": from_files,
            });
            println!("{json:#}");
        }
        OutputFormat::Human => match &record {
            None => println!("No CA rotation was started for this cluster."),
            Some(r) => {
                println!("CA:        {}", r.ca);
                println!("Stage:     {}", r.stage);
                println!("Started:   {}", r.started_at);
                println!("Updated:   {}", r.updated_at);
                if let Some(f) = &r.finished_at {
                    println!("Finished:  {f}");
                }
                for st in RotationStage::ALL {
                    let mark = if r.completed.iter().any(|c| c == st.as_str()) {
                        "done"
                    } else if r.stage == st.as_str() {
                        "next"
                    } else {
                        "    "
                    };
                    let summary = what.map_or(st.summary(), |w| w.stage_summary(st));
                    println!("  [{mark}] {st}: {summary}");
                }
                if !r.is_done() {
                    println!("Run `kubeforge certs rotate-ca --ca {}` again to continue.", r.ca);
                }
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The phases a rotation stage rolls out: the files, then every component that reads them.
fn rotation_plan_args(installed: Installed, concurrency: usize) -> super::plan::Args {
    let (until, skip_phases) = rotation::phase_args(installed);
    super::plan::Args { until, skip_phases, concurrency, allow_unverified_artifacts: false }
}

/// Refuses when a host is unreachable (blocked) or an etcd member is not healthy.
fn check_ready(prepared: &Prepared, when: &str) -> miette::Result<()> {
    let mut problems: Vec<String> = Vec::new();
    for (host, list) in &prepared.plan.blocked {
        for p in list {
            problems.push(format!("{host}: {}", p.message));
        }
    }
    let members: Vec<&str> = prepared.cluster.etcd_members().map(|h| h.name.as_str()).collect();
    match &prepared.observed.etcd {
        None => problems.push("no etcd member answered".into()),
        Some(etcd) => {
            for name in &members {
                match etcd.members.iter().find(|m| m.name == *name) {
                    None => problems.push(format!("{name}: not an etcd member")),
                    Some(m) if !m.healthy => {
                        problems.push(format!("{name}: etcd member unhealthy"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(miette!(
        help = "bring every host and etcd member back (`kubeforge apply --until etcd`), then run \
                the rotation again",
        "CA rotation refused {when}: every etcd member must be reachable and healthy, because \
         each stage restarts them one at a time\n  {}",
        problems.join("\n  ")
    ))
}

/// What the hosts run: kube-apiserver's manifest on every control plane (then the static pods
/// restart in each stage, one control plane at a time behind `/readyz`), the kubelet's
/// kubeconfig on every worker (then the kubelets restart after the control planes). A kind of
/// host that runs it only in part is refused before anything changes: a stage would install it.
async fn installed(prepared: &Prepared) -> miette::Result<Installed> {
    use kubeforge_playbooks::node::MANIFESTS_DIR;
    let manifest = format!("{MANIFESTS_DIR}/kube-apiserver.yaml");
    let kubelet_conf = "/etc/kubernetes/kubelet.conf".to_string();
    let mut cps = Vec::new();
    let mut workers = Vec::new();
    for host in &prepared.cluster.hosts {
        let (path, list) = if host.is_control_plane() {
            (&manifest, &mut cps)
        } else if host.runs_kubelet() {
            (&kubelet_conf, &mut workers)
        } else {
            continue;
        };
        let Some(t) = prepared.transports.get(&host.name) else { continue };
        let found = t.file_sha256(path).await.map_err(|e| {
            miette!("CA rotation refused: cannot check {path} on {}: {e}", host.name)
        })?;
        list.push((host.name.clone(), found.is_some()));
    }
    let control_plane = rotation::everywhere("kube-apiserver", &cps).map_err(|e| miette!("{e}"))?;
    let workers = rotation::everywhere("the kubelet", &workers).map_err(|e| miette!("{e}"))?;
    Ok(Installed { control_plane, workers: control_plane && workers })
}

fn audit_name(stage: RotationStage) -> String {
    format!("{}-rotate-{stage}", crate::state::run_stamp())
}

/// Writes `stage`'s PKI to the state dir (idempotent: a stage already written is finished, not
/// redone). Returns what changed, for the output.
fn write_stage(
    cluster: &Cluster,
    state: &StateDir,
    what: Rotated,
    stage: RotationStage,
) -> miette::Result<kubeforge_pki::Report> {
    let old = state.load_pki()?;
    let mut serials = super::certs::OsSerials::default();
    let outcome = kubeforge_pki::rotate_stage(
        &pki_request(cluster),
        &old,
        what,
        stage,
        OffsetDateTime::now_utc(),
        &mut serials,
    )
    .map_err(|e| miette!("{e}"))
    .wrap_err_with(|| format!("certs rotate-ca, stage {stage}: nothing was changed"))?;
    if serials.failed() {
        return Err(miette!("the operating system's random generator failed; nothing was saved"));
    }
    let may_replace: BTreeSet<String> = outcome.report.replaced_files();
    state.save_pki(&old, &outcome.store, &may_replace)?;
    state.retire_pki(&old, &outcome.retired)?;
    Ok(outcome.report)
}

/// Runs every unfinished stage of rotating `ca`.
pub fn run(global: &Global, ca: Rotated, concurrency: usize) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(rotate(global, ca, concurrency))
}

async fn rotate(global: &Global, ca: Rotated, concurrency: usize) -> miette::Result<ExitCode> {
    let cluster = crate::spec_file::load(&global.file)?;
    let root = global.state_dir(&cluster.name);
    let lock = ApplyLock::acquire(&root).map_err(|e| miette!("{e}"))?;
    let state = StateDir::open(&root)?;
    let human = global.output == OutputFormat::Human;
    let started = Instant::now();
    let now = rfc3339(OffsetDateTime::now_utc());
    let mut record = match load_record(state.root())? {
        Some(r) if !r.is_done() => {
            if r.ca != ca.as_str() {
                return Err(miette!(
                    help = format!("finish it first: `kubeforge certs rotate-ca --ca {}`", r.ca),
                    "a rotation of the {} CA is under way (stage {}); nothing was changed",
                    r.ca,
                    r.stage
                ));
            }
            r
        }
        _ => {
            // The files may say a rotation is under way even without a record.
            let files = state.load_pki()?;
            let stage =
                kubeforge_pki::stage_of_rotated(&files, ca).unwrap_or(RotationStage::TrustBoth);
            let mut completed = Vec::new();
            if stage == RotationStage::ReissueLeaves {
                completed.push(RotationStage::TrustBoth.as_str().to_string());
            }
            RotationRecord {
                ca: ca.as_str().into(),
                stage: stage.as_str().into(),
                completed,
                started_at: now.clone(),
                updated_at: now.clone(),
                finished_at: None,
            }
        }
    };
    let Some(mut stage) = RotationStage::parse(&record.stage) else {
        return Err(miette!(
            "{} names an unknown stage {:?}; fix or move it",
            record_path(state.root()).display(),
            record.stage
        ));
    };
    // Nothing is written before every host and member is known to be there, and what runs
    // Kubernetes is known.
    let before = prepare_for(
        global,
        &rotation_plan_args(Installed::default(), concurrency),
        Operation::Apply,
    )
    .await?;
    check_ready(&before, "before it changes anything")?;
    let installed = installed(&before).await?;
    drop(before);
    let args = rotation_plan_args(installed, concurrency);
    if human {
        let phases: Vec<String> =
            rotation::stage_phases(installed).iter().map(|p| p.to_string()).collect();
        eprintln!("Each stage rolls out the phases {}.", phases.join(", "));
    }
    if human {
        eprintln!(
            "Rotating the {} CA, from stage {stage} ({} of {}).",
            record.ca,
            RotationStage::ALL.iter().position(|s| *s == stage).unwrap_or(0) + 1,
            RotationStage::ALL.len()
        );
    }
    let mut stage_seconds: Vec<(String, f64)> = Vec::new();
    loop {
        let stage_started = Instant::now();
        let report = write_stage(&cluster, &state, ca, stage)?;
        record.stage = stage.as_str().into();
        record.updated_at = rfc3339(OffsetDateTime::now_utc());
        save_record(state.root(), &record)?;
        if human {
            eprintln!("\n== Stage {stage}: {}\nState dir:\n{report}", ca.stage_summary(stage));
        }
        let prepared = prepare_for(global, &args, Operation::Apply).await?;
        if !prepared.pending.is_empty() {
            // The stage's store is a fixed point of generate; anything else is the spec's own
            // change, saved as apply would.
            prepared.pending.save(&prepared.state)?;
        }
        check_ready(&prepared, &format!("at stage {stage}"))?;
        let plan = &rotation::roll_out(prepared.plan.clone());
        if !global.yes || human {
            print_plan(global.output, plan)?;
        }
        if !plan.has_no_steps() {
            if !global.yes
                && !super::confirm::ask(
                    "rotate-ca",
                    &format!("Run stage {stage} on these hosts? [y/N]"),
                    super::confirm::YES,
                )?
            {
                eprintln!(
                    "Stopped before rolling out stage {stage}; the state dir holds it. Run the \
                     command again to continue."
                );
                return Ok(ExitCode::FAILURE);
            }
            let audit = AuditLog::create(state.root(), &audit_name(stage)).into_diagnostic()?;
            // A control plane that did not come back stops the stage: no kubelet is restarted
            // after it, and the next stage does not start.
            let options =
                ExecOptions { concurrency, stop_at_first_failure: true, ..ExecOptions::default() };
            let sink: Box<dyn EventSink> = match global.output {
                OutputFormat::Json => Box::new(JsonLines),
                OutputFormat::Human => Box::new(ProgressBars::new(
                    prepared.cluster.hosts.iter().map(|h| h.name.as_str()),
                )),
            };
            let run = execute(plan, &prepared.transports, &options, sink.as_ref(), &audit).await;
            if human {
                print!("{}", run.render_text());
            }
            if !run.succeeded() {
                if global.output == OutputFormat::Json {
                    let line =
                        serde_json::json!({"event": "report", "report": run, "rotation": record});
                    println!("{line}");
                }
                return Err(miette!(
                    help = format!(
                        "fix what failed above, then run `kubeforge certs rotate-ca --ca {}` \
                         again: it continues with stage {stage}",
                        record.ca
                    ),
                    "CA rotation stopped in stage {stage}; the state dir holds that stage and \
                     every host keeps working with it"
                ));
            }
        }
        stage_seconds.push((stage.as_str().into(), stage_started.elapsed().as_secs_f64()));
        record.completed.push(stage.as_str().into());
        record.updated_at = rfc3339(OffsetDateTime::now_utc());
        match stage.next() {
            Some(next) => {
                record.stage = next.as_str().into();
                save_record(state.root(), &record)?;
                stage = next;
            }
            None => {
                record.stage = DONE.into();
                record.finished_at = Some(record.updated_at.clone());
                save_record(state.root(), &record)?;
                break;
            }
        }
    }
    drop(lock);
    let seconds = started.elapsed().as_secs_f64();
    match global.output {
        OutputFormat::Json => {
            let stages: Vec<_> = stage_seconds
                .iter()
                .map(|(s, t)| serde_json::json!({"stage": s, "seconds": t}))
                .collect();
            let line = serde_json::json!({
                "event": "rotation", "rotation": record, "seconds": seconds, "stages": stages,
            });
            println!("{line}");
        }
        OutputFormat::Human => println!(
            "The {} CA was rotated in {seconds:.1} s: every host trusts and uses the new one \
             only; the old one is kept under {}/pki-replaced/.",
            record.ca,
            state.root().display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips_atomically_and_says_where_it_stands() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_record(dir.path()).unwrap(), None);
        let record = RotationRecord {
            ca: "etcd".into(),
            stage: "reissue-leaves".into(),
            completed: vec!["trust-both".into()],
            started_at: "2026-12-06T14:00:00Z".into(),
            updated_at: "2026-12-06T14:00:30Z".into(),
            finished_at: None,
        };
        save_record(dir.path(), &record).unwrap();
        assert_eq!(load_record(dir.path()).unwrap(), Some(record.clone()));
        let text = std::fs::read_to_string(record_path(dir.path())).unwrap();
        assert!(text.contains("\"startedAt\": \"2026-12-06T14:00:00Z\""), "{text}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(record_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(record_path(dir.path()), "{").unwrap();
        assert!(load_record(dir.path()).is_err());
    }

    #[test]
    fn every_target_parses_and_unknown_ones_are_named() {
        use kubeforge_pki::CaId;
        assert_eq!(parse_ca("etcd"), Ok(Rotated::Ca(CaId::Etcd)));
        assert_eq!(parse_ca("kubernetes"), Ok(Rotated::Ca(CaId::Kubernetes)));
        assert_eq!(parse_ca("front-proxy"), Ok(Rotated::Ca(CaId::FrontProxy)));
        assert_eq!(parse_ca("all"), Ok(Rotated::AllCas));
        assert_eq!(parse_ca("sa"), Ok(Rotated::ServiceAccount));
        let err = parse_ca("nope").unwrap_err();
        assert!(err.contains("unknown CA") && err.contains("front-proxy, all, sa"), "{err}");
    }
}
