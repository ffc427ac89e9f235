//! Results of one harness run and their presentation: the markdown tables (values and ratios),
//! the JSON document and the SVG plot. Pure: everything here is computed from a [`Report`].

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Bulk TCP transfer, counted by the receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Throughput {
    /// Parallel connections.
    pub streams: u32,
    /// Bytes the receiver read, all streams.
    pub bytes: u64,
    /// The longest stream's time from its first byte to its end of stream, seconds.
    pub secs: f64,
    /// `bytes × 8 / secs`, 10^9 bit/s.
    pub gbit_s: f64,
}

/// A UDP blast at the sender's maximum rate, received side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UdpResult {
    /// UDP payload bytes per datagram.
    pub payload: usize,
    /// Datagrams the sender's kernel accepted.
    pub sent_packets: u64,
    /// Datagrams the receiver counted.
    pub received_packets: u64,
    /// Payload bytes the receiver counted.
    pub received_bytes: u64,
    /// Sending time, seconds (the denominator of the rates).
    pub secs: f64,
    /// Received payload rate, 10^6 bit/s.
    pub received_mbit_s: f64,
    /// Received datagrams per second.
    pub received_pps: f64,
    /// `1 − received ÷ sent`, a fraction (0 when nothing was sent).
    pub loss: f64,
}

/// Round-trip times of UDP echo requests (one outstanding at a time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Latency {
    /// Answered requests (recorded in the histogram).
    pub samples: u64,
    /// Requests without an answer within 1 s.
    pub lost: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// The histogram in logarithmic (power-of-two, from 1 µs) buckets: `[upper bound µs,
    /// count]` (the bound is hdrhistogram's highest value equivalent to the step's end), empty
    /// buckets left out.
    pub buckets: Vec<(f64, u64)>,
    /// For the measurement under load: the TCP stream's rate meanwhile, Gbit/s.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub load_gbit_s: Option<f64>,
}

/// Everything measured for one subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SubjectResult {
    /// Unique name, e.g. `veth`, `weft-auto`, `wireguard-kernel`.
    pub name: String,
    /// `veth`, `weft`, `zerotier-one`, `wireguard-kernel`, `wireguard-go` or `boringtun`.
    pub kind: String,
    pub tcp_1: Option<Throughput>,
    pub tcp_n: Option<Throughput>,
    pub udp: Option<UdpResult>,
    pub latency_idle: Option<Latency>,
    pub latency_load: Option<Latency>,
    /// Why the subject stopped early (what was measured before stays).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Setup facts worth showing (addresses, back-end, path).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub notes: Vec<String>,
}

/// A subject that was asked for (or is on by default) but could not run here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Skipped {
    pub name: String,
    pub reason: String,
}

/// How the run was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// Seconds since the epoch at the start.
    pub started_unix: u64,
    /// Seconds per measurement.
    pub duration_s: f64,
    /// Connections of the multi-stream TCP measurement.
    pub streams: u32,
    pub udp_payload: usize,
    /// Interval between echo requests, µs.
    pub echo_interval_us: u64,
    /// CPUs the harness saw.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel: String,
    /// The weft binary used, if any.
    pub weft: Option<String>,
}

/// One run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub meta: Meta,
    pub subjects: Vec<SubjectResult>,
    pub skipped: Vec<Skipped>,
}

/// A column of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Metric {
    Tcp1,
    TcpN,
    UdpMbit,
    UdpKpps,
    UdpLoss,
    IdleP50,
    IdleP90,
    IdleP99,
    IdleP999,
    IdleMax,
    LoadP50,
    LoadP90,
    LoadP99,
    LoadP999,
    LoadMax,
}

impl Metric {
    pub(crate) const ALL: [Metric; 15] = [
        Metric::Tcp1,
        Metric::TcpN,
        Metric::UdpMbit,
        Metric::UdpKpps,
        Metric::UdpLoss,
        Metric::IdleP50,
        Metric::IdleP90,
        Metric::IdleP99,
        Metric::IdleP999,
        Metric::IdleMax,
        Metric::LoadP50,
        Metric::LoadP90,
        Metric::LoadP99,
        Metric::LoadP999,
        Metric::LoadMax,
    ];

