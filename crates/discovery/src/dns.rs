//! DNS lookups for discovery: a hickory resolver with its cache off, and one function per
//! query kind. Owns how names are parsed and asked; the poll loop lives in [`crate::poller`].
//!
//! Two traps this module exists to avoid (both measured, see `shared/research/swarm.md`):
//! Docker's DNS answers with TTL 600, so a caching resolver would hide new tasks for ten
//! minutes; and `&str` names go through IDNA, which rejects the `_` of every stack service name
//! (`tasks.mystack_myservice`), so names are parsed with `Name::from_ascii`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};

/// Longest wait for one DNS answer.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a lookup failed (an empty answer is not a failure).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The name is not a valid DNS name.
    #[error("`{name}` is not a valid DNS name: {reason}")]
    BadName {
        /// The name as configured.
        name: String,
        /// What the parser said.
        reason: String,
    },
    /// The nameserver did not answer or answered with an error.
    #[error("lookup of `{name}` failed: {source}")]
    Lookup {
        /// The name asked.
        name: String,
        /// The resolver's error.
        #[source]
        source: NetError,
    },
    /// No resolver could be built from the system configuration.
    #[error(
        "cannot read the system DNS configuration (/etc/resolv.conf): {0}; set DNS_CLUSTER_RESOLVER=ip:port"
    )]
    SystemConfig(NetError),
}

/// Builds a resolver that asks `server` (or the system's nameservers) and caches nothing.
pub fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, DnsError> {
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.positive_max_ttl = Some(Duration::from_secs(1));
    opts.negative_max_ttl = Some(Duration::from_secs(1));
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = LOOKUP_TIMEOUT;
    opts.attempts = 2;
    match server {
        Some(addr) => {
            let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
            udp.port = addr.port();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            Ok(Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
            .with_options(opts)
            .build()
            .map_err(DnsError::SystemConfig)?)
        }
        None => {
            let builder = Resolver::builder_tokio().map_err(DnsError::SystemConfig)?;
            builder
                .with_options(opts)
                .build()
                .map_err(DnsError::SystemConfig)
        }
    }
}

fn name(s: &str) -> Result<Name, DnsError> {
    Name::from_ascii(s).map_err(|e| DnsError::BadName {
        name: s.to_string(),
        reason: e.to_string(),
    })
}

/// The A and AAAA addresses of `host`; an unknown name or no records is an empty list.
pub async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    match resolver.lookup_ip(name(host)?).await {
        Ok(found) => {
            let mut ips: Vec<IpAddr> = found.iter().collect();
            ips.sort();
            ips.dedup();
            Ok(ips)
        }
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(source) => Err(DnsError::Lookup {
            name: host.to_string(),
            source,
        }),
    }
}

/// The peers an SRV name points at: every address of every target, at the record's port.
pub async fn srv(resolver: &TokioResolver, srv_name: &str) -> Result<Vec<SocketAddr>, DnsError> {
    let lookup = match resolver.srv_lookup(name(srv_name)?).await {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
        Err(source) => {
            return Err(DnsError::Lookup {
                name: srv_name.to_string(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for record in lookup.answers() {
        if let RData::SRV(srv) = &record.data {
            let target = srv.target.to_ascii();
            for ip in addresses(resolver, &target).await? {
                out.push(SocketAddr::new(ip, srv.port));
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
