//! The etcd health gate against a real 3-member cluster: all healthy passes; a stopped member
//! fails the gate and the report names it (and only it) as unreachable.

use std::time::Duration;

use kubeforge::etcd::{Endpoint, FailureKind, MemberState, Timeouts, wait_healthy};
use kubeforge_tests::etcd::{EtcdCluster, require_etcd};

#[tokio::test]
async fn wait_healthy_names_the_stopped_member() {
    let Some(etcd) = require_etcd() else { return };
    let mut cluster = EtcdCluster::start(3, &etcd);
    let tls = cluster.client_tls();
    let t = Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(2),
        ..Timeouts::default()
    };
    let eps: Vec<Endpoint> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| Endpoint::new(*n, cluster.member(n).client_url()))
        .collect();
    let report = wait_healthy(&eps, Some(&tls), t, Duration::from_secs(30)).await.unwrap();
    assert_eq!(report.members.len(), 3);
    assert!(report.all_healthy());

    cluster.stop("m2");
    let err = wait_healthy(&eps, Some(&tls), t, Duration::from_secs(3)).await.unwrap_err();
    let m2 = err.report.member("m2").unwrap();
    assert!(
        matches!(&m2.state, MemberState::Unhealthy { kind: FailureKind::Unreachable, .. }),
        "{:?}",
        m2.state
    );
    assert!(err.report.member("m1").unwrap().is_healthy(), "{}", err.report);
    assert!(err.report.member("m3").unwrap().is_healthy(), "{}", err.report);
    let text = err.to_string();
    assert!(text.contains("1 of 3 members unhealthy (m2)"), "{text}");
    assert!(
        text.contains(&format!(
            "m2 ({}): UNHEALTHY: etcd member m2",
            cluster.member("m2").client_url()
        )),
        "{text}"
    );
}
