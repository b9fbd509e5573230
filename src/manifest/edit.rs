//! The edit model: changes to `kiln.toml` made through `toml_edit::DocumentMut`, keeping every
//! comment and the layout, written atomically (for `kiln import`).

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
