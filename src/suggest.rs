//! "Did you mean": the closest known word to a mistyped one. A leaf that the manifest's
//! diagnostics, `kiln output`'s addresses and any other lookup share; it depends on nothing of kiln.

/// The closest of `candidates` to `word`, when close enough to suggest (Jaro-Winkler above 0.8).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_only_what_is_close() {
        assert_eq!(did_you_mean("shpe", ["shape", "state"]), Some("shape"));
        assert_eq!(did_you_mean("zzz", ["shape", "state"]), None);
    }
}
