//! A small seeded generator: xoshiro256** seeded through SplitMix64.
//!
//! The simulator needs reproducible streams, many of them (two per user), and nothing else;
//! this is the generator the xoshiro authors recommend for that, in a few lines.

/// One SplitMix64 step: advances `state` and returns a well-mixed word.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix(*state)
}

/// SplitMix64's finaliser: a bijection that spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**: fast, 256 bits of state, passes the usual statistical batteries.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Stream `stream` of seed `seed`. Streams of one seed are independent: the seed and the
    /// stream number are hashed together before SplitMix64 expands them (consecutive SplitMix64
    /// seeds would give overlapping, shifted sequences).
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut state = mix(seed ^ mix(stream.wrapping_add(0x632B_E59B_D9B4_E019)));
        let s = [
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
            splitmix64(&mut state),
        ];
        Rng { s }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p`: never for `p <= 0` (and then it draws nothing), always for
    /// `p >= 1`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `lo..=hi`.
    pub(crate) fn int(&mut self, lo: u32, hi: u32) -> u32 {
        if hi <= lo {
            return lo;
        }
        let n = u64::from(hi - lo) + 1;
        // Multiply-shift: unbiased enough for n far below 2^32, and branch-free.
        lo + ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u32
    }

    /// Exponentially distributed with the given mean.
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(7, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut x = Rng::new(7, 1);
        let mut y = Rng::new(7, 2);
        let mut z = Rng::new(8, 1);
        let (xs, ys, zs): (Vec<u64>, Vec<u64>, Vec<u64>) = (0..8)
            .map(|_| (x.next_u64(), y.next_u64(), z.next_u64()))
            .fold((vec![], vec![], vec![]), |mut acc, (a, b, c)| {
                acc.0.push(a);
                acc.1.push(b);
                acc.2.push(c);
                acc
            });
        assert_ne!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn unit_and_int_stay_in_range_and_cover_it() {
        let mut rng = Rng::new(1, 0);
        let mut seen = [false; 5];
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            sum += u;
            let i = rng.int(3, 7);
            assert!((3..=7).contains(&i));
            seen[(i - 3) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert!((sum / 10_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn exp_has_its_mean() {
        let mut rng = Rng::new(3, 0);
        let mean = (0..20_000).map(|_| rng.exp(2.0)).sum::<f64>() / 20_000.0;
        assert!((mean - 2.0).abs() < 0.1, "{mean}");
    }
}
