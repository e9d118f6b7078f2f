//! Every example spec validates, `kubeforge init` embeds exactly those files, and the JSON
//! Schema `kubeforge schema` prints accepts their structure and names every top-level field.

use std::path::{Path, PathBuf};

use kubeforge::commands::init::{EXTERNAL, NODE_LOCAL, STACKED};
use kubeforge_playbooks::model::{EtcdTopology, LoadBalancerMode};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn every_example_spec_validates() {
    let mut count = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(e) = kubeforge::spec_file::check(&path) {
                panic!("{}:\n{}", path.display(), e.diagnostics().to_plain());
            }
            count += 1;
        }
    }
    assert!(count >= 3, "expected the stacked, external and node-local examples");
}

#[test]
fn init_embeds_the_examples_and_they_describe_their_topology() {
    let dir = examples_dir();
    for (file, text) in
        [("stacked.yaml", STACKED), ("external.yaml", EXTERNAL), ("node-local.yaml", NODE_LOCAL)]
    {
        assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), text, "{file}");
    }
    let stacked = kubeforge_playbooks::spec::load_str(STACKED, "stacked.yaml").unwrap();
    assert_eq!(stacked.etcd.topology, EtcdTopology::Stacked);
    assert_eq!(stacked.etcd_members().count(), 3);
    assert_eq!(stacked.load_balancer.mode, LoadBalancerMode::KeepalivedHaproxy);
    let external = kubeforge_playbooks::spec::load_str(EXTERNAL, "external.yaml").unwrap();
    assert_eq!(external.etcd.topology, EtcdTopology::External);
    assert_eq!(
        external.etcd_members().map(|h| h.name.as_str()).collect::<Vec<_>>(),
        ["etcd1", "etcd2", "etcd3"]
    );
    let node_local = kubeforge_playbooks::spec::load_str(NODE_LOCAL, "node-local.yaml").unwrap();
    assert_eq!(node_local.load_balancer.mode, LoadBalancerMode::NodeLocal);
    assert_eq!(node_local.control_plane_endpoint, None);
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Harness {
        #[command(flatten)]
        args: kubeforge::commands::init::Args,
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cluster.yaml");
    let global = kubeforge::context::Global {
        file: out.clone(),
        state: None,
        output: kubeforge::context::OutputFormat::Human,
        verbose: 0,
        yes: false,
    };
    let parse = |argv: &[&str]| Harness::parse_from([&["init"], argv].concat()).args;
    kubeforge::commands::init::run(&global, parse(&["--topology", "external"])).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), EXTERNAL);
    std::fs::write(&out, "mine\n").unwrap();
    let err = kubeforge::commands::init::run(&global, parse(&[])).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine\n");
    kubeforge::commands::init::run(&global, parse(&["--force"])).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), STACKED);
    assert!(kubeforge::spec_file::check(&out).is_ok());
}

#[test]
fn schema_describes_the_spec() {
    let schema = kubeforge_playbooks::spec::json_schema();
    let required = schema["required"].as_array().unwrap();
    for field in ["apiVersion", "kind", "metadata", "spec"] {
        assert!(required.iter().any(|r| r == field), "{field}");
    }
    let spec = &schema["$defs"]["Spec"]["properties"];
    for field in [
        "kubernetesVersion",
        "controlPlaneEndpoint",
        "network",
        "etcd",
        "loadBalancer",
        "pki",
        "ssh",
        "artifacts",
        "backup",
        "hosts",
    ] {
        assert!(spec.get(field).is_some(), "spec.{field} missing from the schema");
    }
    assert_eq!(schema["$defs"]["Spec"]["additionalProperties"], false);
    assert!(schema["$defs"]["PkiSpec"]["properties"].get("extraSANs").is_some());
}
