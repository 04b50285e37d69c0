//! The key schema of the configuration file and the walk that checks the merged tree (file + env)
//! against it before serde sees it: every unknown key and every value of the wrong type is reported
//! with its full key path (`federation.allowed[2].domain`), all at once, and removed so that the rest
//! can still be deserialised and validated. Values set through the environment arrive as strings and
//! are converted here by the schema (`"true"` → bool, `"a,b"` → list). A unit test keeps this table
//! and the serde structs of `file.rs` in step.

use std::collections::BTreeMap;

use config::{Value, ValueKind};

use super::Issues;

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Bool,
    /// An integer; its range is the key's own, checked once by `validate::number` (so a negative
    /// number and one too large get the same message).
    Int,
    /// A version number as Lync writes it: an integer (`6`) or a numeric string (`"7.0"`); kept as
    /// its text for validation (`sections.rs`).
    Version,
    StrList,
    Table(&'static [Field]),
    TableList(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

const EDGE: &[Field] = &[
    f("fqdn", Kind::Str),
    f("sip_domains", Kind::StrList),
    f("workers", Kind::Int),
];
const KNOWN_SERVER: &[Field] = &[f("fqdn", Kind::Str), f("version", Kind::Version)];
const INTERNAL: &[Field] = &[
    f("fqdn", Kind::Str),
    f("listen", Kind::Str),
    f("next_hop", Kind::Str),
    f("cert_file", Kind::Str),
    f("key_file", Kind::Str),
    f("ca_file", Kind::Str),
    f("known_servers", Kind::TableList(KNOWN_SERVER)),
];
const EXTERNAL: &[Field] = &[
    f("listen", Kind::Str),
    f("cert_file", Kind::Str),
    f("key_file", Kind::Str),
    f("ca_file", Kind::Str),
];
const ALLOWED: &[Field] = &[
    f("domain", Kind::Str),
    f("proxy_fqdn", Kind::Str),
    f("comment", Kind::Str),
];
const BLOCKED: &[Field] = &[f("domain", Kind::Str)];
const PROVIDER: &[Field] = &[
    f("name", Kind::Str),
    f("proxy_fqdn", Kind::Str),
    f("enabled", Kind::Bool),
    f("verification_level", Kind::Str),
];
const FEDERATION: &[Field] = &[
    f("enable_partner_discovery", Kind::Bool),
    f("discovery_messages_per_second", Kind::Int),
    f("discovery_contacts_per_hour", Kind::Int),
    f("allowed", Kind::TableList(ALLOWED)),
    f("blocked", Kind::TableList(BLOCKED)),
    f("hosted_providers", Kind::TableList(PROVIDER)),
];
const PUSH: &[Field] = &[
    f("proxy_uri", Kind::Str),
    f("timeout_ms", Kind::Int),
    f("max_retries", Kind::Int),
    f("backoff_ms", Kind::Int),
    f("backoff_max_ms", Kind::Int),
    f("breaker_failures", Kind::Int),
    f("breaker_cooldown_ms", Kind::Int),
];
const IM_FILTER: &[Field] = &[f("blocked_prefixes", Kind::StrList), f("action", Kind::Str)];
const HOST: &[Field] = &[f("name", Kind::Str), f("ip", Kind::Str)];
const DNS: &[Field] = &[f("servers", Kind::StrList), f("hosts", Kind::TableList(HOST))];
const METRICS: &[Field] = &[f("listen", Kind::Str), f("network_policy", Kind::Bool)];
const LIMITS: &[Field] = &[
    f("max_message_bytes", Kind::Int),
    f("max_connections", Kind::Int),
    f("handshake_timeout_ms", Kind::Int),
    f("keepalive_interval_s", Kind::Int),
    f("max_connections_per_ip", Kind::Int),
    f("idle_timeout_s", Kind::Int),
    f("message_timeout_ms", Kind::Int),
    f("connect_timeout_ms", Kind::Int),
    f("outgoing_tls_per_partner", Kind::Int),
    f("transaction_timeout_ms", Kind::Int),
    f("invite_timeout_ms", Kind::Int),
    f("max_subscriptions", Kind::Int),
];

const POOL: &[Field] = &[
    f("redis", Kind::Str),
    f("replica", Kind::Str),
    f("redis_down", Kind::Str),
    f("redis_password_file", Kind::Str),
];

/// The root of the file.
pub const ROOT: &[Field] = &[
    f("edge", Kind::Table(EDGE)),
    f("internal", Kind::Table(INTERNAL)),
    f("external", Kind::Table(EXTERNAL)),
    f("federation", Kind::Table(FEDERATION)),
    f("push", Kind::Table(PUSH)),
    f("im_filter", Kind::Table(IM_FILTER)),
    f("dns", Kind::Table(DNS)),
    f("metrics", Kind::Table(METRICS)),
    f("limits", Kind::Table(LIMITS)),
    f("pool", Kind::Table(POOL)),
];

/// The origin `config` gives values read from the environment.
const ENV_ORIGIN: &str = "the environment";

/// An environment override: the variable's name and raw value, by the key path it sets.
pub type EnvOverrides = BTreeMap<String, (String, String)>;

/// Checks `root` against [`ROOT`]: reports and removes unknown keys and mistyped values, converts
/// environment strings to the schema's kind.
pub fn check(root: &mut Value, env: &EnvOverrides, issues: &mut Issues) {
    if !matches!(root.kind, ValueKind::Table(_)) {
        root.kind = ValueKind::Table(config::Map::new());
    }
    check_kind(root, Kind::Table(ROOT), "", env, issues);
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Whether `value` has the kind (after converting an environment string); `false` means reported.
fn check_kind(value: &mut Value, kind: Kind, path: &str, env: &EnvOverrides, issues: &mut Issues) -> bool {
    if let Kind::TableList(_) = kind {
        let vars: Vec<&str> = env
            .iter()
            .filter(|(p, _)| is_at_or_below(p, path))
            .map(|(_, (var, _))| var.as_str())
            .collect();
        if !vars.is_empty() {
            issues.push(
                path,
                format!(
                    "set by environment variable {}: a list of tables ([[{path}]]) cannot be set from the \
                     environment; such keys ({}) are set in the configuration file",
                    vars.join(", "),
                    table_lists().join(", ")
                ),
            );
            return false;
        }
    }
    if value.origin() == Some(ENV_ORIGIN) {
        if let Some((var, raw)) = env.get(path) {
            if !matches!(kind, Kind::Table(_) | Kind::TableList(_)) {
                return convert_env(value, kind, path, var, raw, issues);
            }
        }
    }
    match (kind, &mut value.kind) {
        (Kind::Str, ValueKind::String(_)) | (Kind::Bool, ValueKind::Boolean(_)) => true,
        (Kind::Int, ValueKind::I64(_)) => true,
        (Kind::Int, ValueKind::U64(n)) => match i64::try_from(*n) {
            Ok(v) => {
                value.kind = ValueKind::I64(v);
                true
            }
            Err(_) => {
                issues.push(
                    path,
                    format!("{n} is out of range: expected a whole number of this key's range"),
                );
                false
            }
        },
        (Kind::Version, ValueKind::String(_)) => true,
        (Kind::Version, ValueKind::I64(n)) if *n >= 0 => {
            value.kind = ValueKind::String(n.to_string());
            true
        }
        (Kind::Version, ValueKind::U64(n)) => {
            value.kind = ValueKind::String(n.to_string());
            true
        }
        (Kind::Version, ValueKind::Float(x)) if x.is_finite() && *x >= 0.0 => {
            value.kind = ValueKind::String(x.to_string());
            true
        }
        (Kind::StrList, ValueKind::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                if !matches!(item.kind, ValueKind::String(_)) {
                    issues.push(
                        format!("{path}[{i}]"),
                        format!("expected a string, found {}", describe(item)),
                    );
                    ok = false;
                }
            }
            ok
        }
        (Kind::Table(fields), ValueKind::Table(table)) => {
            check_table(table, fields, path, env, issues);
            true
        }
        (Kind::TableList(fields), ValueKind::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter_mut().enumerate() {
                let item_path = format!("{path}[{i}]");
                match &mut item.kind {
                    ValueKind::Table(table) => check_table(table, fields, &item_path, env, issues),
                    _ => {
                        issues.push(item_path, format!("expected a table, found {}", describe(item)));
                        ok = false;
                    }
                }
            }
            ok
        }
        _ => {
            issues.push(
                path,
                format!("expected {}, found {}", expected(kind), describe(value)),
            );
            false
        }
    }
}

/// Whether key path `p` is `path` or a key below it.
fn is_at_or_below(p: &str, path: &str) -> bool {
    p.strip_prefix(path)
        .is_some_and(|r| r.is_empty() || r.starts_with('.'))
}

/// Calls `visit` with the path and kind of every key below `fields` (lists of tables as `name[]`
/// for the keys inside them), tables first, then their keys.
fn walk(fields: &[Field], prefix: &str, visit: &mut impl FnMut(&str, Kind)) {
    for fl in fields {
        let p = join(prefix, fl.name);
        visit(&p, fl.kind);
        match fl.kind {
            Kind::Table(sub) => walk(sub, &p, visit),
            Kind::TableList(sub) => walk(sub, &format!("{p}[]"), visit),
            _ => {}
        }
    }
}

/// The key paths of the lists of tables (`federation.allowed`, …), in schema order.
fn table_lists() -> Vec<String> {
    let mut out = Vec::new();
    walk(ROOT, "", &mut |p, kind| {
        if matches!(kind, Kind::TableList(_)) {
            out.push(p.to_owned());
        }
    });
    out
}

fn check_table(
    table: &mut config::Map<String, Value>,
    fields: &[Field],
    path: &str,
    env: &EnvOverrides,
    issues: &mut Issues,
) {
    // In file order (`config` keeps it), environment overrides of new keys last.
    let mut rejected: Vec<String> = Vec::new();
    for (key, value) in table.iter_mut() {
        let key_path = join(path, key);
        let keep = match fields.iter().find(|fl| fl.name == key) {
            Some(field) => check_kind(value, field.kind, &key_path, env, issues),
            None => {
                let var = env.iter().find(|(p, _)| is_at_or_below(p, &key_path));
                issues.push(&key_path, unknown_key(key, fields, var.map(|(_, v)| v)));
                false
            }
        };
        if !keep {
            rejected.push(key.clone());
        }
    }
    table.retain(|k, _| !rejected.contains(k));
}

fn unknown_key(key: &str, fields: &[Field], from_env: Option<&(String, String)>) -> String {
    let mut text = String::from("unknown key");
    if let Some((var, _)) = from_env {
        text.push_str(&format!(" (set by environment variable {var})"));
    }
    if let Some(near) = fields
        .iter()
        .map(|fl| fl.name)
        .find(|name| edit_distance(name, key) <= 2)
    {
        text.push_str(&format!("; did you mean `{near}`?"));
    } else {
        let names: Vec<&str> = fields.iter().map(|fl| fl.name).collect();
        text.push_str(&format!("; expected one of: {}", names.join(", ")));
    }
    text
}

/// An environment value, converted by the key's kind; reports and returns `false` if it does not fit.
fn convert_env(value: &mut Value, kind: Kind, path: &str, var: &str, raw: &str, issues: &mut Issues) -> bool {
    let converted = match kind {
        Kind::Str | Kind::Version => Some(ValueKind::String(raw.to_owned())),
        Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(ValueKind::Boolean(true)),
            "false" | "0" | "no" | "off" => Some(ValueKind::Boolean(false)),
            _ => None,
        },
        Kind::Int => raw.trim().parse::<i64>().ok().map(ValueKind::I64),
        Kind::StrList => Some(ValueKind::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::new(None, ValueKind::String(s.to_owned())))
                .collect(),
        )),
        Kind::Table(_) | Kind::TableList(_) => None,
    };
    match converted {
        Some(kind) => {
            value.kind = kind;
            true
        }
        None => {
            issues.push(path, format!("{var}={raw:?}: expected {}", expected(kind)));
            false
        }
    }
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "a string",
        Kind::Bool => "true or false",
        Kind::Int => "a whole number",
        Kind::Version => "a version number (6, \"7.0\")",
        Kind::StrList => "a list of strings",
        Kind::Table(_) => "a table",
        Kind::TableList(_) => "a list of tables ([[...]])",
    }
}

fn describe(v: &Value) -> String {
    match &v.kind {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::Boolean(b) => format!("boolean {b}"),
        ValueKind::I64(n) => format!("integer {n}"),
        ValueKind::I128(n) => format!("integer {n}"),
        ValueKind::U64(n) => format!("integer {n}"),
        ValueKind::U128(n) => format!("integer {n}"),
        ValueKind::Float(x) => format!("float {x}"),
        ValueKind::String(s) => format!("string {s:?}"),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "a list".to_owned(),
    }
}

/// Levenshtein distance, for "did you mean" (keys are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// Every key path of the schema, arrays of tables written `name[]` (for the drift test).
#[cfg(test)]
pub fn all_paths() -> Vec<String> {
    let mut out = Vec::new();
    walk(ROOT, "", &mut |p, kind| {
        if !matches!(kind, Kind::Table(_) | Kind::TableList(_)) {
            out.push(p.to_owned());
        }
    });
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("fqdn", "fqdn"), 0);
        assert_eq!(edit_distance("fqdn", "fqnd"), 2);
        assert_eq!(edit_distance("listen", "listne"), 2);
        assert_eq!(edit_distance("fqdn", "fqdn_x"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
