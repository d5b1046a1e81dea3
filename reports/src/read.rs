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
    /// A report whose `version` is missing or not a whole number (as it
    /// was written, quoted and on one line).
    BadVersion(String),
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
            ReadError::BadVersion(v) => {
                write!(
                    f,
                    "a mapileak report whose \"version\" is {v}, not a number (this build reads version {VERSION})"
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
    match header.version.as_ref().map(|v| (v.as_u64(), v)) {
        Some((Some(v), _)) if v == u64::from(VERSION) => {}
        Some((Some(v), _)) => return Err(ReadError::Version(v)),
        Some((None, v)) => {
            let shown = crate::text::one_line(&v.to_string())
                .chars()
                .take(40)
                .collect();
            return Err(ReadError::BadVersion(shown));
        }
        None => return Err(ReadError::BadVersion("missing".to_owned())),
    }
    serde_json::from_slice(bytes).map_err(ReadError::Json)
}

/// Reads and parses a report file (a regular file of at most
/// [`MAX_REPORT_BYTES`]; see [`read_capped`]).
pub fn read_file(path: &Path) -> Result<Report, ReadError> {
    match read_capped(path, MAX_REPORT_BYTES) {
        Ok(bytes) => from_json(&bytes),
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => Err(ReadError::TooLarge(
            fs::metadata(path).map_or(0, |m| m.len()),
        )),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Reads a whole input file of at most `max` bytes: a report, a baseline, a
/// suppressions list. Only a regular file is read (a FIFO, a device or a
/// directory is refused at once, never waited on), and never more than
/// `max` bytes of it, whatever its size claims. A larger file is an error
/// of kind [`io::ErrorKind::FileTooLarge`].
pub fn read_capped(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, a device or a directory)",
        )
    };
    let too_large = |n: u64| {
        io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("file is {n} bytes, over the {max}-byte limit"),
        )
    };
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular());
    }
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    // Opened without waiting: a FIFO swapped in after the check must not
    // block the open (Unix); its handle is checked again below.
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, max + 1), &mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
const O_NONBLOCK: i32 = 0o4000;
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
const O_NONBLOCK: i32 = 0x0004;

/// Writes `contents` to `path` atomically: a new temporary file in the same
/// directory, under a name no other process can guess, created exclusively
/// (`O_CREAT|O_EXCL`, `CREATE_NEW` on Windows: a symlink or file planted at
/// that name makes the write fail, it is never followed or overwritten),
/// flushed, then renamed over `path` (which replaces a planted symlink
/// itself, not what it points to). A reader sees the old file or the new
/// one, never half of one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(contents))
}

/// [`write_atomic`], with the contents streamed by `write` (through a
/// buffer) instead of built in memory first: a report of a million objects
/// goes to disk without a second copy of it.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = write_temporary(path, &|| true, write)?;
    let moved = fs::rename(&tmp, path);
    if moved.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    moved
}

/// Writes a new file at `path`, never replacing one: as
/// [`write_atomic_with`], but when a file (or a symlink) is already there,
/// put there by someone else, it stays and the new file takes the next free
/// name (`name-2.json`, `name-3.json`, ...). The file appears whole or not
/// at all: linked into place (a link never replaces), or where links are
/// not supported, renamed to a name found free. Returns where it went.
pub fn write_new_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<PathBuf> {
    write_new_while(path, &|| true, write)
}

/// [`write_new_with`], given up (its temporary file removed, an
/// [`io::ErrorKind::Interrupted`] error) when `keep_going` says no: checked
/// once the temporary file exists and again before it is put in place. (A
/// process that is ending removes the temporary files it finds; a write
/// that begins meanwhile removes its own.)
pub fn write_new_while(
    path: &Path,
    keep_going: &dyn Fn() -> bool,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let tmp = write_temporary(path, keep_going, write)?;
    let placed = if keep_going() {
        place_new(&tmp, path)
    } else {
        Err(interrupted())
    };
    let _ = fs::remove_file(&tmp);
    placed
}

fn interrupted() -> io::Error {
    io::Error::new(
        io::ErrorKind::Interrupted,
        "given up: the process is ending",
    )
}

/// How many other names [`write_new_with`] tries.
const NEW_NAME_TRIES: u32 = 100;

fn place_new(tmp: &Path, path: &Path) -> io::Result<PathBuf> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    for n in 1..=NEW_NAME_TRIES {
        let target = if n == 1 {
            path.to_path_buf()
        } else {
            path.with_file_name(format!("{stem}-{n}{ext}"))
        };
        match fs::hard_link(tmp, &target) {
            Ok(()) => return Ok(target),
            // Taken (the link's AlreadyExists), or no hard links on this
            // file system: a rename to a name found free.
            Err(_) => {
                if fs::symlink_metadata(&target).is_ok() {
                    continue;
                }
                fs::rename(tmp, &target)?;
                return Ok(target);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} and {NEW_NAME_TRIES} other names exist already",
            path.display()
        ),
    ))
}

