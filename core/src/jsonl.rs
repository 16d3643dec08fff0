//! The history's JSON line, written by hand into a reused buffer: exactly the bytes
//! `serde_json::to_writer` produces for an [`Entry`] (the trace hash is taken over them), without
//! serde's per-field machinery. Entries it does not write by hand (the one `meta` line, and any
//! string that would need escaping) go through serde_json itself.

use crate::history::{Edge, Entry, Event, MemberEvent, Phase, Run};

/// Bytes [`write_lines`] gathers before handing them to its sink.
pub const CHUNK_BYTES_MAX: usize = 1 << 16;

/// Writes `entries` as JSON Lines (each line with its newline), handing the bytes to `sink` in
/// chunks of about [`CHUNK_BYTES_MAX`], so that a history of millions of lines is written without
/// ever being held whole as text. Stops at the first error `sink` returns.
pub fn write_lines<E>(
    entries: &[Entry],
    mut sink: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(CHUNK_BYTES_MAX + 1024);
    for e in entries {
        write_entry(&mut buf, e);
        buf.push(b'\n');
        if buf.len() >= CHUNK_BYTES_MAX {
            sink(&buf)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        sink(&buf)?;
    }
    Ok(())
}

/// Appends `e`'s JSON line (without the newline) to `out`. Returns whether it was written by
/// hand (`false`: by serde_json).
pub fn write_entry(out: &mut Vec<u8>, e: &Entry) -> bool {
    let start = out.len();
    if write_fast(out, e) {
        return true;
    }
    out.truncate(start);
    serde_json::to_writer(&mut *out, e).expect("history entries always serialize");
    false
}

/// Writes `e` by hand; `false` (with `out` partly written) when serde_json must do it.
fn write_fast(o: &mut Vec<u8>, e: &Entry) -> bool {
    o.extend_from_slice(b"{\"t_us\":");
    u(o, e.t_us);
    o.extend_from_slice(b",\"kind\":\"");
    match &e.ev {
        Event::Meta(_) => return false,
        Event::Phase { phase } => {
            o.extend_from_slice(b"phase\",\"phase\":\"");
            o.extend_from_slice(match phase {
                Phase::Safety => b"safety".as_slice(),
                Phase::Liveness => b"liveness",
                Phase::Shutdown => b"shutdown",
                Phase::End => b"end",
            });
            o.push(b'"');
        }
        Event::Fault {
            fault,
            target,
            edge: ed,
        } => {
            o.extend_from_slice(b"fault\"");
            if !(s(o, b"fault", fault) && s(o, b"target", target)) {
                return false;
            }
            edge(o, *ed);
        }
        Event::ProduceSend {
            producer,
            tp,
            seq,
            count,
        } => {
            o.extend_from_slice(b"produce_send\"");
            n(o, b"producer", *producer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"seq", *seq);
            n(o, b"count", *count as u64);
        }
        Event::ProduceAck {
            producer,
            tp,
            seq,
            count,
            offset,
        } => {
            o.extend_from_slice(b"produce_ack\"");
            n(o, b"producer", *producer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"seq", *seq);
            n(o, b"count", *count as u64);
            n(o, b"offset", *offset);
        }
        Event::ProduceFail {
            producer,
            tp,
            seq,
            count,
            unknown,
        } => {
            o.extend_from_slice(b"produce_fail\"");
            n(o, b"producer", *producer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"seq", *seq);
            n(o, b"count", *count as u64);
            bo(o, b"unknown", *unknown);
        }
        Event::Leader {
            tp,
            broker,
            epoch,
            isr,
            unclean,
        } => {
            o.extend_from_slice(b"leader\"");
            if !s(o, b"tp", tp) {
                return false;
            }
            key(o, b"broker");
            match broker {
                Some(b) => u(o, *b as u64),
                None => o.extend_from_slice(b"null"),
            }
            n(o, b"epoch", *epoch as u64);
            key(o, b"isr");
            o.push(b'[');
            for (i, r) in isr.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                u(o, *r as u64);
            }
            o.push(b']');
            bo(o, b"unclean", *unclean);
        }
        Event::Member { consumer, event } => {
            o.extend_from_slice(b"member\"");
            n(o, b"consumer", *consumer as u64);
            key(o, b"event");
            o.extend_from_slice(match event {
                MemberEvent::Start => b"\"start\"".as_slice(),
                MemberEvent::Crash => b"\"crash\"",
                MemberEvent::Leave => b"\"leave\"",
                MemberEvent::Evicted => b"\"evicted\"",
                MemberEvent::Fenced => b"\"fenced\"",
            });
        }
        Event::Rebalance {
            generation,
            edge: ed,
            protocol,
        } => {
            o.extend_from_slice(b"rebalance\"");
            n(o, b"generation", *generation as u64);
            edge(o, *ed);
            if !s(o, b"protocol", protocol) {
                return false;
            }
        }
        Event::Assign {
            consumer,
            generation,
            tps,
        } => {
            o.extend_from_slice(b"assign\"");
            n(o, b"consumer", *consumer as u64);
            n(o, b"generation", *generation as u64);
            if !strs(o, b"tps", tps) {
                return false;
            }
        }
        Event::Revoke {
            consumer,
            generation,
            tps,
        } => {
            o.extend_from_slice(b"revoke\"");
            n(o, b"consumer", *consumer as u64);
            n(o, b"generation", *generation as u64);
            if !strs(o, b"tps", tps) {
                return false;
            }
        }
        Event::Seek {
            consumer,
            tp,
            offset,
        } => {
            o.extend_from_slice(b"seek\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"offset", *offset);
        }
        Event::Fetch {
            consumer,
            tp,
            runs,
            bytes,
            hw,
        } => {
            o.extend_from_slice(b"fetch\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            key(o, b"runs");
            o.push(b'[');
            for (i, r) in runs.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                run(o, r);
            }
            o.push(b']');
            n(o, b"bytes", *bytes);
            n(o, b"hw", *hw);
        }
        Event::ProcessStart {
            consumer,
            tp,
            offset,
            count,
            attempt,
        } => {
            o.extend_from_slice(b"process_start\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"offset", *offset);
            n(o, b"count", *count as u64);
            n(o, b"attempt", *attempt as u64);
        }
        Event::ProcessEnd {
            consumer,
            tp,
            offset,
            count,
            ok,
        } => {
            o.extend_from_slice(b"process_end\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"offset", *offset);
            n(o, b"count", *count as u64);
            n(o, b"ok", *ok as u64);
        }
        Event::DeadLetter {
            consumer,
            tp,
            offset,
            attempts,
        } => {
            o.extend_from_slice(b"dead_letter\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"offset", *offset);
            n(o, b"attempts", *attempts as u64);
        }
        Event::CommitSend {
            consumer,
            generation,
            tp,
            offset,
        } => {
            o.extend_from_slice(b"commit_send\"");
            if !commit(o, *consumer, *generation, tp, *offset) {
                return false;
            }
        }
        Event::CommitAck {
            consumer,
            generation,
            tp,
            offset,
        } => {
            o.extend_from_slice(b"commit_ack\"");
            if !commit(o, *consumer, *generation, tp, *offset) {
                return false;
            }
        }
        Event::CommitFail {
            consumer,
            generation,
            tp,
            offset,
            unknown,
        } => {
            o.extend_from_slice(b"commit_fail\"");
            if !commit(o, *consumer, *generation, tp, *offset) {
                return false;
            }
            bo(o, b"unknown", *unknown);
        }
        Event::Pause { consumer, tps } => {
            o.extend_from_slice(b"pause\"");
            n(o, b"consumer", *consumer as u64);
            if !strs(o, b"tps", tps) {
                return false;
            }
        }
        Event::Resume { consumer, tps } => {
            o.extend_from_slice(b"resume\"");
            n(o, b"consumer", *consumer as u64);
            if !strs(o, b"tps", tps) {
                return false;
            }
        }
        Event::CreditGrant {
            consumer,
            tp,
            n: count,
            floating,
        } => {
            o.extend_from_slice(b"credit_grant\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"n", *count as u64);
            n(o, b"floating", *floating as u64);
        }
        Event::CreditReturn {
            consumer,
            tp,
            n: count,
        } => {
            o.extend_from_slice(b"credit_return\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"n", *count as u64);
        }
        Event::Token {
            consumer,
            tier,
            n: count,
            admitted,
        } => {
            o.extend_from_slice(b"token\"");
            n(o, b"consumer", *consumer as u64);
            if !s(o, b"tier", tier) {
                return false;
            }
            n(o, b"n", *count as u64);
            bo(o, b"admitted", *admitted);
        }
        Event::Buffer {
            consumer,
            records,
            bytes,
            credits_outstanding,
        } => {
            o.extend_from_slice(b"buffer\"");
            n(o, b"consumer", *consumer as u64);
            n(o, b"records", *records);
            n(o, b"bytes", *bytes);
            n(o, b"credits_outstanding", *credits_outstanding);
        }
        Event::Lag { tp, hw, committed } => {
            o.extend_from_slice(b"lag\"");
            if !s(o, b"tp", tp) {
                return false;
            }
            n(o, b"hw", *hw);
            n(o, b"committed", *committed);
        }
        Event::Metrics {
            consumer,
            back_pressured_ms_per_s,
            busy_ms_per_s,
            idle_ms_per_s,
        } => {
            o.extend_from_slice(b"metrics\"");
            n(o, b"consumer", *consumer as u64);
            n(o, b"back_pressured_ms_per_s", *back_pressured_ms_per_s as u64);
            n(o, b"busy_ms_per_s", *busy_ms_per_s as u64);
            n(o, b"idle_ms_per_s", *idle_ms_per_s as u64);
        }
        Event::Checkpoint {
            consumer,
            id,
            edge: ed,
        } => {
            o.extend_from_slice(b"checkpoint\"");
            n(o, b"consumer", *consumer as u64);
            n(o, b"id", *id);
            edge(o, *ed);
        }
        Event::Note { text } => {
            o.extend_from_slice(b"note\"");
            if !s(o, b"text", text) {
                return false;
            }
        }
    }
    o.push(b'}');
    true
}

/// `,"name":`
fn key(o: &mut Vec<u8>, name: &[u8]) {
    o.extend_from_slice(b",\"");
    o.extend_from_slice(name);
    o.extend_from_slice(b"\":");
}

fn n(o: &mut Vec<u8>, name: &[u8], v: u64) {
    key(o, name);
    u(o, v);
}

fn bo(o: &mut Vec<u8>, name: &[u8], v: bool) {
    key(o, name);
    o.extend_from_slice(if v { b"true".as_slice() } else { b"false" });
}

fn edge(o: &mut Vec<u8>, e: Edge) {
    key(o, b"edge");
    o.extend_from_slice(match e {
        Edge::Start => b"\"start\"".as_slice(),
        Edge::End => b"\"end\"",
    });
}

fn commit(o: &mut Vec<u8>, consumer: u32, generation: u32, tp: &str, offset: u64) -> bool {
    n(o, b"consumer", consumer as u64);
    n(o, b"generation", generation as u64);
    if !s(o, b"tp", tp) {
        return false;
    }
    n(o, b"offset", offset);
    true
}

fn run(o: &mut Vec<u8>, r: &Run) {
    o.extend_from_slice(b"{\"offset\":");
    u(o, r.offset);
    n(o, b"producer", r.producer as u64);
    n(o, b"seq", r.seq);
    n(o, b"count", r.count as u64);
    o.push(b'}');
}

/// `,"name":"value"`; `false` when `value` needs escaping (serde_json writes the entry then).
fn s(o: &mut Vec<u8>, name: &[u8], v: &str) -> bool {
    key(o, name);
    string(o, v)
}

fn strs<S: AsRef<str>>(o: &mut Vec<u8>, name: &[u8], v: &[S]) -> bool {
    key(o, name);
    o.push(b'[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            o.push(b',');
        }
        if !string(o, x.as_ref()) {
            return false;
        }
    }
    o.push(b']');
    true
}

/// A JSON string needing no escape: no `"`, no `\\`, no control character (serde_json escapes
/// exactly those and writes every other UTF-8 byte as it is).
fn string(o: &mut Vec<u8>, v: &str) -> bool {
    let b = v.as_bytes();
    if b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\') {
        return false;
    }
    o.push(b'"');
    o.extend_from_slice(b);
    o.push(b'"');
    true
}

/// `"00"`, `"01"`, … `"99"`: two digits per division.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// A decimal `u64` (pushed byte by byte: a variable-length copy would cost a `memcpy` call).
fn u(o: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        tmp[i] = PAIRS[d];
        tmp[i + 1] = PAIRS[d + 1];
    }
    if v >= 10 {
        let d = v as usize * 2;
        i -= 2;
        tmp[i] = PAIRS[d];
        tmp[i + 1] = PAIRS[d + 1];
    } else {
        i -= 1;
        tmp[i] = b'0' + v as u8;
    }
    o.reserve(tmp.len() - i);
    for &d in &tmp[i..] {
        o.push(d);
    }
}

#[cfg(test)]
mod tests {
    use super::write_entry;
    use crate::history::{Edge, Entry, Event, MemberEvent, Phase, Run};

    /// The line is byte for byte serde_json's, and written by hand exactly when `by_hand`.
    fn check(ev: Event, by_hand: bool) {
        let e = Entry { t_us: 1_234_000, ev };
        let mut got = Vec::new();
        assert_eq!(write_entry(&mut got, &e), by_hand, "{e:?}");
        let want = serde_json::to_vec(&e).expect("serializes");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{e:?}"
        );
    }

    fn tp(s: &str) -> crate::history::TpName {
        s.into()
    }

    #[test]
    fn hand_written_lines_equal_serde_json() {
        let names = [
            "orders/0",
            "",
            "dlq.topic-β/11",
            "quo\"te/1",
            "back\\slash/2",
            "new\nline/3",
            "tab\t/4",
            "\u{1f}/5",
            "\u{7f}/6",
            "slash/ok",
        ];
        let nums = [
            0u64,
            1,
            9,
            10,
            99,
            100,
            101,
            999,
            1_000,
            12_345,
            10_000_000_000,
            u32::MAX as u64,
            u64::MAX,
        ];
        let mut cases = vec![
            Event::Phase { phase: Phase::Safety },
            Event::Phase { phase: Phase::Liveness },
            Event::Phase { phase: Phase::Shutdown },
            Event::Phase { phase: Phase::End },
            Event::Meta(Box::new(crate::history::Meta {
                schema: 1,
                source: "sim".into(),
                scenario: "s".into(),
                seed: 3,
                topics: vec![],
                producers: vec![crate::history::ProducerMeta { topic: "o".into(), record_bytes: 1_024 }],
                consumers: 2,
                strategy: "none".into(),
                bounds: Default::default(),
                expect: vec![],
                settings: Default::default(),
            })),
            Event::Buffer { consumer: 2, records: 5, bytes: 5_120, credits_outstanding: 0 },
            Event::Metrics {
                consumer: 1,
                back_pressured_ms_per_s: 10,
                busy_ms_per_s: 900,
                idle_ms_per_s: 90,
            },
            Event::Checkpoint { consumer: 0, id: 7, edge: Edge::Start },
            Event::Checkpoint { consumer: 0, id: 7, edge: Edge::End },
            Event::Leader { tp: tp("o/1"), broker: None, epoch: 3, isr: vec![], unclean: false },
            Event::Leader { tp: tp("o/1"), broker: Some(2), epoch: 4, isr: vec![2, 0, 1], unclean: true },
            Event::Fetch { consumer: 1, tp: tp("o/2"), runs: vec![], bytes: 0, hw: 0 },
            Event::Rebalance { generation: 2, edge: Edge::End, protocol: "eager".into() },
        ];
        for m in [
            MemberEvent::Start,
            MemberEvent::Crash,
            MemberEvent::Leave,
            MemberEvent::Evicted,
            MemberEvent::Fenced,
        ] {
            cases.push(Event::Member { consumer: 3, event: m });
        }
        for (i, name) in names.iter().enumerate() {
            let v = nums[i % nums.len()];
            let w = nums[(i + 3) % nums.len()];
            let (c, small) = (i as u32, (v % (u32::MAX as u64 + 1)) as u32);
            let t = tp(name);
            cases.extend([
                Event::Fault { fault: t.to_string(), target: "b1".into(), edge: Edge::Start },
                Event::ProduceSend { producer: c, tp: t.clone(), seq: v, count: small },
                Event::ProduceAck { producer: c, tp: t.clone(), seq: v, count: small, offset: w },
                Event::ProduceFail { producer: c, tp: t.clone(), seq: w, count: small, unknown: i % 2 == 0 },
                Event::Leader { tp: t.clone(), broker: Some(c), epoch: small, isr: vec![c, 1], unclean: false },
                Event::Assign { consumer: c, generation: small, tps: vec![t.clone(), tp("o/9")] },
                Event::Revoke { consumer: c, generation: small, tps: vec![tp("o/9"), t.clone()] },
                Event::Seek { consumer: c, tp: t.clone(), offset: v },
                Event::Fetch {
                    consumer: c,
                    tp: t.clone(),
                    runs: vec![
                        Run { offset: v, producer: c, seq: w, count: small },
                        Run { offset: 1, producer: 0, seq: 2, count: 3 },
                    ],
                    bytes: v,
                    hw: w,
                },
                Event::ProcessStart { consumer: c, tp: t.clone(), offset: v, count: small, attempt: 2 },
                Event::ProcessEnd { consumer: c, tp: t.clone(), offset: v, count: small, ok: 1 },
                Event::DeadLetter { consumer: c, tp: t.clone(), offset: w, attempts: small },
                Event::CommitSend { consumer: c, generation: small, tp: t.clone(), offset: v },
                Event::CommitAck { consumer: c, generation: small, tp: t.clone(), offset: w },
                Event::CommitFail { consumer: c, generation: small, tp: t.clone(), offset: v, unknown: i % 3 == 0 },
                Event::Pause { consumer: c, tps: vec![t.clone()] },
                Event::Resume { consumer: c, tps: vec![] },
                Event::CreditGrant { consumer: c, tp: t.clone(), n: small, floating: 1 },
                Event::CreditReturn { consumer: c, tp: t.clone(), n: small },
                Event::Token { consumer: c, tier: t.to_string(), n: small, admitted: i % 2 == 1 },
                Event::Lag { tp: t.clone(), hw: v, committed: w },
                Event::Note { text: t.to_string() },
                Event::Rebalance { generation: small, edge: Edge::Start, protocol: t.to_string() },
            ]);
        }
        for &v in &nums {
            cases.push(Event::Lag { tp: tp("o/0"), hw: v, committed: v / 7 });
        }
        let needs_escape = |ev: &Event| {
            let line = serde_json::to_string(ev).expect("serializes");
            line.contains("\\")
        };
        for ev in cases {
            let by_hand = !matches!(ev, Event::Meta(_)) && !needs_escape(&ev);
            check(ev, by_hand);
        }
    }

    /// Chunked output is the lines one after another, whatever the chunk boundaries, and a sink
    /// error stops the writing.
    #[test]
    fn write_lines_streams_every_line_in_order() {
        let entries: Vec<Entry> = (0..5_000u64)
            .map(|i| Entry {
                t_us: i * 1_000,
                ev: Event::Lag { tp: tp("orders/3"), hw: i * 17, committed: i },
            })
            .collect();
        let mut chunks = Vec::new();
        super::write_lines(&entries, |c: &[u8]| -> Result<(), ()> {
            chunks.push(c.to_vec());
            Ok(())
        })
        .expect("the sink never fails");
        assert!(chunks.len() > 1, "5 000 lines take more than one chunk");
        assert!(chunks.iter().all(|c| c.len() <= super::CHUNK_BYTES_MAX + 1024));
        let got: Vec<u8> = chunks.concat();
        let mut want = String::new();
        for e in &entries {
            want.push_str(&serde_json::to_string(e).expect("serializes"));
            want.push('\n');
        }
        assert_eq!(String::from_utf8(got).expect("UTF-8"), want);
        let mut calls = 0;
        let r = super::write_lines(&entries, |_: &[u8]| {
            calls += 1;
            Err("disk full")
        });
        assert_eq!((r, calls), (Err("disk full"), 1));
    }
}
