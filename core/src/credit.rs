//! Credit-based backpressure (Flink-style, FLINK-7282), rules C1–C4.
//!
//! The receiver is a consumer's bounded buffer; each assigned partition is a *channel* whose sender
//! is the fetcher. A channel may only deliver as many records as it holds credits (C1: one record,
//! one credit); control events pass without credit (C2). Credits exist only for real buffer space
//! (C3: in-flight ≤ granted ≤ capacity). Each channel owns `exclusive_per_channel` credits; a shared
//! floating pool is lent to channels that announce a backlog. A channel at zero credit stalls only
//! itself (C4).
//!
//! How each rule is held here:
//! - C1: [`Credits::consume`] refuses (`NoCredit`) a delivery of more records than the channel holds
//!   credits, and takes exactly one credit per record.
//! - C2: control events (checkpoint barriers) never go through this module: the pipeline lets them
//!   pass without calling `consume`, so a channel at zero credit still forwards its barriers.
//! - C3: the credits that can ever exist are reserved up front: `exclusive_per_channel` per open
//!   channel, the whole floating pool, plus the buffer space still held by records of removed
//!   channels. [`Credits::add_channel`] refuses (`OverCapacity`) a channel whose exclusive credits
//!   do not fit in `buffer_records_max`, so `in_flight + outstanding <= buffer_records_max` at every
//!   instant.
//! - C4: nothing a channel does (consuming, being refused, being removed) takes credits away from
//!   another channel. Floating credits only ever move from the pool to a channel (lending) or back
//!   to the pool when the records they carried are released; lent credits are never recalled.
//!
//! Floating credits are lent by *water-filling*: the pool goes to the channels whose backlog is not
//! yet covered by their credits (their *want*), lowering the largest wants first until the pool is
//! empty; ties are broken by `Tp` order. A channel never receives more than its want, so never more
//! than its backlog.
//!
//! Cost: channels live in a `Vec` sorted by `Tp` (deterministic order), found through a direct
//! index by (topic, partition) (binary search for partitions ≥ 4096), so `consume`, `available`
//! and a `release` that returns no floating credit are O(1). Lending scans the channels: O(n·k)
//! for the k ≤ 8 credits a release typically returns, O(n log n) for a larger pool. Adding or
//! removing a channel is O(n).

use std::fmt;

use crate::bugs::{Bug, Bugs};
use crate::types::{Tp, TpIndex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditConfig {
    /// Credits every channel owns while it exists.
    pub exclusive_per_channel: u32,
    /// Credits in the shared floating pool.
    pub floating_max: u32,
    /// Buffer capacity in records; exclusive × channels + floating must never exceed it (C3).
    pub buffer_records_max: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditError {
    /// A send without a credit (C1).
    NoCredit { tp: Tp, requested: u32, available: u32 },
    /// Adding the channel would grant credits beyond the buffer (C3).
    OverCapacity,
    UnknownChannel(Tp),
}

impl fmt::Display for CreditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreditError::NoCredit { tp, requested, available } => write!(
                f,
                "channel {tp} delivered {requested} records with only {available} credits (C1)"
            ),
            CreditError::OverCapacity => {
                write!(f, "a new channel's exclusive credits do not fit in the buffer (C3)")
            }
            CreditError::UnknownChannel(tp) => write!(f, "no open credit channel for {tp}"),
        }
    }
}

impl std::error::Error for CreditError {}

/// A grant the receiver announces to one channel's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub tp: Tp,
    pub n: u32,
    /// How many of `n` came from the floating pool.
    pub floating: u32,
}

/// One channel's books. Records in flight are split by the kind of credit that carried them, so
/// that releasing them returns each credit where it came from. `orphan_*` are records delivered by
/// an earlier incarnation of the channel (before `remove_channel`) that are still in the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Channel {
    open: bool,
    /// Unused exclusive credits (granted, not consumed).
    exclusive_avail: u32,
    /// Unused floating credits lent to this channel.
    floating_avail: u32,
    /// Records in the buffer that consumed an exclusive credit.
    exclusive_in_flight: u32,
    /// Records in the buffer that consumed a floating credit.
    floating_in_flight: u32,
    /// Records in the buffer that consumed no credit at all (only under `Bug::IgnoreCredits`).
    overdraft_in_flight: u64,
    orphan_exclusive: u32,
    orphan_floating: u32,
    orphan_overdraft: u64,
    /// Records the sender announced as waiting at the broker, minus those delivered since.
    backlog_records: u64,
}

