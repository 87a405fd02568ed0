//! The bytes of every token, and a byte trie over them for the mask walk.

use super::ConstrainError;
use mixture_model::tokenizer::Tokenizer;

/// Every token's bytes (`None`: the token never appears inside constrained text, e.g.
/// special tokens), with a trie over them.
#[derive(Debug, Clone)]
pub struct TokenBytes {
    tokens: Vec<Option<Box<[u8]>>>,
    pub(crate) trie: Trie,
}

/// A byte trie stored in preorder: node `i` has `byte[i]` at `depth[i]` (1 for children of
/// the root); its subtree is `i..end[i]`; tokens whose bytes end at `i` are
/// `ids[tok_lo[i]..tok_hi[i]]`, and every token in its subtree is in `ids[sub_lo[i]..sub_hi[i]]`.
/// `plain[i]`: every byte in the subtree is a printable ASCII character other than `"` and
/// `\` (inside an unbounded string, all those tokens are allowed at once).
#[derive(Debug, Clone, Default)]
pub(crate) struct Trie {
    pub byte: Vec<u8>,
    pub depth: Vec<u32>,
    pub end: Vec<u32>,
    pub tok_lo: Vec<u32>,
    pub tok_hi: Vec<u32>,
    pub ids: Vec<u32>,
    pub sub_lo: Vec<u32>,
    pub sub_hi: Vec<u32>,
    pub plain: Vec<bool>,
    pub max_depth: usize,
}

/// A byte that leaves a plain string's state unchanged.
pub(crate) fn is_plain(b: u8) -> bool {
    (0x20..0x80).contains(&b) && b != b'"' && b != b'\\'
}

impl TokenBytes {
    /// The bytes of every token of `tokenizer`; special (control) tokens get none.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Result<TokenBytes, ConstrainError> {
        let n = tokenizer.vocab_size();
        let mut tokens = Vec::with_capacity(n);
        for id in 0..n {
            let id = u32::try_from(id)
                .map_err(|_| ConstrainError::Tokenizer("vocabulary too large".into()))?;
            if tokenizer.is_special(id) {
                tokens.push(None);
                continue;
            }
            let bytes = tokenizer
                .token_bytes(id, false)
                .map_err(|e| ConstrainError::Tokenizer(e.to_string()))?;
            tokens.push(Some(bytes.to_vec()));
        }
        Ok(TokenBytes::from_tokens(tokens))
    }

    /// From raw token bytes by id (`None` or empty: never allowed inside the value).
    pub fn from_tokens(tokens: Vec<Option<Vec<u8>>>) -> TokenBytes {
        let tokens: Vec<Option<Box<[u8]>>> = tokens
            .into_iter()
            .map(|t| t.filter(|b| !b.is_empty()).map(Vec::into_boxed_slice))
            .collect();
        let trie = Trie::build(&tokens);
        TokenBytes { tokens, trie }
    }

    /// Number of token ids.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The bytes of token `id`, if it may appear inside a value.
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        self.tokens.get(id as usize).and_then(|t| t.as_deref())
    }
}

impl Trie {
    fn build(tokens: &[Option<Box<[u8]>>]) -> Trie {
        let mut order: Vec<(&[u8], u32)> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_deref().map(|b| (b, i as u32)))
            .collect();
        order.sort_unstable();
        let mut t = Trie::default();
        // Path of open nodes: node index per depth (depth d at path[d-1]).
        let mut path: Vec<usize> = Vec::new();
        let mut prev: &[u8] = &[];
        for (bytes, id) in order {
            let common = prev.iter().zip(bytes).take_while(|(a, b)| a == b).count();
            while path.len() > common {
                if let Some(i) = path.pop() {
                    t.end[i] = t.byte.len() as u32;
                    t.sub_hi[i] = t.ids.len() as u32;
                }
            }
            for (d, &b) in bytes.iter().enumerate().skip(common) {
                let i = t.byte.len();
                t.byte.push(b);
                t.depth.push(d as u32 + 1);
                t.end.push(0);
                t.tok_lo.push(0);
                t.tok_hi.push(0);
                t.sub_lo.push(t.ids.len() as u32);
                t.sub_hi.push(0);
                path.push(i);
            }
            if let Some(&last) = path.last() {
                if t.tok_hi[last] == 0 && t.tok_lo[last] == 0 {
                    t.tok_lo[last] = t.ids.len() as u32;
                    t.tok_hi[last] = t.ids.len() as u32;
                }
                t.ids.push(id);
                t.tok_hi[last] += 1;
            }
            t.max_depth = t.max_depth.max(bytes.len());
            prev = bytes;
        }
        while let Some(i) = path.pop() {
            t.end[i] = t.byte.len() as u32;
            t.sub_hi[i] = t.ids.len() as u32;
        }
        // Count non-plain bytes over the preorder to find the all-plain subtrees.
        let mut bad = Vec::with_capacity(t.byte.len() + 1);
        bad.push(0u32);
        for &b in &t.byte {
            let last = bad.last().copied().unwrap_or(0);
            bad.push(last + u32::from(!is_plain(b)));
        }
        t.plain = (0..t.byte.len())
            .map(|i| bad[t.end[i] as usize] == bad[i])
            .collect();
        t
    }

    pub fn len(&self) -> usize {
        self.byte.len()
    }
}
