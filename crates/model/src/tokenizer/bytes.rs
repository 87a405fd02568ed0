//! Token text to bytes: GPT-2's byte-to-character table (byte-level BPE) and SentencePiece's
//! `▁` spaces and `<0xXX>` byte tokens.

use std::sync::OnceLock;

/// The SentencePiece space marker, U+2581.
pub const SPM_SPACE: char = '\u{2581}';

/// GPT-2's printable stand-in for each byte: bytes that are printable Latin-1 map to
/// themselves, the other 68 to U+0100 onwards in byte order.
fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next = 256u32;
        for (b, slot) in table.iter_mut().enumerate() {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
            let code = if printable {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            // Every code here is below U+0200: always a valid char.
            *slot = char::from_u32(code).unwrap_or('\0');
        }
        table
    })
}

/// The byte a GPT-2 stand-in character represents.
pub fn char_to_byte(c: char) -> Option<u8> {
    let code = c as u32;
    if code >= 0x200 {
        return None;
    }
    byte_to_char()
        .iter()
        .position(|&x| x == c)
        .and_then(|b| u8::try_from(b).ok())
}

/// Bytes of a byte-level BPE token: every character through the GPT-2 table, or, as
/// `tokenizers`' ByteLevel decoder does, the text's own UTF-8 when a character is not in it.
pub fn byte_level_bytes(text: &str) -> Vec<u8> {
    let mapped: Option<Vec<u8>> = text.chars().map(char_to_byte).collect();
    mapped.unwrap_or_else(|| text.as_bytes().to_vec())
}

/// The byte of a `<0xXX>` byte-fallback token.
pub fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Bytes of a SentencePiece piece: `▁` becomes a space.
pub fn spm_bytes(text: &str) -> Vec<u8> {
    text.replace(SPM_SPACE, " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_table_is_a_bijection_with_the_known_stand_ins() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char()[b as usize];
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char()[b' ' as usize], 'Ġ');
        assert_eq!(byte_to_char()[b'\n' as usize], 'Ċ');
        assert_eq!(byte_level_bytes("Ġhello"), b" hello");
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0x0A"), None);
    }
}