impl Channel {
    fn available(&self) -> u32 {
        self.exclusive_avail + self.floating_avail
    }
    fn in_flight(&self) -> u64 {
        self.exclusive_in_flight as u64
            + self.floating_in_flight as u64
            + self.overdraft_in_flight
            + self.orphan_in_flight()
    }
    fn orphan_in_flight(&self) -> u64 {
        self.orphan_exclusive as u64 + self.orphan_floating as u64 + self.orphan_overdraft
    }
    /// Floating credits this channel could use: its backlog not covered by its credits.
    fn want(&self) -> u64 {
        if !self.open {
            return 0;
        }
        self.backlog_records.saturating_sub(self.available() as u64)
    }
}

#[derive(Clone, Debug)]
pub struct Credits {
    cfg: CreditConfig,
    bugs: Bugs,
    /// Channels sorted by `Tp` (deterministic iteration order).
    channels: Vec<(Tp, Channel)>,
    /// Floating credits not lent to any channel.
    pool: u32,
    /// Buffer space reserved for credits that may exist: open channels × exclusive + floating_max
    /// + exclusive credits of removed channels still carried by records in the buffer. ≤ capacity.
    reserved_records: u64,
    in_flight: u64,
    outstanding: u64,
    /// O(1) position of a channel in `channels`; rebuilt when channels come or go.
    index: TpIndex,
    /// Scratch space for lending: (want, position, credits to lend); kept to avoid allocating.
    scratch: Vec<(u64, usize, u32)>,
    /// The pool lends only when it holds at least this many credits (see `with_floating_grant_min`).
    grant_min: u32,
}

/// Up to this many credits in the pool are lent one at a time (O(credits × channels), no sort).
const LEND_ONE_BY_ONE_MAX: u32 = 8;

impl Credits {
    /// A receiver with no channels and a full floating pool. A configuration whose floating pool
    /// alone exceeds the buffer gets an empty pool clipped to the buffer (C3 first); scenario
    /// validation rejects such specs before they get here.
    pub fn new(cfg: CreditConfig) -> Self {
        let pool = cfg.floating_max.min(cfg.buffer_records_max);
        Credits {
            cfg,
            bugs: Bugs::NONE,
            channels: Vec::new(),
            pool,
            reserved_records: pool as u64,
            in_flight: 0,
            outstanding: 0,
            index: TpIndex::default(),
            scratch: Vec::new(),
            grant_min: 1,
        }
    }

    /// Lends floating credits in chunks: `grant_floating` lends nothing while the pool holds fewer
    /// than `min(n, pool capacity)` credits (at least 1), so a channel is not woken for a handful
    /// of records at a time (the receiver side of the silly-window syndrome). The pool capacity is
    /// always reached once the lent credits come back, so no channel waits forever (C4 holds: only
    /// the pool waits, never a channel's own credits).
    pub fn with_floating_grant_min(mut self, n: u32) -> Self {
        let capacity = self.cfg.floating_max.min(self.cfg.buffer_records_max);
        self.grant_min = n.min(capacity).max(1);
        self
    }

    /// Whether `grant_floating` would lend now (given a channel that wants credits).
    #[inline]
    pub fn may_lend(&self) -> bool {
        self.pool >= self.grant_min
    }

