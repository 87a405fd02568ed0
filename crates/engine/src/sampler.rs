//! Token sampling: greedy at temperature 0, otherwise temperature, top-k, top-p (nucleus)
//! and min-p filtering with a seeded generator so runs are reproducible. Presence and
//! frequency penalties (OpenAI semantics) apply to the logits first, at any temperature.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the most likely one's (0 = off),
    /// after top-k and top-p.
    pub min_p: f32,
    /// Subtracted once from the logit of every token generated so far.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per time it was generated so far.
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: StdRng,
    /// How often each token was generated (kept only when a penalty is set).
    counts: HashMap<u32, u32>,
    /// Working vectors kept between tokens (a decode step allocates nothing once they are
    /// sized): the penalised logits, the candidates, their probabilities.
    penalised_logits: Vec<f32>,
    cand: Vec<(u32, f32)>,
    probs: Vec<f32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = StdRng::seed_from_u64(params.seed);
        Sampler {
            params,
            rng,
            counts: HashMap::new(),
            penalised_logits: Vec::new(),
            cand: Vec::new(),
            probs: Vec::new(),
        }
    }

    fn penalised(&self) -> bool {
        self.params.presence_penalty != 0.0 || self.params.frequency_penalty != 0.0
    }

    /// Record a token generated without [`Sampler::sample`] (e.g. forced), for the penalties.
    pub fn accept(&mut self, token: u32) {
        if self.penalised() {
            *self.counts.entry(token).or_insert(0) += 1;
        }
    }

    /// Pick the next token from one row of logits, and record it for the penalties.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let tok = if self.penalised() && !self.counts.is_empty() {
            let mut l = std::mem::take(&mut self.penalised_logits);
            l.clear();
            l.extend_from_slice(logits);
            let (pp, fp) = (self.params.presence_penalty, self.params.frequency_penalty);
            for (&t, &n) in &self.counts {
                if let Some(v) = l.get_mut(t as usize) {
                    *v -= pp + fp * n as f32;
                }
            }
            let tok = self.pick(&l);
            self.penalised_logits = l;
            tok
        } else {
            self.pick(logits)
        };
        self.accept(tok);
        tok
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature <= 0.0 {
            return argmax(logits);
        }
        let Sampler {
            params,
            rng,
            cand,
            probs,
            ..
        } = self;
        let inv_t = 1.0 / params.temperature;
        cand.clear();
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| l.is_finite())
                .map(|(i, &l)| (i as u32, l * inv_t)),
        );
        if cand.is_empty() {
            return argmax(logits);
        }
        // Most likely first, ties by id: a strict total order, so partial selection keeps
        // exactly the tokens a full sort would.
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = params.top_k;
        if k > 0 && k < cand.len() {
            cand.select_nth_unstable_by(k - 1, order);
            cand.truncate(k);
        }
        // A strict total order: the unstable sort (no allocation) gives the stable one's.
        cand.sort_unstable_by(order);
        let max = cand[0].1;
        probs.clear();
        probs.extend(cand.iter().map(|c| (c.1 - max).exp()));
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if params.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= params.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= s);
        }
        if params.min_p > 0.0 {
            // probs[0] is the largest; the kept ones stay sorted.
            let floor = probs[0] * params.min_p;
            let keep = probs.iter().take_while(|&&p| p >= floor).count().max(1);
            probs.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= s);
        }
        let r: f32 = rng.random();
        let mut acc = 0.0;
        for (i, p) in probs.iter().enumerate() {
            acc += p;
            if r < acc {
                return cand[i].0;
            }
        }
        cand[probs.len() - 1].0
    }
}

