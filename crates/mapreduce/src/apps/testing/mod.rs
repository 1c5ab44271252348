//! Applications that exist to test the framework, in the manner of the MIT 6.5840 lab's
//! plugins. They observe the framework through marker files in the shared directory (who is
//! running now, how often a task ran) and report what they saw as ordinary output, so a test
//! checks outcomes, never timing. None is useful on real data.

mod crash;
mod early_exit;
mod job_count;
mod map_timing;
mod reduce_timing;

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use shardkv_types::Rng;

pub use crash::Crash;
pub use early_exit::EarlyExit;
pub use job_count::JobCount;
pub use map_timing::MapTiming;
pub use reduce_timing::ReduceTiming;

/// A generator seeded from the operating system's randomness (through std's per-process
/// random hash keys) mixed with the pid and the time: every process draws differently, as a
/// chaos test needs.
fn os_seeded_rng() -> Rng {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    Rng::new(hasher.finish())
}

/// A marker file that exists while a piece of work runs; removed on drop.
struct RunningMarker {
    path: PathBuf,
}

impl RunningMarker {
    fn create(dir: &Path, name: String) -> std::io::Result<RunningMarker> {
        let path = dir.join(name);
        std::fs::write(&path, b"")?;
        Ok(RunningMarker { path })
    }
}

impl Drop for RunningMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Number of files in `dir` whose name starts with `prefix`.
fn count_files(dir: &Path, prefix: &str) -> std::io::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name().to_string_lossy().starts_with(prefix) {
            count += 1;
        }
    }
    Ok(count)
}

/// Holds a marker for about a second and returns the most markers with `prefix` seen at once
/// (including our own): how many pieces of work ran concurrently with this one.
fn overlap_during_one_second(dir: &Path, prefix: &str, name: String) -> std::io::Result<usize> {
    const SAMPLES: u32 = 10;
    let _marker = RunningMarker::create(dir, name)?;
    let mut seen_max = 0;
    for _ in 0..SAMPLES {
        std::thread::sleep(Duration::from_millis(100));
        seen_max = seen_max.max(count_files(dir, prefix)?);
    }
    Ok(seen_max)
}
