//! Producers: load shapes, key distributions, partitioning, batching, acks and retries.
//!
//! Arrivals are Poisson at the shape's current rate, drawn once per `linger.ms` tick for the whole
//! interval (never an event per record). Each record's partition comes from its key: uniform keys
//! under hash partitioning are uniform over partitions; Zipf keys go through a cumulative table of
//! partition weights (hash routing) or, one key at a time, through the core's `LoadAwareRouter`.
//! One batch per partition is in flight at a time (so retries keep per-partition order); ready
//! batches are grouped into one request per leader broker. A batch that is not acknowledged within
//! `delivery.timeout.ms` fails — with an unknown outcome if any attempt may have been written. An
//! idempotent producer's retries are deduplicated by the leader; a non-idempotent one's retry after
//! a lost acknowledgement writes the records again (duplicates).

use std::collections::BTreeMap;

use sluice_core::history::Event;
use sluice_core::placement::{hash_partition, LoadAwareRouter, PlacementConfig};
use sluice_core::spec::{self, KeyDist, LoadShape, Placement};

use crate::dist::{Cdf, Stream};
use crate::world::{consts::*, Msg, ProdBatch, ProduceResult, World};

/// Keys a Zipf table holds at most (`keys.count` beyond this is truncated; the tail's mass is tiny).
pub const ZIPF_KEYS_MAX: u64 = 1_000_000;
/// Keys the load-aware router tracks.
pub const ROUTER_TRACKED_KEYS: u32 = 64;
/// Share of recent records above which a key counts as hot for the load-aware router.
pub const ROUTER_HOT_SHARE: f64 = 0.05;

#[derive(Clone, Debug)]
struct Batch {
    seq: u64,
    count: u32,
    created_ms: u64,
    /// The request it is part of, if any.
    in_request: Option<u64>,
    next_try_ms: u64,
    /// Some attempt may have reached the log (a request timed out).
    maybe_written: bool,
}

#[derive(Clone, Debug, Default)]
struct PartState {
    pending: u64,
    pending_since_ms: Option<u64>,
    next_seq: u64,
    batch: Option<Batch>,
}

#[derive(Clone, Debug)]
struct InflightReq {
    broker: u32,
    sent_ms: u64,
}

pub struct Producer {
    spec: spec::Producer,
    tp_base: u32,
    parts_n: u32,
    arrivals: Stream,
    keys: Stream,
    key_cdf: Option<Cdf>,
    part_cdf: Option<Cdf>,
    router: Option<LoadAwareRouter>,
    last_ms: u64,
    parts: Vec<PartState>,
    reqs: BTreeMap<u64, InflightReq>,
    next_req: u64,
    /// Records generated so far and records refused because the producer's buffer was full.
    pub generated: u64,
    pub refused: u64,
    /// Reused by every tick (kept for their capacity): batches formed, and ready batches by leader.
    scratch_sends: Vec<(u32, u64, u32)>,
    scratch_per_broker: Vec<Vec<ProdBatch>>,
}

impl Producer {
    pub fn new(w: &World, idx: u32) -> Self {
        let ps = w.spec.producers[idx as usize].clone();
        let ti = w.spec.topic_index(&ps.topic).expect("validated");
        let parts_n = w.spec.topics[ti as usize].partitions;
        let (key_cdf, part_cdf) = match (&ps.keys, ps.placement) {
            (KeyDist::Uniform { .. }, Placement::Hash) => (None, None),
            (KeyDist::Uniform { .. }, Placement::LoadAware) => (None, None),
            (KeyDist::Zipf { count, exponent }, placement) => {
                let n = (*count).min(ZIPF_KEYS_MAX);
                let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-exponent)).collect();
                if placement == Placement::Hash {
                    let mut pw = vec![0.0; parts_n as usize];
                    for (k, wgt) in weights.iter().enumerate() {
                        pw[hash_partition(k as u64, parts_n) as usize] += wgt;
                    }
                    (None, Some(Cdf::new(&pw)))
                } else {
                    (Some(Cdf::new(&weights)), None)
                }
            }
        };
        let router = (ps.placement == Placement::LoadAware).then(|| {
            LoadAwareRouter::new(PlacementConfig {
                partitions: parts_n,
                tracked_keys_max: ROUTER_TRACKED_KEYS,
                hot_share: ROUTER_HOT_SHARE,
            })
        });
        Producer {
            tp_base: w.tp_base[ti as usize],
            parts_n,
            arrivals: Stream::new(w.seed, &format!("arrivals/p{idx}")),
            keys: Stream::new(w.seed, &format!("keys/p{idx}")),
            key_cdf,
            part_cdf,
            router,
            last_ms: 0,
            parts: vec![PartState::default(); parts_n as usize],
            reqs: BTreeMap::new(),
            next_req: 0,
            generated: 0,
            refused: 0,
            scratch_sends: Vec::new(),
            scratch_per_broker: Vec::new(),
            spec: ps,
        }
    }

    /// The arrival rate (records/s) at `t_ms` of a run whose safety phase lasts `safety_ms`.
    pub fn rate_at(&self, t_ms: u64, safety_ms: u64) -> f64 {
        let base = self.spec.rate_per_s;
        if t_ms >= safety_ms {
            return base;
        }
        let t_s = t_ms as f64 / 1_000.0;
        match self.spec.shape {
            LoadShape::Steady => base,
            LoadShape::Bursts {
                factor,
                on_s,
                off_s,
            } => {
                let period = (on_s + off_s) as f64;
                if t_s % period < on_s as f64 {
                    base * factor
                } else {
                    base
                }
            }
            LoadShape::Spike {
                factor,
                at_s,
                for_s,
            } => {
                if t_s >= at_s as f64 && t_s < (at_s + for_s) as f64 {
                    base * factor
                } else {
                    base
                }
            }
            LoadShape::Ramp { factor } => {
                base * (1.0 + (factor - 1.0) * t_ms as f64 / safety_ms as f64)
            }
        }
    }

    fn draw_partition(&mut self) -> u32 {
        if let Some(r) = self.router.as_mut() {
            let key = match &self.key_cdf {
                Some(cdf) => cdf.draw(&mut self.keys) as u64,
                None => {
                    let count = match self.spec.keys {
                        KeyDist::Uniform { count } | KeyDist::Zipf { count, .. } => count,
                    };
                    self.keys.below(count.max(1))
                }
            };
            return r.route(key);
        }
        match &self.part_cdf {
            Some(cdf) => cdf.draw(&mut self.keys) as u32,
            None => self.keys.below(self.parts_n as u64) as u32,
        }
    }
}

