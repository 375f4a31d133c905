//! Real network partitions between real processes: each node runs in its own network
//! namespace, attached by a veth pair to a bridge in the test's namespace, and a partition is
//! iptables rules in one node's namespace that drop traffic to and from the other nodes (the
//! test, on the bridge's own address, still reaches every node, as clients do).
//!
//! Everything is created by [`Netns::create`] and removed when the value drops, also when the
//! test fails. [`cluster`] runs a `local-cluster` [`Cluster`] on them, one namespace per node
//! started ([`Namespaces`]), whose [`Cluster::cut`] and [`Cluster::heal`] then work. Needs root, `ip` and `iptables`. Docker sets the root `FORWARD` policy to
//! `DROP` and bridged traffic passes through it, so the bridge gets `ACCEPT` rules of its own
//! (removed with it).

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use local_cluster::cluster::{Cluster, ClusterOptions};
use local_cluster::network::{Network, Place};

use crate::Error;

/// HTTP port of every node in a namespace: each has a network stack of its own, so a fixed
/// port is free.
const HTTP_PORT: u16 = 4000;
/// Cluster port of every node in a namespace.
const CLUSTER_PORT: u16 = 9000;

/// The namespaces, the bridge and the rules of one test.
#[derive(Debug)]
pub struct Netns {
    /// The bridge's name.
    bridge: String,
    /// Namespace names, one per node.
    names: Vec<String>,
    /// The subnet's third byte (10.77.`net`.0/24).
    net: u8,
}

/// Runs a command; its failure with stderr as the error.
fn run(args: &[&str]) -> Result<(), Error> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs a command, ignoring failure (teardown of what may not exist).
fn quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

impl Netns {
    /// `count` namespaces on 10.77.`net`.0/24 (nodes at .11, .12, ..., the bridge at .1).
    /// Leftovers of an earlier run with the same `net` are removed first.
    pub fn create(net: u8, count: usize) -> Result<Netns, Error> {
        let uid = Command::new("id").arg("-u").output()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err(Error::Setup(
                "network partitions need root (ip netns, iptables); CI runs as root".into(),
            ));
        }
        let ns = Netns {
            bridge: format!("mtbr{net}"),
            names: (0..count).map(|i| format!("mt{net}n{i}")).collect(),
            net,
        };
        ns.teardown();
        ns.setup().inspect_err(|_| ns.teardown())?;
        Ok(ns)
    }

    fn setup(&self) -> Result<(), Error> {
        let br = self.bridge.as_str();
        let gw = format!("{}/24", self.gateway());
        run(&["ip", "link", "add", br, "type", "bridge"])?;
        run(&["ip", "addr", "add", &gw, "dev", br])?;
        run(&["ip", "link", "set", br, "up"])?;
        run(&["iptables", "-I", "FORWARD", "-i", br, "-j", "ACCEPT"])?;
        run(&["iptables", "-I", "FORWARD", "-o", br, "-j", "ACCEPT"])?;
        for (i, name) in self.names.iter().enumerate() {
            let host = format!("mt{}h{i}", self.net);
            let peer = format!("mt{}p{i}", self.net);
            let addr = format!("{}/24", self.ip(i));
            run(&["ip", "netns", "add", name])?;
            run(&[
                "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer,
            ])?;
            run(&["ip", "link", "set", &host, "master", br])?;
            run(&["ip", "link", "set", &host, "up"])?;
            run(&["ip", "link", "set", &peer, "netns", name])?;
            run(&["ip", "-n", name, "addr", "add", &addr, "dev", &peer])?;
            run(&["ip", "-n", name, "link", "set", &peer, "up"])?;
            run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
            run(&[
                "ip",
                "-n",
                name,
                "route",
                "add",
                "default",
                "via",
                &self.gateway().to_string(),
            ])?;
        }
        Ok(())
    }

    fn teardown(&self) {
        for (i, name) in self.names.iter().enumerate() {
            quiet(&["ip", "netns", "del", name]);
            quiet(&["ip", "link", "del", &format!("mt{}h{i}", self.net)]);
        }
        let br = self.bridge.as_str();
        quiet(&["ip", "link", "del", br]);
        for dir in ["-i", "-o"] {
            // Every copy an interrupted run may have left.
            for _ in 0..4 {
                quiet(&["iptables", "-D", "FORWARD", dir, br, "-j", "ACCEPT"]);
            }
        }
    }

    /// The bridge's address: where the test (the clients) talk from.
    pub fn gateway(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, self.net, 1))
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, self.net, 11 + i as u8))
    }

    /// Node `i`'s namespace.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Cuts node `i` off from every other node, both ways; the gateway (clients) still
    /// reaches it.
    pub fn isolate(&self, i: usize) -> Result<(), Error> {
        let ns = self.names[i].as_str();
        let subnet = format!("10.77.{}.0/24", self.net);
        let gw = self.gateway().to_string();
        for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
            run(&[
                "ip", "netns", "exec", ns, "iptables", "-A", chain, dir, &gw, "-j", "ACCEPT",
            ])?;
            run(&[
                "ip", "netns", "exec", ns, "iptables", "-A", chain, dir, &subnet, "-j", "DROP",
            ])?;
        }
        Ok(())
    }

    /// Ends node `i`'s isolation.
    pub fn heal(&self, i: usize) -> Result<(), Error> {
        let ns = self.names[i].as_str();
        run(&["ip", "netns", "exec", ns, "iptables", "-F", "INPUT"])?;
        run(&["ip", "netns", "exec", ns, "iptables", "-F", "OUTPUT"])
    }

    /// The command prefix that runs a program in node `i`'s namespace (with `ip`'s full
    /// path: the node runs with a cleared environment).
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("ip");
        vec![
            ip.into(),
            "netns".into(),
            "exec".into(),
            self.names[i].clone(),
        ]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A cluster's network in namespaces: [`Netns`], one namespace handed out per node started
