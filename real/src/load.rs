//! The producer load generator: plays each scenario producer's load shape in real time (scaled by
//! the run's time scale), keyed, with every record's value carrying `(producer, seq)`.
//!
//! A record's key is the drawn key (u64, big endian); its value starts with 12 bytes: the producer
//! index (u32, big endian) then its seq (u64, big endian), where seq counts the records this
//! producer sent to that partition. The value is padded with zeros so that key and value hold the
//! producer's `record_bytes` (at least 20 bytes). The partition is
//! chosen here (hash of the key) so that seqs are per partition, as the history schema wants.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use sluice_core::history::{tp_name, Event};
use sluice_core::spec::{Acks, KeyDist, LoadShape, Placement, Scenario};
use sluice_core::{Rng, SplitMix64};

use crate::kafka::Conn;
use crate::recorder::Recorder;
use crate::RealError;

/// Payload length: producer (4 bytes) + seq (8 bytes).
pub const PAYLOAD_BYTES: usize = 12;
/// A record's key: the drawn key, a u64 (big endian).
pub const KEY_BYTES: usize = 8;
/// The generator wakes this often to send what arrived since the last tick.
pub const TICK_MS: u64 = 5;
/// How long the final flush may take before unacknowledged records are reported with an unknown
/// outcome.
pub const FLUSH_TIMEOUT_MS: u64 = 15_000;
/// Keys for which the Zipf table is exact; larger key spaces are folded onto this many ranks.
pub const ZIPF_TABLE_MAX: u64 = 1 << 20;
/// Deliveries waiting to be turned into history runs (the producer thread drains them every tick).
pub const DELIVERIES_MAX: usize = 1 << 22;

pub fn encode(producer: u32, seq: u64) -> [u8; PAYLOAD_BYTES] {
    let mut b = [0u8; PAYLOAD_BYTES];
    b[..4].copy_from_slice(&producer.to_be_bytes());
    b[4..].copy_from_slice(&seq.to_be_bytes());
    b
}

pub fn decode(p: &[u8]) -> Option<(u32, u64)> {
    if p.len() < PAYLOAD_BYTES {
        return None;
    }
    let producer = u32::from_be_bytes(p[..4].try_into().ok()?);
    let seq = u64::from_be_bytes(p[4..12].try_into().ok()?);
    Some((producer, seq))
}

/// FNV-1a of the key: stable partitioning across runs and platforms.
pub fn key_partition(key: u64, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.to_le_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % partitions as u64) as u32
}

/// Records per second the shape asks for at scenario time `t_s` (base rate in the liveness phase).
pub fn rate_at(base: f64, shape: &LoadShape, t_s: f64, duration_s: u64) -> f64 {
    if t_s >= duration_s as f64 {
        return base;
    }
    match shape {
        LoadShape::Steady => base,
        LoadShape::Bursts { factor, on_s, off_s } => {
            let period = (on_s + off_s) as f64;
            if t_s % period < *on_s as f64 {
                base * factor
            } else {
                base
            }
        }
        LoadShape::Spike { factor, at_s, for_s } => {
            if t_s >= *at_s as f64 && t_s < (*at_s + *for_s) as f64 {
                base * factor
            } else {
                base
            }
        }
        LoadShape::Ramp { factor } => base * (1.0 + (factor - 1.0) * (t_s / duration_s as f64).min(1.0)),
    }
}

/// Draws key ranks.
enum Keys {
    Uniform(u64),
    Zipf { cdf: Vec<f64>, count: u64 },
}

impl Keys {
    fn new(d: &KeyDist) -> Self {
        match d {
            KeyDist::Uniform { count } => Keys::Uniform(*count),
            KeyDist::Zipf { count, exponent } => {
                let n = (*count).min(ZIPF_TABLE_MAX);
                let mut cdf = Vec::with_capacity(n as usize);
                let mut acc = 0.0;
                for k in 1..=n {
                    acc += 1.0 / (k as f64).powf(*exponent);
                    cdf.push(acc);
                }
                for c in &mut cdf {
                    *c /= acc;
                }
                Keys::Zipf { cdf, count: *count }
            }
        }
    }
    fn draw(&self, rng: &mut SplitMix64) -> u64 {
        match self {
            Keys::Uniform(n) => rng.next_u64() % n,
            Keys::Zipf { cdf, count } => {
                let u = rng.next_f64();
                let i = cdf.partition_point(|c| *c < u) as u64;
                i.min(count - 1)
            }
        }
    }
}

