//! The forward pass's thread pool: a fixed set of workers that *spin* between parallel
//! regions instead of sleeping, so that the dozens of regions of one decoded token (a few
//! hundred microseconds each) start without a wake-up.
//!
//! rayon, which the rest of the workspace uses for one-off work (loading, the bandwidth
//! probe), parks an idle worker after a few dozen yields; a decode step's serial gaps between
//! regions (norms, rope, routing) are longer than that, so every region paid a futex wake of
//! its helper (on a VM, an inter-processor interrupt), ~250 context switches per V2-Lite token
//! and 1.73 of 2 CPUs used. Here a worker that has finished a region spins on one shared word
//! for [`SPIN`] before it parks, and the thread that opens a region works on it too.
//!
//! A region is `n` tasks, run by [`run`]'s helpers ([`for_each_mut`], [`try_for_each_mut`],
//! [`map`]). Each participant (the caller is slot 0, worker `w` slot `w`) first takes the tasks
//! of its own contiguous share of `0..n`, in order, then helps the others with theirs, so each
//! thread streams a contiguous stretch of weights as under rayon's splitting. Which thread runs
//! a task never changes what it computes.
//!
//! One region at a time: a region opened while another is running (a second thread using
//! the kernels, or a task that itself calls a parallel helper) runs on its caller's thread
//! alone. A panic in a task reaches the caller once every participant has left the region.

use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long an idle worker spins for the next region before it parks.
pub const SPIN: Duration = Duration::from_millis(2);

/// Most threads a pool holds (the claim cursors are a fixed array).
pub const MAX_THREADS: usize = 256;

/// `state`: bit 63 the region is open, bits 32..63 its number, bits 0..32 the workers in it.
const OPEN: u64 = 1 << 63;
const EPOCH_ONE: u64 = 1 << 32;
const ACTIVE: u64 = EPOCH_ONE - 1;

fn epoch(s: u64) -> u64 {
    (s & !OPEN) >> 32
}

/// A cache line of its own per cursor, so participants do not share one.
#[repr(align(128))]
struct Cursor {
    next: AtomicUsize,
    end: AtomicUsize,
}

/// The region being run: written by the opener while the region is closed (no worker in
/// it), read by workers only after joining.
struct Region {
    task: Option<*const (dyn Fn(usize, usize) + Sync)>,
}

struct Shared {
    threads: usize,
    state: AtomicU64,
    region: UnsafeCell<Region>,
    cursors: Box<[Cursor]>,
    /// Set when a task panicked: the remaining tasks are skipped.
    stop: AtomicBool,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Held by the thread that has a region open.
    opener: Mutex<()>,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `region` is written only by the holder of `opener` while no worker is in a region,
// and read by workers only between joining (an acquire on `state`) and leaving; the task it
// points to is `Sync`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

static POOL: OnceLock<&'static Shared> = OnceLock::new();

/// Start the pool with `threads` participants (`threads - 1` workers besides the caller of
/// each region). A second call keeps the first size. Returns the size in effect.
pub fn init(threads: usize) -> usize {
    pool_or_init(threads).threads
}

/// Participants of a region: the pool's size.
pub fn threads() -> usize {
    pool().threads
}

fn pool() -> &'static Shared {
    match POOL.get() {
        Some(p) => p,
        None => pool_or_init(crate::threads::physical_cores()),
    }
}

fn pool_or_init(threads: usize) -> &'static Shared {
    POOL.get_or_init(|| {
        let threads = threads.clamp(1, MAX_THREADS);
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            threads,
            state: AtomicU64::new(0),
            region: UnsafeCell::new(Region { task: None }),
            cursors: (0..threads)
                .map(|_| Cursor {
                    next: AtomicUsize::new(0),
                    end: AtomicUsize::new(0),
                })
                .collect(),
            stop: AtomicBool::new(false),
            panic: Mutex::new(None),
            opener: Mutex::new(()),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        }));
        for slot in 1..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("mixture-pool-{slot}"))
                .spawn(move || worker(shared, slot));
            if spawned.is_err() {
                // Without this worker its share is taken by the others; nothing is lost.
                break;
            }
        }
        shared
    })
}

