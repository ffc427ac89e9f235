//! The TCP fallback tunnel: TLS-looking records carrying ZeroTier datagrams between a node and a
//! TCP relay. spec: vl1.md §8.13
//!
//! Every record is `17 03 03` ‖ 2-byte big-endian body length `n` ‖ `n` body bytes (it imitates
//! TLS 1.2 application data). The body is one of:
//!
//! * a **greeting** (`n = 4`): major, minor, revision (2 bytes BE) of the sender's software; the
//!   first record a node sends. Any `n = 4` record is a greeting and carries no datagram;
//! * a **data record**: a type byte, an address, and one ZeroTier datagram:
//!   `04` ‖ IPv4 (4) ‖ port (2, BE) ‖ datagram, or `06` ‖ IPv6 (16) ‖ port ‖ datagram, or
//!   `00` ‖ datagram (no address; receivers drop it). Node → relay the address is the
//!   destination, relay → node it is the original UDP source. Any other type byte means the
//!   peer is not speaking this protocol: close the connection.
//!
//! Records from "legacy" relay clients (which never send the greeting) carry a bare datagram as
//! their body; [`TunnelDecoder::next_body`] and [`encode_record`] give access to that raw layer.
//!
//! Pure code: no I/O, never panics; [`TunnelDecoder`] buffers at most one maximum record
//! ([`MAX_RECORD_LEN`] bytes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first three bytes of every record (TLS "application data", version 1.2).
/// spec: vl1.md §8.13
pub const RECORD_MAGIC: [u8; 3] = [0x17, 0x03, 0x03];
/// Length of a record header: magic (3) + body length (2).
pub const RECORD_HEADER_LEN: usize = 5;
/// Largest record body (the length field is 16 bits).
pub const MAX_RECORD_BODY: usize = u16::MAX as usize;
/// Largest record including its header.
pub const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + MAX_RECORD_BODY;
/// Body length of a greeting record (major, minor, 2-byte revision); every record of this
/// length is a greeting.
pub const GREETING_BODY_LEN: usize = 4;
/// Length of a whole greeting record.
pub const GREETING_LEN: usize = RECORD_HEADER_LEN + GREETING_BODY_LEN;
/// Data record type byte: no address (such records are dropped by receivers).
pub const TYPE_NO_ADDRESS: u8 = 0x00;
/// Data record type byte: IPv4 address and port follow.
pub const TYPE_IPV4: u8 = 0x04;
/// Data record type byte: IPv6 address and port follow.
pub const TYPE_IPV6: u8 = 0x06;
/// Length of the type byte and address of an IPv4 data record.
pub const IPV4_ADDRESS_HEADER_LEN: usize = 1 + 4 + 2;
/// Length of the type byte and address of an IPv6 data record.
pub const IPV6_ADDRESS_HEADER_LEN: usize = 1 + 16 + 2;
/// Largest datagram one IPv4 data record can carry.
pub const MAX_IPV4_DATAGRAM: usize = MAX_RECORD_BODY - IPV4_ADDRESS_HEADER_LEN;
/// Largest datagram one IPv6 data record can carry.
pub const MAX_IPV6_DATAGRAM: usize = MAX_RECORD_BODY - IPV6_ADDRESS_HEADER_LEN;

/// Errors from the tunnel codec. Every decoding error means the byte stream cannot be trusted
/// any more: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The stream does not start with `17 03 03` where a record header is due.
    #[error("not a tunnel record header (expected 17 03 03, got {found:02x?})")]
    BadRecordHeader {
        /// The offending bytes (as many of the three as were received).
        found: Vec<u8>,
    },
    /// A record with an empty body (no type byte).
    #[error("empty tunnel record")]
    EmptyRecord,
    /// A data record whose type byte is not 00, 04 or 06.
    #[error("unknown tunnel record type 0x{ty:02x}")]
    UnknownType {
        /// The type byte.
        ty: u8,
    },
    /// A data record too short for the address its type announces.
    #[error("tunnel record of type 0x{ty:02x} truncated: {len} body bytes")]
    Truncated {
        /// The type byte.
        ty: u8,
        /// Body length of the record.
        len: usize,
    },
    /// A datagram too large for one record (encoding only).
    #[error("datagram of {len} bytes does not fit one tunnel record (maximum {max})")]
    PayloadTooLarge {
        /// Datagram length.
        len: usize,
        /// The most this record type can carry.
        max: usize,
    },
}