/// One delivery report.
#[derive(Clone, Copy, Debug)]
struct Delivered {
    partition: u32,
    producer: u32,
    seq: u64,
    /// `Ok(offset)` or `Err(unknown)`.
    result: Result<u64, bool>,
}

struct DeliveryCtx {
    out: Mutex<Vec<Delivered>>,
}

impl ClientContext for DeliveryCtx {}

impl ProducerContext for DeliveryCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let (m, result) = match r {
            Ok(m) => (m, Ok(m.offset().max(0) as u64)),
            Err((e, m)) => {
                let unknown = matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut))
                    || matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::RequestTimedOut));
                (m, Err(unknown))
            }
        };
        if let Some((producer, seq)) = m.payload().and_then(decode) {
            let mut g = self.out.lock().unwrap_or_else(|p| p.into_inner());
            if g.len() < DELIVERIES_MAX {
                g.push(Delivered { partition: m.partition().max(0) as u32, producer, seq, result });
            }
        }
    }
}

/// Settings of the load generator for one run.
pub struct LoadPlan {
    pub scenario: Scenario,
    /// Kafka topic names, in scenario order.
    pub kafka_topics: Vec<String>,
    /// Wall seconds per scenario second.
    pub time_scale: f64,
    pub seed: u64,
}

/// What the generator did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub unknown_at_end: u64,
}

