//! Realm files (`realms/*.toml`): one source of identities each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

use super::error::RealmError;

/// One realm file, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RealmConfig {
    /// `kind = "local"`: users in a file.
    Local(LocalRealmConfig),
    /// `kind = "ldap"`: a directory.
    Ldap(Box<LdapRealmConfig>),
}

impl RealmConfig {
    /// The realm's `name`.
    pub fn name(&self) -> &str {
        match self {
            RealmConfig::Local(c) => &c.name,
            RealmConfig::Ldap(c) => &c.name,
        }
    }

    /// Reads and checks a realm file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, RealmError> {
        let realm: RealmConfig = Figment::from(Toml::file_exact(path))
            .extract()
            .map_err(|e| RealmError::File {
                path: path.into(),
                source: Box::new(e),
            })?;
        let mut realm = realm;
        if let RealmConfig::Ldap(c) = &mut realm {
            c.tls = c.tls_setting.unwrap_or_else(|| {
                if c.urls.first().is_some_and(|u| u.starts_with("ldaps://")) {
                    LdapTls::Ldaps
                } else {
                    LdapTls::Starttls
                }
            });
        }
        realm.validate().map_err(|(key, why)| RealmError::Key {
            path: path.into(),
            key,
            why,
        })?;
        Ok(realm)
    }

    /// The offending key and what it allows.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let name = self.name();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(("name", "letters, digits, '-', '_', '.'".into()));
        }
        match self {
            RealmConfig::Local(_) => Ok(()),
            RealmConfig::Ldap(c) => c.validate(),
        }
    }
}

/// Users and groups in a file, passwords as argon2 hashes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRealmConfig {
    /// The realm's name, in logs and identities: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// The users file (`gatehouse passwd` writes it).
    pub users_file: PathBuf,
    /// Logins differing only in case are one user (Unicode case folding).
    #[serde(default = "yes")]
    pub case_insensitive: bool,
    /// Take `DOMAIN\\user` and `user@DOMAIN` as `user` (for the listed `domains` only).
    #[serde(default = "yes")]
    pub strip_domain: bool,
    /// Domains this realm answers for: `DOMAIN\\user` and `user@DOMAIN` are its
    /// users only for these (NetBIOS, DNS or Kerberos names); others are refused.
    #[serde(default)]
    pub domains: Vec<String>,
}

fn yes() -> bool {
    true
}

/// How the connection to the directory is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LdapTls {
    /// `ldap://` upgraded with StartTLS (the default for `ldap://` URLs).
    #[default]
    Starttls,
    /// `ldaps://` URLs (TLS from the first byte).
    Ldaps,
    /// Clear text. Only for a lab or a loopback directory: passwords cross in the clear.
    None,
}

/// How a user's groups are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupStrategy {
    /// Direct groups from the user's `memberOf`, nested ones by searching `member=<group DN>` level by level.
    Memberof,
    /// Groups found by searching `member=<user DN>`, then `member=<group DN>` level by level.
    MemberSearch,
    /// Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: every nested group in one search.
    AdInChain,
}

