//! Per-path quality measurement from QOS_MEASUREMENT exchanges. spec: vl1.md §9.4
//!
//! Both directions live here:
//! * as the *measured* side we note the sampled packets we send on the path (odd on-wire packet
//!   IDs, not ACK or QOS_MEASUREMENT) with their send time; the peer reports them back with
//!   holding times and each report yields latency samples `((now − sent) − holding) / 2`;
//! * as the *measuring* side we note the sampled packets we receive and build the report the
//!   peer expects (≥ 1 record, sent when 140 have accumulated or the QoS interval elapsed).
//!
//! Windows are counted in samples (latency: the last [`LATENCY_WINDOW`]; loss: the last
//! [`LOSS_WINDOW`] resolved samples), so the numbers only change when traffic is measured, and
//! tests in virtual time are exact.

use std::collections::{HashMap, VecDeque};

use weft_wire::packet::Verb;
use weft_wire::verbs::{QosMeasurement, QosRecord};

use crate::Timestamp;

/// Latency samples kept per path.
pub const LATENCY_WINDOW: usize = 64;
/// Resolved (acknowledged or lost) sampled packets kept per path for the loss ratio.
pub const LOSS_WINDOW: usize = 128;
/// Sampled packets awaiting a report, per path; older ones are forgotten (not counted lost).
pub const MAX_OUTSTANDING: usize = 1024;
/// Rate gate: reports arriving closer than (QoS interval / 64) to the previous one increment a
/// counter (reset otherwise); reports are processed while it is below this. spec: vl1.md §9.4
pub const QOS_GATE_LIMIT: u32 = 128;
/// Reordering tolerance for loss detection: a sampled packet counts as lost when a report
/// acknowledges a packet sent more than this (plus four times the delay variation) after it
/// and it has not been acknowledged itself (weft's rule, like TCP's SACK-based detection; the
/// spec is silent on how 1.14 estimates loss).
pub const LOSS_GRACE_MS: i64 = 100;
/// How long a report record for an id not (yet) known as sent is kept: longer than the data
/// plane takes to report its sends.
pub const EARLY_ACK_MS: i64 = 5_000;

/// Whether a packet takes part in QoS sampling: odd on-wire ID, and not ACK or QOS_MEASUREMENT.
/// spec: vl1.md §9.4
pub fn is_sampled(packet_id: u64, verb: Verb) -> bool {
    packet_id & 1 == 1 && verb != Verb::ACK && verb != Verb::QOS_MEASUREMENT
}

/// A fixed-capacity window of recent values.
#[derive(Debug, Clone)]
struct Window<T> {
    cap: usize,
    v: VecDeque<T>,
}

impl<T> Window<T> {
    fn new(cap: usize) -> Self {
        Window {
            cap,
            v: VecDeque::with_capacity(cap),
        }
    }
    fn push(&mut self, x: T) {
        if self.v.len() == self.cap {
            self.v.pop_front();
        }
        self.v.push_back(x);
    }
}

/// Mean and population variance of a set of samples (`None` when empty).
pub fn mean_variance(samples: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut n, mut mean, mut m2) = (0u64, 0f64, 0f64);
    for x in samples {
        // Welford's online update: numerically stable.
        n += 1;
        let d = x - mean;
        mean += d / n as f64;
        m2 += d * (x - mean);
    }
    (n > 0).then(|| (mean, m2 / n as f64))
}

/// What a path's measurements say now.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QualitySnapshot {
    /// Mean one-way latency estimate (ms) over the window; `None` before the first sample.
    pub latency_mean_ms: Option<f64>,
    /// Packet delay variation: standard deviation of the latency samples (ms).
    pub pdv_ms: Option<f64>,
    /// Packet loss ratio over the loss window; `None` before anything was resolved.
    pub loss: Option<f64>,
    /// Packet error ratio (packets that failed authentication) over the last full window.
    pub error: f64,
}

