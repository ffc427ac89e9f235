//! Network rules: the binary rule encoding shared by configs (`R`) and capabilities.
//! spec: vl2.md §15.1
//!
//! A rule is `type (1) | operand length L (1) | operand (L)`; bit 7 of the type is NOT, bit 6 is
//! OR, bits 5..0 the rule id. Unknown ids are kept (with their operand bytes) so a list
//! round-trips and the evaluator can apply the "unsupported match" flag to them.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::address::Address;
use crate::verbs::vl2::Mac;

pub mod eval;
pub mod filter;
#[cfg(feature = "json")]
pub mod json;
#[cfg(test)]
mod testutil;

pub use eval::{
    CopyTarget, Direction, EvalContext, FrameError, FrameInfo, ListOutcome, ListResult, LocalView,
    Membership, evaluate_list,
};
pub use filter::{Decision, FilterVerdict, FrameCopy, Redirect};

/// Most rules in a config's base rule table (`R`). spec: vl2.md §11
pub const MAX_NETWORK_RULES: usize = 1024;
/// Most rules in one capability. spec: vl2.md §13.2
pub const MAX_CAPABILITY_RULES: usize = 64;

/// Errors decoding a rule list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The list ended inside a rule.
    #[error("rule {index}: truncated")]
    Truncated {
        /// Position of the rule in the list.
        index: usize,
    },
    /// A known rule carries an operand shorter than its type needs.
    #[error("rule {index} (type {rule_type}): operand length {len} is too short")]
    ShortOperand {
        /// Position of the rule in the list.
        index: usize,
        /// The rule id (bits 5..0).
        rule_type: u8,
        /// The operand length on the wire.
        len: u8,
    },
    /// More rules than the caller allows.
    #[error("more than {max} rules")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

/// Target of a TEE, WATCH or REDIRECT action. spec: vl2.md §15.1 (ids 2..4)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forward {
    /// Node that gets the copy (or the redirected frame).
    pub address: Address,
    /// Flags (carried, unused by 1.14).
    pub flags: u32,
    /// Bytes of the frame to copy; 0 = the whole frame.
    pub length: u16,
}

/// Which tag comparison a tag match performs. spec: vl2.md §15.3
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagOp {
    /// `abs(local - remote) <= value` (id 44).
    Difference,
    /// `local & remote == value` (id 45).
    BitwiseAnd,
    /// `local | remote == value` (id 46).
    BitwiseOr,
    /// `local ^ remote == value` (id 47).
    BitwiseXor,
    /// `local == value && remote == value` (id 48).
    Equal,
    /// The sender's tag equals value (id 49).
    Sender,
    /// The receiver's tag equals value (id 50).
    Receiver,
}

impl TagOp {
    const fn id(self) -> u8 {
        match self {
            TagOp::Difference => 44,
            TagOp::BitwiseAnd => 45,
            TagOp::BitwiseOr => 46,
            TagOp::BitwiseXor => 47,
            TagOp::Equal => 48,
            TagOp::Sender => 49,
            TagOp::Receiver => 50,
        }
    }
}

