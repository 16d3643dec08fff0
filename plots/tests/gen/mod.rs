//! A small deterministic history generator for the plot tests: one topic of four partitions, two
//! consumers, a producer at ~360 records/s, a slow-processing fault on c0 and a network partition
//! of c1, a rebalance after it heals, then a liveness phase. The backpressure strategy decides how
//! the buffers behave: `none` fetches freely (and overruns the bound), `pause` pauses at 80 % of the
//! bound and resumes at 30 %, `credit` fetches only against granted credits.
//!
//! It is a toy model, not the simulator: its only job is to give the charts realistic shapes.

#![allow(dead_code)]

use std::collections::BTreeMap;

use sluice_core::history::{Bounds, Edge, Entry, Event, MemberEvent, Phase, ProducerMeta, Run, TierBound, TopicMeta, TpName, SCHEMA_VERSION};
use sluice_core::types::{Rng, SplitMix64};

pub const TICK_US: u64 = 100_000;
pub const TICKS: u64 = 200;
pub const PARTITIONS: u32 = 4;
pub const BUFFER_RECORDS_MAX: u64 = 300;
/// Records a consumer processes per tick when healthy / during the slow-processing fault.
pub const PROCESS_PER_TICK: u64 = 30;
pub const SLOW_PROCESS_PER_TICK: u64 = 4;
/// Most records fetched from one partition per tick.
pub const FETCH_PER_TP_MAX: u64 = 60;

pub const SLOW_FAULT_US: (u64, u64) = (5_000_000, 8_000_000);
pub const PARTITION_FAULT_US: (u64, u64) = (6_500_000, 9_000_000);
pub const REBALANCE2_US: (u64, u64) = (9_000_000, 9_800_000);
pub const LIVENESS_US: u64 = 11_000_000;

#[derive(Clone, Debug)]
pub struct Options {
    pub strategy: &'static str,
    pub seed: u64,
    pub source: &'static str,
    /// Declare (and enforce) token-bucket tiers.
    pub tiers: bool,
}

impl Options {
    pub fn new(strategy: &'static str, seed: u64) -> Self {
        Options { strategy, seed, source: "sim", tiers: true }
    }
}

pub fn tiers() -> Vec<TierBound> {
    vec![
        TierBound { tier: "global".into(), rate_per_s: 520.0, burst: 150.0 },
        TierBound { tier: "consumer:c0".into(), rate_per_s: 260.0, burst: 60.0 },
    ]
}

struct Bucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last_us: u64,
}

impl Bucket {
    fn refill(&mut self, now_us: u64) {
        let dt = (now_us - self.last_us) as f64 / 1e6;
        self.tokens = (self.tokens + self.rate_per_s * dt).min(self.burst);
        self.last_us = now_us;
    }
}

struct Consumer {
    tps: Vec<TpName>,
    /// Fetched, unprocessed segments `(tp, offset, count)`.
    queue: Vec<(TpName, u64, u64)>,
    paused: bool,
}

impl Consumer {
    fn buffered(&self) -> u64 {
        self.queue.iter().map(|s| s.2).sum()
    }
}

/// A sorted history; `(t_us, n)` keeps insertion order within an instant.
struct Out {
    v: Vec<(u64, usize, Event)>,
}

impl Out {
    fn push(&mut self, t_us: u64, ev: Event) {
        let n = self.v.len();
        self.v.push((t_us, n, ev));
    }
}

