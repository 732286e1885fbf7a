//! Advertised endpoints: what clients are told to connect to.

use std::net::SocketAddr;

/// A `host:port` pair as advertised in Metadata responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host:port` (IPv6 literals in brackets).
pub fn parse_host_port(text: &str) -> Result<Endpoint, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{text:?} has no valid port"))?;
    if port == 0 {
        return Err(format!("{text:?}: port 0 cannot be advertised"));
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

/// The endpoint to advertise: the configured one, or the bound listener address. An unspecified
/// bind address (0.0.0.0) is replaced by the machine's host name, which clients elsewhere can
/// resolve, as Kafka does.
pub fn advertised(configured: Option<&str>, bound: SocketAddr) -> Result<Endpoint, String> {
    if let Some(text) = configured {
        return parse_host_port(text);
    }
    let host = if bound.ip().is_unspecified() {
        hostname().unwrap_or_else(|| "localhost".to_string())
    } else {
        bound.ip().to_string()
    };
    Ok(Endpoint {
        host,
        port: bound.port(),
    })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_derives_endpoints() {
        assert_eq!(parse_host_port("broker-1:9092").unwrap().port, 9092);
        assert_eq!(parse_host_port("[::1]:9092").unwrap().host, "::1");
        assert!(parse_host_port("nohost").is_err());
        assert!(parse_host_port("h:0").is_err());
        let bound: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(
            advertised(None, bound).unwrap().to_string(),
            "127.0.0.1:4242"
        );
        assert_eq!(
            advertised(Some("example:1"), bound).unwrap().host,
            "example"
        );
    }
}
