use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::model::*;

fn cluster(k8s_minor: u32, k8s_patch: u32, etcd: &str, artifacts: ArtifactSource) -> Cluster {
    let ssh = Ssh {
        user: "root".into(),
        port: 22,
        identity_file: None,
        known_hosts_file: None,
        host_key_policy: HostKeyPolicy::Strict,
        bastion: None,
    };
    let host = |name: &str, ip: &str, role: Role| Host {
        name: name.into(),
        address: ip.parse().unwrap(),
        roles: BTreeSet::from([role]),
        ssh: ssh.clone(),
    };
    Cluster {
        name: "lab".into(),
        kubernetes_version: KubeVersion { major: 1, minor: k8s_minor, patch: k8s_patch },
        control_plane_endpoint: None,
        network: Network {
            pod_subnet: Cidr { network: "10.244.0.0".parse().unwrap(), prefix: 16 },
            service_subnet: Cidr { network: "10.96.0.0".parse().unwrap(), prefix: 12 },
            cluster_domain: "cluster.local".into(),
        },
        etcd: Etcd { topology: EtcdTopology::Stacked, version: etcd.into() },
        load_balancer: LoadBalancer { mode: LoadBalancerMode::None, vip: None },
        pki: Pki {
            key_algorithm: KeyAlgorithm::EcdsaP256,
            certificate_validity: Duration::from_secs(86400 * 365),
            ca_validity: Duration::from_secs(86400 * 3650),
            extra_sans: vec![],
        },
        ssh: ssh.clone(),
        artifacts,
        artifact_mirror: None,
        backup: None,
        hosts: vec![
            host("cp1", "192.0.2.11", Role::ControlPlane),
            host("w1", "192.0.2.21", Role::Worker),
        ],
    }
}

#[test]
fn catalog_checksums_are_sha256_hex_and_unique() {
    let mut seen = HashSet::new();
    for e in catalog::ENTRIES {
        assert_eq!(e.sha256.len(), 64, "{e:?}");
        assert!(
            e.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{e:?}"
        );
        assert!(e.version.starts_with('v'), "{e:?}");
        assert!(seen.insert(e.sha256), "duplicate checksum {e:?}");
        assert!(
            catalog::ENTRIES
                .iter()
                .filter(|o| o.component == e.component
                    && o.version == e.version
                    && o.arch == e.arch)
                .count()
                == 1,
            "duplicate entry {e:?}"
        );
    }
}

#[test]
fn every_catalogued_binary_version_has_both_architectures() {
    for e in catalog::ENTRIES {
        for arch in [Arch::Amd64, Arch::Arm64] {
            assert!(catalog::find(e.component, e.version, arch).is_some(), "{e:?} lacks {arch}");
        }
    }
}

#[test]
fn upstream_resolves_every_component_with_urls_and_checksums() {
    let c = cluster(33, 8, "v3.5.21", ArtifactSource::Upstream);
    let refs = resolve(&c, Arch::Amd64).unwrap();
    assert_eq!(refs.len(), Component::ALL.len());
    let etcd = refs.iter().find(|r| r.component == Component::Etcd).unwrap();
    assert_eq!(
        etcd.location,
        Location::Url(
            "https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-amd64.tar.gz"
                .into()
        )
    );
    assert_eq!(
        etcd.sha256.as_deref(),
        Some("adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c")
    );
    assert_eq!(etcd.layout_files(), ["etcd", "etcdctl", "etcdutl"]);
    match &etcd.packaging {
        Packaging::TarGz(m) => assert_eq!(m[0].member, "etcd-v3.5.21-linux-amd64/etcd"),
        other => panic!("etcd packaging {other:?}"),
    }
    let kubelet = refs.iter().find(|r| r.component == Component::Kubelet).unwrap();
    assert_eq!(
        kubelet.location,
        Location::Url("https://dl.k8s.io/release/v1.33.8/bin/linux/amd64/kubelet".into())
    );
    let crictl = refs.iter().find(|r| r.component == Component::Crictl).unwrap();
    assert_eq!(crictl.version, "v1.33.0");
    let runc = refs.iter().find(|r| r.component == Component::Runc).unwrap();
    assert_eq!(runc.file_name, "runc.amd64");
    assert_eq!(runc.layout_files(), ["runc"]);
    // Every binary has a checksum; images are registry pulls without one.
    for r in &refs {
        assert_eq!(r.sha256.is_some(), !r.component.is_image(), "{r:?}");
    }
    let api = refs.iter().find(|r| r.component == Component::KubeApiserver).unwrap();
    assert_eq!(api.location, Location::Registry("registry.k8s.io/kube-apiserver:v1.33.8".into()));
}