/// One decoded record. spec: vl1.md §8.13
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// The greeting (any 4-byte body): the sender's software version.
    Greeting {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
        /// Revision (16-bit).
        revision: u16,
    },
    /// A data record: one ZeroTier datagram with its address.
    Datagram {
        /// Destination (node → relay) or original source (relay → node); `None` for type
        /// `00` records, which are to be dropped.
        addr: Option<SocketAddr>,
        /// The datagram (may be empty or short; the receiver applies its own size rules).
        payload: &'a [u8],
    },
}

impl<'a> Record<'a> {
    /// Parses a record body (the `n` bytes after the header). Never panics.
    pub fn parse(body: &'a [u8]) -> Result<Record<'a>, TunnelError> {
        if body.len() == GREETING_BODY_LEN {
            return Ok(Record::Greeting {
                major: body[0],
                minor: body[1],
                revision: u16::from_be_bytes([body[2], body[3]]),
            });
        }
        let Some((&ty, rest)) = body.split_first() else {
            return Err(TunnelError::EmptyRecord);
        };
        let truncated = || TunnelError::Truncated {
            ty,
            len: body.len(),
        };
        match ty {
            TYPE_NO_ADDRESS => Ok(Record::Datagram {
                addr: None,
                payload: rest,
            }),
            TYPE_IPV4 => {
                let (a, payload) = split_array::<6>(rest).ok_or_else(truncated)?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                let port = u16::from_be_bytes([a[4], a[5]]);
                Ok(Record::Datagram {
                    addr: Some(SocketAddr::new(ip.into(), port)),
                    payload,
                })
            }
            TYPE_IPV6 => {
                let (a, payload) = split_array::<18>(rest).ok_or_else(truncated)?;
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&a[..16]);
                let port = u16::from_be_bytes([a[16], a[17]]);
                Ok(Record::Datagram {
                    addr: Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port)),
                    payload,
                })
            }
            ty => Err(TunnelError::UnknownType { ty }),
        }
    }
}

/// Splits `N` leading bytes off `b`, or `None` if it is shorter.
fn split_array<const N: usize>(b: &[u8]) -> Option<(&[u8; N], &[u8])> {
    let (head, rest) = b.split_at_checked(N)?;
    Some((head.try_into().ok()?, rest))
}

/// The greeting record a node sends first, e.g. `17 03 03 00 04 01 0e 00 01` for 1.14.1.
/// spec: vl1.md §8.13
pub fn encode_greeting(major: u8, minor: u8, revision: u16) -> [u8; GREETING_LEN] {
    let r = revision.to_be_bytes();
    [
        RECORD_MAGIC[0],
        RECORD_MAGIC[1],
        RECORD_MAGIC[2],
        0,
        GREETING_BODY_LEN as u8,
        major,
        minor,
        r[0],
        r[1],
    ]
}

/// Appends one record with a raw `body` (no type byte is added): the layer legacy relay clients
/// speak. Fails if the body is longer than [`MAX_RECORD_BODY`]; `out` is then unchanged.
/// spec: vl1.md §8.13
pub fn encode_record(body: &[u8], out: &mut Vec<u8>) -> Result<(), TunnelError> {
    let n = u16::try_from(body.len()).map_err(|_| TunnelError::PayloadTooLarge {
        len: body.len(),
        max: MAX_RECORD_BODY,
    })?;
    out.reserve(RECORD_HEADER_LEN + body.len());
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// Appends one data record carrying `payload` with address `addr` (type `04` for IPv4, `06` for
/// IPv6; an IPv4-mapped IPv6 address is written as IPv4). Fails if the datagram does not fit
/// one record ([`MAX_IPV4_DATAGRAM`] / [`MAX_IPV6_DATAGRAM`]); `out` is then unchanged.
/// spec: vl1.md §8.13
pub fn encode_datagram(
    addr: SocketAddr,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), TunnelError> {
    let mut head = [0u8; IPV6_ADDRESS_HEADER_LEN];
    let (head, max) = match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            head[0] = TYPE_IPV4;
            head[1..5].copy_from_slice(&ip.octets());
            head[5..7].copy_from_slice(&addr.port().to_be_bytes());
            (&head[..IPV4_ADDRESS_HEADER_LEN], MAX_IPV4_DATAGRAM)
        }
        IpAddr::V6(ip) => {
            head[0] = TYPE_IPV6;
            head[1..17].copy_from_slice(&ip.octets());
            head[17..19].copy_from_slice(&addr.port().to_be_bytes());
            (&head[..], MAX_IPV6_DATAGRAM)
        }
    };
    if payload.len() > max {
        return Err(TunnelError::PayloadTooLarge {
            len: payload.len(),
            max,
        });
    }
    let n = (head.len() + payload.len()) as u16; // ≤ MAX_RECORD_BODY, checked above
    out.reserve(RECORD_HEADER_LEN + usize::from(n));
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(payload);
    Ok(())
}

