//! `weft controller …`: manage the node's network controller through the local API
//! (`/controller…`, controller.md §7), with aligned tables or raw JSON (`-j`).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::cli::{Client, ClientOpts, Reply, pretty, valid_nwid};

/// `weft controller`.
#[derive(Debug, Args)]
pub(crate) struct ControllerArgs {
    /// Raw JSON output.
    #[arg(short = 'j', long = "json")]
    json: bool,
    #[command(subcommand)]
    command: ControllerCommand,
}

#[derive(Debug, Subcommand)]
enum ControllerCommand {
    /// Networks of this controller.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Members of a network.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Create a network with a random id under this controller's address.
    Create {
        /// Network name.
        #[arg(long)]
        name: Option<String>,
        /// Private network: members need authorization (the default).
        #[arg(long, conflicts_with = "public")]
        private: bool,
        /// Public network: every member is authorized automatically.
        #[arg(long)]
        public: bool,
        /// IP assignment pool `first-last` (repeatable); enables IPv4/IPv6 assignment from it.
        #[arg(long = "pool", value_name = "FIRST-LAST")]
        pools: Vec<String>,
        /// Managed route `cidr[,via]` (repeatable).
        #[arg(long = "route", value_name = "CIDR[,VIA]")]
        routes: Vec<String>,
        /// IPv6 assignment modes, a comma list of `rfc4193`, `6plane`, `zt`.
        #[arg(long)]
        v6: Option<String>,
    },
    /// Networks, one per line.
    List,
    /// One network.
    Show {
        /// Network id (16 hex digits).
        nwid: String,
    },
    /// Change fields: `key=value` with JSON values (a bare word is a string).
    Set {
        /// Network id (16 hex digits).
        nwid: String,
        /// `key=value` pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Delete a network and its members.
    Delete {
        /// Network id (16 hex digits).
        nwid: String,
    },
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// Members of a network, one per line.
    List {
        /// Network id.
        nwid: String,
    },
    /// One member.
    Show {
        /// Network id.
        nwid: String,
        /// Member address (10 hex digits).
        id: String,
    },
    /// Change fields: `key=value` with JSON values (a bare word is a string).
    Set {
        /// Network id.
        nwid: String,
        /// Member address.
        id: String,
        /// `key=value` pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Authorize a member (creating it if it never joined).
    Authorize {
        /// Network id.
        nwid: String,
        /// Member address.
        id: String,
    },
    /// Deauthorize a member.
    Deauthorize {
        /// Network id.
        nwid: String,
        /// Member address.
        id: String,
    },
    /// Delete a member.
    Delete {
        /// Network id.
        nwid: String,
        /// Member address.
        id: String,
    },
    /// Everything the controller holds about a member, as JSON.
    Export {
        /// Network id.
        nwid: String,
        /// Member address.
        id: String,
    },
    /// Erase a member and the data kept about it.
    Erase {
        /// Network id.
        nwid: String,
        /// Member address.
        id: String,
    },
}

/// Columns separated by two spaces, each as wide as its widest cell; no trailing spaces.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A JSON value as a table cell: strings bare, everything else compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// An object as a two-column `key  value` table (keys sorted).
fn fields(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| vec![k.clone(), cell(x)])
        .collect();
    table(&rows)
}

/// `key=value` pairs as a JSON object: the value is JSON if it parses, else a string.
fn pairs_body(pairs: &[String]) -> Result<Value, String> {
    let mut m = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!("expected key=value, got {p:?}"));
        };
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        m.insert(k.to_string(), v);
    }
    Ok(Value::Object(m))
}

fn create_body(
    name: &Option<String>,
    public: bool,
    pools: &[String],
    routes: &[String],
    v6: &Option<String>,
) -> Result<Value, String> {
    let mut b = json!({});
    if let Some(n) = name {
        b["name"] = n.clone().into();
    }
    b["private"] = (!public).into();
    let mut pool_list = Vec::new();
    let (mut v4, mut v6zt) = (false, false);
    for p in pools {
        let Some((a, z)) = p.split_once('-') else {
            return Err(format!("--pool: expected FIRST-LAST, got {p:?}"));
        };
        if a.contains(':') {
            v6zt = true;
        } else {
            v4 = true;
        }
        pool_list.push(json!({"ipRangeStart": a.trim(), "ipRangeEnd": z.trim()}));
    }
    if !pool_list.is_empty() {
        b["ipAssignmentPools"] = pool_list.into();
    }
    if v4 {
        b["v4AssignMode"] = json!({"zt": true});
    }
    let mut modes: Vec<String> = v6
        .as_deref()
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_default();
    if v6zt && !modes.iter().any(|m| m == "zt") {
        modes.push("zt".into());
    }
    if !modes.is_empty() {
        b["v6AssignMode"] = modes.join(",").into();
    }
    let routes: Vec<Value> = routes
        .iter()
        .map(|r| match r.split_once(',') {
            Some((t, via)) => json!({"target": t, "via": via}),
            None => json!({"target": r, "via": null}),
        })
        .collect();
    if !routes.is_empty() {
        b["routes"] = routes.into();
    }
    Ok(b)
}

