//! The set of operations linearized so far, with an incrementally maintained hash.

/// A fixed-size bit set over a partition's operations, in two regions: completed ops
/// (`0..known`) then unknown-outcome ops, the second starting on a word boundary.
///
/// Invariant: `hashes[r]` is the XOR of [`bit_hash`] over the set bits of region `r`, so
/// setting or clearing a bit updates it in O(1) and equal regions have equal hashes.
#[derive(Clone, Debug)]
pub(crate) struct LinearizedSet {
    words: Vec<u64>,
    /// Words of the completed-ops region; the unknown region is `words[known_words..]`.
    known_words: usize,
    hashes: [u64; 2],
}

/// A region in canonical compressed form: `skip` leading all-ones words, then `middle`,
/// then only zero words.
pub(crate) type Compressed<'a> = (usize, &'a [u64]);

impl LinearizedSet {
    /// An empty set for `known` completed ops (bits `0..known`) followed by `unknown` ops
    /// (bits from `known.div_ceil(64) * 64`, see [`LinearizedSet::bit_of_unknown`]).
    pub(crate) fn new(known: usize, unknown: usize) -> LinearizedSet {
        let known_words = known.div_ceil(64);
        LinearizedSet {
            words: vec![0; known_words + unknown.div_ceil(64)],
            known_words,
            hashes: [0; 2],
        }
    }

    /// The bit of the `index`-th unknown op.
    pub(crate) fn bit_of_unknown(&self, index: usize) -> u32 {
        u32::try_from(self.known_words * 64 + index).expect("lincheck: over 2^32 ops in a key")
    }

    pub(crate) fn contains(&self, bit: u32) -> bool {
        self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }

    /// Adds `bit`. # Panics if it is already present (a search bug).
    pub(crate) fn insert(&mut self, bit: u32) {
        assert!(!self.contains(bit), "op {bit} linearized twice");
        self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        self.hashes[self.region(bit)] ^= bit_hash(bit);
    }

    /// Removes `bit`. # Panics if it is absent (a search bug).
    pub(crate) fn remove(&mut self, bit: u32) {
        assert!(
            self.contains(bit),
            "op {bit} un-linearized but not linearized"
        );
        self.words[(bit / 64) as usize] &= !(1 << (bit % 64));
        self.hashes[self.region(bit)] ^= bit_hash(bit);
    }

    fn region(&self, bit: u32) -> usize {
        usize::from((bit / 64) as usize >= self.known_words)
    }

    /// Hash of the completed-ops region's contents.
    pub(crate) fn known_hash(&self) -> u64 {
        self.hashes[0]
    }

    /// Hash of the whole set's contents.
    pub(crate) fn hash(&self) -> u64 {
        self.hashes[0] ^ self.hashes[1]
    }

    /// Both regions in canonical compressed form.
    ///
    /// Postcondition: two sets of the same shape are equal iff their canonical forms are.
    /// The search linearizes completed ops roughly in call order and unknown ones rarely,
    /// so each region is a run of ones, a short window and zeros: the memo stays small.
    pub(crate) fn canonical(&self) -> [Compressed<'_>; 2] {
        let (known, unknown) = self.words.split_at(self.known_words);
        [compress(known), compress(unknown)]
    }
}

/// Whether the region `sub` is a subset of the region `sup` (both compressed, same shape).
pub(crate) fn is_subset((sub_skip, sub_middle): Compressed<'_>, sup: Compressed<'_>) -> bool {
    let word = |(skip, middle): Compressed<'_>, i: usize| match i.checked_sub(skip) {
        None => u64::MAX,
        Some(j) => middle.get(j).copied().unwrap_or(0),
    };
    (0..sub_skip + sub_middle.len()).all(|i| word((sub_skip, sub_middle), i) & !word(sup, i) == 0)
}

fn compress(words: &[u64]) -> Compressed<'_> {
    let skip = words.iter().take_while(|w| **w == u64::MAX).count();
    let end = words.iter().rposition(|w| *w != 0).map_or(0, |i| i + 1);
    (skip, &words[skip..end.max(skip)])
}

/// A fixed pseudo-random 64-bit value per bit index (Zobrist hashing), from SplitMix64.
pub(crate) fn bit_hash(bit: u32) -> u64 {
    mix64(u64::from(bit).wrapping_add(0x9E37_79B9_7F4A_7C15))
}

/// SplitMix64's finalizer: a bijective mixing of 64 bits.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_skips_full_words_and_trailing_zeros_per_region() {
        // Goal: the compressed form is exact; method: fill regions partly and inspect.
        let mut set = LinearizedSet::new(300, 100);
        assert_eq!(set.canonical(), [(0, &[][..]), (0, &[][..])]);
        for bit in 0..70 {
            set.insert(bit);
        }
        set.insert(200);
        let [(skip, middle), unknown] = set.canonical();
        assert_eq!((skip, middle.len()), (1, 3));
        assert_eq!(unknown, (0, &[][..]));
        let hash_before = set.hash();
        set.insert(71);
        set.remove(71);
        assert_eq!(set.hash(), hash_before);
        for bit in 0..300 {
            if !set.contains(bit) {
                set.insert(bit);
            }
        }
        assert_eq!(set.canonical()[0], (4, &[(1u64 << 44) - 1][..]));
        let last_unknown = set.bit_of_unknown(99);
        assert_eq!(last_unknown, 320 + 99);
        set.insert(last_unknown);
        assert_eq!(set.canonical()[1], (0, &[0, 1 << 35][..]));
    }

    #[test]
    fn subset_test_on_compressed_regions() {
        // Goal: subset is exact across skip / middle / zero parts; method: small cases.
        let ones = [u64::MAX];
        assert!(is_subset((0, &[]), (0, &[])));
        assert!(is_subset((0, &[0b01]), (0, &[0b11])));
        assert!(!is_subset((0, &[0b11]), (0, &[0b01])));
        assert!(is_subset((0, &[0b1, 0b1]), (1, &[0b1])));
        assert!(!is_subset((1, &[0b1]), (0, &[0b1, 0b1])));
        assert!(is_subset((0, &ones), (1, &[])));
        assert!(!is_subset((0, &[0, 1]), (1, &[])));
    }
}