impl World {
    pub(crate) fn producer_tick(&mut self, p: u32) -> u64 {
        let now = self.now_ms;
        let safety_ms = self.spec.duration_s * 1_000;
        let me = self.layout.producer(p);
        let linger = self.spec.producers[p as usize].linger_ms.max(1);
        let batch_max = self.spec.producers[p as usize].batch_records_max;
        let delivery_ms = self.spec.producers[p as usize].delivery_timeout_ms;
        let acks = self.spec.producers[p as usize].acks;
        let idempotent = self.spec.producers[p as usize].idempotent;
        // Arrivals since the last tick.
        {
            let pr = &mut self.producers[p as usize];
            if now > pr.last_ms {
                let mid = (pr.last_ms + now) / 2;
                let lambda = pr.rate_at(mid, safety_ms) * (now - pr.last_ms) as f64 / 1_000.0;
                let n = pr.arrivals.poisson(lambda);
                for _ in 0..n {
                    let part = pr.draw_partition() as usize;
                    let st = &mut pr.parts[part];
                    if st.pending >= PRODUCER_PENDING_RECORDS_MAX {
                        pr.refused += 1;
                        continue;
                    }
                    st.pending += 1;
                    st.pending_since_ms.get_or_insert(now);
                    pr.generated += 1;
                }
                pr.last_ms = now;
            }
        }
        // Request timeouts: every batch of the request may or may not have been written. Ids and
        // send times grow together, so the expired requests are the first.
        while let Some(e) = self.producers[p as usize].reqs.first_entry() {
            if now < e.get().sent_ms + REQUEST_TIMEOUT_MS {
                break;
            }
            let (k, _) = e.remove_entry();
            // The request's batches are those still marked with it.
            for st in self.producers[p as usize].parts.iter_mut() {
                if let Some(b) = st.batch.as_mut() {
                    if b.in_request == Some(k) {
                        b.in_request = None;
                        b.maybe_written = true;
                        b.next_try_ms = now;
                    }
                }
            }
        }
        // Form batches, fail expired ones, collect the ready ones by leader.
        let nb = self.spec.cluster.brokers as usize;
        let mut per_broker = std::mem::take(&mut self.producers[p as usize].scratch_per_broker);
        per_broker.resize_with(nb, Vec::new);
        let mut sends = std::mem::take(&mut self.producers[p as usize].scratch_sends);
        sends.clear();
        let mut fails = Vec::new();
        let tp_base = self.producers[p as usize].tp_base;
        for part in 0..self.producers[p as usize].parts_n {
            let g = tp_base + part;
            let st = &mut self.producers[p as usize].parts[part as usize];
            if st.batch.is_none() && st.pending > 0 {
                let since = st.pending_since_ms.unwrap_or(now);
                if st.pending >= batch_max as u64 || now >= since + linger {
                    let count = st.pending.min(batch_max as u64) as u32;
                    st.batch = Some(Batch {
                        seq: st.next_seq,
                        count,
                        created_ms: since,
                        in_request: None,
                        next_try_ms: now,
                        maybe_written: false,
                    });
                    st.next_seq += count as u64;
                    st.pending -= count as u64;
                    st.pending_since_ms = if st.pending > 0 { Some(now) } else { None };
                    sends.push((g, st.next_seq - count as u64, count));
                }
            }
            let Some(b) = st.batch.as_mut() else { continue };
            if b.in_request.is_some() || b.next_try_ms > now {
                continue;
            }
            if now >= b.created_ms + delivery_ms {
                fails.push((g, b.seq, b.count, b.maybe_written));
                st.batch = None;
                continue;
            }
            match self.meta[g as usize].leader {
                Some(l) => per_broker[l as usize].push(ProdBatch {
                    tp: g,
                    seq: b.seq,
                    count: b.count,
                }),
                None => b.next_try_ms = now + RETRY_BACKOFF_MS,
            }
        }
        for &(g, seq, count) in &sends {
            let tp = self.tps[g as usize].name.clone();
            self.record(Event::ProduceSend {
                producer: p,
                tp,
                seq,
                count,
            });
        }
        for (g, seq, count, unknown) in fails {
            let tp = self.tps[g as usize].name.clone();
            self.record(Event::ProduceFail {
                producer: p,
                tp,
                seq,
                count,
                unknown,
            });
        }
        self.producers[p as usize].scratch_sends = sends;
        for (l, slot) in per_broker.iter_mut().enumerate() {
            if slot.is_empty() {
                continue;
            }
            let batches = std::mem::take(slot);
            let pr = &mut self.producers[p as usize];
            let req_id = pr.next_req;
            pr.next_req += 1;
            for bt in &batches {
                let st = &mut pr.parts[(bt.tp - tp_base) as usize];
                if let Some(b) = st.batch.as_mut() {
                    b.in_request = Some(req_id);
                }
            }
            pr.reqs.insert(
                req_id,
                InflightReq {
                    broker: l as u32,
                    sent_ms: now,
                },
            );
            self.send(
                me,
                self.layout.broker(l as u32),
                Msg::Produce {
                    req_id,
                    producer: p,
                    acks,
                    idempotent,
                    batches,
                },
            );
            if !self.up[self.layout.broker(l as u32)] {
                // Connection refused: the broker's process is down.
                self.producer_disconnect(p, l as u32);
            }
        }
        self.producers[p as usize].scratch_per_broker = per_broker;
        // Next tick: the linger period (arrivals accumulate), or sooner for a due retry or timeout.
        let pr = &self.producers[p as usize];
        let mut next = now + linger;
        for st in &pr.parts {
            if let Some(b) = &st.batch {
                if b.in_request.is_none() {
                    next = next.min(b.next_try_ms.max(now + 1));
                }
            }
        }
        if let Some((_, r)) = pr.reqs.first_key_value() {
            next = next.min(r.sent_ms + REQUEST_TIMEOUT_MS);
        }
        next
    }

