//! What the figures were measured on: the machine line every part prints, and the CPU time the
//! hypervisor took (steal) while a part ran. On a shared machine steal is what makes single
//! figures noise and only same-run ratios worth reading. Reads `/proc` only.

use anyhow::Context;

/// "machine: 2 cores, 24 GiB, Linux 6.18.0".
pub(crate) fn describe() -> anyhow::Result<String> {
    let cores = cores();
    let meminfo = read("/proc/meminfo")?;
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no MemTotal in /proc/meminfo")?;
    let system = read("/proc/sys/kernel/ostype")?;
    let release = read("/proc/sys/kernel/osrelease")?;
    Ok(format!(
        "machine: {cores} cores, {:.0} GiB, {} {}",
        kib / 1_048_576.0,
        system.trim(),
        release.trim()
    ))
}

/// The number of cores this process may use, as `nproc` says.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// The steal and total CPU time at a moment, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StealMark {
    steal: u64,
    total: u64,
}

impl StealMark {
    pub(crate) fn now() -> anyhow::Result<StealMark> {
        let stat = read("/proc/stat")?;
        StealMark::parse(&stat).context("no cpu line with a steal column in /proc/stat")
    }

    /// The `cpu` line's eighth value (steal) and the sum of all its values, as the shell runner
    /// summed them (guest time included, which the kernel also counts in user time).
    fn parse(stat: &str) -> Option<StealMark> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        Some(StealMark {
            steal: *values.get(7)?,
            total: values.iter().sum(),
        })
    }

    /// The share of all CPU time stolen between `self` and `later`, as "38%".
    pub(crate) fn share_until(self, later: StealMark) -> String {
        let total = later.total.saturating_sub(self.total).max(1);
        let steal = later.steal.saturating_sub(self.steal);
        format!("{:.0}%", 100.0 * steal as f64 / total as f64)
    }

    /// The share stolen since `self`, up to now.
    pub(crate) fn since(self) -> anyhow::Result<String> {
        Ok(self.share_until(StealMark::now()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_column_of_the_cpu_line() {
        let before = "cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n";
        let after = "cpu  200 0 100 1000 10 0 0 140 0 0\n";
        let (a, b) = (
            StealMark::parse(before).expect("a mark"),
            StealMark::parse(after).expect("a mark"),
        );
        assert_eq!(
            a,
            StealMark {
                steal: 40,
                total: 1000
            }
        );
        // 100 stolen of 450.
        assert_eq!(a.share_until(b), "22%");
        assert_eq!(a.share_until(a), "0%");
        assert_eq!(StealMark::parse("cpu  1 2 3\n"), None);
        assert_eq!(StealMark::parse("intr 5\n"), None);
    }

    #[test]
    fn this_machine_is_described() {
        let line = describe().expect("a description");
        assert!(
            line.starts_with("machine: ") && line.contains(" cores, "),
            "{line}"
        );
        StealMark::now().expect("a steal mark");
    }
}
