//! Buffers kept between calls on the same thread, so that a decoded token's forward pass
//! allocates nothing once the first steps have sized them.
//!
//! Two kinds:
//! - [`Stash`]: one vector's allocation per call site, lent out empty for the call and put back
//!   at its end ([`Stash::take`], [`Stash::put`]). The vector may hold borrowed types (a task
//!   list that points into this call's outputs): the stash keeps it as a `'static` twin of the
//!   same layout, always empty between calls.
//! - [`floats`] / [`give`]: a per-thread free list of `f32` buffers for the activations the
//!   model's layers hand each other.
//!
//! A call nested in another that uses the same stash (or a vector never put back, on an early
//! error return) just allocates a new one: the stashes change when memory is allocated, never
//! what is computed.

use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

/// `v`'s allocation, emptied, as a vector of `U`, which must have `T`'s size and alignment
/// (in practice: the same type with other lifetimes).
pub fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    const {
        assert!(size_of::<T>() == size_of::<U>() && align_of::<T>() == align_of::<U>());
    }
    v.clear();
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: the vector is empty, so no value is reinterpreted; its allocation was made for
    // `capacity` values of `T`, which has `U`'s size and alignment, so it is the allocation
    // `Vec<U>` with that capacity would have made (and frees the same way).
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<U>(), 0, v.capacity()) }
}

/// One vector's allocation, kept empty between calls (see the module docs). `S` is the
/// element type with `'static` in place of its lifetimes.
pub struct Stash<S>(Cell<Vec<S>>);

impl<S> Stash<S> {
    pub const fn new() -> Stash<S> {
        Stash(Cell::new(Vec::new()))
    }

    /// The kept vector (empty; a new one if another call holds it, or the thread is
    /// exiting), as elements of type `T`.
    pub fn take<T>(key: &'static LocalKey<Stash<S>>) -> Vec<T> {
        recycle(key.try_with(|s| s.0.take()).unwrap_or_default())
    }

    /// Keep `v`'s allocation (emptied) for the next [`Stash::take`], unless it is larger than
    /// [`STASH_MAX_BYTES`] (a long prompt's task list is not kept for the decode after it).
    pub fn put<T>(key: &'static LocalKey<Stash<S>>, v: Vec<T>) {
        let v: Vec<S> = recycle(v);
        if v.capacity() * size_of::<S>() > STASH_MAX_BYTES {
            return;
        }
        let _ = key.try_with(|s| {
            // Keep the larger of two (a nested call's vector may come back first).
            let old = s.0.take();
            s.0.set(if old.capacity() > v.capacity() {
                old
            } else {
                v
            });
        });
    }
}

impl<S> Default for Stash<S> {
    fn default() -> Self {
        Stash::new()
    }
}

/// `f` with this thread's value of `key` (a kept scratch), or with a fresh default one when
/// a caller up the stack holds it (a nested call).
pub fn with_local<T: Default, R>(
    key: &'static LocalKey<RefCell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    key.with(|kept| match kept.try_borrow_mut() {
        Ok(mut held) => f(&mut held),
        Err(_) => f(&mut T::default()),
    })
}

/// Free `v`'s allocation if it holds more than `max_bytes` (a kept scratch buffer after a
/// call that needed an unusually large one).
pub fn trim<T>(v: &mut Vec<T>, max_bytes: usize) {
    if v.capacity() * size_of::<T>() > max_bytes {
        *v = Vec::new();
    }
}

/// A [`Stash`] keeps vectors up to this size (a decode step's lists are a few KiB).
pub const STASH_MAX_BYTES: usize = 1 << 20;

/// Floats kept per thread at most, all buffers together (64 MiB): enough for a decode step's
/// buffers many times over (its largest, the logits, is one vocabulary wide: 102400 floats
/// on DeepSeek-V2) and for most of a 512-token prompt's per-layer activations, which then
/// reuse each other's pages from layer to layer instead of faulting in fresh zeroed ones.
pub const KEEP_FLOATS: usize = 1 << 24;

/// Buffers kept per thread at most.
pub const KEEP_MAX: usize = 256;

/// A per-thread list of kept buffers ([`take_kept`], [`keep`]).
pub type Kept<T> = RefCell<Vec<Vec<T>>>;

/// The smallest buffer of `key`'s list with room for `len` values, taken off the list
/// (with the values it held), if any.
pub fn take_kept<T>(key: &'static LocalKey<Kept<T>>, len: usize) -> Option<Vec<T>> {
    key.try_with(|k| {
        let mut k = k.try_borrow_mut().ok()?;
        let i = k
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())?
            .0;
        Some(k.swap_remove(i))
    })
    .ok()
    .flatten()
}

