//! `;name[=value]` parameter lists, as used by URIs, Via, name-addr headers, Event, ms-diagnostics.
//! [`Params`] borrows the raw list and walks it on demand; `SEMI` and `EQUAL` may carry linear
//! whitespace (folds included) around them, and quoted values may contain `;`.

use crate::error::ValueError;
use crate::scan;

/// A borrowed parameter list: the text after the first `;` (that `;` excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
    present: bool,
}

/// One parameter: a name and, unless it is a flag, its value as written (quotes kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub name: &'a str,
    pub value: Option<&'a str>,
}

impl<'a> Params<'a> {
    /// `raw` is what follows the first `;` of the list (may be empty).
    pub fn new(raw: &'a str) -> Self {
        Params { raw, present: true }
    }

    /// No list at all (no `;` was written).
    pub fn none() -> Self {
        Params {
            raw: "",
            present: false,
        }
    }

    /// Builds the list from whatever follows a value: `Some(text after ';')` or `None`.
    pub(crate) fn from_tail(tail: Option<&'a str>) -> Self {
        tail.map_or_else(Params::none, Params::new)
    }

    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        !self.present
    }

    pub fn iter(&self) -> ParamIter<'a> {
        let quoted = memchr::memchr(b'"', self.raw.as_bytes()).is_some();
        ParamIter {
            rest: self.present.then_some(self.raw),
            quoted,
        }
    }

    /// The parameter `name` (case-insensitive): `Some(None)` for a flag, `Some(Some(v))` with a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value)
    }

    /// The value of `name` with surrounding quotes removed (escapes kept as written).
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten().map(unquote)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Strict check: every name a token, every value a token, a host or a closed quoted string.
    pub fn validate(&self) -> Result<(), ValueError> {
        for p in self.iter() {
            if !scan::is_token_str(p.name) {
                return Err(ValueError::Malformed("parameter name"));
            }
            if let Some(v) = p.value {
                let ok = if let Some(inner) = v.strip_prefix('"') {
                    closes_quote(inner)
                } else {
                    !v.is_empty()
                        && v.bytes()
                            .all(|b| scan::is_token(b) || matches!(b, b':' | b'[' | b']' | b'/' | b'@'))
                };
                if !ok {
                    return Err(ValueError::Malformed("parameter value"));
                }
            }
        }
        Ok(())
    }
}

/// Iterator over [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: Option<&'a str>,
    /// Whether a quoted value may hide a `;` (else the cuts are plain byte searches).
    quoted: bool,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let rest = self.rest?;
        // A quoted value may hide a `;`; without quotes a plain byte search is enough. The first `=`
        // always separates name and value (names are tokens, so it comes before any quote).
        let end = if self.quoted {
            scan::find_unquoted(rest.as_bytes(), b';')
        } else {
            memchr::memchr(b';', rest.as_bytes())
        };
        self.rest = end.and_then(|e| rest.get(e + 1..));
        let item = rest.get(..end.unwrap_or(rest.len())).unwrap_or("");
        Some(match memchr::memchr(b'=', item.as_bytes()) {
            Some(e) => Param {
                name: scan::trim(item.get(..e).unwrap_or("")),
                value: Some(scan::trim(item.get(e + 1..).unwrap_or(""))),
            },
            None => Param {
                name: scan::trim(item),
                value: None,
            },
        })
    }
}

/// `"text"` → `text`; anything else unchanged.
pub(crate) fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v)
}

/// True when `inner` (the text after an opening quote) is exactly a quoted-string's remainder.
fn closes_quote(inner: &str) -> bool {
    let mut escaped = false;
    for (i, b) in inner.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return i + 1 == inner.len();
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_flags_values_and_whitespace() {
        let p = Params::new("branch = z9hG4bK1 ;\r\n lr; reason=\"a;b\";RPORT");
        let all: Vec<_> = p.iter().collect();
        assert_eq!(all.len(), 4);
        assert_eq!(p.get("branch"), Some(Some("z9hG4bK1")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.value("reason"), Some("a;b"));
        assert!(p.contains("rport"));
        assert_eq!(p.get("missing"), None);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn rejects_empty_and_bad_parameters() {
        assert!(Params::none().validate().is_ok());
        assert_eq!(Params::none().iter().count(), 0);
        assert!(Params::new("").validate().is_err());
        assert!(Params::new(";").validate().is_err());
        assert!(Params::new("a;;b").validate().is_err());
        assert!(Params::new("a=").validate().is_err());
        assert!(Params::new("a=\"open").validate().is_err());
        assert!(Params::new("a=\"x\"y").validate().is_err());
        assert!(Params::new("a b=c").validate().is_err());
        assert!(Params::new("received=[2001:db8::1]").validate().is_ok());
        assert!(Params::new("x=\"esc\\\"aped\"").validate().is_ok());
    }
}
