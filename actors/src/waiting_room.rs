//! The waiting room's decisions, as pure functions: the pre-queue shuffle, the
//! fixed-rate pacer and the `auto` admission budget. No I/O, no clock (the caller
//! passes the time), so each is tested on its own (`docs/domain.md`, section
//! "Waiting room").
//!
//! **Guarantees.** [`shuffle`] returns a permutation of `0..n` drawn uniformly
//! (Fisher–Yates over a seeded SplitMix64 stream): the same seed always gives the
//! same permutation, so the recorded seed lets anyone re-derive the opening order.
//! [`Pacer`] never lets more than `rate × elapsed / 60 s` admissions through (the
//! count is exact, rounded down), and does not save up admissions while nobody
//! waits. [`auto_budget`] never admits more people than there are free places
//! beyond the admissions still outstanding.

use serde::{Deserialize, Serialize};

/// How fast the room lets people in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rate {
    /// This many admissions per minute (plus the slots of admissions that expired unused).
    PerMinute(u32),
    /// As many as the sale can absorb: see [`auto_budget`].
    Auto,
}

/// A SplitMix64 stream: small, fast, and good enough for an unpredictable,
/// reproducible order (the seed itself comes from the operating system).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`), without modulo bias (Lemire's method
    /// with rejection).
    fn below(&mut self, bound: u64) -> u64 {
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }
}

/// The opening order of `n` pre-queue entries: `order[i]` is the index (in the
/// caller's list, e.g. join order) of whoever gets place `i + 1`. A uniformly
/// random permutation determined by `seed` alone.
pub fn shuffle(seed: u64, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64(seed);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Admissions at a fixed rate per minute, counted from when the room started
/// admitting: by time `t` at most `1 + floor(rate × (t − start) / 60,000 ms)` in
/// all (the first in line goes in at once, not a period later). While nobody
/// waits the allowance is not saved up beyond one admission ([`Pacer::skip`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacer {
    rate_per_minute: u32,
    start_ms: i64,
    issued: u64,
}

impl Pacer {
    pub fn new(rate_per_minute: u32, start_ms: i64) -> Self {
        Self { rate_per_minute, start_ms, issued: 0 }
    }

    pub fn rate_per_minute(&self) -> u32 {
        self.rate_per_minute
    }

    /// Admissions allowed at `now_ms` and not yet issued.
    pub fn due(&self, now_ms: i64) -> u64 {
        let elapsed = u128::try_from(now_ms.saturating_sub(self.start_ms)).unwrap_or(0);
        let allowed = 1 + elapsed * u128::from(self.rate_per_minute) / 60_000;
        u64::try_from(allowed).unwrap_or(u64::MAX).saturating_sub(self.issued)
    }

    /// Records `n` admissions issued.
    pub fn issued(&mut self, n: u64) {
        self.issued = self.issued.saturating_add(n);
    }

    /// Forfeits what is due at `now_ms` beyond one admission (nobody was there to
    /// take it): an empty queue does not turn into a burst when people arrive, and
    /// the next to arrive is not kept waiting a whole period behind nobody.
    pub fn skip(&mut self, now_ms: i64) {
        let due = self.due(now_ms);
        self.issued(due.saturating_sub(1));
    }
}

/// Fewest admissions `auto` keeps outstanding while places are free, so a slow
/// start is not starved by a purchase rate that is still zero.
pub const AUTO_MIN_OUTSTANDING: u64 = 200;

/// How many to admit now with `auto`: keep the admissions outstanding (admitted,
/// not yet used, not expired) at about twice the recent purchase rate per minute
/// (at least [`AUTO_MIN_OUTSTANDING`]), and never more than the free places —
/// free already excludes the seats of holds in flight, and each outstanding
/// admission may still turn into a hold.
pub fn auto_budget(free_places: u64, outstanding: u64, sold_last_minute: u64) -> u64 {
    let target = sold_last_minute.saturating_mul(2).max(AUTO_MIN_OUTSTANDING).min(free_places);
    target.saturating_sub(outstanding)
}

