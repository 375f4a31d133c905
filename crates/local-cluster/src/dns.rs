//! The embedded DNS server (`discovery`, feature `dns-server`) standing in for Swarm's: tests
//! and the demo set its records, nodes poll it (`DNS_CLUSTER_RESOLVER`).

use std::net::SocketAddr;

pub use discovery::dns_server::DnsServer;

use crate::Error;

/// Starts a DNS server on 127.0.0.1, on a port of its own (`DnsServer::addr`).
pub async fn start() -> Result<DnsServer, Error> {
    Ok(DnsServer::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?)
}
