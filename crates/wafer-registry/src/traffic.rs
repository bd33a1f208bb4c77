//! Traffic splits: requests shared among a few versions of a function by weight, for a
//! canary (a new version takes a share while the one before keeps the rest) or any split
//! an operator sets. The split is part of the record, so every node applies the same one.
//!
//! While a split stands, the record's `active` version is its oldest member: the stable
//! one, which `rollback` leaves serving everything; `promote` gives everything to the
//! newest. A plain deploy ends the split (the new version takes all).

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::record::FunctionRecord;

/// Most versions one split shares requests among.
pub const MAX_SPLIT: usize = 4;

/// How a function's requests are shared among its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Each member's share, newest version first; the percentages add up to 100.
    pub split: Vec<Share>,
    /// What keeps one client on one version, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
}

/// One version's share of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// The version.
    pub version: u32,
    /// Its percentage of the requests, 1 to 99.
    pub percent: u8,
}

/// What a client is known by, to send it to the same version every time: a request
/// header's value, or a cookie's (set by the server when the client has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sticky {
    /// The value of this request header (lower case).
    Header(String),
    /// The value of this cookie.
    Cookie(String),
}

impl Sticky {
    /// Checks the header or cookie name.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let (what, name) = match self {
            Sticky::Header(name) => ("header", name),
            Sticky::Cookie(name) => ("cookie", name),
        };
        let token = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(RegistryError::InvalidConfig(format!(
                "sticky {what} name `{name}` must be 1 to 64 letters, digits or `-_.` (an HTTP token)"
            )));
        }
        Ok(())
    }
}

impl Traffic {
    /// A split of `shares` (version, percent), checked: 2 to [`MAX_SPLIT`] distinct
    /// versions, each 1 to 99 percent, together 100. Stored newest first.
    pub fn new(mut shares: Vec<Share>, sticky: Option<Sticky>) -> Result<Self, RegistryError> {
        let invalid = |reason: String| Err(RegistryError::InvalidConfig(reason));
        if shares.len() < 2 || shares.len() > MAX_SPLIT {
            return invalid(format!(
                "a traffic split shares requests among 2 to {MAX_SPLIT} versions; {} given",
                shares.len()
            ));
        }
        shares.sort_by_key(|s| std::cmp::Reverse(s.version));
        if let Some(twice) = shares.windows(2).find(|w| w[0].version == w[1].version) {
            return invalid(format!("version {} is named twice", twice[0].version));
        }
        if let Some(share) = shares.iter().find(|s| s.percent == 0 || s.percent > 99) {
            return invalid(format!(
                "version {} is given {}%: each version of a split takes 1 to 99%",
                share.version, share.percent
            ));
        }
        let total: u32 = shares.iter().map(|s| u32::from(s.percent)).sum();
        if total != 100 {
            return invalid(format!(
                "the shares add up to {total}%; they must add up to 100%"
            ));
        }
        if let Some(sticky) = &sticky {
            sticky.validate()?;
        }
        Ok(Self {
            split: shares,
            sticky,
        })
    }

    /// The newest member (what `promote` makes active).
    pub fn newest(&self) -> u32 {
        self.split.first().map_or(0, |s| s.version)
    }

    /// The oldest member (the record's active version while the split stands).
    pub fn oldest(&self) -> u32 {
        self.split.last().map_or(0, |s| s.version)
    }
}