    /// Broker `b`'s process died: its connections reset, so requests in flight to it fail at once
    /// (their batches may have been written) and are retried after the backoff.
    pub(crate) fn producer_disconnect(&mut self, p: u32, b: u32) {
        let now = self.now_ms;
        let pr = &mut self.producers[p as usize];
        let gone: Vec<u64> = pr
            .reqs
            .iter()
            .filter(|(_, r)| r.broker == b)
            .map(|(&k, _)| k)
            .collect();
        for k in gone {
            pr.reqs.remove(&k).expect("listed");
            for st in pr.parts.iter_mut() {
                if let Some(bt) = st.batch.as_mut() {
                    if bt.in_request == Some(k) {
                        bt.in_request = None;
                        bt.maybe_written = true;
                        bt.next_try_ms = now + RETRY_BACKOFF_MS;
                    }
                }
            }
        }
        self.poke(self.layout.producer(p));
    }

    pub(crate) fn producer_deliver(&mut self, p: u32, msg: Msg) {
        let Msg::ProduceResp { req_id, results } = msg else {
            return;
        };
        let now = self.now_ms;
        if self.producers[p as usize].reqs.remove(&req_id).is_none() {
            return; // timed out already
        }
        let tp_base = self.producers[p as usize].tp_base;
        for (g, res) in results {
            let part = (g - tp_base) as usize;
            let st = &mut self.producers[p as usize].parts[part];
            let Some(b) = st.batch.as_mut() else { continue };
            if b.in_request != Some(req_id) {
                continue;
            }
            b.in_request = None;
            match res {
                ProduceResult::Ok { offset } => {
                    let (seq, count) = (b.seq, b.count);
                    st.batch = None;
                    let tp = self.tps[g as usize].name.clone();
                    self.record(Event::ProduceAck {
                        producer: p,
                        tp,
                        seq,
                        count,
                        offset,
                    });
                }
                ProduceResult::Timeout | ProduceResult::NotEnoughReplicasAfterAppend => {
                    b.maybe_written = true;
                    b.next_try_ms = now + RETRY_BACKOFF_MS;
                }
                ProduceResult::NotLeader | ProduceResult::NotEnoughReplicas => {
                    b.next_try_ms = now + RETRY_BACKOFF_MS;
                }
            }
        }
        self.poke(self.layout.producer(p));
    }
}
