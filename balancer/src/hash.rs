//! Consistent hashing: request keys and the Maglev lookup table.

use std::hash::{Hash, Hasher};

/// Extracts the sticky key of a request for [`Policy::Maglev`](crate::Policy::Maglev) (a user
/// id, a session cookie, a cache key). `None`: the request is not sticky and goes to a random
/// ready endpoint.
///
/// Closures `Fn(&Req) -> Option<u64>` implement it; [`key_of`] hashes any `Hash` value into a
/// stable `u64`.
///
/// ```
/// use palisade_balancer::discover::StaticList;
/// use palisade_balancer::hash::key_of;
/// use palisade_balancer::{Balance, Config, Endpoint, Policy};
/// use tower::{service_fn, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ep = |id: u32| service_fn(move |_user: String| async move { Ok::<_, std::io::Error>(id) });
/// let list = StaticList::new((0..5u32).map(|i| (i, Endpoint::new(ep(i)))));
/// let mut lb = Balance::builder(list)
///     .config(Config::with_policy(Policy::Maglev { table_size: 65_537 }))
///     .hash_key(|user: &String| Some(key_of(user)))   // sticky per user
///     .build()
///     .unwrap();
/// let first = lb.ready().await.unwrap().call("alice".to_owned()).await.unwrap();
/// for _ in 0..10 {
///     assert_eq!(lb.ready().await.unwrap().call("alice".to_owned()).await.unwrap(), first);
/// }
/// # }
/// ```
pub trait HashKey<Req> {
    /// The request's key.
    fn hash_key(&self, req: &Req) -> Option<u64>;
}

impl<Req, F: Fn(&Req) -> Option<u64>> HashKey<Req> for F {
    fn hash_key(&self, req: &Req) -> Option<u64> {
        self(req)
    }
}

/// No request is sticky (the default when no key extractor is configured).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHashKey;

impl<Req> HashKey<Req> for NoHashKey {
    fn hash_key(&self, _: &Req) -> Option<u64> {
        None
    }
}

/// A stable 64-bit hash of `value` (FNV-1a with a final avalanche), the same on every run and
/// every platform of the same endianness, unlike `std`'s `RandomState`.
///
/// ```
/// use palisade_balancer::hash::key_of;
/// assert_eq!(key_of(&"user-42"), key_of(&"user-42"));
/// assert_ne!(key_of(&"user-42"), key_of(&"user-43"));
/// ```
pub fn key_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = StableHasher::new(0);
    value.hash(&mut h);
    h.finish()
}

pub(crate) struct StableHasher(u64);

impl StableHasher {
    pub(crate) fn new(seed: u64) -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The Maglev lookup table (Eisenbud et al., NSDI 2016): each entry names an endpoint; every
/// endpoint owns about `size / n` entries, and adding or removing one endpoint moves only about
/// `1 / n` of the keys.
#[derive(Debug, Default)]
pub(crate) struct MaglevTable {
    entries: Vec<u32>,
}

impl MaglevTable {
    /// Builds the table for endpoints whose stable key hashes are `keys`, in slot order.
    /// `size` must be prime (validated in the config).
    pub(crate) fn build(&mut self, keys: &[(u64, u64)], size: u32) {
        self.entries.clear();
        if keys.is_empty() {
            return;
        }
        let m = u64::from(size);
        self.entries.resize(size as usize, u32::MAX);
        let mut next: Vec<u64> = vec![0; keys.len()];
        let perm: Vec<(u64, u64)> = keys
            .iter()
            .map(|&(h1, h2)| (h1 % m, h2 % (m - 1) + 1))
            .collect();
        let mut filled = 0u64;
        'fill: loop {
            for (i, &(offset, skip)) in perm.iter().enumerate() {
                let mut c = (offset + next[i] * skip) % m;
                while self.entries[c as usize] != u32::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                self.entries[c as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The endpoint for `key`, then the ones after it in table order (a stable fallback
    /// sequence when the first is not available).
    #[inline]
    pub(crate) fn lookup(&self, key: u64, probe: usize) -> usize {
        let m = self.entries.len();
        self.entries[((key % m as u64) as usize + probe) % m] as usize
    }
}

/// Whether `n` is prime (table sizes).
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[u32]) -> Vec<(u64, u64)> {
        ids.iter()
            .map(|id| {
                let mut a = StableHasher::new(1);
                id.hash(&mut a);
                let mut b = StableHasher::new(2);
                id.hash(&mut b);
                (a.finish(), b.finish())
            })
            .collect()
    }

    #[test]
    fn entries_are_balanced() {
        let mut t = MaglevTable::default();
        t.build(&keys(&[1, 2, 3, 4, 5]), 65_537);
        let mut c = [0usize; 5];
        for k in 0..t.len() {
            c[t.lookup(k as u64, 0)] += 1;
        }
        for n in c {
            assert!((13_000..=13_200).contains(&n), "{c:?}");
        }
    }

    #[test]
    fn removing_one_endpoint_moves_few_keys() {
        let ids: Vec<u32> = (0..10).collect();
        let mut before = MaglevTable::default();
        before.build(&keys(&ids), 65_537);
        // Remove endpoint 3: slots after it shift down by one in the new table.
        let rest: Vec<u32> = ids.iter().copied().filter(|&i| i != 3).collect();
        let mut after = MaglevTable::default();
        after.build(&keys(&rest), 65_537);
        let mut moved = 0;
        let total = 100_000u64;
        for k in 0..total {
            let key = key_of(&k);
            let a = ids[before.lookup(key, 0)];
            let b = rest[after.lookup(key, 0)];
            if a != 3 && a != b {
                moved += 1;
            }
        }
        // Keys of the removed endpoint move (10 %); of the others, only a few percent.
        assert!(moved < total / 20, "{moved} of {total} keys moved");
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537) && is_prime(251) && !is_prime(65_536) && !is_prime(1));
    }
}
