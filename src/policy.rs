//! Rego policies with conftest's conventions, evaluated by an embedded engine (microsoft's
//! `regorus`; no OPA binary): every `.rego` file of the given directories, rules `deny`,
//! `violation` and `warn` (and `deny_NAME`, … as conftest also reads) of `package main`, each a
//! set of messages (strings, or objects with a `msg`) or `true`. Both Rego syntaxes load: v1
//! (`deny contains msg if { … }`, OPA 1.0's default) and v0 (`deny[msg] { … }`), chosen per file
//! (v1 first, as conftest does since OPA 1.0). Each `package main` file is evaluated on its own —
//! with the directory's other packages (helper libraries) — so a finding names its file.
//!
//! A leaf: the input is any JSON (kiln gives it the Terraform-shaped plan, `plan::terraform`);
//! nothing of kiln is used.

use std::path::{Path, PathBuf};

use miette::{NamedSource, SourceSpan};
use serde_json::Value;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// `deny` / `violation`: the plan must not be applied.
    Deny,
    /// `warn`: shown, not blocking.
    Warn,
}

/// One message of one rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Finding {
    pub level: Level,
    /// The policy file, as found under its directory.
    pub file: PathBuf,
    /// The rule that produced it (`deny`, `warn_tags`, …).
    pub rule: String,
    pub msg: String,
}

/// What the policies said of one input.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// The `package main` files evaluated.
    pub files: Vec<PathBuf>,
    /// Denials first, then warnings, each by file.
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn denied(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Deny)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.level == Level::Warn)
    }

    pub fn is_denied(&self) -> bool {
        self.denied().next().is_some()
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PolicyError {
    #[error("cannot read the policy directory `{dir}`")]
    #[diagnostic(
        code(kiln::policy::unreadable),
        help("`--policy` and `[policy] dirs` name directories of `.rego` files")
    )]
    Read {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    #[diagnostic(
        code(kiln::policy::syntax),
        help("policies are Rego (v1, or v0 as older conftest policies are written)")
    )]
    Syntax {
        file: PathBuf,
        line: u32,
        message: String,
        #[source_code]
        src: NamedSource<String>,
        #[label("here")]
        span: Option<SourceSpan>,
    },
    #[error("the policy `{file}` failed: {message}")]
    #[diagnostic(code(kiln::policy::eval))]
    Eval { file: PathBuf, message: String },
}

/// One loaded file.
struct File {
    path: PathBuf,
    text: String,
    /// Parsed as Rego v0 (v1 refused it).
    v0: bool,
    /// Its `package` is `main`.
    main: bool,
    /// The `deny*` / `violation*` / `warn*` rules it declares.
    rules: Vec<String>,
}

/// The policies of some directories, parsed.
pub struct Policies {
    /// Per directory, its files (policy and helper files are evaluated together per directory).
    dirs: Vec<Vec<File>>,
}

/// The `.rego` files under `dir` (recursively), sorted.
fn rego_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| PolicyError::Read {
            dir: d.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| PolicyError::Read {
                dir: d.clone(),
                source,
            })?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rego")
                && !p
                    .file_stem()
                    .is_some_and(|s| s.to_string_lossy().ends_with("_test"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The rules a policy file declares that conftest reads: a line that starts with `deny`,
/// `violation` or `warn` (alone or followed by `_NAME`) and then a rule head.
fn declared_rules(text: &str) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let is_rule = ["deny", "violation", "warn"]
            .iter()
            .any(|p| name == *p || name.strip_prefix(p).is_some_and(|r| r.starts_with('_')));
        let rest = line[name.len()..].trim_start();
        let head = ["[", "{", "=", ":=", "contains", "if"]
            .iter()
            .any(|h| rest.starts_with(h));
        if is_rule && head && !rules.contains(&name) {
            rules.push(name);
        }
    }
    rules
}

/// The syntax error of `text` as a diagnostic: regorus reports `--> FILE:LINE:COL` and then
/// `error: MESSAGE`.
fn syntax_error(path: &Path, text: &str, err: &dyn std::fmt::Display) -> PolicyError {
    let full = err.to_string();
    let (line, col) = full
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|loc| {
            let mut parts = loc.rsplitn(3, ':');
            let col = parts.next()?.parse::<u32>().ok()?;
            let line = parts.next()?.parse::<u32>().ok()?;
            Some((line, col))
        })
        .unwrap_or((0, 0));
    let message = full
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("error: ").to_string())
        .unwrap_or(full.clone());
    let span = (line > 0).then(|| {
        let start: usize = text
            .lines()
            .take(line as usize - 1)
            .map(|l| l.len() + 1)
            .sum::<usize>()
            + (col.max(1) as usize - 1);
        SourceSpan::from((start.min(text.len()), 1))
    });
    PolicyError::Syntax {
        file: path.to_path_buf(),
        line,
        message,
        src: NamedSource::new(path.display().to_string(), text.to_string()),
        span,
    }
}

