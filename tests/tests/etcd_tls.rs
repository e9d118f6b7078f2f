//! etcd over mutual TLS with a real etcd: the client connects and works with the etcd CA's
//! client certificate, and a certificate from another CA is reported as a rejected TLS
//! handshake naming the member, not as an opaque transport error.

use std::time::Duration;

use kubeforge::etcd::{Endpoint, EtcdClient, EtcdError, EtcdTls, FailureKind, Timeouts};
use kubeforge_tests::etcd::{EtcdCluster, TestCa, require_etcd};

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(3),
        request: Duration::from_secs(3),
        ..Timeouts::default()
    }
}

#[tokio::test]
async fn mutual_tls_connect_status_member_list_and_read_back() {
    let Some(etcd) = require_etcd() else { return };
    let cluster = EtcdCluster::start(1, &etcd);
    let m1 = cluster.member("m1");
    let client = EtcdClient::connect(
        &Endpoint::new("m1", m1.client_url()),
        Some(&cluster.client_tls()),
        timeouts(),
    )
    .await
    .unwrap();
    let status =
        client.status().await.unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail("m1")));
    assert!(status.version.starts_with("3."), "{status:?}");
    assert_ne!(status.leader, 0);
    let members = client.member_list().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, "m1");
    assert_eq!(members[0].peer_urls, [m1.peer_url()]);
    client.put("/kubeforge/test", b"hello").await.unwrap();
    assert_eq!(
        client.linearizable_get("/kubeforge/test").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_a_clear_tls_rejection() {
    let Some(etcd) = require_etcd() else { return };
    let cluster = EtcdCluster::start(1, &etcd);
    let rogue_ca = TestCa::new(cluster.dir.path(), "rogue");
    let rogue = rogue_ca.issue("intruder", false);
    let bad =
        EtcdTls { cert_pem: rogue.cert_pem(), key_pem: rogue.key_pem(), ..cluster.client_tls() };
    let url = cluster.member("m1").client_url();
    let result = async {
        let client =
            EtcdClient::connect(&Endpoint::new("m1", &url), Some(&bad), timeouts()).await?;
        client.status().await
    }
    .await;
    let err = result.expect_err("a client certificate from another CA must be refused");
    assert_eq!(err.kind(), FailureKind::TlsRejected, "{err}");
    assert!(matches!(err, EtcdError::TlsRejected { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("etcd member m1 ({url}) rejected the TLS handshake")),
        "{text}"
    );
    assert!(text.contains("signed by the etcd CA"), "{text}");
}

#[tokio::test]
async fn a_server_from_another_ca_is_refused_by_the_client() {
    let Some(etcd) = require_etcd() else { return };
    let cluster = EtcdCluster::start(1, &etcd);
    let other_ca = TestCa::new(cluster.dir.path(), "other");
    let wrong = EtcdTls { ca_pem: other_ca.cert_pem(), ..cluster.client_tls() };
    let url = cluster.member("m1").client_url();
    let result = async {
        let client =
            EtcdClient::connect(&Endpoint::new("m1", &url), Some(&wrong), timeouts()).await?;
        client.status().await
    }
    .await;
    let err = result.expect_err("an untrusted server certificate must be refused");
    assert_eq!(err.kind(), FailureKind::TlsRejected, "{err}");
}

#[tokio::test]
async fn a_closed_port_is_unreachable_not_tls() {
    let port = kubeforge_tests::etcd::free_port();
    let Some(etcd) = require_etcd() else { return };
    let cluster = EtcdCluster::start(1, &etcd);
    let url = format!("https://127.0.0.1:{port}");
    let result = async {
        let client = EtcdClient::connect(
            &Endpoint::new("gone", &url),
            Some(&cluster.client_tls()),
            timeouts(),
        )
        .await?;
        client.status().await
    }
    .await;
    let err = result.expect_err("nothing listens there");
    assert_eq!(err.kind(), FailureKind::Unreachable, "{err}");
    assert!(
        err.to_string().starts_with(&format!("etcd member gone ({url}) is unreachable")),
        "{err}"
    );
}
