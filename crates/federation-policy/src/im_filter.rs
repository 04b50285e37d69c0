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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImFilter {
    prefixes: Vec<String>,
    action: FilterAction,
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
        ImFilter {
            prefixes: prefixes.into_iter().map(|p| p.to_ascii_lowercase()).collect(),
            action,
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

    fn first_match(&self, text: &str) -> Option<String> {
        let lower = text.to_ascii_lowercase();
        let words =
            lower.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | '['));
        for word in words.filter(|w| !w.is_empty()) {
            if let Some(p) = self.prefixes.iter().find(|p| prefix_matches(p, word)) {
                return Some(p.clone());
            }
        }
        None
    }
}

/// `pattern` at the start of `word`, `*` matching any run of characters (a word has no spaces).
fn prefix_matches(pattern: &str, word: &str) -> bool {
    match pattern.split_once('*') {
        None => word.starts_with(pattern),
        Some((head, tail)) => word
            .strip_prefix(head)
            .is_some_and(|rest| (0..=rest.len()).any(|i| rest.get(i..).is_some_and(|r| r.starts_with(tail)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
