//! The local realm: users and groups in a TOML file, passwords as argon2 hashes.
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$..."   # written by `gatehouse passwd`
//! groups = ["staff", "telephony"]
//!
//! [groups.telephony]
//! member_of = ["Skype Users"]       # nesting: telephony members are Skype Users
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use serde::Deserialize;

mod hashing;
mod passwd;

pub use passwd::set_password;

use super::cache::Unavailable;
use super::config::LocalRealmConfig;
use super::error::{NameClash, RealmError};
use super::RealmVerdict;
use crate::directory::identity::{fold, login_in_realm, normalise, Group, Identity};
use crate::limit::{BlockingSlots, SlotError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: HashMap<String, LocalUser>,
    #[serde(default)]
    groups: HashMap<String, LocalGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalUser {
    password: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalGroup {
    #[serde(default)]
    member_of: Vec<String>,
}

/// A realm of users and groups from a TOML file, passwords as argon2 hashes.
pub struct LocalRealm {
    name: Arc<str>,
    cfg: LocalRealmConfig,
    users: HashMap<String, Arc<(String, Identity)>>,
    /// Where hashes are checked: a bounded number at once, off the async threads.
    hashing: Arc<BlockingSlots>,
    /// Their working memory, reused.
    memory: Arc<hashing::HashMemory>,
    /// The hash an unknown user's password is checked against, so that an
    /// unknown name costs what a known one does (no timing oracle for names).
    decoy: Arc<str>,
}

impl LocalRealm {
    /// Reads and checks the users file; hashes are checked through `hashing`.
    pub fn load(cfg: &LocalRealmConfig, hashing: &Arc<BlockingSlots>) -> Result<Self, RealmError> {
        let path = &cfg.users_file;
        let text = std::fs::read_to_string(path).map_err(|source| RealmError::UsersRead {
            path: path.clone(),
            source,
        })?;
        let syntax = |e: Box<dyn std::error::Error + Send + Sync>| RealmError::UsersSyntax {
            path: path.clone(),
            source: e,
        };
        let file: UsersFile = toml_edit::de::from_str(&text).map_err(|e| syntax(e.into()))?;
        let doc = toml_edit::ImDocument::parse(text.as_str()).map_err(|e| syntax(e.into()))?;
        // Two spellings of one name would make the password that works a
        // matter of hash-map order: refused, with both lines named.
        unique_names(&doc, &text, "users", |u| {
            normalise(u, false, cfg.case_insensitive)
        })
        .and_then(|()| unique_names(&doc, &text, "groups", fold))
        .map_err(|clash| RealmError::SameName {
            path: path.clone(),
            clash,
        })?;
        let name: Arc<str> = cfg.name.as_str().into();
        let groups: HashMap<String, &LocalGroup> =
            file.groups.iter().map(|(g, def)| (fold(g), def)).collect();
        let mut users = HashMap::new();
        for (login, u) in file.users {
            PasswordHash::new(&u.password).map_err(|why| RealmError::NotAHash {
                path: path.clone(),
                login: login.clone(),
                why,
            })?;
            let key = normalise(&login, false, cfg.case_insensitive);
            let identity = Identity {
                user: key.clone(),
                realm: name.clone(),
                dn: None,
                groups: expand(&u.groups, &groups),
            };
            users.insert(key, Arc::new((u.password, identity)));
        }
        Ok(Self {
            name,
            cfg: cfg.clone(),
            users,
            hashing: hashing.clone(),
            memory: Arc::default(),
            decoy: decoy_hash()?.into(),
        })
    }

    /// The realm's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Users in the file.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    fn find(&self, user: &str) -> Option<&Arc<(String, Identity)>> {
        let login = login_in_realm(
            user,
            &self.cfg.domains,
            self.cfg.strip_domain,
            self.cfg.case_insensitive,
        )?;
        self.users.get(&login)
    }

    /// Checks a password. Hashing is CPU work and 19 MiB of memory: it runs
    /// off the async threads, a bounded number at once. An unknown user's
    /// password is checked against a decoy hash, at the same cost.
    pub async fn verify(&self, user: &str, password: &str) -> RealmVerdict {
        let entry = self.find(user).cloned();
        let decoy = self.decoy.clone();
        let memory = self.memory.clone();
        let password = password.to_owned();
        let checked = self
            .hashing
            .run(move || {
                let hash = entry.as_ref().map_or(&*decoy, |e| e.0.as_str());
                let ok = memory.verify(hash, password.as_bytes());
                match entry {
                    None => RealmVerdict::UnknownUser,
                    Some(e) if ok => RealmVerdict::Verified(Arc::new(e.1.clone())),
                    Some(_) => RealmVerdict::BadPassword,
                }
            })
            .await;
        match checked {
            Ok(verdict) => verdict,
            Err(SlotError::Busy(n)) => {
                RealmVerdict::Busy(format!("all {n} password-check permits busy"))
            }
            Err(SlotError::Failed(e)) => RealmVerdict::Unavailable(Unavailable(e)),
        }
    }

    /// Users whose credentials are the shipped demo accounts' (see [`DEMO`]):
    /// a shipped hash under any name, or a demo name whose hash verifies the
    /// published demo password (re-hashed by `gatehouse passwd`). The second
    /// costs one argon2 check per demo name present, so at most two.
    pub fn demo_accounts(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .users
            .iter()
            .filter(|(_, e)| DEMO.iter().any(|(_, _, hash)| e.0 == *hash))
            .map(|(name, _)| name.clone())
            .collect();
        for (name, password, _) in DEMO {
            let Some(entry) = self.find(name) else {
                continue;
            };
            let verifies = self.memory.verify(&entry.0, password.as_bytes());
            if verifies && !found.contains(&entry.1.user) {
                found.push(entry.1.user.clone());
            }
        }
        found.sort();
        found
    }

    /// The users file (`users_file`).
    pub fn users_file(&self) -> &Path {
        &self.cfg.users_file
    }

    /// The user's identity without a password (for single sign-on mappings).
    pub fn lookup(&self, user: &str) -> Option<Arc<Identity>> {
        self.find(user).map(|e| Arc::new(e.1.clone()))
    }
}

/// The demo accounts shipped in config/users.toml: name, the password the
/// README publishes, and the exact hash shipped. Anyone can log in with them,
/// so the proxy refuses them on any address but loopback.
pub const DEMO: [(&str, &str, &str); 2] = [
    (
        "demo",
        "demo-password",
        "$argon2id$v=19$m=19456,t=2,p=1$xw6QOg6YNLmNTckruLGtjw$DZFuHnttSzhcvCnc7pp4kktCMN3bvKH3s0wcveAjJS0",
    ),
    (
        "alice",
        "alice-demo-password",
        "$argon2id$v=19$m=19456,t=2,p=1$3uTIzl0efmdcwG1prdtezQ$h1zhLcSUQb+aFMrUkAkZAvK83Noeqajloxmh941uVzA",
    ),
];

/// Checks that no two keys of `[table]` are one name under `norm`; the error
/// names the line of each.
fn unique_names(
    doc: &toml_edit::ImDocument<&str>,
    text: &str,
    table: &str,
    norm: impl Fn(&str) -> String,
) -> Result<(), NameClash> {
    let Some(entries) = doc.get(table).and_then(|t| t.as_table_like()) else {
        return Ok(());
    };
    let line = |name: &str| {
        let at = entries
            .get_key_value(name)
            .and_then(|(k, _)| k.span())
            .map_or(0, |s| s.start);
        text[..at].matches('\n').count() + 1
    };
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (name, _) in entries.iter() {
        if let Some(first) = seen.insert(norm(name), name) {
            let (a, b) = if line(first) <= line(name) {
                (first, name)
            } else {
                (name, first)
            };
            return Err(NameClash {
                kind: if table == "users" { "user" } else { "group" },
                name: b.to_string(),
                line: line(b),
                first: a.to_string(),
                first_line: line(a),
            });
        }
    }
    Ok(())
}

/// Direct groups plus every group reachable through `member_of`, cycles cut.
/// Group names are one name whatever their case (`groups` is keyed by [`fold`]).
fn expand(direct: &[String], groups: &HashMap<String, &LocalGroup>) -> Vec<Group> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let mut frontier: Vec<(String, bool)> = direct.iter().map(|g| (g.clone(), false)).collect();
    while let Some((g, nested)) = frontier.pop() {
        let key = fold(&g);
        if !seen.insert(key.clone()) {
            continue;
        }
        if let Some(parent) = groups.get(&key) {
            frontier.extend(parent.member_of.iter().map(|p| (p.clone(), true)));
        }
        out.push(Group {
            name: g,
            dn: None,
            nested,
        });
    }
    out
}

/// An argon2 hash (default parameters, like `gatehouse passwd` writes) of a
/// random password nobody knows.
fn decoy_hash() -> Result<String, RealmError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(RealmError::Random)?;
    let salt = SaltString::encode_b64(&random_salt()).map_err(RealmError::Hashing)?;
    let hash = Argon2::default()
        .hash_password(&secret, &salt)
        .map_err(RealmError::Hashing)?;
    Ok(hash.to_string())
}

/// Sixteen random bytes for an argon2 salt.
fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    // The OS RNG failing is not something a proxy can recover from.
    getrandom::fill(&mut salt).expect("operating system random number generator");
    salt
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
