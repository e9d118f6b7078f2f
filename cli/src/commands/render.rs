//! `kubeforge render`: writes every file each host receives to `DIR/<host>/<node path>` with its
//! node mode, so operators (and tests) can inspect exactly what apply would put on the hosts.
//! The PKI is generated first (as `certs generate` would, report on stderr). The output dir is
//! rebuilt as a whole: it must be empty, missing, or an earlier render's output (marked by a
//! `.kubeforge-render` file); anything else is refused. It holds the state lock while it works
//! (it may write the PKI and secrets).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::render::{RenderInput, RenderTree, render};
use miette::{IntoDiagnostic as _, WrapErr as _, miette};

use crate::context::Global;
use crate::state::StateDir;

/// Marks a directory as render output that a later render may replace.
pub const MARKER: &str = ".kubeforge-render";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (missing, empty, or an earlier render's output).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(global: &Global, args: Args) -> miette::Result<ExitCode> {
    let cluster = super::certs::load_cluster(global)?;
    let state = StateDir::open(&global.state_dir(&cluster.name))?;
    let _lock = state.lock()?;
    render_to(&cluster, &state, &args.out)
}

/// Generates the PKI into the state dir, renders the tree and writes it to `out`.
pub fn render_to(cluster: &Cluster, state: &StateDir, out: &Path) -> miette::Result<ExitCode> {
    let (store, report, _) = super::certs::generate_and_save(cluster, state)?;
    if !report.is_unchanged() {
        eprint!("{report}");
    }
    let secrets = crate::secrets_store::load_or_create(state.root())?;
    let tree = render(RenderInput { cluster, pki: &store, secrets: &secrets })
        .map_err(|e| miette!("{e}"))
        .wrap_err("render")?;
    let files = write_tree(&tree, out)?;
    println!("wrote {files} files for {} hosts to {}", tree.hosts.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

fn check_out_dir(out: &Path) -> miette::Result<bool> {
    match fs::read_dir(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => {
            Err(e).into_diagnostic().wrap_err_with(|| format!("cannot read {}", out.display()))
        }
        Ok(mut entries) => {
            // Empty, or an earlier render's output: ours to replace.
            if entries.next().is_none() || out.join(MARKER).is_file() {
                Ok(true)
            } else {
                Err(miette!(
                    help = "choose an empty or new directory; render replaces its whole output",
                    "{} is not empty and was not written by `kubeforge render`; refusing to write into it",
                    out.display()
                ))
            }
        }
    }
}

fn node_rel(path: &str) -> miette::Result<PathBuf> {
    let rel = Path::new(path.strip_prefix('/').unwrap_or(path));
    if !path.starts_with('/') || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(miette!("internal error: node path {path:?} is not a clean absolute path"));
    }
    Ok(rel.to_path_buf())
}

/// Writes the tree into a sibling temp dir, then swaps it in place of `out`; returns the
/// number of files written.
pub fn write_tree(tree: &RenderTree, out: &Path) -> miette::Result<usize> {
    let exists = check_out_dir(out)?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| miette!("{} has no file name", out.display()))?;
    let staging = parent.join(format!(".{name}.render.{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    // The output root is private (it holds keys); inside it, folders mirror the nodes' 0755.
    let mkdir = |dir: &Path, mode: u32| {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create {}", dir.display()))
    };
    mkdir(&staging, 0o700)?;
    let mut count = 0;
    for (host, files) in &tree.hosts {
        if Path::new(host).components().count() != 1 || host.starts_with('.') {
            return Err(miette!("internal error: host name {host:?} is not a plain name"));
        }
        for (node_path, file) in files {
            let target = staging.join(host).join(node_rel(node_path)?);
            if let Some(dir) = target.parent() {
                mkdir(dir, 0o755)?;
            }
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(file.mode)
                .open(&target)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot create {}", target.display()))?;
            f.write_all(&file.contents).into_diagnostic()?;
            // The umask may have masked bits off: set the node mode exactly.
            fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))
                .into_diagnostic()?;
            count += 1;
        }
    }
    fs::write(
        staging.join(MARKER),
        "written by kubeforge render; the whole directory is replaced on the next render\n",
    )
    .into_diagnostic()?;
    if exists {
        let old = parent.join(format!(".{name}.old.{}", std::process::id()));
        fs::rename(out, &old)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot move {} aside", out.display()))?;
        fs::rename(&staging, out)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot move the new render to {}", out.display()))?;
        fs::remove_dir_all(&old)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot remove the previous render {}", old.display()))?;
    } else {
        fs::rename(&staging, out)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create {}", out.display()))?;
    }
    Ok(count)
}
