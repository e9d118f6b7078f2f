//! Where labs live on disk and the small JSON state file of each lab (machines, addresses,
//! pids), so that `status`, `stop`, `start` and `down` work from another process. Reading and
//! writing only; what the state means is decided elsewhere.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::LabError;
use super::layout::{LabRole, Layout};
use super::sys;

/// The lab's directories: a shared cache (image, artifacts) and one directory per lab.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `KUBEFORGE_LAB_CACHE`, default `/var/cache/kubeforge/lab`.
    pub cache: PathBuf,
    /// `KUBEFORGE_LAB_HOME`, default `/var/lib/kubeforge/lab`.
    pub labs: PathBuf,
}

impl Paths {
    pub fn from_env() -> Self {
        let var = |name, default| {
            std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
        };
        Paths {
            cache: var("KUBEFORGE_LAB_CACHE", "/var/cache/kubeforge/lab"),
            labs: var("KUBEFORGE_LAB_HOME", "/var/lib/kubeforge/lab"),
        }
    }
    pub fn lab_dir(&self, name: &str) -> PathBuf {
        self.labs.join(name)
    }
    pub fn state_file(&self, name: &str) -> PathBuf {
        self.lab_dir(name).join(STATE_FILE)
    }
    /// The lock file serialising lab creation (subnet choice) and removal.
    pub fn labs_lock(&self) -> PathBuf {
        self.labs.join(".lock")
    }
}

pub const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;

/// A lab as recorded on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabState {
    pub version: u32,
    pub name: String,
    pub subnet: String,
    pub bridge: String,
    pub gateway: String,
    pub vip: Option<String>,
    pub image: PathBuf,
    pub artifacts: PathBuf,
    pub spec: PathBuf,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    pub machines: Vec<MachineState>,
}

/// One machine as recorded on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MachineState {
    pub host: String,
    pub machine: String,
    pub role: LabRole,
    pub address: String,
    /// `<lab>/machines/<host>`: holds `upper/`, `work/`, `root/` (the overlay) and `console.log`.
    pub dir: PathBuf,
    /// The systemd-nspawn process while the machine runs.
    pub pid: Option<u32>,
}

impl MachineState {
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
}

/// The initial state of a planned lab (no machine running yet).
pub fn from_layout(
    layout: &Layout,
    lab_dir: &Path,
    image: &Path,
    artifacts: &Path,
    spec: &Path,
) -> LabState {
    LabState {
        version: STATE_VERSION,
        name: layout.name.clone(),
        subnet: layout.subnet.to_string(),
        bridge: layout.bridge.clone(),
        gateway: layout.gateway.to_string(),
        vip: layout.vip.map(|v| v.to_string()),
        image: image.to_path_buf(),
        artifacts: artifacts.to_path_buf(),
        spec: spec.to_path_buf(),
        identity_file: lab_dir.join("id_ed25519"),
        known_hosts: lab_dir.join("known_hosts"),
        machines: layout
            .machines
            .iter()
            .map(|m| MachineState {
                host: m.host.clone(),
                machine: m.machine.clone(),
                role: m.role,
                address: m.address.to_string(),
                dir: lab_dir.join("machines").join(&m.host),
                pid: None,
            })
            .collect(),
    }
}

impl LabState {
    pub fn machine(&self, host: &str) -> Result<&MachineState, LabError> {
        self.machines.iter().find(|m| m.host == host).ok_or_else(|| LabError::UnknownNode {
            lab: self.name.clone(),
            node: host.to_string(),
            known: self.machines.iter().map(|m| m.host.as_str()).collect::<Vec<_>>().join(", "),
        })
    }
    pub fn set_pid(&mut self, host: &str, pid: Option<u32>) {
        if let Some(m) = self.machines.iter_mut().find(|m| m.host == host) {
            m.pid = pid;
        }
    }
}

