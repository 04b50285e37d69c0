//! The known-server table as structured log events (docs/architecture.md, Logging): one
//! `known_server` event per entry when the edge starts — the information Lync's Access Edge logs
//! as event 14492, so the field can compare the two — and on a reload one per entry added (Lync
//! event 14493), removed (14495) or changed (logged as re-added, 14493, with the old entry).
//! [`diff`] is the comparison; [`log_table`] writes the start's events to stderr as JSON lines,
//! [`reload_events`] makes a reload's (logged by `reload.rs` with the rest of the reload's
//! differences).

use federation_policy::KnownServer;

/// The Lync event id an operator knows for the known-server table (logged at start).
pub const LYNC_EVENT_ID: u32 = 14492;
/// Lync's event for a server added to the known-server table.
pub const LYNC_EVENT_ADDED: u32 = 14493;
/// Lync's event for a server removed from the known-server table.
pub const LYNC_EVENT_REMOVED: u32 = 14495;

/// When a change is logged: the table at start, or a reload's difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Start,
    Reload,
}

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
pub fn event(change: &Change<'_>, when: When) -> serde_json::Value {
    let (what, k, old) = match change {
        Change::Added(k) => ("added", *k, None),
        Change::Removed(k) => ("removed", *k, None),
        Change::Changed { old, new } => ("changed", *new, Some(*old)),
    };
    let (lync_event, meaning) = match (when, change) {
        (When::Start, _) => (LYNC_EVENT_ID, "the known-server table"),
        (When::Reload, Change::Removed(_)) => {
            (LYNC_EVENT_REMOVED, "a server removed from the known-server table")
        }
        (When::Reload, _) => (LYNC_EVENT_ADDED, "a server added to the known-server table"),
    };
    let mut text = format!(
        "known server {} version {}{} {what} (Lync event {lync_event}: {meaning})",
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
        "lync_event": lync_event,
        "text": text,
    });
    if let (Some(o), Some(map)) = (old, record.as_object_mut()) {
        map.insert("old_fqdn".into(), o.fqdn.to_string().into());
        map.insert("old_version".into(), o.version.clone().into());
    }
    record
}

/// Logs the whole table at start on stderr, one JSON line per entry (Lync event 14492).
pub fn log_table<'a>(table: impl IntoIterator<Item = &'a KnownServer>) {
    let table: Vec<_> = table.into_iter().collect();
    for change in diff(&[], &table) {
        crate::log::emit(event(&change, When::Start));
    }
}

/// A reload's changes from `old` to `new` as log records (Lync events 14493 and 14495).
pub fn reload_events<'a>(
    old: impl IntoIterator<Item = &'a KnownServer>,
    new: impl IntoIterator<Item = &'a KnownServer>,
) -> Vec<serde_json::Value> {
    let (old, new): (Vec<_>, Vec<_>) = (old.into_iter().collect(), new.into_iter().collect());
    diff(&old, &new).iter().map(|c| event(c, When::Reload)).collect()
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
            event(&changes[0], When::Start),
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
        let changed = event(&changes[2], When::Reload);
        assert_eq!(changed["change"], "changed");
        assert_eq!(changed["old_version"], "6");
        assert_eq!(
            changed["text"],
            "known server fe2.corp.example version 7 changed (Lync event 14493: a server added to the \
             known-server table); was fe2.corp.example version 6"
        );
        assert_eq!(changed["lync_event"], 14493);
        let gone = event(&removed[0], When::Reload);
        assert_eq!(
            (&gone["change"], &gone["lync_event"]),
            (&"removed".into(), &14495.into())
        );
        assert_eq!(event(&changes[1], When::Reload)["lync_event"], 14493);
        assert!(diff(&old_refs, &old_refs).is_empty());
    }
}
