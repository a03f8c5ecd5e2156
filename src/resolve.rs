//! Name resolution for both forwarded requests and tunnels: a static table
//! first (like Squid's `hosts_file`), then, if allowed, the system resolver.
//!
//! Turning the system resolver off makes a proxy that resolves only what its
//! config names — useful in locked-down sites and in the test lab, where no
//! query may leave the machine.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::config::ResolverConfig;

#[derive(Debug, Clone)]
pub struct Resolver {
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
    system: bool,
}

impl Resolver {
    pub fn new(cfg: &ResolverConfig) -> Self {
        let hosts = cfg
            .hosts
            .iter()
            .map(|(name, ips)| (name.to_ascii_lowercase(), ips.clone()))
            .collect();
        Self {
            hosts: Arc::new(hosts),
            system: cfg.system,
        }
    }

    /// The addresses of `host` (an IP literal, a configured name, or — when
    /// allowed — whatever the system resolver says), each with `port`.
    pub async fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        if let Some(ips) = self.hosts.get(&host.to_ascii_lowercase()) {
            return Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect());
        }
        if !self.system {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} is not in resolver.hosts and the system resolver is off"),
            ));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        Ok(addrs)
    }
}

type Lookup = Pin<Box<dyn Future<Output = io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

/// Lets hyper's `HttpConnector` resolve through us.
impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Lookup;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Lookup {
        let this = self.clone();
        Box::pin(async move { Ok(this.lookup(name.as_str(), 0).await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(system: bool) -> Resolver {
        let mut hosts = HashMap::new();
        hosts.insert(
            "Origin.Example.Test".to_string(),
            vec!["127.0.0.2".parse().unwrap()],
        );
        Resolver::new(&ResolverConfig { hosts, system })
    }

    #[tokio::test]
    async fn literals_and_table_need_no_resolver() {
        let r = resolver(false);
        assert_eq!(
            r.lookup("127.0.0.9", 80).await.unwrap(),
            vec!["127.0.0.9:80".parse().unwrap()]
        );
        assert_eq!(
            r.lookup("::1", 443).await.unwrap(),
            vec!["[::1]:443".parse().unwrap()]
        );
        assert_eq!(
            r.lookup("origin.example.TEST", 8080).await.unwrap(),
            vec!["127.0.0.2:8080".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn unknown_name_fails_without_system_resolver() {
        let e = resolver(false)
            .lookup("elsewhere.example.test", 80)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