fn network_rows(v: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "<nwid>".into(),
        "<name>".into(),
        "<type>".into(),
        "<authorized>".into(),
        "<members>".into(),
        "<pools>".into(),
    ]];
    for n in v["data"].as_array().into_iter().flatten() {
        let pools: Vec<String> = n["ipAssignmentPools"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}-{}", cell(&p["ipRangeStart"]), cell(&p["ipRangeEnd"])))
            .collect();
        rows.push(vec![
            cell(&n["id"]),
            cell(&n["name"]),
            if n["private"] == false {
                "PUBLIC"
            } else {
                "PRIVATE"
            }
            .into(),
            cell(&n["meta"]["authorizedMemberCount"]),
            cell(&n["meta"]["totalMemberCount"]),
            if pools.is_empty() {
                "-".into()
            } else {
                pools.join(",")
            },
        ]);
    }
    rows
}

fn member_rows(v: &Value) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        "<id>".into(),
        "<authorized>".into(),
        "<name>".into(),
        "<ips>".into(),
        "<revision>".into(),
    ]];
    for m in v["data"].as_array().into_iter().flatten() {
        let ips: Vec<String> = m["ipAssignments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(cell)
            .collect();
        rows.push(vec![
            cell(&m["id"]),
            if m["authorized"] == true { "yes" } else { "no" }.into(),
            m["name"].as_str().unwrap_or("-").to_string(),
            if ips.is_empty() {
                "-".into()
            } else {
                ips.join(",")
            },
            cell(&m["revision"]),
        ]);
    }
    rows
}

