//! GTID positions (MariaDB) and GTID sets (MySQL): parse, print, compare, union, subtract.
//!
//! Pure values: no I/O. The two flavors track replication state differently and are kept as two
//! types rather than one abstraction that hides the difference:
//!
//! * MariaDB: a *position* is at most one `domain-server-seq` per replication domain; "has A
//!   reached B" is decided per domain by sequence number.
//! * MySQL: a *set* of transactions `uuid[:tag]:1-5:7`; "has A reached B" is set inclusion.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GTID '{input}': {reason}")]
pub struct GtidError {
    pub input: String,
    pub reason: String,
}

fn gtid_err(input: &str, reason: impl Into<String>) -> GtidError {
    GtidError { input: input.chars().take(200).collect(), reason: reason.into() }
}

/// The largest transaction or sequence number a server prints (both flavors keep them signed).
pub const MAX_TRANSACTION: u64 = i64::MAX as u64;

/// A number as a server prints it: decimal digits only (no sign, no spaces, not empty), at most
/// `max`. Rust's parser alone would take `+5`.
fn server_number(text: &str, max: u64) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|n| *n <= max)
}

// ---------------------------------------------------------------------------------------------
// MariaDB

/// One MariaDB GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// A MariaDB GTID position such as `@@gtid_current_pos`: the last GTID of each domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidPos {
    domains: BTreeMap<u32, MariaGtid>,
}

impl GtidPos {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &MariaGtid> {
        self.domains.values()
    }

    pub fn get(&self, domain: u32) -> Option<&MariaGtid> {
        self.domains.get(&domain)
    }

    /// True when every domain of `target` has been reached (same or higher sequence) by `self`.
    pub fn reached(&self, target: &GtidPos) -> bool {
        target.domains.iter().all(|(d, t)| self.domains.get(d).is_some_and(|s| s.seq >= t.seq))
    }

    /// The domains in which `self` is ahead of `other` (or that `other` lacks): on a replica
    /// compared with its master, these are transactions the master never had (errant).
    pub fn ahead_of(&self, other: &GtidPos) -> GtidPos {
        let domains = self
            .domains
            .iter()
            .filter(|(d, g)| other.domains.get(d).is_none_or(|o| g.seq > o.seq))
            .map(|(d, g)| (*d, *g))
            .collect();
        GtidPos { domains }
    }

    /// Per domain, the more advanced of the two.
    pub fn union(&self, other: &GtidPos) -> GtidPos {
        let mut domains = self.domains.clone();
        for (d, g) in &other.domains {
            match domains.get(d) {
                Some(mine) if mine.seq >= g.seq => {}
                _ => {
                    domains.insert(*d, *g);
                }
            }
        }
        GtidPos { domains }
    }

    /// Sum of sequence numbers over all domains: a total order good enough to rank replicas of
    /// the same master by how far they have executed.
    pub fn progress(&self) -> u128 {
        self.domains.values().map(|g| g.seq as u128).sum()
    }
}

impl FromStr for GtidPos {
    type Err = GtidError;
    fn from_str(s: &str) -> Result<Self, GtidError> {
        let mut domains = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.splitn(3, '-');
            let (d, sv, q) = match (it.next(), it.next(), it.next()) {
                (Some(d), Some(sv), Some(q)) => (d, sv, q),
                _ => return Err(gtid_err(s, format!("'{part}' is not domain-server-seq"))),
            };
            let num = |x: &str, what: &str, max: u64| -> Result<u64, GtidError> {
                server_number(x, max)
                    .ok_or_else(|| gtid_err(s, format!("'{x}' is not a {what} number (digits only, at most {max})")))
            };
            let domain = num(d, "domain", u32::MAX as u64)? as u32;
            let server = num(sv, "server", u32::MAX as u64)? as u32;
            let seq = num(q, "sequence", MAX_TRANSACTION)?;
            if domains.insert(domain, MariaGtid { domain, server, seq }).is_some() {
                return Err(gtid_err(s, format!("domain {domain} appears twice")));
            }
        }
        Ok(GtidPos { domains })
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.domains.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}-{}-{}", g.domain, g.server, g.seq)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// MySQL

