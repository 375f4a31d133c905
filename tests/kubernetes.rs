//! The Kubernetes manifests (docker/kubernetes) run for real, without a cluster: three
//! `minotaur` processes started as the pods of the Deployment would be (the image's
//! entrypoint, the environment the kubelet builds from the manifest, a read-only root file
//! system with only the manifest's emptyDir mounts writable) find each other through the SRV
//! record Kubernetes DNS serves for the headless Service, played by the embedded DNS server.
//!
//! Nothing about discovery is copied here: the Service's name and named port, the query the
//! nodes poll, their names and intervals all come from the YAML. What a pod gets from its
//! cluster and a loopback test cannot copy is set by the test and listed in `OVERRIDES`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::dns;
use harness::kubernetes::{Manifests, Pod, pod_hostname, read_only_root, srv_name};
use harness::logs;
use harness::node::{NodeProcess, cluster_view};
use harness::ports::{free_ports, loopbacks};
use harness::wait::{eventually, scaled};
use nix::sys::signal::Signal;
use support::MINOTAUR;

const NAMESPACE: &str = "minotaur-test";

/// What the test sets over the manifest's environment, and why each.
const OVERRIDES: &[(&str, &str)] = &[
    // Pods have an IP each and may share ports; here all share the loopback addresses' free
    // ports, so both ports are the test's (the SRV record carries the cluster port, as
    // Kubernetes DNS gives the endpoints' port).
    ("CLUSTER_PORT", "a free port"),
    ("PORT", "a free port"),
    // A pod binds HTTP on 0.0.0.0 of its own network namespace; here each binds its address.
    ("HTTP_BIND", "the pod IP"),
    // A pod asks cluster DNS through /etc/resolv.conf; here the embedded server.
    ("DNS_CLUSTER_RESOLVER", "the embedded DNS server"),
    // The image's ENV (/app in the image): the release layout built by `release_root`.
    ("RELEASE_ROOT", "a release layout of this build"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The image's /app: bin/minotaur.bin (this build) and rel/env.sh, for rel/entrypoint.sh. In
/// Cargo's target directory: the log directory is under /tmp, which the pods' emptyDir hides.
fn release_root() -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-release");
    std::fs::create_dir_all(root.join("bin")).expect("release dir");
    std::fs::create_dir_all(root.join("rel")).expect("release dir");
    let link = |target: &Path, at: PathBuf| {
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(target, at).expect("symlink into the release layout");
    };
    link(Path::new(MINOTAUR), root.join("bin/minotaur.bin"));
    link(&repo().join("rel/env.sh"), root.join("rel/env.sh"));
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pods_of_the_deployment_form_one_cluster_through_the_headless_services_srv_record() {
    let manifests =
        Manifests::load(&repo().join("docker/kubernetes")).expect("read docker/kubernetes");
    let service = manifests.headless_service().expect("the headless Service");
    assert!(
        service.publish_not_ready,
        "pods must be in DNS before they are ready, to join"
    );
    let [cluster_port] = &service.ports[..] else {
        panic!("the headless Service has one named port, the cluster port: {service:?}");
    };
    let writable = manifests.writable_paths().expect("the pod's volume mounts");
    assert_eq!(
        writable,
        [PathBuf::from("/tmp")],
        "the pod's only writable path"
    );

    let ips = loopbacks(41, 3);
    let (node_port, http_port) = free_ports(&ips).expect("free ports");
    let dns = dns::start().await.expect("start the DNS server");
    let logs = logs::test_dir("kubernetes");
    let release = release_root();
    let prefix = read_only_root(&writable).expect("a read-only root file system");

    // Kubernetes DNS for the headless Service: one SRV target per pod, each target's A record
    // its IP (publishNotReadyAddresses: from the moment the pods have IPs).
    let srv = srv_name(&service.name, cluster_port, NAMESPACE);
    let targets: Vec<(String, u16)> = ips
        .iter()
        .map(|ip| {
            let host = pod_hostname(*ip, &service.name, NAMESPACE);
            dns.set_addresses(&host, &[*ip]);
            (host, node_port)
        })
        .collect();
    dns.set_srv(&srv, &targets);

    let cookie = format!("k8s-test-{:016x}", rand::random::<u64>());
    let mut nodes = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let pod = Pod {
            name: format!("minotaur-{i}"),
            namespace: NAMESPACE.into(),
            ip: *ip,
            secrets: HashMap::from([(("minotaur-cookie".into(), "cookie".into()), cookie.clone())]),
        };
        let mut env = manifests.pod_env(&pod).expect("the pod's environment");
        assert_eq!(
            env.get("DNS_CLUSTER_QUERY"),
            Some(&srv),
            "the nodes poll the headless Service's SRV record"
        );
        assert_eq!(env.get("RELEASE_NODE"), Some(&format!("minotaur@{ip}")));
        let set: HashMap<&str, String> = HashMap::from([
            ("CLUSTER_PORT", node_port.to_string()),
            ("PORT", http_port.to_string()),
            ("HTTP_BIND", ip.to_string()),
            ("DNS_CLUSTER_RESOLVER", dns.addr().to_string()),
            ("RELEASE_ROOT", release.display().to_string()),
        ]);
        assert_eq!(set.len(), OVERRIDES.len());
        for (k, _) in OVERRIDES {
            env.insert((*k).to_string(), set[k].clone());
        }
        // PID 1 of the container: the image's entrypoint (env.sh, then exec of the binary).
        let node =
            NodeProcess::start_with(&prefix, repo().join("rel/entrypoint.sh"), *ip, env, &logs)
                .expect("start a pod");
        nodes.push(node);
    }

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let all: Vec<String> = {
        let mut v: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        v.sort();
        v
    };
    for n in &nodes {
        let others: Vec<String> = all.iter().filter(|x| **x != n.name).cloned().collect();
        let url = n.url();
        let seen = eventually(
            &format!("{} lists all three nodes in /api/cluster", n.name),
            Duration::from_secs(30),
            || async {
                let (node, connected, members) = cluster_view(&http, &url).await?;
                (connected == others && members == all).then_some((node, connected, members))
            },
        )
        .await;
        assert_eq!(seen, (n.name.clone(), others, all.clone()));
        // Every member alive is not yet every member ready: one that just saw the others
        // join needs a majority's lease first (503 until then).
        eventually(
            &format!("{} ready (/healthz 200)", n.name),
            Duration::from_secs(10),
            || async {
                let r = http.get(format!("{url}/healthz")).send().await.ok()?;
                (r.status() == 200).then_some(())
            },
        )
        .await;
    }
    for n in &nodes {
        let log = n.log();
        assert!(
            !log.contains("Read-only file system"),
            "{} tried to write outside /tmp:\n{log}",
            n.name
        );
    }

    // A pod deleted: SIGTERM (after the preStop pause, which counts in the grace period); the
    // node drains and exits 0 before the kubelet's SIGKILL at terminationGracePeriodSeconds.
    let grace = manifests
        .termination_grace_period()
        .expect("the grace period");
    let mut leaving = nodes.pop().expect("three nodes");
    leaving.signal(Signal::SIGTERM);
    let code = leaving.wait(scaled(grace)).await;
    assert_eq!(code, Some(0), "a drained pod exits 0:\n{}", leaving.log());
}