/// Runs every producer until `stop` is set, then flushes. Blocking: run it on its own thread.
pub fn run_load(plan: &LoadPlan, conn: &Conn, rec: &Recorder, stop: &AtomicBool) -> Result<LoadSummary, RealError> {
    let sc = &plan.scenario;
    let clock = rec.clock();
    struct P {
        topic_idx: usize,
        partitions: u32,
        keys: Keys,
        rng: SplitMix64,
        next_arrival_s: f64,
        seqs: Vec<u64>,
        /// The value written: the encoded `(producer, seq)`, padded so that key and value hold
        /// the producer's `record_bytes` (at least the key and the encoding: 20 bytes).
        payload: Vec<u8>,
        producer: ThreadedProducer<DeliveryCtx>,
        /// Per partition: seqs resolved (acked or failed), as merged ranges.
        resolved: Vec<Vec<(u64, u64)>>,
    }
    let mut ps = Vec::new();
    for (i, p) in sc.producers.iter().enumerate() {
        let ti = sc.topic_index(&p.topic).ok_or_else(|| RealError::Config(format!("producer {i}: unknown topic {}", p.topic)))? as usize;
        let mut cfg = conn.base();
        cfg.set("acks", match p.acks {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
        .set("enable.idempotence", if p.idempotent { "true" } else { "false" })
        .set("linger.ms", p.linger_ms.to_string())
        .set("batch.num.messages", p.batch_records_max.to_string())
        .set("message.timeout.ms", p.delivery_timeout_ms.to_string());
        let producer: ThreadedProducer<DeliveryCtx> = cfg
            .create_with_context(DeliveryCtx { out: Mutex::new(Vec::new()) })
            .map_err(|e| RealError::Config(format!("producer {i}: {e}")))?;
        if p.placement == Placement::LoadAware {
            rec.note(format!("producer {i}: load-aware placement is not played in real mode; keys are hash-partitioned (skipped)"));
        }
        let partitions = sc.topics[ti].partitions;
        ps.push(P {
            topic_idx: ti,
            partitions,
            keys: Keys::new(&p.keys),
            rng: SplitMix64(plan.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1))),
            next_arrival_s: 0.0,
            seqs: vec![0; partitions as usize],
            payload: vec![0; (p.record_bytes as usize).saturating_sub(KEY_BYTES).max(PAYLOAD_BYTES)],
            producer,
            resolved: vec![Vec::new(); partitions as usize],
        });
    }
    let mut summary = LoadSummary::default();
    let tick = Duration::from_millis(TICK_MS);
    let mut batch: BTreeMap<u32, (u64, u32)> = BTreeMap::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now_s = clock.now_us() as f64 / 1e6 / plan.time_scale;
        if !stopping {
            for (pi, p) in ps.iter_mut().enumerate() {
                let spec = &sc.producers[pi];
                batch.clear();
                let topic = &plan.kafka_topics[p.topic_idx];
                while p.next_arrival_s <= now_s {
                    let rate = rate_at(spec.rate_per_s, &spec.shape, p.next_arrival_s, sc.duration_s);
                    let key = p.keys.draw(&mut p.rng);
                    let part = key_partition(key, p.partitions);
                    let seq = p.seqs[part as usize];
                    p.payload[..PAYLOAD_BYTES].copy_from_slice(&encode(pi as u32, seq));
                    let payload = &p.payload;
                    let key_bytes = key.to_be_bytes();
                    let mut attempts = 0u32;
                    loop {
                        let rec_ = BaseRecord::to(topic).partition(part as i32).key(&key_bytes[..]).payload(&payload[..]);
                        match p.producer.send(rec_) {
                            Ok(()) => break,
                            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if attempts < 1_000 => {
                                attempts += 1;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            Err((e, _)) => return Err(RealError::Kafka(format!("producer {pi}: send: {e}"))),
                        }
                    }
                    p.seqs[part as usize] += 1;
                    summary.sent += 1;
                    let e = batch.entry(part).or_insert((seq, 0));
                    e.1 += 1;
                    // Exponential inter-arrival times: Poisson arrivals at the current rate.
                    let u = p.rng.next_f64();
                    p.next_arrival_s += -(1.0 - u).ln() / rate.max(1e-9);
                }
                if !batch.is_empty() {
                    rec.record_all(batch.iter().map(|(part, (seq, count))| Event::ProduceSend {
                        producer: pi as u32,
                        tp: tp_name(&sc.topics[p.topic_idx].name, *part),
                        seq: *seq,
                        count: *count,
                    }));
                }
            }
        } else {
            for p in &ps {
                let _ = p.producer.flush(Duration::from_millis(FLUSH_TIMEOUT_MS));
            }
        }
        for (pi, p) in ps.iter_mut().enumerate() {
            let mut ds = std::mem::take(&mut *p.producer.context().out.lock().unwrap_or_else(|x| x.into_inner()));
            record_deliveries(rec, &sc.topics[p.topic_idx].name, pi as u32, &mut ds, &mut p.resolved, &mut summary);
        }
        if stopping {
            break;
        }
        std::thread::sleep(tick);
    }
    // Whatever was sent and never resolved has an unknown outcome.
    for (pi, p) in ps.iter().enumerate() {
        for (part, sent) in p.seqs.iter().enumerate() {
            let mut next = 0u64;
            let mut gaps = Vec::new();
            for (a, b) in &p.resolved[part] {
                if *a > next {
                    gaps.push((next, *a));
                }
                next = next.max(*b);
            }
            if next < *sent {
                gaps.push((next, *sent));
            }
            for (a, b) in gaps {
                summary.unknown_at_end += b - a;
                rec.record(Event::ProduceFail {
                    producer: pi as u32,
                    tp: tp_name(&sc.topics[p.topic_idx].name, part as u32),
                    seq: a,
                    count: (b - a) as u32,
                    unknown: true,
                });
            }
        }
    }
    Ok(summary)
}

