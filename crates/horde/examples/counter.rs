//! A counter cluster in one process, written against the public API of `horde` and
//! `discovery` only, as another application would use them.
//!
//! Three nodes, each a real ractor_cluster endpoint on its own port of 127.0.0.1 with a horde
//! member on top. Nine counters are started (placement spreads them over the nodes) and
//! incremented through routed calls sent from every node. Then the node holding the most
//! counters drains, as it would on SIGTERM: its counters move, live and with their counts, to
//! the other two. Every count is read again where its counter lives now.
//!
//! ```sh
//! cargo run -p horde --example counter
//! ```
//!
//! `cargo test -p horde --example counter` runs the same cluster and checks what it printed.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use discovery::{Connector, ConnectorConfig, Host, NodeId, NodeName, Peer, PeerSet};
use horde::{Child, Ctx, DrainReport, Handoff, HandoffError, Horde, HordeConfig, Replication};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Every node of a cluster presents the same cookie.
const COOKIE: &str = "counter-example-cookie";
/// Node names (`a@127.0.0.1`, ...): one per node.
const NODES: [&str; 3] = ["a", "b", "c"];
/// How many counters; counter `i` is incremented `i` times.
const COUNTERS: u64 = 9;
/// Longest wait for the nodes to meet, and for the drain.
const WAIT: Duration = Duration::from_secs(20);
/// Longest wait for one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

type Error = Box<dyn std::error::Error + Send + Sync>;

// === the child: a count ===

/// A counter: all its state is its count.
#[derive(Debug, Serialize, Deserialize)]
struct Counter {
    count: u64,
}

/// What a counter is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum CounterMsg {
    /// Add to the count.
    Add(u64),
    /// Read the count.
    Get,
}

/// A counter's answer: its count, and the node it runs on.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counted {
    count: u64,
    node: String,
}

impl Child for Counter {
    /// Counters start at zero: nothing to say.
    type Spec = ();
    type Msg = CounterMsg;
    type Reply = Counted;
    /// No subscribers in this example; the new count would be the natural event.
    type Event = u64;

    fn start(_name: &str, _spec: (), _ctx: &mut Ctx<Self>) -> Self {
        Counter { count: 0 }
    }

    fn handle(&mut self, msg: CounterMsg, ctx: &mut Ctx<Self>) -> Counted {
        match msg {
            CounterMsg::Add(n) => self.count += n,
            // A read changes nothing: nothing to replicate before answering.
            CounterMsg::Get => ctx.unchanged(),
        }
        Counted {
            count: self.count,
            node: ctx.node().to_string(),
        }
    }

    /// Every increment reaches a second node before its call returns, so an acknowledged
    /// increment would also survive a crash (a drain moves the live state either way).
    fn replication() -> Replication {
        Replication::BeforeReply
    }
}

impl Handoff for Counter {
    const SCHEMA: u16 = 1;

    fn dehydrate(&self, _ctx: &Ctx<Self>) -> Vec<u8> {
        self.count.to_le_bytes().to_vec()
    }

    fn rehydrate(
        _name: &str,
        schema: u16,
        state: &[u8],
        _ctx: &mut Ctx<Self>,
    ) -> Result<Self, HandoffError> {
        if schema != Self::SCHEMA {
            return Err(HandoffError::UnknownSchema {
                got: schema,
                supported: "v1".into(),
            });
        }
        let bytes = state
            .try_into()
            .map_err(|_| HandoffError::Corrupt(format!("{} bytes, not 8", state.len())))?;
        Ok(Counter {
            count: u64::from_le_bytes(bytes),
        })
    }
}

// === the nodes ===

/// One node: its cluster endpoint and its horde member.
struct Node {
    name: String,
    connector: Connector,
    horde: Horde<Counter>,
    /// The node's discovery. Here a fixed peer set; in production `discovery::spawn_discovery`
    /// publishes what DNS or static hosts say on the same kind of channel.
    _peers: watch::Sender<PeerSet>,
}

