//! Byte-level helpers shared by the grammars: character classes of RFC 3261 §25.1 and trimming.
//! Whitespace here includes CR and LF so that folded header values (RFC 3261 §7.3.1) can be read in
//! place, without an unfolding copy: a fold is just linear whitespace to every tokenizer.

// Evaluated at compile time only (the tables are statics): an out-of-bounds index would be a build
// error, never a runtime panic, and the loop bound keeps `i < 256` anyway.
#[allow(clippy::indexing_slicing)]
const fn class_table(token: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if token {
            matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
                | b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
        } else {
            matches!(b, b' ' | b'\t' | b'\r' | b'\n')
        };
        i += 1;
    }
    t
}

static TOKEN: [bool; 256] = class_table(true);
static LWS: [bool; 256] = class_table(false);

/// `token` characters: alphanum and `-.!%*_+`'~` (a table lookup: this runs for every name octet).
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN.get(usize::from(b)).copied().unwrap_or(false)
}

/// Linear whitespace inside a header value, folds included.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    LWS.get(usize::from(b)).copied().unwrap_or(false)
}

pub(crate) fn trim(s: &str) -> &str {
    // Byte-wise: whitespace is ASCII, so the cut points are always char boundaries.
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_lws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_lws(c)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or("")
}

/// Case-insensitive equality of a wire name with a known lower-case name made of letters, digits
/// and `-`: one OR per octet instead of two case conversions (`b | 0x20` maps only `A-Z` onto `a-z`
/// among the octets a token may hold).
#[inline]
pub(crate) fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).all(|(&a, &b)| (a | 0x20) == b)
}

pub(crate) fn trim_bytes(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if is_lws(*first) {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if is_lws(*last) {
            b = rest;
        } else {
            break;
        }
    }
    b
}

pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Parses an unsigned decimal of at most `max_digits` digits (leading zeros allowed, as RFC 4475
/// expects); `None` on anything else. Never overflows: `max_digits` must keep the value within u64.
pub(crate) fn parse_decimal(s: &[u8], max_digits: usize) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let digits = s.iter().skip_while(|&&b| b == b'0').count();
    if digits > max_digits {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Splits `s` at the first byte for which `f` is true (outside nothing: a plain scan).
pub(crate) fn split_at_byte(s: &str, b: u8) -> (&str, Option<&str>) {
    match memchr::memchr(b, s.as_bytes()) {
        Some(i) => (s.get(..i).unwrap_or(""), s.get(i + 1..)),
        None => (s, None),
    }
}

/// Index of the first `delim` in `s` that is outside double quotes (with `\` escapes) and outside
/// `<...>`. This is how comma lists and parameter lists are cut without breaking quoted strings or URIs.
pub(crate) fn find_unquoted(s: &[u8], delim: u8) -> Option<usize> {
    // Fast path: no quote or angle bracket before the first delimiter (Via lists, most parameters).
    let first = memchr::memchr3(delim, b'"', b'<', s)?;
    if s.get(first) == Some(&delim) {
        return Some(first);
    }
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate().skip(first) {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quotes = false;
            }
            continue;
        }
        match b {
            b'"' if !in_angle => in_quotes = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            _ if b == delim && !in_angle => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_bounds() {
        assert_eq!(parse_decimal(b"0", 10), Some(0));
        assert_eq!(parse_decimal(b"000123", 3), Some(123));
        assert_eq!(parse_decimal(b"1234", 3), None);
        assert_eq!(parse_decimal(b"", 3), None);
        assert_eq!(parse_decimal(b"12a", 3), None);
        assert_eq!(parse_decimal(b"-1", 3), None);
        assert_eq!(parse_decimal(b"99999999999999999999", 19), None);
        assert_eq!(parse_decimal(b"18446744073709551615", 20), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616", 20), None);
    }

    #[test]
    fn unquoted_search_skips_quotes_and_angles() {
        assert_eq!(find_unquoted(br#""a,b" <sip:x;y,z>, c"#, b','), Some(17));
        assert_eq!(find_unquoted(br#""a\",b", c"#, b','), Some(7));
        assert_eq!(find_unquoted(b"abc", b','), None);
        assert_eq!(find_unquoted(br#""unterminated, x"#, b','), None);
    }

    #[test]
    fn lower_case_compare() {
        assert!(eq_lower(b"Content-Length", b"content-length"));
        assert!(eq_lower(b"CALL-ID", b"call-id"));
        assert!(!eq_lower(b"Call-IDx", b"call-id"));
        assert!(!eq_lower(b"Call_ID", b"call-id"));
        assert_eq!(trim("  a b \r\n"), "a b");
        assert_eq!(trim(" \t "), "");
        assert_eq!(trim("é "), "é");
    }

    #[test]
    fn trims_folds() {
        assert_eq!(trim(" \r\n\tabc \r\n "), "abc");
        assert_eq!(trim_bytes(b"\r\n \t"), b"");
        assert!(is_token_str("INVITE"));
        assert!(!is_token_str("IN VITE"));
        assert!(!is_token_str(""));
    }
}
