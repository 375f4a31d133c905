//! Which of this host's addresses peers reach it on: the host part of the default node name.
//!
//! The Elixir seed used `$(hostname -I)`, which picks the wrong address as soon as a container
//! has several networks (a Swarm task with a published port has three). In order of preference:
//! 1. the source address the kernel would use to reach a peer discovery found (a UDP "connect"
//!    sends nothing, it only asks the routing table), so the address is on the shared network;
//! 2. the one address `/etc/hosts` gives this host's name (Docker writes one line per user
//!    network and none for ingress or the gateway bridge);
//! 3. the first non-loopback IPv4 address of the interfaces.
//!
//! Owns only this reasoning; it never changes configuration.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

/// The address peers should use for this host. `peer_hint` is any address discovery returned
/// (possibly this host's own).
pub fn own_ip(peer_hint: Option<IpAddr>) -> Option<IpAddr> {
    peer_hint
        .and_then(route_source)
        .or_else(from_etc_hosts)
        .or_else(first_interface_ipv4)
}

/// The local address the routing table picks to reach `peer`.
fn route_source(peer: IpAddr) -> Option<IpAddr> {
    let any: IpAddr = match peer {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0)).ok()?;
    socket.connect((peer, 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && (peer.is_loopback() || !ip.is_loopback())).then_some(ip)
}

/// The single non-loopback address `/etc/hosts` maps this host's name to.
fn from_etc_hosts() -> Option<IpAddr> {
    let hostname = std::fs::read_to_string("/etc/hostname").ok()?;
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    unique_host_address(hostname.trim(), &hosts)
}

fn unique_host_address(hostname: &str, hosts: &str) -> Option<IpAddr> {
    if hostname.is_empty() {
        return None;
    }
    let mut found: Vec<IpAddr> = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let ip: IpAddr = fields.next()?.parse().ok()?;
            fields
                .any(|n| n.eq_ignore_ascii_case(hostname))
                .then_some(ip)
        })
        .filter(|ip| !ip.is_loopback())
        .collect();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

fn first_interface_ipv4() -> Option<IpAddr> {
    if_addrs::get_if_addrs()
        .ok()?
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etc_hosts_with_one_network() {
        let hosts = "127.0.0.1 localhost\n10.0.1.6 abc123\n";
        assert_eq!(
            unique_host_address("abc123", hosts),
            Some("10.0.1.6".parse().unwrap())
        );
    }

    #[test]
    fn etc_hosts_with_two_networks_is_ambiguous() {
        let hosts = "127.0.0.1 localhost\n10.0.1.6 abc123\n10.0.2.9 abc123\n";
        assert_eq!(unique_host_address("abc123", hosts), None);
    }

    #[test]
    fn route_source_to_loopback_peer_is_loopback() {
        let ip = route_source("127.0.0.1".parse().unwrap()).unwrap();
        assert!(ip.is_loopback());
    }
}
