//! The dictionary text format (`key=value` records, escaped values). spec: vl2.md §10, vl1.md §5.11

/// Capacity of a network-config dictionary in the reference (including the NUL).
pub const NETWORK_CONFIG_CAPACITY: usize = 484_520;

/// Errors from parsing a dictionary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DictionaryError {
    /// Input larger than the allowed capacity.
    #[error("dictionary of {len} bytes exceeds capacity {capacity}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Capacity allowed.
        capacity: usize,
    },
    /// A record without `=`.
    #[error("record at byte {offset} has no '='")]
    MissingEquals {
        /// Offset of the record.
        offset: usize,
    },
    /// A record with an empty key.
    #[error("record at byte {offset} has an empty key")]
    EmptyKey {
        /// Offset of the record.
        offset: usize,
    },
    /// A key containing a byte not allowed in keys (NUL, CR, LF, '=').
    #[error("key contains a forbidden byte")]
    BadKey,
}

/// An ordered dictionary. Keys and values are bytes; lookups find the first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dictionary {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

fn escape_into(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        match b {
            0 => out.extend_from_slice(b"\\0"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'=' => out.extend_from_slice(b"\\e"),
            _ => out.push(b),
        }
    }
}

impl Dictionary {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses with the network-config capacity.
    pub fn parse(data: &[u8]) -> Result<Self, DictionaryError> {
        Self::parse_with_capacity(data, NETWORK_CONFIG_CAPACITY)
    }

    /// Parses `data`, stopping at the first NUL; records are separated by CR or LF; empty
    /// records are skipped. Inputs larger than `capacity` are rejected.
    pub fn parse_with_capacity(data: &[u8], capacity: usize) -> Result<Self, DictionaryError> {
        let data = match data.iter().position(|&b| b == 0) {
            Some(n) => &data[..n],
            None => data,
        };
        if data.len() > capacity {
            return Err(DictionaryError::TooLarge {
                len: data.len(),
                capacity,
            });
        }
        let mut entries = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if data[i] == b'\n' || data[i] == b'\r' {
                i += 1;
                continue;
            }
            let start = i;
            let eq = data[i..]
                .iter()
                .position(|&b| b == b'=' || b == b'\n' || b == b'\r')
                .map(|p| p + i);
            let eq = match eq {
                Some(e) if data[e] == b'=' => e,
                _ => return Err(DictionaryError::MissingEquals { offset: start }),
            };
            if eq == start {
                return Err(DictionaryError::EmptyKey { offset: start });
            }
            let key = data[start..eq].to_vec();
            let mut value = Vec::new();
            i = eq + 1;
            while i < data.len() {
                let b = data[i];
                if b == b'\n' || b == b'\r' {
                    break;
                }
                if b == b'\\' {
                    i += 1;
                    match data.get(i) {
                        Some(b'0') => value.push(0),
                        Some(b'r') => value.push(b'\r'),
                        Some(b'n') => value.push(b'\n'),
                        Some(b'e') => value.push(b'='),
                        Some(&c) => value.push(c),
                        None => break,
                    }
                } else {
                    value.push(b);
                }
                i += 1;
            }
            entries.push((key, value));
        }
        Ok(Dictionary { entries })
    }

    /// Serializes: records joined by LF, no trailing LF, no NUL.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(k);
            out.push(b'=');
            escape_into(v, &mut out);
        }
        out
    }

    /// The entries in order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The raw (unescaped) value of the first record with `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// The value as text (lossy UTF-8).
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The value as a hex integer, read like `strtoull(…, 16)`: leading hex digits, empty → 0.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        let mut n: u64 = 0;
        for &b in v.iter().take_while(|b| b.is_ascii_hexdigit()) {
            n = n.wrapping_shl(4) | u64::from((b as char).to_digit(16).unwrap_or(0));
        }
        Some(n)
    }

    /// The value as a boolean: first byte `1`, `t` or `T` is true.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)
            .map(|v| matches!(v.first(), Some(b'1' | b't' | b'T')))
    }

    /// Appends a record. Keys may not contain NUL, CR, LF or '='.
    pub fn add(&mut self, key: &str, value: &[u8]) -> Result<(), DictionaryError> {
        if key.is_empty() || key.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n' | b'=')) {
            return Err(DictionaryError::BadKey);
        }
        self.entries.push((key.as_bytes().to_vec(), value.to_vec()));
        Ok(())
    }

    /// Appends an unsigned integer as 16 lowercase hex digits.
    pub fn add_u64(&mut self, key: &str, v: u64) -> Result<(), DictionaryError> {
        self.add(key, format!("{v:016x}").as_bytes())
    }

    /// Appends a boolean as `1`/`0`.
    pub fn add_bool(&mut self, key: &str, v: bool) -> Result<(), DictionaryError> {
        self.add(key, if v { b"1" } else { b"0" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        let mut d = Dictionary::new();
        d.add("bin", &[0, b'\r', b'\n', b'\\', b'=', 0xff, b'x'])
            .unwrap();
        d.add_u64("v", 7).unwrap();
        d.add_bool("b", true).unwrap();
        let s = d.to_bytes();
        assert_eq!(s, b"bin=\\0\\r\\n\\\\\\e\xffx\nv=0000000000000007\nb=1");
        let back = Dictionary::parse(&s).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.get_u64("v"), Some(7));
        assert_eq!(back.get_bool("b"), Some(true));
        assert!(d.add("a=b", b"").is_err());
    }

    #[test]
    fn reader_rules() {
        let d = Dictionary::parse(b"a=1\r\nb=x\\qy\n\na=2\0junk").unwrap();
        assert_eq!(d.get("a"), Some(&b"1"[..]));
        assert_eq!(d.get("b"), Some(&b"xqy"[..]));
        assert_eq!(d.len(), 3);
        assert_eq!(
            Dictionary::parse(b"novalue\n"),
            Err(DictionaryError::MissingEquals { offset: 0 })
        );
        assert_eq!(
            Dictionary::parse(b"=x"),
            Err(DictionaryError::EmptyKey { offset: 0 })
        );
        assert!(matches!(
            Dictionary::parse_with_capacity(b"a=1234", 3),
            Err(DictionaryError::TooLarge { .. })
        ));
    }
}
