//! An in-process DNS server on UDP and TCP whose records the caller changes at run time.
//!
//! It owns one UDP socket and one TCP listener on the same address, and a table of names
//! with A/AAAA and SRV records. It stands in for Docker Swarm's embedded DNS (which answers
//! `tasks.<service>` with one A record per task, TTL 600, in random order) in end-to-end tests
//! and in the demo command; it is not meant to face the internet.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    io, iter,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hickory_server::{
    Server,
    net::runtime::Time,
    proto::{
        op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode},
        rr::{
            LowerName, Name, RData, Record, RecordType,
            rdata::{A, AAAA, SRV},
        },
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use rand::seq::SliceRandom;
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info, warn};

/// Docker's embedded DNS uses 600 s; clients must not depend on it being shorter.
const TTL: u32 = 600;
/// Idle TCP connections are closed after this, so a stuck client cannot pin a task.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per TCP connection (the value hickory's own tests use).
const TCP_RESPONSE_BUFFER: usize = 32;
/// A port free for UDP may be taken for TCP; try again with another one this many times.
const BIND_ATTEMPTS: usize = 16;
/// `stop()` waits this long for a graceful shutdown before aborting the tasks.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The records of one name. A name with neither kind is removed from the table.
#[derive(Debug, Default)]
struct Entry {
    addrs: Vec<IpAddr>,
    srv: Vec<(Name, u16)>,
}

/// State shared between the [`DnsServer`] handle and the request handler.
#[derive(Debug, Default)]
struct Shared {
    records: RwLock<HashMap<LowerName, Entry>>,
    queries: AtomicU64,
}

/// An embedded DNS server; see the module docs. Dropping it stops the server.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    // `None` once stopped; `Server` aborts its tasks when dropped.
    server: Option<Server<Handler>>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .field("running", &self.server.is_some())
            .finish()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `bind` (port 0 = pick one free port that is free for BOTH udp and
    /// tcp; retry a few times) and starts serving on the current tokio runtime.
    pub async fn start(bind: SocketAddr) -> io::Result<DnsServer> {
        let (udp, tcp) = bind_both(bind).await?;
        let addr = udp.local_addr()?;
        let shared = Arc::new(Shared::default());
        let mut server = Server::new(Handler(Arc::clone(&shared)));
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        info!(%addr, "dns server started");
        Ok(DnsServer {
            addr,
            shared,
            server: Some(server),
        })
    }

    /// The address it answers on (udp and tcp share it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the address records of `name` (A for IPv4 entries, AAAA for IPv6). An empty
    /// list removes the name (unless it still has SRV records).
    pub fn set_addresses(&self, name: &str, ips: &[IpAddr]) {
        self.update(name, |entry| entry.addrs = ips.to_vec());
        debug!(name, count = ips.len(), "dns addresses set");
    }

    /// Replaces the SRV records of `name`: (target host name, port). Priority 0, weight 10.
    /// Empty removes (the name goes unless it still has address records). Targets that are
    /// not valid DNS names are skipped with a warning.
    pub fn set_srv(&self, name: &str, targets: &[(String, u16)]) {
        let srv: Vec<(Name, u16)> = targets
            .iter()
            .filter_map(|(target, port)| parse_name(target).map(|n| (n, *port)))
            .collect();
        let count = srv.len();
        self.update(name, |entry| entry.srv = srv);
        debug!(name, count, "dns srv records set");
    }

    /// How many queries it has answered so far (all types).
    pub fn queries(&self) -> u64 {
        self.shared.queries.load(Ordering::Relaxed)
    }

    /// Stops serving (also done on drop). After this, the port no longer answers.
    pub async fn stop(mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        match tokio::time::timeout(STOP_TIMEOUT, server.shutdown_gracefully()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, addr = %self.addr, "dns server stopped with an error"),
            Err(_) => warn!(addr = %self.addr, "dns server shutdown timed out, aborting"),
        }
        // Dropping the server aborts whatever is left, which closes the sockets.
        drop(server);
        info!(addr = %self.addr, "dns server stopped");
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Entry)) {
        let Some(name) = parse_name(name) else {
            return;
        };
        let key = LowerName::new(&name);
        // No code panics while holding the lock, so a poisoned map is still consistent.
        let mut records = self
            .shared
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = records.entry(key.clone()).or_default();
        change(entry);
        if entry.addrs.is_empty() && entry.srv.is_empty() {
            records.remove(&key);
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            // Cancel first so tasks that are mid-request end cleanly; the drop aborts the rest.
            server.shutdown_token().cancel();
            debug!(addr = %self.addr, "dns server dropped");
        }
    }
}

