//! Environment names: they become file names (`envs/<ENV>.toml`, `state/<ENV>.json`) and object
//! names, so they are letters, digits, `-`, `_` and `.` (not only dots), at most 64 — `--env ../x`
//! can never reach outside `envs/` or `state/`. A leaf shared by the manifest and state stages.

/// Whether `env` is a valid environment name.
pub fn is_valid(env: &str) -> bool {
    !env.is_empty()
        && env.len() <= 64
        && env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !env.chars().all(|c| c == '.')
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        for ok in ["default", "prod", "eu-west_2", "v1.2"] {
            assert!(super::is_valid(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "x y", &"a".repeat(65)] {
            assert!(!super::is_valid(bad), "{bad}");
        }
    }
}