    /// Key in the JSON ratio objects.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Metric::Tcp1 => "tcp_1_gbit_s",
            Metric::TcpN => "tcp_n_gbit_s",
            Metric::UdpMbit => "udp_mbit_s",
            Metric::UdpKpps => "udp_kpps",
            Metric::UdpLoss => "udp_loss_pct",
            Metric::IdleP50 => "idle_p50_us",
            Metric::IdleP90 => "idle_p90_us",
            Metric::IdleP99 => "idle_p99_us",
            Metric::IdleP999 => "idle_p99_9_us",
            Metric::IdleMax => "idle_max_us",
            Metric::LoadP50 => "load_p50_us",
            Metric::LoadP90 => "load_p90_us",
            Metric::LoadP99 => "load_p99_us",
            Metric::LoadP999 => "load_p99_9_us",
            Metric::LoadMax => "load_max_us",
        }
    }

    fn label(self, meta: &Meta) -> String {
        match self {
            Metric::Tcp1 => "TCP, 1 stream (Gbit/s)".into(),
            Metric::TcpN => format!("TCP, {} streams (Gbit/s)", meta.streams),
            Metric::UdpMbit => format!("UDP {} B, received (Mbit/s)", meta.udp_payload),
            Metric::UdpKpps => format!("UDP {} B, received (kpackets/s)", meta.udp_payload),
            Metric::UdpLoss => "UDP loss (%)".into(),
            Metric::IdleP50 => "RTT idle p50 (µs)".into(),
            Metric::IdleP90 => "RTT idle p90 (µs)".into(),
            Metric::IdleP99 => "RTT idle p99 (µs)".into(),
            Metric::IdleP999 => "RTT idle p99.9 (µs)".into(),
            Metric::IdleMax => "RTT idle max (µs)".into(),
            Metric::LoadP50 => "RTT under TCP load p50 (µs)".into(),
            Metric::LoadP90 => "RTT under TCP load p90 (µs)".into(),
            Metric::LoadP99 => "RTT under TCP load p99 (µs)".into(),
            Metric::LoadP999 => "RTT under TCP load p99.9 (µs)".into(),
            Metric::LoadMax => "RTT under TCP load max (µs)".into(),
        }
    }

    pub(crate) fn value(self, s: &SubjectResult) -> Option<f64> {
        let idle = s.latency_idle.as_ref();
        let load = s.latency_load.as_ref();
        match self {
            Metric::Tcp1 => s.tcp_1.as_ref().map(|t| t.gbit_s),
            Metric::TcpN => s.tcp_n.as_ref().map(|t| t.gbit_s),
            Metric::UdpMbit => s.udp.as_ref().map(|u| u.received_mbit_s),
            Metric::UdpKpps => s.udp.as_ref().map(|u| u.received_pps / 1000.0),
            Metric::UdpLoss => s.udp.as_ref().map(|u| u.loss * 100.0),
            Metric::IdleP50 => idle.map(|l| l.p50_us),
            Metric::IdleP90 => idle.map(|l| l.p90_us),
            Metric::IdleP99 => idle.map(|l| l.p99_us),
            Metric::IdleP999 => idle.map(|l| l.p999_us),
            Metric::IdleMax => idle.map(|l| l.max_us),
            Metric::LoadP50 => load.map(|l| l.p50_us),
            Metric::LoadP90 => load.map(|l| l.p90_us),
            Metric::LoadP99 => load.map(|l| l.p99_us),
            Metric::LoadP999 => load.map(|l| l.p999_us),
            Metric::LoadMax => load.map(|l| l.max_us),
        }
    }

    /// Loss is a difference of two small numbers: a ratio of it says nothing.
    fn has_ratio(self) -> bool {
        self != Metric::UdpLoss
    }
}

fn fmt_value(m: Metric, v: f64) -> String {
    match m {
        Metric::Tcp1 | Metric::TcpN => format!("{v:.2}"),
        Metric::UdpMbit => format!("{v:.0}"),
        Metric::UdpKpps => format!("{v:.1}"),
        Metric::UdpLoss => format!("{v:.2}"),
        _ if v < 100.0 => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.3}×")
    }
}

/// `subject ÷ baseline`, when both are there and the baseline is not zero.
fn ratio(m: Metric, s: &SubjectResult, base: &SubjectResult) -> Option<f64> {
    let (v, b) = (m.value(s)?, m.value(base)?);
    (m.has_ratio() && b > 0.0 && v.is_finite()).then(|| v / b)
}

impl Report {
    /// The bare-veth subject, if it ran.
    pub(crate) fn veth(&self) -> Option<&SubjectResult> {
        self.subjects.iter().find(|s| s.kind == "veth")
    }