fn worker(p: &'static Shared, slot: usize) {
    let mut seen = 0u64; // regions are numbered from 1
    loop {
        let s = wait_for_region(p, seen);
        // Join, unless the region closed or changed meanwhile (the exchange fails then).
        if s & OPEN == 0
            || epoch(s) == seen
            || p.state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        seen = epoch(s);
        // SAFETY: joined, so the region stays open and its task alive until we leave.
        let task = unsafe { (*p.region.get()).task.map(|t| &*t) };
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(task) = task {
                work(p, slot, task)
            }
        }));
        if let Err(e) = ran {
            p.stop.store(true, Ordering::Relaxed);
            if let Ok(mut g) = p.panic.lock() {
                g.get_or_insert(e);
            }
        }
        p.state.fetch_sub(1, Ordering::Release);
    }
}

/// Spin (then park) until a region other than number `seen` is open; returns the state word.
fn wait_for_region(p: &Shared, seen: u64) -> u64 {
    let fresh = |s: u64| s & OPEN != 0 && epoch(s) != seen;
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let s = p.state.load(Ordering::Acquire);
        if fresh(s) {
            return s;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && start.elapsed() > SPIN {
            break;
        }
    }
    // Park. The opener stores the state then reads `sleepers`; we count ourselves in, then
    // read the state: one of us sees the other (both sequentially consistent).
    let Ok(mut g) = p.sleep.lock() else {
        return p.state.load(Ordering::Acquire);
    };
    p.sleepers.fetch_add(1, Ordering::SeqCst);
    let s = loop {
        let s = p.state.load(Ordering::SeqCst);
        if fresh(s) {
            break s;
        }
        g = match p.wake.wait(g) {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
    };
    p.sleepers.fetch_sub(1, Ordering::SeqCst);
    s
}

/// Run tasks: this slot's own share first, then the others'.
fn work(p: &Shared, slot: usize, task: &(dyn Fn(usize, usize) + Sync)) {
    let n = p.threads;
    for k in 0..n {
        let c = &p.cursors[(slot + k) % n];
        let end = c.end.load(Ordering::Relaxed);
        loop {
            if p.stop.load(Ordering::Relaxed) {
                return;
            }
            let i = c.next.fetch_add(1, Ordering::Relaxed);
            if i >= end {
                break;
            }
            task(slot, i);
        }
    }
}

/// Run `task(slot, i)` for every `i` in `0..n`, spread over the pool; `slot` is below
/// [`threads`] and names the participant (no two run at once with the same slot).
pub fn run(n: usize, task: &(dyn Fn(usize, usize) + Sync)) {
    let p = pool();
    if n == 0 {
        return;
    }
    let guard = if n > 1 && p.threads > 1 {
        match p.opener.try_lock() {
            Ok(g) => Some(g),
            // A region that panicked left the lock poisoned; it guards no data.
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    } else {
        None
    };
    let Some(_guard) = guard else {
        // Busy (another region, possibly our own caller's) or nothing to share.
        for i in 0..n {
            task(0, i);
        }
        return;
    };
    let threads = p.threads;
    for (w, c) in p.cursors.iter().enumerate() {
        c.next.store(w * n / threads, Ordering::Relaxed);
        c.end.store((w + 1) * n / threads, Ordering::Relaxed);
    }
    p.stop.store(false, Ordering::Relaxed);
    // SAFETY: we hold `opener` and the region is closed, so no worker reads `region`. The
    // task's lifetime is erased; it outlives the region, which we close below before
    // returning (or unwinding), after every worker has left it.
    unsafe {
        let task: *const (dyn Fn(usize, usize) + Sync + '_) = task;
        (*p.region.get()).task = Some(std::mem::transmute::<
            *const (dyn Fn(usize, usize) + Sync + '_),
            *const (dyn Fn(usize, usize) + Sync + 'static),
        >(task));
    }
    let s = p.state.load(Ordering::Relaxed);
    let opened = (((epoch(s) + 1) << 32) & !OPEN) | OPEN; // the number wraps within its bits
    p.state.store(opened, Ordering::SeqCst);
    if p.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = p.sleep.lock();
        p.wake.notify_all();
    }
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(p, 0, task)));
    if mine.is_err() {
        p.stop.store(true, Ordering::Relaxed);
    }
    // Close: once no worker is in the region, and so that none joins after.
    loop {
        let s = p.state.load(Ordering::Acquire);
        if s & ACTIVE == 0
            && p.state
                .compare_exchange_weak(s, s & !OPEN, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            break;
        }
        std::hint::spin_loop();
    }
    // Taken either way, so that a worker's panic never surfaces in a later region.
    let theirs = p.panic.lock().ok().and_then(|mut g| g.take());
    if let Some(e) = mine.err().or(theirs) {
        std::panic::resume_unwind(e);
    }
}

/// A pointer that may cross threads: the helpers below hand each index to one task only.
struct Items<T>(*mut T);
// SAFETY: each element is reached by one task at a time (distinct indices).
unsafe impl<T: Send> Sync for Items<T> {}

impl<T> Items<T> {
    /// # Safety
    /// `i` in bounds, and no other reference to element `i` alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get(&self, i: usize) -> &mut T {
        &mut *self.0.add(i)
    }
}

/// `f(i, &mut items[i])` for every item, in parallel.
pub fn for_each_mut<T: Send>(items: &mut [T], f: impl Fn(usize, &mut T) + Sync) {
    let n = items.len();
    let ptr = Items(items.as_mut_ptr());
    run(n, &|_, i| {
        // SAFETY: `i < n` and each index is run once.
        f(i, unsafe { ptr.get(i) })
    });
}

/// [`for_each_mut`] with the participant's slot (below [`threads`]): `f(slot, i, &mut
/// items[i])`. No two tasks of this region run at once with the same slot (a region nested in
/// one of them numbers its own slots from 0 again).
pub fn for_each_mut_slot<T: Send>(items: &mut [T], f: impl Fn(usize, usize, &mut T) + Sync) {
    let n = items.len();
    let ptr = Items(items.as_mut_ptr());
    run(n, &|slot, i| {
        // SAFETY: `i < n` and each index is run once.
        f(slot, i, unsafe { ptr.get(i) })
    });
}

/// A scratch slice for each participant of a region, cut from one buffer that the caller
/// owns and sizes: whichever threads join a region, only the caller's thread allocates it (a
/// worker's own thread-local scratch would allocate whenever it first joins such a region,
/// which depends on timing).
pub struct PerSlot<'a, T> {
    ptr: *mut T,
    per: usize,
    slots: usize,
    _buf: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: each slot's slice is used by the participant running as that slot only (see `get`).
unsafe impl<T: Send> Sync for PerSlot<'_, T> {}

impl<'a, T: Default> PerSlot<'a, T> {
    /// [`threads`] slices of `per` values from `buf` (grown with defaults if shorter; what is
    /// there stays).
    pub fn new(buf: &'a mut Vec<T>, per: usize) -> PerSlot<'a, T> {
        let slots = threads();
        if buf.len() < per * slots {
            buf.resize_with(per * slots, T::default);
        }
        PerSlot {
            ptr: buf.as_mut_ptr(),
            per,
            slots,
            _buf: std::marker::PhantomData,
        }
    }
}

impl<T> PerSlot<'_, T> {
    /// Slot `slot`'s slice.
    ///
    /// # Safety
    /// Only from the tasks of the one region this `PerSlot` was made for, with the `slot`
    /// that region gave the task ([`for_each_mut_slot`], [`run`]), one borrow at a time. Slot
    /// numbers are unique within a region only: a region nested in a task runs on that task's
    /// thread with slot 0, which the outer region's caller holds too.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self, slot: usize) -> &mut [T] {
        assert!(slot < self.slots, "slot {slot} of {}", self.slots);
        // SAFETY: the slices of distinct slots are disjoint parts of the borrowed buffer;
        // the caller guarantees one user per slot.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(slot * self.per), self.per) }
    }
}

