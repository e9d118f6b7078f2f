//! `kubeforge certs`: generate, inspect, renew and rotate (`rotate-ca`, executed by
//! `commands::rotate`) the cluster PKI in the state dir. The decisions are kubeforge-pki's;
//! this module loads the spec and the state dir, injects the clock and the OS random
//! generator, saves the result and prints the report.
//! `generate` and `renew` hold the state lock while they work (a second writer is refused).

use std::io::Write as _;
use std::process::ExitCode;

use kubeforge_pki::{ExpiryStatus, RenewSelection, Report, SerialSource, Store};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::pki_inputs::pki_request;
use miette::{IntoDiagnostic as _, WrapErr as _, miette};
use time::OffsetDateTime;

use crate::context::{Global, OutputFormat};
use crate::state::{SaveSummary, StateDir};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create missing certificates and keys in the state dir, reuse valid ones and reissue
    /// leaves the spec no longer matches (saying which and why).
    Generate,
    /// List every certificate and kubeconfig with its host, subject, signer and expiry.
    CheckExpiration(CheckExpirationArgs),
    /// Reissue leaf certificates with new keys and serials (never CAs).
    Renew(RenewArgs),
    /// Replace a CA in stages (trust both, reissue leaves, drop the old), each rolled out like
    /// `apply` for the pki and etcd phases; `--dry-run` shows the procedure, `--status` where a
    /// rotation stands.
    RotateCa(RotateCaArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["all", "names"])))]
