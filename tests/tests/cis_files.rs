//! CIS Kubernetes Benchmark 1.12 (kube-bench `cis-1.12`) checks that can be judged from files,
//! evaluated on every host's rendered tree of every example. Each failure names the check, the
//! host and the file. Scored (automated) checks must all pass; the file-judgeable manual checks
//! kubeforge also meets (1.2.3, 1.2.27–1.2.29, 1.3.1, 3.2.1, 4.2.9, 4.2.12–4.2.14) are held to
//! the same bar. The evaluator follows kube-bench's semantics (see
//! ../shared/reference/cis-1.12.md): flags by name, bare flag = true, `bitmask` for modes.

#[path = "render_support.rs"]
mod support;

use std::collections::BTreeMap;

use kubeforge_playbooks::render::{HostFiles, RenderTree};
use serde_json::Value;

const APISERVER: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
const KCM: &str = "/etc/kubernetes/manifests/kube-controller-manager.yaml";
const SCHEDULER: &str = "/etc/kubernetes/manifests/kube-scheduler.yaml";
const ETCD_UNIT: &str = "/etc/systemd/system/etcd.service";
const KUBELET_SVC: &str = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf";
const KUBELET_UNIT: &str = "/etc/systemd/system/kubelet.service";
const KUBELET_CONF: &str = "/var/lib/kubelet/config.yaml";

const APISERVER_CIPHERS: [&str; 11] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];
const KUBELET_CIPHERS: [&str; 6] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
];

/// Collects failures as `CIS <id> on <host> (<file>): <what>`.
struct Audit<'a> {
    host: &'a str,
    failures: Vec<String>,
}

impl Audit<'_> {
    fn check(&mut self, id: &str, file: &str, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(format!("CIS {id} on {} ({file}): {}", self.host, what()));
        }
    }
}

/// `--name=value` flags; a bare `--name` reads as `true`, as kube-bench does.
fn flag_map(args: &[String]) -> BTreeMap<String, String> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.to_string(), "true".to_string()),
        })
        .collect()
}

fn text<'a>(files: &'a HostFiles, path: &str) -> Option<&'a str> {
    files.get(path).map(|f| std::str::from_utf8(&f.contents).unwrap())
}

fn yaml(files: &HostFiles, path: &str) -> Option<Value> {
    text(files, path).map(|t| serde_saphyr::from_str::<Value>(t).unwrap())
}

fn pod_flags(files: &HostFiles, path: &str) -> Option<BTreeMap<String, String>> {
    let pod = yaml(files, path)?;
    let command = pod["spec"]["containers"][0]["command"].as_array()?;
    let args: Vec<String> = command.iter().filter_map(|v| v.as_str().map(String::from)).collect();
    Some(flag_map(&args))
}

/// The flags of a unit's last `ExecStart=` (continuation lines joined).
fn unit_flags(unit: &str) -> BTreeMap<String, String> {
    let joined = unit.replace("\\\n", " ");
    let exec = joined.lines().rfind(|l| l.starts_with("ExecStart=")).unwrap_or("");
    let args: Vec<String> = exec.split_whitespace().map(String::from).collect();
    flag_map(&args)
}

fn unit_setting<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

/// kube-bench `bitmask`: no permission bit outside `max`.
fn mode_within(files: &HostFiles, path: &str, max: u32) -> bool {
    files.get(path).is_some_and(|f| f.mode & !max & 0o7777 == 0)
}

fn subset(value: Option<&String>, allowed: &[&str]) -> bool {
    value.is_some_and(|v| !v.is_empty() && v.split(',').all(|s| allowed.contains(&s.trim())))
}

fn int_at_least(value: Option<&String>, min: i64) -> bool {
    value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v >= min)
}

fn evaluate(tree: &RenderTree) -> Vec<String> {
    let mut all = Vec::new();
    for (host, files) in &tree.hosts {
        let mut a = Audit { host, failures: Vec::new() };
        control_plane(&mut a, files);
        etcd(&mut a, files);
        kubelet(&mut a, files);
        all.extend(a.failures);
    }
    all
}

