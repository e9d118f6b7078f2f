//! `kubeforge restore --from NAME|PATH`: replace etcd's data on every member with a backup.
//! In order: take the state dir's lock; verify the backup (sha256 against its sidecar, etcd's
//! integrity hash, a restore into a throwaway etcd on this machine) before anything else, so a
//! corrupt or truncated file is refused with nothing changed; decompress it for the push;
//! gather facts and plan `Operation::Restore` (the planner decides every step); print the plan
//! and a loud warning; ask unless `--yes`; execute with the same executor as `apply`; say what
//! was done and where the old data is kept. Everything is in the audit log; the snapshot's
//! contents never reach the output.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::{self, Operation, Phase, Plan, RestoreSnapshot};
use miette::{IntoDiagnostic as _, miette};

use super::outcome::print_outcome;
use super::plan::{prepare_for, print_plan};
use crate::backup::verify::{self, EtcdTools, ScratchDir, VerifyError};
use crate::backup::{self, store};
use crate::context::{Global, OutputFormat};
use crate::exec::events::{EventSink, JsonLines};
use crate::exec::lock::ApplyLock;
use crate::exec::progress::ProgressBars;
use crate::exec::{AuditLog, AuditRecord, ExecOptions, execute};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup: a name from `kubeforge backup list`, or a path to a .db.zst file.
    #[arg(long = "from")]
    pub from: String,
    /// Directory of backups names are looked up in [default: <state>/backups].
    #[arg(long = "dir")]
    pub dir: Option<PathBuf>,
    /// Directory holding etcd and etcdutl (or etcdctl for 3.4) to verify the backup with
    /// [default: the spec's etcd version from the artifact source].
    #[arg(long = "etcd-dir")]
    pub etcd_dir: Option<PathBuf>,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

pub fn run(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(restore(global, args))
}

fn record(
    host: &str,
    step: &str,
    target: Vec<String>,
    started: Instant,
    result: String,
) -> AuditRecord {
    AuditRecord {
        at: crate::exec::audit::now_secs(),
        host: host.into(),
        phase: "restore".into(),
        step: step.into(),
        op: "restore",
        target,
        exit_status: None,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        result,
    }
}

/// The etcd release of the spec from the artifact source, to verify with.
fn tools(global: &Global, cluster: &Cluster, etcd_dir: Option<&Path>) -> miette::Result<EtcdTools> {
    if let Some(dir) = etcd_dir {
        return EtcdTools::from_dir(dir).ok_or_else(|| {
            miette!("{} has no etcd with etcdutl or etcdctl beside it", dir.display())
        });
    }
    let spec_dir = global.file.parent().unwrap_or(Path::new("."));
    crate::artifacts::etcd_tools(cluster, spec_dir)
}

/// The phases a restore's facts and artifacts are gathered for: etcd's alone.
fn restore_skips() -> Vec<Phase> {
    vec![Phase::Preflight, Phase::Os, Phase::Runtime, Phase::Pki]
}

fn sha256_of(path: &Path) -> miette::Result<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path).into_diagnostic()?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).into_diagnostic()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(backup::hex(&hasher.finalize()))
}

