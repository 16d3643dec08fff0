//! Property tests of the flow-control rules (DOMAIN.md C1, C3, C4, R1–R3, pause/resume hysteresis)
//! over random event sequences.
//!
//! Every property is judged by a reference kept in this file (a ledger of the grants, consumptions
//! and releases the receiver reported; the list of admissions with their times; the last watermark
//! reached), not by the implementation's own bookkeeping. Every property also runs, with the same
//! body, against a broken variant (a planted bug from `bugs.rs`, or a broken design written here),
//! and the `*_catches_*` tests assert that proptest finds a counterexample, so each property has
//! been seen to fail. Failure messages name their rule (`"C1: …"`), and a catch must fail on that
//! rule, not on something else.
//!
//! C2 (control events pass with zero credit) is the pipeline's business and is tested with it.
//!
//! Runs are reproducible: every runner uses a fixed seed (`SEED`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use sluice_core::bugs::{Bug, Bugs};
use sluice_core::credit::{CreditConfig, Credits, Grant};
use sluice_core::pause::{PauseConfig, PauseControl, Toggle};
use sluice_core::rate::{Admit, BucketConfig, BucketSnapshot, MultiTier, TierIdx};
use sluice_core::{TimeUs, Tp};

const SEED: u64 = 0x51_1CE;
const CASES: u32 = 300;
/// Cases a runner may spend looking for a counterexample in a broken variant.
const CATCH_CASES: u32 = 2000;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    }
}