/// Turns delivery reports into `ProduceAck`/`ProduceFail` runs (contiguous seqs at contiguous
/// offsets) and marks them resolved.
fn record_deliveries(
    rec: &Recorder,
    topic: &str,
    producer: u32,
    ds: &mut [Delivered],
    resolved: &mut [Vec<(u64, u64)>],
    summary: &mut LoadSummary,
) {
    if ds.is_empty() {
        return;
    }
    ds.sort_by_key(|d| (d.partition, d.seq));
    let mut evs = Vec::new();
    let mut i = 0;
    while i < ds.len() {
        let d = ds[i];
        let mut j = i + 1;
        while j < ds.len() {
            let n = ds[j];
            let k = (j - i) as u64;
            let same = n.partition == d.partition
                && n.producer == d.producer
                && n.seq == d.seq + k
                && match (d.result, n.result) {
                    (Ok(o), Ok(p)) => p == o + k,
                    (Err(a), Err(b)) => a == b,
                    _ => false,
                };
            if !same {
                break;
            }
            j += 1;
        }
        let count = (j - i) as u32;
        let tp = tp_name(topic, d.partition);
        match d.result {
            Ok(offset) => {
                summary.acked += count as u64;
                evs.push(Event::ProduceAck { producer, tp, seq: d.seq, count, offset });
            }
            Err(unknown) => {
                summary.failed += count as u64;
                evs.push(Event::ProduceFail { producer, tp, seq: d.seq, count, unknown });
            }
        }
        if let Some(r) = resolved.get_mut(d.partition as usize) {
            insert_range(r, d.seq, d.seq + count as u64);
        }
        i = j;
    }
    rec.record_all(evs);
}

/// Inserts `[a, b)` into sorted, merged, disjoint ranges.
fn insert_range(r: &mut Vec<(u64, u64)>, a: u64, b: u64) {
    let i = r.partition_point(|x| x.1 < a);
    let mut lo = a;
    let mut hi = b;
    let mut j = i;
    while j < r.len() && r[j].0 <= hi {
        lo = lo.min(r[j].0);
        hi = hi.max(r[j].1);
        j += 1;
    }
    r.splice(i..j, std::iter::once((lo, hi)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        for (p, s) in [(0u32, 0u64), (7, 123_456_789), (u32::MAX, u64::MAX)] {
            assert_eq!(decode(&encode(p, s)), Some((p, s)));
        }
        assert_eq!(decode(&[1, 2, 3]), None);
    }

    #[test]
    fn shapes_give_the_documented_rates() {
        let cases: [(LoadShape, f64, f64); 8] = [
            (LoadShape::Steady, 5.0, 100.0),
            (LoadShape::Bursts { factor: 3.0, on_s: 2, off_s: 8 }, 1.0, 300.0),
            (LoadShape::Bursts { factor: 3.0, on_s: 2, off_s: 8 }, 5.0, 100.0),
            (LoadShape::Bursts { factor: 3.0, on_s: 2, off_s: 8 }, 11.5, 300.0),
            (LoadShape::Spike { factor: 10.0, at_s: 10, for_s: 5 }, 12.0, 1000.0),
            (LoadShape::Spike { factor: 10.0, at_s: 10, for_s: 5 }, 15.0, 100.0),
            (LoadShape::Ramp { factor: 3.0 }, 30.0, 200.0),
            (LoadShape::Ramp { factor: 3.0 }, 70.0, 100.0), // liveness phase: base rate
        ];
        for (shape, t, want) in cases {
            let got = rate_at(100.0, &shape, t, 60);
            assert!((got - want).abs() < 1e-9, "{shape:?} at {t}: {got} != {want}");
        }
    }

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        for (a, b) in [(5, 7), (0, 2), (2, 3), (9, 10), (3, 5)] {
            insert_range(&mut r, a, b);
        }
        assert_eq!(r, vec![(0, 7), (9, 10)]);
    }

    #[test]
    fn zipf_prefers_low_ranks_and_stays_in_range() {
        let k = Keys::new(&KeyDist::Zipf { count: 100, exponent: 1.2 });
        let mut rng = SplitMix64(3);
        let draws: Vec<u64> = (0..10_000).map(|_| k.draw(&mut rng)).collect();
        assert!(draws.iter().all(|d| *d < 100));
        let zeros = draws.iter().filter(|d| **d == 0).count();
        let fifties = draws.iter().filter(|d| **d == 50).count();
        assert!(zeros > 10 * fifties.max(1), "rank 0 {zeros} vs rank 50 {fifties}");
        assert!(key_partition(42, 6) < 6);
    }
}
