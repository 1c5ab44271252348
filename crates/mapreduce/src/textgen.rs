//! Deterministic pseudo-English text, for tests, examples and benchmarks.
//!
//! The same seed and size give the same bytes on every run. Words come from one shared
//! vocabulary (so word counts add up across files and the inverted index is interesting)
//! with a skewed, roughly Zipf-like frequency; sentences are capitalized and punctuated and
//! lines wrap near 72 columns. The text is ASCII only, so `tr -cs A-Za-z '\n'` splits it
//! exactly as the built-in word count does.

use std::io;
use std::path::{Path, PathBuf};

use shardkv_types::Rng;

use crate::files::AtomicFile;

/// Base names of generated files; past eight, a number is appended.
pub const CORPUS_NAMES: [&str; 8] = [
    "being_ernest",
    "dorian_gray",
    "frankenstein",
    "grimm",
    "huckleberry_finn",
    "metamorphosis",
    "sherlock_holmes",
    "tom_sawyer",
];

const VOCABULARY_WORDS: usize = 4000;
const VOCABULARY_SEED: u64 = 0x006d_7276_6f63_6162;
const COMMON: [&str; 24] = [
    "the", "and", "of", "to", "a", "in", "that", "he", "was", "it", "his", "her", "you", "with",
    "for", "as", "had", "is", "she", "not", "at", "on", "but", "be",
];
const SYLLABLES: [&str; 32] = [
    "ba", "ce", "di", "fo", "gu", "ha", "je", "ki", "lo", "mu", "na", "pe", "qui", "ro", "su",
    "ta", "ve", "wi", "xo", "ya", "ze", "th", "sh", "an", "er", "in", "on", "re", "st", "ou", "ly",
    "ng",
];
const LINE_COLUMNS_MAX: usize = 72;

/// The file name of generated file `index`: `pg-<name>.txt`.
pub fn corpus_file_name(index: usize) -> String {
    let base = CORPUS_NAMES[index % CORPUS_NAMES.len()];
    match index / CORPUS_NAMES.len() {
        0 => format!("pg-{base}.txt"),
        round => format!("pg-{base}-{round}.txt"),
    }
}

/// Writes `files` generated files of about `bytes_each` bytes into `dir` and returns their
/// paths. File `i` is a function of `seed` and `i` only.
pub fn write_corpus(
    dir: &Path,
    files: usize,
    bytes_each: usize,
    seed: u64,
) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let vocabulary = vocabulary();
    let mut paths = Vec::with_capacity(files);
    for index in 0..files {
        let text = generate(
            &vocabulary,
            seed ^ (index as u64).wrapping_mul(0x9e37_79b9),
            bytes_each,
        );
        let name = corpus_file_name(index);
        AtomicFile::write(dir, &name, text.as_bytes())?;
        paths.push(dir.join(name));
    }
    Ok(paths)
}

/// About `bytes` bytes (never more than a line over) of text drawn with `seed`.
pub fn generate_text(seed: u64, bytes: usize) -> String {
    generate(&vocabulary(), seed, bytes)
}

fn vocabulary() -> Vec<String> {
    let mut rng = Rng::new(VOCABULARY_SEED);
    let mut words: Vec<String> = COMMON.iter().map(|w| (*w).to_owned()).collect();
    while words.len() < VOCABULARY_WORDS {
        let syllables = rng.range(1, 5);
        let word: String = (0..syllables)
            .map(|_| SYLLABLES[rng.index(SYLLABLES.len())])
            .collect();
        words.push(word);
    }
    words
}

fn generate(vocabulary: &[String], seed: u64, bytes: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(bytes + LINE_COLUMNS_MAX * 2);
    let mut line = String::with_capacity(LINE_COLUMNS_MAX * 2);
    let mut words_left_in_sentence = 0;
    while text.len() < bytes {
        let starts_sentence = words_left_in_sentence == 0;
        if starts_sentence {
            words_left_in_sentence = rng.range(4, 16);
        }
        // Two nested uniform draws skew toward low ranks: frequent words are frequent.
        let spread = rng.index(vocabulary.len()) + 1;
        let rank = rng.index(spread);
        let word = &vocabulary[rank];
        let mut token = if starts_sentence {
            let mut chars = word.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect()
        } else {
            word.clone()
        };
        words_left_in_sentence -= 1;
        if words_left_in_sentence == 0 {
            token.push(['.', '.', '.', '!', '?'][rng.index(5)]);
        } else if rng.chance(80) {
            token.push(',');
        }
        if !line.is_empty() && line.len() + 1 + token.len() > LINE_COLUMNS_MAX {
            text.push_str(&line);
            text.push('\n');
            if rng.chance(60) {
                text.push('\n');
            }
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&token);
    }
    if !line.is_empty() {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_text_and_size_is_close() {
        let a = generate_text(7, 10_000);
        assert_eq!(a, generate_text(7, 10_000));
        assert_ne!(a, generate_text(8, 10_000));
        assert!(
            a.len() >= 10_000 && a.len() < 10_000 + 2 * LINE_COLUMNS_MAX,
            "{}",
            a.len()
        );
        assert!(a.is_ascii());
        assert!(a.lines().all(|l| l.len() <= LINE_COLUMNS_MAX + 8));
    }

    #[test]
    fn names_cycle_with_a_round_number() {
        assert_eq!(corpus_file_name(0), "pg-being_ernest.txt");
        assert_eq!(corpus_file_name(9), "pg-dorian_gray-1.txt");
    }
}
