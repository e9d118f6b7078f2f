//! Shared by the `render_*` and `cis_*` tests (included with `#[path]`): the example clusters,
//! deterministic secrets, the configs render tree, and writing a tree to disk the way
//! `kubeforge render` lays it out (`DIR/<host>/<absolute node path>`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::render::{RenderInput, RenderTree, configs};
use kubeforge_playbooks::secrets::ClusterSecrets;

pub const EXAMPLES: [&str; 3] = ["stacked", "external", "node-local"];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// An example spec from `examples/`, validated by the real loader.
pub fn example(name: &str) -> Cluster {
    let path = repo_root().join("examples").join(format!("{name}.yaml"));
    let source = std::fs::read_to_string(&path).unwrap();
    match kubeforge_playbooks::spec::load_str(&source, &path.display().to_string()) {
        Ok(cluster) => cluster,
        Err(e) => panic!("{name}.yaml does not validate: {e:?}"),
    }
}

/// Secrets from a fixed byte stream, so golden files are stable.
pub fn secrets() -> ClusterSecrets {
    let mut next = 11u8;
    ClusterSecrets::generate(|buf: &mut [u8]| {
        for b in buf {
            *b = next;
            next = next.wrapping_mul(5).wrapping_add(3);
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap()
}

/// Every config and manifest of `cluster` (the PKI renderer's files are not included).
pub fn render_configs(cluster: &Cluster) -> RenderTree {
    let pki = kubeforge_pki::Store::new();
    let secrets = secrets();
    let input = RenderInput { cluster, pki: &pki, secrets: &secrets };
    let mut tree = RenderTree::default();
    if let Err(e) = configs::add_files(input, &mut tree) {
        panic!("rendering {} failed: {e}", cluster.name);
    }
    tree
}

/// Writes `tree` below `dir` as `<host>/<node path>`.
pub fn write_tree(tree: &RenderTree, dir: &Path) {
    for (host, files) in &tree.hosts {
        for (path, file) in files {
            let target = dir.join(host).join(path.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::write(&target, &file.contents).unwrap();
        }
    }
}

/// The file at `path` on `host` as text.
pub fn text<'a>(tree: &'a RenderTree, host: &str, path: &str) -> &'a str {
    let file = tree.hosts[host].get(path).unwrap_or_else(|| panic!("{host} has no {path}"));
    std::str::from_utf8(&file.contents).unwrap()
}
