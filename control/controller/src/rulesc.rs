//! The rule-source language compiled to the controller's JSON rule form, so a network's
//! `rulesSource` can be compiled server-side. spec: vl2.md §15.8 (language), §15.7 (JSON form),
//! §15.1–§15.4 (what each rule means)
//!
//! [`compile`] turns source text into base rules, capabilities and tags exactly as the reference
//! compiler's CLI prints them ([`Compiled::to_json`]); every rule it emits is accepted by
//! [`weft_wire::rules::json::rule_from_json`].
//!
//! The language in short (see the spec for the full list of keywords and names):
//!
//! ```text
//! # comments run to the end of the line; tokens are separated by whitespace
//! tag department id 1000 enum 100 sales enum 200 marketing ;
//! cap ssh id 1000 accept ipprotocol tcp and dport 22 ; ;
//! macro allow_port($p) accept ipprotocol tcp and dport $p ; ;
//! drop not ethertype ipv4 and not ethertype arp and not ethertype ipv6 ;
//! include allow_port(443)
//! accept tdiff department 0 ;
//! accept ;
//! ```
//!
//! Choices where the spec leaves room (documented so the API worker and users can rely on them):
//! * tags and macros must be defined before they are used; capabilities are never referenced;
//! * a lone `;` at the top level is an empty statement (so `include m(1);` is accepted);
//! * `tee`/`watch` length `-1` is emitted as 65535 (what the reference controller stores for it;
//!   `0` and `-1` both mean "the whole frame", §15.2);
//! * `ipsrc`/`ipdest` without `/bits` mean a single host (`/32` or `/128`);
//! * `priority` is rejected: the 1.14 controller drops ACTION_PRIORITY (§15.7);
//! * a capability holds at most 64 rules and the base table 1024 (vl2.md §11, §13.2).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::rc::Rc;

use serde_json::{Map, Value, json};
use weft_wire::rules::{MAX_CAPABILITY_RULES, MAX_NETWORK_RULES};

/// How deep `include`s may nest (a macro including itself hits this).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// A compiled rule source. spec: vl2.md §15.8
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compiled {
    /// The base rule table, in the controller's JSON form (vl2.md §15.7).
    pub rules: Vec<Value>,
    /// Capabilities as the network record holds them: `{id, default, rules}`, in source order.
    pub capabilities: Vec<Value>,
    /// Tags as the network record holds them: `{id, default}` (`default` a number or null), in
    /// source order.
    pub tags: Vec<Value>,
    /// Capability ids by name.
    pub capabilities_by_name: BTreeMap<String, u32>,
    /// Tag definitions by name.
    pub tags_by_name: BTreeMap<String, TagDef>,
}

/// A `tag` definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagDef {
    /// The tag id.
    pub id: u32,
    /// The default value given to members that lack the tag (`None`: no default).
    pub default: Option<u32>,
    /// Named values (`enum <value> <name>`).
    pub enums: BTreeMap<String, u32>,
    /// Named bit masks (`flag <bit[,bit…]> <name>`).
    pub flags: BTreeMap<String, u32>,
}

impl Compiled {
    /// The reference CLI's output: `{"config":{"rules","capabilities","tags"},
    /// "capabilitiesByName","tagsByName"}` with `tagsByName` entries `{id, default, enums,
    /// flags}`. spec: vl2.md §15.8
    pub fn to_json(&self) -> Value {
        let tags_by_name: Map<String, Value> = self
            .tags_by_name
            .iter()
            .map(|(name, t)| {
                let v = json!({
                    "id": t.id,
                    "default": t.default,
                    "enums": t.enums,
                    "flags": t.flags,
                });
                (name.clone(), v)
            })
            .collect();
        json!({
            "config": {
                "rules": self.rules,
                "capabilities": self.capabilities,
                "tags": self.tags,
            },
            "capabilitiesByName": self.capabilities_by_name,
            "tagsByName": tags_by_name,
        })
    }
}

/// What went wrong, for callers that branch on it; the message says it for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A word that is not a keyword where one is expected.
    UnknownKeyword,
    /// A keyword without the argument(s) it needs, or a definition without its `id`.
    MissingArgument,
    /// Not a number, or a number out of range.
    BadNumber,
    /// Not a ZeroTier address, MAC address or IP network.
    BadAddress,
    /// A malformed or unknown value (name, range, probability, macro call).
    BadValue,
    /// A tag, capability or macro named with a reserved word.
    ReservedName,
    /// A name that is not an identifier.
    BadName,
    /// A tag, macro, macro parameter or tag value name that is not defined.
    Undefined,
    /// A name, id or property given twice.
    Duplicate,
    /// A keyword in a place where it is not allowed (a match outside a rule block, …).
    Misplaced,
    /// A block not closed with `;` (at the end of the source, or before another block).
    Unterminated,
    /// Something the 1.14 controller does not accept (`priority`).
    Unsupported,
    /// More rules than a base table or capability may hold.
    TooManyRules,
    /// `include`s nested deeper than [`MAX_INCLUDE_DEPTH`].
    TooDeep,
}

/// A compile error at a 1-based line and column (in characters) of the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
#[non_exhaustive]
pub struct CompileError {
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// The kind of error.
    pub kind: ErrorKind,
    /// What is wrong, for people.
    pub message: String,
}

type Result<T> = std::result::Result<T, CompileError>;

// ---------------------------------------------------------------------------------------------
// Vocabulary. spec: vl2.md §15.8

const ACTIONS: &[&str] = &[
    "drop", "accept", "break", "tee", "watch", "redirect", "priority",
];
const MATCHES: &[&str] = &[
    "ztsrc",
    "ztdest",
    "vlan",
    "vlanpcp",
    "vlandei",
    "ethertype",
    "macsrc",
    "macdest",
    "ipsrc",
    "ipdest",
    "iptos",
    "ipprotocol",
    "icmp",
    "sport",
    "dport",
    "chr",
    "framesize",
    "random",
    "tand",
    "tor",
    "txor",
    "tdiff",
    "teq",
    "tseq",
    "treq",
];
const MODIFIERS: &[&str] = &["not", "or", "and"];
const DEFINITIONS: &[&str] = &["tag", "cap", "macro", "include"];
const PROPERTIES: &[&str] = &["id", "default", "enum", "flag"];

/// Ethertype names. spec: vl2.md §15.8
const ETHERTYPES: &[(&str, u16)] = &[
    ("ipv4", 0x0800),
    ("arp", 0x0806),
    ("wol", 0x0842),
    ("rarp", 0x8035),
    ("atalk", 0x809b),
    ("aarp", 0x80f3),
    ("ipx_a", 0x8137),
    ("ipx_b", 0x8138),
    ("ipv6", 0x86dd),
];

/// IP protocol names. spec: vl2.md §15.8
const IP_PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("icmp4", 1),
    ("icmpv4", 1),
    ("igmp", 2),
    ("ipip", 4),
    ("tcp", 6),
    ("egp", 8),
    ("igp", 9),
    ("udp", 17),
    ("rdp", 27),
    ("esp", 50),
    ("ah", 51),
    ("icmp6", 58),
    ("icmpv6", 58),
    ("l2tp", 115),
    ("sctp", 132),
    ("udplite", 136),
];

/// Characteristics bit names, by bit number. spec: vl2.md §15.4, §15.8
const CHARACTERISTICS: &[(&str, u8)] = &[
    ("tcp_fin", 0),
    ("tcp_syn", 1),
    ("tcp_rst", 2),
    ("tcp_psh", 3),
    ("tcp_ack", 4),
    ("tcp_urg", 5),
    ("tcp_ece", 6),
    ("tcp_cwr", 7),
    ("tcp_ns", 8),
    ("tcp_rs2", 9),
    ("tcp_rs1", 10),
    ("tcp_rs0", 11),
    ("macauth", 59),
    ("ipauth", 60),
    ("broadcast", 61),
    ("multicast", 62),
    ("inbound", 63),
];

fn is_action(w: &str) -> bool {
    ACTIONS.contains(&w)
}
fn is_match(w: &str) -> bool {
    MATCHES.contains(&w)
}
fn is_modifier(w: &str) -> bool {
    MODIFIERS.contains(&w)
}
fn is_definition(w: &str) -> bool {
    DEFINITIONS.contains(&w)
}

/// True for the words that cannot name a tag, capability or macro: every keyword of the
/// language. spec: vl2.md §15.8
pub fn is_reserved(word: &str) -> bool {
    is_action(word)
        || is_match(word)
        || is_modifier(word)
        || is_definition(word)
        || PROPERTIES.contains(&word)
}

fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// Where a macro was included (for messages about tokens that came from its body).
#[derive(Debug)]
struct Site {
    name: String,
    line: usize,
    column: usize,
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
    column: usize,
    via: Option<Rc<Site>>,
}

