//! Choosing the host of a host list against the local PostgreSQL (a primary) and a port
//! where nothing listens.

use dolphin_bridge::store::topology::Topology;

use crate::helpers::*;

/// `postgres://user@` of the test server, its `host:port`, and a `host:port` that is down.
fn hosts() -> (String, String, String) {
    let server = server_url();
    let (user, local) =
        server.rsplit_once('@').map(|(u, h)| (format!("{u}@"), h.to_string())).expect("a user@host URL");
    let down = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").to_string();
    (user, local, down)
}

#[tokio::test]
async fn a_host_list_uses_the_first_host_that_fits_and_says_what_each_host_is() {
    let (user, local, down) = hosts();
    let url = |attrs: &str| format!("{user}{down},{local}/postgres?target_session_attrs={attrs}");

    // read-write and prefer-standby (no standby here: any server) skip the host that is down.
    for attrs in ["read-write", "primary", "prefer-standby", "any"] {
        let topology = Topology::new("DATABASE_URL", &url(attrs), attrs != "prefer-standby").expect("valid");
        assert!(topology.current().is_none(), "{attrs}: no host is used before one is probed");
        let chosen = topology.find().await.expect("a host fits").label.clone();
        assert_eq!(chosen, local, "{attrs}");
        let pool = topology.pool(1, std::time::Duration::ZERO, &[]);
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.expect("the pool reaches the host");
        assert_eq!(one, 1);
        topology.close().await;
    }

    // Nothing fits `standby`: the answer names every host and what it is.
    let topology = Topology::new("BRIDGE_READ_DATABASE_URL", &url("standby"), false).expect("valid");
    let why = topology.find().await.expect_err("no standby");
    assert!(why.contains(&format!("{local}: primary")) && why.contains(&down), "{why}");
    // And its pools refuse to connect rather than reach a server that does not fit.
    let pool = topology.pool(1, std::time::Duration::ZERO, &[]);
    let refused = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&pool).await.expect_err("refused");
    assert!(dolphin_bridge::store::is_unavailable(&refused), "answered as unavailable (503): {refused}");
}