/// The contents, written and flushed to a new temporary file beside `path`
/// under an unguessable name, created exclusively.
fn write_temporary(
    path: &Path,
    keep_going: &dyn Fn() -> bool,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", unguessable()));
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let result = (|| {
        if !keep_going() {
            return Err(interrupted());
        }
        let mut w = io::BufWriter::with_capacity(1 << 16, f);
        write(&mut w)?;
        let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A 64-bit value another local user cannot predict: std's randomly keyed
/// SipHash (keys from the system's random source, fresh per call) over the
/// time and a counter.
pub(crate) fn unguessable() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, ProviderKind, SessionInfo};

    #[test]
    fn a_new_file_never_replaces_one_someone_put_there() {
        let dir = std::env::temp_dir().join(format!("mapileak-new-{}", unguessable()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("report.json");
        fs::write(&path, "planted").unwrap();
        fs::write(dir.join("report-2.json"), "planted too").unwrap();
        let went = write_new_with(&path, |w| w.write_all(b"ours")).unwrap();
        assert_eq!(went, dir.join("report-3.json"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "planted");
        assert_eq!(
            fs::read_to_string(dir.join("report-2.json")).unwrap(),
            "planted too"
        );
        assert_eq!(fs::read_to_string(&went).unwrap(), "ours");
        // Where the name is free, it is the name; no temporary file stays.
        let fresh = write_new_with(&dir.join("other.json"), |w| w.write_all(b"x")).unwrap();
        assert_eq!(fresh, dir.join("other.json"));
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let _ = fs::remove_dir_all(&dir);
    }

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
    fn a_version_that_is_no_number_says_so() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["version"] = "1".into();
        let e = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a mapileak report whose \"version\" is \"1\", not a number (this build reads version 1)"
        );
        v.as_object_mut().unwrap().remove("version");
        let e = from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"version\" is missing"), "{e}");
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
        // Broken, not cut short: said otherwise.
        let e = from_json(b"{\"format\": ]").unwrap_err();
        assert!(!e.to_string().starts_with("truncated JSON"), "{e}");
    }

    #[test]
    fn a_report_file_reads_back_and_a_missing_one_is_an_io_error() {
        let dir = scratch("file");
        let path = dir.join("r.json");
        write_atomic(&path, &serde_json::to_vec(&sample()).unwrap()).unwrap();
        assert_eq!(read_file(&path).unwrap(), sample());
        let e = read_file(&dir.join("missing.json")).unwrap_err();
        assert!(
            matches!(&e, ReadError::Io(io) if io.kind() == io::ErrorKind::NotFound),
            "{e}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_never_written_through() {
        let dir = std::env::temp_dir().join(format!("mapileak-write-{:x}", unguessable()));
        fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim.txt");
        fs::write(&victim, b"precious").unwrap();
        let report = dir.join("r.json");
        std::os::unix::fs::symlink(&victim, &report).unwrap();
        // Where the temporary file used to go, by a name anyone could guess.
        let guessed = dir.join(format!(".r.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &guessed).unwrap();
        write_atomic(&report, b"{}").unwrap();
        assert_eq!(
            fs::read(&victim).unwrap(),
            b"precious",
            "the target is untouched"
        );
        assert!(
            !fs::symlink_metadata(&report)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&report).unwrap(), b"{}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_at_once() {
        for special in ["/dev/zero", "/dev/null", "/"] {
            let e = read_capped(Path::new(special), 1 << 20).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{special}: {e}");
        }
    }

    /// A scratch directory of the test's own.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mapileak-{name}-{:x}", unguessable()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_cap_is_exact() {
        let dir = scratch("cap");
        let path = dir.join("f");
        fs::write(&path, [7u8; 10]).unwrap();
        assert_eq!(read_capped(&path, 10).unwrap(), [7u8; 10]);
        let e = read_capped(&path, 9).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "file is 10 bytes, over the 9-byte limit");
        // Larger than the cap by more than one byte: its real size is named.
        let e = read_capped(&path, 4).unwrap_err();
        assert_eq!(e.to_string(), "file is 10 bytes, over the 4-byte limit");
        let _ = fs::remove_dir_all(&dir);
    }

    /// A file that says it is smaller than it is (procfs says 0 bytes) is
    /// still never read past the cap.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_larger_than_its_size_says_is_still_capped() {
        let path = Path::new("/proc/self/status");
        assert_eq!(fs::metadata(path).unwrap().len(), 0);
        let e = read_capped(path, 10).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(e.to_string(), "file is 11 bytes, over the 10-byte limit");
    }

    #[test]
    fn a_report_over_the_limit_is_too_large_with_its_size() {
        let dir = scratch("large");
        let path = dir.join("big.json");
        // Sparse: nothing is written.
        let f = fs::File::create(&path).unwrap();
        f.set_len(MAX_REPORT_BYTES + 5).unwrap();
        drop(f);
        let e = read_file(&path).unwrap_err();
        assert!(
            matches!(e, ReadError::TooLarge(n) if n == MAX_REPORT_BYTES + 5),
            "{e}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_temporary_file_is_made_beside_the_target() {
        let dir = scratch("beside");
        let path = dir.join("r.json");
        write_atomic_with(&path, |w| {
            let temporaries: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                matches!(&temporaries[..], [t] if t.starts_with(".r.json.") && t.ends_with(".tmp")),
                "{temporaries:?}"
            );
            w.write_all(b"{}")
        })
        .unwrap();
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["r.json"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn temporary_names_differ() {
        let a: Vec<u64> = (0..64).map(|_| unguessable()).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(a.len(), b.len());
    }
}
