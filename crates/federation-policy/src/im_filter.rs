//! The IM URL filter (Lync's `CsImFilterConfiguration`): prefixes that mark a link in a MESSAGE text
//! body, and what to do when one appears — block, warn, or allow. Matching is case-insensitive at the
//! start of a word; `*` in a prefix stands for any run of non-space characters (`www*.`).

/// Lync's default blocked prefixes.
pub const LYNC_DEFAULT_PREFIXES: &[&str] = &[
    "callto:", "file:", "ftp.", "ftp:", "gopher:", "href", "http:", "https:", "ldap:", "mailto:", "news:",
    "nntp:", "sip:", "sips:", "tel:", "telnet:", "www*.",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterAction {
    /// Refuse the message.
    #[default]
    Block,
    /// Deliver it, prefixed with a warning (the shell decides how).
    Warn,
    /// The filter is off.
    Allow,
}

impl FilterAction {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "block" => Some(Self::Block),
            "warn" => Some(Self::Warn),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }

    /// As the configuration writes it: `block`, `warn`, `allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Warn => "warn",
            Self::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImFilter {
    prefixes: Vec<String>,
    action: FilterAction,
    /// For each (lower-case) first octet, the indexes of the prefixes that start with it, in list
    /// order: a word is compared only with the prefixes that can match it (one pass over the body,
    /// no lower-cased copy of it).
    by_first: Vec<Vec<u16>>,
    /// For each prefix, whether it holds a `*` (and so must see the whole word).
    wild: Vec<bool>,
    /// A bit per (lower-case) pair of a word's first two octets that some prefix can match: most
    /// words of a text are rejected by one lookup, before any prefix is compared.
    pairs: Box<[u64; 1024]>,
}

/// The filter's decision on one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterVerdict {
    Pass,
    Warn { prefix: String },
    Block { prefix: String },
}

impl Default for ImFilter {
    /// Lync's default: the default prefixes, action block.
    fn default() -> Self {
        ImFilter::new(
            LYNC_DEFAULT_PREFIXES.iter().map(|s| (*s).to_owned()).collect(),
            FilterAction::Block,
        )
    }
}

impl ImFilter {
    pub fn new(prefixes: Vec<String>, action: FilterAction) -> Self {
        let prefixes: Vec<String> = prefixes.into_iter().map(|p| p.to_ascii_lowercase()).collect();
        let mut by_first = vec![Vec::new(); 256];
        for (i, p) in prefixes.iter().enumerate() {
            // A prefix that starts with `*` (or is empty) can match any word: listed under every octet.
            let firsts: Vec<u8> = match p.as_bytes().first() {
                Some(b'*') | None => (0..=255).collect(),
                Some(&b) => vec![b],
            };
            for b in firsts {
                if let (Some(list), Ok(i)) = (by_first.get_mut(usize::from(b)), u16::try_from(i)) {
                    list.push(i);
                }
            }
        }
        let wild = prefixes.iter().map(|p| p.contains('*')).collect();
        let mut pairs = Box::new([0u64; 1024]);
        for p in &prefixes {
            let (firsts, seconds): (Vec<u8>, Vec<u8>) = match *p.as_bytes() {
                // `*` first, or an empty prefix: any word.
                [] | [b'*', ..] => ((0..=255).collect(), (0..=255).collect()),
                // One octet, or `*` second: any second octet (or none: see `pair_bit`).
                [a] | [a, b'*', ..] => (vec![a], (0..=255).collect()),
                [a, b, ..] => (vec![a], vec![b]),
            };
            for &a in &firsts {
                for &b in &seconds {
                    let (word, bit) = pair_bit(a, b);
                    if let Some(w) = pairs.get_mut(word) {
                        *w |= bit;
                    }
                }
            }
        }
        ImFilter {
            prefixes,
            action,
            by_first,
            wild,
            pairs,
        }
    }

