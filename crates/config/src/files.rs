//! Reading the files a config names (signing secrets, credentials, Kafka properties), each up
//! to a size cap.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use crate::error::{FileError, PropertiesError};

/// Files a config names (secrets, Kafka properties) are read up to this size: a path to a
/// device or a huge file by mistake is refused instead of filling memory.
pub const MAX_REFERENCED_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a text file the config names, refusing one past [`MAX_REFERENCED_FILE_BYTES`].
pub(crate) fn read_small_file(path: &Path) -> Result<String, FileError> {
    let failed = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut text = String::new();
    // One byte past the cap tells a file of exactly the cap from a larger one.
    file.take(MAX_REFERENCED_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(failed)?;
    if text.len() as u64 > MAX_REFERENCED_FILE_BYTES {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit: MAX_REFERENCED_FILE_BYTES,
        });
    }
    Ok(text)
}

/// Reads `key=value` lines; blank lines and `#` comments are skipped.
pub(crate) fn read_properties(file: &Path) -> Result<Vec<(String, String)>, PropertiesError> {
    let text = read_small_file(file)?;
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(i, line)| {
            line.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| PropertiesError::Syntax {
                    path: PathBuf::from(file),
                    line: i + 1,
                })
        })
        .collect()
}