/// Binds a UDP socket and a TCP listener on the same address.
async fn bind_both(bind: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if bind.port() != 0 {
        return Ok((UdpSocket::bind(bind).await?, TcpListener::bind(bind).await?));
    }
    let mut last_error = None;
    for _ in 0..BIND_ATTEMPTS {
        // The OS picks a free UDP port; TCP on that number may still be taken.
        let udp = UdpSocket::bind(bind).await?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) => {
                debug!(%addr, %error, "tcp port taken, trying another");
                last_error = Some(error);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port free for both udp and tcp")))
}

/// Parses a name leniently: ASCII (so `_` is allowed, unlike IDNA), any case, trailing dot
/// optional. Invalid names are logged and ignored, since the setters cannot fail.
fn parse_name(name: &str) -> Option<Name> {
    let mut parsed = Name::from_ascii(name)
        .inspect_err(|error| warn!(name, %error, "invalid dns name ignored"))
        .ok()?;
    // Queries always carry fully qualified names; make ours compare equal to them.
    parsed.set_fqdn(true);
    Some(parsed)
}

/// Answers requests from the shared record table.
struct Handler(Arc<Shared>);

impl Handler {
    /// The (answers, additionals) for a question, or `None` for an unknown name (NXDOMAIN).
    /// Everything is copied out under the read lock so no lock is held while sending.
    fn lookup(&self, qname: &Name, qtype: RecordType) -> Option<(Vec<Record>, Vec<Record>)> {
        let records = self
            .0
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = records.get(&LowerName::new(qname))?;
        let mut additionals = Vec::new();
        let answers = match qtype {
            RecordType::A | RecordType::AAAA => {
                let mut answers = address_records(qname, &entry.addrs, qtype);
                // Docker shuffles too; clients must not rely on the order.
                answers.shuffle(&mut rand::rng());
                answers
            }
            RecordType::SRV => entry
                .srv
                .iter()
                .map(|(target, port)| {
                    // Glue the target's addresses so clients can skip a second round trip.
                    if let Some(t) = records.get(&LowerName::new(target)) {
                        additionals.extend(address_records(target, &t.addrs, RecordType::A));
                        additionals.extend(address_records(target, &t.addrs, RecordType::AAAA));
                    }
                    let srv = SRV::new(0, 10, *port, target.clone());
                    Record::from_rdata(qname.clone(), TTL, RData::SRV(srv))
                })
                .collect(),
            _ => Vec::new(),
        };
        Some((answers, additionals))
    }

    async fn handle<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        self.0.queries.fetch_add(1, Ordering::Relaxed);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let (answers, additionals) = match request.request_info() {
            // Zero or several questions: hickory supports exactly one, and so do we.
            Err(_) => {
                metadata.response_code = ResponseCode::FormErr;
                Default::default()
            }
            Ok(_) if request.metadata.op_code != OpCode::Query => {
                metadata.response_code = ResponseCode::NotImp;
                Default::default()
            }
            Ok(info) => {
                metadata.authoritative = true;
                // The original (not lowercased) name: answers must echo the question's
                // spelling for resolvers that use 0x20 case randomization.
                let query = info.query.original();
                self.lookup(query.name(), query.query_type())
                    .unwrap_or_else(|| {
                        metadata.response_code = ResponseCode::NXDomain;
                        Default::default()
                    })
            }
        };
        // RFC 6891: answer EDNS with EDNS, else UDP replies are capped at 512 bytes.
        let edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().max(512));
            edns
        });
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            answers.iter(),
            iter::empty(),
            iter::empty(),
            additionals.iter(),
        );
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, src = %request.src(), "dns response not sent");
                // What hickory's own catalog reports for a failed send.
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// The A (or AAAA) records of `name` among `ips`, depending on `qtype`.
fn address_records(name: &Name, ips: &[IpAddr], qtype: RecordType) -> Vec<Record> {
    ips.iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(name.clone(), TTL, rdata))
        .collect()
}

