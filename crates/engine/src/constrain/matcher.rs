//! The byte-level matcher: a pushdown automaton whose stack holds what is still expected.
//!
//! A [`State`] is a small set of stacks (more than one only while `anyOf` alternatives are
//! undecided). Each stack is a list of [`Frame`]s, the last one being matched now. A byte is
//! fed to the top frame; a frame that has finished passes the byte on to the frame below it.
//! Everything is plain data, so a state is cloned cheaply while the vocabulary trie is walked.

mod scalar;

use super::schema::{Grammar, Node, ANY_ARRAY, ANY_LITERALS, ANY_OBJECT, UNBOUNDED};
use scalar::{num_byte, str_byte, NumPhase};

/// Longest run of whitespace between two JSON tokens.
pub const MAX_WS_RUN: u8 = 24;
/// Deepest nesting of frames (objects, arrays, strings...) on one stack.
pub const MAX_FRAMES: usize = 48;
/// Most stacks kept at once (undecided `anyOf` alternatives).
const MAX_STACKS: usize = 64;
/// How deep `anyOf` / `$ref` expansions may nest while one byte is read.
const MAX_EXPANSION: u32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjPhase {
    /// After `{`: a key or `}`.
    Open,
    /// Inside a listed key (`mask` holds the candidates, `pos` the bytes matched).
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or `}`.
    AfterValue,
    /// After `,`: a key.
    ExpectKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrPhase {
    Open,
    AfterValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// A value of `node`, not started yet (whitespace allowed first).
    Value {
        node: u32,
    },
    Obj {
        node: u32,
        phase: ObjPhase,
        /// Index of the first property that may still come.
        next: u8,
        /// The property whose key was just read.
        cur: u8,
        pos: u16,
        mask: u64,
    },
    Arr {
        node: u32,
        count: u32,
        phase: ArrPhase,
    },
    /// A string's contents after the opening quote.
    Str {
        min: u32,
        max: u32,
        /// Code points so far (saturates at `min` when there is no maximum).
        len: u32,
        /// 0: plain; 1: after `\`; 2..=6: reading the hex digits of `\u` (see `str_byte`).
        esc: u8,
        /// UTF-8 continuation bytes still expected, and the range of the next one.
        need: u8,
        lo: u8,
        hi: u8,
    },
    Num {
        integer: bool,
        phase: NumPhase,
        digits: u8,
    },
    Lits {
        node: u32,
        mask: u64,
        pos: u16,
    },
}

/// One way the input so far can continue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Stack {
    frames: Vec<Frame>,
    /// Whitespace bytes in the current run.
    ws: u8,
}

/// The matcher state: the stacks alive after the input so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    stacks: Vec<Stack>,
    /// Live stacks are `stacks[..n]`; the rest are spare buffers.
    n: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn lit_bytes(g: &Grammar, node: u32) -> &[Vec<u8>] {
    match g.node(node) {
        Node::Literals(l) => l,
        _ => &[],
    }
}

/// Candidate property keys at index `next`: up to and including the next required one.
fn key_candidates(props: &[super::schema::Prop], next: u8) -> u64 {
    let mut mask = 0u64;
    for (i, p) in props.iter().enumerate().skip(next as usize) {
        mask |= 1u64 << i;
        if p.required {
            break;
        }
    }
    mask
}

fn required_left(props: &[super::schema::Prop], next: u8) -> bool {
    props.iter().skip(next as usize).any(|p| p.required)
}

/// Whether a value of `node` can start with byte `b` (`depth` bounds `anyOf` nesting).
fn starts(g: &Grammar, node: u32, b: u8, depth: u32) -> bool {
    if depth > MAX_EXPANSION {
        return false;
    }
    match g.node(node) {
        Node::Any => matches!(
            b,
            b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
        ),
        Node::Object { .. } => b == b'{',
        Node::Array { .. } => b == b'[',
        Node::String { .. } => b == b'"',
        Node::Number { .. } => b == b'-' || b.is_ascii_digit(),
        Node::Literals(l) => l.iter().any(|l| l.first() == Some(&b)),
        Node::Union(alts) => alts.iter().any(|&a| starts(g, a, b, depth + 1)),
        Node::Pending => false,
    }
}

fn can_end(g: &Grammar, f: &Frame) -> bool {
    match *f {
        Frame::Num { phase, .. } => {
            matches!(
                phase,
                NumPhase::Zero | NumPhase::Int | NumPhase::Frac | NumPhase::Exp
            )
        }
        Frame::Lits { node, mask, pos } => lit_bytes(g, node)
            .iter()
            .enumerate()
            .any(|(i, l)| mask & (1u64 << i) != 0 && l.len() == pos as usize),
        _ => false,
    }
}

