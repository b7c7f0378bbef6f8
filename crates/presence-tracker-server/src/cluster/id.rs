//! [`ClusterId`]: ids written into Redis keys and messages, and their escaping.

use std::sync::Arc;

use presence_tracker::Id;

/// A user or session id the cluster layer can write into a Redis key and read back.
///
/// Implemented for the integer types, `String`, `Box<str>`, `Arc<str>` and `[u8; 16]` (as 32
/// hex digits). Text is percent-encoded where it is written (see the [module](super) docs), so
/// any string is a valid id.
pub trait ClusterId: Id {
    /// Appends the id's text form to `out`.
    fn write_text(&self, out: &mut String);

    /// The id back from its text form; `None` for text that is not one (a foreign key, a
    /// garbled message).
    fn parse_text(text: &str) -> Option<Self>;
}

macro_rules! integer_ids {
    ($($t:ty),*) => {$(
        impl ClusterId for $t {
            fn write_text(&self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }

            fn parse_text(text: &str) -> Option<Self> {
                text.parse().ok()
            }
        }
    )*};
}
integer_ids!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl ClusterId for String {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }

    fn parse_text(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl ClusterId for Box<str> {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }

    fn parse_text(text: &str) -> Option<Self> {
        Some(text.into())
    }
}

impl ClusterId for Arc<str> {
    fn write_text(&self, out: &mut String) {
        out.push_str(self);
    }

    fn parse_text(text: &str) -> Option<Self> {
        Some(text.into())
    }
}

impl ClusterId for [u8; 16] {
    fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        for b in self {
            let _ = write!(out, "{b:02x}");
        }
    }

    fn parse_text(text: &str) -> Option<Self> {
        if text.len() != 32 || !text.is_ascii() {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(id)
    }
}

/// Whether a byte is written as `%XX`: what could end a hash tag (`{`, `}`), split a stored
/// value or message (`|`, `,`, `:`), start an escape (`%`), or is not printable ASCII.
fn escaped(b: u8) -> bool {
    matches!(b, b'%' | b'{' | b'}' | b'|' | b',' | b':') || !b.is_ascii_graphic()
}

/// Any text percent-encoded as ids are (room metadata as JSON, in entries and messages).
pub(crate) fn encode_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if escaped(b) {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// The id's text form, percent-encoded: what goes into keys and messages.
pub(crate) fn encode<T: ClusterId>(id: &T) -> String {
    let mut text = String::new();
    id.write_text(&mut text);
    if !text.bytes().any(escaped) {
        return text;
    }
    encode_text(&text)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The id from its encoded form; `None` for a malformed escape, text that is not UTF-8, or
/// text the id type refuses.
pub(crate) fn decode<T: ClusterId>(encoded: &str) -> Option<T> {
    if !encoded.contains('%') {
        return T::parse_text(encoded);
    }
    T::parse_text(&decode_text(encoded)?)
}

/// Text from its encoded form.
pub(crate) fn decode_text(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_never_holds_a_brace_or_bar() {
        for id in [
            "ada", "a}b", "{x}", "50%", "a|b", "é ü", "tab\n1", "", "a:b,c",
        ] {
            let enc = encode(&id.to_string());
            assert!(!enc.contains(['{', '}', '|', ' ', ',', ':']), "{enc}");
            assert_eq!(decode::<String>(&enc).as_deref(), Some(id));
        }
    }

    #[test]
    fn fixed_ids_round_trip_and_garbage_is_none() {
        assert_eq!(decode::<u64>(&encode(&42u64)), Some(42));
        let uuid = [7u8; 16];
        assert_eq!(decode::<[u8; 16]>(&encode(&uuid)), Some(uuid));
        assert_eq!(decode::<u64>("x1"), None);
        assert_eq!(decode::<[u8; 16]>("zz"), None);
        assert_eq!(decode::<String>("%G1"), None);
        assert_eq!(decode::<String>("%"), None);
        assert_eq!(decode::<String>("%FF"), None); // not UTF-8
    }
}
