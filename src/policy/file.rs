//! The policy file as written by an administrator (TOML), before compiling.
//!
//! ```toml
//! default = "allow"                       # verdict when no layer decides
//! [objects]                               # named lists, used as "@name" in rules
//! skype_groups = ["Skype Users"]
//! blocked = { host_file = "lists/blocked-domains.txt" }  # one name or .suffix a line
//! bad_nets = { dest_file = "lists/bad-nets.txt" }        # one address or CIDR a line
//! [headers.no_user_agent]                 # named header conditions
//! "User-Agent" = "^$"                     # an absent header is the empty string
//! [combined.skype_source]                 # AND of ORs of "kind:value" references
//! all = [["group:@skype_groups", "user:carol"], ["header:no_user_agent"]]
//!
//! [[layers]]
//! name = "web-access"
//! [[layers.rules]]
//! name = "skype-tunnel"
//! method = ["CONNECT"]
//! source = ["skype_source"]
//! action = "tunnel"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub default: DefaultVerdict,
    #[serde(default)]
    pub objects: BTreeMap<String, Object>,
    #[serde(default)]
    pub headers: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub combined: BTreeMap<String, Combined>,
    #[serde(default)]
    pub layers: Vec<Layer>,
}

/// A named list: written inline, or kept in a file beside the policy (block
/// lists and threat feeds run to millions of lines and change daily; a
/// SIGHUP reloads them with the policy).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a list of strings, { host_file = \"FILE\" } or { dest_file = \"FILE\" }"
)]
pub enum Object {
    /// `name = ["a", "b"]`: used in any field.
    List(Vec<String>),
    /// `name = { host_file = "..." }` or `{ dest_file = "..." }`.
    File(ListFile),
}

/// A list file, relative to the policy file: one entry a line, `#` starts
/// a comment, blank lines are skipped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFile {
    /// Host names, `.example.com` for the domain and its subdomains; used in `host` and `sni`.
    pub host_file: Option<PathBuf>,
    /// Addresses and CIDRs; used in `dest` and `client`.
    pub dest_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultVerdict {
    #[default]
    Allow,
    Deny,
}

/// "At least one of these" AND "at least one of those".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Combined {
    pub all: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// Decides who must authenticate; cannot look at identity.
    Authentication,
    /// Decides allow/deny and tunnel/detect; sees the identity.
    #[default]
    Access,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub name: String,
    #[serde(default)]
    pub kind: LayerKind,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    Allow,
    Deny,
    Tunnel,
    Detect,
    Authenticate,
    NoAuthenticate,
    /// Only tags the transaction; decides nothing.
    Tag,
}

/// A port or an inclusive range, `443` or `"8000-8100"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    One(u16),
    Text(String),
}

/// Weekday and time-of-day window, in a named time zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    #[serde(default)]
    pub days: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default = "utc")]
    pub tz: String,
}

fn utc() -> String {
    "UTC".into()
}

/// One rule: every condition present must hold (AND); each list matches
/// when any of its entries does (OR).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub authenticated: Option<bool>,
    pub user: Option<Vec<String>>,
    pub group: Option<Vec<String>>,
    pub realm: Option<Vec<String>>,
    pub client: Option<Vec<String>>,
    pub method: Option<Vec<String>>,
    pub host: Option<Vec<String>>,
    pub dest: Option<Vec<String>>,
    pub port: Option<Vec<PortSpec>>,
    pub header: Option<BTreeMap<String, String>>,
    pub headers: Option<Vec<String>>,
    pub source: Option<Vec<String>>,
    pub category: Option<Vec<String>>,
    pub time: Option<TimeWindow>,
    pub protocol: Option<Vec<String>>,
    pub sni: Option<Vec<String>>,
    /// JA4 fingerprints of the client's ClientHello (exact or `re:`).
    pub ja4: Option<Vec<String>>,
    /// JA3N fingerprints (exact or `re:`).
    pub ja3n: Option<Vec<String>>,
    /// The highest TLS version the client offered: `1.0` … `1.3`.
    pub tls_version: Option<Vec<String>>,
    /// ALPN protocols the client offered (any of them).
    pub alpn: Option<Vec<String>>,
    pub action: ActionName,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub tag: Option<String>,
}
