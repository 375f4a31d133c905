//! Node identity: the logical name `name@host` users see, and the incarnation that tells two
//! runs of the same name apart.
//!
//! Owns parsing and printing of names and of the name a node presents to ractor_cluster
//! (`name@host#incarnation`). It must not do I/O: working out the host's own address lives in
//! [`crate::own_address`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Separates the logical host from the incarnation in the name given to ractor_cluster.
const INCARNATION_SEPARATOR: char = '#';
/// Incarnation marker of a transient console peer (see [`crate::console_link`]).
const CONSOLE_MARKER: &str = "console";

/// Why a node name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    /// The name part before `@` is empty or has characters other than letters, digits, `_`, `-`.
    #[error(
        "`{0}`: the part before `@` must be letters, digits, `_` or `-` (for example `node@10.0.1.6`)"
    )]
    BadName(String),
    /// The host part is neither an IP address nor a DNS name.
    #[error("`{0}`: the host must be an IP address or a DNS name (for example `node@10.0.1.6`)")]
    BadHost(String),
}

/// The host part of a node name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// An IP address: what DNS discovery produces (`node@10.0.1.6`).
    Ip(IpAddr),
    /// A DNS name; long names have at least one dot, short names none.
    Domain(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Domain(d) => f.write_str(d),
        }
    }
}

impl Host {
    /// The IP address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Domain(_) => None,
        }
    }
}

/// A node's logical name, `name@host`, as an operator gives it (Erlang's `RELEASE_NODE`)
/// and logs print it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName {
    name: String,
    /// `None` for a bare name (`node`), which only `sname`/`none` distribution accept.
    host: Option<Host>,
}

impl NodeName {
    /// Builds `basename@ip`, the name DNS discovery expects a peer at `ip` to have.
    pub fn new(basename: &str, host: Host) -> Result<Self, NodeNameError> {
        check_basename(basename)?;
        Ok(Self {
            name: basename.to_string(),
            host: Some(host),
        })
    }

    /// Parses `name@host` or a bare `name`.
    pub fn parse(s: &str) -> Result<Self, NodeNameError> {
        let (name, host) = match s.split_once('@') {
            Some((n, h)) => (n, Some(h)),
            None => (s, None),
        };
        check_basename(name).map_err(|_| NodeNameError::BadName(s.to_string()))?;
        let host = host
            .map(|h| parse_host(h).ok_or_else(|| NodeNameError::BadHost(s.to_string())))
            .transpose()?;
        Ok(Self {
            name: name.to_string(),
            host,
        })
    }

    /// The part before `@`.
    pub fn basename(&self) -> &str {
        &self.name
    }

    /// The part after `@`, if any.
    pub fn host(&self) -> Option<&Host> {
        self.host.as_ref()
    }

    /// A long name: `name@ip` or `name@fully.qualified.host`, reachable from other hosts.
    pub fn is_long(&self) -> bool {
        match &self.host {
            Some(Host::Ip(_)) => true,
            Some(Host::Domain(d)) => d.contains('.'),
            None => false,
        }
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(h) => write!(f, "{}@{h}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl FromStr for NodeName {
    type Err = NodeNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn check_basename(name: &str) -> Result<(), NodeNameError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NodeNameError::BadName(name.to_string()))
    }
}

fn parse_host(h: &str) -> Option<Host> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !l.starts_with('-')
    };
    let trimmed = h.strip_suffix('.').unwrap_or(h);
    (!trimmed.is_empty() && trimmed.len() <= 253 && trimmed.split('.').all(label_ok))
        .then(|| Host::Domain(trimmed.to_ascii_lowercase()))
}

/// One run of a node: its logical name plus an incarnation number that grows with every start
/// (microseconds since the Unix epoch at boot), so a restarted node is a new member and stale
/// sessions and registry entries of the previous run can be told apart and cleaned up.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId {
    /// The logical name, as printed by `nodes`.
    pub name: String,
    /// Boot time in microseconds since the Unix epoch; larger is newer.
    pub incarnation: u64,
}

impl NodeId {
    /// A fresh incarnation of `name`, stamped with the current time.
    pub fn new_incarnation(name: &NodeName) -> Self {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        Self {
            name: name.to_string(),
            incarnation: micros,
        }
    }

