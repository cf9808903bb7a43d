//! Words for messages: counts ("1 change", "2 changes", never
//! "change(s)") and "did you mean" for typos.

/// `n` and `noun`, plural when `n` is not one ("1 problem", "3 problems").
/// Nouns here are regular: a trailing `s` makes the plural.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The allowed word closest to `word`, if it is close enough to be a typo.
pub(crate) fn suggest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::jaro_winkler(word, a), *a))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::{count, suggest};

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(suggest("sorce", &["source", "content"]), Some("source"));
        assert_eq!(suggest("zzzzz", &["source", "content"]), None);
    }

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(0, "change"), "0 changes");
        assert_eq!(count(1, "problem"), "1 problem");
        assert_eq!(count(12, "resource"), "12 resources");
    }
}
