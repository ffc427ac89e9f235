//! What we hold about another member of a network: its credentials, the revocation thresholds
//! that apply to it, and when we last pushed our own credentials to it.
//! spec: vl2.md §13, §14

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use weft_wire::Identity;
use weft_wire::credential::{Capability, ChainVerdict, Com, Coo, CredentialType, Revocation, Tag};
use weft_wire::mac::Mac;
use weft_wire::netconf::NetworkConfig;

use crate::Timestamp;

/// At most this many tags, capabilities and COOs are kept per member (the config limits).
const MAX_TAGS: usize = 128;
const MAX_CAPS: usize = 128;
const MAX_COOS: usize = 16;

/// How a received credential was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// New or newer: stored.
    New,
    /// Identical to what we hold.
    Redundant,
    /// Older, revoked, for another member, or failed verification.
    Rejected,
}

/// One remote member's state on one network.
#[derive(Debug)]
pub(crate) struct Membership {
    pub(crate) com: Option<Com>,
    /// COMs with a timestamp at or below this are invalid. spec: vl2.md §13.4
    pub(crate) com_revocation_threshold: i64,
    pub(crate) tags: BTreeMap<u32, Tag>,
    pub(crate) caps: BTreeMap<u32, Capability>,
    pub(crate) coos: BTreeMap<u32, Coo>,
    /// (credential type, credential id) → threshold.
    pub(crate) revocations: HashMap<(u8, u32), i64>,
    /// Last time we pushed our credentials to this member, and our config timestamp then.
    pub(crate) last_pushed: Option<(Timestamp, i64)>,
    /// Last time we sent our multicast subscriptions to this member.
    pub(crate) last_like_sent: Timestamp,
    /// Last NEED_MEMBERSHIP_CERTIFICATE-triggered push.
    pub(crate) last_cert_request: Timestamp,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            com: None,
            com_revocation_threshold: 0,
            tags: BTreeMap::new(),
            caps: BTreeMap::new(),
            coos: BTreeMap::new(),
            revocations: HashMap::new(),
            last_pushed: None,
            // long ago: due at once
            last_like_sent: i64::MIN / 2,
            last_cert_request: i64::MIN / 2,
        }
    }
}

impl Membership {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The member passes the gate of a private network: it holds a COM newer than its
    /// revocation threshold that agrees with ours. spec: vl2.md §14
    pub(crate) fn com_agrees(&self, ours: Option<&Com>, identity: &Identity) -> bool {
        match (ours, &self.com) {
            (Some(ours), Some(theirs)) => {
                theirs.timestamp() > self.com_revocation_threshold
                    && ours.agrees_with(theirs, identity)
            }
            _ => false,
        }
    }

    /// Takes a COM issued to this member (already known to be for its network and address).
    /// spec: vl2.md §13.1 (acceptance)
    pub(crate) fn add_com(&mut self, com: Com, controller: &Identity) -> Accepted {
        if com.timestamp() <= self.com_revocation_threshold {
            return Accepted::Rejected;
        }
        if let Some(held) = &self.com {
            if com.timestamp() < held.timestamp() {
                return Accepted::Rejected;
            }
            if *held == com {
                return Accepted::Redundant;
            }
        }
        if !com.verify(controller) {
            return Accepted::Rejected;
        }
        self.com = Some(com);
        Accepted::New
    }

    fn revoked(&self, t: CredentialType, id: u32, ts: i64) -> bool {
        self.revocations
            .get(&(t as u8, id))
            .is_some_and(|th| ts <= *th)
    }

    /// Takes a tag issued to this member. spec: vl2.md §13.7
    pub(crate) fn add_tag(&mut self, tag: Tag, controller: &Identity) -> Accepted {
        if self.revoked(CredentialType::Tag, tag.id(), tag.timestamp()) {
            return Accepted::Rejected;
        }
        if let Some(held) = self.tags.get(&tag.id()) {
            if tag.timestamp() < held.timestamp() {
                return Accepted::Rejected;
            }
            if *held == tag {
                return Accepted::Redundant;
            }
        } else if self.tags.len() >= MAX_TAGS {
            return Accepted::Rejected;
        }
        if !tag.verify(controller) {
            return Accepted::Rejected;
        }
        self.tags.insert(tag.id(), tag);
        Accepted::New
    }