/// The source part of a MySQL GTID: the server uuid and, from MySQL 8.3, an optional tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GtidSource {
    pub uuid: String,
    pub tag: Option<String>,
}

/// A MySQL GTID set such as `@@gtid_executed`: per source, sorted, disjoint, non-adjacent
/// inclusive intervals of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidSet {
    sets: BTreeMap<GtidSource, Vec<(u64, u64)>>,
}

fn normalize(mut iv: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    iv.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(iv.len());
    for (a, b) in iv {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_tag(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl GtidSet {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// A set of one source's intervals (inclusive, any order, overlapping allowed), for values a
    /// server would not print (the tests of the top of the range).
    pub fn from_intervals(source: GtidSource, intervals: Vec<(u64, u64)>) -> GtidSet {
        let iv = normalize(intervals.into_iter().filter(|(a, b)| a <= b).collect());
        let sets = if iv.is_empty() { BTreeMap::new() } else { BTreeMap::from([(source, iv)]) };
        GtidSet { sets }
    }

    pub fn union(&self, other: &GtidSet) -> GtidSet {
        let mut sets = self.sets.clone();
        for (src, iv) in &other.sets {
            let entry = sets.entry(src.clone()).or_default();
            entry.extend_from_slice(iv);
            *entry = normalize(std::mem::take(entry));
        }
        GtidSet { sets }
    }

    /// Transactions in `self` that are not in `other`.
    pub fn subtract(&self, other: &GtidSet) -> GtidSet {
        let mut sets = BTreeMap::new();
        for (src, mine) in &self.sets {
            let Some(theirs) = other.sets.get(src) else {
                sets.insert(src.clone(), mine.clone());
                continue;
            };
            let mut left = Vec::new();
            for &(first, b) in mine {
                // The first transaction of [first, b] not yet covered; None once all of it is
                // (kept as an Option so that an interval ending at u64::MAX needs no b + 1).
                let mut next = Some(first);
                for &(c, d) in theirs {
                    let Some(a) = next else { break };
                    if d < a || c > b {
                        continue;
                    }
                    if c > a {
                        left.push((a, c - 1));
                    }
                    next = if d >= b { None } else { Some(d + 1) };
                }
                if let Some(a) = next {
                    left.push((a, b));
                }
            }
            if !left.is_empty() {
                sets.insert(src.clone(), normalize(left));
            }
        }
        GtidSet { sets }
    }

    /// True when every transaction of `other` is in `self`.
    pub fn contains(&self, other: &GtidSet) -> bool {
        other.subtract(self).is_empty()
    }

    /// The set without the transactions of server `uuid` (any tag).
    pub fn without_uuid(&self, uuid: &str) -> GtidSet {
        let sets = self
            .sets
            .iter()
            .filter(|(s, _)| !s.uuid.eq_ignore_ascii_case(uuid))
            .map(|(s, v)| (s.clone(), v.clone()))
            .collect();
        GtidSet { sets }
    }

    /// Number of transactions in the set.
    pub fn count(&self) -> u128 {
        self.sets.values().flatten().map(|(a, b)| (b - a) as u128 + 1).sum()
    }
}

impl FromStr for GtidSet {
    type Err = GtidError;
    fn from_str(s: &str) -> Result<Self, GtidError> {
        let mut sets: BTreeMap<GtidSource, Vec<(u64, u64)>> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut fields = part.split(':').map(str::trim);
            let uuid = fields.next().unwrap_or_default().to_ascii_lowercase();
            if !is_uuid(&uuid) {
                return Err(gtid_err(s, format!("'{uuid}' is not a server uuid")));
            }
            let mut src = GtidSource { uuid: uuid.clone(), tag: None };
            let mut saw_interval = false;
            for f in fields {
                if is_tag(f) {
                    src = GtidSource { uuid: uuid.clone(), tag: Some(f.to_ascii_lowercase()) };
                    continue;
                }
                let (a, b) = match f.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (f, f),
                };
                let parse = |x: &str| {
                    server_number(x, MAX_TRANSACTION).ok_or_else(|| {
                        gtid_err(s, format!("'{f}' is not an interval (digits only, 1 to {MAX_TRANSACTION})"))
                    })
                };
                let (a, b) = (parse(a)?, parse(b)?);
                if a == 0 || b < a {
                    return Err(gtid_err(s, format!("'{f}' is not a valid interval")));
                }
                sets.entry(src.clone()).or_default().push((a, b));
                saw_interval = true;
            }
            if !saw_interval {
                return Err(gtid_err(s, format!("'{part}' has no transaction interval")));
            }
        }
        for iv in sets.values_mut() {
            *iv = normalize(std::mem::take(iv));
        }
        Ok(GtidSet { sets })
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Group by uuid: `uuid:1-5:tag:1-2`, as MySQL prints it.
        let mut first_uuid = true;
        let mut current: Option<&str> = None;
        for (src, iv) in &self.sets {
            if current != Some(src.uuid.as_str()) {
                if !first_uuid {
                    f.write_str(",\n")?;
                }
                first_uuid = false;
                current = Some(&src.uuid);
                f.write_str(&src.uuid)?;
            }
            if let Some(tag) = &src.tag {
                write!(f, ":{tag}")?;
            }
            for (a, b) in iv {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(GtidPos);
serde_as_string!(GtidSet);

/// The union of positions in text form, MariaDB positions (`mariadb`) or MySQL GTID sets: what a
/// server must have executed to have executed every one of them.
pub fn union_text(mariadb: bool, positions: &[String]) -> Result<String, GtidError> {
    if mariadb {
        let mut all = GtidPos::default();
        for p in positions {
            all = all.union(&p.parse()?);
        }
        Ok(all.to_string())
    } else {
        let mut all = GtidSet::default();
        for p in positions {
            all = all.union(&p.parse()?);
        }
        Ok(all.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "4e11fa47-71ca-11e1-9e33-c80aa9429562";

    #[test]
    fn mariadb_positions() {
        let a: GtidPos = "0-1-100,1-2-5".parse().unwrap();
        let b: GtidPos = "0-1-90".parse().unwrap();
        assert!(a.reached(&b));
        assert!(!b.reached(&a));
        assert!(a.reached(&GtidPos::default()));
        assert_eq!(a.to_string(), "0-1-100,1-2-5");
        assert_eq!(a.ahead_of(&b).to_string(), "0-1-100,1-2-5");
        assert_eq!(b.ahead_of(&a).to_string(), "");
        assert_eq!(b.union(&a), a);
        assert_eq!("".parse::<GtidPos>().unwrap(), GtidPos::default());
    }

    #[test]
    fn mariadb_bad_positions() {
        for bad in ["0-1", "x-1-2", "0-1-2,0-1-3", "0-1-2-3", "99999999999-1-1"] {
            let e = bad.parse::<GtidPos>().unwrap_err();
            assert!(e.to_string().contains("invalid GTID"), "{bad}: {e}");
        }
    }

    #[test]
    fn mysql_sets() {
        let a: GtidSet = format!("{U1}:1-5:7, {U2}:1-3").parse().unwrap();
        let b: GtidSet = format!("{U1}:1-7").parse().unwrap();
        assert_eq!(a.subtract(&b).to_string(), format!("{U2}:1-3"));
        assert_eq!(b.subtract(&a).to_string(), format!("{U1}:6"));
        assert!(a.union(&b).contains(&a));
        assert_eq!(a.union(&b).to_string(), format!("{U1}:1-7,\n{U2}:1-3"));
        assert!(!a.contains(&b));
        assert_eq!(a.count(), 9);
        let tagged: GtidSet = format!("{U1}:1-3:blue:1-2").parse().unwrap();
        assert_eq!(tagged.to_string(), format!("{U1}:1-3:blue:1-2"));
        assert_eq!(tagged.count(), 5);
    }

    #[test]
    fn union_of_positions() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(union_text(true, &p(&["0-1-5,1-2-9", "0-1-7", ""])).unwrap(), "0-1-7,1-2-9");
        assert_eq!(union_text(true, &[]).unwrap(), "");
        let u = union_text(false, &p(&[&format!("{U1}:1-5"), &format!("{U1}:4-9,{U2}:1-2")])).unwrap();
        assert_eq!(u, format!("{U1}:1-9,\n{U2}:1-2"), "as MySQL prints a set");
        assert!(union_text(true, &p(&["nope"])).is_err());
    }

    #[test]
    fn mysql_bad_sets() {
        for bad in ["nope:1-2".to_string(), U1.to_string(), format!("{U1}:5-2"), format!("{U1}:0"), format!("{U1}:a-b")]
        {
            assert!(bad.parse::<GtidSet>().is_err(), "{bad}");
        }
    }

    /// Numbers servers never print are parse errors naming the text: signs, spaces inside,
    /// empty numbers, above 2^63-1.
    #[test]
    fn numbers_servers_never_print() {
        let top = MAX_TRANSACTION;
        for bad in [
            format!("{U1}:+5"),
            format!("{U1}:1-+5"),
            format!("{U1}:-5"),
            format!("{U1}:1-"),
            format!("{U1}:{}", top + 1),
            format!("{U1}:1-{}", u64::MAX),
            format!("{U1}:1 2"),
        ] {
            let e = bad.parse::<GtidSet>().expect_err(&bad);
            assert!(e.to_string().contains("is not an interval"), "{bad}: {e}");
        }
        assert_eq!(format!("{U1}:1-{top}").parse::<GtidSet>().unwrap().count(), top as u128);
        for bad in
            ["0-1-+5", "+0-1-5", "0-+1-5", "0-1-", "0--5", "0-1-9223372036854775808", "0-4294967296-1", " 0-1-5x"]
        {
            let e = bad.parse::<GtidPos>().expect_err(bad);
            assert!(e.to_string().contains("invalid GTID"), "{bad}: {e}");
        }
        assert_eq!("0-1-9223372036854775807".parse::<GtidPos>().unwrap().get(0).unwrap().seq, top);
        // Whitespace between entries is what servers print (`,\n`): accepted.
        assert!(format!("{U1}:1-5,\n{U2}:3").parse::<GtidSet>().is_ok());
        assert!("0-1-5,\n1-2-3".parse::<GtidPos>().is_ok());
    }

    /// At the very top of the range (values only a constructed set can hold) a set minus itself
    /// is empty and a set contains itself.
    #[test]
    fn top_of_the_range() {
        let src = GtidSource { uuid: U1.to_string(), tag: None };
        for iv in [vec![(1, u64::MAX)], vec![(u64::MAX, u64::MAX)], vec![(5, 9), (u64::MAX - 3, u64::MAX)]] {
            let a = GtidSet::from_intervals(src.clone(), iv.clone());
            assert!(a.subtract(&a).is_empty(), "{iv:?}: {}", a.subtract(&a));
            assert!(a.contains(&a), "{iv:?}");
        }
        let all = GtidSet::from_intervals(src.clone(), vec![(1, u64::MAX)]);
        let top = GtidSet::from_intervals(src.clone(), vec![(u64::MAX - 1, u64::MAX)]);
        assert_eq!(all.subtract(&top), GtidSet::from_intervals(src.clone(), vec![(1, u64::MAX - 2)]));
        assert!(all.contains(&top) && !top.contains(&all));
        assert_eq!(top.subtract(&all), GtidSet::default());
    }

    fn arb_set() -> impl Strategy<Value = GtidSet> {
        let src = prop_oneof![Just(U1.to_string()), Just(U2.to_string())];
        proptest::collection::vec((src, 1u64..50, 0u64..10), 0..8).prop_map(|v| {
            let s: Vec<String> = v.into_iter().map(|(u, a, l)| format!("{u}:{a}-{}", a + l)).collect();
            s.join(",").parse().unwrap()
        })
    }

    fn arb_pos() -> impl Strategy<Value = GtidPos> {
        proptest::collection::btree_map(0u32..4, (1u32..5, 0u64..1000), 0..4).prop_map(|m| {
            let s: Vec<String> = m.into_iter().map(|(d, (sv, q))| format!("{d}-{sv}-{q}")).collect();
            s.join(",").parse().unwrap()
        })
    }

    /// Intervals near 1 and near the top (2^63-1) for two sources: small enough to hold as a
    /// plain set of (source, number), the model the algebra is checked against.
    fn arb_model_set() -> impl Strategy<Value = GtidSet> {
        let top = MAX_TRANSACTION;
        let start = prop_oneof![1u64..40, (top - 40)..=top];
        let src = prop_oneof![Just(U1.to_string()), Just(U2.to_string())];
        proptest::collection::vec((src, start, 0u64..6, any::<bool>()), 0..6).prop_map(move |v| {
            let s: Vec<String> = v
                .into_iter()
                .map(|(u, a, l, upper)| {
                    let b = a.saturating_add(l).min(top);
                    let u = if upper { u.to_ascii_uppercase() } else { u };
                    if a == b {
                        format!("{u}:{a}")
                    } else {
                        format!("{u}:{a}-{b}")
                    }
                })
                .collect();
            s.join(",\n").parse().unwrap()
        })
    }

    fn model(s: &GtidSet) -> std::collections::BTreeSet<(String, u64)> {
        s.sets
            .iter()
            .flat_map(|(src, iv)| iv.iter().flat_map(move |(a, b)| (*a..=*b).map(move |n| (src.uuid.clone(), n))))
            .collect()
    }

    proptest! {
        #[test]
        fn set_algebra_matches_the_model(a in arb_model_set(), b in arb_model_set()) {
            let (ma, mb) = (model(&a), model(&b));
            prop_assert_eq!(a.to_string().parse::<GtidSet>().unwrap(), a.clone());
            prop_assert_eq!(model(&a.union(&b)), ma.union(&mb).cloned().collect());
            prop_assert_eq!(model(&a.subtract(&b)), ma.difference(&mb).cloned().collect());
            prop_assert_eq!(a.contains(&b), mb.is_subset(&ma));
            prop_assert_eq!(a.count(), ma.len() as u128);
            prop_assert!(a.subtract(&a).is_empty() && a.contains(&a));
        }

        #[test]
        fn set_roundtrip(a in arb_set()) {
            prop_assert_eq!(a.to_string().parse::<GtidSet>().unwrap(), a);
        }

        #[test]
        fn set_algebra(a in arb_set(), b in arb_set()) {
            let u = a.union(&b);
            prop_assert!(u.contains(&a) && u.contains(&b));
            let d = a.subtract(&b);
            prop_assert!(a.contains(&d));
            prop_assert!(d.subtract(&b) == d); // nothing of b left in a - b
            prop_assert_eq!(d.union(&b), u.clone());
            prop_assert_eq!(d.count() + a.subtract(&d).count(), a.count());
        }

        #[test]
        fn pos_roundtrip_and_order(a in arb_pos(), b in arb_pos()) {
            prop_assert_eq!(a.to_string().parse::<GtidPos>().unwrap(), a.clone());
            let u = a.union(&b);
            prop_assert!(u.reached(&a) && u.reached(&b));
            prop_assert_eq!(a.ahead_of(&b).is_empty(), b.reached(&a));
        }

        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = s.parse::<GtidSet>();
            let _ = s.parse::<GtidPos>();
        }
    }
}
