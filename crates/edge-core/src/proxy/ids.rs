//! The edge's own identifiers (branches, tags) and transaction keys, written with `push_str` and a
//! hex writer rather than `format!`: the formatting machinery cost ~1,000-2,000 instructions per id
//! in the per-transaction profile (callgrind, `benches/counting.rs`), these a few dozen.

/// Appends `n` in lower-case hex, without leading zeros (`0` for zero), as `{:x}` writes it.
pub(crate) fn push_hex(out: &mut String, n: u64) {
    push_hex_width(out, n, 1);
}

/// Appends `n` in lower-case hex, zero-padded to at least `width` digits (at most 16), as
/// `{:0width$x}` writes it.
pub(crate) fn push_hex_width(out: &mut String, n: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let significant = (64 - n.leading_zeros() as usize).div_ceil(4).max(1);
    for i in (0..significant.max(width.min(16))).rev() {
        let nibble = (n >> (i * 4)) & 0xf;
        out.push(char::from(DIGITS.get(nibble as usize).copied().unwrap_or(b'0')));
    }
}

/// The To tag of the responses this edge generates in server transaction `id` of `worker`:
/// `se<worker>x<id>` in hex.
pub(crate) fn to_tag(worker: u64, id: u64) -> String {
    let mut t = String::with_capacity(24);
    t.push_str("se");
    push_hex(&mut t, worker);
    t.push('x');
    push_hex(&mut t, id);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_agrees_with_format() {
        let values = [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::from(u32::MAX),
            u64::MAX,
            1 << 63,
        ];
        for n in values {
            let mut s = String::new();
            push_hex(&mut s, n);
            assert_eq!(s, format!("{n:x}"));
            for w in [0, 1, 4, 16] {
                let mut s = String::new();
                push_hex_width(&mut s, n, w);
                assert_eq!(s, format!("{n:0w$x}"), "{n} width {w}");
            }
        }
        assert_eq!(to_tag(3, 0x2a), format!("se{:x}x{:x}", 3, 0x2a));
    }
}
