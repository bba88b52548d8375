//! hyper's timer, with tokio sleeps reused instead of made per request.
//!
//! hyper's HTTP/1 server asks its [`Timer`] for a new header read timer for
//! every request's head (it drops the old one once a head is parsed).
//! hyper-util's `TokioTimer` answers each time with a new boxed
//! [`tokio::time::Sleep`], which enters tokio's timer wheel on its first poll
//! (the read waits between requests) and leaves it when dropped: about 700
//! of the ~24,000 user-space instructions of a request, wheel included.
//!
//! [`PooledTimer`] keeps the sleeps hyper drops in a bounded pool and hands
//! them out again. A header read deadline is always later than the one the
//! pooled sleep last had (now plus the same timeout), so the sleep is not
//! even reset: its [`PooledSleep`] keeps the new deadline beside it, and only
//! if the sleep fires before that deadline is it reset to it and waited for
//! again: at most once per timeout period, where a reset per request would
//! cost about 115 instructions (the tick conversion, a handle clone, the
//! compare-and-swap). A deadline earlier than the sleep's resets it at once.
//! Either way the sleep handed out fires at the new deadline, never at the
//! old one (the unit tests below check each case).
//!
//! What this relies on in tokio (1.54, its default timer, the one a
//! current-thread runtime uses; `time/sleep.rs`, `runtime/time/entry.rs`):
//! [`tokio::time::Sleep::deadline`] is the deadline last set;
//! [`tokio::time::Sleep::reset`] of a sleep still in the wheel to a later
//! deadline is one compare-and-swap of its expiration (`TimerEntry::reset`,
//! `extend_expiration`), and of a sleep that fired or to an earlier deadline
//! deregisters and registers it again (so a fired sleep waits anew); a sleep
//! fires at its deadline, never before.
//!
//! A sleep waiting in the pool stays in the wheel with its old deadline and
//! the waker of the last connection that polled it. If it is not reused
//! before that deadline, the wheel fires it and wakes that connection once
//! for nothing; a sleep in use whose deadline was moved later wakes its
//! connection once at the old deadline too. Both are harmless: futures are
//! polled again on any wake, hyper's connection finds nothing ready and
//! waits on (its timer re-armed), and a finished task ignores the wake.
//!
//! One timer per runtime: the pool is the timer's, and a sleep belongs to the
//! runtime it was made on (its wheel fires it). `serve.rs` makes one timer per
//! worker, each worker a single-threaded runtime on its own thread, so the
//! pool's lock is never contended.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// Most sleeps a timer keeps for reuse by default: a few hundred bytes each,
/// and each one the wheel still holds until its old deadline passes. Past
/// the bound, a dropped sleep is dropped as `TokioTimer`'s are.
pub(crate) const POOL_BOUND: usize = 1024;

/// A tokio sleep, boxed so that it stays pinned while it moves in and out of
/// the pool.
type Pinned = Pin<Box<tokio::time::Sleep>>;

/// A [`hyper::rt::Timer`] on tokio's clock that reuses the sleeps hyper
/// drops (at most its bound of them), for use on one runtime.
#[derive(Debug, Clone)]
pub(crate) struct PooledTimer {
    pool: Arc<Pool>,
}

/// The sleeps waiting for reuse.
#[derive(Debug)]
struct Pool {
    sleeps: Mutex<Vec<Pinned>>,
    bound: usize,
}

/// A sleep handed to hyper: a tokio sleep, back to its pool when dropped,
/// and the deadline it stands for (never earlier than the tokio sleep's).
#[derive(Debug)]
struct PooledSleep {
    /// Always `Some` but in `drop`, which takes it.
    sleep: Option<Pinned>,
    /// When this sleep fires. The tokio sleep may fire earlier: it is then
    /// reset to this deadline and waited for again.
    deadline: tokio::time::Instant,
    pool: Arc<Pool>,
}

impl PooledTimer {
    /// A timer keeping at most [`POOL_BOUND`] sleeps for reuse.
    pub(crate) fn new() -> Self {
        Self::with_bound(POOL_BOUND)
    }