pub fn history(o: &Options) -> Vec<Entry> {
    let mut rng = SplitMix64(o.seed);
    let credit = o.strategy == "credit";
    let tier_bounds = if o.tiers { tiers() } else { Vec::new() };
    let mut out = Out { v: Vec::new() };
    let tp = |p: u32| -> TpName { format!("orders/{p}").into() };
    out.push(0, Event::Meta(Box::new(sluice_core::history::Meta {
        schema: SCHEMA_VERSION,
        source: o.source.into(),
        scenario: "gen-slow-and-partition".into(),
        seed: o.seed,
        topics: vec![TopicMeta { name: "orders".into(), partitions: PARTITIONS }],
        producers: vec![ProducerMeta { topic: "orders".into(), record_bytes: 1_024 }],
        consumers: 2,
        strategy: o.strategy.into(),
        bounds: Bounds {
            buffer_records_max: BUFFER_RECORDS_MAX,
            buffer_bytes_max: BUFFER_RECORDS_MAX * 1_024,
            credits_max: if credit { BUFFER_RECORDS_MAX } else { 0 },
            rate_tiers: tier_bounds.clone(),
            duplicate_window_records: None,
            lag_ok_records: 100,
            recovery_deadline_ms: 4000,
            max_poll_interval_ms: 10_000,
            session_timeout_ms: 6000,
        },
        expect: Vec::new(),
        settings: BTreeMap::from([("assignor".to_string(), "range".to_string())]),
    })));
    out.push(0, Event::Phase { phase: Phase::Safety });
    out.push(0, Event::Rebalance { generation: 1, edge: Edge::Start, protocol: "eager".into() });
    let mut consumers: Vec<Consumer> = (0..2u32)
        .map(|c| Consumer { tps: vec![tp(2 * c), tp(2 * c + 1)], queue: Vec::new(), paused: false })
        .collect();
    for (c, con) in consumers.iter().enumerate() {
        out.push(10_000, Event::Member { consumer: c as u32, event: MemberEvent::Start });
        out.push(300_000, Event::Assign { consumer: c as u32, generation: 1, tps: con.tps.clone() });
        for t in &con.tps {
            out.push(300_000, Event::Seek { consumer: c as u32, tp: t.clone(), offset: 0 });
        }
    }
    out.push(400_000, Event::Rebalance { generation: 1, edge: Edge::End, protocol: "eager".into() });

    let mut buckets: BTreeMap<String, Bucket> = tier_bounds
        .iter()
        .map(|t| (t.tier.clone(), Bucket { rate_per_s: t.rate_per_s, burst: t.burst, tokens: t.burst, last_us: 0 }))
        .collect();
    let mut hw: BTreeMap<TpName, u64> = (0..PARTITIONS).map(|p| (tp(p), 0)).collect();
    let mut fetch_pos = hw.clone();
    let mut processed = hw.clone();
    let mut committed = hw.clone();
    let mut seq = hw.clone();

    for (t_us, fault, target, edge) in [
        (SLOW_FAULT_US.0, "slow-processing", "c0", Edge::Start),
        (PARTITION_FAULT_US.0, "partition", "c1", Edge::Start),
        (SLOW_FAULT_US.1, "slow-processing", "c0", Edge::End),
        (PARTITION_FAULT_US.1, "partition", "c1", Edge::End),
    ] {
        out.push(t_us, Event::Fault { fault: fault.into(), target: target.into(), edge });
    }
    out.push(REBALANCE2_US.0, Event::Member { consumer: 1, event: MemberEvent::Evicted });
    out.push(REBALANCE2_US.0, Event::Rebalance { generation: 2, edge: Edge::Start, protocol: "eager".into() });
    for (c, con) in consumers.iter().enumerate() {
        out.push(REBALANCE2_US.1 - 50_000, Event::Assign { consumer: c as u32, generation: 2, tps: con.tps.clone() });
    }
    out.push(REBALANCE2_US.1, Event::Rebalance { generation: 2, edge: Edge::End, protocol: "eager".into() });
    out.push(LIVENESS_US, Event::Phase { phase: Phase::Liveness });

    for tick in 1..=TICKS {
        let now = tick * TICK_US;
        // Produce.
        for p in 0..PARTITIONS {
            let name = tp(p);
            let count = 6 + rng.next_u64() % 7;
            let s = seq[&name];
            out.push(now, Event::ProduceSend { producer: 0, tp: name.clone(), seq: s, count: count as u32 });
            out.push(now + 3_000, Event::ProduceAck { producer: 0, tp: name.clone(), seq: s, count: count as u32, offset: hw[&name] });
            *seq.get_mut(&name).unwrap() += count;
            *hw.get_mut(&name).unwrap() += count;
        }
        let rebalancing = (REBALANCE2_US.0..REBALANCE2_US.1).contains(&now);
        for (ci, con) in consumers.iter_mut().enumerate() {
            let c = ci as u32;
            let cut_off = c == 1 && (PARTITION_FAULT_US.0..PARTITION_FAULT_US.1).contains(&now);
            if rebalancing || cut_off {
                continue;
            }
            let t_fetch = now + 5_000;
            // Fetch.
            let mut allowance = match o.strategy {
                "credit" => BUFFER_RECORDS_MAX.saturating_sub(con.buffered()),
                "pause" if con.paused => 0,
                _ => u64::MAX,
            };
            for name in con.tps.clone() {
                let avail = hw[&name] - fetch_pos[&name];
                let n = avail.min(FETCH_PER_TP_MAX).min(allowance);
                if n == 0 {
                    continue;
                }
                allowance -= n;
                let off = fetch_pos[&name];
                out.push(t_fetch, Event::Fetch {
                    consumer: c,
                    tp: name.clone(),
                    runs: vec![Run { offset: off, producer: 0, seq: off, count: n as u32 }],
                    bytes: n * 1_024,
                    hw: hw[&name],
                });
                con.queue.push((name.clone(), off, n));
                *fetch_pos.get_mut(&name).unwrap() += n;
            }
            // Process, gated by the token buckets.
            let slow = c == 0 && (SLOW_FAULT_US.0..SLOW_FAULT_US.1).contains(&now);
            let mut budget = if slow { SLOW_PROCESS_PER_TICK } else { PROCESS_PER_TICK };
            let t_proc = now + 10_000;
            let mut done_total = 0;
            while budget > 0 && !con.queue.is_empty() {
                let (name, off, n) = con.queue[0].clone();
                let want = n.min(budget);
                let my_tiers: Vec<String> =
                    buckets.keys().filter(|k| *k == "global" || **k == format!("consumer:c{c}")).cloned().collect();
                let mut admit = want;
                for k in &my_tiers {
                    let b = buckets.get_mut(k).unwrap();
                    b.refill(t_proc);
                    admit = admit.min(b.tokens.floor() as u64);
                }
                for k in &my_tiers {
                    let b = buckets.get_mut(k).unwrap();
                    if admit > 0 {
                        b.tokens -= admit as f64;
                        out.push(t_proc, Event::Token { consumer: c, tier: k.clone(), n: admit as u32, admitted: true });
                    }
                    if admit < want && b.tokens < (want - admit) as f64 {
                        out.push(t_proc, Event::Token { consumer: c, tier: k.clone(), n: (want - admit) as u32, admitted: false });
                    }
                }
                if admit == 0 {
                    break;
                }
                out.push(t_proc, Event::ProcessStart { consumer: c, tp: name.clone(), offset: off, count: admit as u32, attempt: 1 });
                out.push(t_proc + 40_000, Event::ProcessEnd { consumer: c, tp: name.clone(), offset: off, count: admit as u32, ok: admit as u32 });
                *processed.get_mut(&name).unwrap() = off + admit;
                if admit == n {
                    con.queue.remove(0);
                } else {
                    con.queue[0] = (name, off + admit, n - admit);
                }
                budget -= admit;
                done_total += admit;
                if admit < want {
                    break;
                }
            }
            let t_after = now + 50_000;
            if credit && done_total > 0 {
                out.push(t_after, Event::CreditGrant { consumer: c, tp: con.tps[0].clone(), n: done_total as u32, floating: 0 });
            }
            if o.strategy == "pause" {
                let b = con.buffered();
                if !con.paused && b * 10 >= BUFFER_RECORDS_MAX * 8 {
                    con.paused = true;
                    out.push(t_after, Event::Pause { consumer: c, tps: con.tps.clone() });
                } else if con.paused && b * 10 <= BUFFER_RECORDS_MAX * 3 {
                    con.paused = false;
                    out.push(t_after, Event::Resume { consumer: c, tps: con.tps.clone() });
                }
            }
            // Commit every half second.
            if tick % 5 == 0 {
                let generation = if now >= REBALANCE2_US.1 { 2 } else { 1 };
                for name in &con.tps {
                    let off = processed[name];
                    out.push(now + 60_000, Event::CommitSend { consumer: c, generation, tp: name.clone(), offset: off });
                    out.push(now + 70_000, Event::CommitAck { consumer: c, generation, tp: name.clone(), offset: off });
                    *committed.get_mut(name).unwrap() = off;
                }
            }
        }
        // Samples: buffers every half second, lag every half second.
        if tick % 5 == 0 {
            for (ci, con) in consumers.iter().enumerate() {
                let records = con.buffered();
                let credits_outstanding = if credit { BUFFER_RECORDS_MAX - records } else { 0 };
                out.push(now + 80_000, Event::Buffer { consumer: ci as u32, records, bytes: records * 1_024, credits_outstanding });
            }
            for p in 0..PARTITIONS {
                let name = tp(p);
                out.push(now + 90_000, Event::Lag { tp: name.clone(), hw: hw[&name], committed: committed[&name] });
            }
        }
    }
    out.push(TICKS * TICK_US + 100_000, Event::Phase { phase: Phase::End });
    out.v.sort_by_key(|(t, n, _)| (*t, *n));
    out.v.into_iter().map(|(t_us, _, ev)| Entry { t_us, ev }).collect()
}
