//! The policy's named objects, as rules use them (`@name`): plain lists are
//! expanded into the rule's own entries, or — in `host`, `sni`, `dest` and
//! `client` — compiled once into a set shared by every rule that names the
//! object; list files (`host_file`, `dest_file`) are read once, whole, when
//! the policy is compiled.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::error::{err, LoadError, PolicyError};
use super::file::{Object, PolicyFile};
use super::hosts::{HostSet, Pattern};
use super::lists;
use super::nets::{parse_net, NetSet};
use super::rule::{HostCond, NetCond};

/// A set read from a list file.
enum Loaded {
    Hosts(Arc<HostSet>),
    Nets(Arc<NetSet>),
}

/// The objects of one policy file, with the sets compiled so far.
pub struct Objects<'a> {
    file: &'a PolicyFile,
    loaded: HashMap<&'a str, Loaded>,
    host_lists: RefCell<HashMap<String, Arc<HostSet>>>,
    net_lists: RefCell<HashMap<String, Arc<NetSet>>>,
}

impl<'a> Objects<'a> {
    /// Reads every list file the objects name (relative to `base`, the
    /// policy file's folder), so a broken file is refused even if unused.
    pub fn load(file: &'a PolicyFile, source: &str, base: &Path) -> Result<Self, LoadError> {
        let mut loaded = HashMap::new();
        let listed = |e| LoadError::List {
            policy: source.to_string(),
            source: e,
        };
        for (name, obj) in &file.objects {
            let Object::File(f) = obj else { continue };
            let set = match (&f.host_file, &f.dest_file) {
                (Some(p), None) => Loaded::Hosts(Arc::new(
                    lists::read_hosts(name, &base.join(p), &p.display().to_string())
                        .map_err(listed)?,
                )),
                (None, Some(p)) => Loaded::Nets(Arc::new(
                    lists::read_nets(name, &base.join(p), &p.display().to_string())
                        .map_err(listed)?,
                )),
                _ => {
                    return Err(err(
                        &format!("{source}: object {name:?}"),
                        "give one of host_file or dest_file",
                    )
                    .into())
                }
            };
            loaded.insert(name.as_str(), set);
        }
        Ok(Objects {
            file,
            loaded,
            host_lists: RefCell::default(),
            net_lists: RefCell::default(),
        })
    }

    fn list(&self, name: &str, place: &str) -> Result<&'a [String], PolicyError> {
        match self.file.objects.get(name) {
            Some(Object::List(l)) => Ok(l),
            Some(Object::File(_)) => Err(err(
                place,
                format!("object {name:?} is a list file: host_file goes in host or sni, dest_file in dest or client"),
            )),
            None => Err(err(place, format!("no object named {name:?}"))),
        }
    }

    /// Expands `@object` references into their entries.
    pub fn expand(&self, list: &[String], place: &str) -> Result<Vec<String>, PolicyError> {
        let mut out = Vec::new();
        for item in list {
            match item.strip_prefix('@') {
                Some(name) => out.extend(self.list(name, place)?.iter().cloned()),
                None => out.push(item.clone()),
            }
        }
        Ok(out)
    }

    /// A `host` or `sni` condition: the rule's own patterns in one set, and
    /// each object's shared set.
    pub fn hosts(&self, list: &[String], place: &str) -> Result<HostCond, PolicyError> {
        let mut own = HostSet::default();
        let mut cond = HostCond::default();
        for item in list {
            let Some(name) = item.strip_prefix('@') else {
                own.insert(Pattern::parse(item).map_err(|m| err(place, m))?, 0);
                continue;
            };
            match self.loaded.get(name) {
                Some(Loaded::Hosts(set)) => cond.sets.push(set.clone()),
                Some(Loaded::Nets(_)) => {
                    return Err(err(
                        place,
                        format!("object {name:?} is a dest_file: it holds addresses, not names"),
                    ))
                }
                None => {
                    if let Some(set) = self.host_lists.borrow().get(name) {
                        cond.sets.push(set.clone());
                        continue;
                    }
                    let set = Arc::new(host_set(self.list(name, place)?, place)?);
                    self.host_lists
                        .borrow_mut()
                        .insert(name.to_string(), set.clone());
                    cond.sets.push(set);
                }
            }
        }
        if !own.is_empty() || cond.sets.is_empty() {
            own.finish().map_err(|e| err(place, e.to_string()))?;
            cond.sets.insert(0, Arc::new(own));
        }
        Ok(cond)
    }

    /// A `dest` or `client` condition, as [`hosts`](Self::hosts) for ranges.
    pub fn nets(&self, list: &[String], place: &str) -> Result<NetCond, PolicyError> {
        let mut own = NetSet::default();
        let mut cond = NetCond::default();
        for item in list {
            let Some(name) = item.strip_prefix('@') else {
                own.insert(parse_net(item).map_err(|m| err(place, m))?, 0);
                continue;
            };
            match self.loaded.get(name) {
                Some(Loaded::Nets(set)) => cond.sets.push(set.clone()),
                Some(Loaded::Hosts(_)) => {
                    return Err(err(
                        place,
                        format!("object {name:?} is a host_file: it holds names, not addresses"),
                    ))
                }
                None => {
                    if let Some(set) = self.net_lists.borrow().get(name) {
                        cond.sets.push(set.clone());
                        continue;
                    }
                    let mut set = NetSet::default();
                    for s in self.list(name, place)? {
                        set.insert(parse_net(s).map_err(|m| err(place, m))?, 0);
                    }
                    let set = Arc::new(set);
                    self.net_lists
                        .borrow_mut()
                        .insert(name.to_string(), set.clone());
                    cond.sets.push(set);
                }
            }
        }
        if !own.is_empty() || cond.sets.is_empty() {
            cond.sets.insert(0, Arc::new(own));
        }
        Ok(cond)
    }
}

fn host_set(list: &[String], place: &str) -> Result<HostSet, PolicyError> {
    let mut set = HostSet::default();
    for s in list {
        set.insert(Pattern::parse(s).map_err(|m| err(place, m))?, 0);
    }
    set.finish().map_err(|e| err(place, e.to_string()))?;
    Ok(set)
}