pub struct RenewArgs {
    /// Renew every leaf certificate and kubeconfig.
    #[arg(long)]
    pub all: bool,
    /// kubeadm names (apiserver, admin.conf, etcd-server, kubelet.conf, ...), or HOST/NAME.
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CheckExpirationArgs {
    /// Read the certificates on the hosts over SSH (not the state dir), and say for each
    /// whether it still matches the state dir.
    #[arg(long)]
    pub remote: bool,
}

#[derive(Debug, clap::Args)]
pub struct RotateCaArgs {
    /// Print the procedure without changing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print `<state>/rotation.json`: the CA being rotated, its stage and since when.
    #[arg(long, conflicts_with = "dry_run")]
    pub status: bool,
    /// What to rotate: etcd, kubernetes, front-proxy (one CA), all (the three CAs) or sa (the
    /// service-account signing key).
    #[arg(long, default_value = "etcd", value_parser = super::rotate::parse_ca)]
    pub ca: kubeforge_pki::Rotated,
    /// Hosts worked on at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

/// Serial-number randomness from the OS generator; a failure is remembered and makes the
/// command stop before anything is saved.
#[derive(Debug, Default)]
pub struct OsSerials {
    failed: bool,
}

impl SerialSource for OsSerials {
    fn fill(&mut self, buf: &mut [u8]) {
        if aws_lc_rs::rand::fill(buf).is_err() {
            self.failed = true;
        }
    }
}

impl OsSerials {
    /// Whether the generator failed at least once (nothing made with it may be kept).
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn check(&self) -> miette::Result<()> {
        if self.failed {
            return Err(miette!(
                "the operating system's random generator failed; nothing was saved"
            ));
        }
        Ok(())
    }
}

/// The validated spec named by `-f`.
pub(crate) fn load_cluster(global: &Global) -> miette::Result<Cluster> {
    crate::spec_file::load(&global.file)
}

pub fn run(global: &Global, cmd: Command) -> miette::Result<ExitCode> {
    let cluster = load_cluster(global)?;
    let state = StateDir::open(&global.state_dir(&cluster.name))?;
    match cmd {
        Command::Generate => {
            let _lock = state.lock()?;
            generate(&cluster, &state, global.output)
        }
        Command::CheckExpiration(args) if args.remote => {
            super::certs_remote::run(&cluster, &state, global.output, OffsetDateTime::now_utc())
        }
        Command::CheckExpiration(_) => {
            check_expiration(&state, global.output, OffsetDateTime::now_utc())
        }
        Command::Renew(args) => {
            let _lock = state.lock()?;
            let selection =
                if args.all { RenewSelection::All } else { RenewSelection::Names(args.names) };
            renew(&cluster, &state, &selection, global.output)
        }
        Command::RotateCa(args) if args.status => super::rotate::status(&state, global.output),
        Command::RotateCa(args) if args.dry_run => rotate_ca(&cluster, &state, args.ca, true),
        Command::RotateCa(args) => super::rotate::run(global, args.ca, args.concurrency),
    }
}

fn pki_error(e: kubeforge_pki::PkiError) -> miette::Report {
    miette!("{e}")
}

/// Brings the state dir's PKI in line with the spec and saves it. Used by `certs generate`
/// and `render`.
pub fn generate_and_save(
    cluster: &Cluster,
    state: &StateDir,
) -> miette::Result<(Store, Report, SaveSummary)> {
    let old = state.load_pki()?;
    let mut serials = OsSerials::default();
    let outcome = kubeforge_pki::generate(
        &pki_request(cluster),
        &old,
        OffsetDateTime::now_utc(),
        &mut serials,
    )
    .map_err(pki_error)
    .wrap_err_with(|| format!("certs generate: state dir {}", state.root().display()))?;
    serials.check()?;
    let summary = state.save_pki(&old, &outcome.store, &outcome.report.replaced_files())?;
    Ok((outcome.store, outcome.report, summary))
}

fn print_report(
    report: &Report,
    summary: &SaveSummary,
    output: OutputFormat,
) -> miette::Result<()> {
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Json => {
            let mut json = report.to_json();
            json["backupDir"] =
                serde_json::json!(summary.backup_dir.as_ref().map(|p| p.display().to_string()));
            writeln!(out, "{json:#}").into_diagnostic()?;
        }
        OutputFormat::Human => {
            write!(out, "{report}").into_diagnostic()?;
            if let Some(dir) = &summary.backup_dir {
                writeln!(out, "previous versions of replaced files: {}", dir.display())
                    .into_diagnostic()?;
            }
        }
    }
    Ok(())
}

pub fn generate(
    cluster: &Cluster,
    state: &StateDir,
    output: OutputFormat,
) -> miette::Result<ExitCode> {
    let (_, report, summary) = generate_and_save(cluster, state)?;
    print_report(&report, &summary, output)?;
    Ok(ExitCode::SUCCESS)
}

/// The state dir's PKI, which must exist.
pub(crate) fn existing_pki(state: &StateDir) -> miette::Result<Store> {
    let store = state.load_pki()?;
    if store.is_empty() {
        return Err(miette!(
            help = "run `kubeforge certs generate` first",
            "no PKI in {}",
            state.pki_dir().display()
        ));
    }
    Ok(store)
}

/// Prints the expiry table (or JSON); exit status 1 when anything has expired.
pub fn check_expiration(
    state: &StateDir,
    output: OutputFormat,
    now: OffsetDateTime,
) -> miette::Result<ExitCode> {
    let store = existing_pki(state)?;
    let entries = kubeforge_pki::check_expiration(&store, now).map_err(pki_error)?;
    let mut out = std::io::stdout().lock();
    match output {
        OutputFormat::Json => {
            let json: Vec<_> = entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "host": e.host, "name": e.name, "path": e.path, "subject": e.subject,
                        "signer": e.signer, "signedBy": e.signed_by, "signerKeyId": e.signer_key_id,
                        "ca": e.is_ca, "notAfter": e.not_after_rfc3339(),
                        "residualSeconds": e.residual_seconds, "residual": e.residual(),
                        "externallyManaged": e.externally_managed,
                        "status": match e.status { ExpiryStatus::Ok => "ok", ExpiryStatus::Warning => "warning", ExpiryStatus::Expired => "expired" },
                    })
                })
                .collect();
            writeln!(out, "{:#}", serde_json::Value::Array(json)).into_diagnostic()?;
        }
        OutputFormat::Human => {
            let rows: Vec<[String; 8]> = entries
                .iter()
                .map(|e| {
                    [
                        e.host.clone().unwrap_or_else(|| "-".into()),
                        e.name.clone(),
                        e.subject.clone(),
                        e.signer.clone(),
                        signed_by_text(e),
                        e.not_after_rfc3339(),
                        e.residual(),
                        if e.externally_managed { "yes".into() } else { "no".into() },
                    ]
                })
                .collect();
            let header = [
                "HOST",
                "CERTIFICATE",
                "SUBJECT",
                "SIGNER",
                "SIGNED BY",
                "EXPIRES",
                "RESIDUAL",
                "EXTERNALLY MANAGED",
            ];
            write_table(&mut out, header, &rows)?;
        }
    }
    for e in &entries {
        match e.status {
            ExpiryStatus::Warning => eprintln!(
                "warning: {} expires in {} ({})",
                e.path,
                e.residual(),
                e.not_after_rfc3339()
            ),
            ExpiryStatus::Expired => {
                eprintln!("error: {} expired on {}", e.path, e.not_after_rfc3339())
            }
            ExpiryStatus::Ok => {}
        }
    }
    let expired = entries.iter().any(|e| e.status == ExpiryStatus::Expired);
    Ok(if expired { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Which CA signed an entry: its file in the state dir and its key's short fingerprint
/// (`etcd/ca-prev 3f2a9c1b07d4e6a8`), which tells the old and the new CA apart during a rotation.
pub(crate) fn signed_by_text(e: &kubeforge_pki::ExpiryEntry) -> String {
    match (&e.signed_by, &e.signer_key_id) {
        (Some(base), Some(id)) => format!("{base} {id}"),
        _ => "not a CA of the state dir".into(),
    }
}

/// Writes left-aligned columns separated by two spaces, the header first.
pub(crate) fn write_table<const N: usize>(
    out: &mut impl std::io::Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> miette::Result<()> {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header = header.map(String::from);
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end()).into_diagnostic()?;
    }
    Ok(())
}

pub fn renew(
    cluster: &Cluster,
    state: &StateDir,
    selection: &RenewSelection,
    output: OutputFormat,
) -> miette::Result<ExitCode> {
    let old = state.load_pki()?;
    let mut serials = OsSerials::default();
    let outcome = kubeforge_pki::renew(
        &pki_request(cluster),
        &old,
        OffsetDateTime::now_utc(),
        &mut serials,
        selection,
    )
    .map_err(pki_error)
    .wrap_err("certs renew: nothing was changed")?;
    serials.check()?;
    let summary = state.save_pki(&old, &outcome.store, &outcome.report.replaced_files())?;
    print_report(&outcome.report, &summary, output)?;
    if output == OutputFormat::Human {
        println!(
            "The renewed certificates are in the state dir only: `kubeforge apply` distributes them (pki phase), then restarts the etcd members, control-plane pods and kubelets whose certificates changed (etcd and control planes one host at a time)."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--dry-run`: the procedure, changing nothing (and where a rotation under way stands).
pub fn rotate_ca(
    cluster: &Cluster,
    state: &StateDir,
    what: kubeforge_pki::Rotated,
    dry_run: bool,
) -> miette::Result<ExitCode> {
    debug_assert!(dry_run);
    if let Some(r) = super::rotate::load_record(state.root())?.filter(|r| !r.is_done()) {
        println!(
            "A rotation of the {} CA is under way: next stage {} (started {}).",
            r.ca, r.stage, r.started_at
        );
    }
    let store = state.load_pki()?;
    let from = kubeforge_pki::stage_of_rotated(&store, what);
    println!(
        "`certs rotate-ca --ca {what}` runs three stages; each is written to the state dir, then \
         rolled out like `apply` for the phases pki and etcd, plus control-plane and workers where \
         Kubernetes is installed (etcd members, then control planes, then kubelets restarted one \
         host at a time behind health gates when the files they read changed):"
    );
    for (i, st) in kubeforge_pki::RotationStage::ALL.into_iter().enumerate() {
        let mark = if from == Some(st) { " (the state dir is here)" } else { "" };
        println!("  {}. {st}{mark}: {}", i + 1, what.stage_summary(st));
    }
    if what == kubeforge_pki::Rotated::ServiceAccount {
        println!(
            "Tokens signed by the old key are rejected after drop-old: pods get new bound \
             tokens within an hour, legacy token Secrets must be recreated before drop-old."
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("\nThe procedure for all three CAs, host by host:");
    let plan =
        kubeforge_pki::plan_ca_rotation(&pki_request(cluster), &store, OffsetDateTime::now_utc())
            .map_err(pki_error)?;
    print!("{plan}");
    Ok(ExitCode::SUCCESS)
}
