//! Device buffer planning: which buffer each value lives in.
//!
//! Model inputs, outputs and weights get buffers of their own. Every other
//! value takes a scratch buffer when its producer runs and gives it back
//! after its last reader; later values reuse freed buffers (best fit, or
//! the largest free one grown), so peak memory is near the largest set of
//! simultaneously live tensors, and known before anything runs.

use wpc_bundle::manifest::BufferDecl;
use wpc_ir::{Error, Result};
use wpc_targets::Profile;

/// A handle on a planned buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot(usize);

struct Buffer {
    words: usize,
    pinned: bool,
    free: bool,
}

pub struct Planner<'p> {
    profile: &'p Profile,
    buffers: Vec<Buffer>,
}

impl<'p> Planner<'p> {
    pub fn new(profile: &'p Profile) -> Planner<'p> {
        Planner {
            profile,
            buffers: Vec::new(),
        }
    }

    pub fn profile(&self) -> &'p Profile {
        self.profile
    }

    /// Checks `words` 32-bit words fit one binding of the target.
    fn check(&self, words: usize, what: &str) -> Result<()> {
        let bytes = words as u64 * 4;
        let l = &self.profile.webgpu.limits;
        let max = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        if bytes > max {
            return Err(Error::unsupported(format!(
                "tensor '{what}' needs {bytes} bytes on the device, over target '{}' maxStorageBufferBindingSize {max}",
                self.profile.name
            )));
        }
        Ok(())
    }

    /// A buffer that lives for the whole run (inputs, outputs, weights).
    pub fn pinned(&mut self, words: usize, what: &str) -> Result<Slot> {
        self.check(words, what)?;
        self.buffers.push(Buffer {
            words,
            pinned: true,
            free: false,
        });
        Ok(Slot(self.buffers.len() - 1))
    }

    /// A scratch buffer of at least `words` words, reusing a free one if any.
    pub fn scratch(&mut self, words: usize, what: &str) -> Result<Slot> {
        self.check(words, what)?;
        let free = |b: &&mut Buffer| b.free && !b.pinned;
        let best_fit = self
            .buffers
            .iter_mut()
            .enumerate()
            .filter(|(_, b)| free(b) && b.words >= words)
            .min_by_key(|(_, b)| b.words)
            .map(|(i, _)| i);
        let pick = best_fit.or_else(|| {
            self.buffers
                .iter_mut()
                .enumerate()
                .filter(|(_, b)| free(b))
                .max_by_key(|(_, b)| b.words)
                .map(|(i, _)| i)
        });
        match pick {
            Some(i) => {
                let b = &mut self.buffers[i];
                b.free = false;
                b.words = b.words.max(words);
                Ok(Slot(i))
            }
            None => {
                self.buffers.push(Buffer {
                    words,
                    pinned: false,
                    free: false,
                });
                Ok(Slot(self.buffers.len() - 1))
            }
        }
    }

    /// Gives a scratch buffer back; pinned buffers stay.
    pub fn release(&mut self, slot: Slot) {
        let b = &mut self.buffers[slot.0];
        if !b.pinned {
            b.free = true;
        }
    }

    /// Whether `slot` is a scratch buffer (not an input, output or weight).
    pub fn is_scratch(&self, slot: Slot) -> bool {
        !self.buffers[slot.0].pinned
    }

    pub fn buffer_of(&self, slot: Slot) -> usize {
        slot.0
    }

    pub fn buffers(&self) -> Vec<BufferDecl> {
        self.buffers
            .iter()
            .map(|b| BufferDecl {
                bytes: b.words as u64 * 4,
                init: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_buffers_are_reused_and_grown() {
        let profile = wpc_targets::builtin("webgpu-baseline").unwrap();
        let mut p = Planner::new(&profile);
        let input = p.pinned(10, "x").unwrap();
        let a = p.scratch(100, "a").unwrap();
        let b = p.scratch(50, "b").unwrap();
        p.release(a);
        let c = p.scratch(120, "c").unwrap();
        assert_eq!(c, a, "the free buffer grows instead of a new one");
        p.release(input);
        p.release(b);
        let d = p.scratch(40, "d").unwrap();
        assert_eq!(d, b, "best fit, and pinned buffers are never handed out");
        assert_eq!(p.buffers().len(), 3);
        assert_eq!(p.buffers()[0].bytes, 40);
        assert_eq!(p.buffers()[1].bytes, 480);
    }

    #[test]
    fn a_tensor_over_the_binding_limit_is_an_error() {
        let profile = wpc_targets::builtin("webgpu-baseline").unwrap();
        let mut p = Planner::new(&profile);
        let err = p.scratch(64 << 20, "huge").unwrap_err().to_string();
        assert!(
            err.contains("'huge'") && err.contains("maxStorageBufferBindingSize"),
            "{err}"
        );
    }
}