/// Runs `body` over `strategy` and asserts that proptest finds a failing case whose message names
/// `rule`.
fn assert_caught<S: Strategy>(
    rule: &str,
    strategy: S,
    body: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config(CATCH_CASES));
    match runner.run(&strategy, body) {
        Ok(()) => panic!("{rule}: the broken variant passed {CATCH_CASES} cases; the property cannot fail"),
        Err(TestError::Fail(reason, minimal)) => {
            let msg = reason.to_string();
            assert!(msg.contains(&format!("{rule}: ")), "failed for another reason than {rule}: {msg}");
            eprintln!("{rule} caught: {msg}\n  minimal case: {minimal:?}");
        }
        Err(TestError::Abort(reason)) => panic!("{rule}: runner aborted: {reason}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Credits (C1, C3, C4)
// ---------------------------------------------------------------------------------------------

const CHANNELS: u32 = 5;

fn tp(p: u32) -> Tp {
    Tp::new(0, p)
}

#[derive(Clone, Copy, Debug)]
enum COp {
    Add(u32),
    Remove(u32),
    Backlog(u32, u64),
    Float,
    Consume(u32, u32),
    Release(u32, u32),
    Discard(u32, u32),
}

impl COp {
    /// The channel the operation acts on (`None`: all of them).
    fn target(self) -> Option<u32> {
        match self {
            COp::Add(p) | COp::Remove(p) | COp::Backlog(p, _) => Some(p),
            COp::Consume(p, _) | COp::Release(p, _) | COp::Discard(p, _) => Some(p),
            COp::Float => None,
        }
    }
}

fn credit_op() -> impl Strategy<Value = COp> {
    let p = 0..CHANNELS;
    prop_oneof![
        2 => p.clone().prop_map(COp::Add),
        1 => p.clone().prop_map(COp::Remove),
        2 => (p.clone(), 0u64..24).prop_map(|(p, b)| COp::Backlog(p, b)),
        2 => Just(COp::Float),
        6 => (p.clone(), 0u32..6).prop_map(|(p, n)| COp::Consume(p, n)),
        4 => (p.clone(), 0u32..6).prop_map(|(p, n)| COp::Release(p, n)),
        1 => (p, 0u32..6).prop_map(|(p, n)| COp::Discard(p, n)),
    ]
}

fn credit_config() -> impl Strategy<Value = CreditConfig> {
    // Room for 1–5 channels' exclusive credits, the floating pool, and a little slack: some adds
    // are refused for lack of space.
    (1u32..4, 0u32..8, 1u32..6, 0u32..4).prop_map(|(e, f, k, slack)| CreditConfig {
        exclusive_per_channel: e,
        floating_max: f,
        buffer_records_max: e * k + f + slack,
    })
}

fn credit_case() -> impl Strategy<Value = (CreditConfig, Vec<COp>)> {
    (credit_config(), prop::collection::vec(credit_op(), 1..120))
}

/// The receiver under test: `Credits`, or a broken design written here.
trait Receiver {
    fn add(&mut self, tp: Tp, out: &mut Vec<Grant>) -> bool;
    fn remove(&mut self, tp: Tp) -> u32;
    fn backlog(&mut self, tp: Tp, records: u64);
    fn float(&mut self, out: &mut Vec<Grant>);
    fn consume(&mut self, tp: Tp, n: u32) -> bool;
    fn release(&mut self, tp: Tp, n: u32, out: &mut Vec<Grant>);
    fn discard(&mut self, tp: Tp, n: u32) -> u32;
    fn available(&self, tp: Tp) -> u32;
}

impl Receiver for Credits {
    fn add(&mut self, tp: Tp, out: &mut Vec<Grant>) -> bool {
        match self.add_channel(tp) {
            Ok(g) => {
                out.push(g);
                true
            }
            Err(_) => false,
        }
    }
    fn remove(&mut self, tp: Tp) -> u32 {
        self.remove_channel(tp)
    }
    fn backlog(&mut self, tp: Tp, records: u64) {
        self.announce_backlog(tp, records)
    }
    fn float(&mut self, out: &mut Vec<Grant>) {
        self.grant_floating(out)
    }
    fn consume(&mut self, tp: Tp, n: u32) -> bool {
        Credits::consume(self, tp, n).is_ok()
    }
    fn release(&mut self, tp: Tp, n: u32, out: &mut Vec<Grant>) {
        Credits::release(self, tp, n, out)
    }
    fn discard(&mut self, tp: Tp, n: u32) -> u32 {
        Credits::discard(self, tp, n)
    }
    fn available(&self, tp: Tp) -> u32 {
        Credits::available(self, tp)
    }
}

/// The design C4 warns against: one credit counter shared by every channel (no exclusive credits),
/// so a busy channel can drain the credits its siblings need.
struct SharedPool {
    pool: u64,
    open: BTreeMap<Tp, bool>,
    in_flight: BTreeMap<Tp, u64>,
}

impl SharedPool {
    fn new(cfg: CreditConfig) -> Self {
        SharedPool { pool: cfg.buffer_records_max as u64, open: BTreeMap::new(), in_flight: BTreeMap::new() }
    }
    fn is_open(&self, tp: Tp) -> bool {
        self.open.get(&tp).copied().unwrap_or(false)
    }
    fn free(&mut self, tp: Tp, n: u32) -> u32 {
        let f = self.in_flight.entry(tp).or_default();
        let k = (*f).min(n as u64);
        *f -= k;
        self.pool += k;
        k as u32
    }
}

impl Receiver for SharedPool {
    fn add(&mut self, tp: Tp, _out: &mut Vec<Grant>) -> bool {
        self.open.insert(tp, true);
        true
    }
    fn remove(&mut self, tp: Tp) -> u32 {
        self.open.insert(tp, false);
        0
    }
    fn backlog(&mut self, _tp: Tp, _records: u64) {}
    fn float(&mut self, _out: &mut Vec<Grant>) {}
    fn consume(&mut self, tp: Tp, n: u32) -> bool {
        if self.is_open(tp) && n as u64 <= self.pool {
            self.pool -= n as u64;
            *self.in_flight.entry(tp).or_default() += n as u64;
            true
        } else {
            false
        }
    }
    fn release(&mut self, tp: Tp, n: u32, _out: &mut Vec<Grant>) {
        self.free(tp, n);
    }
    fn discard(&mut self, tp: Tp, n: u32) -> u32 {
        if self.is_open(tp) {
            0
        } else {
            self.free(tp, n)
        }
    }
    fn available(&self, tp: Tp) -> u32 {
        if self.is_open(tp) {
            self.pool as u32
        } else {
            0
        }
    }
}

/// The reference ledger of one channel, kept from what the receiver announced and accepted.
#[derive(Clone, Copy, Debug, Default)]
struct ChanRef {
    open: bool,
    granted: i64,
    returned: i64,
    consumed: i64,
    /// Records in the buffer from the current incarnation of the channel.
    cur: u64,
    /// Records in the buffer from before its last removal.
    old: u64,
}

impl ChanRef {
    /// Credits the channel holds according to the ledger: granted − returned − consumed.
    fn credits(&self) -> i64 {
        self.granted - self.returned - self.consumed
    }
}

#[derive(Default)]
struct Ledger {
    ch: BTreeMap<Tp, ChanRef>,
}

impl Ledger {
    fn get(&self, tp: Tp) -> ChanRef {
        self.ch.get(&tp).copied().unwrap_or_default()
    }
    fn at(&mut self, tp: Tp) -> &mut ChanRef {
        self.ch.entry(tp).or_default()
    }
    fn grants(&mut self, out: &[Grant]) {
        for g in out {
            self.at(g.tp).granted += g.n as i64;
        }
    }
    fn in_flight(&self) -> u64 {
        self.ch.values().map(|c| c.cur + c.old).sum()
    }
    fn credits(&self) -> i64 {
        self.ch.values().map(|c| c.credits()).sum()
    }
}

/// What one step did, for the properties.
struct Step {
    op: COp,
    /// `Some(accepted)` for a consume.
    consumed: Option<bool>,
    /// Ledger of the target channel before the step.
    before: ChanRef,
    /// `available` of every channel before the step.
    avail_before: [u32; CHANNELS as usize],
}

/// Applies one operation to the receiver and the ledger.
fn apply<R: Receiver>(r: &mut R, l: &mut Ledger, op: COp) -> Result<Step, TestCaseError> {
    let mut avail_before = [0; CHANNELS as usize];
    for (p, a) in avail_before.iter_mut().enumerate() {
        *a = r.available(tp(p as u32));
    }
    let before = op.target().map(|p| l.get(tp(p))).unwrap_or_default();
    let mut out = Vec::new();
    let mut consumed = None;
    match op {
        COp::Add(p) => {
            if r.add(tp(p), &mut out) {
                l.at(tp(p)).open = true;
            }
        }
        COp::Remove(p) => {
            let returned = r.remove(tp(p));
            let c = l.at(tp(p));
            c.returned += returned as i64;
            c.old += c.cur;
            c.cur = 0;
            c.open = false;
        }
        COp::Backlog(p, b) => r.backlog(tp(p), b),
        COp::Float => r.float(&mut out),
        COp::Consume(p, n) => {
            let ok = r.consume(tp(p), n);
            if ok {
                let c = l.at(tp(p));
                c.consumed += n as i64;
                c.cur += n as u64;
            }
            consumed = Some(ok);
        }
        COp::Release(p, n) => {
            r.release(tp(p), n, &mut out);
            let c = l.at(tp(p));
            let k_old = c.old.min(n as u64);
            c.old -= k_old;
            let k_cur = c.cur.min(n as u64 - k_old);
            c.cur -= k_cur;
        }
        COp::Discard(p, n) => {
            let dropped = r.discard(tp(p), n);
            let c = l.at(tp(p));
            let k = c.old.min(n as u64);
            prop_assert_eq!(dropped as u64, k, "discard: dropped {} of {} old records", dropped, c.old);
            c.old -= k;
        }
    }
    l.grants(&out);
    Ok(Step { op, consumed, before, avail_before })
}

/// C1: a channel delivers only against credits it was granted, one credit per record; the credits
/// it may use are exactly those the ledger says it holds.
fn c1_body(cfg: CreditConfig, ops: &[COp], bugs: Bugs) -> Result<(), TestCaseError> {
    let mut r = Credits::new(cfg).with_bugs(bugs);
    let mut l = Ledger::default();
    for &op in ops {
        let s = apply(&mut r, &mut l, op)?;
        if let (COp::Consume(p, n), Some(ok)) = (op, s.consumed) {
            let held = s.before.credits();
            let covered = s.before.open && n as i64 <= held;
            if ok {
                prop_assert!(covered, "C1: {} delivered {} records holding {} credits", tp(p), n, held);
            } else {
                prop_assert!(!covered, "credits: {} refused {} records holding {} credits", tp(p), n, held);
            }
        }
        for p in 0..CHANNELS {
            let c = l.get(tp(p));
            prop_assert_eq!(
                r.available(tp(p)) as i64,
                if c.open { c.credits() } else { 0 },
                "C1: {} may use other credits than granted − returned − consumed after {:?}",
                tp(p),
                op
            );
        }
    }
    Ok(())
}

/// C3: in-flight ≤ granted ≤ capacity at every instant — no channel has more records in the buffer
/// than credits it was granted, and records in flight plus unused credits fit the buffer.
fn c3_body(cfg: CreditConfig, ops: &[COp], bugs: Bugs) -> Result<(), TestCaseError> {
    let mut r = Credits::new(cfg).with_bugs(bugs);
    let mut l = Ledger::default();
    for &op in ops {
        apply(&mut r, &mut l, op)?;
        for (tp, c) in &l.ch {
            prop_assert!(c.credits() >= 0, "C3: {} has more records in flight than credits granted ({:?})", tp, c);
            if !c.open {
                prop_assert_eq!(c.credits(), 0, "C3: closed channel {} still holds credits", tp);
            }
        }
        let (in_flight, credits) = (l.in_flight(), l.credits());
        prop_assert!(
            in_flight as i64 + credits <= cfg.buffer_records_max as i64,
            "C3: {} in flight + {} credits exceed the buffer of {} after {:?}",
            in_flight,
            credits,
            cfg.buffer_records_max,
            op
        );
        prop_assert_eq!(r.in_flight(), in_flight, "C3: in_flight() disagrees with the ledger");
        prop_assert_eq!(r.outstanding() as i64, credits, "C3: outstanding() disagrees with the ledger");
    }
    Ok(())
}

/// C4: an operation on one channel never lowers another channel's credits, and every open channel
/// keeps the exclusive credits its own in-flight records do not use, whatever its siblings do.
fn c4_body<R: Receiver>(mut r: R, cfg: CreditConfig, ops: &[COp]) -> Result<(), TestCaseError> {
    let mut l = Ledger::default();
    let e = cfg.exclusive_per_channel as u64;
    for &op in ops {
        let s = apply(&mut r, &mut l, op)?;
        for p in 0..CHANNELS {
            if Some(p) == s.op.target() || !l.get(tp(p)).open {
                continue;
            }
            let now = r.available(tp(p));
            prop_assert!(
                now >= s.avail_before[p as usize],
                "C4: {:?} lowered the credits of {} from {} to {}",
                op,
                tp(p),
                s.avail_before[p as usize],
                now
            );
        }
        for p in 0..CHANNELS {
            let c = l.get(tp(p));
            if c.open {
                let floor = e.saturating_sub(c.cur);
                prop_assert!(
                    r.available(tp(p)) as u64 >= floor,
                    "C4: {} holds {} credits, below its unused exclusive credits {} after {:?}",
                    tp(p),
                    r.available(tp(p)),
                    floor,
                    op
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn c1_no_send_without_credit((cfg, ops) in credit_case()) {
        c1_body(cfg, &ops, Bugs::NONE)?;
    }

    #[test]
    fn c3_in_flight_le_granted_le_capacity((cfg, ops) in credit_case()) {
        c3_body(cfg, &ops, Bugs::NONE)?;
    }

    #[test]
    fn c4_zero_credit_stalls_only_itself((cfg, ops) in credit_case()) {
        c4_body(Credits::new(cfg), cfg, &ops)?;
    }
}

#[test]
fn c1_catches_ignore_credits() {
    assert_caught("C1", credit_case(), |(cfg, ops)| c1_body(cfg, &ops, Bugs::only(Bug::IgnoreCredits)));
}

#[test]
fn c3_catches_ignore_credits() {
    assert_caught("C3", credit_case(), |(cfg, ops)| c3_body(cfg, &ops, Bugs::only(Bug::IgnoreCredits)));
}

#[test]
fn c4_catches_a_shared_credit_pool() {
    assert_caught("C4", credit_case(), |(cfg, ops)| c4_body(SharedPool::new(cfg), cfg, &ops));
}

// ---------------------------------------------------------------------------------------------
// Token buckets (R1–R3)
// ---------------------------------------------------------------------------------------------

/// A tier as integers (exact), and as the `f64` configuration the limiter receives.
#[derive(Clone, Copy, Debug)]
struct Tier {
    rate_micro_per_s: u64,
    burst_micro: u64,
}

impl Tier {
    fn config(self) -> BucketConfig {
        BucketConfig {
            rate_per_s: self.rate_micro_per_s as f64 / 1e6,
            burst: self.burst_micro as f64 / 1e6,
        }
    }
    /// R1 for one window: admitted·10¹² ≤ burst_micro·10⁶ + rate_micro_per_s·(t1 − t0).
    fn allows(self, admitted: u64, window_us: u64) -> bool {
        admitted as u128 * 1_000_000_000_000
            <= self.burst_micro as u128 * 1_000_000 + self.rate_micro_per_s as u128 * window_us as u128
    }
}

fn tier() -> impl Strategy<Value = Tier> {
    // Slow (1 token per 1000 s) to fast (20 tokens/s) rates; bursts of 1 to 8 tokens, not always
    // whole.
    (prop_oneof![1_000u64..1_000_000, 1_000_000u64..20_000_000], 1_000_000u64..8_000_000)
        .prop_map(|(rate_micro_per_s, burst_micro)| Tier { rate_micro_per_s, burst_micro })
}

/// Time between two events: often none (one instant), often short, sometimes long idle.
fn gap_us() -> impl Strategy<Value = u64> {
    prop_oneof![3 => Just(0u64), 5 => 0u64..300_000, 2 => 0u64..30_000_000]
}

/// Checks R1 over every window whose ends are admissions (sufficient: a window's count only grows
/// by moving its ends onto admissions, and its length only shrinks).
fn check_windows(rule: &str, tier_idx: usize, t: Tier, admitted: &[(TimeUs, u32)]) -> Result<(), TestCaseError> {
    for i in 0..admitted.len() {
        let mut sum = 0u64;
        for j in i..admitted.len() {
            sum += admitted[j].1 as u64;
            let window = admitted[j].0 - admitted[i].0;
            prop_assert!(
                t.allows(sum, window),
                "{}: tier {} admitted {} tokens in [{}, {}] µs; bound {:?}",
                rule,
                tier_idx,
                sum,
                admitted[i].0,
                admitted[j].0,
                t
            );
        }
    }
    Ok(())
}

fn r1_case() -> impl Strategy<Value = (Tier, Vec<(u64, u32)>)> {
    (tier(), prop::collection::vec((gap_us(), 1u32..4), 1..100))
}

/// R1: over any window [t0, t1] a bucket admits at most b + r·(t1 − t0).
fn r1_body(t: Tier, steps: &[(u64, u32)], bugs: Bugs) -> Result<(), TestCaseError> {
    let mut m = MultiTier::new(&[t.config()], 0).with_bugs(bugs);
    let mut now = 0;
    let mut admitted = Vec::new();
    for &(gap, n) in steps {
        now += gap;
        if m.admit(&[0], n, now) == Admit::Admitted {
            admitted.push((now, n));
        }
    }
    check_windows("R1", 0, t, &admitted)
}

#[derive(Clone, Debug)]
enum ROp {
    Admit { gap_us: u64, path: Vec<TierIdx>, n: u32 },
    /// The process restarts after `gap_us` of downtime and restores the persisted snapshots.
    Restart { gap_us: u64 },
}

const TIERS: usize = 3;

fn path() -> impl Strategy<Value = Vec<TierIdx>> {
    prop::collection::vec(0..TIERS, 0..4)
}

fn tier_case(restarts: bool) -> impl Strategy<Value = (Vec<Tier>, Vec<ROp>)> {
    let admit = (gap_us(), path(), 1u32..4).prop_map(|(gap_us, path, n)| ROp::Admit { gap_us, path, n });
    let restart = gap_us().prop_map(|gap_us| ROp::Restart { gap_us });
    let op = if restarts { prop_oneof![8 => admit, 1 => restart].boxed() } else { admit.boxed() };
    (prop::collection::vec(tier(), TIERS), prop::collection::vec(op, 1..100))
}

/// Micro-tokens of every tier at `now`.
fn levels(m: &MultiTier, now: TimeUs) -> Vec<u64> {
    (0..m.len()).map(|t| m.tier(t).expect("tier").tokens_micro_at(now)).collect()
}

/// R2: a record is admitted only if every tier of its path has the tokens; admission takes them
/// from each tier of the path once; a refusal takes nothing anywhere and names the first tier of
/// the path that lacked tokens; its retry time is exact.
fn r2_body(tiers: &[Tier], ops: &[ROp], bugs: Bugs) -> Result<(), TestCaseError> {
    let cfgs: Vec<_> = tiers.iter().map(|t| t.config()).collect();
    let mut m = MultiTier::new(&cfgs, 0).with_bugs(bugs);
    let mut now = 0;
    for op in ops {
        let ROp::Admit { gap_us, path, n } = op else { continue };
        now += gap_us;
        let need = *n as u64 * 1_000_000;
        let before = levels(&m, now);
        let result = m.admit(path, *n, now);
        let after = levels(&m, now);
        let first_short = path.iter().copied().find(|&t| before[t] < need);
        match result {
            Admit::Admitted => {
                prop_assert_eq!(first_short, None, "R2: admitted {} through {:?} with levels {:?}", n, path, before);
                for t in 0..TIERS {
                    let taken = if path.contains(&t) { need } else { 0 };
                    prop_assert_eq!(before[t] - after[t], taken, "R2: tier {} lost the wrong amount", t);
                }
            }
            Admit::Refused { tier, retry_at_us } => {
                prop_assert_eq!(&before, &after, "R2: refusal by tier {} took tokens from {:?}", tier, path);
                prop_assert_eq!(Some(tier), first_short, "R2: refusal names the wrong tier");
                let never = path.iter().any(|&t| need > tiers[t].burst_micro);
                prop_assert_eq!(retry_at_us.is_none(), never, "R2: retry time {:?} for {} tokens", retry_at_us, n);
                if let Some(at) = retry_at_us {
                    prop_assert!(at >= now, "R2: retry time in the past");
                    let mut later = m.clone();
                    prop_assert_eq!(later.admit(path, *n, at), Admit::Admitted, "R2: refused at the retry time");
                    if at > now {
                        let mut early = m.clone();
                        prop_assert!(early.admit(path, *n, at - 1) != Admit::Admitted, "R2: retry time not the earliest");
                    }
                }
            }
        }
    }
    Ok(())
}

/// R3: with the snapshot persisted after every admission and restored after each restart, R1 holds
/// for every tier over windows spanning the restarts, counting the admissions before them.
fn r3_body(tiers: &[Tier], ops: &[ROp], bugs: Bugs) -> Result<(), TestCaseError> {
    let cfgs: Vec<_> = tiers.iter().map(|t| t.config()).collect();
    let mut m = MultiTier::new(&cfgs, 0).with_bugs(bugs);
    let mut persisted: Vec<BucketSnapshot> = m.snapshot();
    let mut now = 0;
    let mut admitted: Vec<Vec<(TimeUs, u32)>> = vec![Vec::new(); TIERS];
    for op in ops {
        match op {
            ROp::Admit { gap_us, path, n } => {
                now += gap_us;
                if m.admit(path, *n, now) == Admit::Admitted {
                    persisted = m.snapshot();
                    for (t, list) in admitted.iter_mut().enumerate() {
                        if path.contains(&t) {
                            list.push((now, *n));
                        }
                    }
                }
            }
            ROp::Restart { gap_us } => {
                now += gap_us;
                m = MultiTier::restore_with(&cfgs, &persisted, bugs);
            }
        }
    }
    for t in 0..TIERS {
        check_windows("R3", t, tiers[t], &admitted[t])?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn r1_any_window_admits_at_most_b_plus_rt((t, steps) in r1_case()) {
        r1_body(t, &steps, Bugs::NONE)?;
    }

    #[test]
    fn r2_refusal_takes_no_tokens_elsewhere((tiers, ops) in tier_case(false)) {
        r2_body(&tiers, &ops, Bugs::NONE)?;
    }

    #[test]
    fn r3_bound_holds_across_restart((tiers, ops) in tier_case(true)) {
        r3_body(&tiers, &ops, Bugs::NONE)?;
    }

    /// `ready_at` is exact to the microsecond: a take succeeds then and fails one microsecond
    /// earlier.
    #[test]
    fn r1_ready_at_is_the_earliest_microsecond((t, steps) in r1_case(), ask in 1u32..9) {
        let mut m = MultiTier::new(&[t.config()], 0);
        let mut now = 0;
        for &(gap, n) in &steps {
            now += gap;
            m.admit(&[0], n, now);
        }
        match m.ready_at(&[0], ask, now) {
            None => prop_assert!(ask as u64 * 1_000_000 > t.burst_micro, "never ready although {} ≤ burst", ask),
            Some(at) => {
                prop_assert!(at >= now);
                prop_assert_eq!(m.clone().admit(&[0], ask, at), Admit::Admitted);
                if at > now {
                    prop_assert!(m.clone().admit(&[0], ask, at - 1) != Admit::Admitted);
                }
            }
        }
    }
}

#[test]
fn r1_catches_bucket_overfill() {
    assert_caught("R1", r1_case(), |(t, steps)| r1_body(t, &steps, Bugs::only(Bug::BucketOverfill)));
}

#[test]
fn r2_catches_tier_leak() {
    assert_caught("R2", tier_case(false), |(tiers, ops)| r2_body(&tiers, &ops, Bugs::only(Bug::TierLeak)));
}

#[test]
fn r3_catches_limiter_forgets() {
    assert_caught("R3", tier_case(true), |(tiers, ops)| r3_body(&tiers, &ops, Bugs::only(Bug::LimiterForgets)));
}

// ---------------------------------------------------------------------------------------------
// Pause/resume hysteresis
// ---------------------------------------------------------------------------------------------

trait Controller {
    fn on_level(&mut self, buffered_records: u64) -> Option<Toggle>;
    fn paused(&self) -> bool;
    fn on_assigned(&self, tp: Tp) -> bool;
}

impl Controller for PauseControl {
    fn on_level(&mut self, buffered_records: u64) -> Option<Toggle> {
        PauseControl::on_level(self, buffered_records)
    }
    fn paused(&self) -> bool {
        PauseControl::paused(self)
    }
    fn on_assigned(&self, tp: Tp) -> bool {
        PauseControl::on_assigned(self, tp)
    }
}

/// Broken: a single threshold, no hysteresis (resumes as soon as the level drops below high).
struct NoHysteresis {
    cfg: PauseConfig,
    paused: bool,
}

impl Controller for NoHysteresis {
    fn on_level(&mut self, level: u64) -> Option<Toggle> {
        let want = level >= self.cfg.high_records as u64;
        let flip = want != self.paused;
        self.paused = want;
        flip.then_some(if want { Toggle::Pause } else { Toggle::Resume })
    }
    fn paused(&self) -> bool {
        self.paused
    }
    fn on_assigned(&self, _tp: Tp) -> bool {
        self.paused
    }
}

/// Broken: emits a toggle whenever the level is beyond a mark, whatever the state (re-pauses,
/// re-resumes).
struct Stateless {
    cfg: PauseConfig,
    paused: bool,
}

impl Controller for Stateless {
    fn on_level(&mut self, level: u64) -> Option<Toggle> {
        if level >= self.cfg.high_records as u64 {
            self.paused = true;
            Some(Toggle::Pause)
        } else if level <= self.cfg.low_records as u64 {
            self.paused = false;
            Some(Toggle::Resume)
        } else {
            None
        }
    }
    fn paused(&self) -> bool {
        self.paused
    }
    fn on_assigned(&self, _tp: Tp) -> bool {
        self.paused
    }
}

fn pause_case() -> impl Strategy<Value = (PauseConfig, Vec<u64>)> {
    (1u32..40)
        .prop_flat_map(|high| (Just(high), 0..high))
        .prop_flat_map(|(high, low)| {
            let cfg = PauseConfig { high_records: high, low_records: low };
            (Just(cfg), prop::collection::vec(0u64..(high as u64 + 6), 1..80))
        })
}

/// The toggles alternate, starting with a pause: never the same toggle twice in a row; a pause only
/// at or above high, a resume only at or below low.
fn pause_alternates<C: Controller>(mut c: C, cfg: PauseConfig, levels: &[u64]) -> Result<(), TestCaseError> {
    let mut last = Toggle::Resume; // the controller starts running
    for &level in levels {
        if let Some(t) = c.on_level(level) {
            prop_assert!(t != last, "pause: {:?} twice in a row (level {})", t, level);
            match t {
                Toggle::Pause => prop_assert!(level >= cfg.high_records as u64, "pause: paused at {}", level),
                Toggle::Resume => prop_assert!(level <= cfg.low_records as u64, "pause: resumed at {}", level),
            }
            last = t;
        }
    }
    Ok(())
}

/// Paused exactly when the last watermark reached was the high one; a new partition starts in the
/// controller's state (librdkafka#1849).
fn pause_follows_last_crossing<C: Controller>(mut c: C, cfg: PauseConfig, levels: &[u64]) -> Result<(), TestCaseError> {
    let mut last_mark_high = false;
    for &level in levels {
        c.on_level(level);
        if level >= cfg.high_records as u64 {
            last_mark_high = true;
        } else if level <= cfg.low_records as u64 {
            last_mark_high = false;
        }
        prop_assert_eq!(c.paused(), last_mark_high, "pause: wrong state at level {} ({:?})", level, cfg);
        prop_assert_eq!(c.on_assigned(Tp::new(0, 0)), last_mark_high, "pause: new partition in the wrong state");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn pause_never_toggles_the_same_way_twice((cfg, levels) in pause_case()) {
        pause_alternates(PauseControl::new(cfg), cfg, &levels)?;
    }

    #[test]
    fn pause_paused_iff_last_crossing_was_high((cfg, levels) in pause_case()) {
        pause_follows_last_crossing(PauseControl::new(cfg), cfg, &levels)?;
    }
}

#[test]
fn pause_alternation_catches_a_stateless_controller() {
    assert_caught("pause", pause_case(), |(cfg, levels)| {
        pause_alternates(Stateless { cfg, paused: false }, cfg, &levels)
    });
}

#[test]
fn pause_state_catches_a_controller_without_hysteresis() {
    assert_caught("pause", pause_case(), |(cfg, levels)| {
        pause_follows_last_crossing(NoHysteresis { cfg, paused: false }, cfg, &levels)
    });
}

// ---------------------------------------------------------------------------------------------
// Floating credits: lending is water-filling
// ---------------------------------------------------------------------------------------------

/// Reference lending: one credit at a time to the channel with the largest remaining want, the
/// lowest partition first among equals.
fn water_fill_reference(wants: &[u64], pool: u32) -> Vec<u64> {
    let mut left = wants.to_vec();
    for _ in 0..pool {
        let Some(best) = (0..left.len()).filter(|&i| left[i] > 0).max_by_key(|&i| (left[i], std::cmp::Reverse(i)))
        else {
            break;
        };
        left[best] -= 1;
    }
    wants.iter().zip(&left).map(|(w, l)| w - l).collect()
}

proptest! {
    #![proptest_config(config(CASES))]

    /// Floating credits go where the backlog is largest, never beyond a channel's backlog, and the
    /// whole pool is lent when the wants exceed it.
    #[test]
    fn floating_credits_fill_the_largest_wants_first(
        backlogs in prop::collection::vec(0u64..40, 1..12),
        pool in 0u32..60,
        exclusive in 1u32..3,
    ) {
        let n = backlogs.len() as u32;
        let mut c = Credits::new(CreditConfig {
            exclusive_per_channel: exclusive,
            floating_max: pool,
            buffer_records_max: n * exclusive + pool,
        });
        for (p, b) in backlogs.iter().enumerate() {
            c.add_channel(tp(p as u32)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            c.announce_backlog(tp(p as u32), *b);
        }
        let wants: Vec<u64> = backlogs.iter().map(|b| b.saturating_sub(exclusive as u64)).collect();
        let mut out = Vec::new();
        c.grant_floating(&mut out);
        let mut got = vec![0u64; backlogs.len()];
        for g in &out {
            prop_assert_eq!(g.n, g.floating);
            got[g.tp.partition as usize] += g.n as u64;
        }
        prop_assert_eq!(&got, &water_fill_reference(&wants, pool), "lending: wants {:?} pool {}", wants, pool);
        let lent: u64 = got.iter().sum();
        prop_assert_eq!(lent, (pool as u64).min(wants.iter().sum()));
        prop_assert_eq!(c.pool() as u64, pool as u64 - lent);
    }
}
