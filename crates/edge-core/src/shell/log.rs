//! Log output: each `LogRecord` (the core's and the shell's own) as one JSON line, and the one
//! writer of the process's log. A worker never writes stderr itself: [`submit`] hands a line to a
//! bounded queue (no lock shared with other writers, never a wait), and one thread, `log`, writes
//! what is queued in as few writes as it can. A full queue drops the line and counts it
//! ([`dropped`]; the thread reports drops in a `log_lines_dropped` line of its own once there is
//! room). The binary's own events go through the same [`submit`], so lines never interleave, and
//! it calls [`flush`] before the process exits. `worker.rs` decides what is written.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::proxy::io::{Level, LogRecord};

/// Lines the queue holds before it drops (a burst of refusals' worth; ~2 MB at most).
const QUEUE: usize = 8192;

/// One log record as one JSON line: `ts`, `level`, `event`, `text`, `worker`, then the record's
/// fields (which never override those five).
pub(crate) fn write_log(worker: usize, record: &LogRecord) {
    submit(log_line(worker, record, SystemTime::now()));
}

enum Msg {
    Line(String),
    Flush(Sender<()>),
}

struct Writer {
    tx: Sender<Msg>,
    dropped: AtomicU64,
}

static WRITER: OnceLock<Option<Writer>> = OnceLock::new();

/// The process's writer, its thread started on first use (`None` if it cannot start: lines are
/// then written directly).
fn writer() -> Option<&'static Writer> {
    WRITER
        .get_or_init(|| {
            let (tx, rx) = crossbeam_channel::bounded(QUEUE);
            std::thread::Builder::new()
                .name("log".to_owned())
                .spawn(move || {
                    let out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
                    write_loop(&rx, out, dropped);
                })
                .ok()
                .map(|_| Writer {
                    tx,
                    dropped: AtomicU64::new(0),
                })
        })
        .as_ref()
}

/// Queues one line (without its newline) for the log; never blocks. Under `cargo test` the line
/// goes through the test harness's capture instead.
pub fn submit(line: String) {
    if cfg!(test) {
        eprintln!("{line}");
        return;
    }
    match writer() {
        Some(w) => match w.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                w.dropped.fetch_add(1, Ordering::Relaxed);
            }
        },
        None => {
            // A closed stderr is ignored rather than panicking like `eprintln!`.
            let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// [`submit`] for a thread off the message path (the binary's own events: reloads, shutdown),
/// which may wait up to `wait` for room rather than lose the line; dropped (and counted) after.
pub fn submit_waiting(line: String, wait: Duration) {
    if cfg!(test) {
        eprintln!("{line}");
        return;
    }
    match writer() {
        Some(w) => {
            if w.tx.send_timeout(Msg::Line(line), wait).is_err() {
                w.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        None => {
            let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Lines dropped because the queue was full, since start.
pub fn dropped() -> u64 {
    WRITER
        .get()
        .and_then(Option::as_ref)
        .map_or(0, |w| w.dropped.load(Ordering::Relaxed))
}

/// Waits, at most `timeout`, until every line queued so far is written (before the process exits).
pub fn flush(timeout: Duration) -> bool {
    let Some(w) = WRITER.get().and_then(Option::as_ref) else {
        return true;
    };
    let (ack, done) = crossbeam_channel::bounded(1);
    w.tx.send_timeout(Msg::Flush(ack), timeout).is_ok() && done.recv_timeout(timeout).is_ok()
}

/// The `log` thread: writes each line as it comes, and whatever else is queued by then with it,
/// then flushes once; `dropped` tells it how many lines the queue refused so far.
fn write_loop(rx: &Receiver<Msg>, mut out: impl Write, dropped: fn() -> u64) {
    let mut reported = 0;
    while let Ok(first) = rx.recv() {
        let mut acks = Vec::new();
        for msg in std::iter::once(first).chain(rx.try_iter()) {
            match msg {
                Msg::Line(line) => {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                Msg::Flush(ack) => acks.push(ack),
            }
        }
        let dropped = dropped();
        if dropped > reported {
            let line = serde_json::json!({
                "ts": timestamp(SystemTime::now()), "level": "warn", "event": "log_lines_dropped",
                "text": format!("{} log lines dropped: the log queue was full", dropped - reported),
                "count": (dropped - reported).to_string(),
            });
            let _ = writeln!(out, "{line}");
            reported = dropped;
        }
        let _ = out.flush();
        for ack in acks {
            let _ = ack.send(());
        }
    }
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

/// The replica name of an edge in a pool (`[pool] replica`), set once at start: every log line then
/// carries it as `replica`, so the lines of a pool's replicas can be merged and still told apart.
static REPLICA: OnceLock<String> = OnceLock::new();

/// Names this process's replica in every later log line (the first call wins).
pub fn set_replica(name: &str) {
    let _ = REPLICA.set(name.to_owned());
}

/// The replica name every log line carries (`None`: a standalone edge).
pub fn replica() -> Option<&'static str> {
    REPLICA.get().map(String::as_str)
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
    if let Some(r) = replica() {
        obj.insert("replica".to_owned(), serde_json::json!(r));
    }
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

#[cfg(test)]
mod writer_tests {
    use super::*;

    static DROPPED: AtomicU64 = AtomicU64::new(0);

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_keeps_the_order_reports_drops_and_acknowledges_a_flush() {
        let (tx, rx) = crossbeam_channel::bounded(16);
        let out = Shared::default();
        let sink = out.clone();
        let thread = std::thread::spawn(move || write_loop(&rx, sink, || DROPPED.load(Ordering::Relaxed)));
        tx.send(Msg::Line("one".into())).unwrap();
        DROPPED.store(3, Ordering::Relaxed);
        tx.send(Msg::Line("two".into())).unwrap();
        let (ack, done) = crossbeam_channel::bounded(1);
        tx.send(Msg::Flush(ack)).unwrap();
        done.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(tx);
        thread.join().unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let at = |l: &str| lines.iter().position(|x| *x == l).unwrap();
        assert!(at("one") < at("two"), "{text}");
        let report: Vec<&&str> = lines.iter().filter(|l| l.contains("log_lines_dropped")).collect();
        assert_eq!(report.len(), 1, "reported once: {text}");
        let v: serde_json::Value = serde_json::from_str(report[0]).unwrap();
        assert_eq!(
            (v["count"].as_str(), v["level"].as_str()),
            (Some("3"), Some("warn"))
        );
    }
}