fn eval_error(file: &Path, e: impl std::fmt::Display) -> PolicyError {
    PolicyError::Eval {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}

fn engine(v0: bool) -> regorus::Engine {
    let mut e = regorus::Engine::new();
    e.set_rego_v0(v0);
    e
}

impl Policies {
    /// Read and parse every `.rego` file (`*_test.rego` aside) under each directory; the first
    /// file that is Rego of neither syntax is an error naming its file and line.
    pub fn load(dirs: &[PathBuf]) -> Result<Policies, PolicyError> {
        let mut out = Vec::new();
        for dir in dirs {
            let mut files = Vec::new();
            for path in rego_files(dir)? {
                let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
                    dir: path.clone(),
                    source,
                })?;
                let name = path.display().to_string();
                let parsed = |v0: bool| engine(v0).add_policy(name.clone(), text.clone());
                let (package, v0) = match parsed(false) {
                    Ok(p) => (p, false),
                    Err(v1_err) => match parsed(true) {
                        Ok(p) => (p, true),
                        Err(_) => return Err(syntax_error(&path, &text, &v1_err)),
                    },
                };
                files.push(File {
                    main: package == "data.main",
                    rules: declared_rules(&text),
                    path,
                    text,
                    v0,
                });
            }
            out.push(files);
        }
        Ok(Policies { dirs: out })
    }

    /// Whether there is no policy at all.
    pub fn is_empty(&self) -> bool {
        self.dirs.iter().all(|d| d.iter().all(|f| !f.main))
    }

    /// Evaluate every `package main` file against `input`.
    pub fn evaluate(&self, input: &Value) -> Result<Report, PolicyError> {
        let mut report = Report::default();
        let input = regorus::Value::from(input.clone());
        for files in &self.dirs {
            for f in files.iter().filter(|f| f.main) {
                report.files.push(f.path.clone());
                let mut e = engine(f.v0);
                e.add_policy(f.path.display().to_string(), f.text.clone())
                    .map_err(|e| eval_error(&f.path, e))?;
                // The directory's helper packages, of the same syntax.
                for lib in files.iter().filter(|l| !l.main && l.v0 == f.v0) {
                    e.add_policy(lib.path.display().to_string(), lib.text.clone())
                        .map_err(|e| eval_error(&f.path, e))?;
                }
                e.set_input(input.clone());
                for rule in &f.rules {
                    let v = e
                        .eval_rule(format!("data.main.{rule}"))
                        .map_err(|e| eval_error(&f.path, e))?;
                    let level = match rule.starts_with("warn") {
                        true => Level::Warn,
                        false => Level::Deny,
                    };
                    for msg in messages(&v, rule) {
                        report.findings.push(Finding {
                            level,
                            file: f.path.clone(),
                            rule: rule.clone(),
                            msg,
                        });
                    }
                }
            }
        }
        report.findings.sort();
        report.findings.dedup();
        Ok(report)
    }
}

/// The messages of a rule's value: a set (or array) of strings or of objects with `msg`; `true`
/// (a boolean rule that holds) is one message naming the rule.
fn messages(v: &regorus::Value, rule: &str) -> Vec<String> {
    let json: Value = v
        .to_json_str()
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let one = |x: &Value| match x {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .get("msg")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| x.to_string()),
        other => other.to_string(),
    };
    match &json {
        Value::Array(items) => items.iter().map(one).collect(),
        Value::Bool(true) => vec![format!("`{rule}` holds")],
        Value::String(_) | Value::Object(_) => vec![one(&json)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_heads_of_both_syntaxes_are_found() {
        let text = "package main\n\ndeny[msg] {\n  true\n  msg := \"a\"\n}\nwarn_tags contains msg if {\n  msg := \"b\"\n}\ndenylist := [1]\nviolation = true\n";
        assert_eq!(declared_rules(text), ["deny", "warn_tags", "violation"]);
    }
}
