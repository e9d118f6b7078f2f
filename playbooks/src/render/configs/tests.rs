//! Unit tests of who gets which file and of the values decided here; the golden files and the
//! checks against real programs live in the tests crate.

use super::test_cluster::{external, node_local, secrets, stacked};
use super::*;
use crate::model::{BackupRunner, Cluster};
use crate::render::RenderTree;

fn render(cluster: &Cluster) -> RenderTree {
    let pki = kubeforge_pki::Store::new();
    let secrets = secrets();
    let input = RenderInput { cluster, pki: &pki, secrets: &secrets };
    let mut tree = RenderTree::default();
    add_files(input, &mut tree).unwrap();
    tree
}

fn text(tree: &RenderTree, host: &str, path: &str) -> String {
    let file = tree.hosts[host].get(path).unwrap_or_else(|| panic!("{host} lacks {path}"));
    String::from_utf8(file.contents.clone()).unwrap()
}

#[test]
fn scheduled_backups_have_exactly_one_runner() {
    let timer = "/etc/systemd/system/kubeforge-backup.timer";
    let cronjob = "/etc/kubernetes/addons/etcd-backup.yaml";
    let count = |tree: &RenderTree, path: &str| {
        tree.hosts.values().filter(|files| files.contains_key(path)).count()
    };
    let tree = render(&stacked());
    assert_eq!((count(&tree, timer), count(&tree, cronjob)), (3, 0));
    let mut with_cronjob = stacked();
    with_cronjob.backup.as_mut().unwrap().runner = BackupRunner::CronJob;
    let tree = render(&with_cronjob);
    assert_eq!(count(&tree, timer), 0);
    assert_eq!(count(&tree, cronjob), 3, "the manifest sits on every control plane");
}

#[test]
fn stacked_control_planes_get_pods_etcd_and_lb_workers_do_not() {
    let tree = render(&stacked());
    for cp in ["cp1", "cp2", "cp3"] {
        let files = &tree.hosts[cp];
        for path in [
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
            "/etc/kubernetes/manifests/kube-controller-manager.yaml",
            "/etc/kubernetes/manifests/kube-scheduler.yaml",
            "/etc/kubernetes/encryption-config.yaml",
            "/etc/systemd/system/etcd.service",
            "/etc/haproxy/haproxy.cfg",
            "/etc/keepalived/keepalived.conf",
            "/etc/systemd/system/kubeforge-backup.timer",
            "/var/lib/kubelet/config.yaml",
        ] {
            assert!(files.contains_key(path), "{cp} lacks {path}");
        }
        assert_eq!(files["/etc/kubernetes/manifests/kube-apiserver.yaml"].mode, 0o600);
        assert!(files["/etc/kubernetes/encryption-config.yaml"].secret);
        assert!(files["/etc/keepalived/keepalived.conf"].secret);
    }
    let worker = &tree.hosts["w1"];
    assert!(worker.contains_key("/var/lib/kubelet/config.yaml"));
    assert!(
        !worker
            .keys()
            .any(|p| p.contains("manifests") || p.contains("etcd") || p.contains("haproxy"))
    );
}

#[test]
fn etcd_servers_list_every_member_local_first() {
    let tree = render(&stacked());
    let pod = text(&tree, "cp2", "/etc/kubernetes/manifests/kube-apiserver.yaml");
    assert!(
        pod.contains(
            "--etcd-servers=https://127.0.0.1:2379,https://10.88.0.11:2379,https://10.88.0.13:2379"
        ),
        "{pod}"
    );
    let tree = render(&external());
    let pod = text(&tree, "cp1", "/etc/kubernetes/manifests/kube-apiserver.yaml");
    assert!(pod.contains(
        "--etcd-servers=https://10.88.0.31:2379,https://10.88.0.32:2379,https://10.88.0.33:2379"
    ));
}

#[test]
fn etcd_flags_follow_the_etcd_version() {
    let old = text(&render(&stacked()), "cp1", "/etc/systemd/system/etcd.service");
    assert!(old.contains("--experimental-initial-corrupt-check=true"));
    assert!(!old.contains("--feature-gates"));
    let new = text(&render(&external()), "e1", "/etc/systemd/system/etcd.service");
    assert!(new.contains("--feature-gates=InitialCorruptCheck=true"));
    assert!(new.contains("--watch-progress-notify-interval=5s"));
    assert!(!new.contains("experimental"));
    // The initial cluster lives in the bootstrap environment file the etcd phase writes.
    assert!(!new.contains("--initial-cluster="));
    assert!(new.contains(&format!("EnvironmentFile={}\n", super::etcd::BOOTSTRAP_ENV)));
}