fn control_plane(a: &mut Audit<'_>, files: &HostFiles) {
    let Some(api) = pod_flags(files, APISERVER) else { return };
    for (id, path) in [("1.1.1", APISERVER), ("1.1.3", KCM), ("1.1.5", SCHEDULER)] {
        a.check(id, path, mode_within(files, path, 0o600), || {
            "missing or mode not within 0600".into()
        });
    }
    let f = |k: &str| api.get(k);
    let has = |k: &str| api.contains_key(k);
    let p = APISERVER;
    a.check("1.2.2", p, !has("token-auth-file"), || "--token-auth-file is set".into());
    a.check(
        "1.2.3",
        p,
        f("enable-admission-plugins").is_some_and(|v| v.contains("DenyServiceExternalIPs")),
        || "DenyServiceExternalIPs not enabled".into(),
    );
    a.check("1.2.4", p, has("kubelet-client-certificate") && has("kubelet-client-key"), || {
        "kubelet client cert/key missing".into()
    });
    a.check("1.2.5", p, has("kubelet-certificate-authority"), || {
        "--kubelet-certificate-authority missing".into()
    });
    let authz = f("authorization-mode").cloned().unwrap_or_default();
    a.check("1.2.6", p, has("authorization-mode") && !authz.contains("AlwaysAllow"), || {
        format!("--authorization-mode={authz:?}")
    });
    a.check("1.2.7", p, authz.contains("Node"), || {
        format!("--authorization-mode={authz:?} lacks Node")
    });
    a.check("1.2.8", p, authz.contains("RBAC"), || {
        format!("--authorization-mode={authz:?} lacks RBAC")
    });
    let enabled = f("enable-admission-plugins").cloned().unwrap_or_default();
    let disabled = f("disable-admission-plugins").cloned().unwrap_or_default();
    a.check("1.2.10", p, !enabled.contains("AlwaysAdmit"), || "AlwaysAdmit enabled".into());
    a.check("1.2.12", p, !disabled.contains("ServiceAccount"), || "ServiceAccount disabled".into());
    a.check("1.2.13", p, !disabled.contains("NamespaceLifecycle"), || {
        "NamespaceLifecycle disabled".into()
    });
    a.check("1.2.14", p, enabled.contains("NodeRestriction"), || {
        "NodeRestriction not enabled".into()
    });
    a.check("1.2.15", p, f("profiling").is_some_and(|v| v == "false"), || {
        format!("--profiling={:?}", f("profiling"))
    });
    a.check("1.2.16", p, has("audit-log-path"), || "--audit-log-path missing".into());
    a.check("1.2.17", p, int_at_least(f("audit-log-maxage"), 30), || {
        format!("--audit-log-maxage={:?}", f("audit-log-maxage"))
    });
    a.check("1.2.18", p, int_at_least(f("audit-log-maxbackup"), 10), || {
        format!("--audit-log-maxbackup={:?}", f("audit-log-maxbackup"))
    });
    a.check("1.2.19", p, int_at_least(f("audit-log-maxsize"), 100), || {
        format!("--audit-log-maxsize={:?}", f("audit-log-maxsize"))
    });
    a.check("1.2.21", p, f("service-account-lookup").is_none_or(|v| v == "true"), || {
        "--service-account-lookup not true".into()
    });
    a.check("1.2.22", p, has("service-account-key-file"), || {
        "--service-account-key-file missing".into()
    });
    a.check("1.2.23", p, has("etcd-certfile") && has("etcd-keyfile"), || {
        "--etcd-certfile/--etcd-keyfile missing".into()
    });
    a.check("1.2.24", p, has("tls-cert-file") && has("tls-private-key-file"), || {
        "--tls-cert-file/--tls-private-key-file missing".into()
    });
    a.check("1.2.25", p, has("client-ca-file"), || "--client-ca-file missing".into());
    a.check("1.2.26", p, has("etcd-cafile"), || "--etcd-cafile missing".into());
    let encryption = f("encryption-provider-config").cloned().unwrap_or_default();
    a.check("1.2.27", p, !encryption.is_empty(), || "--encryption-provider-config missing".into());
    // 1.2.28: kube-bench reads the line after the first `providers:` of that file.
    let provider = text(files, &encryption).and_then(|t| {
        let mut lines = t.lines().skip_while(|l| !l.contains("providers:"));
        lines.next()?;
        lines.next().map(|l| l.trim().trim_start_matches("- ").trim_end_matches(':').to_string())
    });
    a.check(
        "1.2.28",
        &encryption,
        provider.as_deref().is_some_and(|p| ["aescbc", "kms", "secretbox"].contains(&p)),
        || format!("first provider is {provider:?}"),
    );
    a.check("1.2.29", p, subset(f("tls-cipher-suites"), &APISERVER_CIPHERS), || {
        format!("--tls-cipher-suites={:?}", f("tls-cipher-suites"))
    });
    a.check(
        "1.2.30",
        p,
        f("service-account-extend-token-expiration").is_some_and(|v| v == "false"),
        || "--service-account-extend-token-expiration not false".into(),
    );
    let policy = f("audit-policy-file").cloned().unwrap_or_default();
    a.check("3.2.1", p, files.contains_key(&policy), || {
        format!("--audit-policy-file {policy:?} is not rendered")
    });

    let Some(kcm) = pod_flags(files, KCM) else {
        a.check("1.3", KCM, false, || "no controller-manager manifest".into());
        return;
    };
    let k = |n: &str| kcm.get(n);
    a.check("1.3.1", KCM, kcm.contains_key("terminated-pod-gc-threshold"), || {
        "--terminated-pod-gc-threshold missing".into()
    });
    a.check("1.3.2", KCM, k("profiling").is_some_and(|v| v == "false"), || {
        "--profiling not false".into()
    });
    a.check(
        "1.3.3",
        KCM,
        k("use-service-account-credentials").is_some_and(|v| v != "false"),
        || "--use-service-account-credentials not true".into(),
    );
    a.check("1.3.4", KCM, kcm.contains_key("service-account-private-key-file"), || {
        "--service-account-private-key-file missing".into()
    });
    a.check("1.3.5", KCM, kcm.contains_key("root-ca-file"), || "--root-ca-file missing".into());
    a.check(
        "1.3.6",
        KCM,
        !k("feature-gates").is_some_and(|v| v.contains("RotateKubeletServerCertificate=false")),
        || "RotateKubeletServerCertificate=false".into(),
    );
    a.check("1.3.7", KCM, k("bind-address").is_none_or(|v| v == "127.0.0.1"), || {
        format!("--bind-address={:?}", k("bind-address"))
    });
    let sched = pod_flags(files, SCHEDULER).unwrap_or_default();
    a.check("1.4.1", SCHEDULER, sched.get("profiling").is_some_and(|v| v == "false"), || {
        "--profiling not false".into()
    });
    a.check("1.4.2", SCHEDULER, sched.get("bind-address").is_none_or(|v| v == "127.0.0.1"), || {
        "--bind-address not 127.0.0.1".into()
    });
}