#[test]
fn arm64_gets_its_own_checksums() {
    let c = cluster(34, 4, "v3.5.21", ArtifactSource::Upstream);
    let amd = resolve(&c, Arch::Amd64).unwrap();
    let arm = resolve(&c, Arch::Arm64).unwrap();
    for (a, b) in amd.iter().zip(&arm) {
        if a.sha256.is_some() {
            assert_ne!(a.sha256, b.sha256, "{:?}", a.component);
            assert_ne!(a.location, b.location);
        }
    }
}

#[test]
fn uncatalogued_versions_are_all_named_in_one_error() {
    // v1.31 has no published kubelet checksum in the catalog; etcd 3.4.23 is only offline.
    let c = cluster(31, 2, "v3.4.23", ArtifactSource::Upstream);
    let err = resolve(&c, Arch::Amd64).unwrap_err();
    let names: Vec<_> = err.missing.iter().map(|m| (m.component, m.version.as_str())).collect();
    assert_eq!(
        names,
        [
            (Component::Etcd, "v3.4.23"),
            (Component::Crictl, "v1.31.0"),
            (Component::Kubelet, "v1.31.2"),
            (Component::Kubectl, "v1.31.2"),
        ]
    );
    let text = err.to_string();
    assert!(text.contains("etcd v3.4.23 (linux/amd64) is not in the built-in catalog"), "{text}");
    assert!(text.contains("catalogued: v3.5.15, v3.5.16, v3.5.21"), "{text}");
    assert!(text.contains("artifacts.source: dir:<path>"), "{text}");
    assert!(text.starts_with("artifacts.source: upstream cannot provide 4 components"), "{text}");
}

#[test]
fn dir_source_resolves_to_layout_paths_without_checksums() {
    let c = cluster(33, 8, "v3.4.23", ArtifactSource::Dir(PathBuf::from("/srv/bundle")));
    let refs = resolve(&c, Arch::Amd64).unwrap();
    let etcd: Vec<_> = refs.iter().filter(|r| r.component == Component::Etcd).collect();
    assert_eq!(etcd.len(), 2);
    assert_eq!(etcd[0].location, Location::Path("/srv/bundle/etcd/v3.4.23/etcd".into()));
    assert_eq!(etcd[1].location, Location::Path("/srv/bundle/etcd/v3.4.23/etcdctl".into()));
    assert!(refs.iter().all(|r| r.sha256.is_none()));
    let api = refs.iter().find(|r| r.component == Component::KubeApiserver).unwrap();
    assert_eq!(
        api.location,
        Location::Path("/srv/bundle/kube-apiserver/v1.33.8/kube-apiserver.tar".into())
    );
    assert_eq!(
        api.packaging,
        Packaging::ImageArchive { image: "registry.k8s.io/kube-apiserver:v1.33.8".into() }
    );
}

#[test]
fn missing_dir_files_are_listed() {
    let c = cluster(33, 8, "v3.5.1", ArtifactSource::Dir(PathBuf::from("/b")));
    let refs: Vec<_> = resolve(&c, Arch::Amd64)
        .unwrap()
        .into_iter()
        .filter(|r| r.component == Component::Etcd)
        .collect();
    let present = BTreeSet::from([PathBuf::from("/b/etcd/v3.5.1/etcd")]);
    assert_eq!(
        layout::missing_files(&refs, &present),
        [PathBuf::from("/b/etcd/v3.5.1/etcdctl"), PathBuf::from("/b/etcd/v3.5.1/etcdutl")]
    );
}

#[test]
fn upstream_and_dir_agree_on_layout_files() {
    let c = cluster(33, 8, "v3.5.21", ArtifactSource::Upstream);
    for r in resolve(&c, Arch::Arm64).unwrap() {
        if r.component.is_image() {
            continue;
        }
        assert_eq!(r.layout_files(), layout::files(r.component, &r.version), "{:?}", r.component);
    }
}

#[test]
fn node_paths_and_arch_names() {
    assert_eq!(layout::node_path(Component::Etcd, "etcd").as_deref(), Some("/usr/local/bin/etcd"));
    assert_eq!(
        layout::node_path(Component::CniPlugins, "bridge").as_deref(),
        Some("/opt/cni/bin/bridge")
    );
    assert_eq!(layout::node_path(Component::KubeScheduler, "kube-scheduler.tar"), None);
    assert_eq!(Arch::from_uname("x86_64\n"), Some(Arch::Amd64));
    assert_eq!(Arch::from_uname("aarch64"), Some(Arch::Arm64));
    assert_eq!(Arch::from_uname("riscv64"), None);
    assert_eq!(
        dir_relative_to(std::path::Path::new("/spec"), std::path::Path::new("bundle")),
        PathBuf::from("/spec/bundle")
    );
}