/// What a rule does or matches. spec: vl2.md §15.1 table
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RuleKind {
    /// 0: drop the frame.
    Drop,
    /// 1: accept the frame.
    Accept,
    /// 2: accept and send a copy.
    Tee(Forward),
    /// 3: like TEE, with an acknowledged copy.
    Watch(Forward),
    /// 4: send the frame to another node instead.
    Redirect(Forward),
    /// 5: stop evaluating this list (no match).
    Break,
    /// 6: accept with a QoS bucket (the bucket is not serialized, L = 0) **[quirk]**.
    Priority,
    /// 24: source ZeroTier address equals.
    SourceZtAddress(Address),
    /// 25: destination ZeroTier address equals.
    DestZtAddress(Address),
    /// 26: VLAN id equals.
    VlanId(u16),
    /// 27: VLAN PCP ("unsupported": true iff 0).
    VlanPcp(u8),
    /// 28: VLAN DEI ("unsupported": true iff 0).
    VlanDei(u8),
    /// 29: source MAC equals.
    MacSource(Mac),
    /// 30: destination MAC equals.
    MacDest(Mac),
    /// 31: IPv4 source within `ip/bits`.
    Ipv4Source {
        /// Network address.
        ip: Ipv4Addr,
        /// Prefix length.
        bits: u8,
    },
    /// 32: IPv4 destination within `ip/bits`.
    Ipv4Dest {
        /// Network address.
        ip: Ipv4Addr,
        /// Prefix length.
        bits: u8,
    },
    /// 33: IPv6 source within `ip/bits`.
    Ipv6Source {
        /// Network address.
        ip: Ipv6Addr,
        /// Prefix length.
        bits: u8,
    },
    /// 34: IPv6 destination within `ip/bits`.
    Ipv6Dest {
        /// Network address.
        ip: Ipv6Addr,
        /// Prefix length.
        bits: u8,
    },
    /// 35: `(TOS & mask)` in `[start, end]`.
    IpTos {
        /// Mask applied first.
        mask: u8,
        /// Range start.
        start: u8,
        /// Range end.
        end: u8,
    },
    /// 36: IP protocol (IPv6: final next header).
    IpProtocol(u8),
    /// 37: ethertype equals.
    Ethertype(u16),
    /// 38: ICMP type (and code if `match_code`).
    Icmp {
        /// ICMP type.
        icmp_type: u8,
        /// ICMP code (compared only when `match_code`).
        code: u8,
        /// Flag 0x01: also match the code.
        match_code: bool,
    },
    /// 39: source port in range.
    SourcePortRange {
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// 40: destination port in range.
    DestPortRange {
        /// First port.
        start: u16,
        /// Last port.
        end: u16,
    },
    /// 41: `characteristics & mask != 0` (vl2.md §15.4).
    Characteristics(u64),
    /// 42: payload length in range.
    FrameSizeRange {
        /// Smallest length.
        start: u16,
        /// Largest length.
        end: u16,
    },
    /// 43: a 32-bit random value `<=` probability.
    Random(u32),
    /// 44..50: tag comparisons.
    Tag {
        /// Which comparison.
        op: TagOp,
        /// Tag id.
        id: u32,
        /// Value compared with.
        value: u32,
    },
    /// 51: an integer read from the frame within `[start, start + end_delta]`.
    IntegerRange {
        /// Range start.
        start: u64,
        /// Range width (`end - start`, stored as 32 bits).
        end_delta: u32,
        /// Byte index in the frame payload.
        index: u16,
        /// Bits 5..0 = bit width − 1, bit 7 = little-endian.
        format: u8,
    },
    /// Any other id (reserved actions 7..15, unassigned matches): kept with its operand.
    Other {
        /// Rule id (bits 5..0).
        id: u8,
        /// The operand bytes, as received.
        operand: Vec<u8>,
    },
}

/// One rule: what it is, plus the NOT and OR bits (meaningful for matches only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// What the rule does or matches.
    pub kind: RuleKind,
    /// Bit 7: invert the match.
    pub not: bool,
    /// Bit 6: OR with the previous matches instead of AND.
    pub or: bool,
}

impl Rule {
    /// An action or a plain (AND, not inverted) match.
    pub const fn new(kind: RuleKind) -> Self {
        Rule {
            kind,
            not: false,
            or: false,
        }
    }

    /// The rule id (bits 5..0 of the type byte).
    pub fn id(&self) -> u8 {
        use RuleKind::*;
        match &self.kind {
            Drop => 0,
            Accept => 1,
            Tee(_) => 2,
            Watch(_) => 3,
            Redirect(_) => 4,
            Break => 5,
            Priority => 6,
            SourceZtAddress(_) => 24,
            DestZtAddress(_) => 25,
            VlanId(_) => 26,
            VlanPcp(_) => 27,
            VlanDei(_) => 28,
            MacSource(_) => 29,
            MacDest(_) => 30,
            Ipv4Source { .. } => 31,
            Ipv4Dest { .. } => 32,
            Ipv6Source { .. } => 33,
            Ipv6Dest { .. } => 34,
            IpTos { .. } => 35,
            IpProtocol(_) => 36,
            Ethertype(_) => 37,
            Icmp { .. } => 38,
            SourcePortRange { .. } => 39,
            DestPortRange { .. } => 40,
            Characteristics(_) => 41,
            FrameSizeRange { .. } => 42,
            Random(_) => 43,
            Tag { op, .. } => op.id(),
            IntegerRange { .. } => 51,
            Other { id, .. } => *id & 0x3f,
        }
    }

