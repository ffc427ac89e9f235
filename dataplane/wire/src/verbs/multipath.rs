//! The multipath verbs: QOS_MEASUREMENT, ACK and PATH_NEGOTIATION_REQUEST. spec: vl1.md §9.4
//!
//! All three travel with cipher 0 (authenticated, not encrypted) on the path they concern. Only
//! QOS_MEASUREMENT carries information 1.14 acts on; ACK and PATH_NEGOTIATION_REQUEST are inert
//! in 1.14 but are decoded here so a node can authenticate, log and drop them.

use super::{Reader, VerbError};

/// One QOS_MEASUREMENT record: a sampled packet the sender of the report received on this path,
/// and how long it held it before reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QosRecord {
    /// The packet ID as the 64-bit integer read big-endian from the packet header (the on-wire
    /// ID). On the wire inside QOS_MEASUREMENT it is written little-endian. spec: vl1.md §9.4
    pub packet_id: u64,
    /// Milliseconds between its receipt and the sending of the report (little-endian on the
    /// wire).
    pub holding_ms: u16,
}

/// QOS_MEASUREMENT (0x13): up to 140 ten-byte records. spec: vl1.md §9.4
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QosMeasurement {
    /// The records in order.
    pub records: Vec<QosRecord>,
}

impl QosMeasurement {
    /// Bytes per record (8-byte ID + 2-byte holding time).
    pub const RECORD_LEN: usize = 10;
    /// Most records in one report: (1400 × 8) / 80. spec: vl1.md §9.4
    pub const MAX_RECORDS: usize = 140;
    /// Shortest payload a 1.14 receiver processes.
    pub const MIN_PAYLOAD: usize = 9;
    /// Longest payload a 1.14 receiver processes.
    pub const MAX_PAYLOAD: usize = 1400;

    /// Decodes a report. Payloads outside 9..=1400 bytes are refused (a 1.14 receiver ignores
    /// them); trailing bytes that do not make a whole record are ignored, as 1.14 does.
    pub fn decode(payload: &[u8]) -> Result<QosMeasurement, VerbError> {
        let what = "QOS_MEASUREMENT";
        if payload.len() < Self::MIN_PAYLOAD || payload.len() > Self::MAX_PAYLOAD {
            return Err(VerbError::Invalid {
                what,
                field: "length",
            });
        }
        let mut r = Reader::new(payload, what);
        let mut records = Vec::with_capacity(payload.len() / Self::RECORD_LEN);
        while r.remaining() >= Self::RECORD_LEN {
            let id: [u8; 8] = r.array()?;
            let hold: [u8; 2] = r.array()?;
            records.push(QosRecord {
                packet_id: u64::from_le_bytes(id),
                holding_ms: u16::from_le_bytes(hold),
            });
        }
        Ok(QosMeasurement { records })
    }

    /// Appends the payload: at most [`Self::MAX_RECORDS`] records (extra ones are not written).
    pub fn encode(&self, out: &mut Vec<u8>) {
        for rec in self.records.iter().take(Self::MAX_RECORDS) {
            out.extend_from_slice(&rec.packet_id.to_le_bytes());
            out.extend_from_slice(&rec.holding_ms.to_le_bytes());
        }
    }
}

/// ACK (0x12): a 4-byte big-endian count of bytes received since the previous ACK. Defined but
/// neither sent nor processed by 1.14. spec: vl1.md §9.4
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Bytes received on the path since the last ACK.
    pub bytes: u32,
}

impl Ack {
    /// Decodes the payload (extra bytes are ignored).
    pub fn decode(payload: &[u8]) -> Result<Ack, VerbError> {
        let mut r = Reader::new(payload, "ACK");
        Ok(Ack { bytes: r.u32()? })
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes.to_be_bytes());
    }
}

/// PATH_NEGOTIATION_REQUEST (0x16): exactly 2 bytes, a signed 16-bit big-endian utility. Dead
/// code in 1.14 in both directions. spec: vl1.md §9.4
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNegotiationRequest {
    /// The sender's utility for the path it sent this on.
    pub utility: i16,
}

impl PathNegotiationRequest {
    /// Decodes the payload; any length but 2 is refused.
    pub fn decode(payload: &[u8]) -> Result<PathNegotiationRequest, VerbError> {
        let mut r = Reader::new(payload, "PATH_NEGOTIATION_REQUEST");
        let utility = i16::from_be_bytes(r.array()?);
        if r.remaining() != 0 {
            return Err(r.invalid("length"));
        }
        Ok(PathNegotiationRequest { utility })
    }

    /// Appends the payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.utility.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_layout_is_little_endian() {
        // On-wire packet ID bytes 01 02 .. 08 (big-endian value 0x0102030405060708) appear
        // reversed inside the report; holding time 0x1234 ms as 34 12. spec: vl1.md §9.4
        let q = QosMeasurement {
            records: vec![QosRecord {
                packet_id: u64::from_be_bytes([1, 2, 3, 4, 5, 6, 7, 8]),
                holding_ms: 0x1234,
            }],
        };
        let mut b = Vec::new();
        q.encode(&mut b);
        assert_eq!(hex::encode(&b), "08070605040302013412");
        assert_eq!(QosMeasurement::decode(&b).unwrap(), q);
    }

    #[test]
    fn qos_round_trips_and_bounds() {
        let records: Vec<QosRecord> = (0..200u64)
            .map(|i| QosRecord {
                packet_id: i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
                holding_ms: (i * 37) as u16,
            })
            .collect();
        let q = QosMeasurement { records };
        let mut b = Vec::new();
        q.encode(&mut b);
        assert_eq!(b.len(), 1400, "encode stops at 140 records");
        let back = QosMeasurement::decode(&b).unwrap();
        assert_eq!(back.records.len(), 140);
        assert_eq!(back.records[..], q.records[..140]);
        // 9 bytes: accepted, no whole record; 8 and 1401: refused; a partial tail is ignored.
        assert_eq!(QosMeasurement::decode(&[0; 9]).unwrap().records.len(), 0);
        assert!(QosMeasurement::decode(&[0; 8]).is_err());
        assert!(QosMeasurement::decode(&[0; 1401]).is_err());
        assert_eq!(QosMeasurement::decode(&[0; 25]).unwrap().records.len(), 2);
    }

    #[test]
    fn ack_and_negotiation_round_trip() {
        let a = Ack { bytes: 0xdead_beef };
        let mut b = Vec::new();
        a.encode(&mut b);
        assert_eq!(b, [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(Ack::decode(&b).unwrap(), a);
        assert!(Ack::decode(&[1, 2, 3]).is_err());
        let p = PathNegotiationRequest { utility: -5000 };
        let mut b = Vec::new();
        p.encode(&mut b);
        assert_eq!(b, (-5000i16).to_be_bytes());
        assert_eq!(PathNegotiationRequest::decode(&b).unwrap(), p);
        assert!(PathNegotiationRequest::decode(&[1]).is_err());
        assert!(PathNegotiationRequest::decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn hostile_payloads_never_panic() {
        // Every length 0..=1500 with pseudo-random content.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut buf = Vec::new();
        let mut ok = 0;
        for len in 0..=1500usize {
            buf.clear();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            if let Ok(q) = QosMeasurement::decode(&buf) {
                assert_eq!(q.records.len(), len / 10);
                ok += 1;
            }
            let _ = Ack::decode(&buf);
            let _ = PathNegotiationRequest::decode(&buf);
        }
        assert_eq!(ok, 1400 - 9 + 1);
    }
}