#[test]
fn etcdutl_ships_from_etcd_3_5() {
    assert_eq!(layout::files(Component::Etcd, "v3.4.23"), ["etcd", "etcdctl"]);
    assert_eq!(layout::files(Component::Etcd, "v3.5.1"), ["etcd", "etcdctl", "etcdutl"]);
    assert_eq!(layout::files(Component::Etcd, "v3.6.4"), ["etcd", "etcdctl", "etcdutl"]);
    assert_eq!(layout::files(Component::Etcd, "v10.0.0"), ["etcd", "etcdctl", "etcdutl"]);
    assert!(layout::has_etcdutl("garbage"));
}

#[test]
fn sha256sums_parse_as_sha256sum_writes_them() {
    let a = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let text =
        format!("# comment\n{a}  etcd/v3.5.1/etcd\n\n{} *./runc/v1.3.4/runc\r\n", "AB".repeat(32));
    let sums = layout::parse_sha256sums(&text).unwrap();
    assert_eq!(sums["etcd/v3.5.1/etcd"], a);
    assert_eq!(sums["runc/v1.3.4/runc"], "ab".repeat(32));
    assert_eq!(sums.len(), 2);
    assert_eq!(
        layout::parse_sha256sums(&format!("{a}  ok\nnot a line\n")).unwrap_err(),
        "line 2: expected `<sha256 hex>  <path>`"
    );
    assert!(layout::parse_sha256sums("abc  short-hash\n").is_err());
}

#[test]
fn image_components_use_kubeadm_tags_and_names() {
    let c = cluster(33, 8, "v3.5.21", ArtifactSource::Dir(PathBuf::from("/b")));
    let refs = resolve(&c, Arch::Amd64).unwrap();
    let find = |comp| refs.iter().find(|r| r.component == comp).unwrap();
    assert_eq!(find(Component::Pause).location, Location::Path("/b/pause/3.10/pause.tar".into()));
    assert_eq!(
        find(Component::CoreDns).packaging,
        Packaging::ImageArchive { image: "registry.k8s.io/coredns/coredns:v1.12.0".into() }
    );
    assert_eq!(
        find(Component::KubeProxy).location,
        Location::Path("/b/kube-proxy/v1.33.8/kube-proxy.tar".into())
    );
}

mod needs_tests {
    use super::*;
    use crate::plan::{Phase, PhaseSelection};

    fn keys(c: &Cluster, phase: Phase) -> Vec<String> {
        needs::needs(c, phase).into_iter().map(|n| n.key).collect()
    }

    #[test]
    fn phases_need_documented_keys() {
        let c = cluster(33, 1, "v3.5.1", ArtifactSource::Dir(PathBuf::from("/b")));
        assert_eq!(
            keys(&c, Phase::Runtime),
            ["containerd", "containerd-shim-runc-v2", "ctr", "runc"]
        );
        assert_eq!(keys(&c, Phase::Etcd), ["etcd", "etcdctl", "etcdutl"]);
        assert_eq!(
            keys(&c, Phase::ControlPlane),
            [
                "kubelet",
                "kubectl",
                "crictl",
                "cni:bridge",
                "cni:host-local",
                "cni:loopback",
                "cni:portmap",
                "image:pause",
                "image:kube-apiserver",
                "image:kube-controller-manager",
                "image:kube-scheduler"
            ]
        );
        assert_eq!(
            keys(&c, Phase::Workers),
            [
                "kubelet",
                "crictl",
                "cni:bridge",
                "cni:host-local",
                "cni:loopback",
                "cni:portmap",
                "image:pause"
            ]
        );
        assert_eq!(
            keys(&c, Phase::Addons),
            ["image:kube-proxy", "image:coredns", "image:flannel", "image:flannel-cni-plugin"]
        );
        for phase in [Phase::Preflight, Phase::Os, Phase::Pki, Phase::LoadBalancer] {
            assert!(keys(&c, phase).is_empty(), "{phase}");
        }
        let kubelet = &needs::needs(&c, Phase::ControlPlane)[0];
        assert_eq!(kubelet.version, "v1.33.1");
        assert_eq!(kubelet.relative_path(), PathBuf::from("kubelet/v1.33.1/kubelet"));
    }

