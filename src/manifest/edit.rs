//! The edit model: changes to `kiln.toml` made through `toml_edit::DocumentMut`, keeping every
//! comment and the layout, written atomically (for `kiln import`; `--out` writes a new file).

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table};

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EditError {
    #[error("cannot read `{path}`: {source}")]
    #[diagnostic(code(kiln::manifest::edit_read))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not valid TOML: {message}")]
    #[diagnostic(
        code(kiln::manifest::edit_parse),
        help("run `kiln validate` and fix it first")
    )]
    Parse { path: PathBuf, message: String },
    #[error("`[{kind}.{name}]` already exists in `{path}`")]
    #[diagnostic(
        code(kiln::manifest::edit_exists),
        help("choose another address, or remove the table first")
    )]
    Exists {
        path: PathBuf,
        kind: String,
        name: String,
    },
    #[error("cannot write `{path}`: {source}")]
    #[diagnostic(code(kiln::manifest::edit_write))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The start of the comment above a table `kiln import --compartment` wrote: the OCID follows.
const ADOPTED_NOTE: &str = "# adopted by `kiln import` from";

/// The comment line above a table adopted from `ocid`.
pub fn adopted_note(ocid: &str) -> String {
    format!("{ADOPTED_NOTE} {ocid}")
}

/// `kiln.toml` opened for editing.
pub struct ManifestEdit {
    path: PathBuf,
    doc: DocumentMut,
}

impl ManifestEdit {
    pub fn open(dir: &Path) -> Result<ManifestEdit, EditError> {
        let path = dir.join("kiln.toml");
        let text = std::fs::read_to_string(&path).map_err(|source| EditError::Read {
            path: path.clone(),
            source,
        })?;
        let doc = text.parse::<DocumentMut>().map_err(|e| EditError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(ManifestEdit { path, doc })
    }

    /// Append `[kind.name]` with `table`'s keys (comments and layout elsewhere untouched).
    pub fn add_resource(
        &mut self,
        kind: &str,
        name: &str,
        mut table: Table,
    ) -> Result<(), EditError> {
        let root = self.doc.as_table_mut();
        let group = root.entry(kind).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        let Some(group) = group.as_table_mut() else {
            return Err(EditError::Parse {
                path: self.path.clone(),
                message: format!("`{kind}` is not a table"),
            });
        };
        if group.contains_key(name) {
            return Err(EditError::Exists {
                path: self.path.clone(),
                kind: kind.into(),
                name: name.into(),
            });
        }
        table.set_implicit(false);
        table.decor_mut().set_prefix("\n");
        group.insert(name, Item::Table(table));
        Ok(())
    }

    /// An empty document that [`ManifestEdit::save`] writes to `path` (`kiln import --out`).
    pub fn empty(path: PathBuf) -> ManifestEdit {
        ManifestEdit {
            path,
            doc: DocumentMut::new(),
        }
    }

    /// [`ManifestEdit::add_resource`], the table preceded by the comment [`adopted_note`]
    /// (`kiln import --compartment`: a later run recognises the table by it, [`Self::adopted`]).
    pub fn add_adopted(
        &mut self,
        kind: &str,
        name: &str,
        table: Table,
        ocid: &str,
    ) -> Result<(), EditError> {
        self.add_resource(kind, name, table)?;
        if let Some(t) = self.doc[kind][name].as_table_mut() {
            t.decor_mut()
                .set_prefix(format!("\n{}\n", adopted_note(ocid)));
        }
        Ok(())
    }

    /// The `[kind.NAME]` tables of this file whose comment says which OCID they adopted
    /// ([`Self::add_adopted`]): (NAME, OCID).
    pub fn adopted(&self, kind: &str) -> Vec<(String, String)> {
        let Some(group) = self.doc.get(kind).and_then(Item::as_table) else {
            return Vec::new();
        };
        group
            .iter()
            .filter_map(|(name, item)| {
                let prefix = item.as_table()?.decor().prefix()?.as_str()?;
                let ocid = prefix
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(ADOPTED_NOTE))?
                    .trim();
                Some((name.to_string(), ocid.to_string()))
            })
            .collect()
    }

    /// The names of the `[kind.NAME]` tables this file declares (enabled or not).
    pub fn names(&self, kind: &str) -> Vec<String> {
        self.doc
            .get(kind)
            .and_then(Item::as_table)
            .map(|g| g.iter().map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default()
    }

    /// A string value at `table.key` (e.g. `defaults.region`), as written.
    pub fn str_at(&self, table: &str, key: &str) -> Option<String> {
        self.doc.get(table)?.get(key)?.as_str().map(str::to_string)
    }

    pub fn to_text(&self) -> String {
        self.doc.to_string()
    }

    /// Write atomically (temp file in the same folder, fsync, rename).
    pub fn save(&self) -> Result<(), EditError> {
        let err = |source| EditError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        std::io::Write::write_all(&mut tmp, self.to_text().as_bytes()).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&self.path).map_err(|e| err(e.error))?;
        Ok(())
    }
}
