//! The prefix cache: KV caches of recently finished sequences, keyed by their token ids, so a
//! new request that starts the same way (a shared system prompt, a growing conversation)
//! skips recomputing the common part. Bounded by the total tokens held; least recently used
//! entries go first.

use mixture_model::kv::LayerKv;
use mixture_model::KvCache;

struct Entry {
    tokens: Vec<u32>,
    cache: KvCache,
    used: u64,
}

pub(crate) struct PrefixCache {
    entries: Vec<Entry>,
    limit: usize,
    total: usize,
    clock: u64,
}

impl PrefixCache {
    /// A cache holding at most `limit` tokens in all (0 = off).
    pub(crate) fn new(limit: usize) -> PrefixCache {
        PrefixCache {
            entries: Vec::new(),
            limit,
            total: 0,
            clock: 0,
        }
    }

    /// Tokens held in all.
    #[cfg(test)]
    pub(crate) fn tokens(&self) -> usize {
        self.total
    }

    /// Keep `cache`, whose positions hold `tokens` (`tokens.len() >= cache.len`; the rest is
    /// ignored). Entries it extends are dropped; then the least recently used go until the
    /// total fits.
    pub(crate) fn insert(&mut self, mut tokens: Vec<u32>, mut cache: KvCache) {
        let n = cache.len.min(tokens.len()).min(self.limit);
        if n == 0 {
            return;
        }
        tokens.truncate(n);
        cache.truncate(n);
        // Held for a while: no slack beyond what the limit counts.
        tokens.shrink_to_fit();
        for l in &mut cache.layers {
            l.k.shrink_to_fit();
            l.v.shrink_to_fit();
        }
        // An entry this one starts with says nothing this one does not.
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            if e.tokens.len() <= n && tokens.starts_with(&e.tokens) {
                self.total -= e.tokens.len();
                self.entries.swap_remove(i);
            } else {
                i += 1;
            }
        }
        while self.total + n > self.limit {
            let Some(lru) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].used) else {
                break;
            };
            self.total -= self.entries[lru].tokens.len();
            self.entries.swap_remove(lru);
        }
        self.clock += 1;
        self.total += n;
        self.entries.push(Entry {
            tokens,
            cache,
            used: self.clock,
        });
    }

    /// A cache holding the longest prefix of `prompt` any entry has, at most
    /// `prompt.len() - 1` tokens (the last one must run to give logits), and its length.
    /// An entry used whole is taken over; otherwise its prefix is copied.
    pub(crate) fn take(&mut self, prompt: &[u32]) -> Option<(KvCache, usize)> {
        let cap = prompt.len().saturating_sub(1);
        let (best, n) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let common = e.tokens.iter().zip(prompt).take_while(|(a, b)| a == b);
                (i, common.count().min(cap))
            })
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
        if n == 0 {
            return None;
        }
        self.clock += 1;
        if n == self.entries[best].tokens.len() {
            let e = self.entries.swap_remove(best);
            self.total -= e.tokens.len();
            return Some((e.cache, n));
        }
        let e = &mut self.entries[best];
        e.used = self.clock;
        Some((copy_prefix(&e.cache, n)?, n))
    }
}

/// The first `n` positions of `cache`, copied.
fn copy_prefix(cache: &KvCache, n: usize) -> Option<KvCache> {
    let layers = cache
        .layers
        .iter()
        .map(|l| {
            Some(LayerKv {
                k: l.k.get(..n * l.k_width)?.to_vec(),
                v: l.v.get(..n * l.v_width)?.to_vec(),
                k_width: l.k_width,
                v_width: l.v_width,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(KvCache { layers, len: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cache whose k values are the token ids (width 1, one layer).
    fn cache_of(tokens: &[u32]) -> KvCache {
        let mut c = KvCache::new(&[(1, 0)]);
        c.layers[0].k = tokens.iter().map(|&t| t as f32).collect();
        c.len = tokens.len();
        c
    }

    #[test]
    fn longest_prefix_copied_or_taken_over() {
        let mut p = PrefixCache::new(100);
        p.insert(vec![1, 2, 3, 4], cache_of(&[1, 2, 3, 4]));
        p.insert(vec![1, 2, 9], cache_of(&[1, 2, 9]));
        // Shares 3 with the first: a copy of 3 positions; the entry stays.
        let (c, n) = p.take(&[1, 2, 3, 7, 7]).expect("hit");
        assert_eq!(
            (n, c.len, c.layers[0].k.clone()),
            (3, 3, vec![1.0, 2.0, 3.0])
        );
        assert_eq!(p.tokens(), 7);
        // The whole first entry and more: taken over.
        let (c, n) = p.take(&[1, 2, 3, 4, 5]).expect("hit");
        assert_eq!((n, c.len), (4, 4));
        assert_eq!(p.tokens(), 3);
        // Never the whole prompt: one token must run.
        let (_, n) = p.take(&[1, 2, 9]).expect("hit");
        assert_eq!(n, 2);
        assert!(p.take(&[5, 6]).is_none());
    }

    #[test]
    fn bounded_lru() {
        let mut p = PrefixCache::new(10);
        p.insert(vec![1; 4], cache_of(&[1; 4]));
        p.insert(vec![2; 4], cache_of(&[2; 4]));
        assert!(p.take(&[1, 1, 1, 5]).is_some()); // 1s used more recently than 2s
        p.insert(vec![3; 4], cache_of(&[3; 4]));
        assert!(p.tokens() <= 10);
        assert!(p.take(&[2, 2, 5]).is_none(), "the least recently used went");
        assert!(p.take(&[1, 1, 5]).is_some());
        // Longer than the limit: its first 10 tokens kept.
        p.insert(vec![4; 20], cache_of(&[4; 20]));
        assert_eq!(p.tokens(), 10);
        let mut off = PrefixCache::new(0);
        off.insert(vec![1; 4], cache_of(&[1; 4]));
        assert!(off.take(&[1, 1, 1, 1, 1]).is_none());
    }
}