/// Incremental decoder for the byte stream of one tunnel connection. spec: vl1.md §8.13
///
/// Feed received bytes with [`push`](Self::push) (which takes only what fits, so memory stays
/// bounded by one maximum record, [`MAX_RECORD_LEN`] bytes), then drain complete records with
/// [`next_record`](Self::next_record) (or [`next_body`](Self::next_body) for the raw layer) until
/// it returns `Ok(None)`, then push the rest:
///
/// ```
/// use weft_wire::tcp_tunnel::{Record, TunnelDecoder};
///
/// let mut dec = TunnelDecoder::new();
/// let mut input: &[u8] = &[0x17, 0x03, 0x03, 0x00, 0x04, 0x01, 0x0e, 0x00, 0x01];
/// let mut records = Vec::new();
/// while !input.is_empty() {
///     let taken = dec.push(input);
///     input = &input[taken..];
///     while let Some(r) = dec.next_record().expect("well-formed stream") {
///         records.push(format!("{r:?}"));
///     }
/// }
/// assert_eq!(records, ["Greeting { major: 1, minor: 14, revision: 1 }"]);
/// ```
///
/// Errors are sticky: once a call has failed, every later call fails the same way (the stream
/// has lost its framing or is not this protocol; close the connection).
#[derive(Debug, Default, Clone)]
pub struct TunnelDecoder {
    /// Received bytes; `buf[start..]` is not yet consumed.
    buf: Vec<u8>,
    /// Offset of the first unconsumed byte.
    start: usize,
}

