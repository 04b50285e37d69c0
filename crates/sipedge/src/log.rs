//! The process's own log events — start, configuration warnings, the known-server table, reloads,
//! certificates replaced, shutdown — as one JSON line each on stderr, in the workers' format
//! (`edge_core::shell`'s log lines): `ts` (Unix seconds, millisecond precision, the same clock and
//! form as the workers' lines), `level`, `event`, `text`, then the event's own fields.

use std::time::SystemTime;

use serde_json::Value;

/// Writes `record` (a JSON object) with its `ts`, through the process's one log writer (the
/// workers' too: `edge_core::shell::log`). Off the message path, so it waits up to a second for
/// room in a full queue rather than lose a reload's or a shutdown's record.
pub(crate) fn emit(record: Value) {
    edge_core::shell::log::submit_waiting(
        stamped(record, SystemTime::now()).to_string(),
        std::time::Duration::from_secs(1),
    );
}

/// `{level, event, text}`, written by [`emit`].
pub(crate) fn event(level: &str, event: &str, text: &str) {
    emit(serde_json::json!({ "level": level, "event": event, "text": text }));
}

/// "1 change", "2 changes", "0 changes": a count and its noun, for every text the binary prints.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `record` with `ts` set (a record that is no object is wrapped as its `text`).
fn stamped(record: Value, at: SystemTime) -> Value {
    let mut obj = match record {
        Value::Object(o) => o,
        other => {
            let mut o = serde_json::Map::new();
            o.insert("text".to_owned(), other);
            o
        }
    };
    obj.insert(
        "ts".to_owned(),
        serde_json::json!(edge_core::shell::log_timestamp(at)),
    );
    if let Some(r) = edge_core::shell::log::replica() {
        obj.insert("replica".to_owned(), serde_json::json!(r));
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(count(1, "change"), "1 change");
        assert_eq!(
            (count(0, "key"), count(2, "attempt")),
            ("0 keys".to_owned(), "2 attempts".to_owned())
        );
    }

    #[test]
    fn every_record_gets_the_workers_ts() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_663_267_570);
        let v = stamped(
            serde_json::json!({ "level": "info", "event": "reload_applied", "text": "x" }),
            at,
        );
        assert_eq!(v["ts"], 1_796_663_267.57);
        assert_eq!(v["event"], "reload_applied");
        let v = stamped(serde_json::json!("bare"), at);
        assert_eq!((v["text"].as_str(), v["ts"].is_f64()), (Some("bare"), true));
    }
}
