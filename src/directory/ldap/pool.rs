//! Connections to one directory: a shared service-bound connection for
//! searches (ldap3 multiplexes operations on it), and a bounded pool of
//! connections used only for users' password binds — a bind changes who a
//! connection is, so those never serve searches. ldap3 has neither pooling
//! nor reconnection; both are here. Every call has a timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use tokio::sync::Semaphore;

use super::bind_result::{classify, BindOutcome};
use crate::directory::cache::Unavailable;
use crate::directory::config::{LdapRealmConfig, LdapTls};
use crate::directory::error::RealmError;

/// LDAP result codes we act on (RFC 4511).
const RC_SUCCESS: u32 = 0;
const RC_NO_SUCH_OBJECT: u32 = 32;

/// Operations sent to the directory, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct OpCounters {
    /// Searches sent.
    pub searches: AtomicU64,
    /// User binds sent.
    pub binds: AtomicU64,
}

/// One directory's connections: a shared search connection and a bounded bind pool.
pub struct LdapPool {
    cfg: Arc<LdapRealmConfig>,
    bind_password: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    service: tokio::sync::Mutex<Option<Ldap>>,
    binders: Semaphore,
    idle: Mutex<Vec<Ldap>>,
    /// Operations sent so far.
    pub ops: OpCounters,
}

impl LdapPool {
    /// A pool for `cfg` (reads the service password and CA now, connects later).
    pub fn new(cfg: Arc<LdapRealmConfig>) -> Result<Self, RealmError> {
        let bind_password = cfg.bind_password()?;
        let tls = match (&cfg.ca_file, cfg.tls) {
            (Some(ca), LdapTls::Starttls | LdapTls::Ldaps) => Some(Arc::new(client_config(ca)?)),
            _ => None,
        };
        if cfg.tls == LdapTls::None {
            tracing::warn!(realm = %cfg.name, "LDAP without TLS: passwords cross the network in clear text");
        } else if !cfg.tls_verify {
            tracing::warn!(realm = %cfg.name, "LDAP certificate verification is OFF: anyone in the path can read passwords");
        }
        Ok(Self {
            binders: Semaphore::new(cfg.bind_pool_size),
            cfg,
            bind_password,
            tls,
            service: tokio::sync::Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            ops: OpCounters::default(),
        })
    }

    fn op_timeout(&self) -> Duration {
        self.cfg.operation_timeout
    }

    /// A new connection to the first directory URL that answers.
    async fn connect(&self) -> Result<Ldap, Unavailable> {
        let mut last = String::from("no URL configured");
        for url in &self.cfg.urls {
            let mut settings = LdapConnSettings::new()
                .set_conn_timeout(self.cfg.connect_timeout)
                .set_starttls(self.cfg.tls == LdapTls::Starttls)
                .set_no_tls_verify(!self.cfg.tls_verify);
            if let Some(c) = &self.tls {
                settings = settings.set_config(c.clone());
            }
            let attempt = tokio::time::timeout(
                self.cfg.connect_timeout * 2,
                LdapConnAsync::with_settings(settings, url),
            );
            match attempt.await {
                Ok(Ok((conn, ldap))) => {
                    ldap3::drive!(conn);
                    return Ok(ldap);
                }
                Ok(Err(e)) => last = format!("{url}: {e}"),
                Err(_) => last = format!("{url}: connect timed out"),
            }
            tracing::warn!(realm = %self.cfg.name, error = %last, "directory server unreachable");
        }
        Err(Unavailable(format!(
            "directory {} unreachable ({last})",
            self.cfg.name
        )))
    }

    /// The service-bound connection, (re)connected and bound when needed.
    async fn service(&self) -> Result<Ldap, Unavailable> {
        let mut slot = self.service.lock().await;
        if let Some(l) = slot.as_mut() {
            if !l.is_closed() {
                return Ok(l.clone());
            }
        }
        *slot = None;
        let l = self.bound_connection().await?;
        *slot = Some(l.clone());
        Ok(l)
    }

    /// A new connection bound as the service account: the shared one's
    /// next, or one of its own for a long-lived use (the directory watch)
    /// that must not hold the shared one.
    pub async fn bound_connection(&self) -> Result<Ldap, Unavailable> {
        let mut l = self.connect().await?;
        self.ops.binds.fetch_add(1, Ordering::Relaxed);
        let res = l
            .with_timeout(self.op_timeout())
            .simple_bind(&self.cfg.bind_dn, &self.bind_password)
            .await
            .map_err(|e| Unavailable(format!("service bind to {}: {e}", self.cfg.name)))?;
        if res.rc != RC_SUCCESS {
            return Err(Unavailable(format!(
                "service account {} refused by {} (rc={} {})",
                self.cfg.bind_dn, self.cfg.name, res.rc, res.text
            )));
        }
        Ok(l)
    }