fn etcd(a: &mut Audit<'_>, files: &HostFiles) {
    let Some(unit) = text(files, ETCD_UNIT) else { return };
    let f = unit_flags(unit);
    let e = ETCD_UNIT;
    a.check("1.1.7", e, mode_within(files, e, 0o600), || "mode not within 0600".into());
    let data_dir = f.get("data-dir").cloned().unwrap_or_default();
    let state_dirs = unit_setting(unit, "StateDirectory");
    a.check(
        "1.1.11",
        e,
        state_dirs.iter().any(|d| format!("/var/lib/{d}") == data_dir)
            && unit_setting(unit, "StateDirectoryMode") == ["0700"],
        || format!("data dir {data_dir:?} is not a 0700 StateDirectory"),
    );
    a.check(
        "1.1.12",
        e,
        unit_setting(unit, "User") == ["etcd"] && unit_setting(unit, "Group") == ["etcd"],
        || "etcd does not run as etcd:etcd (so its data dir is not etcd-owned)".into(),
    );
    let has = |k: &str| f.contains_key(k);
    let is = |k: &str, v: &str| f.get(k).is_some_and(|x| x == v);
    a.check("2.1", e, has("cert-file") && has("key-file"), || {
        "--cert-file/--key-file missing".into()
    });
    a.check("2.2", e, is("client-cert-auth", "true"), || "--client-cert-auth not true".into());
    a.check("2.3", e, !has("auto-tls") || is("auto-tls", "false"), || "--auto-tls true".into());
    a.check("2.4", e, has("peer-cert-file") && has("peer-key-file"), || {
        "--peer-cert-file/--peer-key-file missing".into()
    });
    a.check("2.5", e, is("peer-client-cert-auth", "true"), || {
        "--peer-client-cert-auth not true".into()
    });
    a.check("2.6", e, !has("peer-auto-tls") || is("peer-auto-tls", "false"), || {
        "--peer-auto-tls true".into()
    });
    // 2.7, stricter than kube-bench: etcd's CAs must not be the cluster CA.
    let source = |flag: &str| -> Option<String> {
        let value = f.get(flag)?;
        let name = value.strip_prefix("%d/")?;
        unit_setting(unit, "LoadCredential")
            .into_iter()
            .find_map(|c| c.strip_prefix(name)?.strip_prefix(':').map(String::from))
    };
    for flag in ["trusted-ca-file", "peer-trusted-ca-file"] {
        let src = source(flag);
        a.check(
            "2.7",
            e,
            src.as_deref().is_some_and(|s| s != "/etc/kubernetes/pki/ca.crt"),
            || format!("--{flag} comes from {src:?}"),
        );
    }
}