impl Token {
    fn is(&self, s: &str) -> bool {
        self.text == s
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> CompileError {
        let mut message = message.into();
        if let Some(site) = &self.via {
            let _ = write!(
                message,
                " (in macro `{}` included at line {}, column {})",
                site.name, site.line, site.column
            );
        }
        CompileError {
            line: self.line,
            column: self.column,
            kind,
            message,
        }
    }
}

/// Splits the source into whitespace-separated tokens, dropping `#` comments; trailing `;`s of a
/// word become tokens of their own (a token ending in `;` closes a block). spec: vl2.md §15.8
fn lex(source: &str) -> Vec<Token> {
    fn push(out: &mut Vec<Token>, word: &str, line: usize, column: usize) {
        let body = word.trim_end_matches(';');
        if !body.is_empty() {
            out.push(Token {
                text: body.to_owned(),
                line,
                column,
                via: None,
            });
        }
        let body_chars = body.chars().count();
        for k in 0..word.len() - body.len() {
            out.push(Token {
                text: ";".to_owned(),
                line,
                column: column + body_chars + k,
                via: None,
            });
        }
    }
    let mut out = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let mut word: Option<(usize, usize)> = None; // (byte offset, column)
        for (column, (offset, c)) in line.char_indices().enumerate() {
            match (c.is_whitespace(), word) {
                (true, Some((start, col))) => {
                    push(&mut out, &line[start..offset], i + 1, col);
                    word = None;
                }
                (false, None) => word = Some((offset, column + 1)),
                _ => {}
            }
        }
        if let Some((start, col)) = word {
            push(&mut out, &line[start..], i + 1, col);
        }
    }
    out
}

#[derive(Debug)]
struct Cursor {
    toks: Vec<Token>,
    pos: usize,
}

