//! A directory realm (OpenLDAP, Active Directory, FreeIPA, Samba AD): find the
//! user with the service account, check the password with a bind as the user,
//! resolve groups — the lookup cached, so a known user costs one bind per
//! credential-cache period and no search.

mod bind_result;
mod groups;
pub(crate) mod pool;

use std::sync::Arc;
use std::time::Duration;

use ldap3::{ldap_escape, Scope};

use super::cache::{Lifetimes, Source, StaleCache, Unavailable};
use super::config::LdapRealmConfig;
use super::error::RealmError;
use super::RealmVerdict;
use crate::directory::identity::{fold, login_in_realm, normalise, Identity};
use pool::LdapPool;

/// Cached lookups: a found user lives `cache_ttl` (+ `stale_grace` while the
/// directory is down); "no such user" lives `negative_ttl`.
struct UserLifetimes {
    ttl: Duration,
    negative: Duration,
    grace: Duration,
}

impl Lifetimes<Option<Arc<Identity>>> for UserLifetimes {
    fn fresh(&self, v: &Option<Arc<Identity>>) -> Duration {
        if v.is_some() {
            self.ttl
        } else {
            self.negative
        }
    }
    fn grace(&self, v: &Option<Arc<Identity>>) -> Duration {
        if v.is_some() {
            self.grace
        } else {
            Duration::ZERO
        }
    }
}

/// Group parents live as long as users do, and survive an outage as long.
struct GroupLifetimes {
    ttl: Duration,
    grace: Duration,
}

impl Lifetimes<groups::Parents> for GroupLifetimes {
    fn fresh(&self, _: &groups::Parents) -> Duration {
        self.ttl
    }
    fn grace(&self, _: &groups::Parents) -> Duration {
        self.grace
    }
}

/// A directory realm: its connections and its cached look-ups.
pub struct LdapRealm {
    name: Arc<str>,
    cfg: Arc<LdapRealmConfig>,
    /// Connections to the directory.
    pub pool: LdapPool,
    users: StaleCache<String, Option<Arc<Identity>>>,
    parents: groups::ParentCache,
}

impl LdapRealm {
    /// A realm for `cfg`; nothing is connected until the first question.
    pub fn new(cfg: &LdapRealmConfig) -> Result<Self, RealmError> {
        let cfg = Arc::new(cfg.clone());
        let users = StaleCache::new(
            cfg.cache_capacity,
            UserLifetimes {
                ttl: cfg.cache_ttl,
                negative: cfg.negative_ttl,
                grace: cfg.stale_grace,
            },
        );
        let parents = StaleCache::new(
            cfg.cache_capacity,
            GroupLifetimes {
                ttl: cfg.cache_ttl,
                grace: cfg.stale_grace,
            },
        );
        Ok(Self {
            name: cfg.name.as_str().into(),
            pool: LdapPool::new(cfg.clone())?,
            cfg,
            users,
            parents,
        })
    }

    /// The realm's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user cache (for tests and counters).
    pub fn cache(&self) -> &StaleCache<String, Option<Arc<Identity>>> {
        &self.users
    }

    /// The user and groups, from the cache or the directory.
    pub async fn lookup(&self, user: &str) -> Result<(Option<Arc<Identity>>, Source), Unavailable> {
        // The directory decides which spellings are one login: it is asked,
        // and its answer cached, under the name as given, lowercased as before
        // but not case-folded (full folding turns `ß` into `ss`, and slapd does
        // not match `strauss` to `strauß`). The identity it returns is folded.
        let Some(login) = login_in_realm(user, &self.cfg.domains, self.cfg.strip_domain, false)
        else {
            return Ok((None, Source::Fresh));
        };
        let login = if self.cfg.case_insensitive {
            login.to_lowercase()
        } else {
            login
        };
        if login.is_empty() {
            return Ok((None, Source::Fresh));
        }
        self.users.get(login.clone(), || self.fetch(login)).await
    }