fn kubelet(a: &mut Audit<'_>, files: &HostFiles) {
    let Some(drop_in) = text(files, KUBELET_SVC) else { return };
    let cli = unit_flags(drop_in);
    a.check("4.1.1", KUBELET_SVC, mode_within(files, KUBELET_SVC, 0o600), || {
        "mode not within 0600".into()
    });
    a.check("4.1.1", KUBELET_UNIT, mode_within(files, KUBELET_UNIT, 0o600), || {
        "mode not within 0600".into()
    });
    let config_path = cli.get("config").cloned().unwrap_or_default();
    a.check(
        "4.1.9",
        &config_path,
        config_path == KUBELET_CONF && mode_within(files, KUBELET_CONF, 0o600),
        || "config missing or mode not within 0600".into(),
    );
    let conf = yaml(files, KUBELET_CONF).unwrap_or(Value::Null);
    // Command line first, then the config file, like kube-bench.
    let get = |flag: &str, pointer: &str| -> Option<String> {
        cli.get(flag).cloned().or_else(|| {
            conf.pointer(pointer).map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => {
                    items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>().join(",")
                }
                other => other.to_string(),
            })
        })
    };
    let c = KUBELET_CONF;
    let anonymous = get("anonymous-auth", "/authentication/anonymous/enabled");
    a.check("4.2.1", c, anonymous.as_deref() == Some("false"), || {
        format!("anonymous auth {anonymous:?}")
    });
    let authz = get("authorization-mode", "/authorization/mode");
    a.check("4.2.2", c, authz.as_deref().is_some_and(|m| !m.contains("AlwaysAllow")), || {
        format!("authorization mode {authz:?}")
    });
    a.check(
        "4.2.3",
        c,
        get("client-ca-file", "/authentication/x509/clientCAFile").is_some(),
        || "clientCAFile missing".into(),
    );
    let ro = get("read-only-port", "/readOnlyPort");
    a.check("4.2.4", c, ro.as_deref().is_none_or(|v| v == "0"), || format!("readOnlyPort {ro:?}"));
    let idle = get("streaming-connection-idle-timeout", "/streamingConnectionIdleTimeout");
    a.check("4.2.5", c, idle.as_deref().is_none_or(|v| v != "0"), || {
        "streamingConnectionIdleTimeout 0".into()
    });
    let chains = get("make-iptables-util-chains", "/makeIPTablesUtilChains");
    a.check("4.2.6", c, chains.as_deref().is_none_or(|v| v == "true"), || {
        format!("makeIPTablesUtilChains {chains:?}")
    });
    let qps = get("event-qps", "/eventRecordQPS");
    a.check(
        "4.2.8",
        c,
        qps.as_deref().is_none_or(|v| v.parse::<i64>().is_ok_and(|q| q >= 0)),
        || format!("eventRecordQPS {qps:?}"),
    );
    a.check(
        "4.2.9",
        c,
        get("tls-cert-file", "/tlsCertFile").is_some()
            && get("tls-private-key-file", "/tlsPrivateKeyFile").is_some(),
        || "tlsCertFile/tlsPrivateKeyFile missing".into(),
    );
    let rotate = get("rotate-certificates", "/rotateCertificates");
    a.check("4.2.10", c, rotate.as_deref().is_none_or(|v| v == "true"), || {
        format!("rotateCertificates {rotate:?}")
    });
    let gate = get("feature-gates", "/featureGates/RotateKubeletServerCertificate");
    a.check("4.2.11", c, gate.as_deref().is_none_or(|v| !v.contains("false")), || {
        "RotateKubeletServerCertificate false".into()
    });
    let ciphers = get("tls-cipher-suites", "/tlsCipherSuites");
    a.check("4.2.12", c, subset(ciphers.as_ref(), &KUBELET_CIPHERS), || {
        format!("tlsCipherSuites {ciphers:?}")
    });
    a.check("4.2.13", c, get("pod-max-pids", "/podPidsLimit").is_some(), || {
        "podPidsLimit missing".into()
    });
    a.check("4.2.14", c, get("seccomp-default", "/seccompDefault").is_some(), || {
        "seccompDefault missing".into()
    });
}