/// Estimated wait, in seconds, for someone with `ahead` people in front, when
/// `per_minute` are admitted each minute (`None` when nothing is being admitted).
pub fn estimated_wait_secs(ahead: u64, per_minute: u64) -> Option<u64> {
    (per_minute > 0).then(|| ahead.saturating_mul(60).div_ceil(per_minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_and_reproducible() {
        for n in [0, 1, 2, 7, 1000] {
            let order = shuffle(42, n);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation of 0..{n}");
            assert_eq!(order, shuffle(42, n), "the seed decides it");
        }
        assert_ne!(shuffle(1, 100), shuffle(2, 100), "another seed, another order");
    }

    /// Over many seeds, each entry lands in each place about equally often: a
    /// chi-squared test on a 10 × 10 table of (join index, place) counts.
    #[test]
    fn shuffle_places_every_joiner_uniformly() {
        const N: usize = 10;
        const ROUNDS: u64 = 20_000;
        let mut counts = [[0u64; N]; N];
        for seed in 0..ROUNDS {
            for (place, &joiner) in shuffle(seed.wrapping_mul(0x2545_F491_4F6C_DD1D), N).iter().enumerate() {
                counts[joiner][place] += 1;
            }
        }
        let expected = ROUNDS as f64 / N as f64;
        let chi2: f64 = counts.iter().flatten().map(|&c| (c as f64 - expected).powi(2) / expected).sum();
        // 81 degrees of freedom: the 99.9th percentile is about 129.
        assert!(chi2 < 129.0, "chi-squared {chi2} over {counts:?}");
    }

    #[test]
    fn pacer_admits_the_rate_and_saves_nothing_while_idle() {
        let mut pacer = Pacer::new(600, 0);
        assert_eq!(pacer.due(0), 1, "the first goes in at once");
        pacer.issued(1);
        // Ticking every 250 ms for a minute admits exactly 600 more.
        let mut admitted = 0;
        for t in (250..=60_000).step_by(250) {
            let n = pacer.due(t);
            pacer.issued(n);
            admitted += n;
        }
        assert_eq!(admitted, 600);
        // An irregular tick (jitter) changes the spacing, never the total.
        let mut jittery = Pacer::new(1000, 5);
        let mut total = 0;
        let mut t = 5;
        for step in [13, 400, 7, 999, 1, 2500, 61, 58_000] {
            t += step;
            let n = jittery.due(t);
            jittery.issued(n);
            total += n;
        }
        assert_eq!(total, 1 + (t - 5) as u64 * 1000 / 60_000);
        // Nobody waiting for 10 s: those admissions are forfeited, all but one, which
        // the next to arrive takes at once.
        assert_eq!(pacer.due(70_000), 100);
        pacer.skip(70_000);
        assert_eq!(pacer.due(70_000), 1);
        pacer.issued(1);
        assert_eq!(pacer.due(70_000), 0);
        assert_eq!(pacer.due(70_100), 1);
        // A room that opens to an empty line keeps its first admission for the first
        // to come, however slow the rate.
        let mut slow = Pacer::new(1, 0);
        slow.skip(50);
        slow.skip(100);
        assert_eq!(slow.due(5_000), 1, "the first to arrive goes in at once");
        slow.issued(1);
        assert_eq!(slow.due(30_000), 0, "the next waits for the rate");
        assert_eq!(slow.due(60_000), 1);
    }

    #[test]
    fn auto_fills_free_places_up_to_twice_the_purchase_rate() {
        assert_eq!(auto_budget(1000, 0, 0), AUTO_MIN_OUTSTANDING);
        assert_eq!(auto_budget(1000, 30, 0), AUTO_MIN_OUTSTANDING - 30);
        assert_eq!(auto_budget(1000, 0, 300), 600);
        assert_eq!(auto_budget(10, 0, 300), 10, "never past the free places");
        assert_eq!(auto_budget(10, 12, 300), 0);
        assert_eq!(auto_budget(0, 0, 0), 0, "sold out or all held: nobody");
    }

    #[test]
    fn estimates_round_up() {
        assert_eq!(estimated_wait_secs(0, 60), Some(0));
        assert_eq!(estimated_wait_secs(1, 60), Some(1));
        assert_eq!(estimated_wait_secs(61, 60), Some(61));
        assert_eq!(estimated_wait_secs(5, 0), None);
    }
}