    /// Whether this rule is an action (ids 0..15). spec: vl2.md §15.2
    pub fn is_action(&self) -> bool {
        self.id() <= 15
    }

    /// Appends the binary form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use RuleKind::*;
        let mut t = self.id();
        if self.not {
            t |= 0x80;
        }
        if self.or {
            t |= 0x40;
        }
        out.push(t);
        let len_at = out.len();
        out.push(0);
        match &self.kind {
            Drop | Accept | Break | Priority => {}
            Tee(f) | Watch(f) | Redirect(f) => {
                out.extend_from_slice(&f.address.to_u64().to_be_bytes());
                out.extend_from_slice(&f.flags.to_be_bytes());
                out.extend_from_slice(&f.length.to_be_bytes());
            }
            SourceZtAddress(a) | DestZtAddress(a) => out.extend_from_slice(&a.to_bytes()),
            VlanId(v) => out.extend_from_slice(&v.to_be_bytes()),
            VlanPcp(v) | VlanDei(v) | IpProtocol(v) => out.push(*v),
            MacSource(m) | MacDest(m) => out.extend_from_slice(&m.0),
            Ipv4Source { ip, bits } | Ipv4Dest { ip, bits } => {
                out.extend_from_slice(&ip.octets());
                out.push(*bits);
            }
            Ipv6Source { ip, bits } | Ipv6Dest { ip, bits } => {
                out.extend_from_slice(&ip.octets());
                out.push(*bits);
            }
            IpTos { mask, start, end } => out.extend_from_slice(&[*mask, *start, *end]),
            Ethertype(e) => out.extend_from_slice(&e.to_be_bytes()),
            Icmp {
                icmp_type,
                code,
                match_code,
            } => out.extend_from_slice(&[*icmp_type, *code, u8::from(*match_code)]),
            SourcePortRange { start, end }
            | DestPortRange { start, end }
            | FrameSizeRange { start, end } => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&end.to_be_bytes());
            }
            Characteristics(m) => out.extend_from_slice(&m.to_be_bytes()),
            Random(p) => out.extend_from_slice(&p.to_be_bytes()),
            Tag { id, value, .. } => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&value.to_be_bytes());
            }
            IntegerRange {
                start,
                end_delta,
                index,
                format,
            } => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&start.wrapping_add(u64::from(*end_delta)).to_be_bytes());
                out.extend_from_slice(&index.to_be_bytes());
                out.push(*format);
            }
            Other { operand, .. } => out.extend_from_slice(&operand[..operand.len().min(255)]),
        }
        // Every operand above is at most 19 bytes, `Other` is capped at 255.
        out[len_at] = (out.len() - len_at - 1) as u8;
    }
}