    pub fn action(&self) -> FilterAction {
        self.action
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// Whether text starting with `scheme` (e.g. `https://push...`) would be caught, whatever the action.
    pub fn blocks_scheme(&self, scheme: &str) -> bool {
        self.action == FilterAction::Block && self.first_match(scheme).is_some()
    }

    /// Applies the filter to a text body.
    pub fn check(&self, text: &str) -> FilterVerdict {
        if self.action == FilterAction::Allow {
            return FilterVerdict::Pass;
        }
        match self.first_match(text) {
            None => FilterVerdict::Pass,
            Some(prefix) if self.action == FilterAction::Warn => FilterVerdict::Warn { prefix },
            Some(prefix) => FilterVerdict::Block { prefix },
        }
    }

    /// The first prefix (in list order) matching the first word (in text order) that any prefix
    /// matches. Words are split as Lync does: whitespace and `<>"'([`. Case-insensitive (ASCII).
    fn first_match(&self, text: &str) -> Option<String> {
        self.first_match_bytes(text.as_bytes())
    }

    /// [`ImFilter::first_match`] on raw body octets, in one pass with no copy: what
    /// `String::from_utf8_lossy` then the `&str` filter would answer (an invalid sequence is a
    /// replacement character: part of a word), without building the string. Each octet is looked up
    /// once in [`OCTET_CLASS`]; only a word whose first octet begins some prefix is compared.
    fn first_match_bytes(&self, body: &[u8]) -> Option<String> {
        let mut i = 0;
        while let Some(&b) = body.get(i) {
            // A delimiter: skip it.
            let class = octet_class(b);
            if class == DELIMITER {
                i += 1;
                continue;
            }
            if class == MAYBE_SPACE {
                let w = unicode_space_width(body, i);
                if w > 0 {
                    i += w;
                    continue;
                }
            }
            // A word starts at `i`: compared with the prefixes only if its first two octets can begin
            // one (a one-octet word at the end pairs with 0, which every short prefix marks).
            let (word, bit) = pair_bit(b, body.get(i + 1).copied().unwrap_or(0));
            if self.pairs.get(word).is_none_or(|w| w & bit == 0) {
                i = word_end(body, i + 1);
                continue;
            }
            let candidates = self
                .by_first
                .get(usize::from(b.to_ascii_lowercase()))
                .map_or(&[][..], Vec::as_slice);
            let rest = body.get(i..).unwrap_or(&[]);
            let mut end = None;
            for &p in candidates {
                let (Some(p), Some(&wild)) =
                    (self.prefixes.get(usize::from(p)), self.wild.get(usize::from(p)))
                else {
                    continue;
                };
                let hit = if wild {
                    // Only a `*` pattern needs the whole word.
                    let e = *end.get_or_insert_with(|| word_end(body, i + 1));
                    prefix_matches(p, body.get(i..e).unwrap_or(&[]))
                } else {
                    // A plain prefix has no delimiter in it: matching its octets is matching the word.
                    starts_with_ci(rest, p.as_bytes())
                };
                if hit {
                    return Some(p.clone());
                }
            }
            i = end.unwrap_or_else(|| word_end(body, i + 1));
        }
        None
    }

    /// [`ImFilter::check`] on raw body octets (the proxy's path: no lossy copy of the body).
    pub fn check_bytes(&self, body: &[u8]) -> FilterVerdict {
        if self.action == FilterAction::Allow {
            return FilterVerdict::Pass;
        }
        match self.first_match_bytes(body) {
            None => FilterVerdict::Pass,
            Some(prefix) if self.action == FilterAction::Warn => FilterVerdict::Warn { prefix },
            Some(prefix) => FilterVerdict::Block { prefix },
        }
    }
}

/// [`OCTET_CLASS`]: an octet of a word.
const WORD: u8 = 0;
/// [`OCTET_CLASS`]: an ASCII delimiter: whitespace (as `char::is_whitespace` has it) and `<>"'([`.
const DELIMITER: u8 = 1;
/// [`OCTET_CLASS`]: the lead octet of every multi-octet Unicode whitespace (U+0085 and U+00A0 start
/// 0xC2, U+1680 0xE1, U+2000..U+205F 0xE2, U+3000 0xE3): a delimiter if the sequence decodes to one.
const MAYBE_SPACE: u8 = 2;

// Indexing in a const initialiser runs at compile time: an index out of range is a build error,
// never a panic on wire input.
#[allow(clippy::indexing_slicing)]
const OCTET_CLASS: [u8; 256] = {
    let mut t = [WORD; 256];
    let set = [
        b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', b'<', b'>', b'"', b'\'', b'(', b'[',
    ];
    let mut k = 0;
    while k < set.len() {
        t[set[k] as usize] = DELIMITER;
        k += 1;
    }
    t[0xc2] = MAYBE_SPACE;
    t[0xe1] = MAYBE_SPACE;
    t[0xe2] = MAYBE_SPACE;
    t[0xe3] = MAYBE_SPACE;
    t
};

/// The word and bit of [`ImFilter`]'s pair table for a word's first two octets (ASCII case folded).
#[inline]
fn pair_bit(a: u8, b: u8) -> (usize, u64) {
    let n = usize::from(a.to_ascii_lowercase()) << 8 | usize::from(b.to_ascii_lowercase());
    (n >> 6, 1u64 << (n & 63))
}

#[inline]
fn octet_class(b: u8) -> u8 {
    OCTET_CLASS.get(usize::from(b)).copied().unwrap_or(WORD)
}

/// The width of the multi-octet Unicode whitespace at `i` (0: none, or not valid UTF-8).
fn unicode_space_width(body: &[u8], i: usize) -> usize {
    let len = match body.get(i) {
        Some(0xc2) => 2,
        Some(0xe1..=0xe3) => 3,
        _ => return 0,
    };
    body.get(i..i + len)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.chars().next())
        .filter(|c| c.is_whitespace())
        .map_or(0, |_| len)
}

