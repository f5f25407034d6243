//! What a process holds, read from Linux's `/proc`, and what a directory takes on disk.
//!
//! The soak runner samples Nexus's open descriptors and resident memory every second: a leak
//! of connections, files or buffers shows as growth from the first third of a run to the last.

use std::io;
use std::path::Path;

/// One sample of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// Open file descriptors (sockets included): entries of `/proc/<pid>/fd`.
    pub fds: usize,
    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub rss_kib: u64,
}

/// Samples process `pid`.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status_field_kib(&status, "VmRSS:").ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("no VmRSS in /proc/{pid}/status"))
    })?;
    Ok(ProcSample { fds, rss_kib })
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// The soft limit on open files (`RLIMIT_NOFILE`) of process `pid`, or of this process when
/// `None`; `None` inside when unlimited.
pub fn open_files_limit(pid: Option<u32>) -> io::Result<Option<u64>> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/limits"),
        None => "/proc/self/limits".to_owned(),
    };
    let limits = std::fs::read_to_string(&path)?;
    let line = limits.lines().find(|l| l.starts_with("Max open files")).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("no 'Max open files' in {path}"))
    })?;
    let soft = line["Max open files".len()..].split_whitespace().next().unwrap_or("");
    Ok(soft.parse().ok())
}

/// Bytes allocated on disk (as `du` counts them) by everything under `path`.
pub fn disk_usage(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            total += disk_usage(&entry?.path())?;
        }
    }
    Ok(total)
}

/// Mean of the first and of the last third of `values` (`None` with fewer than three).
pub fn first_and_last_third(values: &[f64]) -> Option<(f64, f64)> {
    let third = values.len() / 3;
    if third == 0 {
        return None;
    }
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    Some((mean(&values[..third]), mean(&values[values.len() - third..])))
}

/// Mean of the middle and of the last third of `values`: growth after warm-up (caches,
/// allocator arenas and connection pools fill during the first third). `None` with fewer than
/// three values.
pub fn middle_and_last_third(values: &[f64]) -> Option<(f64, f64)> {
    let third = values.len() / 3;
    if third == 0 {
        return None;
    }
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    Some((mean(&values[third..2 * third]), mean(&values[values.len() - third..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_descriptors_memory_and_a_limit() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.fds >= 3, "{s:?}");
        assert!(s.rss_kib > 0, "{s:?}");
        assert!(open_files_limit(None).unwrap().is_none_or(|n| n > 0));
    }

    #[test]
    fn disk_usage_counts_files_below_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), vec![1u8; 100_000]).unwrap();
        assert!(disk_usage(dir.path()).unwrap() >= 100_000);
    }

    #[test]
    fn thirds_compare_the_start_and_the_end_of_a_series() {
        assert_eq!(first_and_last_third(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), Some((1.5, 5.5)));
        assert_eq!(first_and_last_third(&[1.0, 2.0]), None);
        assert_eq!(middle_and_last_third(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), Some((3.5, 5.5)));
        assert_eq!(middle_and_last_third(&[1.0, 2.0]), None);
    }
}