fn valid_member(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs `weft controller …`.
pub(crate) fn run(opts: &ClientOpts, args: ControllerArgs) -> Result<ExitCode> {
    let mut c = match Client::new(opts) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    c.json |= args.json;
    let usage = |msg: String| {
        eprintln!("weft controller: {msg}");
        Ok(ExitCode::from(2))
    };
    // (command name, method, path, body, how to print)
    enum Out {
        Fields,
        Networks,
        Members,
        Deleted(String),
        Json,
        Lines,
    }
    let (cmd, method, path, body, out) = match &args.command {
        ControllerCommand::Network(n) => {
            let check = |id: &str| valid_nwid(id).then_some(()).ok_or(id.to_string());
            match n {
                NetworkCommand::Create {
                    name,
                    private: _,
                    public,
                    pools,
                    routes,
                    v6,
                } => match create_body(name, *public, pools, routes, v6) {
                    Ok(b) => (
                        "network create",
                        "POST",
                        "/controller/network".to_string(),
                        Some(b),
                        Out::Fields,
                    ),
                    Err(e) => return usage(e),
                },
                NetworkCommand::List => (
                    "network list",
                    "GET",
                    "/unstable/controller/network".into(),
                    None,
                    Out::Networks,
                ),
                NetworkCommand::Show { nwid } | NetworkCommand::Delete { nwid }
                    if check(nwid).is_err() =>
                {
                    return usage(format!("invalid network id {nwid:?} (16 hex digits)"));
                }
                NetworkCommand::Set { nwid, .. } if check(nwid).is_err() => {
                    return usage(format!("invalid network id {nwid:?} (16 hex digits)"));
                }
                NetworkCommand::Show { nwid } => (
                    "network show",
                    "GET",
                    format!("/controller/network/{nwid}"),
                    None,
                    Out::Fields,
                ),
                NetworkCommand::Set { nwid, pairs } => match pairs_body(pairs) {
                    Ok(b) => (
                        "network set",
                        "POST",
                        format!("/controller/network/{nwid}"),
                        Some(b),
                        Out::Fields,
                    ),
                    Err(e) => return usage(e),
                },
                NetworkCommand::Delete { nwid } => (
                    "network delete",
                    "DELETE",
                    format!("/controller/network/{nwid}"),
                    None,
                    Out::Deleted(format!("deleted network {nwid}")),
                ),
            }
        }
        ControllerCommand::Member(m) => {
            let (nwid, id) = match m {
                MemberCommand::List { nwid } => (nwid, None),
                MemberCommand::Show { nwid, id }
                | MemberCommand::Set { nwid, id, .. }
                | MemberCommand::Authorize { nwid, id }
                | MemberCommand::Deauthorize { nwid, id }
                | MemberCommand::Delete { nwid, id }
                | MemberCommand::Export { nwid, id }
                | MemberCommand::Erase { nwid, id } => (nwid, Some(id)),
            };
            if !valid_nwid(nwid) {
                return usage(format!("invalid network id {nwid:?} (16 hex digits)"));
            }
            if let Some(id) = id
                && !valid_member(id)
            {
                return usage(format!("invalid member id {id:?} (10 hex digits)"));
            }
            let base = format!("/controller/network/{nwid}/member/{}", id.map_or("", |s| s));
            let unstable = format!(
                "/unstable/controller/network/{nwid}/member/{}",
                id.map_or("", |s| s)
            );
            match m {
                MemberCommand::List { .. } => (
                    "member list",
                    "GET",
                    format!("/unstable/controller/network/{nwid}/member"),
                    None,
                    Out::Members,
                ),
                MemberCommand::Show { .. } => ("member show", "GET", base, None, Out::Fields),
                MemberCommand::Set { pairs, .. } => match pairs_body(pairs) {
                    Ok(b) => ("member set", "POST", base, Some(b), Out::Fields),
                    Err(e) => return usage(e),
                },
                MemberCommand::Authorize { .. } => (
                    "member authorize",
                    "POST",
                    base,
                    Some(json!({"authorized": true})),
                    Out::Fields,
                ),
                MemberCommand::Deauthorize { .. } => (
                    "member deauthorize",
                    "POST",
                    base,
                    Some(json!({"authorized": false})),
                    Out::Fields,
                ),
                MemberCommand::Delete { id, .. } => (
                    "member delete",
                    "DELETE",
                    base,
                    None,
                    Out::Deleted(format!("deleted member {id} of {nwid}")),
                ),
                MemberCommand::Export { .. } => (
                    "member export",
                    "GET",
                    format!("{unstable}/export"),
                    None,
                    Out::Json,
                ),
                MemberCommand::Erase { .. } => (
                    "member erase",
                    "POST",
                    format!("{unstable}/erase"),
                    Some(json!({})),
                    Out::Lines,
                ),
            }
        }
    };
    let v = match c.call(cmd, method, &path, body) {
        Reply::Ok(v) => v,
        Reply::Failed(code) => return Ok(code),
    };
    if c.json || matches!(out, Out::Json) {
        println!("{}", pretty(&v));
        return Ok(ExitCode::SUCCESS);
    }
    match out {
        Out::Fields | Out::Lines => print!("{}", fields(&v)),
        Out::Networks => print!("{}", table(&network_rows(&v))),
        Out::Members => print!("{}", table(&member_rows(&v))),
        Out::Deleted(msg) => println!("{msg}"),
        Out::Json => {}
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&[
            vec!["a".into(), "bb".into(), "c".into()],
            vec!["aaa".into(), "b".into(), "".into()],
        ]);
        assert_eq!(t, "a    bb  c\naaa  b\n");
    }

    #[test]
    fn bodies_from_flags_and_pairs() {
        let b = create_body(
            &Some("lab".into()),
            true,
            &["10.0.0.1-10.0.0.9".into(), "fd00::1-fd00::ff".into()],
            &["10.0.0.0/24".into(), "10.9.0.0/16,10.0.0.1".into()],
            &Some("rfc4193,6plane".into()),
        )
        .unwrap();
        assert_eq!(b["private"], false);
        assert_eq!(b["v4AssignMode"], json!({"zt": true}));
        assert_eq!(b["v6AssignMode"], "rfc4193,6plane,zt");
        assert_eq!(
            b["routes"][1],
            json!({"target":"10.9.0.0/16","via":"10.0.0.1"})
        );
        assert_eq!(
            b["ipAssignmentPools"][1],
            json!({"ipRangeStart":"fd00::1","ipRangeEnd":"fd00::ff"})
        );
        assert!(create_body(&None, false, &["10.0.0.1".into()], &[], &None).is_err());
        let p = pairs_body(&[
            "mtu=1400".into(),
            "name=lab one".into(),
            "private=false".into(),
        ])
        .unwrap();
        assert_eq!(p, json!({"mtu":1400,"name":"lab one","private":false}));
        assert!(pairs_body(&["novalue".into()]).is_err());
    }
}
