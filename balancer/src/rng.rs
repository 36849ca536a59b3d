//! Injectable randomness.
//!
//! Policies draw from a [`Rng`] (tower's own trait, so one generator type serves both tower's
//! balancer and this crate). [`SmallRng`] is a seeded xoshiro256++ generator: the same seed gives
//! the same sequence of picks, which keeps tests and simulations repeatable.

pub use tower::util::rng::Rng;

/// A small, fast, seedable generator (xoshiro256++, seeded through SplitMix64).
///
/// ```
/// use palisade_balancer::rng::{Rng, SmallRng};
/// let mut a = SmallRng::seed_from_u64(7);
/// let mut b = SmallRng::seed_from_u64(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
#[derive(Debug, Clone)]
pub struct SmallRng {
    s: [u64; 4],
}

impl SmallRng {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// A generator seeded from the process's random hasher keys (not repeatable).
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5EED);
        Self::seed_from_u64(h.finish())
    }
}

impl Default for SmallRng {
    fn default() -> Self {
        Self::from_entropy()
    }
}

impl Rng for SmallRng {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

/// Two distinct indexes in `0..len` (`len >= 2`), Floyd's sampling with two draws.
#[inline]
pub(crate) fn two_distinct<R: Rng + ?Sized>(rng: &mut R, len: usize) -> (usize, usize) {
    debug_assert!(len >= 2);
    let len = len as u64;
    let a = rng.next_range(0..len - 1);
    let b = rng.next_range(0..len);
    let a = if a == b { len - 1 } else { a };
    (a as usize, b as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_distinct_is_distinct_and_covers_all() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut seen = [0u32; 5];
        for _ in 0..10_000 {
            let (a, b) = two_distinct(&mut rng, 5);
            assert_ne!(a, b);
            seen[a] += 1;
            seen[b] += 1;
        }
        for (i, n) in seen.iter().enumerate() {
            assert!((3_000..5_000).contains(n), "index {i} drawn {n} times");
        }
    }

    #[test]
    fn seeds_differ() {
        let mut a = SmallRng::seed_from_u64(1);
        let mut b = SmallRng::seed_from_u64(2);
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