impl FunctionRecord {
    /// Shares the requests as `traffic` says: every member must be a version kept, with the
    /// same routes as the others (a request is routed before its version is chosen). The
    /// oldest member becomes the active version.
    pub fn set_traffic(&mut self, traffic: Traffic) -> Result<(), RegistryError> {
        let mut routes = None;
        for share in &traffic.split {
            let version = self
                .versions
                .iter()
                .find(|v| v.version == share.version)
                .ok_or_else(|| {
                    RegistryError::InvalidConfig(format!(
                        "function `{}` has no version {} (versions kept: {})",
                        self.name,
                        share.version,
                        self.versions
                            .iter()
                            .map(|v| v.version.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            let these = version.routes();
            match &routes {
                None => routes = Some((share.version, these)),
                Some((first, theirs)) if *theirs != these => {
                    let show = |r: &[crate::Route]| {
                        r.iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    return Err(RegistryError::InvalidConfig(format!(
                        "versions of a split must answer on the same routes: version {first} \
                         has {}, version {} has {}",
                        show(theirs),
                        share.version,
                        show(&these)
                    )));
                }
                Some(_) => {}
            }
        }
        self.active = traffic.oldest();
        self.traffic = Some(traffic);
        Ok(())
    }

    /// Ends a split by making its newest member active for every request.
    pub fn promote(&mut self) -> Result<u32, RegistryError> {
        let traffic = self.traffic.take().ok_or_else(|| {
            RegistryError::InvalidConfig(format!(
                "function `{}` has no traffic split to promote",
                self.name
            ))
        })?;
        self.active = traffic.newest();
        Ok(self.active)
    }

    /// The versions requests go to, with their shares: the split's, or the active version's
    /// 100%.
    pub fn shares(&self) -> Vec<Share> {
        match &self.traffic {
            Some(traffic) => traffic.split.clone(),
            None => vec![Share {
                version: self.active,
                percent: 100,
            }],
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::MAX_VERSIONS;

    fn share(version: u32, percent: u8) -> Share {
        Share { version, percent }
    }

    #[test]
    fn a_split_is_checked_and_kept_newest_first() {
        let traffic = Traffic::new(vec![share(6, 75), share(7, 25)], None).unwrap();
        assert_eq!(traffic.split, vec![share(7, 25), share(6, 75)]);
        assert_eq!((traffic.newest(), traffic.oldest()), (7, 6));
        let refused = |shares, sticky| Traffic::new(shares, sticky).unwrap_err().to_string();
        assert!(refused(vec![share(7, 100)], None).contains("2 to 4 versions"));
        assert!(refused(vec![share(7, 50), share(6, 40)], None).contains("add up to 90%"));
        assert!(refused(vec![share(7, 50), share(7, 50)], None).contains("named twice"));
        assert!(refused(vec![share(7, 100), share(6, 0)], None).contains("1 to 99%"));
        let bad = Some(Sticky::Header("x user".into()));
        assert!(refused(vec![share(7, 50), share(6, 50)], bad).contains("HTTP token"));
    }

    fn record(versions: u32) -> FunctionRecord {
        let mut record = FunctionRecord::new(&"f".parse().unwrap());
        for n in 0..versions {
            let digest = crate::Digest::of(&n.to_le_bytes());
            let config = crate::FunctionConfig {
                routes: vec!["/f".parse().unwrap()],
                ..Default::default()
            };
            record.push(digest, wafer_abi::Abi::Cgi, config, Vec::new());
        }
        record
    }

    #[test]
    fn a_canary_leaves_the_stable_version_active_until_promoted() {
        let mut record = record(2);
        record
            .set_traffic(Traffic::new(vec![share(2, 10), share(1, 90)], None).unwrap())
            .unwrap();
        assert_eq!(record.active, 1);
        assert_eq!(record.shares(), vec![share(2, 10), share(1, 90)]);
        assert_eq!(record.promote().unwrap(), 2);
        assert_eq!((record.active, record.traffic.is_none()), (2, true));
        assert!(record.promote().is_err());

        let split = Traffic::new(vec![share(3, 50), share(1, 50)], None).unwrap();
        let e = record.set_traffic(split).unwrap_err().to_string();
        assert!(e.contains("no version 3 (versions kept: 1, 2)"), "{e}");
    }

    #[test]
    fn members_of_a_split_must_share_routes_and_are_never_pruned() {
        let mut record = record(2);
        let mut other = record.versions[1].clone();
        other.version = 3;
        other.config.routes = vec!["/g".parse().unwrap()];
        record.versions.push(other);
        let split = Traffic::new(vec![share(3, 50), share(1, 50)], None).unwrap();
        let e = record.set_traffic(split).unwrap_err().to_string();
        assert!(
            e.contains("version 1 has /f, version 3 has /g")
                || e.contains("version 3 has /g, version 1 has /f"),
            "{e}"
        );

        let mut record = super::tests::record(MAX_VERSIONS as u32);
        let split = Traffic::new(vec![share(2, 50), share(1, 50)], None).unwrap();
        record.set_traffic(split).unwrap();
        record.prune();
        record.versions.push(record.versions[5].clone());
        record.prune();
        assert!(record.versions.iter().any(|v| v.version == 1));
        assert!(record.versions.iter().any(|v| v.version == 2));
        assert_eq!(record.versions.len(), MAX_VERSIONS);
    }
}
