//! The bootstrap address: a multiaddr selects the mesh transport, `mdns` the mesh with a node
//! found on the local network, `HOST:PORT` Kafka TCP.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The default bootstrap: a local node's mesh port.
pub const DEFAULT_BOOTSTRAP: &str = "/ip4/127.0.0.1/tcp/7070";

/// How the client first reaches the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// A libp2p multiaddr such as `/ip4/127.0.0.1/tcp/7070`, optionally ending in `/p2p/<peer id>`
    /// (without it, the client dials and learns the peer id).
    Mesh(String),
    /// The mesh, starting from whichever node mDNS finds first on the local network (nodes
    /// announce themselves on non-loopback interfaces).
    Mdns,
    /// One or more Kafka `HOST:PORT` addresses (comma-separated), spoken to in plain Kafka.
    Kafka(Vec<String>),
}

impl Bootstrap {
    /// Parses a bootstrap string: a leading `/` means a multiaddr, `mdns` discovery on the local
    /// network, anything else `HOST:PORT[,..]`.
    pub fn parse(input: &str) -> Result<Bootstrap, Error> {
        let input = input.trim();
        let invalid = |reason: &str| Error::InvalidBootstrap {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(invalid("empty"));
        }
        if input.eq_ignore_ascii_case("mdns") {
            return Ok(Bootstrap::Mdns);
        }
        if input.starts_with('/') {
            if input.split('/').skip(1).any(str::is_empty) {
                return Err(invalid("a multiaddr has no empty components"));
            }
            return Ok(Bootstrap::Mesh(input.to_owned()));
        }
        let hosts: Vec<String> = input.split(',').map(|s| s.trim().to_owned()).collect();
        for host in &hosts {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected HOST:PORT or a multiaddr starting with '/'"))?;
            if name.is_empty() || port.parse::<u16>().is_err() {
                return Err(invalid("expected HOST:PORT with a numeric port"));
            }
        }
        Ok(Bootstrap::Kafka(hosts))
    }

    /// Whether this bootstrap uses the mesh transport.
    pub fn is_mesh(&self) -> bool {
        matches!(self, Bootstrap::Mesh(_) | Bootstrap::Mdns)
    }

    /// `HOST:PORT` addresses as a Kafka bootstrap (the `--kafka` flag).
    pub fn kafka(input: &str) -> Result<Bootstrap, Error> {
        match Bootstrap::parse(input)? {
            Bootstrap::Mesh(_) | Bootstrap::Mdns => Err(Error::InvalidBootstrap {
                input: input.to_owned(),
                reason: "--kafka takes HOST:PORT, not a multiaddr or mdns".to_owned(),
            }),
            kafka => Ok(kafka),
        }
    }
}

impl FromStr for Bootstrap {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bootstrap::parse(s)
    }
}

impl fmt::Display for Bootstrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bootstrap::Mesh(addr) => f.write_str(addr),
            Bootstrap::Mdns => f.write_str("mdns"),
            Bootstrap::Kafka(hosts) => f.write_str(&hosts.join(",")),
        }
    }
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap::Mesh(DEFAULT_BOOTSTRAP.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            Bootstrap::parse("/ip4/127.0.0.1/tcp/7070").unwrap(),
            Bootstrap::Mesh("/ip4/127.0.0.1/tcp/7070".into())
        );
        assert_eq!(
            Bootstrap::parse("localhost:9092, 10.0.0.1:9093").unwrap(),
            Bootstrap::Kafka(vec!["localhost:9092".into(), "10.0.0.1:9093".into()])
        );
        assert!(Bootstrap::parse("localhost").is_err());
        assert!(Bootstrap::parse("host:notaport").is_err());
        assert!(Bootstrap::parse("").is_err());
        assert!(Bootstrap::parse("//tcp").is_err());
        assert!(Bootstrap::kafka("/ip4/1.2.3.4/tcp/1").is_err());
        assert_eq!(Bootstrap::parse(" mDNS ").unwrap(), Bootstrap::Mdns);
        assert_eq!(Bootstrap::Mdns.to_string(), "mdns");
        assert!(Bootstrap::kafka("mdns").is_err());
    }
}