// Written out by hand because the trait is declared with `#[async_trait]` and this crate does
// not depend on `async-trait`; the signature is what that macro expands to.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: ResponseHandler + 'async_trait,
        T: Time + 'async_trait,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.handle(request, response_handle))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hickory_resolver::{
        Resolver, TokioResolver,
        config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
        net::runtime::TokioRuntimeProvider,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Names go in as ASCII: the resolver parses a `&str` as IDNA, which rejects `_`.
    fn n(name: &str) -> Name {
        Name::from_ascii(name).unwrap()
    }

    /// A server on a free localhost port, and a resolver that asks only it and caches nothing.
    async fn setup() -> (DnsServer, TokioResolver) {
        let server = DnsServer::start(([127, 0, 0, 1], 0).into()).await.unwrap();
        let (mut udp, mut tcp) = (ConnectionConfig::udp(), ConnectionConfig::tcp());
        (udp.port, tcp.port) = (server.addr().port(), server.addr().port());
        let ns = NameServerConfig::new(server.addr().ip(), true, vec![udp, tcp]);
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::from_secs(1));
        opts.negative_max_ttl = Some(Duration::from_secs(1));
        opts.attempts = 1;
        opts.timeout = Duration::from_secs(2);
        opts.use_hosts_file = ResolveHosts::Never;
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .unwrap();
        (server, resolver)
    }

    async fn ips(r: &TokioResolver, name: &str) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = r.lookup_ip(n(name)).await.unwrap().iter().collect();
        ips.sort();
        ips
    }

    #[tokio::test]
    async fn a_records_for_underscore_name_any_case() {
        let (server, r) = setup().await;
        server.set_addresses(
            "tasks.minotaur-stack_minotaur",
            &[ip("10.0.0.2"), ip("10.0.0.1")],
        );
        let want = vec![ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(ips(&r, "tasks.minotaur-stack_minotaur.").await, want);
        assert_eq!(ips(&r, "TASKS.Minotaur-Stack_Minotaur.").await, want);
        assert_eq!(
            server.queries(),
            4,
            "one A and one AAAA query per lookup_ip"
        );
    }

    #[tokio::test]
    async fn changes_show_on_the_next_lookup() {
        let (server, r) = setup().await;
        server.set_addresses("Tasks.Game_Node.", &[ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(ips(&r, "tasks.game_node.").await.len(), 2);
        server.set_addresses("tasks.game_node", &[ip("10.0.0.3")]);
        assert_eq!(ips(&r, "tasks.game_node.").await, vec![ip("10.0.0.3")]);
        server.set_addresses("tasks.game_node", &[]);
        let err = r.lookup_ip(n("tasks.game_node.")).await.unwrap_err();
        assert!(err.is_nx_domain(), "{err:?}");
    }

    #[tokio::test]
    async fn aaaa_records_and_nodata() {
        let (server, r) = setup().await;
        server.set_addresses("v6_node.test", &[ip("fd00::7"), ip("10.0.0.9")]);
        server.set_addresses("v4_only.test", &[ip("10.0.0.1")]);
        let lookup = r.ipv6_lookup(n("v6_node.test.")).await.unwrap();
        let answers: Vec<&RData> = lookup.answers().iter().map(|rec| &rec.data).collect();
        assert_eq!(answers, [&RData::AAAA(AAAA("fd00::7".parse().unwrap()))]);
        // A known name without records of the asked type is NODATA, not NXDOMAIN.
        let err = r.ipv6_lookup(n("v4_only.test.")).await.unwrap_err();
        assert!(err.is_no_records_found() && !err.is_nx_domain(), "{err:?}");
    }

    #[tokio::test]
    async fn unknown_name_is_nxdomain() {
        let (_server, r) = setup().await;
        let err = r.lookup_ip(n("tasks.nobody_here.")).await.unwrap_err();
        assert!(err.is_no_records_found() && err.is_nx_domain(), "{err:?}");
    }

    #[tokio::test]
    async fn srv_records_with_glue() {
        let (server, r) = setup().await;
        let name = "_cluster._tcp.minotaur.default.svc.cluster.local";
        server.set_addresses("node-0.minotaur.test", &[ip("10.0.0.5")]);
        let targets = [
            ("node-0.minotaur.test".into(), 4697),
            ("node-1.minotaur.test.".into(), 4698),
        ];
        server.set_srv(name, &targets);
        let lookup = r.srv_lookup(n(name)).await.unwrap();
        let mut srv: Vec<(String, u16, u16, u16)> = (lookup.answers().iter())
            .filter_map(|rec| match &rec.data {
                RData::SRV(s) => Some((s.target.to_ascii(), s.port, s.priority, s.weight)),
                _ => None,
            })
            .collect();
        srv.sort();
        let want = [
            ("node-0.minotaur.test.", 4697),
            ("node-1.minotaur.test.", 4698),
        ];
        assert_eq!(srv, want.map(|(t, p)| (t.to_string(), p, 0, 10)));
        let glue: Vec<&RData> = lookup.additionals().iter().map(|rec| &rec.data).collect();
        assert_eq!(glue, [&RData::A(A("10.0.0.5".parse().unwrap()))]);
    }

    #[tokio::test]
    async fn garbage_does_not_stop_the_server() {
        let (server, r) = setup().await;
        server.set_addresses("alive.test", &[ip("10.0.0.1")]);
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for junk in [
            &b""[..],
            b"\x00",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0",
        ] {
            sock.send_to(junk, server.addr()).await.unwrap();
        }
        assert_eq!(ips(&r, "alive.test.").await, vec![ip("10.0.0.1")]);
    }

    #[tokio::test]
    async fn stop_frees_the_port() {
        let (server, r) = setup().await;
        server.set_addresses("tasks.game_node", &[ip("10.0.0.1")]);
        assert_eq!(ips(&r, "tasks.game_node.").await.len(), 1);
        let addr = server.addr();
        server.stop().await;
        // Both sockets are closed, so the lookup times out and the port can be bound again.
        assert!(r.lookup_ip(n("tasks.game_node.")).await.is_err());
        drop((
            UdpSocket::bind(addr).await.unwrap(),
            TcpListener::bind(addr).await.unwrap(),
        ));
    }

    #[tokio::test]
    async fn drop_frees_the_port() {
        let (server, _r) = setup().await;
        let addr = server.addr();
        drop(server);
        // The aborted tasks release the sockets once the runtime gets to them.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let (Ok(_), Ok(_)) = (UdpSocket::bind(addr).await, TcpListener::bind(addr).await) {
                return;
            }
        }
        panic!("{addr} still bound after drop");
    }
}