/// Measurements of one path.
#[derive(Debug, Clone)]
pub struct PathQuality {
    latency: Window<f64>,
    loss: Window<bool>,
    /// Sent sampled packets not yet resolved: id → (send time, acknowledged), and the send
    /// order in which they are resolved into the loss window.
    outstanding: HashMap<u64, (Timestamp, bool)>,
    order: VecDeque<(u64, Timestamp)>,
    /// Report records for ids not (yet) known as sent: the data plane tells the control plane
    /// of its sends up to a second late, so a report can overtake them. id → (report time,
    /// holding time), oldest first in `early_order`.
    early: HashMap<u64, (Timestamp, u16)>,
    early_order: VecDeque<u64>,
    /// Received sampled packets to report (id, receipt time).
    pending: Vec<QosRecord>,
    pending_at: Vec<Timestamp>,
    last_report_sent: Timestamp,
    last_report_received: Option<Timestamp>,
    gate_last: Option<Timestamp>,
    gate_count: u32,
    window_rx: u64,
    window_err: u64,
    error: f64,
}

impl PathQuality {
    /// A path with no measurements; `now` starts the first report interval.
    pub fn new(now: Timestamp) -> Self {
        PathQuality {
            latency: Window::new(LATENCY_WINDOW),
            loss: Window::new(LOSS_WINDOW),
            outstanding: HashMap::new(),
            order: VecDeque::new(),
            early: HashMap::new(),
            early_order: VecDeque::new(),
            pending: Vec::new(),
            pending_at: Vec::new(),
            last_report_sent: now,
            last_report_received: None,
            gate_last: None,
            gate_count: 0,
            window_rx: 0,
            window_err: 0,
            error: 0.0,
        }
    }

