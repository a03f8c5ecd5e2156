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

/// A whole policy file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The verdict when no layer decides.
    #[serde(default)]
    pub default: DefaultVerdict,
    /// Named lists, used as `@name` in rules.
    #[serde(default)]
    pub objects: BTreeMap<String, Object>,
    /// Named header conditions (`header name → regex`), used in `headers`.
    #[serde(default)]
    pub headers: BTreeMap<String, BTreeMap<String, String>>,
    /// Combined objects (an AND of ORs), used in `source`.
    #[serde(default)]
    pub combined: BTreeMap<String, Combined>,
    /// The layers, in order: a later layer refines an earlier one.
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

/// The verdict when no layer's rule decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultVerdict {
    /// Allow (the built-in checks and authentication still apply).
    #[default]
    Allow,
    /// Deny with `policy_denied`.
    Deny,
}

/// "At least one of these" AND "at least one of those".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Combined {
    /// Each inner list is an OR of `kind:value` references; all must hold.
    pub all: Vec<Vec<String>>,
}

/// What a layer decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// Decides who must authenticate; cannot look at identity.
    Authentication,
    /// Decides allow/deny and tunnel/detect; sees the identity.
    #[default]
    Access,
}

/// A named, ordered list of rules: the first that matches decides the layer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Its name, in `explain` and errors.
    pub name: String,
    /// Authentication or access.
    #[serde(default)]
    pub kind: LayerKind,
    /// The rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A rule's `action`, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    /// `allow`.
    Allow,
    /// `deny` (with `status` and `reason`).
    Deny,
    /// `tunnel`: a CONNECT without protocol detection.
    Tunnel,
    /// `detect`: a CONNECT with protocol detection.
    Detect,
    /// `authenticate` (authentication layers).
    Authenticate,
    /// `no-authenticate` (authentication layers).
    NoAuthenticate,
    /// `guest` (authentication layers): without credentials, the guest user.
    Guest,
    /// `intercept`: a CONNECT decrypted, each request inside judged and logged.
    Intercept,
    /// `bypass`: a CONNECT exempt from interception (detected as usual).
    Bypass,
    /// Only tags the transaction; decides nothing.
    Tag,
}

/// A port or an inclusive range, `443` or `"8000-8100"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// `443`.
    One(u16),
    /// `"443"` or `"8000-8100"`.
    Text(String),
}

/// Weekday and time-of-day window, in a named time zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// `mon` … `sun`; every day when empty.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM`, from midnight when absent.
    pub from: Option<String>,
    /// `HH:MM`, to midnight when absent; before `from` wraps midnight.
    pub to: Option<String>,
    /// An IANA time zone name.
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
    /// Unique within its layer; the log's `x-rule`.
    pub name: String,
    /// Only (un)authenticated requests.
    pub authenticated: Option<bool>,
    /// User names (folded).
    pub user: Option<Vec<String>>,
    /// Group names, nested membership included (folded).
    pub group: Option<Vec<String>>,
    /// Realm names (folded).
    pub realm: Option<Vec<String>>,
    /// How the user was identified: `basic`, `negotiate-kerberos`,
    /// `negotiate-ntlm`, `ntlm`, `surrogate-ip`, `guest`.
    pub auth_scheme: Option<Vec<String>>,
    /// Client addresses and CIDRs (or `@dest_file` objects).
    pub client: Option<Vec<String>>,
    /// Request methods.
    pub method: Option<Vec<String>>,
    /// Destination hosts: `name`, `.domain`, `re:regex`, `@objects`.
    pub host: Option<Vec<String>>,
    /// CIDRs the destination's resolved addresses are checked against.
    pub dest: Option<Vec<String>>,
    /// Destination ports or ranges.
    pub port: Option<Vec<PortSpec>>,
    /// Inline header conditions: header name → regex.
    pub header: Option<BTreeMap<String, String>>,
    /// Named header conditions.
    pub headers: Option<Vec<String>>,
    /// Combined objects.
    pub source: Option<Vec<String>>,
    /// URL categories.
    pub category: Option<Vec<String>>,
    /// A weekday and time-of-day window.
    pub time: Option<TimeWindow>,
    /// After detection: `tls`, `http`, `ssh`, `unknown`.
    pub protocol: Option<Vec<String>>,
    /// After detection: TLS SNI patterns, as `host`.
    pub sni: Option<Vec<String>>,
    /// Regexes over the full URL (`http://…`, or `https://…` inside an
    /// intercepted tunnel); a CONNECT has no URL and never matches.
    pub url: Option<Vec<String>>,
    /// JA4 fingerprints of the client's ClientHello (exact or `re:`).
    pub ja4: Option<Vec<String>>,
    /// JA3N fingerprints (exact or `re:`).
    pub ja3n: Option<Vec<String>>,
    /// The highest TLS version the client offered: `1.0` … `1.3`.
    pub tls_version: Option<Vec<String>>,
    /// ALPN protocols the client offered (any of them).
    pub alpn: Option<Vec<String>>,
    /// Protocol upgrades (`Connection: upgrade` + `Upgrade`) the request
    /// offers: `websocket`, or another token. A rule that allows matches
    /// when every offered protocol is listed (and lets a token other than
    /// `websocket` through); one that restricts when any is. A request
    /// that offers no upgrade never matches.
    pub upgrade: Option<Vec<String>>,
    /// What the rule does.
    pub action: ActionName,
    /// For `deny`: the status (4xx/5xx, not 407; default 403).
    pub status: Option<u16>,
    /// For `deny`: the `x-exception-id` (default `policy_denied`).
    pub reason: Option<String>,
    /// For `tag`: the tag logged in `x-tags`.
    pub tag: Option<String>,
}
