//! Reading and writing report files.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{FORMAT, Report, VERSION};

/// The largest report file a reader accepts (256 MiB): a bigger one is
/// refused before it is read, not parsed into memory.
pub const MAX_REPORT_BYTES: u64 = 256 << 20;

/// Why a report could not be read. `Display` is one line naming what is wrong.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read.
    Io(io::Error),
    /// The file is larger than the 256 MiB a report may have.
    TooLarge(u64),
    /// Not JSON, truncated JSON, or JSON of the wrong shape.
    Json(serde_json::Error),
    /// JSON, but not a mapileak report.
    NotAReport,
    /// A report of a format version this reader does not know.
    Version(u64),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "cannot read: {e}"),
            ReadError::TooLarge(n) => write!(
                f,
                "file is {n} bytes, over the {MAX_REPORT_BYTES}-byte limit"
            ),
            ReadError::Json(e) if e.is_eof() => write!(f, "truncated JSON: {e}"),
            ReadError::Json(e) => write!(f, "not a valid report: {e}"),
            ReadError::NotAReport => {
                write!(f, "not a mapileak report (no \"format\": \"{FORMAT}\")")
            }
            ReadError::Version(v) => {
                write!(
                    f,
                    "report format version {v} is not supported (this build reads version {VERSION})"
                )
            }
        }
    }
}

impl std::error::Error for ReadError {}

/// Parses a report, checking `format` and `version` before the rest.
pub fn from_json(bytes: &[u8]) -> Result<Report, ReadError> {
    #[derive(serde::Deserialize)]
    struct Header {
        format: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
    }
    let header: Header = serde_json::from_slice(bytes).map_err(ReadError::Json)?;
    if header.format.as_ref().and_then(|v| v.as_str()) != Some(FORMAT) {
        return Err(ReadError::NotAReport);
    }
    match header.version.as_ref().and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => return Err(ReadError::Version(v)),
        None => return Err(ReadError::NotAReport),
    }
    serde_json::from_slice(bytes).map_err(ReadError::Json)
}

/// Reads and parses a report file.
pub fn read_file(path: &Path) -> Result<Report, ReadError> {
    let len = fs::metadata(path).map_err(ReadError::Io)?.len();
    if len > MAX_REPORT_BYTES {
        return Err(ReadError::TooLarge(len));
    }
    let bytes = fs::read(path).map_err(ReadError::Io)?;
    from_json(&bytes)
}

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory, flushed, then renamed over `path`. A reader sees the old file
/// or the new one, never half of one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = PathBuf::from(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tmp.set_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, ProviderKind, SessionInfo};

    fn sample() -> Report {
        Report::new(SessionInfo {
            id: 1,
            provider: ProviderKind::Transport,
            label: "xp".into(),
            event: Event::Logoff,
        })
    }

    #[test]
    fn round_trips() {
        let r = sample();
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(from_json(&json).unwrap(), r);
    }

    #[test]
    fn refuses_other_versions_and_formats() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["version"] = 2.into();
        let e = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(e, ReadError::Version(2)), "{e}");
        assert!(matches!(
            from_json(b"{\"a\":1}"),
            Err(ReadError::NotAReport)
        ));
        assert!(e.to_string().contains("version 2"));
    }

    #[test]
    fn truncated_json_says_so() {
        let json = serde_json::to_vec(&sample()).unwrap();
        let e = from_json(&json[..json.len() / 2]).unwrap_err();
        assert!(e.to_string().starts_with("truncated JSON"), "{e}");
    }
}
