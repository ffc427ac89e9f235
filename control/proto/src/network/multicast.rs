//! Multicast membership: who subscribes to which group, and outbound multicasts waiting for
//! more recipients. spec: vl2.md §16

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand_core::RngCore;
use weft_wire::Address;
use weft_wire::verbs::vl2::MulticastGroup;

use crate::Timestamp;

/// A member entry lives this long after its last LIKE. spec: vl2.md §16.1
pub(crate) const LIKE_EXPIRE_MS: i64 = 600_000;
/// LIKE announcement period.
pub(crate) const LIKE_PERIOD_MS: i64 = 60_000;
/// Minimum interval between explicit GATHERs for one group.
pub(crate) const GATHER_INTERVAL_MS: i64 = 60_000;
/// Outbound multicasts wait this long for more recipients.
pub(crate) const TX_QUEUE_MS: i64 = 5_000;
/// Queued outbound multicasts per group.
pub(crate) const TX_QUEUE_PER_GROUP: usize = 32;
/// Groups learned behind a bridge expire after this long.
pub(crate) const BRIDGED_GROUP_EXPIRE_MS: i64 = 1_200_000;
/// Most members remembered per group (memory bound; weft-specific).
const MAX_MEMBERS_PER_GROUP: usize = 4096;
/// Most groups remembered per network (memory bound; weft-specific).
const MAX_GROUPS: usize = 8192;

/// An outbound multicast waiting for recipients learned from GATHER results or LIKEs.
#[derive(Debug)]
pub(crate) struct PendingMulticast {
    pub(crate) since: Timestamp,
    /// The MULTICAST_FRAME payload (without the implicit gather limit; rebuilt per send).
    pub(crate) frame: OutboundFrame,
    pub(crate) limit: usize,
    pub(crate) sent_to: Vec<Address>,
}

/// What an outbound multicast carries.
#[derive(Debug, Clone)]
pub(crate) struct OutboundFrame {
    pub(crate) group: MulticastGroup,
    pub(crate) source_mac: Option<weft_wire::mac::Mac>,
    pub(crate) ethertype: u16,
    pub(crate) payload: Vec<u8>,
}

/// The per-network multicast state.
#[derive(Debug, Default)]
pub(crate) struct MulticastState {
    /// group → member → last LIKE (or gather result) time. spec: vl2.md §16.3
    pub(crate) members: HashMap<MulticastGroup, BTreeMap<Address, Timestamp>>,
    /// Groups our own host subscribes to (from the driver).
    pub(crate) subscriptions: Vec<MulticastGroup>,
    /// Groups learned from hosts behind us (bridges only) → last seen.
    pub(crate) bridged: HashMap<MulticastGroup, Timestamp>,
    /// Last explicit GATHER per group.
    pub(crate) last_gather: HashMap<MulticastGroup, Timestamp>,
    pub(crate) pending: HashMap<MulticastGroup, VecDeque<PendingMulticast>>,
}

impl MulticastState {
    /// Adds or refreshes a member of a group (never ourselves; the caller checks).
    pub(crate) fn add(&mut self, now: Timestamp, group: MulticastGroup, member: Address) -> bool {
        if !self.members.contains_key(&group) && self.members.len() >= MAX_GROUPS {
            return false;
        }
        let m = self.members.entry(group).or_default();
        if !m.contains_key(&member) && m.len() >= MAX_MEMBERS_PER_GROUP {
            return false;
        }
        m.insert(member, now).is_none()
    }

    pub(crate) fn remove(&mut self, group: MulticastGroup, member: Address) {
        if let Some(m) = self.members.get_mut(&group) {
            m.remove(&member);
        }
    }

    /// Members of a group, randomly permuted.
    pub(crate) fn shuffled(&self, group: &MulticastGroup, rng: &mut impl RngCore) -> Vec<Address> {
        let mut v: Vec<Address> = self
            .members
            .get(group)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        for i in (1..v.len()).rev() {
            let j = (rng.next_u32() as usize) % (i + 1);
            v.swap(i, j);
        }
        v
    }

    /// Whether we (or hosts behind us) subscribe to `group`.
    pub(crate) fn subscribed(&self, group: &MulticastGroup, broadcast: bool) -> bool {
        (broadcast && *group == MulticastGroup::BROADCAST)
            || self.subscriptions.contains(group)
            || self.bridged.contains_key(group)
    }

    /// Everything we announce: own ∪ bridged ∪ broadcast (if enabled), sorted, unique.
    /// spec: vl2.md §16.2
    pub(crate) fn all_groups(&self, broadcast: bool) -> Vec<MulticastGroup> {
        let mut v: Vec<MulticastGroup> = self.subscriptions.clone();
        v.extend(self.bridged.keys().copied());
        if broadcast {
            v.push(MulticastGroup::BROADCAST);
        }
        v.sort();
        v.dedup();
        v
    }

