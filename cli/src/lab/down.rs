//! `lab down`: powers every machine off, unmounts their roots, deletes veths and the bridge and
//! removes the lab directory. Idempotent, and it works without a readable state file: processes
//! and mounts are found by their paths under the lab directory, the bridge by its derived name.

use std::fs;
use std::time::Duration;

use super::error::LabError;
use super::layout;
use super::state::{self, Paths};
use super::{machine, net, sys};

/// What `down` found and removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DownReport {
    pub machines_stopped: usize,
    pub removed_dir: bool,
    pub removed_bridge: bool,
}

impl DownReport {
    pub fn nothing_found(&self) -> bool {
        *self == DownReport::default()
    }
}

/// Removes the lab `name` and everything it made on this host.
pub fn down(paths: &Paths, name: &str) -> Result<DownReport, LabError> {
    sys::require_root()?;
    sys::require_tools(sys::RUN_TOOLS)?;
    layout::validate_name(name)?;
    let _lock = state::lock(&paths.labs_lock())?;
    let lab_dir = paths.lab_dir(name);
    let recorded = match state::load(paths, name) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e}; cleaning up by paths instead");
            None
        }
    };
    let mut report = DownReport::default();

    let roots = machine::mount_points_under(&machine::read_mountinfo()?, &lab_dir);
    let locks: Vec<_> = roots.iter().filter_map(|r| machine::nspawn_lock_file(r)).collect();
    let pids = machine::nspawn_pids_under(&lab_dir);
    report.machines_stopped = pids.len();
    std::thread::scope(|scope| {
        for pid in &pids {
            if let Some(root) = machine::nspawn_root(*pid) {
                scope.spawn(move || machine::power_off(*pid, &root, Duration::from_secs(20)));
            }
        }
    });
    machine::unmount_all_under(&lab_dir)?;
    for lock in locks {
        let _ = fs::remove_file(lock); // absent after a clean exit
    }

    let bridge = recorded.as_ref().map_or_else(|| layout::bridge_name(name), |s| s.bridge.clone());
    if net::link_exists(&bridge) {
        for port in net::bridge_ports(&bridge) {
            net::delete_link(&port)?;
        }
        net::delete_link(&bridge)?;
        report.removed_bridge = true;
    }

    if lab_dir.exists() {
        let left = machine::mount_points_under(&machine::read_mountinfo()?, &lab_dir);
        if let Some(point) = left.first() {
            return Err(LabError::Command {
                what: "unmounting the lab's machine roots".into(),
                argv: format!("umount {}", point.display()),
                status: "still mounted".into(),
                stderr_tail: String::new(),
                help:
                    "find what still uses it with `fuser -m`, then run `kubeforge lab down` again"
                        .into(),
            });
        }
        fs::remove_dir_all(&lab_dir)
            .map_err(|e| LabError::io("remove the lab directory", &lab_dir, e))?;
        report.removed_dir = true;
    }
    Ok(report)
}