    /// Notes a packet sent on this path.
    pub fn note_sent(&mut self, now: Timestamp, packet_id: u64, verb: Verb) {
        if !is_sampled(packet_id, verb) {
            return;
        }
        if self.order.len() >= MAX_OUTSTANDING
            && let Some((old, _)) = self.order.pop_front()
            && let Some((_, true)) = self.outstanding.remove(&old)
        {
            self.loss.push(false);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.outstanding.entry(packet_id) {
            // Already acknowledged by a report that overtook the news of this send.
            let early = self.early.remove(&packet_id);
            e.insert((now, early.is_some()));
            self.order.push_back((packet_id, now));
            if let Some((reported, holding)) = early {
                let sample = ((reported - now) - i64::from(holding)) as f64 / 2.0;
                self.latency.push(sample.max(0.0));
            }
        }
    }

    /// Notes a packet received on this path (authenticated). Returns true when a report is due
    /// at once (140 records accumulated).
    pub fn note_received(&mut self, now: Timestamp, packet_id: u64, verb: Verb) -> bool {
        self.window_rx += 1;
        if !is_sampled(packet_id, verb) {
            return false;
        }
        if self.pending.len() < QosMeasurement::MAX_RECORDS {
            self.pending.push(QosRecord {
                packet_id,
                holding_ms: 0,
            });
            self.pending_at.push(now);
        }
        self.pending.len() >= QosMeasurement::MAX_RECORDS
    }

    /// Notes a packet on this path that failed authentication.
    pub fn note_error(&mut self) {
        self.window_rx += 1;
        self.window_err += 1;
    }

    /// Closes the error window (called every quality-estimation interval).
    pub fn roll_error_window(&mut self) {
        if self.window_rx > 0 {
            self.error = self.window_err as f64 / self.window_rx as f64;
        }
        self.window_rx = 0;
        self.window_err = 0;
    }

    /// The report to send now, if one is due: at least one record, and 140 records or
    /// `qos_interval` since the last report. spec: vl1.md §9.4
    pub fn take_report(&mut self, now: Timestamp, qos_interval: i64) -> Option<QosMeasurement> {
        if self.pending.is_empty()
            || (self.pending.len() < QosMeasurement::MAX_RECORDS
                && now - self.last_report_sent < qos_interval)
        {
            return None;
        }
        let mut records = std::mem::take(&mut self.pending);
        for (r, at) in records.iter_mut().zip(self.pending_at.drain(..)) {
            r.holding_ms = (now - at).clamp(0, u16::MAX as i64) as u16;
        }
        self.last_report_sent = now;
        Some(QosMeasurement { records })
    }

    /// Processes a report the peer sent on this path. Returns the number of latency samples
    /// taken, or `None` when the rate gate refused it. spec: vl1.md §9.4
    pub fn handle_report(
        &mut self,
        now: Timestamp,
        report: &QosMeasurement,
        qos_interval: i64,
    ) -> Option<usize> {
        let close = self
            .gate_last
            .is_some_and(|t| (now - t).abs() < qos_interval / 64);
        self.gate_last = Some(now);
        self.gate_count = if close { self.gate_count + 1 } else { 0 };
        if self.gate_count >= QOS_GATE_LIMIT {
            return None;
        }
        self.last_report_received = Some(now);
        let mut n = 0;
        let mut newest = None;
        for r in &report.records {
            if let Some((sent, acked @ false)) = self.outstanding.get_mut(&r.packet_id) {
                *acked = true;
                let sent = *sent;
                let sample = ((now - sent) - r.holding_ms as i64) as f64 / 2.0;
                self.latency.push(sample.max(0.0));
                newest = newest.max(Some(sent));
                n += 1;
            } else if !self.outstanding.contains_key(&r.packet_id) {
                self.note_early(now, r.packet_id, r.holding_ms);
            }
        }
        // Anything sent clearly before the newest packet this report acknowledges, and never
        // acknowledged, was lost.
        if let Some(newest) = newest {
            let margin = 4.0 * self.snapshot().pdv_ms.unwrap_or(0.0) + LOSS_GRACE_MS as f64;
            self.expire(newest - margin as i64);
        }
        Some(n)
    }

    /// Keeps a report record for an id not known as sent (yet): at most [`MAX_OUTSTANDING`],
    /// none older than [`EARLY_ACK_MS`].
    fn note_early(&mut self, now: Timestamp, id: u64, holding: u16) {
        while let Some(old) = self.early_order.front().copied() {
            let stale = self
                .early
                .get(&old)
                .is_none_or(|(t, _)| now - *t > EARLY_ACK_MS);
            if !stale && self.early_order.len() < MAX_OUTSTANDING {
                break;
            }
            self.early_order.pop_front();
            self.early.remove(&old);
        }
        if self.early.insert(id, (now, holding)).is_none() {
            self.early_order.push_back(id);
        }
    }

    /// Resolves, in send order, every sampled packet sent at or before `deadline` into the
    /// loss window: acknowledged ones as delivered, the others as lost (also used for paths
    /// whose reports stopped altogether).
    pub fn expire(&mut self, deadline: Timestamp) {
        while let Some(&(id, sent)) = self.order.front() {
            if sent > deadline {
                break;
            }
            self.order.pop_front();
            if let Some((_, acked)) = self.outstanding.remove(&id) {
                self.loss.push(!acked);
            }
        }
    }

    /// When the peer last sent a (processed) report on this path.
    pub fn last_report_received(&self) -> Option<Timestamp> {
        self.last_report_received
    }

    /// The measurements now.
    pub fn snapshot(&self) -> QualitySnapshot {
        let mv = mean_variance(self.latency.v.iter().copied());
        let lost = self.loss.v.iter().filter(|l| **l).count();
        QualitySnapshot {
            latency_mean_ms: mv.map(|m| m.0),
            pdv_ms: mv.map(|m| m.1.sqrt()),
            loss: (!self.loss.v.is_empty()).then(|| lost as f64 / self.loss.v.len() as f64),
            error: self.error,
        }
    }
}

/// Quality in (0, 1] from measurements and the policy's `linkQuality`: a weighted geometric mean
/// of the four metrics, each scored `1 − min(value / max, 1)` and floored at [`SCORE_FLOOR`] so
/// no path ever scores zero (weft's formula; the spec gives the parameters, not the formula).
/// Unmeasured metrics score 1, so a new path is not starved before it has been measured.
pub fn quality_score(q: &QualitySnapshot, lq: &super::LinkQuality) -> f64 {
    let part = |v: Option<f64>, max: f64| match v {
        None => 1.0,
        Some(_) if max <= 0.0 => 1.0,
        Some(v) => (1.0 - (v / max).min(1.0)).max(SCORE_FLOOR),
    };
    let parts = [
        (part(q.latency_mean_ms, lq.lat_max), lq.lat_weight),
        (part(q.pdv_ms, lq.pdv_max), lq.pdv_weight),
        (part(q.loss, lq.plr_max), lq.plr_weight),
        (part(Some(q.error), lq.per_max), lq.per_weight),
    ];
    let wsum: f64 = parts.iter().map(|p| p.1).sum();
    if wsum <= 0.0 {
        return 1.0;
    }
    parts
        .iter()
        .map(|(s, w)| s.powf(w / wsum))
        .product::<f64>()
        .clamp(SCORE_FLOOR, 1.0)
}

/// The lowest score of a metric (and of a path).
pub const SCORE_FLOOR: f64 = 0.05;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bond::LinkQuality;

