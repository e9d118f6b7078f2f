//! `lab stop NODE` and `lab start NODE`: power one machine off (clean systemd shutdown, its
//! root unmounted, its files kept) and on again, for failure tests.

use std::time::Duration;

use super::error::LabError;
use super::state::{self, LabState, Paths};
use super::up::BOOT_TIMEOUT;
use super::{machine, ssh, sys};

/// Whether the call changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Done,
    AlreadyThere,
}

/// Powers `node` off; its files stay for the next start.
pub fn stop(paths: &Paths, name: &str, node: &str) -> Result<Change, LabError> {
    sys::require_root()?;
    sys::require_tools(sys::RUN_TOOLS)?;
    let _lock = state::lock(&paths.labs_lock())?;
    let mut lab = state::load_existing(paths, name)?;
    let m = lab.machine(node)?.clone();
    let change = match m.pid {
        Some(pid) if machine::is_running(&m) => {
            machine::power_off(pid, &m.root(), Duration::from_secs(30))?;
            Change::Done
        }
        _ => Change::AlreadyThere,
    };
    machine::unmount_all_under(&m.root())?;
    lab.set_pid(node, None);
    state::save(paths, &lab)?;
    Ok(change)
}

/// Boots `node` again and waits until it answers SSH with systemd running.
pub fn start(paths: &Paths, name: &str, node: &str) -> Result<(LabState, Change), LabError> {
    sys::require_root()?;
    sys::require_tools(sys::RUN_TOOLS)?;
    let lab = {
        let _lock = state::lock(&paths.labs_lock())?;
        let mut lab = state::load_existing(paths, name)?;
        let m = lab.machine(node)?.clone();
        if machine::is_running(&m) {
            return Ok((lab, Change::AlreadyThere));
        }
        machine::mount_overlay(&lab.image, &m)?;
        let pid = machine::boot(&lab, &m)?;
        lab.set_pid(node, Some(pid));
        state::save(paths, &lab)?;
        lab
    };
    ssh::wait_ready(&lab, &[lab.machine(node)?], BOOT_TIMEOUT)?;
    Ok((lab, Change::Done))
}