/// Operand bytes a known rule id needs (decoders read these from the start of the operand and
/// skip the rest). `None` for ids kept as [`RuleKind::Other`].
fn needed_len(id: u8) -> Option<usize> {
    Some(match id {
        0 | 1 | 5 | 6 => 0,
        2..=4 => 14,
        24 | 25 => 5,
        26 => 2,
        27 | 28 => 1,
        29 | 30 => 6,
        31 | 32 => 5,
        33 | 34 => 17,
        35 => 3,
        36 => 1,
        37 => 2,
        38 => 3,
        39 | 40 | 42 | 43 => 4,
        41 => 8,
        44..=50 => 8,
        51 => 19,
        _ => return None,
    })
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn forward(o: &[u8]) -> Forward {
    Forward {
        address: Address::from_bytes([o[3], o[4], o[5], o[6], o[7]]),
        flags: be32(&o[8..]),
        length: be16(&o[12..]),
    }
}

/// Decodes one rule from the start of `b`; returns it and the bytes consumed.
fn decode_one(b: &[u8], index: usize) -> Result<(Rule, usize), RuleError> {
    let [t, len, ..] = *b else {
        return Err(RuleError::Truncated { index });
    };
    let end = 2 + usize::from(len);
    let o = b.get(2..end).ok_or(RuleError::Truncated { index })?;
    let id = t & 0x3f;
    if let Some(need) = needed_len(id)
        && o.len() < need
    {
        return Err(RuleError::ShortOperand {
            index,
            rule_type: id,
            len,
        });
    }
    use RuleKind::*;
    // Lengths were checked against `needed_len` above, so the fixed-size reads below are in
    // bounds.
    let kind = match id {
        0 => Drop,
        1 => Accept,
        2 => Tee(forward(o)),
        3 => Watch(forward(o)),
        4 => Redirect(forward(o)),
        5 => Break,
        6 => Priority,
        24 => SourceZtAddress(Address::from_bytes([o[0], o[1], o[2], o[3], o[4]])),
        25 => DestZtAddress(Address::from_bytes([o[0], o[1], o[2], o[3], o[4]])),
        26 => VlanId(be16(o)),
        27 => VlanPcp(o[0]),
        28 => VlanDei(o[0]),
        29 => MacSource(Mac([o[0], o[1], o[2], o[3], o[4], o[5]])),
        30 => MacDest(Mac([o[0], o[1], o[2], o[3], o[4], o[5]])),
        31 | 32 => {
            let ip = Ipv4Addr::new(o[0], o[1], o[2], o[3]);
            let bits = o[4];
            if id == 31 {
                Ipv4Source { ip, bits }
            } else {
                Ipv4Dest { ip, bits }
            }
        }
        33 | 34 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&o[..16]);
            let ip = Ipv6Addr::from(a);
            let bits = o[16];
            if id == 33 {
                Ipv6Source { ip, bits }
            } else {
                Ipv6Dest { ip, bits }
            }
        }
        35 => IpTos {
            mask: o[0],
            start: o[1],
            end: o[2],
        },
        36 => IpProtocol(o[0]),
        37 => Ethertype(be16(o)),
        38 => Icmp {
            icmp_type: o[0],
            code: o[1],
            match_code: o[2] & 0x01 != 0,
        },
        39 => SourcePortRange {
            start: be16(o),
            end: be16(&o[2..]),
        },
        40 => DestPortRange {
            start: be16(o),
            end: be16(&o[2..]),
        },
        41 => Characteristics(be64(o)),
        42 => FrameSizeRange {
            start: be16(o),
            end: be16(&o[2..]),
        },
        43 => Random(be32(o)),
        44..=50 => Tag {
            op: match id {
                44 => TagOp::Difference,
                45 => TagOp::BitwiseAnd,
                46 => TagOp::BitwiseOr,
                47 => TagOp::BitwiseXor,
                48 => TagOp::Equal,
                49 => TagOp::Sender,
                _ => TagOp::Receiver,
            },
            id: be32(o),
            value: be32(&o[4..]),
        },
        51 => {
            let start = be64(o);
            let end = be64(&o[8..]);
            IntegerRange {
                start,
                // spec: vl2.md §15.1 — the decoder keeps `end - start` as 32 bits.
                end_delta: end.wrapping_sub(start) as u32,
                index: be16(&o[16..]),
                format: o[18],
            }
        }
        _ => Other {
            id,
            operand: o.to_vec(),
        },
    };
    Ok((
        Rule {
            kind,
            not: t & 0x80 != 0,
            or: t & 0x40 != 0,
        },
        end,
    ))
}

/// Decodes exactly `count` rules from the start of `b`; returns them and the bytes consumed
/// (capabilities carry a rule count). spec: vl2.md §13.2
pub fn decode_counted(b: &[u8], count: usize) -> Result<(Vec<Rule>, usize), RuleError> {
    let mut rules = Vec::with_capacity(count.min(MAX_NETWORK_RULES));
    let mut at = 0;
    for index in 0..count {
        let (r, n) = decode_one(&b[at..], index)?;
        rules.push(r);
        at += n;
    }
    Ok((rules, at))
}

/// Decodes a whole rule table (the config's `R` blob), at most `max` rules.
pub fn decode_all(b: &[u8], max: usize) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    let mut at = 0;
    while at < b.len() {
        if rules.len() == max {
            return Err(RuleError::TooMany { max });
        }
        let (r, n) = decode_one(&b[at..], rules.len())?;
        rules.push(r);
        at += n;
    }
    Ok(rules)
}

