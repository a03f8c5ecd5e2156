//! Leaf certificates minted for intercepted names, signed by the CA: the
//! upstream certificate's subject alternative names and validity copied (so
//! the client sees what the origin would have shown, re-signed), one shared
//! leaf key (a busy name costs one signature, a new name one signature, not
//! a key generation), cached by name in a bounded moka cache whose
//! `try_get_with` lets concurrent first requests for a name mint once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::ca::Ca;
use super::settings::InterceptConfig;

/// Mints and caches leaves.
pub struct Minter {
    ca: Ca,
    key: KeyPair,
    signing: Arc<dyn rustls::sign::SigningKey>,
    cache: moka::future::Cache<String, Arc<CertifiedKey>>,
    minted: AtomicU64,
}

/// Why a leaf could not be minted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("minting a certificate for {name:?}: {message}")]
pub struct MintError {
    /// The name asked.
    pub name: String,
    /// What failed.
    pub message: String,
}

impl Minter {
    /// A minter signing with `ca`, caching per `cfg`.
    pub fn new(ca: Ca, cfg: &InterceptConfig) -> Result<Self, MintError> {
        let fail = |message: String| MintError {
            name: String::new(),
            message,
        };
        let key = KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            ca,
            key,
            signing,
            cache: moka::future::Cache::builder()
                .max_capacity(cfg.leaf_cache)
                .time_to_live(cfg.leaf_ttl)
                .build(),
            minted: AtomicU64::new(0),
        })
    }

    /// The leaf for `name` (the SNI, else the CONNECT host), from the cache
    /// or minted from `upstream` (the origin's verified leaf, DER), if any.
    pub async fn leaf(
        &self,
        name: &str,
        upstream: Option<&CertificateDer<'_>>,
    ) -> Result<Arc<CertifiedKey>, MintError> {
        let key = name.to_ascii_lowercase();
        self.cache
            .try_get_with(key.clone(), async {
                self.mint(&key, upstream).map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// A leaf for `name` alone, not cached (the origin's certificate is unknown).
    pub fn uncached(&self, name: &str) -> Result<Arc<CertifiedKey>, MintError> {
        self.mint(&name.to_ascii_lowercase(), None).map(Arc::new)
    }

    /// How many leaves were signed (for tests and metrics).
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    fn mint(
        &self,
        name: &str,
        upstream: Option<&CertificateDer<'_>>,
    ) -> Result<CertifiedKey, MintError> {
        let fail = |message: String| MintError {
            name: name.to_string(),
            message,
        };
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(30);
        if let Some(der) = upstream {
            copy_upstream(&mut params, der);
        }
        let own = san(name).ok_or_else(|| fail("not a DNS name or an address".into()))?;
        if !params.subject_alt_names.contains(&own) {
            params.subject_alt_names.push(own);
        }
        let cert = params
            .signed_by(&self.key, &self.ca.issuer)
            .map_err(|e| fail(e.to_string()))?;
        self.minted.fetch_add(1, Ordering::Relaxed);
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.ca.cert.clone()],
            self.signing.clone(),
        ))
    }
}

/// The upstream leaf's DNS and IP subject alternative names and validity.
fn copy_upstream(params: &mut CertificateParams, der: &CertificateDer<'_>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return;
    };
    let validity = cert.validity();
    if let (Ok(from), Ok(to)) = (
        time::OffsetDateTime::from_unix_timestamp(validity.not_before.timestamp()),
        time::OffsetDateTime::from_unix_timestamp(validity.not_after.timestamp()),
    ) {
        params.not_before = from;
        params.not_after = to;
    }
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            let copied = match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    d.to_string().try_into().ok().map(SanType::DnsName)
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                    4 => <[u8; 4]>::try_from(*b)
                        .ok()
                        .map(|a| SanType::IpAddress(a.into())),
                    16 => <[u8; 16]>::try_from(*b)
                        .ok()
                        .map(|a| SanType::IpAddress(a.into())),
                    _ => None,
                },
                _ => None,
            };
            params.subject_alt_names.extend(copied);
        }
    }
}

fn san(name: &str) -> Option<SanType> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(SanType::IpAddress(ip)),
        Err(_) => name.to_string().try_into().ok().map(SanType::DnsName),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minter(cache: u64) -> Minter {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = super::super::ca::init(dir.path()).unwrap();
        let ca = super::super::ca::load(&cert, &key).unwrap();
        let cfg = InterceptConfig {
            leaf_cache: cache,
            ..InterceptConfig::default()
        };
        Minter::new(ca, &cfg).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_first_requests_mint_once() {
        let m = Arc::new(minter(100));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move { m.leaf("www.example.test", None).await.unwrap() })
            })
            .collect();
        let mut leaves = Vec::new();
        for t in tasks {
            leaves.push(t.await.unwrap());
        }
        assert_eq!(m.minted(), 1);
        assert!(leaves.iter().all(|l| Arc::ptr_eq(l, &leaves[0])));
        m.leaf("WWW.Example.test", None).await.unwrap();
        assert_eq!(m.minted(), 1, "names are case-insensitive");
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let m = minter(8);
        for i in 0..100 {
            m.leaf(&format!("n{i}.example.test"), None).await.unwrap();
        }
        m.cache.run_pending_tasks().await;
        assert!(m.cache.entry_count() <= 8, "{}", m.cache.entry_count());
    }

    #[tokio::test]
    async fn upstream_names_and_validity_are_copied() {
        let m = minter(8);
        let up_key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["a.example.test".into(), "b.example.test".into()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap();
        let up = p.self_signed(&up_key).unwrap();
        let leaf = m.leaf("a.example.test", Some(up.der())).await.unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.cert[0]).unwrap();
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names,
            ["DNSName(a.example.test)", "DNSName(b.example.test)"]
        );
        assert_eq!(parsed.validity().not_after.timestamp(), 1_798_761_600);
        assert_eq!(leaf.cert.len(), 2, "leaf, then the CA");
    }
}
