//! `lab up`: image and artifacts (cached), subnet and bridge, machine roots, boot, spec, and the
//! wait until every machine answers SSH with systemd running. The state file is written before
//! anything is created on the host, so `lab down` can always clean up after a failed `up`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::LabError;
use super::layout::{self, Request};
use super::net::{self, Ipv4Net};
use super::state::{self, LabState, Paths};
use super::{artifacts, image, machine, spec, ssh, sys};

/// How long `up` and `start` wait for machines to boot.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// What `lab up` was asked to do.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub request: Request,
    /// Where the spec goes (`./<name>.cluster.yaml` by default).
    pub spec_out: PathBuf,
}

/// Creates and boots the lab; returns its state once every machine is ready.
pub fn up(paths: &Paths, opts: &UpOptions) -> Result<LabState, LabError> {
    sys::require_root()?;
    sys::require_tools(sys::UP_TOOLS)?;
    layout::validate_request(&opts.request)?;
    let name = &opts.request.name;
    let spec_path = absolute(&opts.spec_out)?;
    check_spec_path(&spec_path)?;

    let image = image::ensure(paths)?;
    let artifacts = artifacts::ensure(paths)?;

    let mut lab = {
        let _lock = state::lock(&paths.labs_lock())?;
        let lab_dir = paths.lab_dir(name);
        if lab_dir.exists() {
            return Err(LabError::AlreadyUp { name: name.clone(), dir: lab_dir });
        }
        let mut taken = net::host_routes()?;
        taken.extend(state::other_lab_subnets(paths).iter().filter_map(|s| Ipv4Net::parse(s)));
        let subnet = net::pick_subnet(name, &taken)?;
        let layout = layout::plan(&opts.request, subnet)?;
        sys::create_private_dir(&lab_dir)?;
        let lab = state::from_layout(&layout, &lab_dir, &image, &artifacts, &spec_path);
        state::save(paths, &lab)?;
        net::create_bridge(&lab.bridge, layout.gateway)?;
        lab
    };

    let public_key = ssh::make_lab_key(&lab.identity_file, name)?;
    let mut known_hosts = String::new();
    for m in &lab.machines {
        let host_key = machine::create_root(&lab, m, &public_key)?;
        known_hosts
            .push_str(&ssh::known_hosts_line(&m.host, &m.address, &host_key).unwrap_or_default());
    }
    sys::write_atomic(&lab.known_hosts, known_hosts.as_bytes(), 0o644)?;

    for i in 0..lab.machines.len() {
        let pid = machine::boot(&lab, &lab.machines[i])?;
        lab.machines[i].pid = Some(pid);
        state::save(paths, &lab)?;
    }

    let shown_path = display_path(&opts.spec_out, &spec_path);
    let spec_text = spec::render(&lab, &shown_path);
    spec::check(&spec_text, &spec_path.display().to_string())
        .map_err(|detail| LabError::SpecInvalid { path: spec_path.clone(), detail })?;
    sys::write_atomic(&spec_path, spec_text.as_bytes(), 0o644)?;

    let all: Vec<_> = lab.machines.iter().collect();
    ssh::wait_ready(&lab, &all, BOOT_TIMEOUT)?;
    Ok(lab)
}

/// Refuses to replace a file that `lab up` did not write.
fn check_spec_path(path: &Path) -> Result<(), LabError> {
    match fs::read_to_string(path) {
        Ok(text) if spec::may_overwrite(&text) => Ok(()),
        Ok(_) => Err(LabError::SpecExists { path: path.to_path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(LabError::SpecExists { path: path.to_path_buf() }),
    }
}

fn absolute(p: &Path) -> Result<PathBuf, LabError> {
    std::path::absolute(p).map_err(|e| LabError::io("resolve the path", p, e))
}

/// The spec path as the user gave it when relative (for the hints inside the spec).
fn display_path(given: &Path, absolute: &Path) -> PathBuf {
    if given.is_relative() { given.to_path_buf() } else { absolute.to_path_buf() }
}
