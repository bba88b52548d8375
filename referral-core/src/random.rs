//! The randomness port: every random value in the core (login codes, invite
//! codes, ids) comes from a [`Random`] passed in, never from a global RNG.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use rand::{RngCore, SeedableRng, rngs::StdRng};

/// A source of random bytes. Implementations used in production MUST be
/// cryptographically secure: login codes and invite codes are drawn from it.
pub trait Random: Send + Sync + fmt::Debug {
    /// Fills `buf` with random bytes.
    fn fill_bytes(&self, buf: &mut [u8]);

    /// A uniformly distributed `u32` in `0..n` (rejection sampling, no modulo
    /// bias).
    ///
    /// # Panics
    /// When `n` is 0.
    fn below(&self, n: u32) -> u32 {
        assert!(n > 0, "Random::below(0)");
        let zone = (u32::MAX / n) * n;
        loop {
            let mut b = [0u8; 4];
            self.fill_bytes(&mut b);
            let v = u32::from_le_bytes(b);
            if v < zone {
                return v % n;
            }
        }
    }
}

/// The operating system's CSPRNG as seeded into `rand`'s thread-local
/// generator: the production default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandom;

impl Random for ThreadRandom {
    #[allow(clippy::disallowed_methods)] // this is the one sanctioned use
    fn fill_bytes(&self, buf: &mut [u8]) {
        rand::rng().fill_bytes(buf);
    }
}

/// A deterministic generator (ChaCha12 from a seed) for tests and benchmarks:
/// the same seed gives the same codes.
#[derive(Debug)]
pub struct SeededRandom(Mutex<StdRng>);

impl SeededRandom {
    /// A generator whose whole output is fixed by `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Random for SeededRandom {
    fn fill_bytes(&self, buf: &mut [u8]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_is_in_range_and_covers_it() {
        let rng = SeededRandom::new(1);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            let v = rng.below(10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn seeded_is_deterministic_and_thread_random_is_not_constant() {
        let (a, b) = (SeededRandom::new(9), SeededRandom::new(9));
        let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_eq!(x, y);
        ThreadRandom.fill_bytes(&mut x);
        ThreadRandom.fill_bytes(&mut y);
        assert_ne!(x, y);
    }
}