    /// Switches planted bugs on. `Bug::IgnoreCredits`: `consume` never refuses; records beyond the
    /// channel's credits enter the buffer anyway (and are counted in `in_flight`).
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self
    }

    pub fn config(&self) -> CreditConfig {
        self.cfg
    }

    /// Position of `tp` in `channels`.
    #[inline]
    fn find(&self, tp: Tp) -> Option<usize> {
        self.index.find(&self.channels, tp)
    }

    fn rebuild_index(&mut self) {
        self.index.rebuild(&self.channels);
    }

    /// Opens a channel and grants its exclusive credits.
    ///
    /// Records of an earlier incarnation of the same channel still in the buffer keep their space
    /// until released or discarded. Fails with `OverCapacity` when the exclusive credits do not fit
    /// in the buffer next to the credits that may already exist (C3): release or discard the records
    /// of revoked channels first. Adding a channel that is already open grants nothing (`n == 0`).
    pub fn add_channel(&mut self, tp: Tp) -> Result<Grant, CreditError> {
        let e = self.cfg.exclusive_per_channel;
        let found = self.find(tp);
        if let Some(i) = found {
            if self.channels[i].1.open {
                return Ok(Grant { tp, n: 0, floating: 0 });
            }
        }
        if self.reserved_records + e as u64 > self.cfg.buffer_records_max as u64 {
            return Err(CreditError::OverCapacity);
        }
        let idx = match found {
            Some(i) => i,
            None => {
                let i = self.channels.partition_point(|(t, _)| *t < tp);
                self.channels.insert(i, (tp, Channel::default()));
                self.rebuild_index();
                i
            }
        };
        let ch = &mut self.channels[idx].1;
        debug_assert!(!ch.open);
        debug_assert_eq!(ch.exclusive_in_flight + ch.floating_in_flight, 0);
        ch.open = true;
        ch.exclusive_avail = e;
        ch.floating_avail = 0;
        ch.backlog_records = 0;
        self.reserved_records += e as u64;
        self.outstanding += e as u64;
        self.debug_check();
        Ok(Grant { tp, n: e, floating: 0 })
    }

    /// Closes a channel; returns the credits it held (unused) so the caller can record them. Records
    /// of this channel still in the buffer are released with `release` as usual or dropped with
    /// `discard`.
    pub fn remove_channel(&mut self, tp: Tp) -> u32 {
        let Some(idx) = self.find(tp) else { return 0 };
        let ch = &mut self.channels[idx].1;
        if !ch.open {
            return 0;
        }
        let returned = ch.available();
        self.pool += ch.floating_avail;
        // The exclusive credits of a closed channel stop existing; the records they carried keep
        // their buffer space reserved until they leave the buffer.
        self.reserved_records -= ch.exclusive_avail as u64;
        self.outstanding -= returned as u64;
        ch.orphan_exclusive += ch.exclusive_in_flight;
        ch.orphan_floating += ch.floating_in_flight;
        ch.orphan_overdraft += ch.overdraft_in_flight;
        *ch = Channel {
            orphan_exclusive: ch.orphan_exclusive,
            orphan_floating: ch.orphan_floating,
            orphan_overdraft: ch.orphan_overdraft,
            ..Channel::default()
        };
        if ch.orphan_in_flight() == 0 {
            self.channels.remove(idx);
            self.rebuild_index();
        }
        self.debug_check();
        returned
    }

    /// The sender's backlog for a channel (records waiting at the broker). Ignored for a channel
    /// that is not open. Delivered records (`consume`) lower it until the next announcement.
    pub fn announce_backlog(&mut self, tp: Tp, backlog_records: u64) {
        if let Some(idx) = self.find(tp) {
            let ch = &mut self.channels[idx].1;
            if ch.open {
                ch.backlog_records = backlog_records;
            }
        }
    }

    /// Lends floating credits to channels with a backlog; returns the grants made (one per channel
    /// that received credits, in `Tp` order). Water-filling: the largest wants are lowered first; a
    /// credit that cannot be split evenly goes to the lowest `Tp` among the largest wants. No
    /// channel gets more than its want (backlog − credits it holds). Nothing is lent while the pool
    /// holds fewer credits than the grant minimum (`with_floating_grant_min`; 1 by default).
    pub fn grant_floating(&mut self, out: &mut Vec<Grant>) {
        if !self.may_lend() {
            return;
        }
        let mut wants = std::mem::take(&mut self.scratch);
        wants.clear();
        let mut total_want: u64 = 0;
        for (i, (_, ch)) in self.channels.iter().enumerate() {
            let w = ch.want();
            if w > 0 {
                wants.push((w, i, 0));
                total_want += w;
            }
        }
        let pool = self.pool as u64;
        if total_want <= pool {
            // Everyone gets its whole want.
            for g in wants.iter_mut() {
                g.2 = g.0 as u32;
            }
        } else if self.pool <= LEND_ONE_BY_ONE_MAX {
            // A few credits (the usual case after a release): one at a time to the largest
            // remaining want, the lowest Tp first among equals. Same result as the general case.
            for _ in 0..self.pool {
                let mut best = 0;
                for k in 1..wants.len() {
                    if wants[k].0 - wants[k].2 as u64 > wants[best].0 - wants[best].2 as u64 {
                        best = k;
                    }
                }
                wants[best].2 += 1;
            }
        } else {
            // Largest want first (equal wants in Tp order, which is the position order).
            wants.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            // The lowest level L such that lowering every want above L to L costs <= pool.
            let mut sum: u64 = 0;
            let mut level: u64 = 0;
            let mut top: usize = 0;
            for j in 1..=wants.len() {
                sum += wants[j - 1].0;
                let next = if j < wants.len() { wants[j].0 } else { 0 };
                let j64 = j as u64;
                if sum - j64 * next > pool {
                    // L lies in (next, wants[j-1]]: the smallest L with sum − j·L <= pool.
                    level = (sum - pool).div_ceil(j64);
                    top = j;
                    break;
                }
            }
            debug_assert!(top > 0 && level >= 1);
            let spent = sum - top as u64 * level;
            let mut extra = pool - spent;
            debug_assert!(extra < top as u64);
            wants.truncate(top);
            wants.sort_unstable_by_key(|g| g.1);
            for g in wants.iter_mut() {
                g.2 = (g.0 - level) as u32;
                if extra > 0 {
                    g.2 += 1;
                    extra -= 1;
                }
            }
        }
        for &(_, i, n) in &wants {
            self.lend(i, n, out);
        }
        self.scratch = wants;
        self.debug_check();
    }

    fn lend(&mut self, idx: usize, n: u32, out: &mut Vec<Grant>) {
        if n == 0 {
            return;
        }
        debug_assert!(n <= self.pool);
        let (tp, ch) = &mut self.channels[idx];
        debug_assert!(ch.open && n as u64 <= ch.want());
        ch.floating_avail += n;
        self.pool -= n;
        self.outstanding += n as u64;
        out.push(Grant { tp: *tp, n, floating: n });
    }

    /// Credits the sender of `tp` may use now (0 for a channel that is not open).
    #[inline]
    pub fn available(&self, tp: Tp) -> u32 {
        match self.find(tp) {
            Some(idx) => self.channels[idx].1.available(),
            None => 0,
        }
    }

    /// The sender delivered `n` records into the buffer: consumes `n` credits (C1). Exclusive
    /// credits are used before floating ones. Refused with `NoCredit` (and nothing consumed) when
    /// `n` exceeds the credits available; `UnknownChannel` when `tp` is not open.
    #[inline]
    pub fn consume(&mut self, tp: Tp, n: u32) -> Result<(), CreditError> {
        let Some(idx) = self.find(tp) else { return Err(CreditError::UnknownChannel(tp)) };
        self.consume_at(idx, tp, n)
    }

    /// [`Credits::consume`], then (when it succeeds) [`Credits::announce_backlog`] of the backlog
    /// left behind the delivered records: what a fetch reply does to its channel, with one lookup.
    /// Returns the credits the channel has left ([`Credits::available`] after). On error nothing
    /// changes.
    #[inline]
    pub fn consume_and_announce(&mut self, tp: Tp, n: u32, backlog_records: u64) -> Result<u32, CreditError> {
        let Some(idx) = self.find(tp) else { return Err(CreditError::UnknownChannel(tp)) };
        self.consume_at(idx, tp, n)?;
        // `consume_at` succeeded, so the channel is open.
        let ch = &mut self.channels[idx].1;
        ch.backlog_records = backlog_records;
        Ok(ch.available())
    }

    /// [`Credits::consume`] for the channel at position `idx`.
    #[inline]
    fn consume_at(&mut self, idx: usize, tp: Tp, n: u32) -> Result<(), CreditError> {
        let ch = &mut self.channels[idx].1;
        if !ch.open {
            return Err(CreditError::UnknownChannel(tp));
        }
        let available = ch.available();
        let mut overdraft = 0;
        if n > available {
            if !self.bugs.has(Bug::IgnoreCredits) {
                return Err(CreditError::NoCredit { tp, requested: n, available });
            }
            overdraft = n - available;
        }
        let from_credits = n - overdraft;
        let from_exclusive = from_credits.min(ch.exclusive_avail);
        let from_floating = from_credits - from_exclusive;
        ch.exclusive_avail -= from_exclusive;
        ch.exclusive_in_flight += from_exclusive;
        ch.floating_avail -= from_floating;
        ch.floating_in_flight += from_floating;
        ch.overdraft_in_flight += overdraft as u64;
        ch.backlog_records = ch.backlog_records.saturating_sub(n as u64);
        self.outstanding -= from_credits as u64;
        self.in_flight += n as u64;
        Ok(())
    }

    /// `n` records of `tp` left the buffer (processed or dead-lettered): their space is free again;
    /// exclusive credits go back to the channel, floating ones to the pool. Returns grants made.
    ///
    /// Records of an earlier incarnation of the channel leave first, then this incarnation's
    /// (exclusive-carried before floating-carried). The exclusive credits given back are reported
    /// as one grant to `tp`; floating credits returned to the pool are lent again at once
    /// (`grant_floating`) and reported too. `n` is clipped to the records of `tp` in flight.
    #[inline]
    pub fn release(&mut self, tp: Tp, n: u32, out: &mut Vec<Grant>) {
        let (_, to_pool) = self.free(tp, n, true, out);
        if to_pool > 0 {
            self.grant_floating(out);
        }
    }

    /// Drops up to `n` records of `tp` that an earlier incarnation of the channel (before
    /// `remove_channel`) left in the buffer, e.g. the buffered records of a revoked partition.
    /// Their space is free again; floating credits they carried go back to the pool (lend them with
    /// `grant_floating`). Records delivered since the channel was re-added are not touched. Returns
    /// how many records were dropped.
    pub fn discard(&mut self, tp: Tp, n: u32) -> u32 {
        let mut sink = Vec::new();
        let (freed, _) = self.free(tp, n, false, &mut sink);
        debug_assert!(sink.is_empty());
        freed
    }

    /// Frees up to `n` records of `tp`; `current` says whether this incarnation's records may be
    /// freed too. Returns (records freed, floating credits returned to the pool).
    fn free(&mut self, tp: Tp, n: u32, current: bool, out: &mut Vec<Grant>) -> (u32, u32) {
        let Some(idx) = self.find(tp) else { return (0, 0) };
        let ch = &mut self.channels[idx].1;
        let mut left = n;
        let mut to_pool = 0u32;
        // Earlier incarnation first: no credits come back to the channel, the space is freed.
        if ch.orphan_overdraft | ch.orphan_exclusive as u64 | ch.orphan_floating as u64 != 0 {
            let k = (left as u64).min(ch.orphan_overdraft) as u32;
            ch.orphan_overdraft -= k as u64;
            left -= k;
            let k2 = left.min(ch.orphan_exclusive);
            ch.orphan_exclusive -= k2;
            self.reserved_records -= k2 as u64;
            left -= k2;
            let k3 = left.min(ch.orphan_floating);
            ch.orphan_floating -= k3;
            to_pool += k3;
            left -= k3;
        }
        let mut replenished = 0u32;
        if current {
            let k = (left as u64).min(ch.overdraft_in_flight) as u32;
            ch.overdraft_in_flight -= k as u64;
            left -= k;
            replenished = left.min(ch.exclusive_in_flight);
            ch.exclusive_in_flight -= replenished;
            ch.exclusive_avail += replenished;
            left -= replenished;
            let k3 = left.min(ch.floating_in_flight);
            ch.floating_in_flight -= k3;
            to_pool += k3;
            left -= k3;
        }
        let freed = n - left;
        let remove = !ch.open && ch.in_flight() == 0;
        self.pool += to_pool;
        self.in_flight -= freed as u64;
        self.outstanding += replenished as u64;
        if replenished > 0 {
            out.push(Grant { tp, n: replenished, floating: 0 });
        }
        if remove {
            self.channels.remove(idx);
            self.rebuild_index();
        }
        self.debug_check();
        (freed, to_pool)
    }

    /// Records currently in the buffer (delivered, not released).
    #[inline]
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Records of `tp` in the buffer, this and earlier incarnations of the channel.
    pub fn in_flight_of(&self, tp: Tp) -> u64 {
        match self.find(tp) {
            Some(idx) => self.channels[idx].1.in_flight(),
            None => 0,
        }
    }

    /// Credits granted and not yet used, all channels.
    #[inline]
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }

    /// Floating credits in the pool, not lent to any channel.
    #[inline]
    pub fn pool(&self) -> u32 {
        self.pool
    }

    /// Open channels, in `Tp` order.
    pub fn channels(&self) -> impl Iterator<Item = Tp> + '_ {
        self.channels.iter().filter(|(_, c)| c.open).map(|(tp, _)| *tp)
    }

    /// Recomputes the counters from the channels (debug builds only).
    fn debug_check(&self) {
        if cfg!(debug_assertions) {
            let mut in_flight = 0u64;
            let mut outstanding = 0u64;
            let mut lent = 0u64;
            let mut reserved = self.cfg.floating_max.min(self.cfg.buffer_records_max) as u64;
            for (_, ch) in &self.channels {
                in_flight += ch.in_flight();
                outstanding += ch.available() as u64;
                lent += ch.floating_avail as u64 + ch.floating_in_flight as u64;
                lent += ch.orphan_floating as u64;
                reserved += ch.orphan_exclusive as u64;
                if ch.open {
                    reserved += self.cfg.exclusive_per_channel as u64;
                    assert_eq!(
                        ch.exclusive_avail + ch.exclusive_in_flight,
                        self.cfg.exclusive_per_channel
                    );
                } else {
                    assert_eq!(ch.available(), 0);
                }
            }
            assert_eq!(in_flight, self.in_flight, "in-flight counter drifted");
            assert_eq!(outstanding, self.outstanding, "outstanding counter drifted");
            assert_eq!(lent + self.pool as u64, self.cfg.floating_max.min(self.cfg.buffer_records_max) as u64);
            assert_eq!(reserved, self.reserved_records);
            assert!(self.reserved_records <= self.cfg.buffer_records_max as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a script and what it must answer.
    #[derive(Debug)]
    enum Op {
        Add(u32, Result<u32, CreditError>),
        Remove(u32, u32),
        Backlog(u32, u64),
        /// Floating grants expected, as (partition, n).
        Float(&'static [(u32, u32)]),
        Consume(u32, u32, Result<(), CreditError>),
        /// Grants expected, as (partition, n, floating).
        Release(u32, u32, &'static [(u32, u32, u32)]),
        Discard(u32, u32, u32),
        Avail(u32, u32),
        /// (in_flight, outstanding, pool)
        State(u64, u64, u32),
    }
    use Op::*;

    fn tp(p: u32) -> Tp {
        Tp::new(0, p)
    }

    fn check(cfg: (u32, u32, u32), bugs: Bugs, script: &[Op]) {
        check_lending_min(cfg, 1, bugs, script)
    }

    fn check_lending_min(cfg: (u32, u32, u32), grant_min: u32, bugs: Bugs, script: &[Op]) {
        let (exclusive_per_channel, floating_max, buffer_records_max) = cfg;
        let mut c = Credits::new(CreditConfig { exclusive_per_channel, floating_max, buffer_records_max })
            .with_bugs(bugs)
            .with_floating_grant_min(grant_min);
        for (i, op) in script.iter().enumerate() {
            let mut out = Vec::new();
            match op {
                Add(p, want) => assert_eq!(c.add_channel(tp(*p)).map(|g| g.n), *want, "step {i}: {op:?}"),
                Remove(p, want) => assert_eq!(c.remove_channel(tp(*p)), *want, "step {i}: {op:?}"),
                Backlog(p, b) => c.announce_backlog(tp(*p), *b),
                Float(want) => {
                    c.grant_floating(&mut out);
                    let got: Vec<_> = out.iter().map(|g| (g.tp.partition, g.n)).collect();
                    assert_eq!(got, *want, "step {i}: {op:?}");
                    assert!(out.iter().all(|g| g.n == g.floating));
                }
                Consume(p, n, want) => assert_eq!(c.consume(tp(*p), *n), *want, "step {i}: {op:?}"),
                Release(p, n, want) => {
                    c.release(tp(*p), *n, &mut out);
                    let got: Vec<_> = out.iter().map(|g| (g.tp.partition, g.n, g.floating)).collect();
                    assert_eq!(got, *want, "step {i}: {op:?}");
                }
                Discard(p, n, want) => assert_eq!(c.discard(tp(*p), *n), *want, "step {i}: {op:?}"),
                Avail(p, want) => assert_eq!(c.available(tp(*p)), *want, "step {i}: {op:?}"),
                State(f, o, pool) => {
                    assert_eq!((c.in_flight(), c.outstanding(), c.pool()), (*f, *o, *pool), "step {i}")
                }
            }
            if bugs.is_empty() {
                assert!(c.in_flight() + c.outstanding() <= buffer_records_max as u64, "C3 at step {i}");
            }
        }
    }

    #[test]
    fn exclusive_credits_must_fit_the_buffer() {
        check((4, 2, 10), Bugs::NONE, &[
            Add(0, Ok(4)),
            Add(1, Ok(4)),
            Add(2, Err(CreditError::OverCapacity)),
            Add(1, Ok(0)), // already open: nothing new
            Avail(2, 0),
            Consume(2, 1, Err(CreditError::UnknownChannel(tp(2)))),
            State(0, 8, 2),
        ]);
        // The floating pool alone larger than the buffer is clipped to it.
        check((1, 50, 10), Bugs::NONE, &[State(0, 0, 10), Add(0, Err(CreditError::OverCapacity))]);
    }

    #[test]
    fn consume_needs_a_credit_per_record_and_refusal_takes_nothing() {
        let no_credit = |requested, available| Err(CreditError::NoCredit { tp: tp(0), requested, available });
        check((3, 0, 3), Bugs::NONE, &[
            Add(0, Ok(3)),
            Consume(0, 0, Ok(())),
            Consume(0, 2, Ok(())),
            Consume(0, 2, no_credit(2, 1)),
            Avail(0, 1),
            Consume(0, 1, Ok(())),
            Consume(0, 1, no_credit(1, 0)),
            State(3, 0, 0),
            Release(0, 2, &[(0, 2, 0)]),
            Avail(0, 2),
            Release(0, 5, &[(0, 1, 0)]), // clipped to what is in flight
            State(0, 3, 0),
        ]);
    }

    #[test]
    fn ignore_credits_bug_lets_records_in_without_credit() {
        check((2, 0, 4), Bugs::only(Bug::IgnoreCredits), &[
            Add(0, Ok(2)),
            Consume(0, 5, Ok(())),
            State(5, 0, 0), // 5 in flight for 2 credits granted: C1 and C3 broken
            Release(0, 3, &[]), // the overdraft leaves first
            Release(0, 2, &[(0, 2, 0)]),
            State(0, 2, 0),
        ]);
    }

    #[test]
    fn floating_credits_water_fill_largest_want_first_never_beyond_backlog() {
        // Wants 10 and 4 (backlog − 2 exclusive), pool 10: both lowered to 2.
        check((2, 10, 16), Bugs::NONE, &[
            Add(0, Ok(2)),
            Add(1, Ok(2)),
            Add(2, Ok(2)),
            Backlog(0, 12),
            Backlog(1, 6),
            Backlog(2, 2),
            Float(&[(0, 8), (1, 2)]),
            Avail(0, 10),
            Avail(1, 4),
            Avail(2, 2),
            Float(&[]), // pool empty
            State(0, 16, 0),
        ]);
        // Equal wants 5, 5, 5 and pool 7: 3, 2, 2 (the tie goes to the lower Tp).
        check((1, 7, 10), Bugs::NONE, &[
            Add(2, Ok(1)),
            Add(0, Ok(1)),
            Add(1, Ok(1)),
            Backlog(0, 6),
            Backlog(1, 6),
            Backlog(2, 6),
            Float(&[(0, 3), (1, 2), (2, 2)]),
        ]);
        // Enough for everyone: each gets exactly its want, the rest stays in the pool.
        check((1, 20, 30), Bugs::NONE, &[
            Add(0, Ok(1)),
            Add(1, Ok(1)),
            Backlog(0, 4),
            Backlog(1, 1),
            Float(&[(0, 3)]),
            State(0, 5, 17),
            Backlog(1, 3),
            Float(&[(1, 2)]),
        ]);
    }

    #[test]
    fn released_floating_credits_return_to_the_pool_and_are_lent_again() {
        check((1, 2, 4), Bugs::NONE, &[
            Add(0, Ok(1)),
            Add(1, Ok(1)),
            Backlog(0, 3),
            Float(&[(0, 2)]),
            Consume(0, 3, Ok(())), // 1 exclusive + 2 floating; backlog now 0
            Backlog(1, 5),
            State(3, 1, 0),
            // Exclusive first back to channel 0, then the floating credit goes to channel 1's want.
            Release(0, 2, &[(0, 1, 0), (1, 1, 1)]),
            Avail(0, 1),
            Avail(1, 2),
            State(1, 3, 0),
        ]);
    }

    #[test]
    fn the_pool_lends_only_in_chunks_of_the_grant_minimum() {
        check_lending_min((1, 6, 8), 4, Bugs::NONE, &[
            Add(0, Ok(1)),
            Add(1, Ok(1)),
            Backlog(0, 7),
            Float(&[(0, 6)]),
            Consume(0, 7, Ok(())), // 1 exclusive + 6 floating
            Backlog(1, 9),
            // 1 exclusive back to channel 0; 2 floating to the pool: below the minimum, kept.
            Release(0, 3, &[(0, 1, 0)]),
            State(4, 2, 2),
            Float(&[]),
            // 2 more: the pool holds 4, lent in one grant.
            Release(0, 2, &[(1, 4, 4)]),
            Avail(1, 5),
            State(2, 6, 0),
        ]);
        // A minimum above the pool's capacity is clipped to it: a full pool always lends.
        check_lending_min((1, 3, 8), 100, Bugs::NONE, &[Add(0, Ok(1)), Backlog(0, 9), Float(&[(0, 3)])]);
    }

    #[test]
    fn removal_with_records_in_flight_keeps_their_space_until_they_leave() {
        check((4, 0, 8), Bugs::NONE, &[
            Add(0, Ok(4)),
            Add(1, Ok(4)),
            Consume(0, 3, Ok(())),
            Remove(0, 1), // one unused credit returned
            Remove(0, 0), // twice: nothing more
            State(3, 4, 0),
            Add(2, Err(CreditError::OverCapacity)), // 4 (channel 1) + 3 in flight + 4 > 8
            Discard(0, 2, 2),
            Add(2, Err(CreditError::OverCapacity)),
            Release(0, 5, &[]), // the last one leaves; no credit comes back to a closed channel
            Add(2, Ok(4)),
            State(0, 8, 0),
            Discard(0, 1, 0), // nothing left to drop
        ]);
    }

    #[test]
    fn a_readded_channel_gets_fresh_credits_and_old_records_leave_first() {
        check((4, 2, 10), Bugs::NONE, &[
            Add(0, Ok(4)),
            Backlog(0, 10),
            Float(&[(0, 2)]),
            Consume(0, 6, Ok(())),
            Remove(0, 0),
            State(6, 0, 0),
            Add(0, Ok(4)), // 4 new + 4 old exclusive in flight + 2 floating = 10
            Consume(0, 4, Ok(())),
            State(10, 0, 0),
            Discard(0, 1, 1), // only the old incarnation's records can be discarded
            Release(0, 5, &[]), // old records first: 3 exclusive space, 2 floating back to the pool
            State(4, 0, 2),
            Release(0, 4, &[(0, 4, 0)]),
            Discard(0, 3, 0),
            State(0, 4, 2),
        ]);
    }

    #[test]
    fn a_channel_at_zero_credit_stalls_only_itself() {
        check((2, 2, 8), Bugs::NONE, &[
            Add(0, Ok(2)),
            Add(1, Ok(2)),
            Backlog(1, 4),
            Float(&[(1, 2)]),
            Consume(0, 2, Ok(())),
            Consume(0, 1, Err(CreditError::NoCredit { tp: tp(0), requested: 1, available: 0 })),
            Backlog(0, 100),
            Float(&[]),
            Avail(1, 4),
            Consume(1, 4, Ok(())),
        ]);
    }

    #[test]
    fn errors_read_well() {
        let e = CreditError::NoCredit { tp: Tp::new(1, 2), requested: 3, available: 1 };
        assert_eq!(e.to_string(), "channel t1/2 delivered 3 records with only 1 credits (C1)");
        assert!(CreditError::OverCapacity.to_string().contains("C3"));
    }
}
