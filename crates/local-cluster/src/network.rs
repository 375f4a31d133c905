//! Where a cluster's nodes run: their addresses, the two ports they all share (as containers
//! do), the address of the DNS server they poll, and the command prefix that starts a process
//! there. [`Loopback`] is the demo's (127.0.NET.x); the harness adds network namespaces on a
//! bridge, which can also cut a node off from the others ([`Network::cut`]).

use std::net::IpAddr;

use crate::Error;
use crate::ports::{free_ports, loopbacks};

/// Where one node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Its address.
    pub ip: IpAddr,
    /// The command that runs a program there, before the program (empty: here). It must exec
    /// the program, so that the process is the node's own.
    pub prefix: Vec<String>,
}

/// A network a [`crate::cluster::Cluster`] runs its nodes on.
pub trait Network: std::fmt::Debug + Send + Sync {
    /// Where the DNS server listens: an address every node reaches.
    fn dns_ip(&self) -> IpAddr;

    /// The cluster port and the HTTP port of every node (free on every address it will give).
    fn ports(&self) -> Result<(u16, u16), Error>;

    /// Where the next node runs: a new address each time, as a new task gets one.
    fn place(&mut self) -> Result<Place, Error>;

    /// Cuts the node at `ip` off from every other node, both ways; clients, DNS and consoles
    /// still reach it. Networks that cannot say so.
    fn cut(&self, ip: IpAddr) -> Result<(), Error> {
        Err(Error::Setup(format!(
            "cannot cut {ip} off: a cut needs a cluster in network namespaces \
             (harness::netns::cluster)"
        )))
    }

    /// Ends the cut of the node at `ip`.
    fn heal(&self, ip: IpAddr) -> Result<(), Error> {
        Err(Error::Setup(format!(
            "cannot heal {ip}: a cut needs a cluster in network namespaces \
             (harness::netns::cluster)"
        )))
    }
}

/// Loopback addresses 127.0.`net`.2, .3, ... (Linux routes all of 127/8 to `lo`): the
/// first nodes and one replacement each, the DNS server on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Loopback {
    net: u8,
    /// How many addresses it gives at most (127.0.NET.2 ..).
    count: u8,
    /// Last byte of the next node's address.
    next_host: u8,
}

impl Loopback {
    /// Room for `nodes` nodes and one replacement each (at most 127.0.`net`.254).
    pub fn new(net: u8, nodes: usize) -> Loopback {
        Loopback {
            net,
            count: (nodes * 2 + 2).min(253) as u8,
            next_host: 2,
        }
    }
}

impl Network for Loopback {
    fn dns_ip(&self) -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    fn ports(&self) -> Result<(u16, u16), Error> {
        free_ports(&loopbacks(self.net, self.count))
    }

    fn place(&mut self) -> Result<Place, Error> {
        // Past the addresses whose ports were checked the ports are most likely free too (no
        // one else uses 127.0.NET.x), up to .254.
        if self.next_host == 255 {
            return Err(Error::Setup(format!(
                "all addresses of 127.0.{}.x are used: replace fewer nodes in one cluster",
                self.net
            )));
        }
        let ip = IpAddr::from([127, 0, self.net, self.next_host]);
        self.next_host += 1;
        Ok(Place {
            ip,
            prefix: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_gives_new_addresses_and_cannot_cut() -> Result<(), Error> {
        let mut net = Loopback::new(9, 3);
        let a = net.place()?;
        let b = net.place()?;
        assert_eq!(a.ip, IpAddr::from([127, 0, 9, 2]));
        assert_eq!(b.ip, IpAddr::from([127, 0, 9, 3]));
        assert!(a.prefix.is_empty());
        assert!(matches!(net.cut(a.ip), Err(Error::Setup(_))));
        assert!(matches!(net.heal(a.ip), Err(Error::Setup(_))));
        for _ in 4..=254 {
            net.place()?;
        }
        assert!(matches!(net.place(), Err(Error::Setup(_))));
        Ok(())
    }
}
