//! A tiny model that writes clean histories: producers append batches to one partition; one
//! consumer, granted credits for exactly what it fetches, fetches in order, processes in order and
//! commits what it processed. A liveness phase drains everything at the end.

#![allow(dead_code)]

use std::collections::BTreeMap;

use sluice_core::history::{Bounds, Edge, Entry, Event, MemberEvent, Phase, ProducerMeta, Run, TopicMeta};

pub const TP: &str = "t/0";
/// The model never buffers more than this (a fetch takes at most the free space).
pub const BUFFER_RECORDS_MAX: u64 = 32;
/// Bytes of each record of producers 0 and 1 (declared in the meta line).
pub const PRODUCER_RECORD_BYTES: [u64; 2] = [100, 250];
/// The byte bound: `BUFFER_RECORDS_MAX` of the largest records, so the record bound is what
/// holds the model's buffer.
pub const BUFFER_BYTES_MAX: u64 = BUFFER_RECORDS_MAX * 250;

/// One step of the model: `(kind, n)`; kind 0 = produce, 1 = fetch, 2 = process, 3 = commit.
pub type Op = (u8, u8);

struct Model {
    out: Vec<Entry>,
    t: u64,
    /// offset → (producer, seq)
    log: Vec<(u32, u64)>,
    next_seq: BTreeMap<u32, u64>,
    fetched: u64,
    processed: u64,
    committed: u64,
}

impl Model {
    fn push(&mut self, ev: Event) {
        self.t += 10;
        self.out.push(Entry { t_us: self.t, ev });
    }

    fn produce(&mut self, producer: u32, count: u32) {
        let seq = *self.next_seq.entry(producer).or_insert(0);
        let offset = self.log.len() as u64;
        self.push(Event::ProduceSend {
            producer,
            tp: TP.into(),
            seq,
            count,
        });
        self.push(Event::ProduceAck {
            producer,
            tp: TP.into(),
            seq,
            count,
            offset,
        });
        for i in 0..count as u64 {
            self.log.push((producer, seq + i));
        }
        self.next_seq.insert(producer, seq + count as u64);
    }

    fn fetch(&mut self, want: u64) {
        let buffered = self.fetched - self.processed;
        let n = want
            .min(self.log.len() as u64 - self.fetched)
            .min(BUFFER_RECORDS_MAX - buffered);
        if n == 0 {
            return;
        }
        // Split into runs of one producer with consecutive seqs.
        let mut runs: Vec<Run> = Vec::new();
        for o in self.fetched..self.fetched + n {
            let (p, s) = self.log[o as usize];
            match runs.last_mut() {
                Some(r) if r.producer == p && r.seq + r.count as u64 == s => r.count += 1,
                _ => runs.push(Run {
                    offset: o,
                    producer: p,
                    seq: s,
                    count: 1,
                }),
            }
        }
        self.push(Event::CreditGrant {
            consumer: 0,
            tp: TP.into(),
            n: n as u32,
            floating: 0,
        });
        let bytes = self.bytes(self.fetched, self.fetched + n);
        self.push(Event::Fetch {
            consumer: 0,
            tp: TP.into(),
            runs,
            bytes,
            hw: self.log.len() as u64,
        });
        self.fetched += n;
        self.push(Event::Buffer {
            consumer: 0,
            records: self.fetched - self.processed,
            bytes: self.bytes(self.processed, self.fetched),
            credits_outstanding: 0,
        });
    }

    /// Bytes of the records at offsets `lo..hi`.
    fn bytes(&self, lo: u64, hi: u64) -> u64 {
        (lo..hi).map(|o| PRODUCER_RECORD_BYTES[self.log[o as usize].0 as usize]).sum()
    }

    fn process(&mut self, want: u64) {
        let n = want.min(self.fetched - self.processed);
        if n == 0 {
            return;
        }
        let (offset, count) = (self.processed, n as u32);
        self.push(Event::ProcessStart {
            consumer: 0,
            tp: TP.into(),
            offset,
            count,
            attempt: 1,
        });
        self.push(Event::ProcessEnd {
            consumer: 0,
            tp: TP.into(),
            offset,
            count,
            ok: count,
        });
        self.processed += n;
    }

    fn commit(&mut self) {
        if self.processed == self.committed {
            return;
        }
        let offset = self.processed;
        self.push(Event::CommitSend {
            consumer: 0,
            generation: 1,
            tp: TP.into(),
            offset,
        });
        self.push(Event::CommitAck {
            consumer: 0,
            generation: 1,
            tp: TP.into(),
            offset,
        });
        self.committed = offset;
        self.push(Event::Lag {
            tp: TP.into(),
            hw: self.log.len() as u64,
            committed: offset,
        });
    }
}

pub fn meta() -> Event {
    Event::Meta(Box::new(sluice_core::history::Meta {
        schema: 1,
        source: "model".into(),
        scenario: "model".into(),
        seed: 0,
        topics: vec![TopicMeta {
            name: "t".into(),
            partitions: 1,
        }],
        producers: PRODUCER_RECORD_BYTES.iter().map(|&b| ProducerMeta { topic: "t".into(), record_bytes: b }).collect(),
        consumers: 1,
        strategy: "credit".into(),
        bounds: Bounds {
            buffer_records_max: BUFFER_RECORDS_MAX,
            buffer_bytes_max: BUFFER_BYTES_MAX,
            credits_max: BUFFER_RECORDS_MAX,
            rate_tiers: Vec::new(),
            duplicate_window_records: None,
            lag_ok_records: 0,
            recovery_deadline_ms: 10_000,
            max_poll_interval_ms: 300_000,
            session_timeout_ms: 45_000,
        },
        expect: Vec::new(),
        settings: BTreeMap::new(),
    }))
}

/// A clean history following `ops`.
pub fn clean_history(ops: &[Op]) -> Vec<Entry> {
    let mut m = Model {
        out: Vec::new(),
        t: 0,
        log: Vec::new(),
        next_seq: BTreeMap::new(),
        fetched: 0,
        processed: 0,
        committed: 0,
    };
    m.out.push(Entry {
        t_us: 0,
        ev: meta(),
    });
    m.push(Event::Phase {
        phase: Phase::Safety,
    });
    m.push(Event::Member {
        consumer: 0,
        event: MemberEvent::Start,
    });
    m.push(Event::Rebalance {
        generation: 1,
        edge: Edge::Start,
        protocol: "eager".into(),
    });
    m.push(Event::Assign {
        consumer: 0,
        generation: 1,
        tps: vec![TP.into()],
    });
    m.push(Event::Seek {
        consumer: 0,
        tp: TP.into(),
        offset: 0,
    });
    m.push(Event::Rebalance {
        generation: 1,
        edge: Edge::End,
        protocol: "eager".into(),
    });
    for &(kind, n) in ops {
        let n = n as u64 % 8 + 1;
        match kind % 4 {
            0 => m.produce((n % 2) as u32, n as u32),
            1 => m.fetch(n),
            2 => m.process(n),
            _ => m.commit(),
        }
    }
    m.push(Event::Phase {
        phase: Phase::Liveness,
    });
    while m.committed < m.log.len() as u64 {
        m.fetch(BUFFER_RECORDS_MAX);
        m.process(BUFFER_RECORDS_MAX);
        m.commit();
    }
    m.push(Event::Lag {
        tp: TP.into(),
        hw: m.log.len() as u64,
        committed: m.committed,
    });
    m.push(Event::Phase { phase: Phase::End });
    m.out
}
