//! `kubeforge backup …`: `create` (a verified snapshot from one healthy member, through an SSH
//! tunnel, into the state dir), `list` (local, or `--remote`: what the members' timers wrote),
//! `verify` (checksum, integrity trailer, restore into a throwaway etcd), `prune --keep N`, and
//! `run` (the unattended form the rendered timer and CronJob call on nodes, without a spec).
//! The work is done by `crate::backup`; this module wires flags, SSH, the audit log and output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::EtcdClientFiles;
use miette::{IntoDiagnostic as _, miette};

use crate::backup::source::{self, Origin};
use crate::backup::{self, BackupEntry, EtcdTools, RunStatus, retention, store, verify};
use crate::context::{Global, OutputFormat};
use crate::etcd::{Endpoint, EtcdTls, Timeouts};
use crate::exec::AuditLog;
use crate::exec::audit::backup_record;
use crate::state::StateDir;
use crate::transport::ssh::SshConnector;
use crate::transport::{ConnectOptions, Connector as _, LocalForward, SshTarget, Transport};

/// The etcd client port on each member's loopback.
const CLIENT_PORT: u16 = 2379;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream a snapshot from a healthy member (a follower when there is one) into the state
    /// dir's backups/, checked against etcd's integrity hash, with a JSON sidecar.
    Create(CreateArgs),
    /// List backups (newest first): local ones, or with --remote those on the etcd members.
    List(ListArgs),
    /// Check a backup: sha256 against its sidecar, etcd's integrity hash, then restore it into
    /// a throwaway etcd and report its revision and key count.
    Verify(VerifyArgs),
    /// Delete old backups, keeping the newest N and the newest verified one.
    Prune(PruneArgs),
    /// Unattended backup on a node (what the timer and the CronJob run): snapshot, sidecar,
    /// retention and a status file in the destination. Needs no spec.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Directory for the backup [default: <state>/backups].
    #[arg(long = "to")]
    pub to: Option<PathBuf>,
    /// How to reach the members' client port (2379): `direct` over mutual TLS to each
    /// member's address (needs that port reachable from this machine; saves the SSH server's
    /// and client's work on every byte), `tunnel` through SSH, or `auto`: direct when every
    /// member's port accepts a connection within a second, otherwise tunnels.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    pub via: Via,
    /// Shorthand for `--via direct`.
    #[arg(long, conflicts_with = "via")]
    pub direct: bool,
}

/// How `backup create` reaches the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    Auto,
    Direct,
    Tunnel,
}

/// How long `--via auto` waits for a member's client port to accept a connection.
const DIRECT_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether every address accepts a TCP connection within `timeout` (tried at once). Only a
/// reachability test: the snapshot itself is taken over mutual TLS, which authenticates the
/// member whatever path the packets take.
async fn all_accept(addrs: &[std::net::SocketAddr], timeout: std::time::Duration) -> bool {
    let mut tries = tokio::task::JoinSet::new();
    for addr in addrs.iter().copied() {
        tries.spawn(async move {
            matches!(
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            )
        });
    }
    let mut all = true;
    while let Some(accepted) = tries.join_next().await {
        all &= matches!(accepted, Ok(true));
    }
    all
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// List the backups on the etcd members (spec.backup.destination) instead.
    #[arg(long)]
    pub remote: bool,
    /// Directory to list [default: <state>/backups].
    #[arg(long = "dir")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A backup name from `backup list`, or a path to a .db.zst file.
    pub backup: String,
    /// Directory holding etcd and etcdutl (or etcdctl for 3.4) [default: the spec's etcd
    /// version from the artifact source].
    #[arg(long = "etcd-dir")]
    pub etcd_dir: Option<PathBuf>,
    /// Directory of backups names are looked up in [default: <state>/backups].
    #[arg(long = "dir")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// How many of the newest backups to keep (at least 1).
    #[arg(long)]
    pub keep: usize,
    /// Directory to prune [default: <state>/backups].
    #[arg(long = "dir")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// etcd client URLs, comma-separated; a healthy follower is preferred.
    #[arg(long = "etcd-endpoints", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    #[arg(long = "etcd-cacert")]
    pub cacert: PathBuf,
    #[arg(long = "etcd-cert")]
    pub cert: PathBuf,
    #[arg(long = "etcd-key")]
    pub key: PathBuf,
    /// Directory for snapshots, sidecars and the status file.
    #[arg(long)]
    pub destination: PathBuf,
    /// How many backups to keep (the newest; the newest verified one is always kept).
    #[arg(long, default_value_t = 14)]
    pub retention: usize,
}