#[test]
fn anonymous_config_and_probe_port_follow_the_kubernetes_version() {
    let v131 = render(&node_local());
    assert!(!v131.hosts["cp1"].contains_key("/etc/kubernetes/authentication-config.yaml"));
    let pod = text(&v131, "cp1", "/etc/kubernetes/manifests/kube-apiserver.yaml");
    assert!(!pod.contains("--authentication-config"));
    assert!(pod.contains("port: 6443"));
    let v134 = render(&external());
    let pod = text(&v134, "cp1", "/etc/kubernetes/manifests/kube-apiserver.yaml");
    assert!(pod.contains("--authentication-config=/etc/kubernetes/authentication-config.yaml"));
    assert!(pod.contains("port: probe-port"));
    assert!(pod.contains("image: registry.k8s.io/kube-apiserver:v1.34.0\n"), "{pod}");
    let containerd = text(&v134, "w1", "/etc/containerd/config.toml");
    assert!(containerd.contains("registry.k8s.io/pause:3.10.1"));
}

#[test]
fn node_local_puts_haproxy_on_workers_only() {
    let cluster = node_local();
    let tree = render(&cluster);
    let cfg = text(&tree, "w1", "/etc/haproxy/haproxy.cfg");
    assert!(cfg.contains("bind 127.0.0.1:6443"), "{cfg}");
    for cp in ["10.88.0.11:6443", "10.88.0.12:6443", "10.88.0.13:6443"] {
        assert!(cfg.contains(cp));
    }
    assert!(!tree.hosts["cp1"].contains_key("/etc/haproxy/haproxy.cfg"));
    let w1 = cluster.host("w1").unwrap();
    assert_eq!(kubeconfig_server(&cluster, w1), "https://127.0.0.1:6443");
    let cp1 = cluster.host("cp1").unwrap();
    assert_eq!(kubeconfig_server(&cluster, cp1), "https://10.88.0.11:6443");
    let stacked = stacked();
    assert_eq!(
        kubeconfig_server(&stacked, stacked.host("w1").unwrap()),
        "https://10.88.0.100:6443"
    );
}

#[test]
fn keepalived_shares_the_secret_and_binds_the_vip() {
    let tree = render(&stacked());
    let conf = text(&tree, "cp1", "/etc/keepalived/keepalived.conf");
    assert!(conf.contains(&format!("auth_pass {}", secrets().vrrp_password)));
    assert!(conf.contains("priority 150"));
    assert!(text(&tree, "cp2", "/etc/keepalived/keepalived.conf").contains("priority 140"));
    let haproxy = text(&tree, "cp1", "/etc/haproxy/haproxy.cfg");
    assert!(haproxy.contains("bind 10.88.0.100:6443"));
    // haproxy holds VIP:6443, so the apiserver binds only its own address.
    let pod = text(&tree, "cp1", "/etc/kubernetes/manifests/kube-apiserver.yaml");
    assert!(pod.contains("--bind-address=10.88.0.11"));
}

#[test]
fn unsupported_version_is_an_error_naming_it() {
    let mut cluster = stacked();
    cluster.kubernetes_version.minor = 29;
    let pki = kubeforge_pki::Store::new();
    let secrets = secrets();
    let input = RenderInput { cluster: &cluster, pki: &pki, secrets: &secrets };
    let err = add_files(input, &mut RenderTree::default()).unwrap_err().to_string();
    assert!(err.contains("v1.29.1") && err.contains("v1.31"), "{err}");
}

#[test]
fn bad_etcd_version_is_an_error() {
    let mut cluster = stacked();
    cluster.etcd.version = "latest".into();
    let pki = kubeforge_pki::Store::new();
    let secrets = secrets();
    let input = RenderInput { cluster: &cluster, pki: &pki, secrets: &secrets };
    let err = add_files(input, &mut RenderTree::default()).unwrap_err().to_string();
    assert!(err.contains("\"latest\""), "{err}");
}
