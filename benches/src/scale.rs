//! The measuring loop of the scale bins (`scale`, `reward-scale`): medians
//! of many calls for three users (a small, a middle and a big one),
//! interleaved so that noise hits all three alike.

use std::future::Future;
use std::time::{Duration, Instant};

/// The median of `xs`.
///
/// # Panics
/// When `xs` is empty.
#[must_use]
pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The median time of `calls` calls of `f` for each user (`f(0)`, `f(1)`,
/// `f(2)`), after `calls / 10` warm-up calls each; the calls of the three
/// are interleaved.
///
/// # Panics
/// When `calls` is 0.
pub async fn trio<F, Fut>(calls: usize, f: F) -> [Duration; 3]
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for who in 0..3 {
        for _ in 0..calls / 10 {
            f(who).await; // warm-up
        }
    }
    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..calls {
        for (who, t) in times.iter_mut().enumerate() {
            let start = Instant::now();
            f(who).await;
            t.push(start.elapsed());
        }
    }
    times.map(median)
}
