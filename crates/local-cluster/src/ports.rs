//! Addresses and ports of a test. Each test (and the demo) takes a loopback net of its own,
//! 127.0.NET.x, so tests running at once never meet; nodes of one test share one port across
//! their addresses, as containers do.

use std::net::{IpAddr, TcpListener};

use crate::Error;

/// How many ports [`free_port`] tries before giving up.
const ATTEMPTS: usize = 200;

/// `count` loopback addresses 127.0.`net`.2, .3, ... (.1 is left to whatever else runs).
pub fn loopbacks(net: u8, count: u8) -> Vec<IpAddr> {
    (2..2 + count)
        .map(|i| IpAddr::from([127, 0, net, i]))
        .collect()
}

/// A TCP port free on every address of `ips` (at least one) at the time of asking.
pub fn free_port(ips: &[IpAddr]) -> Result<u16, Error> {
    let Some((first, rest)) = ips.split_first() else {
        return Err(Error::NoFreePort);
    };
    for _ in 0..ATTEMPTS {
        let probe = TcpListener::bind((*first, 0))?;
        let port = probe.local_addr()?.port();
        if rest.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return Ok(port);
        }
    }
    Err(Error::NoFreePort)
}

/// Two different TCP ports, each free on every address of `ips`.
pub fn free_ports(ips: &[IpAddr]) -> Result<(u16, u16), Error> {
    let a = free_port(ips)?;
    loop {
        let b = free_port(ips)?;
        if b != a {
            return Ok((a, b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopbacks_start_at_2_in_their_net() {
        let ips = loopbacks(9, 3);
        let want: Vec<IpAddr> = ["127.0.9.2", "127.0.9.3", "127.0.9.4"]
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        assert_eq!(ips, want);
    }

    #[test]
    fn a_free_port_is_free_on_every_address() -> Result<(), Error> {
        let ips = loopbacks(9, 3);
        let port = free_port(&ips)?;
        for ip in &ips {
            TcpListener::bind((*ip, port))?;
        }
        let (a, b) = free_ports(&ips)?;
        assert_ne!(a, b);
        assert!(matches!(free_port(&[]), Err(Error::NoFreePort)));
        Ok(())
    }
}