/// Index of the largest logit (the first on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Log-probabilities under `logits` (log-softmax of the raw row): of `token`, and of the `n`
/// most likely tokens, most likely first (ties by id). Non-finite logits count as impossible.
pub fn logprobs(logits: &[f32], token: u32, n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits
        .iter()
        .copied()
        .filter(|l| l.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return (f32::NEG_INFINITY, Vec::new());
    }
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| ((l - max) as f64).exp())
        .sum();
    let log_z = max + sum.ln() as f32;
    let lp = |l: f32| {
        if l.is_finite() {
            l - log_z
        } else {
            f32::NEG_INFINITY
        }
    };
    let chosen = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    let mut top: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, &l)| (i as u32, l))
        .collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let n = n.min(top.len());
    if n == 0 {
        return (chosen, Vec::new());
    }
    if n < top.len() {
        top.select_nth_unstable_by(n - 1, order);
        top.truncate(n);
    }
    top.sort_by(order);
    (chosen, top.into_iter().map(|(i, l)| (i, lp(l))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 2.9]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproducible() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37 % 11) as f32) / 3.0).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            seed: 7,
            ..Default::default()
        };
        assert_eq!(Sampler::new(p).sample(&logits), argmax(&logits));
        let p = SamplingParams {
            temperature: 0.8,
            top_k: 0,
            top_p: 0.9,
            seed: 42,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(p.clone());
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(p);
            (0..20).map(|_| s.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        // top_p this small keeps only tokens tied at the maximum (value 10/3: i*37%11 == 10)
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.01,
            seed: 3,
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        for _ in 0..10 {
            let tok = s.sample(&logits) as usize;
            assert_eq!(tok * 37 % 11, 10);
        }
    }

    /// The sampler as it was before partial selection: a full sort of every candidate.
    fn full_sort_reference(p: &SamplingParams, logits: &[f32], draws: usize) -> Vec<u32> {
        let mut rng = StdRng::seed_from_u64(p.seed);
        (0..draws)
            .map(|_| {
                let mut cand: Vec<(u32, f32)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, l / p.temperature))
                    .collect();
                cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                if p.top_k > 0 {
                    cand.truncate(p.top_k);
                }
                let max = cand[0].1;
                let mut probs: Vec<f32> = cand.iter().map(|c| (c.1 - max).exp()).collect();
                let sum: f32 = probs.iter().sum();
                probs.iter_mut().for_each(|x| *x /= sum);
                let r: f32 = rng.random();
                let mut acc = 0.0;
                for (i, x) in probs.iter().enumerate() {
                    acc += x;
                    if r < acc {
                        return cand[i].0;
                    }
                }
                cand[probs.len() - 1].0
            })
            .collect()
    }

    #[test]
    fn top_k_partial_selection_matches_full_sort() {
        // Many ties (values repeat), so the id tie-break matters.
        let logits: Vec<f32> = (0..5000).map(|i| ((i * 7919 % 97) as f32) / 9.0).collect();
        for k in [1, 2, 5, 40, 4999, 5000, 6000] {
            let p = SamplingParams {
                temperature: 0.7,
                top_k: k,
                seed: k as u64,
                ..Default::default()
            };
            let mut s = Sampler::new(p.clone());
            let got: Vec<u32> = (0..50).map(|_| s.sample(&logits)).collect();
            assert_eq!(got, full_sort_reference(&p, &logits, 50), "top_k {k}");
        }
    }

    #[test]
    fn min_p_keeps_tokens_near_the_best() {
        // Probabilities at temperature 1: token 0 has e^0, token i has e^-i.
        let logits: Vec<f32> = (0..10).map(|i| -(i as f32)).collect();
        let p = SamplingParams {
            temperature: 1.0,
            min_p: (-2.5f32).exp(), // keeps tokens 0, 1, 2
            seed: 11,
            ..Default::default()
        };
        let mut s = Sampler::new(p);
        let mut seen = [0usize; 10];
        for _ in 0..2000 {
            seen[s.sample(&logits) as usize] += 1;
        }
        assert!(seen[..3].iter().all(|&n| n > 0), "{seen:?}");
        assert!(seen[3..].iter().all(|&n| n == 0), "{seen:?}");
    }

    #[test]
    fn presence_and_frequency_penalties() {
        let logits = [2.0, 1.9, 0.0];
        let run = |presence: f32, frequency: f32| -> Vec<u32> {
            let mut s = Sampler::new(SamplingParams {
                presence_penalty: presence,
                frequency_penalty: frequency,
                ..Default::default()
            });
            (0..4).map(|_| s.sample(&logits)).collect()
        };
        // Presence: token 0 falls to 1.85 < 1.9 once, then both are penalised once (1.85 vs
        // 1.75) and token 0 wins for good.
        assert_eq!(run(0.15, 0.0), [0, 1, 0, 0]);
        // Frequency: each use costs 0.15 more, so the two alternate.
        assert_eq!(run(0.0, 0.15), [0, 1, 0, 1]);
        assert_eq!(run(0.0, 0.0), [0, 0, 0, 0]);
        // Tokens chosen elsewhere count too.
        let mut s = Sampler::new(SamplingParams {
            frequency_penalty: 1.0,
            ..Default::default()
        });
        s.accept(0);
        assert_eq!(s.sample(&logits), 1);
    }

    #[test]
    fn logprobs_are_a_log_softmax() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, f32::NEG_INFINITY];
        let z: f64 = logits
            .iter()
            .filter(|l| l.is_finite())
            .map(|&l| (l as f64).exp())
            .sum();
        let want = |i: usize| ((logits[i] as f64).exp() / z).ln() as f32;
        let (lp, top) = logprobs(&logits, 2, 3);
        assert!((lp - want(2)).abs() < 1e-6);
        let ids: Vec<u32> = top.iter().map(|t| t.0).collect();
        assert_eq!(ids, [1, 3, 0]);
        for (i, l) in top {
            assert!((l - want(i as usize)).abs() < 1e-6);
        }
        assert_eq!(logprobs(&logits, 4, 0).0, f32::NEG_INFINITY);
        assert_eq!(logprobs(&logits, 0, 10).1.len(), 4);
    }
}
