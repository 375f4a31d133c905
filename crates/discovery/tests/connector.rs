//! Several real nodes (ractor_cluster endpoints over real TCP on 127.0.0.x) in one process:
//! mesh formation, node events, ping, cookie refusal, and hostile bytes on the cluster port.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::IpAddr;
use std::time::Duration;

use discovery::NodeEvent;
use discovery::connector::DownReason;
use harness::mesh::{Node, connector_config};
use harness::node;
use harness::ports::{free_port, loopbacks};
use harness::wait::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// A node on `ip` with `cookie`, closing connections that have not authenticated after 1 s.
async fn start(ip: IpAddr, port: u16, cookie: &str) -> Node {
    let mut config = connector_config(ip, port, cookie);
    config.handshake_timeout = Duration::from_secs(1);
    Node::start(config).await
}

/// Whether the node closes `s` (end of stream or an error) within [`DEADLINE`], whatever it
/// sends before.
async fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(DEADLINE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_mesh_and_report_events() {
    let ips = loopbacks(11, 3);
    let port = free_port(&ips).unwrap();
    let mut nodes = Vec::new();
    for ip in &ips {
        nodes.push(start(*ip, port, "secret").await);
    }
    let mut events = nodes[0].connector.subscribe().await.unwrap();
    assert!(events.current.is_empty());
    for n in &nodes {
        n.discover(nodes.iter().map(Node::peer));
    }
    for n in &nodes {
        let mut expected: Vec<String> = ips
            .iter()
            .map(|ip| node::name(*ip))
            .filter(|s| *s != n.connector.node().name)
            .collect();
        expected.sort();
        eventually("full mesh", DEADLINE, || async {
            (n.connected().await == expected).then_some(())
        })
        .await;
    }
    // Node 0 saw two Up events, one per peer, with the peers' incarnations.
    let mut up = Vec::new();
    while up.len() < 2 {
        match tokio::time::timeout(DEADLINE, events.events.recv()).await {
            Ok(Some(NodeEvent::Up(p))) => up.push(p.id),
            other => panic!("expected Up, got {other:?}"),
        }
    }
    up.sort();
    let mut want = vec![
        nodes[1].connector.node().clone(),
        nodes[2].connector.node().clone(),
    ];
    want.sort();
    assert_eq!(up, want);

    let rtt = nodes[0]
        .connector
        .ping(&nodes[1].connector.node().name)
        .await
        .unwrap();
    assert!(rtt < DEADLINE);
    let err = nodes[0]
        .connector
        .ping("minotaur@127.9.9.9")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not connected"), "{err}");

    // A node that stops is reported down with its incarnation; the others keep their link.
    let gone = nodes[2].connector.node().clone();
    nodes[2].connector.stop().await;
    let down = loop {
        match tokio::time::timeout(DEADLINE, events.events.recv()).await {
            Ok(Some(NodeEvent::Down { id, reason })) => break (id, reason),
            Ok(Some(NodeEvent::Up(_))) => continue,
            other => panic!("expected Down, got {other:?}"),
        }
    };
    assert_eq!(down, (gone, DownReason::Disconnected));
    assert_eq!(
        nodes[0].connected().await,
        vec![nodes[1].connector.node().name.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_one_node_discovers_joins_the_whole_mesh_and_a_vanished_one_stays_connected() {
    let ips = loopbacks(12, 4);
    let port = free_port(&ips).unwrap();
    let a = start(ips[0], port, "secret").await;
    let b = start(ips[1], port, "secret").await;
    a.discover([b.peer()]);
    eventually("a sees b", DEADLINE, || async {
        (a.connected().await.len() == 1).then_some(())
    })
    .await;
    // c appears in "DNS" for a only: a dials it, and b and c, which discover nothing, learn
    // of each other from a and connect (as a node that started after another left DNS must
    // still reach it while it drains).
    let c = start(ips[2], port, "secret").await;
    a.discover([b.peer(), c.peer()]);
    for (n, others) in [(&a, [1, 2]), (&b, [0, 2]), (&c, [0, 1])] {
        let expected: Vec<String> = others.iter().map(|i| node::name(ips[*i])).collect();
        eventually("a full mesh through a", DEADLINE, || async {
            (n.connected().await == expected).then_some(())
        })
        .await;
    }
    // b leaves DNS (as a Swarm task does before SIGTERM) while d appears: the links stay.
    // Once a reached d, it has acted on the peer set without b (a condition, not a sleep).
    let d = start(ips[3], port, "secret").await;
    a.discover([c.peer(), d.peer()]);
    eventually("a reached d, the new peer set's node", DEADLINE, || async {
        a.connected()
            .await
            .contains(&d.connector.node().name)
            .then_some(())
    })
    .await;
    let b_name = b.connector.node().name.clone();
    assert!(
        a.connected().await.contains(&b_name),
        "a dropped b when it left DNS"
    );
    assert!(c.connected().await.contains(&b_name));
    d.connector.stop().await;
    // b stops: everyone reports it down, and nobody lists it any more, so nobody keeps
    // redialling it (a restarted b would be found again through DNS or a peer).
    b.connector.stop().await;
    for n in [&a, &c] {
        eventually("b (and d) gone", DEADLINE, || async {
            (n.connected().await.len() == 1).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_cookie_is_refused_and_never_listed() {
    let ips = loopbacks(13, 3);
    let port = free_port(&ips).unwrap();
    let a = start(ips[0], port, "secret").await;
    let intruder = start(ips[1], port, "not-the-secret").await;
    let c = start(ips[2], port, "secret").await;
    intruder.discover([a.peer(), c.peer()]);
    a.discover([intruder.peer(), c.peer()]);
    // Dialled at the same time as the intruder: once a and c are linked (and have pinged each
    // other), every side has dialled every peer; the intruder is linked to nobody.
    eventually("a and c linked", DEADLINE, || async {
        (a.connected().await.len() == 1 && c.connected().await.len() == 1).then_some(())
    })
    .await;
    for _ in 0..3 {
        a.connector.ping(&c.connector.node().name).await.unwrap();
    }
    assert_eq!(a.connected().await, [c.connector.node().name.clone()]);
    assert_eq!(c.connected().await, [a.connector.node().name.clone()]);
    assert!(intruder.connected().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_idle_connections_do_not_hurt_the_node() {
    let ips = loopbacks(14, 2);
    let port = free_port(&ips).unwrap();
    let a = start(ips[0], port, "secret").await;

    // Garbage bytes and a huge length prefix: the node closes those connections.
    for payload in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        u64::MAX.to_be_bytes().to_vec(),
        (1u64 << 40).to_be_bytes().to_vec(),
        vec![0u8; 4096],
    ] {
        let mut s = TcpStream::connect(a.addr).await.unwrap();
        let _ = s.write_all(&payload).await;
        assert!(
            closed_by_peer(&mut s).await,
            "connection with garbage was not closed"
        );
    }

    // Many idle connections: closed by the handshake deadline (1 s in this test).
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(a.addr).await.unwrap());
    }
    // Meanwhile a real peer still joins at once.
    let b = start(ips[1], port, "secret").await;
    b.discover([a.peer()]);
    eventually("b joins despite idle connections", DEADLINE, || async {
        (a.connected().await == vec![node::name(ips[1])]).then_some(())
    })
    .await;
    for mut s in idle {
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "idle connection was not closed"
        );
    }
    assert_eq!(a.connected().await, vec![node::name(ips[1])]);
}

/// The TCP ports this process listens on at 127.0.0.1 (from `/proc/net/tcp`, the sockets whose
/// inodes are among this process's descriptors).
fn own_loopback_listeners() -> std::collections::BTreeSet<u16> {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = f.get(1)?.split_once(':')?;
            let listening = *f.get(3)? == "0A";
            (addr == "0100007F" && listening && inodes.contains(*f.get(9)?))
                .then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ractor_clusters_own_loopback_listener_closes_what_dials_it() {
    let ips = loopbacks(16, 1);
    let port = free_port(&ips).unwrap();
    let before = own_loopback_listeners();
    // A handshake deadline far beyond the test's: what closes the connection is the door.
    let mut config = connector_config(ips[0], port, "secret");
    config.handshake_timeout = Duration::from_secs(600);
    let a = Node::start(config).await;
    // ractor_cluster's NodeServer listens on 127.0.0.1 too (it receives the cluster port's
    // gated streams through another door): a local process dialling it directly, past the
    // cluster port's limits, is closed at once.
    let internal: Vec<u16> = own_loopback_listeners()
        .difference(&before)
        .copied()
        .collect();
    assert!(!internal.is_empty(), "no internal listener found");
    for p in internal {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", p)).await else {
            continue; // another test's node, gone
        };
        assert!(
            closed_by_peer(&mut s).await,
            "a connection to 127.0.0.1:{p} stayed open"
        );
    }
    assert!(a.connected().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_replaces_its_previous_incarnation() {
    let ips = loopbacks(15, 2);
    let port = free_port(&ips).unwrap();
    let a = start(ips[0], port, "secret").await;
    let mut events = a.connector.subscribe().await.unwrap();
    let b1 = start(ips[1], port, "secret").await;
    b1.discover([a.peer()]);
    let first = match tokio::time::timeout(DEADLINE, events.events.recv()).await {
        Ok(Some(NodeEvent::Up(p))) => p.id,
        other => panic!("expected Up, got {other:?}"),
    };
    b1.connector.stop().await;
    let b2 = start(ips[1], port, "secret").await;
    b2.discover([a.peer()]);
    let mut seen = Vec::new();
    while !matches!(seen.last(), Some(NodeEvent::Up(p)) if p.id == *b2.connector.node()) {
        match tokio::time::timeout(DEADLINE, events.events.recv()).await {
            Ok(Some(e)) => seen.push(e),
            other => panic!("expected events, got {other:?} after {seen:?}"),
        }
    }
    assert!(
        matches!(&seen[0], NodeEvent::Down { id, .. } if *id == first),
        "{seen:?}"
    );
    assert!(b2.connector.node().incarnation > first.incarnation);
}