    /// A timer keeping at most `bound` sleeps for reuse.
    pub(crate) fn with_bound(bound: usize) -> Self {
        Self {
            pool: Arc::new(Pool {
                sleeps: Mutex::new(Vec::new()),
                bound,
            }),
        }
    }

    /// A sleep until `deadline`: one from the pool, or a new one if the
    /// pool is empty.
    fn take(&self, deadline: tokio::time::Instant) -> PooledSleep {
        let pooled = self.pool.lock().pop();
        let pool = Arc::clone(&self.pool);
        match pooled {
            Some(sleep) => {
                let mut pooled = PooledSleep {
                    sleep: Some(sleep),
                    deadline,
                    pool,
                };
                pooled.set_deadline(deadline);
                pooled
            }
            None => PooledSleep {
                sleep: Some(Box::pin(tokio::time::sleep_until(deadline))),
                deadline,
                pool,
            },
        }
    }

    /// How many sleeps wait in the pool.
    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.pool.lock().len()
    }
}

impl Pool {
    /// The pool's sleeps. A panic while the lock is held cannot leave the
    /// list half-changed (a push or a pop), so a poisoned lock is used as is.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pinned>> {
        self.sleeps.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Timer for PooledTimer {
    /// A sleep of `duration` on tokio's clock, from the pool if it can.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(self.take(tokio::time::Instant::now() + duration))
    }

    /// A sleep until `deadline`, from the pool if it can (hyper's header
    /// read timer, once per request head).
    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(self.take(deadline.into()))
    }

    /// Tokio's clock, as `TokioTimer`'s (hyper adds the header read timeout
    /// to it), so that a paused test clock holds for both.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// Moves `sleep` to `new_deadline` (one of ours in place, as
    /// [`PooledSleep::set_deadline`] does).
    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<PooledSleep>() {
            Some(pooled) => Pin::into_inner(pooled).set_deadline(new_deadline.into()),
            // Not one of ours: replace it, as hyper's default does.
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

impl PooledSleep {
    /// Fires at `deadline` from now on. A later deadline than the tokio
    /// sleep's is only noted (`poll` resets the sleep if it fires first); an
    /// earlier one resets it now.
    fn set_deadline(&mut self, deadline: tokio::time::Instant) {
        self.deadline = deadline;
        if let Some(sleep) = &mut self.sleep
            && deadline < sleep.deadline()
        {
            sleep.as_mut().reset(deadline);
        }
    }
}

impl Future for PooledSleep {
    type Output = ();

    /// Ready once this sleep's deadline has passed (the tokio sleep fired at
    /// it), never at an older deadline the tokio sleep had.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // Only `drop` takes the sleep: `None` is never polled.
        let Some(sleep) = &mut this.sleep else {
            return Poll::Ready(());
        };
        loop {
            std::task::ready!(sleep.as_mut().poll(cx));
            if sleep.deadline() >= this.deadline {
                return Poll::Ready(());
            }
            // Fired at an older deadline: wait for ours (at most once more,
            // the sleep's deadline is ours from here on).
            sleep.as_mut().reset(this.deadline);
        }
    }
}

impl Sleep for PooledSleep {}