    /// The host part handed to `NodeServer::new`: ractor_cluster names the node
    /// `{basename}@{this}`, so the incarnation travels in the handshake.
    pub fn ractor_hostname(&self) -> String {
        let host = self
            .name
            .split_once('@')
            .map(|(_, h)| h)
            .unwrap_or("localhost");
        format!("{host}{INCARNATION_SEPARATOR}{}", self.incarnation)
    }

    /// The basename handed to `NodeServer::new`.
    pub fn ractor_basename(&self) -> &str {
        self.name
            .split_once('@')
            .map(|(n, _)| n)
            .unwrap_or(&self.name)
    }

    /// The full name ractor_cluster uses for this node in handshakes.
    pub fn ractor_name(&self) -> String {
        format!("{}{INCARNATION_SEPARATOR}{}", self.name, self.incarnation)
    }

    /// The registered name of this node's remotable actor for `service` (`beacon`, `horde`, ...).
    /// Remote proxies carry the same name, which is how a peer finds them.
    pub fn actor_name(&self, service: &str) -> String {
        format!("{service}:{}", self.ractor_name())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{INCARNATION_SEPARATOR}{}",
            self.name, self.incarnation
        )
    }
}

/// What a connected peer said it is, from the name in its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerKind {
    /// A cluster node.
    Node(NodeId),
    /// A transient console ([`crate::console_link`]): never a member, never listed as a node.
    Console(String),
    /// Something that speaks the ractor_cluster protocol with our cookie but is not a node of
    /// this crate's kind (its name carries no incarnation).
    Foreign(String),
}

/// The ractor name a console presents: `{basename}@{host}#console`.
pub fn console_ractor_hostname(host: &str) -> String {
    format!("{host}{INCARNATION_SEPARATOR}{CONSOLE_MARKER}")
}

impl PeerKind {
    /// Classifies the name a peer presented in the ractor_cluster handshake.
    pub fn from_ractor_name(full: &str) -> Self {
        let Some((name, tail)) = full.rsplit_once(INCARNATION_SEPARATOR) else {
            return PeerKind::Foreign(full.to_string());
        };
        if tail == CONSOLE_MARKER {
            return PeerKind::Console(name.to_string());
        }
        match (tail.parse::<u64>(), NodeName::parse(name)) {
            (Ok(incarnation), Ok(n)) if n.host().is_some() => PeerKind::Node(NodeId {
                name: name.to_string(),
                incarnation,
            }),
            _ => PeerKind::Foreign(full.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short_names() {
        assert!(NodeName::parse("minotaur@10.0.1.6").unwrap().is_long());
        assert!(
            NodeName::parse("minotaur@game.example.com")
                .unwrap()
                .is_long()
        );
        assert!(NodeName::parse("minotaur@fd00::1").unwrap().is_long());
        assert!(!NodeName::parse("minotaur@myhost").unwrap().is_long());
        assert!(!NodeName::parse("minotaur").unwrap().is_long());
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        assert!(matches!(
            NodeName::parse("@10.0.0.1"),
            Err(NodeNameError::BadName(_))
        ));
        assert!(matches!(
            NodeName::parse("a b@10.0.0.1"),
            Err(NodeNameError::BadName(_))
        ));
        assert!(matches!(
            NodeName::parse("a@"),
            Err(NodeNameError::BadHost(_))
        ));
        assert!(matches!(
            NodeName::parse("a@x..y"),
            Err(NodeNameError::BadHost(_))
        ));
        assert!(matches!(
            NodeName::parse("a@b@c"),
            Err(NodeNameError::BadHost(_))
        ));
    }

    #[test]
    fn ractor_names_round_trip() {
        let id = NodeId {
            name: "minotaur@127.0.0.2".into(),
            incarnation: 42,
        };
        assert_eq!(id.ractor_basename(), "minotaur");
        assert_eq!(id.ractor_hostname(), "127.0.0.2#42");
        assert_eq!(
            PeerKind::from_ractor_name(&format!("minotaur@{}", id.ractor_hostname())),
            PeerKind::Node(id.clone())
        );
        assert_eq!(
            PeerKind::from_ractor_name(&format!("c-1@{}", console_ractor_hostname("127.0.0.1"))),
            PeerKind::Console("c-1@127.0.0.1".into())
        );
        assert!(matches!(
            PeerKind::from_ractor_name("node_a@127.0.0.1"),
            PeerKind::Foreign(_)
        ));
    }
}
