//! Canonical formatting of a manifest file (`kiln fmt`), through `toml_edit` so every comment and
//! blank line stays: within each table the keys kiln knows come in the order of the manifest
//! reference (the JSON Schema's order, [`super::schema`]), unknown keys after them in their
//! order, and the `=` of a table's keys aligned (one space after the longest key). Values, inline
//! tables and the order of the tables themselves are left as written.

use toml_edit::{DocumentMut, Item, Table};

use super::schema::{Field, Ty, TOP};

/// `text` formatted (`Err`: not TOML, with the parser's message).
pub fn format(text: &str) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    table(doc.as_table_mut(), TOP);
    Ok(doc.to_string())
}

/// Sort and align one table, then the tables under it.
fn table(t: &mut Table, fields: &[Field]) {
    let rank = |k: &str| {
        fields
            .iter()
            .position(|f| f.name == k)
            .unwrap_or(fields.len())
    };
    t.sort_values_by(|k1, _, k2, _| rank(k1.get()).cmp(&rank(k2.get())));
    let width = t
        .iter()
        .filter(|(_, v)| v.is_value())
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (mut k, v) in t.iter_mut() {
        if let Item::Value(v) = v {
            let pad = width - k.get().chars().count();
            k.leaf_decor_mut().set_suffix(" ".repeat(pad + 1));
            v.decor_mut().set_prefix(" ");
        }
    }
    for (k, v) in t.iter_mut() {
        let Item::Table(sub) = v else { continue };
        match fields.iter().find(|f| f.name == k.get()).map(|f| f.ty) {
            Some(Ty::Table(f)) => table(sub, f),
            // `[instance.NAME]`: each named table.
            Some(Ty::Named(f)) => {
                for (_, named) in sub.iter_mut() {
                    if let Item::Table(n) = named {
                        table(n, f);
                    }
                }
            }
            Some(Ty::Vars) => table(sub, &[]),
            _ => {}
        }
    }
    // `[[moved]]` and other arrays of tables.
    for (k, v) in t.iter_mut() {
        let Item::ArrayOfTables(a) = v else { continue };
        if let Some(Ty::TableArray(f)) = fields.iter().find(|f| f.name == k.get()).map(|f| f.ty) {
            for sub in a.iter_mut() {
                table(sub, f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_ordered_and_aligned_and_comments_stay() {
        let text = "# the web tier\n[instance.web]\nshape = \"VM.Standard.E4.Flex\" # flexible\n# named after the tier\ndisplay_name=\"web\"\nzzz_unknown = 1\ncount = 2\n\n[[moved]]\nto = \"instance.web[0]\"\nfrom = \"instance.web\"\n";
        let out = format(text).unwrap();
        assert_eq!(
            out,
            "# the web tier\n[instance.web]\ncount        = 2\n# named after the tier\ndisplay_name = \"web\"\nshape        = \"VM.Standard.E4.Flex\" # flexible\nzzz_unknown  = 1\n\n[[moved]]\nfrom = \"instance.web\"\nto   = \"instance.web[0]\"\n"
        );
        assert_eq!(format(&out).unwrap(), out, "formatting is stable");
    }
}