impl Drop for PooledSleep {
    /// The tokio sleep goes back to the pool, still in the wheel, unless the
    /// pool is full.
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            let mut sleeps = self.pool.lock();
            if sleeps.len() < self.pool.bound {
                sleeps.push(sleep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;
    use tokio::time::Instant as TokioInstant;

    /// Polls `sleep` once (registering it in the wheel, as hyper's first
    /// poll of a pending header read does); true if it has fired.
    fn poll_once(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        sleep.as_mut().poll(&mut cx).is_ready()
    }

    /// Waits for `sleep` (the paused clock jumps to the next timer) and
    /// returns how long after `start` it fired.
    async fn fired_after(sleep: Pin<Box<dyn Sleep>>, start: TokioInstant) -> Duration {
        sleep.await;
        TokioInstant::now() - start
    }

    fn at(start: TokioInstant, secs: u64) -> Instant {
        (start + Duration::from_secs(secs)).into_std()
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_sleep_fires_at_its_deadline_and_not_before() {
        let timer = PooledTimer::new();
        let start = TokioInstant::now();
        let mut sleep = timer.sleep_until(at(start, 10));
        assert!(!poll_once(&mut sleep));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!poll_once(&mut sleep), "fired before its deadline");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(poll_once(&mut sleep), "not fired at its deadline");
        assert_eq!(timer.pooled(), 0);
        drop(sleep);
        assert_eq!(timer.pooled(), 1);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_reused_sleep_fires_at_a_later_new_deadline() {
        let timer = PooledTimer::new();
        let start = TokioInstant::now();
        let mut old = timer.sleep_until(at(start, 5));
        assert!(!poll_once(&mut old));
        drop(old);
        assert_eq!(timer.pooled(), 1);
        let new = timer.sleep_until(at(start, 20));
        assert_eq!(timer.pooled(), 0, "not taken from the pool");
        assert_eq!(fired_after(new, start).await, Duration::from_secs(20));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_reused_sleep_is_not_ready_between_its_old_and_new_deadlines() {
        let timer = PooledTimer::new();
        let start = TokioInstant::now();
        let mut old = timer.sleep_until(at(start, 5));
        assert!(!poll_once(&mut old));
        drop(old);
        let mut new = timer.sleep_until(at(start, 20));
        assert!(!poll_once(&mut new));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!poll_once(&mut new), "fired at the old deadline");
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!poll_once(&mut new), "fired before its deadline");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(poll_once(&mut new), "not fired at its deadline");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_reused_sleep_fires_at_an_earlier_new_deadline() {
        let timer = PooledTimer::new();
        let start = TokioInstant::now();
        let mut old = timer.sleep_until(at(start, 20));
        assert!(!poll_once(&mut old));
        drop(old);
        let new = timer.sleep_until(at(start, 5));
        assert_eq!(timer.pooled(), 0, "not taken from the pool");
        assert_eq!(fired_after(new, start).await, Duration::from_secs(5));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_sleep_that_fired_in_the_pool_fires_again_at_its_new_deadline() {
        let timer = PooledTimer::new();
        let start = TokioInstant::now();
        let mut old = timer.sleep_until(at(start, 5));
        assert!(!poll_once(&mut old));
        drop(old);
        // The pooled sleep fires here (waking the no-op waker it last had).
        tokio::time::advance(Duration::from_secs(10)).await;
        let mut new = timer.sleep_until(at(start, 15));
        assert_eq!(timer.pooled(), 0, "not taken from the pool");
        assert!(!poll_once(&mut new), "still fired from its old deadline");
        assert_eq!(fired_after(new, start).await, Duration::from_secs(15));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn reset_moves_a_sleep_later_and_earlier() {
        let timer = PooledTimer::new();
        let start = TokioInstant::now();
        let mut sleep = timer.sleep_until(at(start, 5));
        assert!(!poll_once(&mut sleep));
        timer.reset(&mut sleep, at(start, 20));
        assert_eq!(fired_after(sleep, start).await, Duration::from_secs(20));

        let start = TokioInstant::now();
        let mut sleep = timer.sleep_until(at(start, 20));
        assert!(!poll_once(&mut sleep));
        timer.reset(&mut sleep, at(start, 5));
        assert_eq!(fired_after(sleep, start).await, Duration::from_secs(5));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn sleep_waits_its_duration_on_tokios_clock() {
        let timer = PooledTimer::new();
        let start = TokioInstant::now();
        assert_eq!(timer.now(), start.into_std());
        let sleep = timer.sleep(Duration::from_secs(3));
        assert_eq!(fired_after(sleep, start).await, Duration::from_secs(3));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_pool_does_not_grow_past_its_bound() {
        let timer = PooledTimer::with_bound(3);
        let start = TokioInstant::now();
        let sleeps: Vec<_> = (1..=5).map(|n| timer.sleep_until(at(start, n))).collect();
        assert_eq!(timer.pooled(), 0);
        drop(sleeps);
        assert_eq!(timer.pooled(), 3);
        // Taken again one by one, then new ones.
        let again: Vec<_> = (1..=4).map(|n| timer.sleep_until(at(start, n))).collect();
        assert_eq!(timer.pooled(), 0);
        drop(again);
        assert_eq!(timer.pooled(), 3);
    }
}