/// Where the word containing `i` ends (the next delimiter at or after `i`, or the end).
#[inline]
fn word_end(body: &[u8], mut i: usize) -> usize {
    while let Some(&b) = body.get(i) {
        match octet_class(b) {
            WORD => i += 1,
            DELIMITER => return i,
            _ if unicode_space_width(body, i) > 0 => return i,
            _ => i += 1,
        }
    }
    i
}

/// Whether `word` starts with `prefix`, ASCII case-insensitively (`prefix` is lower case).
fn starts_with_ci(word: &[u8], prefix: &[u8]) -> bool {
    word.get(..prefix.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(prefix))
}

/// `pattern` (lower case) at the start of `word`, `*` matching any run of characters (a word has no
/// spaces), ASCII case-insensitively.
fn prefix_matches(pattern: &str, w: &[u8]) -> bool {
    match pattern.split_once('*') {
        None => starts_with_ci(w, pattern.as_bytes()),
        Some((head, tail)) => {
            starts_with_ci(w, head.as_bytes())
                && w.get(head.len()..).is_some_and(|rest| {
                    (0..=rest.len())
                        .any(|i| rest.get(i..).is_some_and(|r| starts_with_ci(r, tail.as_bytes())))
                })
        }
    }
}

/// The filter as it was first written (lower-cased copy, every prefix against every word): the
/// oracle the tests and the benchmark compare the one-pass filter with.
#[doc(hidden)]
pub fn reference_first_match(prefixes: &[String], text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let words = lower.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | '['));
    for word in words.filter(|w| !w.is_empty()) {
        let found = prefixes.iter().find(|p| match p.split_once('*') {
            None => word.starts_with(p.as_str()),
            Some((head, tail)) => word.strip_prefix(head).is_some_and(|rest| {
                (0..=rest.len()).any(|i| rest.get(i..).is_some_and(|r| r.starts_with(tail)))
            }),
        });
        if let Some(p) = found {
            return Some(p.clone());
        }
    }
    None
}