impl Stack {
    pub(crate) fn root(node: u32) -> Stack {
        Stack {
            frames: vec![Frame::Value { node }],
            ws: 0,
        }
    }

    /// Nothing is left to match.
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The input so far is a complete value (what remains can all end here).
    fn can_finish(&self, g: &Grammar) -> bool {
        self.frames.iter().all(|f| can_end(g, f))
    }

    fn push(&mut self, f: Frame) -> bool {
        if self.frames.len() >= MAX_FRAMES {
            return false;
        }
        self.frames.push(f);
        true
    }

    /// Feed one byte. Returns false when the byte cannot follow. Alternatives opened by
    /// `anyOf` are added to `forks` (already fed).
    fn feed(&mut self, g: &Grammar, b: u8, forks: &mut Vec<Stack>, depth: u32) -> bool {
        loop {
            let Some(top) = self.frames.last_mut() else {
                return false;
            };
            match top {
                Frame::Value { node } => {
                    let node = *node;
                    if is_ws(b) {
                        return self.space();
                    }
                    return self.expand(g, node, b, forks, depth);
                }
                Frame::Str { .. } => {
                    self.ws = 0;
                    return str_byte(top, b) && self.str_end_check(b);
                }
                Frame::Num {
                    integer,
                    phase,
                    digits,
                } => {
                    match num_byte(*integer, phase, digits, b) {
                        Some(true) => {
                            self.ws = 0;
                            return true;
                        }
                        Some(false) => return false,
                        None => {
                            // The number ended: the byte belongs to what follows.
                            self.frames.pop();
                            continue;
                        }
                    }
                }
                Frame::Lits { node, mask, pos } => {
                    let lits = lit_bytes(g, *node);
                    let p = *pos as usize;
                    let mut next = 0u64;
                    let mut complete = false;
                    for (i, l) in lits.iter().enumerate() {
                        if *mask & (1u64 << i) == 0 {
                            continue;
                        }
                        if l.len() == p {
                            complete = true;
                        } else if l.get(p) == Some(&b) {
                            next |= 1u64 << i;
                        }
                    }
                    if next != 0 {
                        *mask = next;
                        *pos += 1;
                        self.ws = 0;
                        let p = p + 1;
                        let all_done = lits
                            .iter()
                            .enumerate()
                            .all(|(i, l)| next & (1u64 << i) == 0 || l.len() == p);
                        if all_done {
                            self.frames.pop();
                        }
                        return true;
                    }
                    if complete {
                        self.frames.pop();
                        continue;
                    }
                    return false;
                }
                Frame::Arr { node, count, phase } => {
                    let (items, min, max) = match g.node(*node) {
                        Node::Array { items, min, max } => (*items, *min, *max),
                        _ => return false,
                    };
                    if is_ws(b) {
                        return self.space();
                    }
                    match (*phase, b) {
                        (ArrPhase::Open, b']') | (ArrPhase::AfterValue, b']') => {
                            if *count < min {
                                return false;
                            }
                            self.frames.pop();
                            self.ws = 0;
                            return true;
                        }
                        (ArrPhase::AfterValue, b',') => {
                            if *count >= max {
                                return false;
                            }
                            *count += 1;
                            self.ws = 0;
                            return self.push(Frame::Value { node: items });
                        }
                        (ArrPhase::Open, _) => {
                            if max == 0 {
                                return false;
                            }
                            *count = 1;
                            *phase = ArrPhase::AfterValue;
                            if !self.push(Frame::Value { node: items }) {
                                return false;
                            }
                            continue;
                        }
                        _ => return false,
                    }
                }
                Frame::Obj { .. } => return self.obj_byte(g, b),
            }
        }
    }

    fn space(&mut self) -> bool {
        if self.ws >= MAX_WS_RUN {
            return false;
        }
        self.ws += 1;
        true
    }

    /// After a string byte: a closing quote pops the string.
    fn str_end_check(&mut self, b: u8) -> bool {
        if let Some(Frame::Str { esc: 7, .. }) = self.frames.last() {
            debug_assert_eq!(b, b'"');
            self.frames.pop();
        }
        true
    }