/// (replacements included), the DNS server on the bridge's address.
#[derive(Debug)]
pub struct Namespaces {
    ns: Netns,
    /// The next node's namespace.
    next: usize,
}

impl Namespaces {
    /// `count` namespaces on 10.77.`net`.0/24 ([`Netns::create`]).
    pub fn create(net: u8, count: usize) -> Result<Namespaces, Error> {
        Ok(Namespaces {
            ns: Netns::create(net, count)?,
            next: 0,
        })
    }

    /// The namespace holding `ip`, among those handed out.
    fn index_of(&self, ip: IpAddr) -> Result<usize, Error> {
        (0..self.next)
            .find(|k| self.ns.ip(*k) == ip)
            .ok_or_else(|| Error::Setup(format!("no namespace holds {ip}")))
    }
}

impl Network for Namespaces {
    fn dns_ip(&self) -> IpAddr {
        self.ns.gateway()
    }

    fn ports(&self) -> Result<(u16, u16), Error> {
        Ok((CLUSTER_PORT, HTTP_PORT))
    }

    fn place(&mut self) -> Result<Place, Error> {
        let k = self.next;
        if k >= self.ns.names.len() {
            return Err(Error::Setup(format!(
                "all {k} network namespaces of the cluster are used: give it more \
                 (harness::netns::cluster's `count`)"
            )));
        }
        self.next += 1;
        Ok(Place {
            ip: self.ns.ip(k),
            prefix: self.ns.exec_prefix(k),
        })
    }

    fn cut(&self, ip: IpAddr) -> Result<(), Error> {
        self.ns.isolate(self.index_of(ip)?)
    }

    fn heal(&self, ip: IpAddr) -> Result<(), Error> {
        self.ns.heal(self.index_of(ip)?)
    }
}

/// Starts a cluster as [`Cluster::start`] does, but with every node in a network namespace
/// of its own: `count` of them at most over the cluster's life (every node started,
/// replacements included, takes one). Needs root.
pub async fn cluster(opts: ClusterOptions, count: usize) -> Result<Cluster, Error> {
    let network = Namespaces::create(opts.net, count)?;
    Cluster::start_on(opts, Box::new(network)).await
}
