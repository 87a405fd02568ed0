//! Bytes inside a string or a number: the scalar parts of the matcher.

use super::Frame;
use crate::constrain::schema::UNBOUNDED;

/// Digits in a number's integer part (keeps integers within i64), fraction and exponent.
pub(crate) const MAX_INT_DIGITS: u8 = 18;
pub(crate) const MAX_FRAC_DIGITS: u8 = 16;
pub(crate) const MAX_EXP_DIGITS: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumPhase {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

/// One byte of a string's contents. Sets `esc = 7` when the byte is the closing quote.
pub(crate) fn str_byte(f: &mut Frame, b: u8) -> bool {
    let Frame::Str {
        min,
        max,
        len,
        esc,
        need,
        lo,
        hi,
    } = f
    else {
        return false;
    };
    let count = |len: &mut u32| {
        if *max == UNBOUNDED {
            if *len < *min {
                *len += 1;
            }
        } else {
            *len += 1;
        }
    };
    if *need > 0 {
        if b < *lo || b > *hi {
            return false;
        }
        *need -= 1;
        *lo = 0x80;
        *hi = 0xBF;
        return true;
    }
    match *esc {
        0 => {}
        1 => {
            return match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                    *esc = 0;
                    count(len);
                    true
                }
                b'u' => {
                    *esc = 2;
                    true
                }
                _ => false,
            }
        }
        2 => {
            // First hex digit; `d` may start a surrogate, which is not generated.
            return match b {
                b'd' | b'D' => {
                    *esc = 4;
                    true
                }
                _ if b.is_ascii_hexdigit() => {
                    *esc = 3;
                    true
                }
                _ => false,
            };
        }
        3 | 4 => {
            let ok = if *esc == 4 {
                matches!(b, b'0'..=b'7')
            } else {
                b.is_ascii_hexdigit()
            };
            if ok {
                *esc = 5;
            }
            return ok;
        }
        5 => {
            if b.is_ascii_hexdigit() {
                *esc = 6;
                return true;
            }
            return false;
        }
        6 => {
            if b.is_ascii_hexdigit() {
                *esc = 0;
                count(len);
                return true;
            }
            return false;
        }
        _ => return false,
    }
    let at_max = *max != UNBOUNDED && *len >= *max;
    match b {
        b'"' => {
            if *len < *min {
                return false;
            }
            *esc = 7;
            true
        }
        0..=0x1F => false,
        b'\\' => {
            if at_max {
                return false;
            }
            *esc = 1;
            true
        }
        0x20..=0x7F => {
            if at_max {
                return false;
            }
            count(len);
            true
        }
        _ => {
            if at_max {
                return false;
            }
            let (n, l, h) = match b {
                0xC2..=0xDF => (1, 0x80, 0xBF),
                0xE0 => (2, 0xA0, 0xBF),
                0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                0xED => (2, 0x80, 0x9F),
                0xF0 => (3, 0x90, 0xBF),
                0xF1..=0xF3 => (3, 0x80, 0xBF),
                0xF4 => (3, 0x80, 0x8F),
                _ => return false,
            };
            *need = n;
            *lo = l;
            *hi = h;
            count(len);
            true
        }
    }
}

/// One byte of a number: `Some(true)` taken, `Some(false)` invalid, `None` the number ended
/// before this byte.
pub(crate) fn num_byte(
    integer: bool,
    phase: &mut NumPhase,
    digits: &mut u8,
    b: u8,
) -> Option<bool> {
    match num_next(integer, *phase, *digits, b) {
        Step::Take(p, d) => {
            *phase = p;
            *digits = d;
            Some(true)
        }
        Step::Reject => Some(false),
        Step::End => None,
    }
}

enum Step {
    Take(NumPhase, u8),
    Reject,
    End,
}

fn num_next(integer: bool, phase: NumPhase, digits: u8, b: u8) -> Step {
    use NumPhase::*;
    use Step::*;
    let digit = b.is_ascii_digit();
    match phase {
        Start => match b {
            b'-' => Take(Minus, 0),
            b'0' => Take(Zero, 1),
            b'1'..=b'9' => Take(Int, 1),
            _ => Reject,
        },
        Minus => match b {
            // `-0` is not generated for integers (it reads back as a float).
            b'0' if !integer => Take(Zero, 1),
            b'1'..=b'9' => Take(Int, 1),
            _ => Reject,
        },
        Zero | Int => {
            if digit {
                if phase == Zero || digits >= MAX_INT_DIGITS {
                    return Reject;
                }
                return Take(Int, digits + 1);
            }
            match b {
                b'.' if !integer => Take(Dot, 0),
                b'e' | b'E' if !integer => Take(E, 0),
                b'.' | b'e' | b'E' => Reject,
                _ => End,
            }
        }
        Dot => {
            if digit {
                Take(Frac, 1)
            } else {
                Reject
            }
        }
        Frac => {
            if digit {
                if digits >= MAX_FRAC_DIGITS {
                    return Reject;
                }
                return Take(Frac, digits + 1);
            }
            match b {
                b'e' | b'E' => Take(E, 0),
                b'.' => Reject,
                _ => End,
            }
        }
        E => match b {
            b'+' | b'-' => Take(ESign, 0),
            _ if digit => Take(Exp, 1),
            _ => Reject,
        },
        ESign => {
            if digit {
                Take(Exp, 1)
            } else {
                Reject
            }
        }
        Exp => {
            if digit {
                if digits >= MAX_EXP_DIGITS {
                    return Reject;
                }
                return Take(Exp, digits + 1);
            }
            match b {
                b'.' | b'e' | b'E' | b'+' | b'-' => Reject,
                _ => End,
            }
        }
    }
}