/// [`for_each_mut`] that stops early at the first error, which it returns (which tasks ran is
/// then open). Allocates nothing.
pub fn try_for_each_mut<T: Send, E: Send>(
    items: &mut [T],
    f: impl Fn(usize, &mut T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    try_for_each_mut_slot(items, |_, i, t| f(i, t))
}

/// [`try_for_each_mut`] with the participant's slot, as in [`for_each_mut_slot`].
pub fn try_for_each_mut_slot<T: Send, E: Send>(
    items: &mut [T],
    f: impl Fn(usize, usize, &mut T) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let n = items.len();
    let ptr = Items(items.as_mut_ptr());
    let failed = AtomicBool::new(false);
    let error: Mutex<Option<E>> = Mutex::new(None);
    run(n, &|slot, i| {
        if failed.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: `i < n` and each index is run once.
        if let Err(e) = f(slot, i, unsafe { ptr.get(i) }) {
            failed.store(true, Ordering::Relaxed);
            if let Ok(mut g) = error.lock() {
                g.get_or_insert(e);
            }
        }
    });
    match error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `f(i)` for every `i` in `0..n`, in parallel, collected in order.
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for_each_mut(&mut out, |i, o| *o = Some(f(i)));
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once() {
        for n in [0usize, 1, 2, 3, 7, 64, 1000] {
            let mut hits = vec![0u32; n];
            for_each_mut(&mut hits, |i, h| *h += 1 + i as u32);
            assert!(
                hits.iter().enumerate().all(|(i, &h)| h == 1 + i as u32),
                "n = {n}"
            );
        }
    }

    #[test]
    fn map_keeps_order_and_nested_regions_run() {
        let v = map(100, |i| map(5, |j| i * 10 + j).iter().sum::<usize>());
        let want: Vec<usize> = (0..100).map(|i| 50 * i + 10).collect();
        assert_eq!(v, want);
    }

    #[test]
    fn first_error_is_returned() {
        let mut items = vec![0u8; 500];
        let r = try_for_each_mut(&mut items, |i, _| if i == 321 { Err(i) } else { Ok(()) });
        assert_eq!(r, Err(321));
    }

    #[test]
    fn each_slot_scratch_has_one_user_at_a_time() {
        // Every task bumps its slot's counter without atomics; the total shows no update was
        // lost to two participants sharing a slot.
        let mut buf = Vec::new();
        let slots = PerSlot::new(&mut buf, 1);
        let mut items = vec![0u8; 4000];
        for_each_mut_slot(&mut items, |slot, _, _| {
            // SAFETY: `slot` is this task's participant slot.
            let c: &mut [u64] = unsafe { slots.get(slot) };
            c[0] = std::hint::black_box(c[0]) + 1;
        });
        assert_eq!(buf.iter().sum::<u64>(), 4000);
    }

    #[test]
    fn a_panic_reaches_the_caller_and_the_pool_still_works() {
        let r = std::panic::catch_unwind(|| {
            let mut items = vec![0u8; 64];
            for_each_mut(&mut items, |i, _| {
                if i == 40 {
                    panic!("task 40");
                }
            })
        });
        assert!(r.is_err());
        // The caller and a worker both panic (each task waits, briefly, until two
        // participants are in); neither panic may surface in the next region, and the
        // regions after a panic still reach the workers.
        for _ in 0..5 {
            let seen = AtomicUsize::new(0);
            let r = std::panic::catch_unwind(|| {
                run(64, &|slot, i| {
                    seen.fetch_or(1 << slot.min(63), Ordering::SeqCst);
                    let t0 = Instant::now();
                    while seen.load(Ordering::SeqCst).count_ones() < 2
                        && t0.elapsed() < Duration::from_millis(200)
                    {
                        std::hint::spin_loop();
                    }
                    panic!("task {i}");
                })
            });
            assert!(r.is_err());
        }
        let v = map(64, |i| i + 1);
        assert_eq!(v.iter().sum::<usize>(), 64 * 65 / 2);
        if threads() > 1 {
            // A worker joins again (tries, as other tests may hold the pool for a moment).
            let joined = (0..200).any(|_| {
                let seen = AtomicUsize::new(0);
                run(64, &|slot, _| {
                    seen.fetch_or(1 << slot.min(63), Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(200));
                });
                seen.load(Ordering::SeqCst) > 1
            });
            assert!(joined, "no worker took part after a panicking region");
        }
    }

    #[test]
    fn regions_from_several_threads_at_once() {
        std::thread::scope(|s| {
            for t in 0..4usize {
                s.spawn(move || {
                    for round in 0..50usize {
                        let v = map(33, |i| i * t + round);
                        assert_eq!(v.len(), 33);
                        assert!(v.iter().enumerate().all(|(i, &x)| x == i * t + round));
                    }
                });
            }
        });
    }
}