impl Cursor {
    fn new(toks: Vec<Token>) -> Self {
        Cursor { toks, pos: 0 }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    /// The next token as the argument of `owner`; a `;` or the end of the source means the
    /// argument is missing.
    fn arg(&mut self, owner: &Token, what: &str) -> Result<Token> {
        match self.peek() {
            Some(t) if !t.is(";") => {
                let t = t.clone();
                self.pos += 1;
                Ok(t)
            }
            _ => Err(owner.err(
                ErrorKind::MissingArgument,
                format!("`{}` needs {what}", owner.text),
            )),
        }
    }

    /// A comma list that may be spread over several tokens (`a, b ,c`): joins following tokens
    /// while the text so far ends with `,` or the next token starts with one.
    fn comma_list(&mut self, first: Token) -> Token {
        let mut t = first;
        loop {
            match self.peek() {
                Some(n) if !n.is(";") && (t.text.ends_with(',') || n.text.starts_with(',')) => {
                    let n = n.text.clone();
                    self.pos += 1;
                    t.text.push_str(&n);
                }
                _ => break,
            }
        }
        t
    }
}

// ---------------------------------------------------------------------------------------------
// Values

fn parse_uint(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// A decimal or `0x` hex number in `0..=max`.
fn number_in(tok: &Token, s: &str, max: u64, what: &str) -> Result<u64> {
    match parse_uint(s) {
        None => Err(tok.err(
            ErrorKind::BadNumber,
            format!("bad {what} `{s}`: expected a decimal or 0x hex number"),
        )),
        Some(v) if v > max => Err(tok.err(
            ErrorKind::BadNumber,
            format!("{what} `{s}` is out of range (0 to {max})"),
        )),
        Some(v) => Ok(v),
    }
}

fn number(tok: &Token, max: u64, what: &str) -> Result<u64> {
    number_in(tok, &tok.text, max, what)
}

/// `n` or `n-m` (both ends within `0..=max`, start ≤ end).
fn range(tok: &Token, max: u64, what: &str) -> Result<(u64, u64)> {
    let (a, b) = match tok.text.split_once('-') {
        Some((a, b)) => (a, b),
        None => (tok.text.as_str(), tok.text.as_str()),
    };
    let start = number_in(tok, a, max, what)?;
    let end = number_in(tok, b, max, what)?;
    if start > end {
        return Err(tok.err(
            ErrorKind::BadValue,
            format!("{what} range `{}` ends before it starts", tok.text),
        ));
    }
    Ok((start, end))
}

/// A 10-hex-digit ZeroTier address, lowercased.
fn zt_address(tok: &Token) -> Result<String> {
    let s = &tok.text;
    if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(tok.err(
            ErrorKind::BadAddress,
            format!("bad ZeroTier address `{s}`: expected 10 hex digits"),
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// A MAC address (`xx:xx:xx:xx:xx:xx`, `xx-xx-…` or 12 hex digits) in the JSON form
/// `xx:xx:xx:xx:xx:xx`.
fn mac(tok: &Token) -> Result<String> {
    let s = &tok.text;
    let bad = || {
        tok.err(
            ErrorKind::BadAddress,
            format!("bad MAC address `{s}`: expected xx:xx:xx:xx:xx:xx"),
        )
    };
    let digits: String = if s.len() == 17 {
        let sep = s.as_bytes()[2];
        if sep != b':' && sep != b'-' {
            return Err(bad());
        }
        let parts: Vec<&str> = s.split(sep as char).collect();
        if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        parts.concat()
    } else {
        s.clone()
    };
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let d = digits.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..6).map(|i| &d[2 * i..2 * i + 2]).collect();
    Ok(pairs.join(":"))
}

/// `addr[/bits]`, family auto-detected: (is IPv6, `addr/bits` text).
fn ip_network(tok: &Token) -> Result<(bool, String)> {
    let s = &tok.text;
    let bad = |why: &str| {
        tok.err(
            ErrorKind::BadAddress,
            format!("bad IP network `{s}`: {why}"),
        )
    };
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s.as_str(), None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| bad("not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    let bits = match bits {
        None => max,
        Some(b) => match b.parse::<u64>() {
            Ok(n) if n <= max && b.bytes().all(|c| c.is_ascii_digit()) => n,
            _ => return Err(bad(&format!("prefix length must be 0 to {max}"))),
        },
    };
    Ok((addr.is_ipv6(), format!("{addr}/{bits}")))
}

/// A comma list of bit numbers (each ≤ `max_bit`) or, with `names`, bit names: the mask.
fn bits(tok: &Token, max_bit: u64, names: &[(&str, u8)], what: &str) -> Result<u64> {
    let mut mask = 0u64;
    for part in tok.text.split(',') {
        let bit = match lookup(names, part) {
            Some(b) => u64::from(b),
            None if parse_uint(part).is_some() => number_in(tok, part, max_bit, what)?,
            None => {
                return Err(tok.err(
                    ErrorKind::BadValue,
                    format!("unknown {what} `{part}` in `{}`", tok.text),
                ));
            }
        };
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// A probability `0.0`–`1.0` as `floor(p·4294967295)`. spec: vl2.md §15.8
fn probability(tok: &Token) -> Result<u64> {
    let s = &tok.text;
    let bad = || {
        tok.err(
            ErrorKind::BadValue,
            format!("bad probability `{s}`: expected a decimal number from 0.0 to 1.0"),
        )
    };
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    let dots = s.bytes().filter(|&b| b == b'.').count();
    if digits == 0 || dots > 1 || digits + dots != s.len() {
        return Err(bad());
    }
    let p: f64 = s.parse().map_err(|_| bad())?;
    if !(0.0..=1.0).contains(&p) {
        return Err(bad());
    }
    Ok((p * f64::from(u32::MAX)).floor() as u64)
}

/// A name for a tag, capability or macro: an identifier that is not a reserved word.
fn definition_name(tok: &Token, what: &str) -> Result<String> {
    if is_reserved(&tok.text) {
        return Err(tok.err(
            ErrorKind::ReservedName,
            format!("`{}` is a reserved word and cannot name a {what}", tok.text),
        ));
    }
    value_name(tok, what)
}

/// An identifier: a letter or `_`, then letters, digits, `_`, `-` or `.`.
fn value_name(tok: &Token, what: &str) -> Result<String> {
    let s = &tok.text;
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !ok {
        return Err(tok.err(
            ErrorKind::BadName,
            format!(
                "`{s}` is not a valid {what} name (a letter or `_`, then letters, digits, `_`, `-`, `.`)"
            ),
        ));
    }
    Ok(s.clone())
}

/// The error for a token that cannot appear inside the block opened by `open`.
fn inside_block_error(tok: &Token, open: &Token, expected: &str) -> CompileError {
    let t = tok.text.as_str();
    if is_action(t) || is_definition(t) {
        tok.err(
            ErrorKind::Unterminated,
            format!(
                "`{t}` cannot appear inside the `{}` block at line {}, column {}: end that block with `;` first",
                open.text, open.line, open.column
            ),
        )
    } else if is_match(t) || is_modifier(t) {
        tok.err(
            ErrorKind::Misplaced,
            format!("match `{t}` outside a rule block (rule blocks start with an action such as `accept` or `drop`)"),
        )
    } else if PROPERTIES.contains(&t) {
        tok.err(
            ErrorKind::Misplaced,
            format!("`{t}` is not allowed here (expected {expected})"),
        )
    } else {
        tok.err(
            ErrorKind::UnknownKeyword,
            format!("unknown keyword `{t}` (expected {expected})"),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The compiler

#[derive(Debug, Clone)]
struct Macro {
    params: Vec<String>,
    body: Vec<Token>,
}

#[derive(Debug)]
struct Cap {
    name: String,
    id: u32,
    default: bool,
    rules: Vec<Value>,
}

#[derive(Debug, Default)]
struct Compiler {
    tags: Vec<(String, TagDef)>,
    caps: Vec<Cap>,
    macros: BTreeMap<String, Macro>,
}

/// Compiles rule source text. spec: vl2.md §15.8
pub fn compile(source: &str) -> std::result::Result<Compiled, CompileError> {
    let mut c = Compiler::default();
    let mut cur = Cursor::new(lex(source));
    let mut rules = Vec::new();
    while let Some(tok) = cur.next() {
        match tok.text.as_str() {
            ";" => {}
            "tag" => c.tag(&mut cur, &tok)?,
            "cap" => c.cap(&mut cur, &tok)?,
            "macro" => c.macro_def(&mut cur, &tok)?,
            _ => {
                if !c.rule_item(&mut cur, &tok, &mut rules, 0)? {
                    return Err(inside_block_error(
                        &tok,
                        &tok,
                        "an action, `tag`, `cap`, `macro` or `include`",
                    ));
                }
                if rules.len() > MAX_NETWORK_RULES {
                    return Err(tok.err(
                        ErrorKind::TooManyRules,
                        format!("more than {MAX_NETWORK_RULES} base rules"),
                    ));
                }
            }
        }
    }
    Ok(c.finish(rules))
}

impl Compiler {
    fn finish(self, rules: Vec<Value>) -> Compiled {
        Compiled {
            rules,
            capabilities: self
                .caps
                .iter()
                .map(|c| json!({"id": c.id, "default": c.default, "rules": c.rules}))
                .collect(),
            tags: self
                .tags
                .iter()
                .map(|(_, t)| json!({"id": t.id, "default": t.default}))
                .collect(),
            capabilities_by_name: self.caps.iter().map(|c| (c.name.clone(), c.id)).collect(),
            tags_by_name: self.tags.into_iter().collect(),
        }
    }

    /// An action block or an `include` (what rule lists are made of); `false` for anything else.
    fn rule_item(
        &mut self,
        cur: &mut Cursor,
        tok: &Token,
        out: &mut Vec<Value>,
        depth: usize,
    ) -> Result<bool> {
        if is_action(&tok.text) {
            self.action(cur, tok, out)?;
            Ok(true)
        } else if tok.is("include") {
            self.include(cur, tok, out, depth)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// `tag <name> id <n> [default <v>] [enum <value> <name>]… [flag <bit[,bit…]> <name>]… ;`
    fn tag(&mut self, cur: &mut Cursor, open: &Token) -> Result<()> {
        let name_tok = cur.arg(open, "a tag name")?;
        let name = definition_name(&name_tok, "tag")?;
        if self.tags.iter().any(|(n, _)| *n == name) {
            return Err(name_tok.err(
                ErrorKind::Duplicate,
                format!("tag `{name}` is already defined"),
            ));
        }
        let mut def = TagDef::default();
        let mut id = None;
        let mut default_tok: Option<Token> = None;
        loop {
            let Some(tok) = cur.next() else {
                return Err(unterminated(open));
            };
            match tok.text.as_str() {
                ";" => break,
                "id" => {
                    let t = cur.arg(&tok, "a tag id")?;
                    let v = number(&t, u64::from(u32::MAX), "tag id")? as u32;
                    if id.is_some() {
                        return Err(t.err(ErrorKind::Duplicate, "the tag's `id` is given twice"));
                    }
                    if let Some((other, _)) = self.tags.iter().find(|(_, d)| d.id == v) {
                        return Err(t.err(
                            ErrorKind::Duplicate,
                            format!("tag id {v} is already used by tag `{other}`"),
                        ));
                    }
                    id = Some(v);
                }
                "default" => {
                    let t = cur.arg(&tok, "a default value")?;
                    if default_tok.is_some() {
                        return Err(
                            t.err(ErrorKind::Duplicate, "the tag's `default` is given twice")
                        );
                    }
                    default_tok = Some(t);
                }
                "enum" | "flag" => {
                    let is_enum = tok.is("enum");
                    let vt = cur.arg(&tok, "a value and a name")?;
                    let value = if is_enum {
                        number(&vt, u64::from(u32::MAX), "enum value")? as u32
                    } else {
                        let vt = cur.comma_list(vt);
                        bits(&vt, 31, &[], "flag bit")? as u32
                    };
                    let nt = cur.arg(&tok, "a value and a name")?;
                    let n = value_name(&nt, if is_enum { "enum" } else { "flag" })?;
                    if def.enums.contains_key(&n) || def.flags.contains_key(&n) {
                        return Err(nt.err(
                            ErrorKind::Duplicate,
                            format!("tag `{name}` already has a value named `{n}`"),
                        ));
                    }
                    if is_enum {
                        def.enums.insert(n, value);
                    } else {
                        def.flags.insert(n, value);
                    }
                }
                _ => {
                    return Err(inside_block_error(
                        &tok,
                        open,
                        "`id`, `default`, `enum`, `flag` or `;`",
                    ));
                }
            }
        }
        let Some(id) = id else {
            return Err(name_tok.err(
                ErrorKind::MissingArgument,
                format!("tag `{name}` has no `id`"),
            ));
        };
        def.id = id;
        def.default = match default_tok {
            Some(t) => Some(tag_value(&t, Some((&name, &def)))?),
            None => None,
        };
        self.tags.push((name, def));
        Ok(())
    }

    /// `cap <name> id <n> [default] <actions…> ;`
    fn cap(&mut self, cur: &mut Cursor, open: &Token) -> Result<()> {
        let name_tok = cur.arg(open, "a capability name")?;
        let name = definition_name(&name_tok, "capability")?;
        if self.caps.iter().any(|c| c.name == name) {
            return Err(name_tok.err(
                ErrorKind::Duplicate,
                format!("capability `{name}` is already defined"),
            ));
        }
        let mut id = None;
        let mut default = false;
        let mut rules = Vec::new();
        loop {
            let Some(tok) = cur.next() else {
                return Err(unterminated(open));
            };
            match tok.text.as_str() {
                ";" => break,
                "id" => {
                    let t = cur.arg(&tok, "a capability id")?;
                    let v = number(&t, u64::from(u32::MAX), "capability id")? as u32;
                    if id.is_some() {
                        return Err(
                            t.err(ErrorKind::Duplicate, "the capability's `id` is given twice")
                        );
                    }
                    if let Some(other) = self.caps.iter().find(|c| c.id == v) {
                        return Err(t.err(
                            ErrorKind::Duplicate,
                            format!("capability id {v} is already used by `{}`", other.name),
                        ));
                    }
                    id = Some(v);
                }
                "default" => default = true,
                _ => {
                    if !self.rule_item(cur, &tok, &mut rules, 0)? {
                        return Err(inside_block_error(
                            &tok,
                            open,
                            "`id`, `default`, an action, `include` or `;`",
                        ));
                    }
                    if rules.len() > MAX_CAPABILITY_RULES {
                        return Err(tok.err(
                            ErrorKind::TooManyRules,
                            format!(
                                "capability `{name}` has more than {MAX_CAPABILITY_RULES} rules"
                            ),
                        ));
                    }
                }
            }
        }
        let Some(id) = id else {
            return Err(name_tok.err(
                ErrorKind::MissingArgument,
                format!("capability `{name}` has no `id`"),
            ));
        };
        self.caps.push(Cap {
            name,
            id,
            default,
            rules,
        });
        Ok(())
    }

    /// `macro <name>(<$params…>) <actions and includes…> ;` — the body is kept as tokens and
    /// compiled where it is included.
    fn macro_def(&mut self, cur: &mut Cursor, open: &Token) -> Result<()> {
        let (name_tok, args) = invocation(cur, open)?;
        let name = definition_name(&name_tok, "macro")?;
        if self.macros.contains_key(&name) {
            return Err(name_tok.err(
                ErrorKind::Duplicate,
                format!("macro `{name}` is already defined"),
            ));
        }
        let mut params: Vec<String> = Vec::new();
        for p in args {
            let ok = p.strip_prefix('$').is_some_and(|n| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            if !ok {
                return Err(name_tok.err(
                    ErrorKind::BadName,
                    format!("macro parameter `{p}` must be `$` followed by letters, digits or `_`"),
                ));
            }
            if params.contains(&p) {
                return Err(name_tok.err(
                    ErrorKind::Duplicate,
                    format!("macro parameter `{p}` is given twice"),
                ));
            }
            params.push(p);
        }
        let mut body = Vec::new();
        let mut block: Option<Token> = None;
        loop {
            let Some(tok) = cur.next() else {
                return Err(unterminated(block.as_ref().unwrap_or(open)));
            };
            if let Some(b) = &block {
                if tok.is(";") {
                    block = None;
                } else if is_action(&tok.text) || is_definition(&tok.text) {
                    return Err(inside_block_error(&tok, b, ""));
                }
                body.push(tok);
                continue;
            }
            if tok.is(";") {
                break;
            } else if is_action(&tok.text) {
                block = Some(tok.clone());
                body.push(tok);
            } else if tok.is("include") {
                let start = cur.pos;
                invocation(cur, &tok)?;
                body.push(tok);
                body.extend(cur.toks[start..cur.pos].iter().cloned());
            } else {
                return Err(inside_block_error(
                    &tok,
                    open,
                    "an action, `include` or `;`",
                ));
            }
        }
        self.macros.insert(name, Macro { params, body });
        Ok(())
    }

    /// `include <name>(<args…>)`: the macro's body with `$param`s replaced, compiled here.
    fn include(
        &mut self,
        cur: &mut Cursor,
        open: &Token,
        out: &mut Vec<Value>,
        depth: usize,
    ) -> Result<()> {
        let (name_tok, args) = invocation(cur, open)?;
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(open.err(
                ErrorKind::TooDeep,
                format!(
                    "includes nested more than {MAX_INCLUDE_DEPTH} deep (a macro including itself?)"
                ),
            ));
        }
        let Some(m) = self.macros.get(&name_tok.text).cloned() else {
            return Err(name_tok.err(
                ErrorKind::Undefined,
                format!("undefined macro `{}`", name_tok.text),
            ));
        };
        if args.len() != m.params.len() {
            return Err(name_tok.err(
                ErrorKind::BadValue,
                format!(
                    "macro `{}` takes {} argument(s), {} given",
                    name_tok.text,
                    m.params.len(),
                    args.len()
                ),
            ));
        }
        let site = Rc::new(Site {
            name: name_tok.text.clone(),
            line: open.line,
            column: open.column,
        });
        let body = m
            .body
            .iter()
            .map(|t| substitute(t, &m.params, &args, &site))
            .collect::<Result<Vec<_>>>()?;
        let mut sub = Cursor::new(body);
        while let Some(tok) = sub.next() {
            if !self.rule_item(&mut sub, &tok, out, depth + 1)? {
                return Err(inside_block_error(&tok, open, "an action or `include`"));
            }
        }
        Ok(())
    }

    /// One action block: `<action> [args] <match terms…> ;` → the matches, then the action.
    fn action(&mut self, cur: &mut Cursor, open: &Token, out: &mut Vec<Value>) -> Result<()> {
        let action = match open.text.as_str() {
            "drop" => json!({"type": "ACTION_DROP"}),
            "accept" => json!({"type": "ACTION_ACCEPT"}),
            "break" => json!({"type": "ACTION_BREAK"}),
            "tee" | "watch" => {
                let what = "a maximum length (0 or -1: whole frame) and a ZeroTier address";
                let lt = cur.arg(open, what)?;
                // spec: vl2.md §15.8 — tee/watch emit address and length, no flags
                let length = if lt.is("-1") {
                    u64::from(u16::MAX)
                } else {
                    number(&lt, u64::from(u16::MAX), "maximum length")?
                };
                let address = zt_address(&cur.arg(open, what)?)?;
                let t = if open.is("tee") {
                    "ACTION_TEE"
                } else {
                    "ACTION_WATCH"
                };
                json!({"type": t, "address": address, "length": length})
            }
            "redirect" => {
                let address = zt_address(&cur.arg(open, "a ZeroTier address")?)?;
                json!({"type": "ACTION_REDIRECT", "address": address})
            }
            // spec: vl2.md §15.7 — ACTION_PRIORITY is not accepted by the 1.14 controller
            _ => {
                return Err(open.err(
                    ErrorKind::Unsupported,
                    format!(
                        "`{}` is not supported: the 1.14 controller drops ACTION_PRIORITY",
                        open.text
                    ),
                ));
            }
        };
        let mut matches = Vec::new();
        loop {
            let Some(tok) = cur.next() else {
                return Err(unterminated(open));
            };
            if tok.is(";") {
                break;
            }
            matches.push(self.match_term(cur, open, tok)?);
        }
        out.extend(matches);
        out.push(action);
        Ok(())
    }

    /// `[not] [or|and] <match> <args…>` → one match rule with `not` and `or`.
    fn match_term(&self, cur: &mut Cursor, open: &Token, first: Token) -> Result<Value> {
        let (mut not, mut or) = (false, false);
        let mut kw = first;
        while is_modifier(&kw.text) {
            match kw.text.as_str() {
                "not" => not = true,
                "or" => or = true,
                _ => or = false,
            }
            kw = cur.arg(&kw, "a match after it")?;
        }
        let k = kw.text.as_str();
        if !is_match(k) {
            if is_action(k) || is_definition(k) {
                return Err(inside_block_error(&kw, open, ""));
            }
            return Err(kw.err(ErrorKind::UnknownKeyword, format!("unknown match `{k}`")));
        }
        let mut v = json!({"type": "", "not": not, "or": or});
        let ty = match k {
            "ztsrc" | "ztdest" => {
                v["zt"] = json!(zt_address(&cur.arg(&kw, "a ZeroTier address")?)?);
                if k == "ztsrc" {
                    "MATCH_SOURCE_ZEROTIER_ADDRESS"
                } else {
                    "MATCH_DEST_ZEROTIER_ADDRESS"
                }
            }
            "vlan" => {
                v["vlanId"] = json!(number(&cur.arg(&kw, "a VLAN id")?, 4095, "VLAN id")?);
                "MATCH_VLAN_ID"
            }
            "vlanpcp" => {
                v["vlanPcp"] = json!(number(&cur.arg(&kw, "a VLAN PCP")?, 7, "VLAN PCP")?);
                "MATCH_VLAN_PCP"
            }
            "vlandei" => {
                v["vlanDei"] = json!(number(&cur.arg(&kw, "a VLAN DEI")?, 1, "VLAN DEI")?);
                "MATCH_VLAN_DEI"
            }
            "ethertype" => {
                let t = cur.arg(&kw, "an ethertype number or name")?;
                let e = match lookup(ETHERTYPES, &t.text) {
                    Some(e) => u64::from(e),
                    None => number(&t, 0xffff, "ethertype")?,
                };
                v["etherType"] = json!(e);
                "MATCH_ETHERTYPE"
            }
            "macsrc" | "macdest" => {
                v["mac"] = json!(mac(&cur.arg(&kw, "a MAC address")?)?);
                if k == "macsrc" {
                    "MATCH_MAC_SOURCE"
                } else {
                    "MATCH_MAC_DEST"
                }
            }
            "ipsrc" | "ipdest" => {
                let (v6, ip) = ip_network(&cur.arg(&kw, "an IP network (address/bits)")?)?;
                v["ip"] = json!(ip);
                match (v6, k == "ipsrc") {
                    (false, true) => "MATCH_IPV4_SOURCE",
                    (false, false) => "MATCH_IPV4_DEST",
                    (true, true) => "MATCH_IPV6_SOURCE",
                    (true, false) => "MATCH_IPV6_DEST",
                }
            }
            "iptos" => {
                let what = "a mask and a value or range";
                let mask = number(&cur.arg(&kw, what)?, 0xff, "TOS mask")?;
                let (start, end) = range(&cur.arg(&kw, what)?, 0xff, "TOS")?;
                v["mask"] = json!(mask);
                v["start"] = json!(start);
                v["end"] = json!(end);
                "MATCH_IP_TOS"
            }
            "ipprotocol" => {
                let t = cur.arg(&kw, "an IP protocol number or name")?;
                let p = match lookup(IP_PROTOCOLS, &t.text) {
                    Some(p) => u64::from(p),
                    None => number(&t, 0xff, "IP protocol")?,
                };
                v["ipProtocol"] = json!(p);
                "MATCH_IP_PROTOCOL"
            }
            "icmp" => {
                let what = "an ICMP type and a code (-1: any code)";
                let ty = number(&cur.arg(&kw, what)?, 0xff, "ICMP type")?;
                let ct = cur.arg(&kw, what)?;
                // spec: vl2.md §15.8 — code -1 is emitted as null (any code)
                let code = if ct.is("-1") {
                    Value::Null
                } else {
                    json!(number(&ct, 0xff, "ICMP code")?)
                };
                v["icmpType"] = json!(ty);
                v["icmpCode"] = code;
                "MATCH_ICMP"
            }
            "sport" | "dport" | "framesize" => {
                let what = if k == "framesize" {
                    "frame size"
                } else {
                    "port"
                };
                let (start, end) = range(&cur.arg(&kw, "a number or range")?, 0xffff, what)?;
                v["start"] = json!(start);
                v["end"] = json!(end);
                match k {
                    "sport" => "MATCH_IP_SOURCE_PORT_RANGE",
                    "dport" => "MATCH_IP_DEST_PORT_RANGE",
                    _ => "MATCH_FRAME_SIZE_RANGE",
                }
            }
            "chr" => {
                let t = cur.arg(&kw, "a comma list of characteristics")?;
                let t = cur.comma_list(t);
                let mask = bits(&t, 63, CHARACTERISTICS, "characteristic")?;
                // spec: vl2.md §15.8 — the mask is 16 hex digits
                v["mask"] = json!(format!("{mask:016x}"));
                "MATCH_CHARACTERISTICS"
            }
            "random" => {
                v["probability"] = json!(probability(
                    &cur.arg(&kw, "a probability from 0.0 to 1.0")?
                )?);
                "MATCH_RANDOM"
            }
            _ => {
                let what = "a tag (name or id) and a value (number, enum or flag name)";
                let tt = cur.arg(&kw, what)?;
                let tag = self.tag_ref(&tt)?;
                let value = tag_value(&cur.arg(&kw, what)?, tag.1)?;
                v["id"] = json!(tag.0);
                v["value"] = json!(value);
                match k {
                    "tand" => "MATCH_TAGS_BITWISE_AND",
                    "tor" => "MATCH_TAGS_BITWISE_OR",
                    "txor" => "MATCH_TAGS_BITWISE_XOR",
                    "tdiff" => "MATCH_TAGS_DIFFERENCE",
                    "teq" => "MATCH_TAGS_EQUAL",
                    "tseq" => "MATCH_TAG_SENDER",
                    _ => "MATCH_TAG_RECEIVER",
                }
            }
        };
        v["type"] = json!(ty);
        Ok(v)
    }

    /// A tag by name or by numeric id: its id and, when defined, its name and definition.
    fn tag_ref<'a>(&'a self, tok: &Token) -> Result<(u32, Option<(&'a str, &'a TagDef)>)> {
        if parse_uint(&tok.text).is_some() {
            let id = number(tok, u64::from(u32::MAX), "tag id")? as u32;
            let def = self.tags.iter().find(|(_, d)| d.id == id);
            return Ok((id, def.map(|(n, d)| (n.as_str(), d))));
        }
        match self.tags.iter().find(|(n, _)| *n == tok.text) {
            Some((n, d)) => Ok((d.id, Some((n.as_str(), d)))),
            None => Err(tok.err(
                ErrorKind::Undefined,
                format!(
                    "undefined tag `{}` (tags must be defined before use)",
                    tok.text
                ),
            )),
        }
    }
}

/// A tag value: a number, or an enum or flag name of the tag.
fn tag_value(tok: &Token, tag: Option<(&str, &TagDef)>) -> Result<u32> {
    if parse_uint(&tok.text).is_some() {
        return Ok(number(tok, u64::from(u32::MAX), "tag value")? as u32);
    }
    let found = tag.and_then(|(_, d)| {
        d.enums
            .get(&tok.text)
            .or_else(|| d.flags.get(&tok.text))
            .copied()
    });
    match (found, tag) {
        (Some(v), _) => Ok(v),
        (None, Some((name, _))) => Err(tok.err(
            ErrorKind::Undefined,
            format!("tag `{name}` has no enum or flag named `{}`", tok.text),
        )),
        (None, None) => Err(tok.err(
            ErrorKind::BadNumber,
            format!(
                "bad tag value `{}`: expected a number (the tag is not defined, so it has no value names)",
                tok.text
            ),
        )),
    }
}

fn unterminated(open: &Token) -> CompileError {
    open.err(
        ErrorKind::Unterminated,
        format!(
            "`{}` block is not terminated with `;` before the end of the source",
            open.text
        ),
    )
}

/// `name`, `name()` or `name(a,b,…)`, possibly spread over several tokens: the name token and
/// the arguments.
fn invocation(cur: &mut Cursor, owner: &Token) -> Result<(Token, Vec<String>)> {
    let first = cur.arg(owner, "a macro name")?;
    let mut text = first.text.clone();
    if !text.contains('(') && cur.peek().is_some_and(|t| t.text.starts_with('(')) {
        text.push_str(&cur.toks[cur.pos].text);
        cur.pos += 1;
    }
    let opens = |s: &str| s.matches('(').count();
    let closes = |s: &str| s.matches(')').count();
    while opens(&text) > closes(&text) {
        match cur.peek() {
            Some(t) if !t.is(";") => {
                text.push_str(&t.text);
                cur.pos += 1;
            }
            _ => {
                return Err(first.err(
                    ErrorKind::BadValue,
                    format!("`{text}`: `(` without a closing `)`"),
                ));
            }
        }
    }
    let (name, args) = match text.split_once('(') {
        None => (text.clone(), Vec::new()),
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')').filter(|i| !i.contains(['(', ')']));
            let Some(inner) = inner else {
                return Err(first.err(
                    ErrorKind::BadValue,
                    format!("malformed macro call `{text}`: expected name(arg, …)"),
                ));
            };
            let args: Vec<String> = if inner.is_empty() {
                Vec::new()
            } else {
                inner.split(',').map(str::to_owned).collect()
            };
            if args.iter().any(String::is_empty) {
                return Err(first.err(
                    ErrorKind::BadValue,
                    format!("malformed macro call `{text}`: empty argument"),
                ));
            }
            (name.to_owned(), args)
        }
    };
    if name.is_empty() {
        return Err(first.err(ErrorKind::BadName, format!("`{text}`: missing macro name")));
    }
    Ok((
        Token {
            text: name,
            ..first
        },
        args,
    ))
}

/// A macro body token with every `$param` replaced by its argument.
fn substitute(tok: &Token, params: &[String], args: &[String], site: &Rc<Site>) -> Result<Token> {
    let mut out = Token {
        text: String::new(),
        via: Some(site.clone()),
        ..tok.clone()
    };
    let mut rest = tok.text.as_str();
    while let Some(i) = rest.find('$') {
        out.text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let param = &rest[i..i + 1 + len];
        match params.iter().position(|p| p == param) {
            Some(k) => out.text.push_str(&args[k]),
            None => {
                return Err(out.err(
                    ErrorKind::Undefined,
                    format!("undefined macro parameter `{param}`"),
                ));
            }
        }
        rest = &after[len..];
    }
    out.text.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::rules::json::{rule_from_json, rule_to_json};
    use weft_wire::rules::{Rule, decode_all, encode_all};

    fn ok(src: &str) -> Compiled {
        compile(src).unwrap_or_else(|e| panic!("{src:?}: {e}"))
    }

    /// The rules of a one-block source, without the final action.
    fn matches(src: &str) -> Vec<Value> {
        let mut r = ok(src).rules;
        r.pop();
        r
    }

    fn one(src: &str) -> Value {
        let m = matches(src);
        assert_eq!(m.len(), 1, "{src}: {m:?}");
        m.into_iter().next().unwrap_or_default()
    }

    fn err(src: &str) -> CompileError {
        match compile(src) {
            Ok(c) => panic!("{src:?} compiled: {:?}", c.rules),
            Err(e) => e,
        }
    }

    /// Asserts the kind and 1-based position of the error `src` gives.
    #[track_caller]
    fn err_at(src: &str, kind: ErrorKind, line: usize, column: usize) -> String {
        let e = err(src);
        assert_eq!(
            (e.kind, e.line, e.column),
            (kind, line, column),
            "{src:?}: {e}"
        );
        e.message
    }

    /// Every rule parses with the controller's reader (none dropped), encodes to binary and
    /// decodes back to the same rules; returns the binary form as hex.
    fn wire(rules: &[Value]) -> String {
        let parsed: Vec<Rule> = rules
            .iter()
            .map(|r| {
                rule_from_json(r)
                    .unwrap_or_else(|e| panic!("{r}: {e}"))
                    .unwrap_or_else(|| panic!("{r}: dropped by the controller"))
            })
            .collect();
        let mut bin = Vec::new();
        encode_all(&parsed, &mut bin);
        let decoded = decode_all(&bin, 4096).unwrap();
        assert_eq!(decoded, parsed);
        // and the controller's re-rendering reads back the same
        for r in &decoded {
            assert_eq!(rule_from_json(&rule_to_json(r)).unwrap().as_ref(), Some(r));
        }
        bin.iter().map(|b| format!("{b:02x}")).collect()
    }

    // The bundled example source, reconstructed to give the CLI output shown in the spec.
    const EXAMPLE: &str = "\
# Allow only IPv4, ARP and IPv6
drop
  not ethertype ipv4
  and not ethertype arp
  and not ethertype ipv6
;

# Which department a member is in
tag department
  id 1000
  enum 100 sales
  enum 200 marketing
  enum 300 accounting
  enum 400 engineering
;

# Members holding this capability may SSH
cap ssh
  id 1000
  accept
    ipprotocol tcp
    and dport 22
  ;
;

# Members of the same department may talk
accept tdiff department 0;

accept;
";

    // spec: vl2.md §15.8 — the verified CLI output of the bundled example
    #[test]
    fn verified_example() {
        let c = ok(EXAMPLE);
        let out = c.to_json();
        let rules = out["config"]["rules"].as_array().unwrap();
        // the prefix the spec shows
        assert_eq!(
            rules[0],
            json!({"type":"MATCH_ETHERTYPE","not":true,"or":false,"etherType":2048})
        );
        // the suffix the spec shows
        let tail: Value = serde_json::from_str(
            r#"[{"type":"ACTION_DROP"},{"type":"MATCH_TAGS_DIFFERENCE","not":false,"or":false,"id":1000,"value":0},
                {"type":"ACTION_ACCEPT"},{"type":"ACTION_ACCEPT"}]"#,
        )
        .unwrap();
        assert_eq!(Value::from(rules[rules.len() - 4..].to_vec()), tail);
        // the elided middle: the other two ethertypes
        assert_eq!(rules.len(), 7);
        assert_eq!(
            rules[1],
            json!({"type":"MATCH_ETHERTYPE","not":true,"or":false,"etherType":2054})
        );
        assert_eq!(
            rules[2],
            json!({"type":"MATCH_ETHERTYPE","not":true,"or":false,"etherType":34525})
        );
        let shown: Value = serde_json::from_str(
            r#"{"capabilities":[{"id":1000,"default":false,"rules":[{"type":"MATCH_IP_PROTOCOL","not":false,"or":false,"ipProtocol":6},
                {"type":"MATCH_IP_DEST_PORT_RANGE","not":false,"or":false,"start":22,"end":22},{"type":"ACTION_ACCEPT"}]}],
                "tags":[{"id":1000,"default":null}]}"#,
        )
        .unwrap();
        assert_eq!(out["config"]["capabilities"], shown["capabilities"]);
        assert_eq!(out["config"]["tags"], shown["tags"]);
        assert_eq!(out["capabilitiesByName"], json!({"ssh": 1000}));
        assert_eq!(
            out["tagsByName"],
            json!({"department": {"id": 1000, "default": null, "flags": {},
                "enums": {"sales": 100, "marketing": 200, "accounting": 300, "engineering": 400}}})
        );
        // exactly these top-level keys
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["capabilitiesByName", "config", "tagsByName"]);
        assert_eq!(out["config"].as_object().unwrap().len(), 3);
        // the binary forms (vl2.md §15.1 example blobs)
        assert_eq!(
            wire(&c.rules),
            "a5020800a5020806a50286dd00002c08000003e8000000000100".to_owned() + "0100"
        );
        let cap_rules = c.capabilities[0]["rules"].as_array().unwrap();
        assert_eq!(wire(cap_rules), "2401062804001600160100");
    }

    // spec: vl2.md §15.1 — the verified example blobs, from source
    #[test]
    fn spec_blobs() {
        let cases = [
            ("accept not ethertype 0x0800;", "a5020800"),
            ("accept tdiff 1000 0;", "2c08000003e800000000"),
            ("accept ipsrc 10.147.17.0/24;", "1f050a93110018"),
            ("accept icmp 8 -1;", "2603080000"),
            ("accept chr tcp_syn;", "29080000000000000002"),
            ("accept macsrc 02:11:22:33:44:55;", "1d06021122334455"),
            ("accept random 0.5;", "2b047fffffff"),
        ];
        for (src, hex) in cases {
            assert_eq!(wire(&ok(src).rules), format!("{hex}0100"), "{src}");
        }
        assert_eq!(
            wire(&ok("tee 64 deadbeef01;").rules),
            "020e000000deadbeef01000000000040"
        );
    }

    #[test]
    fn lexing_comments_and_terminators() {
        // `;` glued to the last argument, `#` mid-line and alone, tabs, CRLF
        let c = ok("accept dport 22;# ssh\r\n\t# nothing\n  drop\tsport 1-2 ;;\naccept;");
        assert_eq!(
            c.rules,
            vec![
                json!({"type":"MATCH_IP_DEST_PORT_RANGE","not":false,"or":false,"start":22,"end":22}),
                json!({"type":"ACTION_ACCEPT"}),
                json!({"type":"MATCH_IP_SOURCE_PORT_RANGE","not":false,"or":false,"start":1,"end":2}),
                json!({"type":"ACTION_DROP"}),
                json!({"type":"ACTION_ACCEPT"}),
            ]
        );
        assert_eq!(ok("").to_json()["config"]["rules"], json!([]));
        assert_eq!(ok("# only a comment\n;").rules, Vec::<Value>::new());
        // columns count characters, not bytes
        err_at("# é\n  accept é;", ErrorKind::UnknownKeyword, 2, 10);
        err_at("accept\u{e9}\u{e9} x;", ErrorKind::UnknownKeyword, 1, 1);
    }

    #[test]
    fn actions() {
        let c = ok(
            "drop; accept; break;\ntee -1 DEADBEEF01; tee 0 deadbeef01 ethertype arp;\nwatch 128 0102030405;\nredirect 0a33989140 not ipprotocol udp;",
        );
        assert_eq!(
            c.rules,
            vec![
                json!({"type":"ACTION_DROP"}),
                json!({"type":"ACTION_ACCEPT"}),
                json!({"type":"ACTION_BREAK"}),
                json!({"type":"ACTION_TEE","address":"deadbeef01","length":65535}),
                json!({"type":"MATCH_ETHERTYPE","not":false,"or":false,"etherType":2054}),
                json!({"type":"ACTION_TEE","address":"deadbeef01","length":0}),
                json!({"type":"ACTION_WATCH","address":"0102030405","length":128}),
                json!({"type":"MATCH_IP_PROTOCOL","not":true,"or":false,"ipProtocol":17}),
                json!({"type":"ACTION_REDIRECT","address":"0a33989140"}),
            ]
        );
        wire(&c.rules);
        err_at("\n priority 3;", ErrorKind::Unsupported, 2, 2);
    }

    #[test]
    fn modifiers() {
        let r = matches(
            "accept ethertype arp or ethertype ipv4 and not vlan 1 not or vlan 2 or not vlan 3 and vlan 4;",
        );
        let flags: Vec<(bool, bool)> = r
            .iter()
            .map(|m| (m["not"].as_bool().unwrap(), m["or"].as_bool().unwrap()))
            .collect();
        assert_eq!(
            flags,
            [
                (false, false),
                (false, true),
                (true, false),
                (true, true),
                (true, true),
                (false, false)
            ]
        );
        err_at("accept not;", ErrorKind::MissingArgument, 1, 8);
        err_at("accept ethertype arp or", ErrorKind::MissingArgument, 1, 22);
    }

    #[test]
    fn addresses_and_vlans() {
        assert_eq!(
            matches("accept ztsrc 0A33989140 ztdest 7c55a8da82 vlan 4095 vlanpcp 7 vlandei 1;"),
            vec![
                json!({"type":"MATCH_SOURCE_ZEROTIER_ADDRESS","not":false,"or":false,"zt":"0a33989140"}),
                json!({"type":"MATCH_DEST_ZEROTIER_ADDRESS","not":false,"or":false,"zt":"7c55a8da82"}),
                json!({"type":"MATCH_VLAN_ID","not":false,"or":false,"vlanId":4095}),
                json!({"type":"MATCH_VLAN_PCP","not":false,"or":false,"vlanPcp":7}),
                json!({"type":"MATCH_VLAN_DEI","not":false,"or":false,"vlanDei":1}),
            ]
        );
        for (src, mac) in [
            ("02:11:22:33:44:55", "02:11:22:33:44:55"),
            ("02-11-22-33-44-AA", "02:11:22:33:44:aa"),
            ("FFFFFFFFFFFF", "ff:ff:ff:ff:ff:ff"),
        ] {
            assert_eq!(one(&format!("accept macdest {src};"))["mac"], mac);
            assert_eq!(
                one(&format!("accept macsrc {src};"))["type"],
                "MATCH_MAC_SOURCE"
            );
        }
        assert_eq!(
            one("accept macdest ff:ff:ff:ff:ff:ff;")["type"],
            "MATCH_MAC_DEST"
        );
        for (src, ty, ip) in [
            ("ipsrc 10.0.0.0/8", "MATCH_IPV4_SOURCE", "10.0.0.0/8"),
            ("ipdest 192.168.1.1", "MATCH_IPV4_DEST", "192.168.1.1/32"),
            ("ipsrc fd00:0::1/64", "MATCH_IPV6_SOURCE", "fd00::1/64"),
            ("ipdest ::/0", "MATCH_IPV6_DEST", "::/0"),
        ] {
            let m = one(&format!("accept {src};"));
            assert_eq!((m["type"].as_str(), m["ip"].as_str()), (Some(ty), Some(ip)));
        }
        for bad in [
            "ztsrc deadbeef0",
            "ztsrc deadbeef0g",
            "ztdest 0xdeadbeef",
            "macsrc 02:11:22:33:44",
            "macsrc 02:11:22:33:44:5g",
            "macsrc 02:11-22:33:44:55",
            "ipsrc 10.0.0.256/8",
            "ipsrc 10.0.0.0/33",
            "ipdest fd00::/129",
            "ipdest fd00::/0x10",
            "ipdest host/8",
        ] {
            err_at(
                &format!("accept {bad};"),
                ErrorKind::BadAddress,
                1,
                bad.find(' ').unwrap() + 9,
            );
        }
        err_at("tee 1 zz;", ErrorKind::BadAddress, 1, 7);
        err_at("accept vlan 4096;", ErrorKind::BadNumber, 1, 13);
        err_at("accept vlanpcp 8;", ErrorKind::BadNumber, 1, 16);
        err_at("accept vlandei 2;", ErrorKind::BadNumber, 1, 16);
    }

    #[test]
    fn ethertypes_and_protocols() {
        let names = [
            ("ipv4", 0x0800),
            ("arp", 0x0806),
            ("wol", 0x0842),
            ("rarp", 0x8035),
            ("atalk", 0x809b),
            ("aarp", 0x80f3),
            ("ipx_a", 0x8137),
            ("ipx_b", 0x8138),
            ("ipv6", 0x86dd),
            ("0x88cc", 0x88cc),
            ("65535", 0xffff),
        ];
        for (n, v) in names {
            assert_eq!(
                one(&format!("accept ethertype {n};"))["etherType"],
                v,
                "{n}"
            );
        }
        let protos = [
            ("icmp", 1),
            ("icmp4", 1),
            ("icmpv4", 1),
            ("igmp", 2),
            ("ipip", 4),
            ("tcp", 6),
            ("egp", 8),
            ("igp", 9),
            ("udp", 17),
            ("rdp", 27),
            ("esp", 50),
            ("ah", 51),
            ("icmp6", 58),
            ("icmpv6", 58),
            ("l2tp", 115),
            ("sctp", 132),
            ("udplite", 136),
            ("0xff", 255),
            ("47", 47),
        ];
        for (n, v) in protos {
            let m = one(&format!("accept ipprotocol {n};"));
            assert_eq!(
                (m["type"].as_str(), &m["ipProtocol"]),
                (Some("MATCH_IP_PROTOCOL"), &json!(v))
            );
        }
        err_at("accept ethertype ipv5;", ErrorKind::BadNumber, 1, 18);
        err_at("accept ethertype 0x10000;", ErrorKind::BadNumber, 1, 18);
        err_at("accept ipprotocol 256;", ErrorKind::BadNumber, 1, 19);
    }

    #[test]
    fn icmp_tos_ports_sizes() {
        assert_eq!(
            matches("accept icmp 8 -1 icmp 3 4 iptos 0xfc 0xb8-0xbc iptos 255 10;"),
            vec![
                json!({"type":"MATCH_ICMP","not":false,"or":false,"icmpType":8,"icmpCode":null}),
                json!({"type":"MATCH_ICMP","not":false,"or":false,"icmpType":3,"icmpCode":4}),
                json!({"type":"MATCH_IP_TOS","not":false,"or":false,"mask":252,"start":184,"end":188}),
                json!({"type":"MATCH_IP_TOS","not":false,"or":false,"mask":255,"start":10,"end":10}),
            ]
        );
        assert_eq!(
            matches("accept sport 1024-65535 dport 0x16 framesize 64-0x5dc;"),
            vec![
                json!({"type":"MATCH_IP_SOURCE_PORT_RANGE","not":false,"or":false,"start":1024,"end":65535}),
                json!({"type":"MATCH_IP_DEST_PORT_RANGE","not":false,"or":false,"start":22,"end":22}),
                json!({"type":"MATCH_FRAME_SIZE_RANGE","not":false,"or":false,"start":64,"end":1500}),
            ]
        );
        wire(&ok("accept icmp 8 -1 icmp 3 4 iptos 0xfc 0xb8-0xbc sport 1-2 framesize 3;").rules);
        err_at("accept icmp 256 0;", ErrorKind::BadNumber, 1, 13);
        err_at("accept icmp 8 -2;", ErrorKind::BadNumber, 1, 15);
        err_at("accept icmp 8;", ErrorKind::MissingArgument, 1, 8);
        err_at("accept dport 65536;", ErrorKind::BadNumber, 1, 14);
        err_at("accept dport 80-;", ErrorKind::BadNumber, 1, 14);
        err_at("accept dport -1;", ErrorKind::BadNumber, 1, 14);
        err_at("accept dport 90-80;", ErrorKind::BadValue, 1, 14);
        err_at("accept sport 1.5;", ErrorKind::BadNumber, 1, 14);
        err_at("accept iptos 0x100 1;", ErrorKind::BadNumber, 1, 14);
    }

    #[test]
    fn characteristics() {
        let all = CHARACTERISTICS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            one(&format!("accept chr {all};"))["mask"],
            "f800000000000fff"
        );
        for (src, mask) in [
            ("chr tcp_syn", "0000000000000002"),
            ("chr inbound", "8000000000000000"),
            ("chr 0,1,63", "8000000000000003"),
            ("chr tcp_syn, tcp_ack ,ipauth", "1000000000000012"),
            ("chr 0x3", "0000000000000008"),
        ] {
            let m = one(&format!("accept {src};"));
            assert_eq!(
                (m["type"].as_str(), m["mask"].as_str()),
                (Some("MATCH_CHARACTERISTICS"), Some(mask)),
                "{src}"
            );
        }
        err_at("accept chr tcp_foo;", ErrorKind::BadValue, 1, 12);
        err_at("accept chr 64;", ErrorKind::BadNumber, 1, 12);
        err_at("accept chr 1,,2;", ErrorKind::BadValue, 1, 12);
    }

    #[test]
    fn random() {
        for (p, v) in [
            ("0", 0u64),
            ("0.0", 0),
            ("1", 4_294_967_295),
            ("1.0", 4_294_967_295),
            ("0.5", 2_147_483_647),
            (".25", 1_073_741_823),
        ] {
            assert_eq!(one(&format!("accept random {p};"))["probability"], v, "{p}");
        }
        for bad in ["1.5", "-0.5", "0.5.1", "abc", "1e-3", "nan", "."] {
            err_at(&format!("accept random {bad};"), ErrorKind::BadValue, 1, 15);
        }
    }

    #[test]
    fn tags() {
        let src = "\
tag role id 1 default green flag 0 red flag 1 green flag 2,3 blue ;
tag server id 2 enum 0 No enum 1 Yes default No;
tag plain id 0x10 default 7;
tag bare id 3;
accept tand role red tor role green txor role 0x4 tdiff server Yes teq server 1
  tseq 2 No treq 99 5 teq plain 7;
";
        let c = ok(src);
        assert_eq!(
            c.tags,
            vec![
                json!({"id":1,"default":2}),
                json!({"id":2,"default":0}),
                json!({"id":16,"default":7}),
                json!({"id":3,"default":null}),
            ]
        );
        let role = &c.tags_by_name["role"];
        assert_eq!(
            (role.id, role.default, role.flags.clone()),
            (
                1,
                Some(2),
                BTreeMap::from([("red".into(), 1), ("green".into(), 2), ("blue".into(), 12)])
            )
        );
        assert_eq!(
            c.tags_by_name["server"].enums,
            BTreeMap::from([("No".into(), 0), ("Yes".into(), 1)])
        );
        let got: Vec<(&str, u64, u64)> = c.rules[..c.rules.len() - 1]
            .iter()
            .map(|r| {
                (
                    r["type"].as_str().unwrap(),
                    r["id"].as_u64().unwrap(),
                    r["value"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("MATCH_TAGS_BITWISE_AND", 1, 1),
                ("MATCH_TAGS_BITWISE_OR", 1, 2),
                ("MATCH_TAGS_BITWISE_XOR", 1, 4),
                ("MATCH_TAGS_DIFFERENCE", 2, 1),
                ("MATCH_TAGS_EQUAL", 2, 1),
                ("MATCH_TAG_SENDER", 2, 0),
                ("MATCH_TAG_RECEIVER", 99, 5),
                ("MATCH_TAGS_EQUAL", 16, 7),
            ]
        );
        wire(&c.rules);
        // tagsByName in the CLI shape
        assert_eq!(
            c.to_json()["tagsByName"]["bare"],
            json!({"id":3,"default":null,"enums":{},"flags":{}})
        );

        // errors
        err_at("accept teq dept 1;", ErrorKind::Undefined, 1, 12);
        err_at(
            "tag d id 1 enum 1 a;\naccept teq d b;",
            ErrorKind::Undefined,
            2,
            14,
        );
        err_at("accept teq 5 sales;", ErrorKind::BadNumber, 1, 14);
        err_at("tag d id 1 default nope;", ErrorKind::Undefined, 1, 20);
        err_at("tag d\n default 1;", ErrorKind::MissingArgument, 1, 5);
        err_at("tag d id 1; tag d id 2;", ErrorKind::Duplicate, 1, 17);
        err_at("tag d id 1; tag e id 1;", ErrorKind::Duplicate, 1, 22);
        err_at("tag d id 1 id 2;", ErrorKind::Duplicate, 1, 15);
        err_at("tag d id 1 enum 1 a flag 0 a;", ErrorKind::Duplicate, 1, 28);
        err_at("tag d id 1 flag 32 a;", ErrorKind::BadNumber, 1, 17);
        err_at("tag d id 4294967296;", ErrorKind::BadNumber, 1, 10);
        err_at("tag d id 1 enum 1 9a;", ErrorKind::BadName, 1, 19);
        err_at("tag d id 1 color 1;", ErrorKind::UnknownKeyword, 1, 12);
        err_at("tag d id 1 enum;", ErrorKind::MissingArgument, 1, 12);
        err_at("tag d id 1\naccept;", ErrorKind::Unterminated, 2, 1);
        err_at("tag d id 1", ErrorKind::Unterminated, 1, 1);
        err_at("accept teq;", ErrorKind::MissingArgument, 1, 8);
    }

    #[test]
    fn capabilities() {
        let c = ok("\
cap web id 7 default
  accept ipprotocol tcp and dport 80;
  accept ipprotocol tcp and dport 443;
;
cap none id 0x8;
");
        assert_eq!(
            c.capabilities,
            vec![
                json!({"id":7,"default":true,"rules":[
                    {"type":"MATCH_IP_PROTOCOL","not":false,"or":false,"ipProtocol":6},
                    {"type":"MATCH_IP_DEST_PORT_RANGE","not":false,"or":false,"start":80,"end":80},
                    {"type":"ACTION_ACCEPT"},
                    {"type":"MATCH_IP_PROTOCOL","not":false,"or":false,"ipProtocol":6},
                    {"type":"MATCH_IP_DEST_PORT_RANGE","not":false,"or":false,"start":443,"end":443},
                    {"type":"ACTION_ACCEPT"}]}),
                json!({"id":8,"default":false,"rules":[]}),
            ]
        );
        assert_eq!(
            c.capabilities_by_name,
            BTreeMap::from([("web".into(), 7), ("none".into(), 8)])
        );
        assert!(c.rules.is_empty());
        err_at("cap a accept;;", ErrorKind::MissingArgument, 1, 5);
        err_at("cap a id 1; cap a id 2;", ErrorKind::Duplicate, 1, 17);
        err_at("cap a id 1; cap b id 1;", ErrorKind::Duplicate, 1, 22);
        err_at("cap a id 1 accept;", ErrorKind::Unterminated, 1, 1);
        err_at("cap a id 1 accept", ErrorKind::Unterminated, 1, 12);
        err_at("cap a id 1\ntag t id 2;", ErrorKind::Unterminated, 2, 1);
        err_at("cap a id 1 dport 22;;", ErrorKind::Misplaced, 1, 12);
        err_at("cap a id 1 frob;", ErrorKind::UnknownKeyword, 1, 12);
        let many = "accept; ".repeat(MAX_CAPABILITY_RULES + 1);
        err_at(
            &format!("cap a id 1 {many};"),
            ErrorKind::TooManyRules,
            1,
            12 + 8 * 64,
        );
        ok(&format!(
            "cap a id 1 {};",
            "accept; ".repeat(MAX_CAPABILITY_RULES)
        ));
    }

    #[test]
    fn macros() {
        let src = "\
macro allow_port($proto, $port)
  accept ipprotocol $proto and dport $port;
  accept ipprotocol $proto and sport $port;
;
macro allow_web()
  include allow_port(tcp,80)
  include allow_port( tcp , 443 )
;
macro lan($net) accept ipsrc $net/24 ipdest $net/24; ;
include allow_web()
include lan(10.1.2.0);
include allow_port (udp,53-54)
cap dns id 1 include allow_port(udp, 53) ;
drop;
";
        let c = ok(src);
        let summary: Vec<String> = c
            .rules
            .iter()
            .map(|r| {
                let t = r["type"].as_str().unwrap().to_owned();
                match (&r["ipProtocol"], &r["start"], &r["ip"]) {
                    (Value::Number(p), _, _) => format!("{t} {p}"),
                    (_, Value::Number(s), _) => format!("{t} {s}-{}", r["end"]),
                    (_, _, Value::String(ip)) => format!("{t} {ip}"),
                    _ => t,
                }
            })
            .collect();
        assert_eq!(
            summary,
            [
                "MATCH_IP_PROTOCOL 6",
                "MATCH_IP_DEST_PORT_RANGE 80-80",
                "ACTION_ACCEPT",
                "MATCH_IP_PROTOCOL 6",
                "MATCH_IP_SOURCE_PORT_RANGE 80-80",
                "ACTION_ACCEPT",
                "MATCH_IP_PROTOCOL 6",
                "MATCH_IP_DEST_PORT_RANGE 443-443",
                "ACTION_ACCEPT",
                "MATCH_IP_PROTOCOL 6",
                "MATCH_IP_SOURCE_PORT_RANGE 443-443",
                "ACTION_ACCEPT",
                "MATCH_IPV4_SOURCE 10.1.2.0/24",
                "MATCH_IPV4_DEST 10.1.2.0/24",
                "ACTION_ACCEPT",
                "MATCH_IP_PROTOCOL 17",
                "MATCH_IP_DEST_PORT_RANGE 53-54",
                "ACTION_ACCEPT",
                "MATCH_IP_PROTOCOL 17",
                "MATCH_IP_SOURCE_PORT_RANGE 53-54",
                "ACTION_ACCEPT",
                "ACTION_DROP",
            ]
        );
        assert_eq!(c.capabilities[0]["rules"].as_array().unwrap().len(), 6);
        wire(&c.rules);

        // a bad argument is reported where the macro body uses it, naming the include site
        let e = err("macro m($p)\n  accept dport $p;\n;\ninclude m(x)");
        assert_eq!((e.kind, e.line, e.column), (ErrorKind::BadNumber, 2, 16));
        assert!(
            e.message
                .contains("in macro `m` included at line 4, column 1"),
            "{e}"
        );
        err_at("include nope()", ErrorKind::Undefined, 1, 9);
        err_at("include nope", ErrorKind::Undefined, 1, 9);
        err_at(
            "macro m($a) accept dport $b; ;\ninclude m(1)",
            ErrorKind::Undefined,
            1,
            26,
        );
        err_at(
            "macro m($a) accept; ;\ninclude m()",
            ErrorKind::BadValue,
            2,
            9,
        );
        err_at(
            "macro m($a) accept; ;\ninclude m(1,2)",
            ErrorKind::BadValue,
            2,
            9,
        );
        err_at(
            "macro m() accept; ;\ninclude m(1",
            ErrorKind::BadValue,
            2,
            9,
        );
        err_at("macro m(a) accept; ;", ErrorKind::BadName, 1, 7);
        err_at("macro m($a,$a) accept; ;", ErrorKind::Duplicate, 1, 7);
        err_at(
            "macro m() accept; ;\nmacro m() drop; ;",
            ErrorKind::Duplicate,
            2,
            7,
        );
        err_at("macro m() accept;", ErrorKind::Unterminated, 1, 1);
        err_at("macro m() accept", ErrorKind::Unterminated, 1, 11);
        err_at("macro m() accept\ndrop; ;", ErrorKind::Unterminated, 2, 1);
        err_at("macro m() dport 1; ;", ErrorKind::Misplaced, 1, 11);
        err_at("macro m() tag t id 1; ;", ErrorKind::Unterminated, 1, 11);
        err_at(
            "macro m() include m() ;\ninclude m()",
            ErrorKind::TooDeep,
            1,
            11,
        );
    }

    #[test]
    fn reserved_and_bad_names() {
        for word in [
            "accept", "tag", "dport", "not", "id", "default", "include", "priority",
        ] {
            for (def, col) in [("tag", 5), ("cap", 5), ("macro", 7)] {
                let m = err_at(
                    &format!("{def} {word} id 1;"),
                    ErrorKind::ReservedName,
                    1,
                    col,
                );
                assert!(m.contains("reserved"), "{m}");
            }
        }
        err_at("tag 9lives id 1;", ErrorKind::BadName, 1, 5);
        err_at("cap a/b id 1;", ErrorKind::BadName, 1, 5);
        assert!(is_reserved("tseq") && !is_reserved("sales"));
    }

    #[test]
    fn errors_with_positions() {
        // unknown keyword: top level and inside a block
        let m = err_at("accept;\n  frobnicate;", ErrorKind::UnknownKeyword, 2, 3);
        assert!(m.contains("frobnicate"));
        err_at(
            "accept\n  ethertype arp\n  dportt 22;",
            ErrorKind::UnknownKeyword,
            3,
            3,
        );
        // missing argument (before `;` and at the end of the source)
        err_at("accept dport;", ErrorKind::MissingArgument, 1, 8);
        err_at("drop\n ethertype", ErrorKind::MissingArgument, 2, 2);
        err_at("tee;", ErrorKind::MissingArgument, 1, 1);
        err_at("tee 10;", ErrorKind::MissingArgument, 1, 1);
        err_at("tag;", ErrorKind::MissingArgument, 1, 1);
        // bad number
        err_at("accept dport 0x;", ErrorKind::BadNumber, 1, 14);
        err_at("accept\tdport +22;", ErrorKind::BadNumber, 1, 14);
        err_at("tee x deadbeef01;", ErrorKind::BadNumber, 1, 5);
        err_at("tee 65536 deadbeef01;", ErrorKind::BadNumber, 1, 5);
        // bad address
        err_at("accept ipsrc 10.0.0/8;", ErrorKind::BadAddress, 1, 14);
        // unterminated block: at the end of the source, before another block
        let m = err_at("drop not ethertype ipv4\n", ErrorKind::Unterminated, 1, 1);
        assert!(m.contains("`drop`"), "{m}");
        let m = err_at(
            "drop not ethertype ipv4\naccept;",
            ErrorKind::Unterminated,
            2,
            1,
        );
        assert!(m.contains("line 1, column 1"), "{m}");
        // misplaced match
        err_at("ethertype arp;", ErrorKind::Misplaced, 1, 1);
        err_at("id 5;", ErrorKind::Misplaced, 1, 1);
        // Display
        assert_eq!(
            err("\n\n   accept dport x;").to_string(),
            "line 3, column 17: bad port `x`: expected a decimal or 0x hex number"
        );
        // base table limit
        let many = "accept; ".repeat(MAX_NETWORK_RULES);
        ok(&many);
        err_at(
            &format!("{many}drop;"),
            ErrorKind::TooManyRules,
            1,
            8 * 1024 + 1,
        );
    }

    // truncated and spliced sources give errors, never panics
    #[test]
    fn every_prefix_compiles_or_errs() {
        let sources = [
            EXAMPLE,
            "macro m($a, $b) accept chr tcp_syn, $a dport $b; ; include m(tcp_ack, 1-2)\n\
             tee -1 deadbeef01 macsrc 02-11-22-33-44-55 ipdest fd00::1/64 random 0.25;",
        ];
        let mut errors = 0;
        for src in sources {
            for (i, _) in src.char_indices() {
                for cut in [&src[..i], &src[i..]] {
                    if compile(cut).is_err() {
                        errors += 1;
                    }
                }
            }
        }
        assert!(errors > 100, "{errors}");
    }

    // every rule kind the language can produce, all accepted by the controller's reader and
    // round-tripping through the binary form
    #[test]
    fn every_rule_parses_and_round_trips() {
        let src = "\
tag t id 5 enum 1 one flag 2 two;
drop ztsrc 0102030405 or ztdest 0a0b0c0d0e not vlan 0 vlanpcp 0 vlandei 0
  ethertype ipv6 macsrc 01:02:03:04:05:06 macdest 0a0b0c0d0e0f ipsrc 10.0.0.0/8
  ipdest 10.1.0.0/16 ipsrc fd00::/8 ipdest ::1 iptos 0xfc 0-0x40 ipprotocol sctp
  icmp 128 -1 icmp 1 2 sport 1-2 dport 3 chr tcp_fin,inbound framesize 0-1500
  random 0.001 tand t one tor t two txor t 3 tdiff t 4 teq t one tseq t two treq 6 7;
accept; break; tee 0 aaaaaaaaaa; watch 1500 bbbbbbbbbb; redirect cccccccccc;
";
        let c = ok(src);
        assert_eq!(c.rules.len(), 34);
        let hex = wire(&c.rules);
        assert!(hex.starts_with("180501020304055905"), "{hex}");
    }
}
