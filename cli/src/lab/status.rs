//! `lab status`: each machine's role, address and whether its systemd-nspawn is running, as a
//! table or JSON. Rendering is pure; reading the process table is one call per machine.

use serde::Serialize;

use super::error::LabError;
use super::machine;
use super::ssh;
use super::state::{self, LabState, Paths};

/// One machine's current status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineStatus {
    pub host: String,
    pub role: String,
    pub address: String,
    /// `running` or `stopped`.
    pub state: &'static str,
    pub pid: Option<u32>,
    pub ssh: String,
}

/// The lab's status in `-o json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabStatus {
    pub name: String,
    pub subnet: String,
    pub bridge: String,
    pub vip: Option<String>,
    pub spec: String,
    pub machines: Vec<MachineStatus>,
}

/// Reads the state and looks at the processes.
pub fn status(paths: &Paths, name: &str) -> Result<LabStatus, LabError> {
    super::sys::require_root()?;
    let lab = state::load_existing(paths, name)?;
    Ok(of(&lab, machine::is_running))
}

/// The status of `lab`, with `running` deciding per machine.
pub fn of(lab: &LabState, running: impl Fn(&state::MachineState) -> bool) -> LabStatus {
    LabStatus {
        name: lab.name.clone(),
        subnet: lab.subnet.clone(),
        bridge: lab.bridge.clone(),
        vip: lab.vip.clone(),
        spec: lab.spec.display().to_string(),
        machines: lab
            .machines
            .iter()
            .map(|m| {
                let up = running(m);
                MachineStatus {
                    host: m.host.clone(),
                    role: m.role.to_string(),
                    address: m.address.clone(),
                    state: if up { "running" } else { "stopped" },
                    pid: m.pid.filter(|_| up),
                    ssh: ssh::login_hint(lab, m),
                }
            })
            .collect(),
    }
}

/// The human table.
pub fn render(s: &LabStatus) -> String {
    let mut out = format!("Lab {}: subnet {} on bridge {}", s.name, s.subnet, s.bridge);
    if let Some(vip) = &s.vip {
        out.push_str(&format!(", VIP {vip}"));
    }
    out.push_str(&format!("\nSpec: {}\n\n", s.spec));
    out.push_str(&format!("{:<8} {:<14} {:<15} {}\n", "MACHINE", "ROLE", "ADDRESS", "STATE"));
    for m in &s.machines {
        out.push_str(&format!("{:<8} {:<14} {:<15} {}\n", m.host, m.role, m.address, m.state));
    }
    if let Some(first) = s.machines.first() {
        out.push_str(&format!("\nLog in: {}\n", first.ssh));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Request, plan};
    use crate::lab::net::Subnet;
    use crate::lab::state::from_layout;
    use std::path::Path;

    #[test]
    fn table_shows_every_machine_and_its_state() {
        let req = Request { name: "t".into(), control_planes: 3, workers: 1, etcd: 0 };
        let mut lab = from_layout(
            &plan(&req, Subnet::from_index(2)).unwrap(),
            Path::new("/labs/t"),
            Path::new("/i"),
            Path::new("/a"),
            Path::new("/w/t.cluster.yaml"),
        );
        lab.set_pid("cp1", Some(10));
        lab.set_pid("cp2", Some(11));
        let s = of(&lab, |m| m.host == "cp1");
        assert_eq!(s.machines[0].pid, Some(10));
        assert_eq!(s.machines[1].pid, None, "a dead pid is not reported");
        assert_eq!(
            render(&s),
            "Lab t: subnet 10.200.2.0/24 on bridge kf-t, VIP 10.200.2.250\nSpec: /w/t.cluster.yaml\n\n\
             MACHINE  ROLE           ADDRESS         STATE\n\
             cp1      control-plane  10.200.2.11     running\n\
             cp2      control-plane  10.200.2.12     stopped\n\
             cp3      control-plane  10.200.2.13     stopped\n\
             w1       worker         10.200.2.51     stopped\n\n\
             Log in: ssh -i /labs/t/id_ed25519 -o UserKnownHostsFile=/labs/t/known_hosts root@10.200.2.11\n"
        );
    }
}