    const QOS: i64 = 10_000;

    #[test]
    fn mean_variance_is_exact() {
        assert_eq!(mean_variance([]), None);
        assert_eq!(
            mean_variance([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
            Some((5.0, 4.0))
        );
        assert_eq!(mean_variance([3.0]), Some((3.0, 0.0)));
    }

    /// The data plane reports its sends up to a second late: a report that names an id before
    /// its send is known still yields the sample, and the packet is not counted lost.
    #[test]
    fn a_report_that_overtakes_the_send_still_counts() {
        let mut a = PathQuality::new(0);
        // Sent at 1000 (known at once) and 1010 (known only after the report).
        a.note_sent(1_000, 0x11, Verb::FRAME);
        let report = QosMeasurement {
            records: vec![
                QosRecord {
                    packet_id: 0x11,
                    holding_ms: 40,
                },
                QosRecord {
                    packet_id: 0x13,
                    holding_ms: 30,
                },
            ],
        };
        assert_eq!(a.handle_report(1_100, &report, QOS), Some(1));
        a.note_sent(1_010, 0x13, Verb::FRAME);
        // (1100 − 1000 − 40) / 2 = 30 and (1100 − 1010 − 30) / 2 = 30.
        assert_eq!(a.snapshot().latency_mean_ms, Some(30.0));
        a.expire(2_000);
        assert_eq!(a.snapshot().loss, Some(0.0));
        // A record nobody sent is forgotten after EARLY_ACK_MS: a later send with that id is
        // an ordinary outstanding packet (and lost when never acknowledged).
        let stray = QosMeasurement {
            records: vec![QosRecord {
                packet_id: 0x15,
                holding_ms: 0,
            }],
        };
        a.handle_report(3_000, &stray, QOS);
        a.note_early(3_000 + EARLY_ACK_MS + 1, 0x17, 0);
        a.note_sent(9_000, 0x15, Verb::FRAME);
        a.expire(10_000);
        assert_eq!(a.snapshot().loss, Some(1.0 / 3.0));
    }

    #[test]
    fn sampling_rule() {
        assert!(is_sampled(0x11, Verb::FRAME));
        assert!(!is_sampled(0x10, Verb::FRAME));
        assert!(!is_sampled(0x11, Verb::ACK));
        assert!(!is_sampled(0x11, Verb::QOS_MEASUREMENT));
    }

    /// Two nodes in virtual time: A sends on a path with 20 ms one-way latency ± jitter; B
    /// measures, reports, A computes latency, pdv and loss.
    #[test]
    fn latency_pdv_and_loss_from_reports() {
        let mut a = PathQuality::new(0);
        let mut b = PathQuality::new(0);
        let mut now = 0i64;
        let mut sent = 0;
        // 100 packets, every 10 ms; one-way delay alternates 15 / 25 ms; the last two of every
        // ten are lost (one of each delay, so the received ones still alternate).
        let mut arrivals: Vec<(i64, u64)> = Vec::new();
        for i in 0..100u64 {
            let id = (i << 1) | 1;
            a.note_sent(now, id, Verb::FRAME);
            sent += 1;
            if i % 10 < 8 {
                let d = if i % 2 == 0 { 15 } else { 25 };
                arrivals.push((now + d, id));
            }
            a.note_sent(now, i << 1, Verb::FRAME); // even: not sampled
            now += 10;
        }
        assert_eq!(sent, 100);
        arrivals.sort();
        let mut report_at = None;
        for (t, id) in &arrivals {
            b.note_received(*t, *id, Verb::FRAME);
        }
        // The report leaves B after the QoS interval and reaches A 20 ms later.
        let leave = QOS;
        if let Some(r) = b.take_report(leave, QOS) {
            report_at = Some(leave + 20);
            // Holding times: leave − arrival.
            for (rec, (t, _)) in r.records.iter().zip(&arrivals) {
                assert_eq!(rec.holding_ms as i64, leave - t);
            }
            let n = a.handle_report(leave + 20, &r, QOS).unwrap();
            assert_eq!(n, 80);
        }
        assert!(report_at.is_some());
        let s = a.snapshot();
        // RTT − holding = one-way out (15/25) + 20 back; halved: 17.5 / 22.5 → mean 20, sd 2.5.
        // Only the last 64 samples are in the window: 32 of each kind.
        assert_eq!(s.latency_mean_ms, Some(20.0));
        assert_eq!(s.pdv_ms, Some(2.5));
        // Resolved: the packets sent up to 110 ms (4 × pdv + 100) before the newest one
        // acknowledged (970 ms), i.e. 87 packets, 16 of them lost.
        assert_eq!(s.loss, Some(16.0 / 87.0));
        assert!(b.take_report(leave + 1, QOS).is_none(), "nothing pending");
    }

    #[test]
    fn report_due_at_140_records() {
        let mut b = PathQuality::new(0);
        for i in 0..139u64 {
            assert!(!b.note_received(5, (i << 1) | 1, Verb::FRAME));
        }
        assert!(b.take_report(6, QOS).is_none(), "neither 140 nor interval");
        assert!(b.note_received(7, 0xffff, Verb::ECHO));
        let r = b.take_report(8, QOS).unwrap();
        assert_eq!(r.records.len(), 140);
        assert_eq!(r.records[0].holding_ms, 3);
    }

    #[test]
    fn rate_gate_refuses_floods() {
        let mut a = PathQuality::new(0);
        let r = QosMeasurement::default();
        let mut refused = 0;
        for i in 0..200 {
            if a.handle_report(1000 + i, &r, QOS).is_none() {
                refused += 1;
            }
        }
        // The first resets the counter, the next 127 raise it to 127, then all are refused.
        assert_eq!(refused, 200 - 128);
        // A report after a quiet gap is processed again.
        assert!(a.handle_report(100_000, &r, QOS).is_some());
    }

    #[test]
    fn score_orders_paths() {
        let lq = LinkQuality::default();
        let good = QualitySnapshot {
            latency_mean_ms: Some(10.0),
            pdv_ms: Some(1.0),
            loss: Some(0.0),
            error: 0.0,
        };
        let lossy = QualitySnapshot {
            loss: Some(0.05),
            ..good
        };
        let slow = QualitySnapshot {
            latency_mean_ms: Some(400.0),
            ..good
        };
        let g = quality_score(&good, &lq);
        assert!(g > 0.9 && g <= 1.0, "{g}");
        assert!(quality_score(&lossy, &lq) < 0.5 * g);
        assert!(quality_score(&slow, &lq) < g);
        assert_eq!(quality_score(&QualitySnapshot::default(), &lq), 1.0);
    }
}
