//! CPU time of a process from `/proc/PID/stat` (utime + stime, in clock ticks; all threads of the
//! process are included, children are not) and the tick rate (`getconf CLK_TCK`, checked against
//! the Linux default of 100). The generator samples the process under test and itself at the start
//! and the end of the measured window (`gen.rs`); the report turns the difference into CPU
//! µs per transaction (`report.rs`).

use std::process::Command;

/// utime and stime of one process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

impl CpuTicks {
    pub fn total(&self) -> u64 {
        self.user + self.system
    }
}

/// Parses the text of `/proc/PID/stat`: fields 14 (utime) and 15 (stime), counted after the `comm`
/// field in parentheses, which may itself hold spaces and parentheses (hence the last `)`).
pub fn parse_stat(text: &str) -> Option<CpuTicks> {
    let after = text.get(text.rfind(')')? + 1..)?;
    // After `comm`: field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let mut fields = after.split_ascii_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some(CpuTicks { user, system })
}

/// The CPU ticks of process `pid` (`None`: `self`), `None` if it cannot be read.
pub fn read(pid: Option<u32>) -> Option<CpuTicks> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// The summed ticks of several processes (e.g. Kamailio's main process and its children); `None`
/// if any of them cannot be read.
pub fn read_all(pids: &[u32]) -> Option<CpuTicks> {
    pids.iter().try_fold(CpuTicks::default(), |acc, &p| {
        let t = read(Some(p))?;
        Some(CpuTicks {
            user: acc.user + t.user,
            system: acc.system + t.system,
        })
    })
}

/// Clock ticks per second: `getconf CLK_TCK`, or the Linux value 100 (with a note on stderr) when
/// getconf is missing or says something unusable.
pub fn ticks_per_second() -> u64 {
    let got = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&n| n > 0);
    match got {
        Some(n) => n,
        None => {
            eprintln!("sipedge-bench: getconf CLK_TCK failed; assuming 100 ticks/s (the Linux USER_HZ)");
            100
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line (a sipedge worker), with a `comm` that holds a space and a parenthesis.
    const SAMPLE: &str = "4242 (sipedge (w) 1) S 4200 4242 4200 34816 4242 4194560 1523 0 0 0 \
                          731 288 0 0 20 0 3 0 123456 12345678 1500 18446744073709551615 1 1 0 0 0 0 0 \
                          4096 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn utime_and_stime_are_fields_14_and_15() {
        assert_eq!(
            parse_stat(SAMPLE),
            Some(CpuTicks {
                user: 731,
                system: 288
            })
        );
        assert_eq!(parse_stat(SAMPLE).unwrap().total(), 1019);
    }

    #[test]
    fn truncated_or_garbled_stat_is_refused() {
        assert_eq!(parse_stat("4242 (x) S 1 2 3"), None);
        assert_eq!(
            parse_stat("no parenthesis 1 2 3 4 5 6 7 8 9 10 11 12 13 14"),
            None
        );
        assert_eq!(parse_stat("1 (x) S 1 1 1 1 1 1 1 1 1 1 x 2"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read(None).expect("/proc/self/stat");
        let by_pid = read(Some(std::process::id())).expect("/proc/<own pid>/stat");
        assert!(by_pid.total() >= me.total());
        let both = read_all(&[std::process::id(), std::process::id()]).unwrap();
        assert!(both.total() >= 2 * me.total());
        assert_eq!(read_all(&[u32::MAX]), None, "a pid that cannot exist");
    }

    #[test]
    fn tick_rate_is_positive() {
        assert!(ticks_per_second() > 0);
    }
}
