//! Stall episodes on hand-built histories: one partition, one consumer, ten records a second, a
//! lag sample every second. The consumer gets through everything each second except in the
//! seconds it is told to skip.

mod common;

use sluice_core::history::{Entry, Event, MemberEvent, Phase, Run};
use sluice_verification::check;
use sluice_verification::Stall;

const TP: &str = common::TP;
const PER_S: u64 = 10;
const SECONDS: u64 = 40;

/// The history: the consumer owns the partition except from `unowned.0` to `unowned.1` seconds
/// (revoked, then assigned again), and processes nothing in the seconds `skip` holds. It commits
/// what it processed at once; no buffer bound is declared (a fetch after a stall takes the lot).
fn history(skip: impl Fn(u64) -> bool, unowned: Option<(u64, u64)>) -> Vec<Entry> {
    let mut meta = common::meta();
    if let Event::Meta(m) = &mut meta {
        m.bounds.credits_max = 0;
        m.bounds.buffer_records_max = 0;
        m.bounds.buffer_bytes_max = 0;
        m.strategy = "none".into();
    }
    let mut h = vec![Entry { t_us: 0, ev: meta }];
    let mut push = |t_us: u64, ev: Event| h.push(Entry { t_us, ev });
    push(0, Event::Phase { phase: Phase::Safety });
    push(0, Event::Member { consumer: 0, event: MemberEvent::Start });
    push(0, Event::Assign { consumer: 0, generation: 1, tps: vec![TP.into()] });
    push(0, Event::Seek { consumer: 0, tp: TP.into(), offset: 0 });
    let (mut hw, mut done, mut generation) = (0u64, 0u64, 1u32);
    for s in 1..=SECONDS {
        let t = s * 1_000_000;
        push(t, Event::ProduceSend { producer: 0, tp: TP.into(), seq: hw, count: PER_S as u32 });
        push(t, Event::ProduceAck { producer: 0, tp: TP.into(), seq: hw, count: PER_S as u32, offset: hw });
        hw += PER_S;
        if let Some((from, to)) = unowned {
            if s == from {
                push(t, Event::Revoke { consumer: 0, generation, tps: vec![TP.into()] });
            }
            if s == to {
                generation += 1;
                push(t, Event::Assign { consumer: 0, generation, tps: vec![TP.into()] });
                push(t, Event::Seek { consumer: 0, tp: TP.into(), offset: done });
            }
        }
        let owned = unowned.is_none_or(|(from, to)| s < from || s >= to);
        if owned && !skip(s) {
            let n = (hw - done) as u32;
            push(t, Event::Fetch { consumer: 0, tp: TP.into(), runs: vec![Run { offset: done, producer: 0, seq: done, count: n }], bytes: n as u64 * common::PRODUCER_RECORD_BYTES[0], hw });
            push(t, Event::ProcessStart { consumer: 0, tp: TP.into(), offset: done, count: n, attempt: 1 });
            push(t, Event::ProcessEnd { consumer: 0, tp: TP.into(), offset: done, count: n, ok: n });
            done = hw;
            push(t, Event::CommitSend { consumer: 0, generation, tp: TP.into(), offset: done });
            push(t, Event::CommitAck { consumer: 0, generation, tp: TP.into(), offset: done });
        }
        push(t, Event::Lag { tp: TP.into(), hw, committed: done });
    }
    h
}

fn stalls(h: &[Entry]) -> Vec<Stall> {
    let r = check(h);
    assert!(r.violations.iter().all(|v| v.anomaly == "unseen"), "{:#?}", r.violations);
    assert!(r.input_errors.is_empty(), "{:?}", r.input_errors);
    r.liveness.stalls
}

#[test]
fn a_consumer_that_keeps_up_never_stalls() {
    assert_eq!(stalls(&history(|_| false, None)), vec![]);
}

/// No progress from the sample at 9 s until the one at 25 s: one stall, recognised 10 s after
/// the last progress, spanning 9 s to 25 s, with the lag it reached at 24 s.
#[test]
fn sixteen_seconds_without_progress_is_one_stall() {
    let got = stalls(&history(|s| (10..25).contains(&s), None));
    let want = Stall { tp: TP.into(), from_us: 9_000_000, to_us: Some(25_000_000), owners: vec!["c0".into()], lag_max: (24 - 9) * PER_S };
    assert_eq!(got, vec![want]);
}

/// Nine seconds without progress stay under the 10 s a stall needs; ten are a stall.
#[test]
fn the_threshold_is_ten_seconds() {
    assert_eq!(sluice_verification::STALL_MIN_MS, 10_000);
    assert_eq!(stalls(&history(|s| (10..19).contains(&s), None)), vec![]);
    let got = stalls(&history(|s| (10..20).contains(&s), None));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].from_us, got[0].to_us), (9_000_000, Some(20_000_000)));
}

/// A stall that has not ended when the history does is listed open; one on a partition nobody
/// owns names no owner.
#[test]
fn open_and_unowned_stalls() {
    let got = stalls(&history(|s| s >= 30, None));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].from_us, got[0].to_us), (29_000_000, None));
    let got = stalls(&history(|_| false, Some((10, 30))));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].owners, Vec::<String>::new());
    assert_eq!((got[0].from_us, got[0].to_us), (9_000_000, Some(30_000_000)));
}
