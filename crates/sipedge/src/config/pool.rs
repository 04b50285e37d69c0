//! `[pool]`: the edge as one replica of a pool that shares its discovered-partner limits through
//! Redis (`crate::pool`). Contract: `redis = "redis://host:port"` (`rediss://` for TLS; user and
//! password in the URL or the password in `redis_password_file`), `replica` (default: the host
//! name), `redis_down = "divide" | "refuse"` (default `divide`). The password never appears in an
//! error, a log line or the reload diff.

use std::path::Path;

use super::file::PoolFile;
use super::settings::{resolve_path, PoolSettings, RedisDown};
use super::Issues;

/// The longest replica name (it is a metric label value and part of Redis keys).
const MAX_REPLICA: usize = 64;

/// `Some(None)`: no `[pool]` (standalone). `None`: invalid (the problems recorded).
pub(super) fn validate(
    p: Option<&PoolFile>,
    base: Option<&Path>,
    i: &mut Issues,
) -> Option<Option<PoolSettings>> {
    let Some(p) = p else {
        return Some(None);
    };
    let mut ok = true;
    let url = match p.redis.as_deref().map(str::trim) {
        Some(u) => match RedisUrl::parse(u) {
            Ok(u) => Some(u),
            Err(why) => {
                // The URL may carry a password: only its scheme and host part are quoted.
                i.push("pool.redis", why);
                None
            }
        },
        None => {
            i.push(
                "pool.redis",
                "missing: the pool's Redis, redis://host:port (rediss:// for TLS)",
            );
            None
        }
    };
    let file_password = match p.redis_password_file.as_deref() {
        None => None,
        Some(f) => {
            let path = resolve_path(base, f);
            match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim_end_matches(['\r', '\n']).is_empty() => {
                    Some(s.trim_end_matches(['\r', '\n']).to_owned())
                }
                Ok(_) => {
                    i.push("pool.redis_password_file", format!("{} is empty", path.display()));
                    ok = false;
                    None
                }
                Err(e) => {
                    i.push(
                        "pool.redis_password_file",
                        format!("cannot read {}: {}", path.display(), e.kind()),
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    if file_password.is_some() && url.as_ref().is_some_and(|u| u.password.is_some()) {
        i.push(
            "pool.redis_password_file",
            "the password is given twice (in pool.redis and in this file): keep one",
        );
        ok = false;
    }
    let replica = match p.replica.as_deref() {
        Some(r) => r.trim().to_owned(),
        None => host_name(),
    };
    if replica.is_empty()
        || replica.len() > MAX_REPLICA
        || !replica
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        i.push(
            "pool.replica",
            format!("{replica:?}: 1 to {MAX_REPLICA} letters, digits, '.', '-' or '_'"),
        );
        ok = false;
    }
    let redis_down = match p.redis_down.as_deref().map(str::trim) {
        None | Some("divide") => Some(RedisDown::Divide),
        Some("refuse") => Some(RedisDown::Refuse),
        Some(other) => {
            i.push(
                "pool.redis_down",
                format!("{other:?}: \"divide\" (each replica admits its share) or \"refuse\""),
            );
            None
        }
    };
    let (url, redis_down) = (url?, redis_down?);
    ok.then(|| {
        Some(PoolSettings {
            redis: url.without_credentials,
            username: url.username,
            password: url.password.or(file_password),
            replica,
            redis_down,
        })
    })
}

/// The machine's host name (a pod's name on Kubernetes), or `sipedge` if it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sipedge".to_owned())
}

/// A Redis URL taken apart: the credentials out of the text that is logged and shown.
struct RedisUrl {
    without_credentials: String,
    username: Option<String>,
    password: Option<String>,
}

impl RedisUrl {
    fn parse(u: &str) -> Result<RedisUrl, String> {
        let Some((scheme, rest)) = u.split_once("://") else {
            return Err("not a URL: redis://host:port or rediss://host:port".to_owned());
        };
        if scheme != "redis" && scheme != "rediss" {
            return Err(format!("{scheme}://: redis:// or rediss:// (TLS)"));
        }
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((h, d)) => (h, d),
            None => (hostpart, ""),
        };
        if !db.is_empty() && db.parse::<u16>().is_err() {
            return Err(format!("{scheme}://{hostport}/{db}: the database is a number"));
        }
        let port_ok = match hostport.rsplit_once(':') {
            Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
            None => false,
        };
        if !port_ok || hostport.contains(char::is_whitespace) {
            return Err(format!(
                "{scheme}://{hostport}: host:port (e.g. redis://10.0.0.5:6379)"
            ));
        }
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((user, pass)) => (
                    Some(user.to_owned()).filter(|s| !s.is_empty()),
                    Some(pass.to_owned()).filter(|s| !s.is_empty()),
                ),
                None => (Some(a.to_owned()).filter(|s| !s.is_empty()), None),
            },
        };
        let db = if db.is_empty() {
            String::new()
        } else {
            format!("/{db}")
        };
        Ok(RedisUrl {
            without_credentials: format!("{scheme}://{hostport}{db}"),
            username,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(redis: &str) -> PoolFile {
        PoolFile {
            redis: Some(redis.to_owned()),
            replica: Some("edge-a".to_owned()),
            ..PoolFile::default()
        }
    }

    #[test]
    fn no_section_is_standalone() {
        let mut i = Issues::default();
        assert_eq!(validate(None, None, &mut i), Some(None));
        assert!(i.is_empty());
    }

    #[test]
    fn credentials_leave_the_url_and_never_reach_an_error() {
        let mut i = Issues::default();
        let p = validate(Some(&file("rediss://edge:s3cret@10.0.0.5:6380/2")), None, &mut i)
            .flatten()
            .unwrap();
        assert_eq!(p.redis, "rediss://10.0.0.5:6380/2");
        assert_eq!(
            (p.username.as_deref(), p.password.as_deref()),
            (Some("edge"), Some("s3cret"))
        );
        assert_eq!(p.redis_down, RedisDown::Divide);
        assert!(!format!("{p:?}").contains("s3cret"), "{p:?}");
        for bad in [
            "redis://:s3cret@10.0.0.5",
            "http://:s3cret@h:1",
            "redis://:s3cret@h:1/x",
        ] {
            let mut i = Issues::default();
            assert_eq!(validate(Some(&file(bad)), None, &mut i), None, "{bad}");
            let text = format!("{:?}", i.into_vec());
            assert!(text.contains("pool.redis") && !text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn the_password_file_the_replica_and_the_mode_are_checked() {
        let dir = std::env::temp_dir().join(format!("sipedge-pool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), "from-file\n").unwrap();
        let mut f = file("redis://127.0.0.1:6379");
        f.redis_password_file = Some("pw".to_owned());
        f.redis_down = Some("refuse".to_owned());
        let mut i = Issues::default();
        let p = validate(Some(&f), Some(&dir), &mut i).flatten().unwrap();
        assert_eq!(
            (p.password.as_deref(), p.redis_down),
            (Some("from-file"), RedisDown::Refuse)
        );

        let mut f = file("redis://u:p@127.0.0.1:6379");
        f.redis_password_file = Some("pw".to_owned());
        f.replica = Some("edge a".to_owned());
        f.redis_down = Some("open".to_owned());
        let mut i = Issues::default();
        assert_eq!(validate(Some(&f), Some(&dir), &mut i), None);
        let keys: Vec<String> = i.into_vec().into_iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            ["pool.redis_password_file", "pool.replica", "pool.redis_down"]
        );

        let mut f = file("redis://127.0.0.1:6379");
        f.replica = None;
        let mut i = Issues::default();
        let p = validate(Some(&f), None, &mut i).flatten().unwrap();
        assert_eq!(p.replica, host_name(), "the default is the host name");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
