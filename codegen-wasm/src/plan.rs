//! The static memory plan: every tensor gets a byte range of the one linear
//! memory at compile time. Inputs, outputs and weights are pinned; an
//! intermediate's range is freed after its last reader and reused (best
//! fit) by later tensors, so the peak is known before anything runs.

/// Ranges start at multiples of this, so vector loads are aligned.
const ALIGN: u64 = 16;

#[derive(Default)]
pub struct Planner {
    /// Free ranges (offset, bytes), sorted by offset, never adjacent.
    free: Vec<(u64, u64)>,
    /// End of the highest range handed out.
    top: u64,
}

impl Planner {
    /// A plan whose ranges start at `base` (above data the module owns).
    pub fn starting_at(base: u64) -> Planner {
        Planner {
            free: Vec::new(),
            top: base.next_multiple_of(ALIGN),
        }
    }

    /// Reserves `bytes` and returns the range's offset.
    pub fn alloc(&mut self, bytes: u64) -> u64 {
        let bytes = bytes.max(1).next_multiple_of(ALIGN);
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, (_, len))| *len >= bytes)
            .min_by_key(|(_, (_, len))| *len)
            .map(|(i, _)| i);
        if let Some(i) = best {
            let (off, len) = self.free[i];
            if len == bytes {
                self.free.remove(i);
            } else {
                self.free[i] = (off + bytes, len - bytes);
            }
            return off;
        }
        // A free range ending at the top grows instead of leaving a hole.
        if let Some(&(off, len)) = self.free.last()
            && off + len == self.top
        {
            self.free.pop();
            self.top = off + bytes;
            return off;
        }
        let off = self.top;
        self.top += bytes;
        off
    }

    /// Returns a range given by [`Planner::alloc`].
    pub fn release(&mut self, offset: u64, bytes: u64) {
        let bytes = bytes.max(1).next_multiple_of(ALIGN);
        let at = self.free.partition_point(|&(o, _)| o < offset);
        self.free.insert(at, (offset, bytes));
        // Merge with the following and the preceding range.
        if at + 1 < self.free.len() && self.free[at].0 + self.free[at].1 == self.free[at + 1].0 {
            self.free[at].1 += self.free[at + 1].1;
            self.free.remove(at + 1);
        }
        if at > 0 && self.free[at - 1].0 + self.free[at - 1].1 == self.free[at].0 {
            self.free[at - 1].1 += self.free[at].1;
            self.free.remove(at);
        }
    }

    /// The end of the highest range ever handed out.
    pub fn peak(&self) -> u64 {
        self.top
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_freed_ranges_best_fit_and_merges_neighbours() {
        let mut p = Planner::default();
        let a = p.alloc(100);
        let b = p.alloc(40);
        let c = p.alloc(100);
        assert_eq!((a, b, c), (0, 112, 160));
        p.release(b, 40);
        // 40 bytes fit the freed 48-byte hole exactly.
        assert_eq!(p.alloc(33), 112);
        p.release(112, 33);
        p.release(a, 100);
        // The two holes merged: 160 bytes at 0.
        assert_eq!(p.alloc(150), 0);
        assert_eq!(p.peak(), 272);
        // A hole at the top grows rather than leaving a gap.
        p.release(c, 100);
        assert_eq!(p.alloc(200), 160);
        assert_eq!(p.peak(), 368);
    }
}
