//! Memory checks made before allocating what the user asked for, so a
//! model that declares a huge tensor gets an error naming it instead of
//! an abort inside the allocator.

use anyhow::{Result, bail};

/// Bytes the machine can still give this process: Linux's `MemAvailable`,
/// or `None` where it cannot be read (then nothing is refused up front).
pub fn available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The bytes of `elements` elements of `elem_bytes` each, or `None` when
/// that overflows.
pub fn tensor_bytes(shape: &[usize], elem_bytes: usize) -> Option<u64> {
    shape
        .iter()
        .try_fold(elem_bytes as u64, |acc, &d| acc.checked_mul(d as u64))
}

/// Refuses to allocate `bytes` (`None`: more than 2^64) for `what` when
/// the machine has less available.
pub fn check(what: &str, bytes: Option<u64>) -> Result<()> {
    let Some(bytes) = bytes else {
        bail!("{what} would need more than 2^64 bytes of memory");
    };
    if let Some(have) = available()
        && bytes > have
    {
        bail!(
            "{what} needs {bytes} bytes ({:.1} GiB), more than the {have} bytes ({:.1} GiB) \
             this machine has available",
            bytes as f64 / f64::from(1u32 << 30),
            have as f64 / f64::from(1u32 << 30)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_tensors_are_refused_before_allocating() {
        assert_eq!(tensor_bytes(&[2, 3], 4), Some(24));
        assert_eq!(tensor_bytes(&[usize::MAX, 2], 4), None);
        let e = check("input 'x'", tensor_bytes(&[usize::MAX, 2], 4)).unwrap_err();
        assert!(e.to_string().contains("more than 2^64"), "{e}");
        if available().is_some() {
            let e = check("input 'x'", Some(u64::MAX)).unwrap_err();
            assert!(e.to_string().contains("input 'x' needs"), "{e}");
        }
        check("a small tensor", Some(64)).unwrap();
    }
}
