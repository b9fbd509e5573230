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

/// The closest of `ids` to `id` when it differs by a typo (at most 3 edits): OCIDs share long
/// prefixes, so a similarity score would find any id of the same kind "close".
pub fn did_you_mean_id<'a>(id: &str, ids: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    ids.into_iter()
        .map(|c| (strsim::levenshtein(id, c), c))
        .filter(|(d, _)| (1..=3).contains(d))
        .min_by_key(|(d, _)| *d)
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