    /// Forgets what is cached about the users a directory change concerns
    /// (the entry itself, a group they are or were in, members it lists
    /// now) and every cached group parent; returns those users.
    pub async fn forget_changed(&self, c: &crate::directory::watch::Change) -> Vec<String> {
        let dn = c.dn.to_lowercase();
        let members: Vec<String> = c.members.iter().map(|m| m.to_lowercase()).collect();
        let concerned = move |v: &Option<Arc<Identity>>| {
            v.as_ref().is_some_and(|id| {
                let own = id.dn.as_ref().map(|d| d.to_lowercase());
                own.as_ref()
                    .is_some_and(|d| *d == dn || members.contains(d))
                    || id
                        .groups
                        .iter()
                        .any(|g| g.dn.as_ref().is_some_and(|d| d.eq_ignore_ascii_case(&dn)))
            })
        };
        let mut keys = self.users.keys_where(concerned);
        if let Some(login) = &c.login {
            let login = if self.cfg.case_insensitive {
                login.to_lowercase()
            } else {
                login.clone()
            };
            if !keys.contains(&login) {
                keys.push(login);
            }
        }
        for k in &keys {
            self.users.invalidate(k).await;
        }
        if !c.members.is_empty() {
            self.parents.invalidate_if(|_| true);
        }
        keys
    }

    /// The user whose `principal_attribute` is `principal` (cached like logins).
    pub async fn lookup_by_principal(
        &self,
        principal: &str,
    ) -> Result<Option<Arc<Identity>>, Unavailable> {
        let Some(attr) = &self.cfg.principal_attribute else {
            return Ok(None);
        };
        // The user filter's other constraints stay; its login test becomes "any".
        let filter = format!(
            "(&{}({attr}={}))",
            self.cfg.user_filter.replace("{user}", "*"),
            ldap_escape(principal)
        );
        let key = format!("principal:{}", principal.to_lowercase());
        let login = fold(principal.rsplit_once('@').map_or(principal, |(u, _)| u));
        self.users
            .get(key, || self.fetch_with(filter, login))
            .await
            .map(|(id, _)| id)
    }

    async fn fetch(&self, login: String) -> Result<Option<Arc<Identity>>, Unavailable> {
        let filter = self
            .cfg
            .user_filter
            .replace("{user}", &ldap_escape(login.as_str()));
        self.fetch_with(filter, login).await
    }

    async fn fetch_with(
        &self,
        filter: String,
        login: String,
    ) -> Result<Option<Arc<Identity>>, Unavailable> {
        let cfg = &self.cfg;
        let mut attrs = vec![cfg.login_attribute.as_str(), "memberOf"];
        if let Some(p) = &cfg.principal_attribute {
            attrs.push(p);
        }
        let mut entries = self.pool.search(&cfg.user_base, &filter, &attrs).await?;
        if entries.len() > 1 {
            tracing::warn!(realm = %self.name, user = %login, matches = entries.len(), "user filter matches several entries: refused");
            return Ok(None);
        }
        let Some(entry) = entries.pop() else {
            return Ok(None);
        };
        let member_of = groups::all(&entry.attrs, "memberOf");
        let groups = groups::resolve(&self.pool, &self.parents, cfg, &entry.dn, &member_of).await?;
        let user = groups::first(&entry.attrs, &cfg.login_attribute).unwrap_or(login);
        let user = normalise(&user, false, cfg.case_insensitive);
        Ok(Some(Arc::new(Identity {
            user,
            realm: self.name.clone(),
            dn: Some(entry.dn),
            groups,
        })))
    }

    /// Checks `user`'s password with a bind as the user's DN.
    pub async fn verify(&self, user: &str, password: &str) -> RealmVerdict {
        if password.is_empty() {
            return RealmVerdict::BadPassword;
        }
        let identity = match self.lookup(user).await {
            Err(u) => return RealmVerdict::Unavailable(u),
            Ok((None, _)) => return RealmVerdict::UnknownUser,
            Ok((Some(id), _)) => id,
        };
        let dn = identity.dn.as_deref().unwrap_or_default();
        match self.pool.check_password(dn, password).await {
            Ok(bind_result::BindOutcome::Success) => RealmVerdict::Verified(identity),
            Ok(bind_result::BindOutcome::WrongPassword) => RealmVerdict::BadPassword,
            Ok(bind_result::BindOutcome::Account(p)) => RealmVerdict::Refused(p),
            Ok(bind_result::BindOutcome::Trouble(why)) => {
                RealmVerdict::Unavailable(Unavailable(format!("realm {}: {why}", self.name)))
            }
            Err(u) => RealmVerdict::Unavailable(u),
        }
    }

    /// For `gatehouse check`: can the service account bind and read the user base?
    pub async fn probe(&self) -> Result<(), Unavailable> {
        let found = self
            .pool
            .search_scoped(
                &self.cfg.user_base,
                Scope::Base,
                "(objectClass=*)",
                &["1.1"],
            )
            .await?;
        if found.is_empty() {
            return Err(Unavailable(format!(
                "user_base {} not found",
                self.cfg.user_base
            )));
        }
        Ok(())
    }
}