    #[test]
    fn upstream_needs_no_image_files_and_old_etcd_no_etcdutl() {
        let c = cluster(33, 8, "v3.4.23", ArtifactSource::Upstream);
        assert!(keys(&c, Phase::ControlPlane).iter().all(|k| !k.starts_with("image:")));
        assert!(keys(&c, Phase::Addons).is_empty());
        assert_eq!(keys(&c, Phase::Etcd), ["etcd", "etcdctl"]);
        let until_lb = needs::selected(&c, &PhaseSelection::new(Some(Phase::LoadBalancer), &[]));
        let phases: BTreeSet<Phase> = until_lb.iter().map(|n| n.phase).collect();
        assert_eq!(phases, BTreeSet::from([Phase::Runtime, Phase::Etcd]));
    }

    #[test]
    fn scopes_pick_the_right_hosts() {
        let c = cluster(33, 8, "v3.5.21", ArtifactSource::Upstream);
        let (cp, w) = (&c.hosts[0], &c.hosts[1]);
        assert!(needs::in_scope(&c, cp, HostScope::EtcdMembers));
        assert!(!needs::in_scope(&c, w, HostScope::EtcdMembers));
        assert!(needs::in_scope(&c, w, HostScope::Workers));
        assert!(!needs::in_scope(&c, cp, HostScope::Workers));
        assert!(needs::in_scope(&c, w, HostScope::KubeletHosts));
        assert!(needs::in_scope(&c, w, HostScope::AllHosts));
    }

    #[test]
    fn missing_files_are_described_with_path_or_url() {
        let dir = cluster(33, 1, "v3.5.1", ArtifactSource::Dir(PathBuf::from("bundle")));
        let (msg, remedy) = needs::describe_missing(
            &dir,
            Component::Kubelet,
            "v1.33.1",
            &["kubelet"],
            Some(Arch::Amd64),
        );
        assert_eq!(
            msg,
            "kubelet v1.33.1: `kubelet` not found in the artifact directory; looked for \
             bundle/kubelet/v1.33.1/kubelet (relative to the spec file's folder)"
        );
        assert!(
            remedy.starts_with("put the linux/amd64 file(s) at bundle/kubelet/v1.33.1/kubelet"),
            "{remedy}"
        );

        let up = cluster(33, 8, "v3.5.21", ArtifactSource::Upstream);
        let (msg, remedy) = needs::describe_missing(
            &up,
            Component::Kubelet,
            "v1.33.8",
            &["kubelet"],
            Some(Arch::Arm64),
        );
        assert!(msg.contains("https://dl.k8s.io/release/v1.33.8/bin/linux/arm64/kubelet"), "{msg}");
        assert!(remedy.contains("KUBEFORGE_ARTIFACT_MIRROR"), "{remedy}");
        let (msg, remedy) =
            needs::describe_missing(&up, Component::Etcd, "v3.4.23", &["etcd", "etcdctl"], None);
        assert!(msg.contains("etcd v3.4.23 (linux/amd64) is not in the built-in catalog"), "{msg}");
        assert!(msg.contains("catalogued: v3.5.15, v3.5.16, v3.5.21"), "{msg}");
        assert!(remedy.contains("<dir>/etcd/v3.4.23/etcd, <dir>/etcd/v3.4.23/etcdctl"), "{remedy}");
    }
}

#[test]
fn cached_arch_reads_the_cache_layout() {
    assert_eq!(needs::cached_arch("/c/arm64/etcd/v3.5.21/etcd"), Some(Arch::Arm64));
    assert_eq!(needs::cached_arch("/c/amd64/cni-plugins/v1.8.0/bridge"), Some(Arch::Amd64));
    assert_eq!(needs::cached_arch("/srv/bundle/etcd/v3.5.21/etcd"), None);
    assert_eq!(needs::cached_arch("etcd"), None);
}

#[test]
fn offline_flannel_archives_hold_exactly_the_images_the_manifest_runs() {
    let c = cluster(33, 1, "v3.5.21", ArtifactSource::Dir("/srv/a".into()));
    for (name, image) in crate::render::configs::addons::PINNED_IMAGES {
        let component = Component::ALL.into_iter().find(|c| c.name() == name).expect(name);
        assert!(component.is_image(), "{name}");
        let version = super::wanted_version(&c, component).expect("pinned tag");
        assert_eq!(layout::image_reference(component, &version), image);
    }
}
