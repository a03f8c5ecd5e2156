//! Compiling a policy file into matchers: regexes built once, object
//! references expanded, list files read, CIDRs parsed, time zones looked
//! up. Every mistake is reported with its layer, rule and field (or list
//! file and line).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use http::HeaderName;
use regex::Regex;

use super::error::{err, LoadError, PolicyError};
use super::file::{self, ActionName, PolicyFile, PortSpec};
use super::fingerprint::{Field, TextCond};
use super::index::{Layer, INDEX_FROM};
use super::nets::parse_net;
use super::objects::Objects;
use super::rule::{Atom, HeaderCond, Rule, TimeCond};
use super::{Action, Denial};
use crate::directory::identity::fold;
use crate::protocol::ProtocolKind;
use crate::upgrade::Token;

struct Ctx<'a> {
    file: &'a PolicyFile,
    objects: Objects<'a>,
    combined: BTreeMap<String, Arc<Vec<Vec<Atom>>>>,
}

impl Ctx<'_> {
    fn named_headers(&self, name: &str, place: &str) -> Result<Vec<HeaderCond>, PolicyError> {
        let h = self
            .file
            .headers
            .get(name)
            .ok_or_else(|| err(place, format!("no header object named {name:?}")))?;
        header_conds(h, place)
    }
}

/// Header conditions from `name = "regex"` pairs.
pub fn header_conds(
    map: &BTreeMap<String, String>,
    place: &str,
) -> Result<Vec<HeaderCond>, PolicyError> {
    map.iter()
        .map(|(name, re)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| err(place, format!("bad header name {name:?}")))?;
            let re = Regex::new(re).map_err(|e| err(place, format!("bad regex {re:?}: {e}")))?;
            Ok(HeaderCond { name, re })
        })
        .collect()
}

fn lower(v: Vec<String>) -> Vec<String> {
    v.into_iter().map(|s| s.to_lowercase()).collect()
}

/// Names (users, groups, realms, categories) are compared as their [`fold`]s.
fn folded(v: Vec<String>) -> Vec<String> {
    v.iter().map(|s| fold(s)).collect()
}

/// Compiles a whole policy file; list files are read relative to `base`.
/// Nothing is partially applied: it is all or an error.
pub fn compile(file: &PolicyFile, source: &str, base: &Path) -> Result<Vec<Layer>, LoadError> {
    compile_indexed(file, source, base, INDEX_FROM)
}

/// [`compile`], indexing layers of at least `index_from` rules (tests index every layer).
pub fn compile_indexed(
    file: &PolicyFile,
    source: &str,
    base: &Path,
    index_from: usize,
) -> Result<Vec<Layer>, LoadError> {
    let mut ctx = Ctx {
        file,
        objects: Objects::load(file, source, base)?,
        combined: BTreeMap::new(),
    };
    for (name, c) in &file.combined {
        let place = format!("{source}: combined {name:?}");
        let mut all = Vec::new();
        for group in &c.all {
            let mut any = Vec::new();
            for r in group {
                let (kind, value) = r
                    .split_once(':')
                    .ok_or_else(|| err(&place, format!("{r:?} is not kind:value")))?;
                let values = ctx.objects.expand(&[value.to_string()], &place)?;
                for v in values {
                    any.push(match kind {
                        "user" => Atom::User(fold(&v)),
                        "group" => Atom::Group(fold(&v)),
                        "realm" => Atom::Realm(fold(&v)),
                        "client" => Atom::Client(parse_net(&v).map_err(|m| err(&place, m))?),
                        "method" => Atom::Method(v.to_ascii_uppercase()),
                        "header" => Atom::Header(ctx.named_headers(&v, &place)?),
                        k => {
                            return Err(err(
                                &place,
                                format!(
                                "unknown kind {k:?} (user, group, realm, client, method, header)"
                            ),
                            )
                            .into())
                        }
                    });
                }
            }
            if any.is_empty() {
                return Err(err(&place, "an empty alternative can never match").into());
            }
            all.push(any);
        }
        ctx.combined.insert(name.clone(), Arc::new(all));
    }
    let mut layers = Vec::new();
    let mut names = std::collections::HashSet::new();
    for layer in &file.layers {
        let mut rules = Vec::new();
        for rule in &layer.rules {
            let place = format!("{source}: layer {:?}, rule {:?}", layer.name, rule.name);
            if !names.insert(rule.name.clone()) {
                return Err(
                    err(&place, "rule names must be unique (the log names the rule)").into(),
                );
            }
            let r = compile_rule(&ctx, rule, &place)?;
            if layer.kind == file::LayerKind::Authentication {
                if r.needs_identity() || r.needs_detection() {
                    return Err(err(
                        &place,
                        "an authentication layer cannot use identity or detection conditions",
                    )
                    .into());
                }
                if !matches!(
                    r.action,
                    Action::Authenticate | Action::NoAuthenticate | Action::Guest | Action::Tag
                ) {
                    return Err(err(&place, "field `action`: an authentication layer takes authenticate, no-authenticate or guest").into());
                }
            } else if matches!(
                r.action,
                Action::Authenticate | Action::NoAuthenticate | Action::Guest
            ) {
                return Err(err(&place, "field `action`: (no-)authenticate and guest belong in a layer with kind = \"authentication\"").into());
            }
            rules.push(r);
        }
        layers.push(Layer::new(
            layer.name.as_str().into(),
            layer.kind,
            rules,
            index_from,
        ));
    }
    Ok(layers)
}

