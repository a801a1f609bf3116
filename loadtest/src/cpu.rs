//! CPU accounting, so a report says whether the generator, the server or
//! PostgreSQL used the machine: this process through `getrusage`, other processes
//! through `/proc/<pid>/stat`, and the whole machine (busy and I/O wait) through
//! `/proc/stat`; and memory: another process's resident set size through
//! `/proc/<pid>/status`.

use serde::Serialize;
use std::time::Instant;

/// Clock ticks per second of `/proc` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// (user, system) CPU seconds of this process.
pub fn own_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we pass; a zeroed rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// Fields of `/proc/<pid>/stat` after the command name: [state, ppid, …].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime + cutime + cstime of `pid`, in seconds.
pub fn process_cpu(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    // Fields 14-17 of stat(5), counted from `state` as field 3.
    let ticks: u64 = f.get(11..15)?.iter().filter_map(|v| v.parse::<u64>().ok()).sum();
    Some(ticks as f64 / ticks_per_second())
}

/// CPU seconds of `pid` and its live children (PostgreSQL: the postmaster and its backends).
pub fn process_tree_cpu(pid: u32) -> Option<f64> {
    let own = process_cpu(pid)?;
    let children: f64 = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| stat_fields(child).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid))
        .filter_map(process_cpu)
        .sum();
    Some(own + children)
}

/// Resident set size of `pid` (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&text)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// (busy, iowait, total) ticks of the whole machine since boot.
fn machine_ticks() -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let total: u64 = v.iter().take(8).sum();
    let idle = *v.get(3)?;
    let iowait = *v.get(4)?;
    Some((total - idle - iowait, iowait, total))
}

/// CPU counters at one moment.
pub struct Snapshot {
    at: Instant,
    own: (f64, f64),
    /// Each server node's CPU seconds.
    nodes: Vec<Option<f64>>,
    postgres: Option<f64>,
    machine: Option<(u64, u64, u64)>,
}

impl Snapshot {
    /// `node_pids`: the server's processes (one per node; empty when unknown).
    pub fn take(node_pids: &[u32], postgres_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            own: own_cpu(),
            nodes: node_pids.iter().map(|&pid| process_cpu(pid)).collect(),
            postgres: postgres_pid.and_then(process_tree_cpu),
            machine: machine_ticks(),
        }
    }
}

/// CPU used between two snapshots.
#[derive(Serialize, Clone, Debug)]
pub struct CpuUse {
    pub wall_secs: f64,
    pub cores: usize,
    pub loadtest_user_secs: f64,
    pub loadtest_system_secs: f64,
    /// Of one core.
    pub loadtest_percent: f64,
    /// Every node together.
    pub server_secs: Option<f64>,
    pub server_percent: Option<f64>,
    /// Each node's share of a core, node 0 first (several nodes only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_percent: Vec<f64>,
    pub postgres_secs: Option<f64>,
    pub postgres_percent: Option<f64>,
    /// Of all cores.
    pub machine_busy_percent: Option<f64>,
    pub machine_iowait_percent: Option<f64>,
    /// CPU seconds of every other process on the machine (other builds, tests…): they
    /// compete with the run and make its figures a lower bound.
    pub other_processes_secs: Option<f64>,
    /// CPU per order (acknowledged purchase), in µs: where the time goes (a sale only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_order_us: Option<PerOrder>,
}

/// CPU time per order, in microseconds of CPU.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct PerOrder {
    pub orders: u64,
    pub server: Option<f64>,
    pub postgres: Option<f64>,
    /// The generator itself (user + system).
    pub loadtest: f64,
}

impl CpuUse {
    /// The same, with the CPU per order of `orders` orders (none when there were none).
    pub fn per_order(mut self, orders: u64) -> Self {
        self.per_order_us = (orders > 0).then(|| {
            let us = |secs: f64| secs * 1e6 / orders as f64;
            PerOrder {
                orders,
                server: self.server_secs.map(us),
                postgres: self.postgres_secs.map(us),
                loadtest: us(self.loadtest_user_secs + self.loadtest_system_secs),
            }
        });
        self
    }
}

pub fn between(a: &Snapshot, b: &Snapshot) -> CpuUse {
    let wall = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let user = b.own.0 - a.own.0;
    let system = b.own.1 - a.own.1;
    let diff = |x: Option<f64>, y: Option<f64>| Some(y? - x?);
    let per_node: Option<Vec<f64>> = a.nodes.iter().zip(&b.nodes).map(|(x, y)| diff(*x, *y)).collect();
    let server = per_node.as_ref().filter(|n| !n.is_empty()).map(|n| n.iter().sum::<f64>());
    let postgres = diff(a.postgres, b.postgres);
    let (busy, iowait, busy_secs) = match (a.machine, b.machine) {
        (Some((b0, w0, t0)), Some((b1, w1, t1))) if t1 > t0 => {
            let total = (t1 - t0) as f64;
            let busy_secs = (b1 - b0) as f64 / ticks_per_second();
            (Some(100.0 * (b1 - b0) as f64 / total), Some(100.0 * (w1 - w0) as f64 / total), Some(busy_secs))
        }
        _ => (None, None, None),
    };
    let ours = user + system + server.unwrap_or(0.0) + postgres.unwrap_or(0.0);
    let other = busy_secs.map(|b| (b - ours).max(0.0));
    CpuUse {
        wall_secs: wall,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        loadtest_user_secs: user,
        loadtest_system_secs: system,
        loadtest_percent: 100.0 * (user + system) / wall,
        server_secs: server,
        server_percent: server.map(|s| 100.0 * s / wall),
        node_percent: match per_node {
            Some(n) if n.len() > 1 => n.iter().map(|s| 100.0 * s / wall).collect(),
            _ => Vec::new(),
        },
        postgres_secs: postgres,
        postgres_percent: postgres.map(|s| 100.0 * s / wall),
        machine_busy_percent: busy,
        machine_iowait_percent: iowait,
        other_processes_secs: other,
        per_order_us: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measured() {
        let pid = std::process::id();
        let a = Snapshot::take(&[pid, pid], None);
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = Snapshot::take(&[pid, pid], None);
        let used = between(&a, &b);
        assert!(used.loadtest_user_secs >= 0.0);
        assert!(used.server_secs.is_some());
        assert_eq!(used.node_percent.len(), 2);
        assert!((used.node_percent.iter().sum::<f64>() - used.server_percent.unwrap()).abs() < 1e-9);
        assert!(process_tree_cpu(pid).is_some());
    }

    #[test]
    fn cpu_per_order_divides_each_process_by_the_orders() {
        let pid = std::process::id();
        let a = Snapshot::take(&[pid], None);
        let mut used = between(&a, &Snapshot::take(&[pid], None));
        (used.loadtest_user_secs, used.loadtest_system_secs, used.server_secs, used.postgres_secs) =
            (0.3, 0.1, Some(2.0), Some(2.5));
        let per = used.clone().per_order(5_000).per_order_us.expect("orders");
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-6);
        assert_eq!(per.orders, 5_000);
        assert!(close(per.server, 400.0) && close(per.postgres, 500.0) && close(Some(per.loadtest), 80.0), "{per:?}");
        assert!(used.per_order(0).per_order_us.is_none());
    }

    #[test]
    fn resident_set_size_is_read() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(parse_vm_rss("Name:\tx\nVmPeak:\t  10 kB\nVmRSS:\t   52340 kB\n"), Some(52_340));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }
}
