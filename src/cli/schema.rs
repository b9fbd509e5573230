//! `kiln schema`: the JSON Schema of `kiln.toml`, for editors (e.g. Even Better TOML).

use super::out;
use std::process::ExitCode;

pub fn run() -> miette::Result<ExitCode> {
    out::println(
        &serde_json::to_string_pretty(&crate::manifest::schema::json_schema())
            .expect("schema serialises"),
    )?;
    Ok(ExitCode::SUCCESS)
}