impl TunnelDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received but not yet returned as records (at most [`MAX_RECORD_LEN`]).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// How many more bytes [`push`](Self::push) would take now.
    pub fn free(&self) -> usize {
        MAX_RECORD_LEN - self.buffered()
    }

    /// Appends as much of `data` as fits (the buffer never holds more than [`MAX_RECORD_LEN`]
    /// unconsumed bytes) and returns how many bytes were taken. When it takes fewer than
    /// `data.len()`, a complete record (or an error) is ready: drain records, then push the rest.
    pub fn push(&mut self, data: &[u8]) -> usize {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let take = data.len().min(self.free());
        let need = self.buf.len() + take;
        if need > self.buf.capacity() {
            // Grow geometrically, but never past one maximum record.
            let cap = need.max(2 * self.buf.capacity()).min(MAX_RECORD_LEN);
            self.buf.reserve_exact(cap - self.buf.len());
        }
        self.buf.extend_from_slice(&data[..take]);
        take
    }

    /// Locates the next complete record: the range of its body in `buf`, or `None` if more
    /// bytes are needed.
    fn frame(&self) -> Result<Option<(usize, usize)>, TunnelError> {
        let pending = &self.buf[self.start..];
        let magic_len = pending.len().min(RECORD_MAGIC.len());
        if pending[..magic_len] != RECORD_MAGIC[..magic_len] {
            return Err(TunnelError::BadRecordHeader {
                found: pending[..magic_len].to_vec(),
            });
        }
        let Some(header) = pending.get(..RECORD_HEADER_LEN) else {
            return Ok(None);
        };
        let n = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if pending.len() < RECORD_HEADER_LEN + n {
            return Ok(None);
        }
        let body_start = self.start + RECORD_HEADER_LEN;
        Ok(Some((body_start, body_start + n)))
    }

    /// The body of the next complete record, without interpreting it (the legacy layer), or
    /// `None` if more bytes are needed. Fails as soon as the buffered bytes cannot start a
    /// record header (even before all three magic bytes have arrived).
    pub fn next_body(&mut self) -> Result<Option<&[u8]>, TunnelError> {
        let Some((from, to)) = self.frame()? else {
            return Ok(None);
        };
        self.start = to;
        Ok(Some(&self.buf[from..to]))
    }

    /// The next complete record, parsed, or `None` if more bytes are needed. A record that
    /// fails to parse stays unconsumed, so the error repeats on every later call.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, TunnelError> {
        let Some((from, to)) = self.frame()? else {
            return Ok(None);
        };
        let record = Record::parse(&self.buf[from..to])?;
        self.start = to;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREETING_1_14_1: [u8; 9] = [0x17, 0x03, 0x03, 0x00, 0x04, 0x01, 0x0e, 0x00, 0x01];

    fn v4(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    /// An owned copy of a record, for comparing streams.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Greeting(u8, u8, u16),
        Datagram(Option<SocketAddr>, Vec<u8>),
    }

    fn own(r: Record<'_>) -> Owned {
        match r {
            Record::Greeting {
                major,
                minor,
                revision,
            } => Owned::Greeting(major, minor, revision),
            Record::Datagram { addr, payload } => Owned::Datagram(addr, payload.to_vec()),
        }
    }

    /// Feeds `input` in chunks of `chunk` bytes; returns the records and the first error.
    fn decode_chunked(input: &[u8], chunk: usize) -> (Vec<Owned>, Option<TunnelError>) {
        let mut dec = TunnelDecoder::new();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            let mut rest = piece;
            loop {
                let taken = dec.push(rest);
                rest = &rest[taken..];
                loop {
                    match dec.next_record() {
                        Ok(Some(r)) => out.push(own(r)),
                        Ok(None) => break,
                        Err(e) => return (out, Some(e)),
                    }
                }
                assert!(dec.buffered() <= MAX_RECORD_LEN);
                if rest.is_empty() {
                    break;
                }
            }
        }
        (out, None)
    }

    #[test]
    fn greeting_1_14_1_exact_bytes() {
        // spec: vl1.md §8.13 [V]
        assert_eq!(encode_greeting(1, 14, 1), GREETING_1_14_1);
        assert_eq!(
            Record::parse(&GREETING_1_14_1[RECORD_HEADER_LEN..]),
            Ok(Record::Greeting {
                major: 1,
                minor: 14,
                revision: 1
            })
        );
        assert_eq!(
            decode_chunked(&GREETING_1_14_1, 64),
            (vec![Owned::Greeting(1, 14, 1)], None)
        );
    }

    #[test]
    fn ipv4_record_layout() {
        let mut out = Vec::new();
        encode_datagram(v4("1.2.3.4:9993"), b"zerotier", &mut out).expect("encode");
        assert_eq!(
            out,
            [
                &[0x17, 0x03, 0x03, 0x00, 15, 0x04, 1, 2, 3, 4, 0x27, 0x09][..],
                b"zerotier"
            ]
            .concat()
        );
        assert_eq!(
            Record::parse(&out[RECORD_HEADER_LEN..]),
            Ok(Record::Datagram {
                addr: Some(v4("1.2.3.4:9993")),
                payload: b"zerotier"
            })
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let a6: SocketAddr = "[2001:db8::1]:443".parse().expect("v6");
        let mut out = Vec::new();
        encode_datagram(a6, &[7; 20], &mut out).expect("encode");
        assert_eq!(out.len(), RECORD_HEADER_LEN + IPV6_ADDRESS_HEADER_LEN + 20);
        assert_eq!(out[RECORD_HEADER_LEN], TYPE_IPV6);
        assert_eq!(
            decode_chunked(&out, 3),
            (vec![Owned::Datagram(Some(a6), vec![7; 20])], None)
        );
        // An IPv4-mapped IPv6 address goes out as an IPv4 record.
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:9993".parse().expect("mapped");
        out.clear();
        encode_datagram(mapped, &[1; 16], &mut out).expect("encode");
        assert_eq!(out[RECORD_HEADER_LEN], TYPE_IPV4);
        assert_eq!(
            decode_chunked(&out, 100),
            (
                vec![Owned::Datagram(Some(v4("10.0.0.1:9993")), vec![1; 16])],
                None
            )
        );
    }

    #[test]
    fn type_zero_has_no_address() {
        let mut out = Vec::new();
        encode_record(&[0, 9, 9, 9, 9, 9], &mut out).expect("encode");
        assert_eq!(
            decode_chunked(&out, 100),
            (vec![Owned::Datagram(None, vec![9; 5])], None)
        );
    }

    #[test]
    fn any_four_byte_body_is_a_greeting() {
        // Even one whose first byte looks like a type.
        assert_eq!(
            Record::parse(&[4, 1, 2, 3]),
            Ok(Record::Greeting {
                major: 4,
                minor: 1,
                revision: 0x0203
            })
        );
    }

    #[test]
    fn split_at_every_byte() {
        let mut stream = encode_greeting(1, 14, 1).to_vec();
        let mut expect = vec![Owned::Greeting(1, 14, 1)];
        for (i, len) in [0usize, 1, 16, 28, 1432, 3000].into_iter().enumerate() {
            let addr = v4(&format!("192.0.2.{}:{}", i + 1, 9993 + i));
            let payload: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
            encode_datagram(addr, &payload, &mut stream).expect("encode");
            expect.push(Owned::Datagram(Some(addr), payload));
        }
        let a6: SocketAddr = "[fd00::5]:20000".parse().expect("v6");
        encode_datagram(a6, &[0xaa; 40], &mut stream).expect("encode");
        expect.push(Owned::Datagram(Some(a6), vec![0xaa; 40]));
        // Every split point of the whole stream into two pushes.
        for cut in 0..=stream.len() {
            let mut dec = TunnelDecoder::new();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                assert_eq!(dec.push(part), part.len());
                while let Some(r) = dec.next_record().expect("valid stream") {
                    got.push(own(r));
                }
            }
            assert_eq!(got, expect, "cut at {cut}");
            assert_eq!(dec.buffered(), 0);
        }
        // And one byte at a time.
        assert_eq!(decode_chunked(&stream, 1), (expect.clone(), None));
        assert_eq!(decode_chunked(&stream, 7), (expect, None));
    }

    #[test]
    fn maximum_records_and_bounded_buffer() {
        let big = vec![0x5a; MAX_IPV4_DATAGRAM];
        let mut stream = Vec::new();
        encode_datagram(v4("198.51.100.7:9993"), &big, &mut stream).expect("max v4");
        assert_eq!(stream.len(), MAX_RECORD_LEN);
        encode_datagram(v4("198.51.100.7:9993"), &big, &mut stream).expect("max v4");
        let mut dec = TunnelDecoder::new();
        // One push of two maximum records takes exactly one.
        assert_eq!(dec.push(&stream), MAX_RECORD_LEN);
        assert_eq!(dec.free(), 0);
        assert_eq!(dec.push(&stream[MAX_RECORD_LEN..]), 0);
        match dec.next_record() {
            Ok(Some(Record::Datagram { payload, .. })) => assert_eq!(payload.len(), big.len()),
            other => panic!("{other:?}"),
        }
        assert_eq!(dec.push(&stream[MAX_RECORD_LEN..]), MAX_RECORD_LEN);
        assert!(matches!(
            dec.next_record(),
            Ok(Some(Record::Datagram { .. }))
        ));
        assert_eq!(dec.next_record(), Ok(None));
        assert!(dec.buf.capacity() <= MAX_RECORD_LEN);

        let too_big = vec![0; MAX_IPV4_DATAGRAM + 1];
        let mut out = vec![1, 2, 3];
        assert_eq!(
            encode_datagram(v4("1.2.3.4:5"), &too_big, &mut out),
            Err(TunnelError::PayloadTooLarge {
                len: MAX_IPV4_DATAGRAM + 1,
                max: MAX_IPV4_DATAGRAM
            })
        );
        assert_eq!(out, [1, 2, 3]);
        let a6: SocketAddr = "[::1]:5".parse().expect("v6");
        assert!(encode_datagram(a6, &too_big[..MAX_IPV6_DATAGRAM], &mut out).is_ok());
        assert!(encode_datagram(a6, &too_big[..MAX_IPV6_DATAGRAM + 1], &mut out).is_err());
        assert!(encode_record(&vec![0; MAX_RECORD_BODY + 1], &mut out).is_err());
    }

    #[test]
    fn raw_bodies_for_legacy_clients() {
        let mut stream = Vec::new();
        encode_record(&[0xff; 30], &mut stream).expect("encode");
        encode_record(&[], &mut stream).expect("encode");
        let mut dec = TunnelDecoder::new();
        assert_eq!(dec.push(&stream), stream.len());
        assert_eq!(dec.next_body(), Ok(Some(&[0xff; 30][..])));
        assert_eq!(dec.next_body(), Ok(Some(&[][..])));
        assert_eq!(dec.next_body(), Ok(None));
    }

    #[test]
    fn garbage_is_rejected_early_and_stays_rejected() {
        // An HTTP request: wrong from the first byte.
        let (recs, err) = decode_chunked(b"GET / HTTP/1.1\r\n\r\n", 1);
        assert!(recs.is_empty());
        assert_eq!(
            err,
            Some(TunnelError::BadRecordHeader {
                found: b"G".to_vec()
            })
        );
        // A TLS handshake record (0x16) is not application data.
        let (_, err) = decode_chunked(&[0x16, 0x03, 0x01, 0x00, 0x05], 64);
        assert!(matches!(err, Some(TunnelError::BadRecordHeader { .. })));
        // Wrong version byte after a good record.
        let mut s = GREETING_1_14_1.to_vec();
        s.extend_from_slice(&[0x17, 0x03, 0x01]);
        let (recs, err) = decode_chunked(&s, 64);
        assert_eq!(recs, [Owned::Greeting(1, 14, 1)]);
        assert_eq!(
            err,
            Some(TunnelError::BadRecordHeader {
                found: vec![0x17, 0x03, 0x01]
            })
        );
        // Unknown type byte, empty record, truncated addresses.
        for (body, want) in [
            (
                &[0x05, 1, 2, 3, 4, 5, 6, 7][..],
                TunnelError::UnknownType { ty: 5 },
            ),
            (&[], TunnelError::EmptyRecord),
            (
                &[4, 1, 2, 3, 4, 5],
                TunnelError::Truncated { ty: 4, len: 6 },
            ),
            (&[6; 18], TunnelError::Truncated { ty: 6, len: 18 }),
        ] {
            let mut s = Vec::new();
            encode_record(body, &mut s).expect("encode");
            let mut dec = TunnelDecoder::new();
            dec.push(&s);
            assert_eq!(dec.next_record(), Err(want.clone()));
            // Sticky.
            assert_eq!(dec.next_record(), Err(want.clone()));
            dec.push(&GREETING_1_14_1);
            assert_eq!(dec.next_record(), Err(want));
        }
        // Records that are exactly the address header are fine (empty datagram).
        assert_eq!(
            Record::parse(&[4, 1, 2, 3, 4, 0, 80]),
            Ok(Record::Datagram {
                addr: Some(v4("1.2.3.4:80")),
                payload: &[]
            })
        );
    }

    #[test]
    fn pseudo_random_garbage_never_panics() {
        // splitmix64-driven streams: random bytes, and valid records with random corruption.
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for round in 0..300 {
            let mut s = Vec::new();
            if round % 2 == 0 {
                s.extend((0..(next() % 400)).map(|_| next() as u8));
            } else {
                for _ in 0..(next() % 6) {
                    let len = (next() % 64) as usize;
                    let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    let addr = SocketAddr::new(
                        Ipv4Addr::from((next() as u32).to_be_bytes()).into(),
                        next() as u16,
                    );
                    encode_datagram(addr, &payload, &mut s).expect("encode");
                }
                if !s.is_empty() {
                    let i = (next() as usize) % s.len();
                    s[i] = next() as u8;
                }
            }
            let chunk = 1 + (next() % 17) as usize;
            let _ = decode_chunked(&s, chunk);
            let mut dec = TunnelDecoder::new();
            dec.push(&s);
            while let Ok(Some(_)) = dec.next_body() {}
        }
    }
}