pub fn run(global: &Global, cmd: Command) -> miette::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    match cmd {
        Command::Create(args) => runtime.block_on(create(global, args)),
        Command::List(args) => runtime.block_on(list(global, args)),
        Command::Verify(args) => runtime.block_on(verify_cmd(global, args)),
        Command::Prune(args) => prune(global, args),
        Command::Run(args) => Ok(runtime.block_on(unattended(args))),
    }
}

struct Spec {
    cluster: Cluster,
    state: StateDir,
}

fn load_spec(global: &Global) -> miette::Result<Spec> {
    let cluster = crate::spec_file::load(&global.file)?;
    let state = StateDir::open(&global.state_dir(&cluster.name))?;
    Ok(Spec { cluster, state })
}

fn backups_dir(global: &Global, dir: Option<PathBuf>) -> miette::Result<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => Ok(load_spec(global)?.state.root().join("backups")),
    }
}

fn audit_log(state: &StateDir, what: &str) -> Option<AuditLog> {
    let (stamp, _) = backup::stamps(time::OffsetDateTime::now_utc());
    AuditLog::create(state.root(), &format!("{stamp}-{}-backup-{what}", std::process::id())).ok()
}

fn read_tls(files: &EtcdClientFiles) -> miette::Result<EtcdTls> {
    EtcdTls::from_files(files).map_err(|e| {
        miette!(
            help = "run `kubeforge certs generate` for this spec first",
            "the etcd client credentials: {e}"
        )
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// SSH connections to the etcd member hosts that answer, in the spec's order (all connected at
/// once: each handshake costs a round trip or three, which is a noticeable part of a small
/// backup's time); the reasons of those that do not.
async fn connect_members(spec: &Spec) -> (Vec<(String, Arc<dyn Transport>)>, Vec<String>) {
    let connector = Arc::new(SshConnector::new(ConnectOptions::default()));
    let known_hosts = spec.state.root().join("known_hosts");
    let home = crate::transport::home::home_from_env();
    let mut tasks = tokio::task::JoinSet::new();
    let mut failed = Vec::new();
    for (index, host) in spec.cluster.etcd_members().enumerate() {
        let target = match SshTarget::from_host(host, &known_hosts, home.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                failed.push(format!("{}: {e}", host.name));
                continue;
            }
        };
        let connector = connector.clone();
        let name = host.name.clone();
        tasks.spawn(async move {
            let connected = connector.connect(&target).await;
            (index, name, connected)
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(one) => done.push(one),
            Err(e) => failed.push(format!("an SSH connection task failed: {e}")),
        }
    }
    done.sort_by_key(|(index, _, _)| *index);
    let mut ok = Vec::new();
    for (_, name, connected) in done {
        match connected {
            Ok(t) => ok.push((name, t)),
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    (ok, failed)
}

async fn create(global: &Global, args: CreateArgs) -> miette::Result<ExitCode> {
    let spec = load_spec(global)?;
    let dir = args.to.clone().unwrap_or_else(|| spec.state.root().join("backups"));
    let Some(first) = spec.cluster.etcd_members().next() else {
        return Err(miette!("the spec has no etcd members to back up"));
    };
    let pki_dir = spec.state.pki_dir().display().to_string();
    let tls = read_tls(&EtcdClientFiles::for_member(&pki_dir, &first.name))?;
    let mut forwards: Vec<LocalForward> = Vec::new();
    let mut endpoints = Vec::new();
    let mut reasons = Vec::new();
    let member_addrs: Vec<std::net::SocketAddr> = spec
        .cluster
        .etcd_members()
        .map(|h| std::net::SocketAddr::new(h.address, CLIENT_PORT))
        .collect();
    let direct = match (args.direct, args.via) {
        (true, _) | (_, Via::Direct) => true,
        (_, Via::Tunnel) => false,
        (_, Via::Auto) => all_accept(&member_addrs, DIRECT_PROBE).await,
    };
    if direct {
        for (host, addr) in spec.cluster.etcd_members().zip(&member_addrs) {
            endpoints.push(Endpoint::new(host.name.clone(), format!("https://{addr}")));
        }
    } else {
        let (transports, failed) = connect_members(&spec).await;
        reasons = failed;
        for (host, t) in &transports {
            match t.forward_local(CLIENT_PORT).await {
                Ok(f) => {
                    endpoints.push(Endpoint::new(
                        host.clone(),
                        format!("https://127.0.0.1:{}", f.local_addr().port()),
                    ));
                    forwards.push(f);
                }
                Err(e) => reasons.push(format!("{host}: {e}")),
            }
        }
    }
    let started = Instant::now();
    let audit = audit_log(&spec.state, "create");
    let chosen = match source::pick_member(&endpoints, Some(&tls), Timeouts::default()).await {
        Ok(c) => c,
        Err(e) => {
            let mut text = e.to_string();
            if !reasons.is_empty() {
                text.push_str(&format!("; unreachable over SSH: {}", reasons.join("; ")));
            }
            if let Some(a) = &audit {
                a.record(&backup_record("-", "create", vec![], started, text.clone()));
            }
            return Err(miette!(
                help = "check the members with `kubeforge plan --until etcd`; start etcd where \
                        it is down, then run backup create again",
                "{text}"
            ));
        }
    };
    let member = chosen.client.endpoint().name.clone();
    let origin = Origin {
        cluster: Some(&spec.cluster.name),
        spec_sha256: source::file_sha256(&global.file),
        created_by: "kubeforge backup create",
        prefix: &spec.cluster.name,
    };
    let result = source::take(&chosen, &dir, origin, |_, _| {}).await;
    let taken = match result {
        Ok(t) => t,
        Err(e) => {
            if let Some(a) = &audit {
                a.record(&backup_record(&member, "create", vec![], started, e.to_string()));
            }
            return Err(miette!(
                help = "nothing was kept; fix what the error names and run backup create again",
                "backup from {member} failed: {e}"
            ));
        }
    };
    let path = taken.snapshot.path.display().to_string();
    let secs = taken.elapsed.as_secs_f64().max(0.001);
    let summary = format!(
        "saved {} ({} db, {} stored, revision {}, {} keys) in {:.1} s",
        path,
        mib(taken.sidecar.db_size),
        mib(taken.sidecar.file_size),
        taken.sidecar.revision,
        taken.sidecar.key_count,
        secs
    );
    if let Some(a) = &audit {
        a.record(&backup_record(&member, "create", vec![path.clone()], started, summary.clone()));
    }
    match global.output {
        OutputFormat::Json => {
            let json = serde_json::json!({
                "path": path,
                "sidecar": taken.sidecar_path,
                "seconds": secs,
                "mibPerSecond": taken.sidecar.db_size as f64 / 1048576.0 / secs,
                "via": if direct { "direct" } else { "tunnel" },
                "backup": taken.sidecar,
            });
            println!("{}", serde_json::to_string_pretty(&json).into_diagnostic()?);
        }
        OutputFormat::Human => {
            let role = if chosen.is_leader { "leader" } else { "follower" };
            let path = if direct { "direct mutual TLS" } else { "SSH tunnel, mutual TLS" };
            println!(
                "Backup of cluster {} from {member} ({role}, etcd {}, {path})",
                spec.cluster.name, chosen.status.version
            );
            println!("  {summary}");
            println!("  sidecar {}", taken.sidecar_path.display());
            println!(
                "  check it with: kubeforge backup verify {}",
                taken.sidecar.file.trim_end_matches(backup::SNAPSHOT_SUFFIX)
            );
        }
    }
    drop(forwards);
    Ok(ExitCode::SUCCESS)
}

fn print_entries(entries: &[BackupEntry], heading: &str) {
    println!("{heading}");
    if entries.is_empty() {
        println!("  (no backups)");
    }
    for e in entries {
        match &e.sidecar {
            Some(s) => println!(
                "  {}  {}  {}  rev {}  {} keys  from {}  etcd {}{}",
                e.name,
                s.created_at,
                mib(e.size),
                s.revision,
                s.key_count,
                s.member,
                s.etcd_version,
                if s.verified.is_some() { "  verified" } else { "" }
            ),
            None => println!(
                "  {}  {}  ({})",
                e.name,
                mib(e.size),
                e.sidecar_error.as_deref().unwrap_or("no sidecar")
            ),
        }
    }
}

async fn list(global: &Global, args: ListArgs) -> miette::Result<ExitCode> {
    if !args.remote {
        let dir = backups_dir(global, args.dir)?;
        let entries = store::list(&dir).map_err(|e| miette!("{e}"))?;
        match global.output {
            OutputFormat::Json => {
                println!("{}", serde_json::to_string_pretty(&entries).into_diagnostic()?)
            }
            OutputFormat::Human => print_entries(&entries, &format!("{}:", dir.display())),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let spec = load_spec(global)?;
    let Some(dest) = spec.cluster.backup.as_ref().map(|b| b.destination.display().to_string())
    else {
        return Err(miette!(
            help = "add spec.backup with a schedule to have the members back themselves up",
            "the spec has no backup section, so no member writes backups"
        ));
    };
    let (transports, failed) = connect_members(&spec).await;
    let mut all = serde_json::Map::new();
    for (host, t) in &transports {
        let listing = remote_list(t.as_ref(), &dest).await;
        match global.output {
            OutputFormat::Json => {
                let value = match &listing {
                    Ok((entries, status)) => {
                        serde_json::json!({"backups": entries, "status": status})
                    }
                    Err(e) => serde_json::json!({"error": e}),
                };
                all.insert(host.clone(), value);
            }
            OutputFormat::Human => match &listing {
                Ok((entries, status)) => {
                    print_entries(entries, &format!("{host}:{dest}:"));
                    if let Some(s) = &status.last_success {
                        println!("  last success {}: {}", s.at, s.detail);
                    }
                    if let Some(f) = &status.last_failure {
                        println!("  last failure {}: {}", f.at, f.detail);
                    }
                }
                Err(e) => println!("{host}: {e}"),
            },
        }
    }
    for f in &failed {
        match global.output {
            OutputFormat::Json => {
                all.insert(
                    f.split(':').next().unwrap_or_default().to_string(),
                    serde_json::json!({"error": f}),
                );
            }
            OutputFormat::Human => println!("{f}"),
        }
    }
    if global.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&all).into_diagnostic()?);
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The backups in `dest` on a host, from their sidecars, and its status file.
async fn remote_list(
    t: &dyn Transport,
    dest: &str,
) -> Result<(Vec<BackupEntry>, RunStatus), String> {
    use crate::transport::RemoteCommand;
    // No destination yet (no run so far) lists as empty.
    let d = crate::transport::quote::word(dest);
    let cmd = RemoteCommand::shell(format!(
        "test -d {d} || exit 0; find {d} -maxdepth 1 -name '*.db.zst' -printf '%f %s\\n'"
    ));
    let out = t.run(&cmd).await.map_err(|e| e.to_string())?;
    if out.exit_status != 0 {
        return Err(format!("cannot list {dest}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let mut entries = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((file, size)) = line.rsplit_once(' ') else { continue };
        if file.starts_with('.') {
            continue;
        }
        let name = file.trim_end_matches(backup::SNAPSHOT_SUFFIX).to_string();
        let side = format!("{dest}/{name}{}", backup::SIDECAR_SUFFIX);
        let (sidecar, sidecar_error) = match t.read_file(&side).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<backup::Sidecar>(&bytes) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            },
            Ok(None) => (None, Some("no sidecar".to_string())),
            Err(e) => (None, Some(e.to_string())),
        };
        entries.push(BackupEntry {
            name,
            path: PathBuf::from(format!("{dest}/{file}")),
            size: size.parse().unwrap_or_default(),
            sidecar,
            sidecar_error,
        });
    }
    entries.sort_by(|a, b| (b.created(), &b.name).cmp(&(a.created(), &a.name)));
    let status = match t.read_file(&format!("{dest}/{}", backup::STATUS_FILE)).await {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_default(),
        _ => RunStatus::default(),
    };
    Ok((entries, status))
}

/// The etcd binaries of the spec's etcd version from the artifact source (or cache).
fn tools_from_spec(global: &Global, spec: &Spec) -> miette::Result<EtcdTools> {
    let spec_dir = global.file.parent().unwrap_or(Path::new("."));
    crate::artifacts::etcd_tools(&spec.cluster, spec_dir)
}

async fn verify_cmd(global: &Global, args: VerifyArgs) -> miette::Result<ExitCode> {
    let spec =
        if args.etcd_dir.is_none() || (args.dir.is_none() && !Path::new(&args.backup).is_file()) {
            Some(load_spec(global)?)
        } else {
            load_spec(global).ok()
        };
    let tools = match &args.etcd_dir {
        Some(dir) => EtcdTools::from_dir(dir).ok_or_else(|| {
            miette!("{} has no etcd with etcdutl or etcdctl beside it", dir.display())
        })?,
        None => tools_from_spec(global, spec.as_ref().expect("loaded above"))?,
    };
    let dir = match (&args.dir, &spec) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) => s.state.root().join("backups"),
        (None, None) => PathBuf::from("."),
    };
    let path = store::resolve(&dir, &args.backup).map_err(|e| miette!("{e}"))?;
    let started = Instant::now();
    let audit = spec.as_ref().and_then(|s| audit_log(&s.state, "verify"));
    let target = vec![path.display().to_string()];
    let verified = match verify::verify(&path, &tools).await {
        Ok(v) => v,
        Err(e) => {
            if let Some(a) = &audit {
                a.record(&backup_record(
                    "local",
                    "verify",
                    target,
                    started,
                    format!("refused: {e}"),
                ));
            }
            return Err(miette!(
                help = "do not restore from this backup; take a new one with `kubeforge backup \
                        create`, or verify an older one (`kubeforge backup list`)",
                "backup refused: {e}"
            ));
        }
    };
    let (_, at) = backup::stamps(time::OffsetDateTime::now_utc());
    let recorded = verify::record(&path, &verified, &at);
    let summary = format!(
        "verified: revision {}, {} keys, restored with {} and served by etcd {}",
        verified.revision, verified.key_count, verified.restored_with, verified.etcd_version
    );
    if let Some(a) = &audit {
        a.record(&backup_record("local", "verify", target, started, summary.clone()));
    }
    match global.output {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&verified).into_diagnostic()?)
        }
        OutputFormat::Human => {
            println!("{}: {summary}", path.display());
            println!(
                "  {}; etcd's sha256 trailer matches ({} db)",
                if verified.checked_against_sidecar {
                    "sha256 matches the sidecar"
                } else {
                    "no sidecar to check against"
                },
                mib(verified.db_size)
            );
        }
    }
    if let Err(e) = recorded {
        eprintln!("warning: could not record the verification in the sidecar: {e}");
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(global: &Global, args: PruneArgs) -> miette::Result<ExitCode> {
    let spec = if args.dir.is_none() { Some(load_spec(global)?) } else { load_spec(global).ok() };
    let dir = match (&args.dir, &spec) {
        (Some(d), _) => d.clone(),
        (None, Some(s)) => s.state.root().join("backups"),
        (None, None) => unreachable!("loaded above"),
    };
    let started = Instant::now();
    let deleted = retention::prune(&dir, args.keep).map_err(|e| miette!("{e}"))?;
    if let Some(a) = spec.as_ref().and_then(|s| audit_log(&s.state, "prune")) {
        let target = deleted.iter().map(|p| p.display().to_string()).collect();
        a.record(&backup_record(
            "local",
            "prune",
            target,
            started,
            format!("deleted {}", deleted.len()),
        ));
    }
    match global.output {
        OutputFormat::Json => {
            println!("{}", serde_json::json!({ "deleted": deleted, "kept": args.keep }));
        }
        OutputFormat::Human => {
            for p in &deleted {
                println!("deleted {}", p.display());
            }
            println!("{} backup(s) deleted from {}", deleted.len(), dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `backup run`: one line on stdout when it worked, one line on stderr and a non-zero exit when
/// it did not; the status file records either. Retention runs only after a new backup was kept.
async fn unattended(args: RunArgs) -> ExitCode {
    let (_, at) = backup::stamps(time::OffsetDateTime::now_utc());
    let mut status = RunStatus::load(&args.destination);
    match run_once(&args).await {
        Ok((line, revision)) => {
            status.last_success =
                Some(store::RunOutcome { at, detail: line.clone(), revision: Some(revision) });
            status.last_result = Some("success".into());
            match status.save(&args.destination) {
                Ok(_) => {
                    println!("kubeforge backup run: {line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "kubeforge backup run failed: {line}, but the status file could not be written: {e}"
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Err(reason) => {
            let reason = reason.replace('\n', " ");
            status.last_failure =
                Some(store::RunOutcome { at, detail: reason.clone(), revision: None });
            status.last_result = Some("failure".into());
            let saved = status.save(&args.destination);
            match saved {
                Ok(_) => eprintln!("kubeforge backup run failed: {reason}"),
                Err(e) => eprintln!(
                    "kubeforge backup run failed: {reason} (status file not written: {e})"
                ),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run_once(args: &RunArgs) -> Result<(String, i64), String> {
    if args.retention == 0 {
        return Err("--retention must be at least 1".into());
    }
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| format!("cannot read the etcd {what} {}: {e}", p.display()))
    };
    let tls = EtcdTls {
        ca_pem: read(&args.cacert, "CA")?,
        cert_pem: read(&args.cert, "client certificate")?,
        key_pem: read(&args.key, "client key")?,
        server_name: None,
    };
    let endpoints: Vec<Endpoint> = args
        .endpoints
        .iter()
        .filter(|e| !e.trim().is_empty())
        .map(|url| {
            let host =
                url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or(url);
            Endpoint::new(host, url.trim())
        })
        .collect();
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(10),
        reconfigure: Duration::from_secs(5),
    };
    let chosen =
        source::pick_member(&endpoints, Some(&tls), timeouts).await.map_err(|e| e.to_string())?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    let prefix = format!("etcd-{hostname}");
    let origin = Origin {
        cluster: None,
        spec_sha256: None,
        created_by: "kubeforge backup run",
        prefix: &prefix,
    };
    let taken = source::take(&chosen, &args.destination, origin, |_, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let line = format!(
        "saved {} ({} db, {} stored, revision {}, {} keys, from {} etcd {}) in {:.1} s",
        taken.snapshot.path.display(),
        mib(taken.sidecar.db_size),
        mib(taken.sidecar.file_size),
        taken.sidecar.revision,
        taken.sidecar.key_count,
        chosen.client.endpoint().url,
        chosen.status.version,
        taken.elapsed.as_secs_f64()
    );
    let deleted = retention::prune(&args.destination, args.retention)
        .map_err(|e| format!("{line}, but retention failed: {e}"))?;
    Ok((
        format!("{line}; retention {} deleted {}", args.retention, deleted.len()),
        taken.sidecar.revision,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn auto_goes_direct_only_when_every_member_port_accepts() {
        let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_addr = open.local_addr().unwrap();
        // A port bound then released: nothing listens there, the connect is refused.
        let closed_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let t = std::time::Duration::from_secs(1);
        assert!(all_accept(&[open_addr], t).await);
        assert!(!all_accept(&[open_addr, closed_addr], t).await);
        assert!(!all_accept(&[closed_addr], t).await);
    }
}