fn compile_rule(ctx: &Ctx<'_>, r: &file::Rule, place: &str) -> Result<Rule, PolicyError> {
    let field = |f: &str| format!("{place}, field `{f}`");
    let list = |v: &Option<Vec<String>>, f: &str| -> Result<Option<Vec<String>>, PolicyError> {
        v.as_ref()
            .map(|v| ctx.objects.expand(v, &field(f)))
            .transpose()
    };
    let hosts = |v: &Option<Vec<String>>, f: &str| {
        v.as_ref()
            .map(|v| ctx.objects.hosts(v, &field(f)))
            .transpose()
    };
    let nets = |v: &Option<Vec<String>>, f: &str| {
        v.as_ref()
            .map(|v| ctx.objects.nets(v, &field(f)))
            .transpose()
    };
    let mut headers = match &r.header {
        Some(h) => header_conds(h, &field("header"))?,
        None => Vec::new(),
    };
    for name in r.headers.iter().flatten() {
        headers.extend(ctx.named_headers(name, &field("headers"))?);
    }
    let sources =
        r.source
            .as_ref()
            .map(|names| {
                names
                    .iter()
                    .map(|n| {
                        ctx.combined.get(n).cloned().ok_or_else(|| {
                            err(&field("source"), format!("no combined object {n:?}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
    let ports = r
        .port
        .as_ref()
        .map(|ports| {
            ports
                .iter()
                .map(|p| port_range(p, &field("port")))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let protocols = list(&r.protocol, "protocol")?
        .map(|names| {
            lower(names)
                .iter()
                .map(|p| {
                    ProtocolKind::from_name(p).ok_or_else(|| {
                        let one_of = ProtocolKind::names();
                        err(&field("protocol"), format!("{p:?}: one of {one_of}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let mut fingerprints = Vec::new();
    for (values, name, f) in [
        (&r.ja4, "ja4", Field::Ja4),
        (&r.ja3n, "ja3n", Field::Ja3n),
        (&r.tls_version, "tls_version", Field::TlsVersion),
        (&r.alpn, "alpn", Field::Alpn),
    ] {
        if let Some(values) = list(values, name)? {
            let cond = TextCond::compile(f, &values).map_err(|m| err(&field(name), m))?;
            fingerprints.push((f, cond));
        }
    }
    let urls = list(&r.url, "url")?
        .map(|v| regex::RegexSet::new(v).map_err(|e| err(&field("url"), format!("bad regex: {e}"))))
        .transpose()?;
    let upgrades = list(&r.upgrade, "upgrade")?
        .map(|names| {
            names
                .iter()
                .map(|n| {
                    Token::from_name(n).ok_or_else(|| {
                        err(
                            &field("upgrade"),
                            format!("{n:?} is not a protocol name (like \"websocket\")"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let action = match r.action {
        ActionName::Allow => Action::Allow,
        ActionName::Tunnel => Action::Tunnel,
        ActionName::Detect => Action::Detect,
        ActionName::Intercept => Action::Intercept,
        ActionName::Bypass => Action::Bypass,
        ActionName::Authenticate => Action::Authenticate,
        ActionName::NoAuthenticate => Action::NoAuthenticate,
        ActionName::Guest => Action::Guest,
        ActionName::Tag => Action::Tag,
        ActionName::Deny => Action::Deny(
            Denial::new(r.status, r.reason.as_deref())
                .map_err(|bad| err(&field(bad.field()), bad.message()))?,
        ),
    };
    if r.action != ActionName::Deny && (r.status.is_some() || r.reason.is_some()) {
        return Err(err(
            &field("status"),
            "status and reason go with action = \"deny\"",
        ));
    }
    if r.action == ActionName::Tag && r.tag.is_none() {
        return Err(err(&field("tag"), "action = \"tag\" needs a tag"));
    }
    Ok(Rule {
        name: r.name.as_str().into(),
        authenticated: r.authenticated,
        users: list(&r.user, "user")?.map(folded),
        groups: list(&r.group, "group")?.map(folded),
        realms: list(&r.realm, "realm")?.map(folded),
        auth_schemes: list(&r.auth_scheme, "auth_scheme")?
            .map(|v| auth_schemes(v, &field("auth_scheme")))
            .transpose()?,
        clients: nets(&r.client, "client")?,
        methods: list(&r.method, "method")?
            .map(|v| v.into_iter().map(|m| m.to_ascii_uppercase()).collect()),
        hosts: hosts(&r.host, "host")?,
        dests: nets(&r.dest, "dest")?,
        ports,
        headers,
        sources,
        categories: list(&r.category, "category")?.map(folded),
        time: r
            .time
            .as_ref()
            .map(|t| time_cond(t, &field("time")))
            .transpose()?,
        protocols,
        snis: hosts(&r.sni, "sni")?,
        fingerprints,
        urls,
        upgrades,
        action,
        tag: r.tag.as_deref().map(Into::into),
    })
}

/// `auth_scheme` values: the schemes the log can say, lowercase.
fn auth_schemes(v: Vec<String>, place: &str) -> Result<Vec<String>, PolicyError> {
    lower(v)
        .into_iter()
        .map(|s| {
            if crate::auth::SCHEMES.contains(&s.as_str()) {
                Ok(s)
            } else {
                let one_of = crate::auth::SCHEMES.join(", ");
                Err(err(place, format!("{s:?}: one of {one_of}")))
            }
        })
        .collect()
}

fn port_range(p: &PortSpec, place: &str) -> Result<(u16, u16), PolicyError> {
    let bad = || {
        err(
            place,
            format!("{p:?}: a port or a range like \"8000-8100\""),
        )
    };
    match p {
        PortSpec::One(0) => Err(bad()),
        PortSpec::One(n) => Ok((*n, *n)),
        PortSpec::Text(t) => {
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let a: u16 = a.trim().parse().map_err(|_| bad())?;
            let b: u16 = b.trim().parse().map_err(|_| bad())?;
            if a == 0 || a > b {
                return Err(bad());
            }
            Ok((a, b))
        }
    }
}

fn time_cond(t: &file::TimeWindow, place: &str) -> Result<TimeCond, PolicyError> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut days = 0u8;
    for d in &t.days {
        let i = DAYS
            .iter()
            .position(|x| d.to_ascii_lowercase().starts_with(x))
            .ok_or_else(|| err(place, format!("day {d:?}: mon..sun")))?;
        days |= 1 << i;
    }
    let parse = |s: &Option<String>| -> Result<Option<jiff::civil::Time>, PolicyError> {
        s.as_ref()
            .map(|s| {
                jiff::civil::Time::strptime("%H:%M", s)
                    .map_err(|_| err(place, format!("{s:?}: HH:MM")))
            })
            .transpose()
    };
    let tz = jiff::tz::db()
        .get(&t.tz)
        .map_err(|e| err(place, format!("time zone {:?}: {e}", t.tz)))?;
    Ok(TimeCond {
        days,
        from: parse(&t.from)?,
        to: parse(&t.to)?,
        tz,
    })
}
