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

/// A server transaction of one worker's core (ids come from one counter per core, never reused;
/// the three kinds are distinct types, so passing one for another does not compile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ServerId(pub(crate) u64);

/// A client transaction (one forwarding attempt of a server transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientId(pub(crate) u64);

/// A SUBSCRIBE dialog the core tracks for liveness (`dialogs/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SubscriptionId(pub(crate) u64);

/// An armed timer: its sequence number in the core's timer set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TimerId(pub(crate) u64);

/// A transaction's key in the core's tables: a 128-bit keyed hash of the strings that identify it
/// (a server transaction's branch, sent-by and method class; a client transaction's branch), so the
/// tables hold no string and the message path builds none. Two SipHash-1-3 hashers keyed by std's
/// `RandomState` (random per process; std derives the second instance's key from the first's, so
/// the halves are two different keyed functions of one secret, not independent secrets): a peer
/// that does not know the secret cannot choose strings that collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TxnKey(u128);

/// Makes [`TxnKey`]s: two per-process keyed SipHash hashers (see [`TxnKey`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct TxnKeys(std::hash::RandomState, std::hash::RandomState);

impl TxnKeys {
    /// The key of `parts` (each part hashed with its end marked, so `ab|c` and `a|bc` differ).
    pub(crate) fn of(&self, parts: &[&str]) -> TxnKey {
        use std::hash::{BuildHasher, Hash, Hasher};
        let (mut a, mut b) = (self.0.build_hasher(), self.1.build_hasher());
        for p in parts {
            p.hash(&mut a);
            p.hash(&mut b);
        }
        TxnKey((u128::from(a.finish()) << 64) | u128::from(b.finish()))
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

    #[test]
    fn keys_follow_the_strings_and_their_boundaries() {
        let k = TxnKeys::default();
        assert_eq!(
            k.of(&["z9hG4bK1", "h", "INVITE"]),
            k.of(&["z9hG4bK1", "h", "INVITE"])
        );
        assert_ne!(
            k.of(&["z9hG4bK1", "h", "INVITE"]),
            k.of(&["z9hG4bK2", "h", "INVITE"])
        );
        assert_ne!(k.of(&["ab", "c"]), k.of(&["a", "bc"]));
        assert_ne!(k.of(&["a"]), TxnKeys::default().of(&["a"]), "keyed per instance");
    }
}