impl ImFilter {
    /// [`ImFilter::check`]'s matching alone (for the benchmark and the oracle test).
    #[doc(hidden)]
    pub fn first_match_for_bench(&self, text: &str) -> Option<String> {
        self.first_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass filter agrees with the reference on every body of a generated set: words from
    /// a vocabulary of near-misses, case variants, delimiters, non-ASCII, every default prefix.
    #[test]
    fn one_pass_agrees_with_the_reference() {
        let vocab = [
            "https://x",
            "HTTP:",
            "http",
            "htt",
            "www3.example",
            "WWW.",
            "www",
            "ww.x",
            "href=",
            "Href",
            "sip:bob",
            "sips:",
            "sipx",
            "tel:+1",
            "mailto:a@b",
            "ftp.example",
            "ftp:",
            "news:",
            "callto:",
            "file:",
            "nntp:",
            "telnet:",
            "gopher:",
            "ldap:",
            "hello",
            "café",
            "naïve",
            "\u{3000}https:",
            "",
            "*",
            "(http:",
            "[www.",
            "<https:",
            "'ftp.",
            "\"tel:",
        ];
        // Every lead octet of a Unicode space (U+0085, U+00A0, U+1680, U+2003, U+205F, U+3000) and
        // non-spaces that share those leads (U+00E9, U+2010, U+E000).
        let seps = [
            " ", "\t", "\n", "<", ">", "\"", "'", "(", "[", "\u{a0}", ",", ".", "\u{85}", "\u{1680}",
            "\u{2003}", "\u{205f}", "\u{3000}", "\u{e9}", "\u{2010}", "\u{e000}",
        ];
        let filters = [
            ImFilter::default(),
            ImFilter::new(
                vec!["*x".into(), "www*.".into(), "Sip:".into()],
                FilterAction::Block,
            ),
            ImFilter::new(vec![], FilterAction::Block),
            // Short prefixes: one octet, `*` second, non-ASCII (the pair table's edge cases).
            ImFilter::new(
                vec!["h".into(), "t*:".into(), "caf\u{e9}".into(), "\u{e9}".into()],
                FilterAction::Block,
            ),
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..next(8) {
                text.push_str(vocab[next(vocab.len())]);
                text.push_str(seps[next(seps.len())]);
            }
            // Some bodies get an invalid UTF-8 octet: the octet path must agree with the lossy string.
            let mut bytes = text.clone().into_bytes();
            if next(4) == 0 {
                let at = next(bytes.len() + 1);
                bytes.insert(at, [0xff, 0xc3, 0xa0, 0xe3][next(4)]);
            }
            let lossy = String::from_utf8_lossy(&bytes).into_owned();
            for f in &filters {
                assert_eq!(
                    f.first_match(&text),
                    reference_first_match(f.prefixes(), &text),
                    "{text:?} with {:?}",
                    f.prefixes()
                );
                assert_eq!(
                    f.first_match_bytes(&bytes),
                    reference_first_match(f.prefixes(), &lossy),
                    "{bytes:?} with {:?}",
                    f.prefixes()
                );
            }
        }
    }

    #[test]
    fn default_filter_blocks_links() {
        let f = ImFilter::default();
        assert_eq!(
            f.check("see https://example.com now"),
            FilterVerdict::Block {
                prefix: "https:".into()
            }
        );
        assert_eq!(
            f.check("HTTP://X"),
            FilterVerdict::Block {
                prefix: "http:".into()
            }
        );
        assert_eq!(
            f.check("go to www3.example.com"),
            FilterVerdict::Block {
                prefix: "www*.".into()
            }
        );
        assert_eq!(
            f.check("<a href=x>"),
            FilterVerdict::Block {
                prefix: "href".into()
            }
        );
        assert_eq!(f.check("hello, lunch at noon?"), FilterVerdict::Pass);
        assert_eq!(f.check("a wwwx b"), FilterVerdict::Pass);
        assert_eq!(
            f.check("xhttp://"),
            FilterVerdict::Pass,
            "only at the start of a word"
        );
        assert!(f.blocks_scheme("https:"));
        assert!(f.blocks_scheme("http:"));
    }

    #[test]
    fn actions() {
        let warn = ImFilter::new(vec!["http:".into()], FilterAction::Warn);
        assert_eq!(
            warn.check("http://x"),
            FilterVerdict::Warn {
                prefix: "http:".into()
            }
        );
        assert!(!warn.blocks_scheme("http:"));
        let allow = ImFilter::new(vec!["http:".into()], FilterAction::Allow);
        assert_eq!(allow.check("http://x"), FilterVerdict::Pass);
        let custom = ImFilter::new(vec!["FTP:".into()], FilterAction::Block);
        assert!(!custom.blocks_scheme("https:"));
        assert_eq!(FilterAction::parse("WARN"), Some(FilterAction::Warn));
        assert_eq!(FilterAction::parse("drop"), None);
    }
}
