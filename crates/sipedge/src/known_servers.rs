//! The known-server table as structured log events (design brief §5): one `known_server` event per
//! entry when the edge starts, and on a reload one per entry added, removed or changed — the
//! information Lync's Access Edge logs as event 14492, so the field can compare the two. [`diff`] is
//! the comparison; [`log_changes`] writes its events to stderr as JSON lines (start: `diff` against an
//! empty table).

use federation_policy::KnownServer;

/// The Lync event id an operator knows for the known-server table.
pub const LYNC_EVENT_ID: u32 = 14492;

/// One difference between two known-server tables, keyed by host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<'a> {
    Added(&'a KnownServer),
    Removed(&'a KnownServer),
    /// Same host, another version or port.
    Changed {
        old: &'a KnownServer,
        new: &'a KnownServer,
    },
}

/// What changed from `old` to `new`: removed entries first (in `old`'s order), then added and changed
/// ones (in `new`'s order). Entries are matched by host; an identical entry is no change.
pub fn diff<'a>(old: &[&'a KnownServer], new: &[&'a KnownServer]) -> Vec<Change<'a>> {
    let find = |list: &[&'a KnownServer], k: &KnownServer| {
        list.iter().copied().find(|o| o.fqdn.host() == k.fqdn.host())
    };
    let mut out: Vec<Change<'a>> = old
        .iter()
        .filter(|o| find(new, o).is_none())
        .map(|o| Change::Removed(o))
        .collect();
    for n in new {
        match find(old, n) {
            None => out.push(Change::Added(n)),
            Some(o) if o.version != n.version || o.fqdn.port() != n.fqdn.port() => {
                out.push(Change::Changed { old: o, new: n });
            }
            Some(_) => {}
        }
    }
    out
}

/// The product a Lync version number stands for, where the documents say.
fn product(version: &str) -> &'static str {
    match version {
        "6" => " (Lync 2013)",
        "5" => " (Lync 2010)",
        "0" => " (any version)",
        _ => "",
    }
}

/// The JSON log record of one change.
pub fn event(change: &Change<'_>) -> serde_json::Value {
    let (what, k, old) = match change {
        Change::Added(k) => ("added", *k, None),
        Change::Removed(k) => ("removed", *k, None),
        Change::Changed { old, new } => ("changed", *new, Some(*old)),
    };
    let mut text = format!(
        "known server {} version {}{} {what} (Lync event {LYNC_EVENT_ID}: the known-server table)",
        k.fqdn,
        k.version,
        product(&k.version)
    );
    if let Some(o) = old {
        text.push_str(&format!("; was {} version {}", o.fqdn, o.version));
    }
    let mut record = serde_json::json!({
        "level": "info",
        "event": "known_server",
        "change": what,
        "fqdn": k.fqdn.to_string(),
        "version": k.version,
        "lync_event": LYNC_EVENT_ID,
        "text": text,
    });
    if let (Some(o), Some(map)) = (old, record.as_object_mut()) {
        map.insert("old_fqdn".into(), o.fqdn.to_string().into());
        map.insert("old_version".into(), o.version.clone().into());
    }
    record
}

/// Logs every change from `old` to `new` on stderr, one JSON line each (at start `old` is empty).
pub fn log_changes<'a>(
    old: impl IntoIterator<Item = &'a KnownServer>,
    new: impl IntoIterator<Item = &'a KnownServer>,
) {
    let (old, new): (Vec<_>, Vec<_>) = (old.into_iter().collect(), new.into_iter().collect());
    for change in diff(&old, &new) {
        eprintln!("{}", event(&change));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use federation_policy::Fqdn;

    fn k(fqdn: &str, version: &str) -> KnownServer {
        KnownServer {
            fqdn: Fqdn::parse(fqdn).unwrap(),
            version: version.to_owned(),
        }
    }

    #[test]
    fn start_lists_every_entry_as_added() {
        let (a, b) = (k("fe1.corp.example", "6"), k("mcx.corp.example", "0"));
        let changes = diff(&[], &[&a, &b]);
        assert_eq!(changes, [Change::Added(&a), Change::Added(&b)]);
        assert_eq!(
            event(&changes[0]),
            serde_json::json!({
                "level": "info",
                "event": "known_server",
                "change": "added",
                "fqdn": "fe1.corp.example",
                "version": "6",
                "lync_event": 14492,
                "text": "known server fe1.corp.example version 6 (Lync 2013) added (Lync event 14492: the known-server table)",
            })
        );
    }

    #[test]
    fn a_reload_logs_what_was_added_removed_and_changed() {
        let old = [
            k("fe1.corp.example", "6"),
            k("fe2.corp.example", "6"),
            k("mcx.corp.example", "5"),
        ];
        let new = [
            k("FE1.corp.example", "6"),
            k("mcx.corp.example:5062", "5"),
            k("fe3.corp.example", "7.1"),
            k("fe2.corp.example", "7"),
        ];
        let old_refs: Vec<&KnownServer> = old.iter().collect();
        let new_refs: Vec<&KnownServer> = new.iter().collect();
        let changes = diff(&old_refs, &new_refs);
        assert_eq!(
            changes,
            [
                Change::Changed {
                    old: &old[2],
                    new: &new[1]
                },
                Change::Added(&new[2]),
                Change::Changed {
                    old: &old[1],
                    new: &new[3]
                },
            ]
        );
        let removed = diff(&new_refs, &old_refs[..1]);
        assert_eq!(
            removed,
            [
                Change::Removed(&new[1]),
                Change::Removed(&new[2]),
                Change::Removed(&new[3])
            ]
        );
        let changed = event(&changes[2]);
        assert_eq!(changed["change"], "changed");
        assert_eq!(changed["old_version"], "6");
        assert_eq!(
            changed["text"],
            "known server fe2.corp.example version 7 changed (Lync event 14492: the known-server table); \
             was fe2.corp.example version 6"
        );
        assert_eq!(event(&removed[0])["change"], "removed");
        assert!(diff(&old_refs, &old_refs).is_empty());
    }
}
