//! CPU time of a process from `/proc/PID/stat` (utime + stime, in clock ticks; all threads of the
//! process are included, children are not) and the tick rate (`getconf CLK_TCK`, checked against
//! the Linux default of 100). The generator samples the process under test and itself at the start
//! and the end of the measured window (`gen.rs`); the report turns the difference into CPU
//! µs per transaction (`report.rs`). The connection scenarios (`conns.rs`) also read memory
//! (`smaps_rollup`: RSS and PSS; `status`: the peak RSS) and the open-file limit (`limits`).

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

/// `one` of every process in `pids`, summed by `add`; `None` when `pids` is empty (nothing was
/// measured: not a zero) or any of them cannot be read.
fn sum_over<T: Default>(pids: &[u32], one: impl Fn(u32) -> Option<T>, add: impl Fn(T, T) -> T) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .try_fold(T::default(), |acc, &p| Some(add(acc, one(p)?)))
}

/// The text of `/proc/PID/FILE`.
fn proc_text(pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

/// The number of a `Name:   N kB` line.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix(':')?;
        let mut words = rest.split_ascii_whitespace();
        let n = words.next()?.parse::<u64>().ok()?;
        (words.next() == Some("kB")).then_some(n)
    })
}

/// The summed ticks of several processes (e.g. Kamailio's main process and its children); `None`
/// if there are none or any of them cannot be read.
pub fn read_all(pids: &[u32]) -> Option<CpuTicks> {
    sum_over(
        pids,
        |p| read(Some(p)),
        |a, t| CpuTicks {
            user: a.user + t.user,
            system: a.system + t.system,
        },
    )
}

/// CPU seconds `pids` used since `start` (a `read_all` of the same pids), at `hz` ticks a second;
/// `None` when there are no pids or a reading failed.
pub fn cpu_s_since(start: Option<CpuTicks>, pids: &[u32], hz: f64) -> Option<f64> {
    crate::report::ticks_between(start, read_all(pids)).map(|t| t as f64 / hz)
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

/// Memory of one process (or the sum over several) from `/proc/PID/smaps_rollup`, in KiB: RSS
/// counts every resident page the process maps (shared ones in full, in each process), PSS divides
/// each shared page among the processes that map it — summed over Kamailio's forked workers, PSS
/// is the process group's real footprint where RSS counts its shared memory once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// `Rss:` and `Pss:` of a `/proc/PID/smaps_rollup` text (both required).
pub fn parse_smaps_rollup(text: &str) -> Option<Mem> {
    Some(Mem {
        rss_kib: kib_field(text, "Rss")?,
        pss_kib: kib_field(text, "Pss")?,
    })
}

/// The summed memory of `pids`; `None` if there are none or any cannot be read.
pub fn mem_all(pids: &[u32]) -> Option<Mem> {
    sum_over(
        pids,
        |p| parse_smaps_rollup(&proc_text(p, "smaps_rollup")?),
        |a, m| Mem {
            rss_kib: a.rss_kib + m.rss_kib,
            pss_kib: a.pss_kib + m.pss_kib,
        },
    )
}

/// The peak RSS of one process so far (`VmHWM:` of `/proc/PID/status`, KiB).
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    kib_field(status, "VmHWM")
}

/// The summed peak RSS (`VmHWM`) of `pids`; `None` if there are none or any cannot be read.
pub fn hwm_all(pids: &[u32]) -> Option<u64> {
    sum_over(pids, |p| parse_vm_hwm(&proc_text(p, "status")?), |a, b| a + b)
}

/// The soft open-file limit in a `/proc/PID/limits` text (`None`: unlimited or absent).
pub fn parse_nofile_soft(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft open-file limit of process `pid`.
pub fn nofile_soft(pid: u32) -> Option<u64> {
    parse_nofile_soft(&proc_text(pid, "limits")?)
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

    /// A real `smaps_rollup` (a sipedge process).
    const ROLLUP: &str =
        "55d1c0a4e000-7ffd5f3fd000 ---p 00000000 00:00 0                          [rollup]\n\
                          Rss:               10244 kB\n\
                          Pss:                6120 kB\n\
                          Pss_Dirty:          4100 kB\n\
                          Pss_Anon:           4096 kB\n\
                          Shared_Clean:       4200 kB\n\
                          Swap:                  0 kB\n";

    #[test]
    fn rss_and_pss_come_from_their_own_lines_not_the_pss_variants() {
        assert_eq!(
            parse_smaps_rollup(ROLLUP),
            Some(Mem {
                rss_kib: 10244,
                pss_kib: 6120
            })
        );
        assert_eq!(parse_smaps_rollup("Rss: 10 kB\n"), None, "no Pss");
        assert_eq!(parse_smaps_rollup("Rss: 10 MB\nPss: 5 kB\n"), None, "unit");
        let me = mem_all(&[std::process::id()]).expect("own smaps_rollup");
        assert!(
            me.rss_kib > 0 && me.pss_kib > 0 && me.pss_kib <= me.rss_kib,
            "{me:?}"
        );
        let twice = mem_all(&[std::process::id(), std::process::id()]).unwrap();
        assert!(twice.rss_kib >= me.rss_kib * 2 - 64, "{twice:?} vs {me:?}");
        assert_eq!(mem_all(&[u32::MAX]), None);
    }

    #[test]
    fn peak_rss_and_the_open_file_limit() {
        assert_eq!(
            parse_vm_hwm("VmPeak:\t 100 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1000 kB\n"),
            Some(2048)
        );
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB\n"), None);
        assert!(hwm_all(&[std::process::id()]).unwrap() > 0);
        let limits = "Max processes             95000                95000                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_nofile_soft(limits), Some(1024));
        assert_eq!(
            parse_nofile_soft("Max open files  unlimited unlimited files\n"),
            None
        );
        assert!(nofile_soft(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn tick_rate_is_positive() {
        assert!(ticks_per_second() > 0);
    }
}
