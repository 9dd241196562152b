//! In-memory resource collections with uniqueness indexes.
//!
//! Invariants: `by_id`, `by_name` and `by_ext` always index exactly the resources in `items`;
//! `items` is keyed by an insertion sequence number so listings come out in creation order.
//! `by_name` holds the lowercased `userName` (Users) or `displayName` (Groups): both are unique
//! case-insensitively. `by_ext` holds `externalId` case-exactly.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::filter::{self, Filter, Op};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Group,
}

impl Kind {
    pub(crate) fn name_attr(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
    pub(crate) fn resource_type(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    pub(crate) fn schema(self) -> &'static str {
        match self {
            Kind::User => "urn:ietf:params:scim:schemas:core:2.0:User",
            Kind::Group => "urn:ietf:params:scim:schemas:core:2.0:Group",
        }
    }
}

pub(crate) struct Collection {
    kind: Kind,
    next_seq: u64,
    items: BTreeMap<u64, Value>,
    by_id: HashMap<String, u64>,
    by_name: HashMap<String, String>,
    by_ext: HashMap<String, String>,
}

fn str_attr<'a>(v: &'a Value, attr: &str) -> Option<&'a str> {
    filter::get_ci(v, attr).and_then(Value::as_str)
}

impl Collection {
    pub(crate) fn new(kind: Kind) -> Self {
        Collection {
            kind,
            next_seq: 0,
            items: BTreeMap::new(),
            by_id: HashMap::new(),
            by_name: HashMap::new(),
            by_ext: HashMap::new(),
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Collection::new(self.kind);
    }

    /// Which attribute of `v` collides with another resource (ignoring `self_id`), if any.
    pub(crate) fn conflict(&self, v: &Value, self_id: Option<&str>) -> Option<String> {
        let other = |id: &String| Some(id.as_str()) != self_id;
        if let Some(name) = str_attr(v, self.kind.name_attr()) {
            if self.by_name.get(&name.to_lowercase()).is_some_and(other) {
                return Some(format!(
                    "{} {name:?} is already taken",
                    self.kind.name_attr()
                ));
            }
        }
        if let Some(ext) = str_attr(v, "externalId") {
            if self.by_ext.get(ext).is_some_and(other) {
                return Some(format!("externalId {ext:?} is already taken"));
            }
        }
        None
    }

    /// Store `v` (which has an `id`); replaces an existing resource with that id in place.
    pub(crate) fn put(&mut self, v: Value) {
        let id = str_attr(&v, "id")
            .expect("stored resources have an id")
            .to_string();
        let seq = match self.remove_indexes(&id) {
            Some(seq) => seq,
            None => {
                self.next_seq += 1;
                self.next_seq
            }
        };
        if let Some(name) = str_attr(&v, self.kind.name_attr()) {
            self.by_name.insert(name.to_lowercase(), id.clone());
        }
        if let Some(ext) = str_attr(&v, "externalId") {
            self.by_ext.insert(ext.to_string(), id.clone());
        }
        self.by_id.insert(id, seq);
        self.items.insert(seq, v);
    }

    fn remove_indexes(&mut self, id: &str) -> Option<u64> {
        let seq = self.by_id.remove(id)?;
        if let Some(old) = self.items.get(&seq) {
            if let Some(name) = str_attr(old, self.kind.name_attr()) {
                self.by_name.remove(&name.to_lowercase());
            }
            if let Some(ext) = str_attr(old, "externalId") {
                self.by_ext.remove(ext);
            }
        }
        Some(seq)
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Value> {
        let seq = self.remove_indexes(id)?;
        self.items.remove(&seq)
    }

    /// The ids that can match `f` according to the indexes, or `None` when `f` needs a scan.
    fn candidates<'a>(&'a self, f: &'a Filter) -> Option<Vec<&'a str>> {
        match f {
            Filter::Cmp {
                path,
                op: Op::Eq,
                value: Value::String(s),
            } if path.sub.is_none() => {
                let id = if path.attr.eq_ignore_ascii_case(self.kind.name_attr()) {
                    self.by_name.get(&s.to_lowercase()).map(String::as_str)
                } else if path.attr.eq_ignore_ascii_case("externalId") {
                    self.by_ext.get(s).map(String::as_str)
                } else if path.attr.eq_ignore_ascii_case("id") {
                    self.by_id.contains_key(s.as_str()).then_some(s.as_str())
                } else {
                    return None;
                };
                Some(id.into_iter().collect())
            }
            Filter::Or(a, b) => {
                let mut ids = self.candidates(a)?;
                ids.extend(self.candidates(b)?);
                Some(ids)
            }
            _ => None,
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Value> {
        self.by_id.get(id).and_then(|s| self.items.get(s))
    }

    pub(crate) fn all(&self) -> Vec<Value> {
        self.items.values().cloned().collect()
    }

    /// Resources matching `f` (all when `None`), in creation order.
    pub(crate) fn select(&self, f: Option<&Filter>, all_exact: bool) -> Vec<&Value> {
        let Some(f) = f else {
            return self.items.values().collect();
        };
        // Fast paths through the indexes for the lookups a provisioning client makes: `eq` on
        // userName/displayName, externalId or id, and `or`s of those (one lookup for several
        // matching attributes). The full filter still decides, so the answer is the scan's.
        if let Some(ids) = self.candidates(f) {
            let mut seqs: Vec<u64> = ids
                .into_iter()
                .filter_map(|id| self.by_id.get(id).copied())
                .collect();
            seqs.sort_unstable();
            seqs.dedup();
            return seqs
                .iter()
                .filter_map(|seq| self.items.get(seq))
                .filter(|v| filter::matches(v, f, all_exact))
                .collect();
        }
        self.items
            .values()
            .filter(|v| filter::matches(v, f, all_exact))
            .collect()
    }
}