/// A directory realm: OpenLDAP, Active Directory, FreeIPA, Samba AD.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapRealmConfig {
    /// The realm's name, in logs and identities: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Tried in order until one answers.
    pub urls: Vec<String>,
    /// StartTLS, LDAPS or (lab only) clear text, as the file says it
    /// (`tls`); when it says nothing, from the URLs' scheme (see [`Self::tls`]).
    #[serde(rename = "tls", default)]
    pub tls_setting: Option<LdapTls>,
    /// The protection in force: `tls` if given, else `ldaps` for `ldaps://`
    /// URLs and StartTLS for `ldap://` (never clear text unless asked).
    #[serde(skip)]
    pub tls: LdapTls,
    /// PEM CA bundle that signs the directory's certificate; system roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Verify the directory's certificate. Turning this off allows a
    /// man in the middle to collect every password: it is logged loudly.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// The service account that searches the directory.
    pub bind_dn: String,
    /// Its password, from a file ...
    pub bind_password_file: Option<PathBuf>,
    /// ... or from an environment variable. Never inline.
    pub bind_password_env: Option<String>,
    /// Where users are searched (subtree).
    pub user_base: String,
    /// `{user}` is replaced by the RFC 4515-escaped login name.
    pub user_filter: String,
    /// The attribute holding the login (`uid`, `sAMAccountName`).
    pub login_attribute: String,
    /// Attribute holding the Kerberos principal (`userPrincipalName`, `krbPrincipalName`).
    pub principal_attribute: Option<String>,
    /// Where groups are searched (subtree).
    pub group_base: String,
    /// How groups, nested ones included, are found.
    pub group_strategy: GroupStrategy,
    /// What a group entry is, for group searches.
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// The group attribute naming its members' DNs.
    #[serde(default = "default_member_attribute")]
    pub member_attribute: String,
    /// The group attribute that is its short name.
    #[serde(default = "default_cn")]
    pub group_name_attribute: String,
    /// Most levels of group nesting followed.
    #[serde(default = "default_depth")]
    pub nested_depth: usize,
    /// Logins differing only in case are one user (Unicode case folding).
    #[serde(default = "yes")]
    pub case_insensitive: bool,
    /// Take `DOMAIN\\user` and `user@DOMAIN` as `user` (for the listed `domains` only).
    #[serde(default = "yes")]
    pub strip_domain: bool,
    /// Domains this realm answers for: `DOMAIN\\user` (NTLM) and `user@REALM`
    /// (Kerberos, Basic) are its users only for these NetBIOS domains, DNS
    /// domains and Kerberos realms; a login from any other is refused, never
    /// mapped to the local user of the same name.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Longest wait for a directory connection.
    #[serde(default = "secs5", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for one search or bind.
    #[serde(default = "secs5", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Connections used for password binds (searches share one service connection).
    #[serde(default = "default_pool")]
    pub bind_pool_size: usize,
    /// How long a looked-up user (DN and groups) is trusted.
    #[serde(default = "min10", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long "no such user" is remembered.
    #[serde(default = "min1", with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// While the directory is down, cached users keep working this long past their TTL.
    #[serde(default = "hour", with = "humantime_serde")]
    pub stale_grace: Duration,
    /// Most users (and group parents) cached.
    #[serde(default = "default_capacity")]
    pub cache_capacity: u64,
    /// Follow the directory's changes (`directory/watch.rs`); `off`: the TTLs.
    #[serde(default)]
    pub watch: WatchMode,
    /// How often `usn` (and `dirsync`) poll.
    #[serde(default = "secs3", with = "humantime_serde")]
    pub watch_interval: Duration,
}

fn default_group_filter() -> String {
    "(objectClass=groupOfNames)".into()
}
fn default_member_attribute() -> String {
    "member".into()
}
fn default_cn() -> String {
    "cn".into()
}
fn default_depth() -> usize {
    8
}
fn secs3() -> Duration {
    Duration::from_secs(3)
}
fn secs5() -> Duration {
    Duration::from_secs(5)
}
fn default_pool() -> usize {
    4
}
fn min10() -> Duration {
    Duration::from_secs(600)
}
fn min1() -> Duration {
    Duration::from_secs(60)
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn default_capacity() -> u64 {
    100_000
}

impl LdapRealmConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.urls.is_empty() {
            return Err(("urls", "at least one directory URL".into()));
        }
        for u in &self.urls {
            let ok = match self.tls {
                LdapTls::Ldaps => u.starts_with("ldaps://"),
                LdapTls::Starttls | LdapTls::None => u.starts_with("ldap://"),
            };
            if !ok {
                return Err(("urls", format!("{u:?} does not match tls = {:?}", self.tls)));
            }
        }
        if !self.user_filter.contains("{user}") {
            return Err(("user_filter", "must contain {user}".into()));
        }
        if self.bind_password_file.is_some() == self.bind_password_env.is_some() {
            return Err((
                "bind_password_file` / `bind_password_env",
                "set exactly one".into(),
            ));
        }
        if self.bind_pool_size == 0 || self.bind_pool_size > 256 {
            return Err(("bind_pool_size", "between 1 and 256".into()));
        }
        if self.nested_depth > 64 {
            return Err(("nested_depth", "at most 64".into()));
        }
        Ok(())
    }

    /// The service account's password, from its file or variable.
    pub fn bind_password(&self) -> Result<String, RealmError> {
        if let Some(path) = &self.bind_password_file {
            return crate::settings::read_secret(path).map_err(|source| {
                RealmError::BindPasswordFile {
                    realm: self.name.clone(),
                    source,
                }
            });
        }
        let var = self.bind_password_env.as_deref().unwrap_or_default();
        std::env::var(var).map_err(|_| RealmError::BindPasswordEnv {
            realm: self.name.clone(),
            var: var.to_string(),
        })
    }
}