/// Reads a lab's state; `Ok(None)` when the lab does not exist.
pub fn load(paths: &Paths, name: &str) -> Result<Option<LabState>, LabError> {
    let path = paths.state_file(name);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LabError::io("read", path, e)),
    };
    let state: LabState = serde_json::from_str(&text)
        .map_err(|e| LabError::BadState { path: path.clone(), reason: e.to_string() })?;
    if state.version != STATE_VERSION || state.name != name {
        return Err(LabError::BadState {
            path,
            reason: format!(
                "version {} of lab `{}`, expected version {STATE_VERSION} of `{name}`",
                state.version, state.name
            ),
        });
    }
    Ok(Some(state))
}

/// Reads a lab's state or fails with "no such lab".
pub fn load_existing(paths: &Paths, name: &str) -> Result<LabState, LabError> {
    load(paths, name)?
        .ok_or_else(|| LabError::NotUp { name: name.to_string(), state: paths.state_file(name) })
}

/// Writes the state file atomically (mode 0600).
pub fn save(paths: &Paths, state: &LabState) -> Result<(), LabError> {
    let text = serde_json::to_string_pretty(state).map_err(|e| LabError::BadState {
        path: paths.state_file(&state.name),
        reason: e.to_string(),
    })?;
    sys::write_atomic(&paths.state_file(&state.name), text.as_bytes(), 0o600)
}

/// The subnets recorded by every lab under `paths.labs` (readable ones only).
pub fn other_lab_subnets(paths: &Paths) -> Vec<String> {
    let Ok(entries) = fs::read_dir(&paths.labs) else { return Vec::new() };
    entries
        .filter_map(|e| {
            let text = fs::read_to_string(e.ok()?.path().join(STATE_FILE)).ok()?;
            Some(serde_json::from_str::<LabState>(&text).ok()?.subnet)
        })
        .collect()
}

/// Takes an exclusive lock on `path` (created if needed) for as long as the file is kept.
pub fn lock(path: &Path) -> Result<fs::File, LabError> {
    if let Some(dir) = path.parent() {
        sys::create_private_dir(dir)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| LabError::io("open the lock file", path, e))?;
    file.lock().map_err(|e| LabError::io("lock", path, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Request, plan};
    use crate::lab::net::Subnet;

    fn sample(labs: &Path) -> LabState {
        let req = Request { name: "t1".into(), control_planes: 3, workers: 1, etcd: 0 };
        let layout = plan(&req, Subnet::from_index(3)).unwrap();
        from_layout(
            &layout,
            &labs.join("t1"),
            Path::new("/img"),
            Path::new("/art"),
            Path::new("/spec.yaml"),
        )
    }

    #[test]
    fn state_round_trips_and_missing_labs_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths { cache: dir.path().join("c"), labs: dir.path().join("labs") };
        assert_eq!(load(&paths, "t1").unwrap(), None);
        let mut state = sample(&paths.labs);
        sys::create_private_dir(&paths.lab_dir("t1")).unwrap();
        state.set_pid("cp2", Some(4242));
        save(&paths, &state).unwrap();
        let back = load_existing(&paths, "t1").unwrap();
        assert_eq!(back, state);
        assert_eq!(back.machine("cp2").unwrap().pid, Some(4242));
        assert_eq!(back.machine("cp2").unwrap().root(), paths.labs.join("t1/machines/cp2/root"));
        assert_eq!(other_lab_subnets(&paths), vec!["10.200.3.0/24".to_string()]);
    }

    #[test]
    fn unknown_node_lists_the_known_ones() {
        let state = sample(Path::new("/labs"));
        let err = state.machine("cp9").unwrap_err().to_string();
        assert_eq!(err, "lab `t1` has no machine `cp9` (it has: cp1, cp2, cp3, w1)");
    }

    #[test]
    fn damaged_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths { cache: dir.path().join("c"), labs: dir.path().join("labs") };
        sys::create_private_dir(&paths.lab_dir("t1")).unwrap();
        fs::write(paths.state_file("t1"), "{\"version\": 1").unwrap();
        let err = load(&paths, "t1").unwrap_err();
        assert!(matches!(err, LabError::BadState { .. }), "{err}");
        assert!(err.to_string().contains("state.json"));
    }
}