    fn expand(
        &mut self,
        g: &Grammar,
        node: u32,
        b: u8,
        forks: &mut Vec<Stack>,
        depth: u32,
    ) -> bool {
        if depth > MAX_EXPANSION {
            return false;
        }
        let start = match g.node(node) {
            Node::Any => match b {
                b'{' => Frame::Value { node: ANY_OBJECT },
                b'[' => Frame::Value { node: ANY_ARRAY },
                b'"' => Frame::Str {
                    min: 0,
                    max: UNBOUNDED,
                    len: 0,
                    esc: 0,
                    need: 0,
                    lo: 0,
                    hi: 0,
                },
                b'-' | b'0'..=b'9' => Frame::Num {
                    integer: false,
                    phase: NumPhase::Start,
                    digits: 0,
                },
                b't' | b'f' | b'n' => Frame::Lits {
                    node: ANY_LITERALS,
                    mask: u64::MAX,
                    pos: 0,
                },
                _ => return false,
            },
            Node::Object { props, .. } => {
                if b != b'{' {
                    return false;
                }
                let _ = props;
                self.frames.pop();
                self.ws = 0;
                return self.push(Frame::Obj {
                    node,
                    phase: ObjPhase::Open,
                    next: 0,
                    cur: 0,
                    pos: 0,
                    mask: 0,
                });
            }
            Node::Array { .. } => {
                if b != b'[' {
                    return false;
                }
                self.frames.pop();
                self.ws = 0;
                return self.push(Frame::Arr {
                    node,
                    count: 0,
                    phase: ArrPhase::Open,
                });
            }
            Node::String { min, max } => {
                if b != b'"' {
                    return false;
                }
                self.frames.pop();
                self.ws = 0;
                return self.push(Frame::Str {
                    min: *min,
                    max: *max,
                    len: 0,
                    esc: 0,
                    need: 0,
                    lo: 0,
                    hi: 0,
                });
            }
            Node::Number { integer } => Frame::Num {
                integer: *integer,
                phase: NumPhase::Start,
                digits: 0,
            },
            Node::Literals(_) => Frame::Lits {
                node,
                mask: u64::MAX,
                pos: 0,
            },
            Node::Union(alts) => {
                let mut viable = alts.iter().copied().filter(|&a| starts(g, a, b, depth + 1));
                let Some(first) = viable.next() else {
                    return false;
                };
                for alt in viable {
                    if forks.len() >= MAX_STACKS {
                        break;
                    }
                    let mut other = self.clone();
                    if let Some(top) = other.frames.last_mut() {
                        *top = Frame::Value { node: alt };
                    }
                    let mut sub = Vec::new();
                    if other.expand(g, alt, b, &mut sub, depth + 1) {
                        forks.push(other);
                    }
                    forks.extend(sub);
                }
                if let Some(top) = self.frames.last_mut() {
                    *top = Frame::Value { node: first };
                }
                return self.expand(g, first, b, forks, depth + 1);
            }
            Node::Pending => return false,
        };
        // Replace the pending value with its first frame and feed the byte to it.
        if let Some(top) = self.frames.last_mut() {
            *top = start;
        }
        if let Frame::Str { .. } = start {
            // The opening quote was this byte.
            self.ws = 0;
            return true;
        }
        if let Frame::Value { node } = start {
            return self.expand(g, node, b, forks, depth + 1);
        }
        self.feed(g, b, forks, depth + 1)
    }

    fn obj_byte(&mut self, g: &Grammar, b: u8) -> bool {
        let Some(Frame::Obj {
            node,
            phase,
            next,
            cur,
            pos,
            mask,
        }) = self.frames.last_mut()
        else {
            return false;
        };
        let (props, map_value) = match g.node(*node) {
            Node::Object { props, map_value } => (props.as_slice(), *map_value),
            _ => return false,
        };
        if *phase == ObjPhase::Key {
            let p = *pos as usize;
            let mut m = 0u64;
            let mut done = None;
            for (i, prop) in props.iter().enumerate() {
                if *mask & (1u64 << i) != 0 && prop.key.get(p) == Some(&b) {
                    m |= 1u64 << i;
                    if prop.key.len() == p + 1 {
                        done = Some(i);
                    }
                }
            }
            if m == 0 {
                return false;
            }
            self.ws = 0;
            *mask = m;
            *pos += 1;
            if let Some(i) = done {
                // Keys are JSON strings: one that ends here is the only candidate left.
                *phase = ObjPhase::Colon;
                *cur = i as u8;
                *next = (i + 1) as u8;
            }
            return true;
        }
        if is_ws(b) {
            return self.space();
        }
        match (*phase, b) {
            (ObjPhase::Open | ObjPhase::ExpectKey, b'"') => {
                self.ws = 0;
                if map_value.is_some() {
                    *phase = ObjPhase::Colon;
                    return self.push(Frame::Str {
                        min: 0,
                        max: UNBOUNDED,
                        len: 0,
                        esc: 0,
                        need: 0,
                        lo: 0,
                        hi: 0,
                    });
                }
                let m = key_candidates(props, *next);
                if m == 0 {
                    return false;
                }
                *phase = ObjPhase::Key;
                *mask = m;
                *pos = 1;
                true
            }
            (ObjPhase::Open | ObjPhase::AfterValue, b'}') => {
                if map_value.is_none() && required_left(props, *next) {
                    return false;
                }
                self.frames.pop();
                self.ws = 0;
                true
            }
            (ObjPhase::Colon, b':') => {
                let value = match map_value {
                    Some(v) => v,
                    None => match props.get(*cur as usize) {
                        Some(p) => p.node,
                        None => return false,
                    },
                };
                *phase = ObjPhase::AfterValue;
                self.ws = 0;
                self.push(Frame::Value { node: value })
            }
            (ObjPhase::AfterValue, b',') => {
                if map_value.is_none() && key_candidates(props, *next) == 0 {
                    return false;
                }
                *phase = ObjPhase::ExpectKey;
                self.ws = 0;
                true
            }
            _ => false,
        }
    }
}

