//! Log output of the shell: each `LogRecord` (the core's and the shell's own) as one JSON line on
//! stderr; `worker.rs` decides what is written.

use std::time::SystemTime;

use crate::proxy::io::{Level, LogRecord};

/// One log record as one JSON line on stderr: `ts`, `level`, `event`, `text`, `worker`, then the
/// record's fields (which never override those five).
pub(crate) fn write_log(worker: usize, record: &LogRecord) {
    let line = log_line(worker, record, SystemTime::now());
    // Under `cargo test` through the harness's capture; in production straight to fd 2, ignoring
    // a closed stderr rather than panicking like `eprintln!`.
    #[cfg(test)]
    eprintln!("{line}");
    #[cfg(not(test))]
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), format!("{line}\n").as_bytes());
}

/// The `ts` of every log line the edge writes, workers' and the process's alike: Unix time in
/// seconds with millisecond precision (`1796663267.57`).
pub fn timestamp(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0)
}

/// A shell log record without fields.
pub(crate) fn record(level: Level, event: &'static str, text: String) -> LogRecord {
    LogRecord {
        level,
        event,
        text,
        fields: Vec::new(),
    }
}

pub(crate) fn log_line(worker: usize, record: &LogRecord, at: SystemTime) -> String {
    let mut obj = serde_json::Map::new();
    for (k, v) in &record.fields {
        obj.insert((*k).to_owned(), serde_json::Value::String(v.clone()));
    }
    let ts = timestamp(at);
    let level = match record.level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    obj.insert("ts".to_owned(), serde_json::json!(ts));
    obj.insert("level".to_owned(), serde_json::json!(level));
    obj.insert("event".to_owned(), serde_json::json!(record.event));
    obj.insert("text".to_owned(), serde_json::json!(record.text));
    obj.insert("worker".to_owned(), serde_json::json!(worker));
    serde_json::Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn log_lines_are_json_with_fixed_keys_winning() {
        let record = LogRecord {
            level: Level::Warn,
            event: "federation_refused",
            text: "domain [x] is unknown".to_owned(),
            fields: vec![
                ("domain", "x.example".to_owned()),
                ("event", "spoofed".to_owned()),
            ],
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
        let line = log_line(3, &record, at);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "federation_refused");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["worker"], 3);
        assert_eq!(v["domain"], "x.example");
        assert_eq!(v["ts"], 1.5);
    }
}