async fn restore(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let cluster = crate::spec_file::load(&global.file)?;
    let state_root = global.state_dir(&cluster.name);
    // The lock comes first: no apply may plan or change hosts while a restore runs.
    let lock = ApplyLock::acquire(&state_root).map_err(|e| miette!("{e}"))?;
    let state = crate::state::StateDir::open(&state_root)?;
    let dir = args.dir.clone().unwrap_or_else(|| state.root().join("backups"));
    let path = store::resolve(&dir, &args.from).map_err(|e| miette!("{e}"))?;
    let (stamp, _) = backup::stamps(time::OffsetDateTime::now_utc());
    let audit = AuditLog::create(state.root(), &format!("{stamp}-{}-restore", std::process::id()))
        .into_diagnostic()?;
    let started = Instant::now();
    let target = vec![path.display().to_string()];

    // 1. The backup is verified before anything else is looked at or changed.
    let tools = tools(global, &cluster, args.etcd_dir.as_deref())?;
    if global.output == OutputFormat::Human {
        eprintln!(
            "Verifying {} (checksum, etcd's integrity hash, a restore into a throwaway etcd)...",
            path.display()
        );
    }
    let refuse = |e: &dyn std::fmt::Display| {
        audit.record(&record("local", "verify", target.clone(), started, format!("refused: {e}")));
        miette!(
            help = "restore from another backup (`kubeforge backup list`), or take a new one \
                    with `kubeforge backup create` while the cluster still serves",
            "restore refused: {e}; nothing was changed on any host"
        )
    };
    let verified = verify::verify(&path, &tools).await.map_err(|e| refuse(&e))?;
    audit.record(&record(
        "local",
        "verify",
        target.clone(),
        started,
        format!("verified: revision {}, {} keys", verified.revision, verified.key_count),
    ));
    // The copy pushed to the members, decompressed with the trailer checked once more.
    let scratch = ScratchDir::new("restore").map_err(|e| refuse(&e))?;
    let raw = scratch.path().join("snapshot.db");
    let (src, dst) = (path.clone(), raw.clone());
    let db = tokio::task::spawn_blocking(move || verify::check_and_decompress(&src, &dst))
        .await
        .into_diagnostic()?
        .map_err(|e: VerifyError| refuse(&e))?;
    if db.db_sha256 != verified.db_sha256 {
        return Err(refuse(&format!("{} changed while it was being verified", path.display())));
    }
    let sha256 = sha256_of(&raw)?;

    // 2. The plan.
    let snapshot = RestoreSnapshot {
        from: args.from.clone(),
        spec_file: global.file.display().to_string(),
        local_path: raw.display().to_string(),
        sha256,
        revision: verified.revision,
        stamp: stamp.clone(),
    };
    let plan_args = super::plan::Args {
        until: Some(Phase::Etcd),
        skip_phases: restore_skips(),
        concurrency: args.concurrency,
        allow_unverified_artifacts: false,
    };
    let prepared = prepare_for(global, &plan_args, Operation::Restore { snapshot }).await?;
    if !prepared.pending.is_empty() {
        return Err(miette!(
            help = format!(
                "run `kubeforge apply -f {} --until etcd` first (on new machines or addresses it \
                 issues the members' certificates from the state dir's CAs and installs etcd), \
                 then restore again",
                global.file.display()
            ),
            "restore refused: the state dir lacks certificates or secrets the spec needs:\n{}\
             nothing was changed on any host",
            prepared.pending.describe()
        ));
    }
    let plan = &prepared.plan;
    if global.output == OutputFormat::Human {
        println!(
            "Backup {}: revision {}, {} keys, verified with {} (etcd {}).\n",
            path.display(),
            verified.revision,
            verified.key_count,
            verified.restored_with,
            verified.etcd_version
        );
    }
    print_plan(global.output, plan)?;
    if !plan.blocked.is_empty() || plan.has_no_steps() {
        audit.record(&record("local", "plan", target, started, "refused: hosts blocked".into()));
        return Err(miette!(
            help = "fix what each blocked host lists above, then restore again",
            "restore refused: a restore changes every etcd member and control plane together, \
             and some cannot be restored now; nothing was changed on any host"
        ));
    }
    let members: Vec<String> = prepared.cluster.etcd_members().map(|h| h.name.clone()).collect();
    if global.output == OutputFormat::Human || !global.yes {
        eprintln!(
            "\nWARNING: this is disruptive. It STOPS every kube-apiserver and every etcd member \
             ({}), replaces the cluster's data with this backup (revision {}), and starts a new \
             etcd cluster from it. Every change made to the cluster since the backup is lost. \
             The API is down until the restore finishes. The old data is kept on each member in \
             {}.",
            members.join(", "),
            verified.revision,
            plan::old_data_dir(&stamp)
        );
    }
    if !global.yes
        && !super::confirm::ask(
            "restore",
            "Type `restore` to stop the cluster and restore it from this backup:",
            &["restore"],
        )?
    {
        eprintln!("Nothing was changed.");
        return Ok(ExitCode::FAILURE);
    }

    // 3. Execute.
    let options = ExecOptions { concurrency: args.concurrency, ..ExecOptions::default() };
    let cancel = options.cancel.clone();
    let rerun = plan.operation.rerun();
    crate::exec::interrupt::install(cancel, rerun.to_string());
    let sink: Box<dyn EventSink> = match global.output {
        OutputFormat::Json => Box::new(JsonLines),
        OutputFormat::Human => {
            Box::new(ProgressBars::new(prepared.cluster.hosts.iter().map(|h| h.name.as_str())))
        }
    };
    let run_started = Instant::now();
    let report = execute(plan, &prepared.transports, &options, sink.as_ref(), &audit).await;
    let seconds = run_started.elapsed().as_secs_f64();
    drop(lock);
    let ok = report.succeeded();
    let summary = summary(plan, &stamp, &verified, &members, ok, seconds);
    audit.record(&record(
        "local",
        "restore",
        vec![path.display().to_string()],
        started,
        summary.clone(),
    ));
    let details = serde_json::json!({
        "succeeded": ok,
        "revision": verified.revision,
        "keys": verified.key_count,
        "seconds": seconds,
        "oldDataDir": plan::old_data_dir(&stamp),
        "members": members,
    });
    print_outcome(global.output, &report, Some(("restore", details)), &[summary], &audit);
    drop(scratch);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What the restore did and where the old data is.
fn summary(
    plan: &Plan,
    stamp: &str,
    verified: &verify::Verified,
    members: &[String],
    ok: bool,
    seconds: f64,
) -> String {
    let old = plan::old_data_dir(stamp);
    let kept: Vec<String> = members.iter().map(|m| format!("  {m}:{old}")).collect();
    if ok {
        format!(
            "Restored etcd from {} in {seconds:.1} s: {} members ({}) serve revision {} with {} \
             keys as a new cluster (token {}).\nThe old data is kept (kubeforge never deletes \
             it; remove it once you are sure):\n{}",
            verified.path.display(),
            members.len(),
            members.join(", "),
            verified.revision,
            verified.key_count,
            plan::cluster_token(&plan.cluster, stamp),
            kept.join("\n")
        )
    } else {
        format!(
            "The restore did not finish (see above). Where etcd was stopped, its old data is kept \
             in:\n{}\nRun `{}` again to finish the restore.",
            kept.join("\n"),
            plan.operation.rerun()
        )
    }
}
