//! `InstanceKey`: the `host:port` that names one server everywhere in Baton.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The address of one MySQL/MariaDB server. Ordered by host, then port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub host: String,
    pub port: u16,
}

/// Why a string is not a valid `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("'{0}' is not host:port (missing ':port')")]
    MissingPort(String),
    #[error("'{input}': '{port}' is not a port number (1-65535)")]
    BadPort { input: String, port: String },
    #[error("'{0}': the host part is empty")]
    EmptyHost(String),
    #[error("'{0}': the host contains characters a host name cannot have")]
    BadHost(String),
}

impl InstanceKey {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        InstanceKey { host: host.into(), port }
    }

    /// Checks a host name the way a resolver would accept it: letters, digits, `-`, `.`, `_`, and `:`
    /// only inside a bracketed IPv6 literal. Anything else (quotes, spaces, `;`) is refused here, so it
    /// never reaches a connection string or a log line unescaped.
    pub fn validate_host(input: &str, host: &str) -> Result<(), KeyError> {
        if host.is_empty() {
            return Err(KeyError::EmptyHost(input.to_string()));
        }
        let ok =
            host.len() <= 255 && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
        if !ok {
            return Err(KeyError::BadHost(input.to_string()));
        }
        Ok(())
    }

    /// Parses a host and a port given separately (as in orchestrator's `/{host}/{port}` routes).
    pub fn from_parts(host: &str, port: &str) -> Result<Self, KeyError> {
        let input = format!("{host}:{port}");
        Self::validate_host(&input, host)?;
        let port_num = parse_port(&input, port)?;
        Ok(InstanceKey::new(host, port_num))
    }
}

fn parse_port(input: &str, port: &str) -> Result<u16, KeyError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(KeyError::BadPort { input: input.to_string(), port: port.to_string() }),
    }
}

impl FromStr for InstanceKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        // [::1]:3306 for IPv6 literals, host:port otherwise.
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (h, p) = rest.split_once("]:").ok_or_else(|| KeyError::MissingPort(s.to_string()))?;
            (h, p)
        } else {
            s.rsplit_once(':').ok_or_else(|| KeyError::MissingPort(s.to_string()))?
        };
        Self::validate_host(s, host)?;
        Ok(InstanceKey::new(host, parse_port(s, port)?))
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Serialize for InstanceKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstanceKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let k: InstanceKey = "127.0.0.1:3306".parse().unwrap();
        assert_eq!(k, InstanceKey::new("127.0.0.1", 3306));
        assert_eq!(k.to_string(), "127.0.0.1:3306");
        let v6: InstanceKey = "[::1]:3307".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:3307");
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        assert_eq!("foo".parse::<InstanceKey>(), Err(KeyError::MissingPort("foo".into())));
        assert!(matches!("host:notaport".parse::<InstanceKey>(), Err(KeyError::BadPort { .. })));
        assert!(matches!("host:0".parse::<InstanceKey>(), Err(KeyError::BadPort { .. })));
        assert!(matches!("host:70000".parse::<InstanceKey>(), Err(KeyError::BadPort { .. })));
        assert!(matches!(":3306".parse::<InstanceKey>(), Err(KeyError::EmptyHost(_))));
        assert!(matches!("a';drop table x;--:3306".parse::<InstanceKey>(), Err(KeyError::BadHost(_))));
        assert!("host:notaport".parse::<InstanceKey>().unwrap_err().to_string().contains("notaport"));
    }
}

/// One of `takeover.promotion_ignore_hostname_filters`, with orchestrator's meaning
/// (`FiltersMatchInstanceKey`): a filter that parses as an IP address matches a host equal to it;
/// any other is a regular expression matched against `host:port`. Compiled once, at load.
#[derive(Debug, Clone)]
pub enum HostFilter {
    Ip(std::net::IpAddr),
    Pattern(regex::Regex),
}

impl HostFilter {
    pub fn parse(text: &str) -> Result<HostFilter, String> {
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(HostFilter::Ip(ip));
        }
        regex::Regex::new(text)
            .map(HostFilter::Pattern)
            .map_err(|e| format!("'{text}' is not a valid regular expression: {e}"))
    }

    pub fn matches(&self, key: &InstanceKey) -> bool {
        match self {
            HostFilter::Ip(ip) => {
                key.host.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().is_ok_and(|h| h == *ip)
            }
            HostFilter::Pattern(re) => re.is_match(&key.to_string()),
        }
    }

    pub fn as_str(&self) -> String {
        match self {
            HostFilter::Ip(ip) => ip.to_string(),
            HostFilter::Pattern(re) => re.as_str().to_string(),
        }
    }
}

impl TryFrom<String> for HostFilter {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        HostFilter::parse(&text)
    }
}

impl<'de> serde::Deserialize<'de> for HostFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HostFilter::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    /// orchestrator's semantics: an IP is exact, anything else a regex on host:port.
    #[test]
    fn hostname_filters() {
        let k = |s: &str| s.parse::<InstanceKey>().unwrap();
        let f = |s: &str| HostFilter::parse(s).unwrap();
        assert!(f("^dev-").matches(&k("dev-db7:3306")));
        assert!(!f("^dev-").matches(&k("prod-dev-db7:3306")));
        assert!(f(":3307$").matches(&k("db1:3307")) && !f(":3307$").matches(&k("db1:33070")));
        assert!(f("10.0.0.3").matches(&k("10.0.0.3:3306")));
        assert!(!f("10.0.0.3").matches(&k("10.0.0.38:3306")), "an IP filter is exact");
        assert!(f("db").matches(&k("proddb:3306")), "a plain word is a regex: a substring");
        let e = HostFilter::parse("([").unwrap_err();
        assert!(e.contains("'(['") && e.contains("regular expression"), "{e}");
    }
}