/// argon2 checks of the local realm run on at most `permits` blocking
/// threads at once; each holds the hash's memory (19 MiB at the default
/// parameters) while it runs, so memory is bounded by permits × that.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordCheckConfig {
    /// Concurrent checks; 0 = half the CPU cores (at least one), so that a
    /// flood of wrong passwords leaves the other half to the traffic.
    pub permits: usize,
    /// A check waits this long for a permit, then the request gets 503 with Retry-After.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

impl Default for PasswordCheckConfig {
    fn default() -> Self {
        Self {
            permits: 0,
            queue_timeout: Duration::from_secs(2),
        }
    }
}

impl PasswordCheckConfig {
    /// The number of permits, with 0 resolved to the machine's cores.
    pub fn permits(&self) -> usize {
        match self.permits {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ldap_realm(urls: &str, tls: &str) -> Result<LdapTls, RealmError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("realm.toml");
        std::fs::write(
            &path,
            format!(
                "kind = \"ldap\"\nname = \"corp\"\nurls = [{urls}]\n{tls}\
                 bind_dn = \"cn=svc\"\nbind_password_env = \"X\"\nuser_base = \"ou=people\"\n\
                 user_filter = \"(uid={{user}})\"\nlogin_attribute = \"uid\"\n\
                 group_base = \"ou=groups\"\ngroup_strategy = \"memberof\"\n"
            ),
        )
        .unwrap();
        match RealmConfig::load(&path)? {
            RealmConfig::Ldap(c) => Ok(c.tls),
            RealmConfig::Local(_) => unreachable!(),
        }
    }

    #[test]
    fn tls_follows_the_url_scheme_unless_given() {
        assert_eq!(
            ldap_realm("\"ldap://dc:389\"", "").unwrap(),
            LdapTls::Starttls
        );
        assert_eq!(
            ldap_realm("\"ldaps://dc:636\"", "").unwrap(),
            LdapTls::Ldaps
        );
        assert_eq!(
            ldap_realm("\"ldap://127.0.0.1:389\"", "tls = \"none\"\n").unwrap(),
            LdapTls::None
        );
        // A scheme that contradicts the setting is still refused.
        assert!(ldap_realm("\"ldaps://dc:636\"", "tls = \"starttls\"\n").is_err());
    }

    /// The service account's password file is a secret: a file others can
    /// read is refused by name (with the fix), a private one is read with
    /// its line break dropped.
    #[test]
    fn a_bind_password_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("bind.pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.path().join("realm.toml");
        std::fs::write(
            &path,
            format!(
                "kind = \"ldap\"\nname = \"corp\"\nurls = [\"ldaps://dc:636\"]\n\
                 bind_dn = \"cn=svc\"\nbind_password_file = \"{}\"\nuser_base = \"ou=people\"\n\
                 user_filter = \"(uid={{user}})\"\nlogin_attribute = \"uid\"\n\
                 group_base = \"ou=groups\"\ngroup_strategy = \"memberof\"\n",
                pw.display()
            ),
        )
        .unwrap();
        let RealmConfig::Ldap(c) = RealmConfig::load(&path).unwrap() else {
            unreachable!()
        };
        let e = c.bind_password().unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("corp"), "{e}");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(c.bind_password().unwrap(), "s3cret");
    }
}

/// `watch` in a directory realm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    /// Trust cached look-ups for their TTLs.
    #[default]
    Off,
    /// OpenLDAP content synchronisation (RFC 4533), refreshAndPersist.
    Syncrepl,
    /// Active Directory / Samba: poll `uSNChanged` every `watch_interval`.
    Usn,
}