    /// Takes a capability issued to this member.
    pub(crate) fn add_capability(
        &mut self,
        cap: Capability,
        controller: &Identity,
        identities: &dyn Fn(weft_wire::Address) -> Option<Identity>,
    ) -> Accepted {
        if self.revoked(CredentialType::Capability, cap.id(), cap.timestamp()) {
            return Accepted::Rejected;
        }
        if let Some(held) = self.caps.get(&cap.id()) {
            if cap.timestamp() < held.timestamp() {
                return Accepted::Rejected;
            }
            if *held == cap {
                return Accepted::Redundant;
            }
        } else if self.caps.len() >= MAX_CAPS {
            return Accepted::Rejected;
        }
        if cap.verify_chain(|a| {
            if a == controller.address() {
                Some(controller.clone())
            } else {
                identities(a)
            }
        }) != ChainVerdict::Valid
        {
            return Accepted::Rejected;
        }
        self.caps.insert(cap.id(), cap);
        Accepted::New
    }

    /// Takes a certificate of ownership issued to this member.
    pub(crate) fn add_coo(&mut self, coo: Coo, controller: &Identity) -> Accepted {
        if self.revoked(CredentialType::Coo, coo.id(), coo.timestamp()) {
            return Accepted::Rejected;
        }
        if let Some(held) = self.coos.get(&coo.id()) {
            if coo.timestamp() < held.timestamp() {
                return Accepted::Rejected;
            }
            if *held == coo {
                return Accepted::Redundant;
            }
        } else if self.coos.len() >= MAX_COOS {
            return Accepted::Rejected;
        }
        if !coo.verify(controller) {
            return Accepted::Rejected;
        }
        self.coos.insert(coo.id(), coo);
        Accepted::New
    }

    /// Applies a verified revocation targeting this member. Revoking a tag, capability or COO
    /// also raises the COM threshold, as 1.14 does **[quirk]**. spec: vl2.md §13.4
    pub(crate) fn apply_revocation(&mut self, rev: &Revocation) -> Accepted {
        let threshold = rev.threshold();
        match rev.credential_type() {
            Some(CredentialType::Com) => {
                if threshold > self.com_revocation_threshold {
                    self.com_revocation_threshold = threshold;
                    Accepted::New
                } else {
                    Accepted::Redundant
                }
            }
            Some(t @ (CredentialType::Capability | CredentialType::Tag | CredentialType::Coo)) => {
                let key = (t as u8, rev.credential_id());
                let held = self.revocations.get(&key).copied().unwrap_or(i64::MIN);
                self.com_revocation_threshold = self.com_revocation_threshold.max(threshold);
                if threshold > held {
                    self.revocations.insert(key, threshold);
                    Accepted::New
                } else {
                    Accepted::Redundant
                }
            }
            _ => Accepted::Rejected,
        }
    }

    /// Whether a credential's timestamp is close enough to our config's. spec: vl2.md §13.7
    fn usable(ts: i64, ours: &NetworkConfig) -> bool {
        ts.abs_diff(ours.timestamp) <= ours.credential_time_max_delta.unsigned_abs()
    }

    /// The member's valid tag value for `id`.
    pub(crate) fn tag(&self, id: u32, ours: &NetworkConfig) -> Option<u32> {
        self.tags
            .get(&id)
            .filter(|t| Self::usable(t.timestamp(), ours))
            .map(|t| t.value())
    }

    /// The member's valid capabilities.
    pub(crate) fn capabilities<'a>(
        &'a self,
        ours: &'a NetworkConfig,
    ) -> impl Iterator<Item = &'a Capability> + 'a {
        self.caps
            .values()
            .filter(move |c| Self::usable(c.timestamp(), ours))
    }

    /// The member's valid certificates of ownership.
    pub(crate) fn valid_coos<'a>(
        &'a self,
        ours: &'a NetworkConfig,
    ) -> impl Iterator<Item = &'a Coo> + 'a {
        self.coos
            .values()
            .filter(move |c| Self::usable(c.timestamp(), ours))
    }

    /// Whether a valid COO of the member owns `ip`.
    pub(crate) fn owns_ip(&self, ip: IpAddr, ours: &NetworkConfig) -> bool {
        self.valid_coos(ours).any(|c| c.owns_ip(ip))
    }

    /// Whether a valid COO of the member owns `mac`.
    pub(crate) fn owns_mac(&self, mac: Mac, ours: &NetworkConfig) -> bool {
        self.valid_coos(ours).any(|c| c.owns_mac(mac))
    }

    /// Drops credentials that can no longer be used. spec: vl2.md §13.7
    pub(crate) fn clean(&mut self, ours: &NetworkConfig) {
        self.tags.retain(|_, t| Self::usable(t.timestamp(), ours));
        self.caps.retain(|_, c| Self::usable(c.timestamp(), ours));
        self.coos.retain(|_, c| Self::usable(c.timestamp(), ours));
    }
}