    /// Purges expired members, bridged groups and queued multicasts.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        for m in self.members.values_mut() {
            m.retain(|_, t| now - *t < LIKE_EXPIRE_MS);
        }
        self.members.retain(|_, m| !m.is_empty());
        self.bridged
            .retain(|_, t| now - *t < BRIDGED_GROUP_EXPIRE_MS);
        for q in self.pending.values_mut() {
            q.retain(|p| now - p.since < TX_QUEUE_MS && p.sent_to.len() < p.limit);
        }
        self.pending.retain(|_, q| !q.is_empty());
        self.last_gather
            .retain(|_, t| now - *t < GATHER_INTERVAL_MS * 2);
    }

    /// Queues an outbound multicast, dropping the oldest of its group beyond the limit.
    pub(crate) fn enqueue(&mut self, p: PendingMulticast) {
        let q = self.pending.entry(p.frame.group).or_default();
        if q.len() >= TX_QUEUE_PER_GROUP {
            q.pop_front();
        }
        q.push_back(p);
    }
}

/// What a gather answer is about and for whom.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatherQuery {
    pub(crate) group: MulticastGroup,
    /// Our address (listed first when `me_subscribed`).
    pub(crate) me: Address,
    pub(crate) me_subscribed: bool,
    /// Never listed.
    pub(crate) requester: Address,
    pub(crate) limit: usize,
    pub(crate) max_bytes: usize,
}

/// Builds gather results: `total (4) | count (2) | addresses`, self first if subscribed, then
/// up to `limit` members in random order (never `requester`), at most `max_bytes` long. Returns
/// `None` when no address could be listed. spec: vl2.md §7.4
pub(crate) fn gather_results(
    state: &MulticastState,
    q: &GatherQuery,
    rng: &mut impl RngCore,
) -> Option<Vec<u8>> {
    let GatherQuery {
        group,
        me,
        me_subscribed,
        requester,
        limit,
        max_bytes,
    } = *q;
    let members = state.shuffled(&group, rng);
    let total = members.len() + usize::from(me_subscribed);
    let mut list = Vec::new();
    if me_subscribed {
        list.push(me);
    }
    let room = max_bytes.saturating_sub(6) / 5;
    for a in members {
        if list.len() >= limit.min(65_535).min(room) {
            break;
        }
        if a != requester && a != me {
            list.push(a);
        }
    }
    list.truncate(room.min(65_535));
    if list.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(6 + list.len() * 5);
    out.extend_from_slice(&(total.min(u32::MAX as usize) as u32).to_be_bytes());
    out.extend_from_slice(&(list.len() as u16).to_be_bytes());
    for a in list {
        out.extend_from_slice(&a.to_bytes());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn a(n: u64) -> Address {
        Address::new(n).unwrap()
    }

    #[test]
    fn gather_lists_self_first_and_never_the_requester() {
        let mut s = MulticastState::default();
        let g = MulticastGroup::BROADCAST;
        for n in 1..=5 {
            s.add(0, g, a(n));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let q = |me_subscribed, limit, max_bytes| GatherQuery {
            group: g,
            me: a(99),
            me_subscribed,
            requester: a(3),
            limit,
            max_bytes,
        };
        let r = gather_results(&s, &q(true, 10, 1400), &mut rng).unwrap();
        assert_eq!(u32::from_be_bytes(r[..4].try_into().unwrap()), 6);
        let n = usize::from(u16::from_be_bytes([r[4], r[5]]));
        assert_eq!(n, 5, "self + 4 members, requester left out");
        assert_eq!(Address::from_slice(&r[6..]).unwrap(), a(99));
        assert!(
            r[6..]
                .chunks(5)
                .all(|c| Address::from_slice(c).unwrap() != a(3))
        );
        // limit and size bounds
        let r = gather_results(&s, &q(false, 2, 1400), &mut rng).unwrap();
        assert_eq!(u16::from_be_bytes([r[4], r[5]]), 2);
        let r = gather_results(&s, &q(false, 10, 16), &mut rng).unwrap();
        assert_eq!(u16::from_be_bytes([r[4], r[5]]), 2);
        assert!(gather_results(&s, &q(false, 0, 1400), &mut rng).is_none());
    }

    #[test]
    fn members_expire_and_groups_sort() {
        let mut s = MulticastState::default();
        let g = MulticastGroup::BROADCAST;
        assert!(s.add(0, g, a(1)));
        assert!(!s.add(10, g, a(1)), "refresh, not new");
        s.expire(LIKE_EXPIRE_MS + 5);
        assert_eq!(s.members.len(), 1, "refreshed at 10: still fresh");
        s.expire(LIKE_EXPIRE_MS + 10);
        assert!(s.members.is_empty());
        s.subscriptions
            .push(MulticastGroup::for_ipv4_arp([10, 0, 0, 1].into()));
        let all = s.all_groups(true);
        assert_eq!(all.len(), 2);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
    }
}