#[test]
fn every_host_of_every_example_passes_the_file_checks() {
    let mut failures = Vec::new();
    for example in support::EXAMPLES {
        let tree = support::render_configs(&support::example(example));
        failures.extend(evaluate(&tree).into_iter().map(|f| format!("{example}: {f}")));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_kubernetes_minor_passes_too() {
    let mut failures = Vec::new();
    for minor in 31..=34 {
        let mut cluster = support::example("stacked");
        cluster.kubernetes_version.minor = minor;
        cluster.etcd.version = kubeforge_playbooks::versions::release(cluster.kubernetes_version)
            .unwrap()
            .etcd
            .to_string();
        failures.extend(
            evaluate(&support::render_configs(&cluster))
                .into_iter()
                .map(|f| format!("v1.{minor}: {f}")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_evaluator_catches_kubeadm_defaults() {
    let mut tree = support::render_configs(&support::example("stacked"));
    let files = tree.hosts.get_mut("cp1").unwrap();
    let pod = files.get_mut(APISERVER).unwrap();
    let text =
        String::from_utf8(pod.contents.clone()).unwrap().replace("- --profiling=false\n", "");
    pod.contents = text.into_bytes();
    files.get_mut(KUBELET_CONF).unwrap().mode = 0o644;
    let unit = files.get_mut(ETCD_UNIT).unwrap();
    unit.contents = String::from_utf8(unit.contents.clone())
        .unwrap()
        .replace("User=etcd", "User=root")
        .into_bytes();
    let failures = evaluate(&tree).join("\n");
    assert!(failures.contains(&format!("CIS 1.2.15 on cp1 ({APISERVER})")), "{failures}");
    assert!(failures.contains(&format!("CIS 4.1.9 on cp1 ({KUBELET_CONF})")), "{failures}");
    assert!(failures.contains(&format!("CIS 1.1.12 on cp1 ({ETCD_UNIT})")), "{failures}");
    assert_eq!(failures.lines().count(), 3, "{failures}");
}