    /// The first weft back-end, if it ran.
    pub(crate) fn first_weft(&self) -> Option<&SubjectResult> {
        self.subjects.iter().find(|s| s.kind == "weft")
    }

    /// The comparisons of the ratio table: (subject, baseline) pairs, veth first.
    fn ratio_pairs(&self) -> Vec<(&SubjectResult, &SubjectResult)> {
        let mut pairs = Vec::new();
        if let Some(v) = self.veth() {
            pairs.extend(
                self.subjects
                    .iter()
                    .filter(|s| s.name != v.name)
                    .map(|s| (s, v)),
            );
        }
        if let Some(w) = self.first_weft() {
            pairs.extend(
                self.subjects
                    .iter()
                    .filter(|s| s.name != w.name && s.kind != "veth")
                    .map(|s| (s, w)),
            );
        }
        pairs
    }

    /// The values table and the ratio table, markdown, plus skipped subjects and errors.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "| metric |");
        for s in &self.subjects {
            let _ = write!(out, " {} |", s.name);
        }
        let _ = write!(out, "\n|---|");
        for _ in &self.subjects {
            let _ = write!(out, "---:|");
        }
        out.push('\n');
        for m in Metric::ALL {
            let _ = write!(out, "| {} |", m.label(&self.meta));
            for s in &self.subjects {
                let _ = match m.value(s) {
                    Some(v) => write!(out, " {} |", fmt_value(m, v)),
                    None => write!(out, " – |"),
                };
            }
            out.push('\n');
        }
        let pairs = self.ratio_pairs();
        if !pairs.is_empty() {
            out.push_str(
                "\nRatios (subject ÷ baseline, same run; throughput: higher is better, \
                 RTT: lower is better):\n\n| metric |",
            );
            for (s, b) in &pairs {
                let _ = write!(out, " {} ÷ {} |", s.name, b.name);
            }
            let _ = write!(out, "\n|---|");
            for _ in &pairs {
                let _ = write!(out, "---:|");
            }
            out.push('\n');
            for m in Metric::ALL.into_iter().filter(|m| m.has_ratio()) {
                let _ = write!(out, "| {} |", m.label(&self.meta));
                for (s, b) in &pairs {
                    let _ = match ratio(m, s, b) {
                        Some(r) => write!(out, " {} |", fmt_ratio(r)),
                        None => write!(out, " – |"),
                    };
                }
                out.push('\n');
            }
        }
        for s in &self.subjects {
            if let Some(e) = &s.error {
                let _ = writeln!(out, "\n{}: error: {e}", s.name);
            }
        }
        if !self.skipped.is_empty() {
            out.push('\n');
            for k in &self.skipped {
                let _ = writeln!(out, "skipped {}: {}", k.name, k.reason);
            }
        }
        out
    }

    /// The JSON document: the report plus `ratios.vs_veth` / `ratios.vs_first_weft`
    /// (`{subject: {metric key: ratio}}`).
    pub(crate) fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        let block = |base: Option<&SubjectResult>| -> Value {
            let Some(b) = base else {
                return Value::Null;
            };
            let mut subjects = Map::new();
            for s in self.subjects.iter().filter(|s| s.name != b.name) {
                let mut ms = Map::new();
                for m in Metric::ALL {
                    if let Some(r) = ratio(m, s, b) {
                        ms.insert(m.key().into(), json!(r));
                    }
                }
                subjects.insert(s.name.clone(), Value::Object(ms));
            }
            json!({"baseline": b.name, "subjects": subjects})
        };
        v["ratios"] = json!({
            "vs_veth": block(self.veth()),
            "vs_first_weft": block(self.first_weft()),
        });
        v
    }

    /// The plot: throughput bars (left) and RTT percentiles on a log scale (right; solid
    /// idle, light under load).
    pub(crate) fn svg(&self) -> String {
        const W: f64 = 1000.0;
        const H: f64 = 460.0;
        const COLORS: [&str; 8] = [
            "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
        ];
        let color = |i: usize| COLORS[i % COLORS.len()];
        let n = self.subjects.len().max(1);
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14">weft-perf: {} s per measurement, {} CPUs, kernel {}</text>"#,
            W / 2.0,
            self.meta.duration_s,
            self.meta.cpus,
            esc(&self.meta.kernel)
        );

        // left panel: throughput, linear Gbit/s
        let (x0, y0, pw, ph) = (60.0, 50.0, 400.0, 320.0);
        type Pick = fn(&SubjectResult) -> Option<f64>;
        let groups: [(&str, Pick); 3] = [
            ("TCP 1", |s| Metric::Tcp1.value(s)),
            ("TCP N", |s| Metric::TcpN.value(s)),
            ("UDP", |s| Metric::UdpMbit.value(s).map(|v| v / 1000.0)),
        ];
        let max = groups
            .iter()
            .flat_map(|(_, f)| self.subjects.iter().filter_map(f))
            .fold(0.0_f64, f64::max);
        let top = nice_ceiling(max);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">throughput (Gbit/s, received)</text>"#,
            x0 + pw / 2.0,
            y0 - 12.0
        );
        for k in 0..=4 {
            let v = top * f64::from(k) / 4.0;
            let y = y0 + ph - ph * f64::from(k) / 4.0;
            let _ = writeln!(
                o,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 4.0,
                y + 4.0,
                trim_num(v)
            );
        }
        let gw = pw / groups.len() as f64;
        let bw = gw * 0.8 / n as f64;
        for (g, (label, f)) in groups.iter().enumerate() {
            let gx = x0 + gw * g as f64 + gw * 0.1;
            for (i, s) in self.subjects.iter().enumerate() {
                let Some(v) = f(s) else { continue };
                let h = if top > 0.0 { ph * v / top } else { 0.0 };
                let x = gx + bw * i as f64;
                let _ = writeln!(
                    o,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {label}: {v:.3} Gbit/s</title></rect>"#,
                    y0 + ph - h,
                    bw * 0.9,
                    color(i),
                    esc(&s.name)
                );
                let _ = writeln!(
                    o,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                    x + bw * 0.45,
                    y0 + ph - h - 3.0,
                    trim_num(v)
                );
            }
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                x0 + gw * (g as f64 + 0.5),
                y0 + ph + 16.0
            );
        }
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{}" x2="{}" y2="{}" stroke="#000"/>"##,
            y0 + ph,
            x0 + pw,
            y0 + ph
        );

        // right panel: RTT percentiles, log10 µs
        let (x1, pw1) = (560.0, 410.0);
        let pct: [(&str, Metric, Metric); 5] = [
            ("p50", Metric::IdleP50, Metric::LoadP50),
            ("p90", Metric::IdleP90, Metric::LoadP90),
            ("p99", Metric::IdleP99, Metric::LoadP99),
            ("p99.9", Metric::IdleP999, Metric::LoadP999),
            ("max", Metric::IdleMax, Metric::LoadMax),
        ];
        let vals: Vec<f64> = pct
            .iter()
            .flat_map(|(_, a, b)| [a, b])
            .flat_map(|m| self.subjects.iter().filter_map(|s| m.value(s)))
            .filter(|v| *v > 0.0)
            .collect();
        let lo = vals
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
            .log10()
            .floor();
        let hi = vals.iter().copied().fold(0.0_f64, f64::max).log10().ceil();
        let (lo, hi) = if vals.is_empty() {
            (0.0, 3.0)
        } else if hi <= lo {
            (lo, lo + 1.0)
        } else {
            (lo, hi)
        };
        let ypos = |v: f64| y0 + ph - ph * (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">UDP echo RTT (µs, log scale; solid idle, light under TCP load)</text>"#,
            x1 + pw1 / 2.0,
            y0 - 12.0
        );
        let mut e = lo;
        while e <= hi {
            let v = 10f64.powf(e);
            let y = ypos(v);
            let _ = writeln!(
                o,
                r##"<line x1="{x1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x1 + pw1,
                x1 - 4.0,
                y + 4.0,
                trim_num(v)
            );
            e += 1.0;
        }
        let gw = pw1 / pct.len() as f64;
        let bw = gw * 0.8 / (2 * n) as f64;
        for (g, (label, idle, load)) in pct.iter().enumerate() {
            let gx = x1 + gw * g as f64 + gw * 0.1;
            for (i, s) in self.subjects.iter().enumerate() {
                for (j, (m, opacity)) in [(idle, 1.0), (load, 0.45)].into_iter().enumerate() {
                    let Some(v) = m.value(s) else { continue };
                    let y = ypos(v);
                    let x = gx + bw * (2 * i + j) as f64;
                    let _ = writeln!(
                        o,
                        r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="{opacity}"><title>{} {label} {}: {v:.1} µs</title></rect>"#,
                        bw * 0.9,
                        (y0 + ph - y).max(0.0),
                        color(i),
                        esc(&s.name),
                        if j == 0 { "idle" } else { "under load" }
                    );
                }
            }
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                x1 + gw * (g as f64 + 0.5),
                y0 + ph + 16.0
            );
        }
        let _ = writeln!(
            o,
            r##"<line x1="{x1}" y1="{}" x2="{}" y2="{}" stroke="#000"/>"##,
            y0 + ph,
            x1 + pw1,
            y0 + ph
        );

        // legend
        for (i, s) in self.subjects.iter().enumerate() {
            let x = 60.0 + 180.0 * (i % 5) as f64;
            let y = y0 + ph + 40.0 + 18.0 * (i / 5) as f64;
            let _ = writeln!(
                o,
                r#"<rect x="{x}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{y:.1}">{}</text>"#,
                y - 10.0,
                color(i),
                x + 16.0,
                esc(&s.name)
            );
        }
        o.push_str("</svg>\n");
        o
    }
}