/// Appends the binary form of every rule.
pub fn encode_all(rules: &[Rule], out: &mut Vec<u8>) {
    for r in rules {
        r.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(hexs: &str) -> Vec<Rule> {
        let b = hex::decode(hexs).unwrap();
        let rules = decode_all(&b, MAX_NETWORK_RULES).unwrap();
        let mut again = Vec::new();
        encode_all(&rules, &mut again);
        assert_eq!(hex::encode(again), hexs);
        rules
    }

    // spec: vl2.md §15.1 example blobs [verified]
    #[test]
    fn spec_examples_decode_and_round_trip() {
        let r = round("a5020800");
        assert_eq!(r[0].kind, RuleKind::Ethertype(0x0800));
        assert!(r[0].not && !r[0].or);
        let r = round("2c08000003e800000000");
        assert_eq!(
            r[0].kind,
            RuleKind::Tag {
                op: TagOp::Difference,
                id: 1000,
                value: 0
            }
        );
        let r = round("1f050a93110018");
        assert_eq!(
            r[0].kind,
            RuleKind::Ipv4Source {
                ip: Ipv4Addr::new(10, 147, 17, 0),
                bits: 24
            }
        );
        let r = round("2603080000");
        assert_eq!(
            r[0].kind,
            RuleKind::Icmp {
                icmp_type: 8,
                code: 0,
                match_code: false
            }
        );
        assert_eq!(
            round("29080000000000000002")[0].kind,
            RuleKind::Characteristics(2)
        );
        assert_eq!(
            round("1d06021122334455")[0].kind,
            RuleKind::MacSource(Mac([2, 0x11, 0x22, 0x33, 0x44, 0x55]))
        );
        assert_eq!(round("2b047fffffff")[0].kind, RuleKind::Random(0x7fff_ffff));
        let r = round("020e000000deadbeef01000000000040");
        assert_eq!(
            r[0].kind,
            RuleKind::Tee(Forward {
                address: Address::new(0xdeadbeef01).unwrap(),
                flags: 0,
                length: 64
            })
        );
        // the capability rules of vl2.md §11.1: ipprotocol 6, dport 22, accept
        let r = round("24010628040016001601 00".replace(' ', "").as_str());
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].kind, RuleKind::Accept);
        assert_eq!(round("0100")[0].kind, RuleKind::Accept);
    }

    #[test]
    fn unknown_ids_are_kept_and_long_operands_skipped() {
        let r = round("1003aabbcc");
        assert_eq!(
            r[0].kind,
            RuleKind::Other {
                id: 16,
                operand: vec![0xaa, 0xbb, 0xcc]
            }
        );
        // a known rule with a longer operand: read from the start, skip the rest
        let r = decode_all(&hex::decode("2403068899").unwrap(), 10).unwrap();
        assert_eq!(r[0].kind, RuleKind::IpProtocol(6));
    }

    #[test]
    fn bad_lists_are_errors() {
        assert!(matches!(
            decode_all(&[0x24], 10),
            Err(RuleError::Truncated { index: 0 })
        ));
        assert!(matches!(
            decode_all(&[0x01, 0x00, 0x25, 0x01, 0x08], 10),
            Err(RuleError::ShortOperand { index: 1, .. })
        ));
        assert!(matches!(
            decode_all(&[0x01, 0x00, 0x01, 0x00], 1),
            Err(RuleError::TooMany { max: 1 })
        ));
        assert!(decode_counted(&[0x01, 0x00], 2).is_err());
        let (r, n) = decode_counted(&[0x01, 0x00, 0xff], 1).unwrap();
        assert_eq!((r.len(), n), (1, 2));
    }

    #[test]
    fn integer_range_keeps_delta() {
        let rule = Rule::new(RuleKind::IntegerRange {
            start: 1,
            end_delta: 4,
            index: 20,
            format: 15,
        });
        let mut b = Vec::new();
        rule.encode(&mut b);
        assert_eq!(b.len(), 21);
        assert_eq!(decode_all(&b, 1).unwrap()[0], rule);
    }
}