/// Put `v` on `key`'s list, unless the list's buffers would then hold more than `max_values`
/// together; with `max_len` buffers kept already, `v` replaces the smallest if it is larger.
pub fn keep<T>(key: &'static LocalKey<Kept<T>>, v: Vec<T>, max_len: usize, max_values: usize) {
    if v.capacity() == 0 {
        return;
    }
    // A thread that is exiting (its thread-locals gone) just frees `v`.
    let _ = key.try_with(|k| {
        let Ok(mut k) = k.try_borrow_mut() else {
            return;
        };
        let held: usize = k.iter().map(|b| b.capacity()).sum();
        if held + v.capacity() > max_values {
            // Over the budget: freed.
        } else if k.len() < max_len {
            // The list's own allocation is made once (`max_len` entries).
            let n = k.len();
            k.reserve_exact(max_len - n);
            k.push(v);
        } else if let Some(small) = k.iter_mut().min_by_key(|b| b.capacity()) {
            if small.capacity() < v.capacity() {
                *small = v;
            }
        }
    });
}

thread_local! {
    static FLOATS: Kept<f32> = const { RefCell::new(Vec::new()) };
}

/// `len` zeros, in a kept buffer when one is large enough (the smallest such), else newly
/// allocated.
pub fn floats(len: usize) -> Vec<f32> {
    match take_kept(&FLOATS, len) {
        Some(mut v) => {
            v.clear();
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// `len` floats of unspecified value (a kept buffer's stale contents, zeros past them), for
/// a caller that overwrites every one: no zeroing pass over a buffer about to be written.
pub fn floats_for_overwrite(len: usize) -> Vec<f32> {
    match take_kept(&FLOATS, len) {
        Some(mut v) => {
            if v.len() >= len {
                v.truncate(len);
            } else {
                v.resize(len, 0.0);
            }
            v
        }
        None => vec![0.0; len],
    }
}

/// A copy of `x` in a buffer from the free list when one is large enough.
pub fn floats_from(x: &[f32]) -> Vec<f32> {
    let mut v = floats_for_overwrite(x.len());
    v.copy_from_slice(x);
    v
}

/// Keep `v` for a later [`floats`] on this thread (unless that would keep more than
/// [`KEEP_FLOATS`], or enough are kept: then the smallest goes if `v` is larger).
pub fn give(v: Vec<f32>) {
    keep(&FLOATS, v, KEEP_MAX, KEEP_FLOATS);
}

/// An `f32` buffer from [`floats`] that goes back to the thread's free list when dropped:
/// the activations the layers of a forward pass hand each other.
#[derive(Debug, Default)]
pub struct Buf(Vec<f32>);

impl Buf {
    /// `len` zeros.
    pub fn zeros(len: usize) -> Buf {
        Buf(floats(len))
    }

    /// `len` floats of unspecified value, for a caller that overwrites every one
    /// ([`floats_for_overwrite`]).
    pub fn for_overwrite(len: usize) -> Buf {
        Buf(floats_for_overwrite(len))
    }

    /// A copy of `x`.
    pub fn copy_of(x: &[f32]) -> Buf {
        Buf(floats_from(x))
    }

    /// The vector itself, no longer returned to the free list when dropped (hand it to
    /// [`give`] when done).
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl std::ops::Deref for Buf {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static NAMES: Stash<&'static str> = const { Stash::new() };
    }

    #[test]
    fn a_stash_lends_its_allocation_again() {
        let owned = String::from("borrowed");
        let mut v: Vec<&str> = Stash::take(&NAMES);
        v.extend([owned.as_str(); 10]);
        let cap = v.capacity();
        let ptr = v.as_ptr() as usize;
        Stash::put(&NAMES, v);
        let w: Vec<&str> = Stash::take(&NAMES);
        assert!(w.is_empty());
        assert_eq!((w.capacity(), w.as_ptr() as usize), (cap, ptr));
        // Taken again while lent: a fresh, empty vector.
        let x: Vec<&str> = Stash::take(&NAMES);
        assert_eq!(x.capacity(), 0);
        Stash::put(&NAMES, w);
    }

    #[test]
    fn floats_come_back_zeroed_and_reused() {
        let mut a = floats(1000);
        a.iter_mut().for_each(|v| *v = 1.5);
        let ptr = a.as_ptr() as usize;
        give(a);
        let b = floats(900);
        assert_eq!(b.as_ptr() as usize, ptr);
        assert!(b.len() == 900 && b.iter().all(|&v| v == 0.0));
        // Too large to keep: the list does not grow.
        let kept = || FLOATS.with(|f| f.borrow().len());
        let before = kept();
        give(floats(KEEP_FLOATS + 1));
        assert_eq!(kept(), before);
        give(b);
        assert_eq!(kept(), before + 1);
        // Taken for overwriting: the stale values stay (no zeroing pass).
        let mut c = floats_for_overwrite(10);
        c.iter_mut().for_each(|v| *v = 2.5);
        give(c);
        let d = floats_for_overwrite(8);
        assert!(d.len() == 8 && d.iter().all(|&v| v == 2.5));
    }
}