    async fn drop_service(&self) {
        *self.service.lock().await = None;
    }

    /// Searches with the service account; one reconnect on a broken connection.
    pub async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, Unavailable> {
        self.search_scoped(base, Scope::Subtree, filter, attrs)
            .await
    }

    /// [`LdapPool::search`] with an explicit scope, timed.
    pub async fn search_scoped(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, Unavailable> {
        let started = std::time::Instant::now();
        let result = self.search_untimed(base, scope, filter, attrs).await;
        let outcome = if result.is_ok() { "ok" } else { "unavailable" };
        crate::directory::timing::observe(&self.cfg.name, "search", outcome, started.elapsed());
        result
    }

    async fn search_untimed(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, Unavailable> {
        let mut last = String::new();
        for _ in 0..2 {
            let mut l = self.service().await?;
            self.ops.searches.fetch_add(1, Ordering::Relaxed);
            match l
                .with_timeout(self.op_timeout())
                .search(base, scope, filter, attrs.to_vec())
                .await
            {
                Ok(res) => {
                    let rc = res.1.rc;
                    if rc == RC_NO_SUCH_OBJECT {
                        return Ok(Vec::new());
                    }
                    if rc != RC_SUCCESS && rc != 10 {
                        // 10 = referral: AD refers to other partitions; what we got is ours.
                        return Err(Unavailable(format!(
                            "search in {} failed: rc={} {}",
                            self.cfg.name, rc, res.1.text
                        )));
                    }
                    return Ok(res
                        .0
                        .into_iter()
                        .filter(|e| !e.is_ref())
                        .map(SearchEntry::construct)
                        .collect());
                }
                Err(e) => {
                    last = e.to_string();
                    self.drop_service().await;
                }
            }
        }
        Err(Unavailable(format!(
            "search in {} failed: {last}",
            self.cfg.name
        )))
    }

    /// Checks a password with a simple bind as `dn`, timed. An empty
    /// password never gets here: it would be an unauthenticated bind.
    pub async fn check_password(
        &self,
        dn: &str,
        password: &str,
    ) -> Result<BindOutcome, Unavailable> {
        if password.is_empty() || dn.is_empty() {
            return Ok(BindOutcome::WrongPassword);
        }
        let started = std::time::Instant::now();
        let result = self.bind_untimed(dn, password).await;
        let outcome = match &result {
            Ok(BindOutcome::Success) => "ok",
            Ok(BindOutcome::WrongPassword) | Ok(BindOutcome::Account(_)) => "wrong_password",
            Ok(BindOutcome::Trouble(_)) => "refused",
            Err(_) => "unavailable",
        };
        crate::directory::timing::observe(&self.cfg.name, "bind", outcome, started.elapsed());
        result
    }

    async fn bind_untimed(&self, dn: &str, password: &str) -> Result<BindOutcome, Unavailable> {
        let _permit = tokio::time::timeout(self.op_timeout(), self.binders.acquire())
            .await
            .map_err(|_| {
                Unavailable(format!(
                    "all {} bind connections to {} busy",
                    self.cfg.bind_pool_size, self.cfg.name
                ))
            })?
            .map_err(|_| Unavailable("bind pool closed".into()))?;
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut l = match pooled {
            Some(mut l) => {
                if l.is_closed() {
                    self.connect().await?
                } else {
                    l
                }
            }
            None => self.connect().await?,
        };
        self.ops.binds.fetch_add(1, Ordering::Relaxed);
        match l
            .with_timeout(self.op_timeout())
            .simple_bind(dn, password)
            .await
        {
            Ok(res) => {
                self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(l);
                let outcome = classify(res.rc, &res.text);
                if let BindOutcome::Trouble(why) = &outcome {
                    tracing::warn!(realm = %self.cfg.name, rc = res.rc, text = %res.text, %why, "directory did not judge a user bind");
                }
                Ok(outcome)
            }
            Err(e) => Err(Unavailable(format!(
                "bind to {} failed: {e}",
                self.cfg.name
            ))),
        }
    }
}

/// rustls client config trusting only the CA bundle in `ca_file`.
fn client_config(ca_file: &std::path::Path) -> Result<rustls::ClientConfig, RealmError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bad = |why: &dyn std::fmt::Display| RealmError::CaFile {
        path: ca_file.into(),
        why: why.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| bad(&e))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(&e))?;
        roots.add(cert).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