/// 1, 2 or 5 × 10^k at or above `v` (and 1 for nothing).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let e = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * e)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * e)
}

fn trim_num(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// XML text escaping.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(p50: f64, p99: f64) -> Latency {
        Latency {
            samples: 1000,
            lost: 0,
            min_us: p50 / 2.0,
            mean_us: p50,
            p50_us: p50,
            p90_us: (p50 + p99) / 2.0,
            p99_us: p99,
            p999_us: p99 * 2.0,
            max_us: p99 * 4.0,
            buckets: vec![(p50, 500), (p99, 500)],
            load_gbit_s: None,
        }
    }

    fn subject(name: &str, kind: &str, gbit: f64, p50: f64) -> SubjectResult {
        SubjectResult {
            name: name.into(),
            kind: kind.into(),
            tcp_1: Some(Throughput {
                streams: 1,
                bytes: (gbit * 1e9 / 8.0) as u64,
                secs: 1.0,
                gbit_s: gbit,
            }),
            tcp_n: Some(Throughput {
                streams: 4,
                bytes: 0,
                secs: 1.0,
                gbit_s: gbit * 1.5,
            }),
            udp: Some(UdpResult {
                payload: 1200,
                sent_packets: 100_000,
                received_packets: 90_000,
                received_bytes: 90_000 * 1200,
                secs: 1.0,
                received_mbit_s: 864.0,
                received_pps: 90_000.0,
                loss: 0.1,
            }),
            latency_idle: Some(lat(p50, p50 * 3.0)),
            latency_load: Some(lat(p50 * 10.0, p50 * 30.0)),
            error: None,
            notes: vec![],
        }
    }

    fn fixed() -> Report {
        let mut weft_b = subject("weft-plain<&>", "weft", 0.5, 80.0);
        weft_b.udp = None;
        weft_b.error = Some("udp: no datagram arrived".into());
        Report {
            meta: Meta {
                started_unix: 1,
                duration_s: 5.0,
                streams: 4,
                udp_payload: 1200,
                echo_interval_us: 1000,
                cpus: 2,
                kernel: "6.1".into(),
                weft: Some("/x/weft".into()),
            },
            subjects: vec![
                subject("veth", "veth", 20.0, 20.0),
                subject("weft-auto", "weft", 1.0, 100.0),
                weft_b,
            ],
            skipped: vec![Skipped {
                name: "zerotier-one".into(),
                reason: "not installed (no zerotier-one in PATH)".into(),
            }],
        }
    }

    #[test]
    fn table_has_values_ratios_errors_and_skips() {
        let t = fixed().table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| metric | veth | weft-auto | weft-plain<&> |");
        assert!(lines.contains(&"| TCP, 1 stream (Gbit/s) | 20.00 | 1.00 | 0.50 |"));
        assert!(lines.contains(&"| TCP, 4 streams (Gbit/s) | 30.00 | 1.50 | 0.75 |"));
        assert!(lines.contains(&"| UDP 1200 B, received (Mbit/s) | 864 | 864 | – |"));
        assert!(lines.contains(&"| UDP 1200 B, received (kpackets/s) | 90.0 | 90.0 | – |"));
        assert!(lines.contains(&"| UDP loss (%) | 10.00 | 10.00 | – |"));
        assert!(lines.contains(&"| RTT idle p50 (µs) | 20.0 | 100 | 80.0 |"));
        // ratio header: two vs veth, one vs the first weft back-end
        assert!(lines.contains(
            &"| metric | weft-auto ÷ veth | weft-plain<&> ÷ veth | weft-plain<&> ÷ weft-auto |"
        ));
        assert!(lines.contains(&"| TCP, 1 stream (Gbit/s) | 0.050× | 0.025× | 0.50× |"));
        assert!(lines.contains(&"| RTT idle p50 (µs) | 5.00× | 4.00× | 0.80× |"));
        assert!(lines.contains(&"| UDP 1200 B, received (Mbit/s) | 1.00× | – | – |"));
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("| UDP loss (%) |") && l.contains('×'))
        );
        assert!(t.contains("weft-plain<&>: error: udp: no datagram arrived"));
        assert!(t.contains("skipped zerotier-one: not installed (no zerotier-one in PATH)"));
        // 15 metric rows + 14 ratio rows
        assert_eq!(lines.iter().filter(|l| l.starts_with("| RTT")).count(), 20);
    }

    #[test]
    fn json_round_trips_and_holds_ratios() {
        let r = fixed();
        let v = r.to_json();
        let back: Report = serde_json::from_value(v.clone()).expect("report from its JSON");
        assert_eq!(back, r);
        assert_eq!(v["subjects"][0]["tcp_1"]["gbit_s"], json!(20.0));
        assert_eq!(v["subjects"][1]["latency_idle"]["p99_us"], json!(300.0));
        assert_eq!(
            v["subjects"][1]["latency_idle"]["buckets"][0],
            json!([100.0, 500])
        );
        assert_eq!(v["ratios"]["vs_veth"]["baseline"], "veth");
        let auto = &v["ratios"]["vs_veth"]["subjects"]["weft-auto"];
        assert_eq!(auto["tcp_1_gbit_s"], json!(0.05));
        assert_eq!(auto["idle_p50_us"], json!(5.0));
        assert!(auto.get("udp_loss_pct").is_none());
        let vs_weft = &v["ratios"]["vs_first_weft"];
        assert_eq!(vs_weft["baseline"], "weft-auto");
        assert_eq!(
            vs_weft["subjects"]["weft-plain<&>"]["tcp_1_gbit_s"],
            json!(0.5)
        );
        assert!(
            vs_weft["subjects"]["weft-plain<&>"]
                .get("udp_mbit_s")
                .is_none()
        );
        // veth is compared with weft too (veth ÷ weft), so both directions can be read
        assert_eq!(vs_weft["subjects"]["veth"]["tcp_1_gbit_s"], json!(20.0));
    }

    #[test]
    fn no_baselines_no_ratios() {
        let mut r = fixed();
        r.subjects.retain(|s| s.name == "weft-auto");
        let t = r.table();
        assert!(!t.contains("Ratios"));
        let v = r.to_json();
        assert_eq!(v["ratios"]["vs_veth"], Value::Null);
        assert_eq!(v["ratios"]["vs_first_weft"]["subjects"], json!({}));
    }

    #[test]
    fn svg_draws_every_bar_and_escapes_names() {
        let s = fixed().svg();
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.trim_end().ends_with("</svg>"));
        // throughput bars: 3 groups × 3 subjects, less the missing UDP value = 8;
        // RTT bars: 5 percentiles × 3 subjects × (idle, load) = 30
        assert_eq!(s.matches(" Gbit/s</title></rect>").count(), 8);
        assert_eq!(s.matches(" µs</title></rect>").count(), 30);
        assert!(s.contains("weft-plain&lt;&amp;&gt;"));
        assert!(!s.contains("plain<&>"));
        // the tallest throughput bar (veth TCP N, 30 Gbit/s) under a 50 Gbit/s scale
        assert!(s.contains("<title>veth TCP N: 30.000 Gbit/s</title>"));
        assert!(s.contains(">50</text>"));
        // the log axis spans the decades of the values: 10 µs .. 100 ms (largest: 12,000 µs)
        assert!(s.contains(">10</text>") && s.contains(">100000</text>"));
        // every element opened is closed
        assert_eq!(
            s.matches("<rect").count(),
            s.matches("</rect>").count() + 1 + 3
        );
    }

    #[test]
    fn nice_scales() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(17.0), 20.0);
        assert_eq!(nice_ceiling(30.0), 50.0);
        assert_eq!(nice_ceiling(501.0), 1000.0);
    }
}