/// Starts one node per name of [`NODES`], each on its own free port of 127.0.0.1, all
/// discovering each other, and waits until every member sees every other alive.
async fn start_cluster() -> Result<Vec<Node>, Error> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // Free ports: held together so they differ, released for the nodes to listen on.
    let probes = NODES
        .iter()
        .map(|_| TcpListener::bind((ip, 0)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut peers = PeerSet::new();
    for (basename, probe) in NODES.iter().zip(&probes) {
        peers.insert(Peer {
            name: NodeName::new(basename, Host::Ip(ip))?,
            addr: probe.local_addr()?,
        });
    }
    drop(probes);

    let mut nodes = Vec::new();
    for peer in &peers {
        let (tx, rx) = watch::channel(peers.clone());
        let id = NodeId::new_incarnation(&peer.name);
        let config = ConnectorConfig::new(id, COOKIE, peer.addr.ip(), peer.addr.port());
        let (connector, _) = Connector::start(config, rx).await?;
        let horde = Horde::start(HordeConfig::new("counters", "1.0.0"), &connector).await?;
        nodes.push(Node {
            name: peer.name.to_string(),
            connector,
            horde,
            _peers: tx,
        });
    }
    for node in &nodes {
        node.horde.wait_ready(nodes.len(), WAIT).await?;
    }
    Ok(nodes)
}

// === the run ===

/// Where each counter lived and what it counted, before and after the drain.
#[derive(Debug)]
struct Report {
    /// Counter name -> the increments acknowledged.
    acked: BTreeMap<String, u64>,
    /// Counter name -> (node, count) before the drain.
    before: BTreeMap<String, Counted>,
    /// The node that drained.
    drained: String,
    /// What its drain did.
    drain: DrainReport,
    /// Counter name -> (node, count) after the drain.
    after: BTreeMap<String, Counted>,
}

impl Report {
    /// Counters whose count before or after the drain is not what was acknowledged, or that
    /// are still on the drained node.
    fn lost(&self) -> Vec<&str> {
        let counted = |counts: &BTreeMap<String, Counted>, name: &str| {
            counts.get(name).map(|c| (c.count, c.node == self.drained))
        };
        self.acked
            .iter()
            .filter(|(name, acked)| {
                counted(&self.before, name).map(|(count, _)| count) != Some(**acked)
                    || counted(&self.after, name) != Some((**acked, false))
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The last line: every count kept, or which were not.
    fn verdict(&self) -> Result<String, String> {
        let lost = self.lost();
        if lost.is_empty() {
            Ok(format!(
                "every count kept: {} counters, {} increments; {} handed {} over live and kept none",
                self.acked.len(),
                self.acked.values().sum::<u64>(),
                self.drained,
                self.drain.moved
            ))
        } else {
            Err(format!("counts NOT kept: {}", lost.join(", ")))
        }
    }
}

fn counter_name(i: u64) -> String {
    format!("counter-{i}")
}

/// Reads every counter through `via` (a routed call when it lives elsewhere).
async fn read_all(via: &Horde<Counter>) -> Result<BTreeMap<String, Counted>, Error> {
    let mut counts = BTreeMap::new();
    for i in 1..=COUNTERS {
        let name = counter_name(i);
        let counted = via.call(&name, CounterMsg::Get, CALL_TIMEOUT).await?;
        counts.insert(name, counted);
    }
    Ok(counts)
}

/// Prints the counters of each node.
fn print_by_node(
    out: &mut dyn Write,
    nodes: &[Node],
    counts: &BTreeMap<String, Counted>,
) -> std::io::Result<()> {
    for node in nodes {
        let here: Vec<String> = counts
            .iter()
            .filter(|(_, c)| c.node == node.name)
            .map(|(name, c)| format!("{name}={}", c.count))
            .collect();
        let here = if here.is_empty() {
            "(none)".to_string()
        } else {
            here.join(" ")
        };
        writeln!(out, "  {:<13} {here}", node.name)?;
    }
    Ok(())
}

/// Starts the cluster and the counters, increments them, drains the busiest node, and
/// reports; what it does is written to `out` as it goes.
async fn run(out: &mut dyn Write) -> Result<Report, Error> {
    let nodes = start_cluster().await?;
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    writeln!(out, "{} nodes up: {}", nodes.len(), names.join(", "))?;

    // Started from node a; placement (rendezvous hashing over the alive members) decides
    // where each one lives.
    for i in 1..=COUNTERS {
        nodes[0].horde.start_child(&counter_name(i), &()).await?;
    }
    // counter-i gets i increments, sent through each node in turn: most are routed calls to
    // a counter that lives on another node.
    let mut acked = BTreeMap::new();
    for i in 1..=COUNTERS {
        for k in 0..i {
            let via = &nodes[k as usize % nodes.len()].horde;
            via.call(&counter_name(i), CounterMsg::Add(1), CALL_TIMEOUT)
                .await?;
        }
        acked.insert(counter_name(i), i);
    }
    writeln!(
        out,
        "started {COUNTERS} counters and incremented counter-i i times ({} increments)",
        acked.values().sum::<u64>()
    )?;

    let before = read_all(&nodes[0].horde).await?;
    writeln!(out, "\nbefore the drain:")?;
    print_by_node(out, &nodes, &before)?;

    // Drain the node with the most counters, as SIGTERM would; read from another one.
    let busiest = (0..nodes.len())
        .max_by_key(|i| nodes[*i].horde.local_names().len())
        .unwrap_or(0);
    let drained = nodes[busiest].name.clone();
    let drain = nodes[busiest].horde.drain_and_leave(WAIT).await;
    writeln!(
        out,
        "\ndrained {drained}: {} counters moved live in {} ms ({} could not move)",
        drain.moved,
        drain.duration.as_millis(),
        drain.fallback + drain.stranded
    )?;
    let reader = &nodes[(busiest + 1) % nodes.len()].horde;
    let after = read_all(reader).await?;
    writeln!(out, "\nafter the drain:")?;
    print_by_node(out, &nodes, &after)?;

    writeln!(
        out,
        "\ncounter    count before  count after  lived on     lives on now"
    )?;
    for (name, was) in &before {
        let (count, now) = after.get(name).map_or(("?".to_string(), "?"), |c| {
            (c.count.to_string(), c.node.as_str())
        });
        let moved = if was.node == now { "" } else { " (moved)" };
        writeln!(
            out,
            "{name:<10} {:>12}  {count:>11}  {:<11}  {now}{moved}",
            was.count, was.node
        )?;
    }

    for node in &nodes {
        node.horde.shutdown().await;
        node.connector.stop().await;
    }
    Ok(Report {
        acked,
        before,
        drained,
        drain,
        after,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut out = std::io::stdout();
    let report = match run(&mut out).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match report.verdict() {
        Ok(kept) => {
            println!("\n{kept}");
            ExitCode::SUCCESS
        }
        Err(lost) => {
            println!("\n{lost}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_drain_keeps_every_count() -> Result<(), Error> {
        let mut out = Vec::new();
        let report = run(&mut out).await?;
        let out = String::from_utf8(out)?;
        let moved: Vec<&String> = report
            .before
            .iter()
            .filter(|(_, c)| c.node == report.drained)
            .map(|(name, _)| name)
            .collect();

        assert_eq!(
            report.verdict(),
            Ok(format!(
                "every count kept: 9 counters, 45 increments; {} handed {} over live and kept none",
                report.drained,
                moved.len()
            )),
            "{out}"
        );
        for (name, acked) in &report.acked {
            assert_eq!(report.before[name].count, *acked, "{name} before\n{out}");
            assert_eq!(report.after[name].count, *acked, "{name} after\n{out}");
        }
        assert!(
            report.after.values().all(|c| c.node != report.drained),
            "nothing stays on {}\n{out}",
            report.drained
        );
        assert!(!moved.is_empty(), "the drained node had counters\n{out}");
        assert_eq!(report.drain.moved, moved.len(), "{out}");
        assert!(
            out.contains(&format!("  {:<13} (none)\n", report.drained)),
            "the drained node is listed with no counters after the drain\n{out}"
        );
        Ok(())
    }
}
