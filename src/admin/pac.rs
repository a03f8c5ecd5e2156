//! The proxy auto-config file browsers are pointed at (`/proxy.pac` on the
//! admin listener), generated from `[pac]`: `DIRECT` for plain host names,
//! the listed internal domains and IPv4 networks, the proxy otherwise. Pure:
//! settings in, JavaScript out.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::settings::{invalid, Invalid};

/// `[pac]`: what `/proxy.pac` says.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PacConfig {
    /// The proxy as clients reach it (`proxy.corp.example.com:3128`); unset:
    /// no `/proxy.pac`.
    pub proxy: Option<String>,
    /// The TLS listener as clients reach it (`proxy.corp.example.com:3129`):
    /// offered first (`HTTPS host:port`), the plain one as the fallback for
    /// clients that cannot speak TLS to a proxy.
    pub https_proxy: Option<String>,
    /// Domains reached directly: `corp.example.com` (and its subdomains).
    pub direct_domains: Vec<String>,
    /// IPv4 networks reached directly (`10.0.0.0/8`); a name is resolved
    /// by the browser to test them.
    pub direct_networks: Vec<String>,
    /// Single-label names (`intranet`) go direct.
    pub direct_plain_hosts: bool,
}

impl PacConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.https_proxy.is_some() && self.proxy.is_none() {
            return Err(invalid(
                "pac.https_proxy",
                "needs pac.proxy too (the fallback for clients without TLS to the proxy)",
            ));
        }
        for (key, p) in [
            ("pac.proxy", &self.proxy),
            ("pac.https_proxy", &self.https_proxy),
        ] {
            let Some(p) = p else { continue };
            let ok = p.rsplit_once(':').is_some_and(|(h, port)| {
                !h.is_empty()
                    && port.parse::<u16>().is_ok_and(|n| n > 0)
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
            });
            if !ok {
                return Err(invalid(
                    key,
                    format!("{p:?}: host:port, as clients reach the proxy"),
                ));
            }
        }
        for d in &self.direct_domains {
            let d = d.trim_start_matches('.');
            if d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            {
                return Err(invalid(
                    "pac.direct_domains",
                    format!("{d:?} is not a domain name"),
                ));
            }
        }
        for n in &self.direct_networks {
            match n.parse::<IpNet>() {
                Ok(IpNet::V4(_)) => {}
                Ok(IpNet::V6(_)) => {
                    return Err(invalid(
                        "pac.direct_networks",
                        format!("{n}: PAC's isInNet is IPv4 only"),
                    ))
                }
                Err(_) => {
                    return Err(invalid(
                        "pac.direct_networks",
                        format!("{n:?} is not a CIDR"),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The PAC file, or `None` when `[pac] proxy` is unset.
pub fn pac(cfg: &PacConfig) -> Option<String> {
    let proxy = cfg.proxy.as_ref()?;
    let mut js =
        String::from("function FindProxyForURL(url, host) {\n  host = host.toLowerCase();\n");
    if cfg.direct_plain_hosts {
        js.push_str("  if (isPlainHostName(host)) return \"DIRECT\";\n");
    }
    for d in &cfg.direct_domains {
        let d = d.trim_start_matches('.').to_ascii_lowercase();
        js.push_str(&format!(
            "  if (host == \"{d}\" || dnsDomainIs(host, \".{d}\")) return \"DIRECT\";\n"
        ));
    }
    if !cfg.direct_networks.is_empty() {
        js.push_str("  var ip = dnsResolve(host);\n  if (ip) {\n");
        for n in &cfg.direct_networks {
            if let Ok(IpNet::V4(net)) = n.parse::<IpNet>() {
                let (addr, mask) = (IpAddr::V4(net.network()), IpAddr::V4(net.netmask()));
                js.push_str(&format!(
                    "    if (isInNet(ip, \"{addr}\", \"{mask}\")) return \"DIRECT\";\n"
                ));
            }
        }
        js.push_str("  }\n");
    }
    let via = match &cfg.https_proxy {
        Some(https) => format!("HTTPS {https}; PROXY {proxy}"),
        None => format!("PROXY {proxy}"),
    };
    js.push_str(&format!("  return \"{via}\";\n}}\n"));
    Some(js)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_networks_become_direct_rules() {
        let cfg = PacConfig {
            proxy: Some("proxy.corp.example:3128".into()),
            direct_domains: vec![".Corp.Example".into()],
            direct_networks: vec!["10.0.0.0/8".into()],
            direct_plain_hosts: true,
            https_proxy: None,
        };
        cfg.validate().unwrap();
        let js = pac(&cfg).unwrap();
        assert!(js.contains("isPlainHostName(host)"));
        assert!(js.contains("dnsDomainIs(host, \".corp.example\")"));
        assert!(js.contains("isInNet(ip, \"10.0.0.0\", \"255.0.0.0\")"));
        assert!(js.ends_with("return \"PROXY proxy.corp.example:3128\";\n}\n"));
        assert!(pac(&PacConfig::default()).is_none());
        let both = PacConfig {
            https_proxy: Some("proxy.corp.example:3129".into()),
            ..cfg
        };
        both.validate().unwrap();
        assert!(pac(&both).unwrap().ends_with(
            "return \"HTTPS proxy.corp.example:3129; PROXY proxy.corp.example:3128\";\n}\n"
        ));
    }

    #[test]
    fn what_pac_cannot_say_is_refused() {
        let bad = |f: fn(&mut PacConfig)| {
            let mut c = PacConfig {
                proxy: Some("p:3128".into()),
                ..PacConfig::default()
            };
            f(&mut c);
            c.validate().is_err()
        };
        assert!(bad(|c| c.direct_networks = vec!["fd00::/8".into()]));
        assert!(bad(|c| c.direct_domains = vec!["a\"; alert(1); \"".into()]));
        assert!(bad(|c| c.proxy = Some("p\"; x".into())));
        assert!(!bad(|_| {}));
    }
}