impl State {
    pub(crate) fn new(root: u32) -> State {
        State {
            stacks: vec![Stack::root(root)],
            n: 1,
        }
    }

    pub(crate) fn live(&self) -> &[Stack] {
        &self.stacks[..self.n.min(self.stacks.len())]
    }

    /// Every alive stack is empty: nothing can follow.
    pub(crate) fn is_closed(&self) -> bool {
        self.n > 0 && self.live().iter().all(Stack::is_empty)
    }

    /// The input so far is a complete value.
    pub(crate) fn can_finish(&self, g: &Grammar) -> bool {
        self.live().iter().any(|s| s.can_finish(g))
    }

    /// Copy `other` into `self`, reusing buffers.
    pub(crate) fn copy_from(&mut self, other: &State) {
        let live = other.live();
        if self.stacks.len() < live.len() {
            self.stacks.resize_with(live.len(), Stack::default);
        }
        for (dst, src) in self.stacks.iter_mut().zip(live) {
            dst.frames.clone_from(&src.frames);
            dst.ws = src.ws;
        }
        self.n = live.len();
    }

    /// Inside a string with nothing pending (no escape, no partial UTF-8 character): how many
    /// more plain characters may come (`u32::MAX`: no limit). `None` elsewhere.
    pub(crate) fn plain_room(&self) -> Option<u32> {
        // Several stacks (undecided `anyOf`): a plain character fits if it fits in any.
        let mut room = None;
        for s in self.live() {
            match s.frames.last() {
                Some(Frame::Str {
                    max,
                    len,
                    esc: 0,
                    need: 0,
                    ..
                }) => {
                    let r = if *max == UNBOUNDED {
                        u32::MAX
                    } else {
                        max.saturating_sub(*len)
                    };
                    room = Some(room.map_or(r, |x: u32| x.max(r)));
                }
                _ => return None,
            }
        }
        room
    }

    /// True when byte `b` leaves the state exactly as it is (plain characters inside an
    /// unbounded string): the trie walk then reuses the parent's state.
    pub(crate) fn unchanged_by(&self, b: u8) -> bool {
        if self.n == 0 || !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\' {
            return false;
        }
        self.live().iter().all(|s| {
            matches!(
                s.frames.last(),
                Some(Frame::Str {
                    min,
                    max,
                    len,
                    esc: 0,
                    need: 0,
                    ..
                }) if *max == UNBOUNDED && len >= min
            )
        })
    }

    /// `next` := this state after byte `b`. Returns false when no stack survives.
    pub(crate) fn advance(
        &self,
        g: &Grammar,
        b: u8,
        next: &mut State,
        forks: &mut Vec<Stack>,
    ) -> bool {
        next.n = 0;
        forks.clear();
        for src in self.live() {
            if next.stacks.len() <= next.n {
                next.stacks.push(Stack::default());
            }
            let slot = &mut next.stacks[next.n];
            slot.frames.clone_from(&src.frames);
            slot.ws = src.ws;
            if slot.feed(g, b, forks, 0) {
                next.n += 1;
            }
        }
        for f in forks.drain(..) {
            if next.n >= MAX_STACKS {
                break;
            }
            if next.stacks.len() <= next.n {
                next.stacks.push(f);
            } else {
                next.stacks[next.n] = f;
            }
            next.n += 1;
        }
        if next.n > 1 {
            // Drop duplicate stacks (e.g. `anyOf` alternatives that became the same).
            let mut i = 1;
            while i < next.n {
                if next.stacks[..i].contains(&next.stacks[i]) {
                    next.stacks.swap(i, next.n - 1);
                    next.n -= 1;
                } else {
                    i += 1;
                }
            }
        }
        next.n > 0
    }
}
