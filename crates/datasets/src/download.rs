//! Downloading the `.gz` archives from a mirror, each checked against its known SHA-256.
//!
//! An archive is streamed into a temporary file in the destination folder while being
//! hashed, flushed to disk, and only then renamed to its final name: an interrupted,
//! refused or corrupt download never leaves a file under that name.
//!
//! What a failed download leaves: the directories it created are removed again when they
//! are empty (a directory that existed before is never removed, nor is any file in it);
//! archives already verified are kept, so the next load only fetches the rest. Temporary files
//! of downloads killed long ago are removed before downloading (see [`crate::tempfiles`]).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tempfiles::{self, write_error, DOWNLOAD};
use crate::{DataFile, DatasetError, DatasetKind, LoadOptions};

/// No archive is near this size (the largest is 26 MB); a larger body is not one of ours.
const MAX_ARCHIVE_BYTES: u64 = 64 << 20;

/// Why a download did not produce the files.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The mirror could not be reached or refused the file; the caller reports it together
    /// with every other place it looked.
    Unreachable { url: String, reason: String },
    /// Anything else (checksum mismatch, local I/O): reported as is.
    Fatal(DatasetError),
}

/// Directories made by one [`MadeDirs::create`], outermost first: what a failed download
/// may take back.
#[derive(Debug)]
struct MadeDirs(Vec<PathBuf>);

impl MadeDirs {
    /// Creates `dir` and its missing parents, remembering which ones did not exist.
    fn create(dir: &Path) -> io::Result<MadeDirs> {
        let mut missing = Vec::new();
        let mut next = Some(dir);
        // `symlink_metadata`: anything at the path, even a broken link, existed before.
        while let Some(d) = next.filter(|d| !d.as_os_str().is_empty()) {
            if fs::symlink_metadata(d).is_ok() {
                break;
            }
            missing.push(d.to_path_buf());
            next = d.parent();
        }
        fs::create_dir_all(dir)?;
        missing.reverse();
        Ok(MadeDirs(missing))
    }

    /// Removes the directories made, deepest first, while they are empty: `remove_dir`
    /// refuses a directory holding anything, so no file and no directory that existed
    /// before can be removed.
    fn remove_empty(&self) {
        for dir in self.0.iter().rev() {
            if fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }
}

/// Downloads into `dir` every archive of which neither the `.gz` nor the extracted file is
/// already there; returns how many were downloaded. On failure, the directories this call
/// created are removed again if nothing was saved in them.
pub(crate) fn fetch_missing(options: &LoadOptions, dir: &Path) -> Result<usize, FetchError> {
    let made = MadeDirs::create(dir).map_err(|e| {
        FetchError::Fatal(DatasetError::io("creating the download directory", dir, e))
    })?;
    tempfiles::remove_leftovers(dir, &[DOWNLOAD]);
    let result = fetch_into(options, dir);
    if result.is_err() {
        made.remove_empty();
    }
    result
}

fn fetch_into(options: &LoadOptions, dir: &Path) -> Result<usize, FetchError> {
    let config = ureq::Agent::config_builder()
        .timeout_resolve(Some(options.timeout))
        .timeout_connect(Some(options.timeout))
        .timeout_recv_response(Some(options.timeout))
        .timeout_per_read(Some(options.timeout))
        // The archives are already gzipped: asking for transport compression would only
        // risk receiving a decoded body whose checksum cannot match.
        .accept_encoding("")
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut downloaded = 0;
    for file in DataFile::ALL {
        if dir.join(file.file_name()).is_file() || dir.join(file.gz_name()).is_file() {
            continue;
        }
        let url = format!(
            "{}/{}",
            options.mirror.trim_end_matches('/'),
            file.gz_name()
        );
        let expected = &options.archive_sha256[file.index()];
        fetch_one(
            &agent,
            options.kind,
            &url,
            &dir.join(file.gz_name()),
            expected,
        )?;
        downloaded += 1;
    }
    Ok(downloaded)
}

fn fetch_one(
    agent: &ureq::Agent,
    kind: DatasetKind,
    url: &str,
    dest: &Path,
    expected_sha256: &str,
) -> Result<(), FetchError> {
    let unreachable = |reason: String| FetchError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let mut tmp = DOWNLOAD.create_for(dest).map_err(FetchError::Fatal)?;
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => unreachable(format!("HTTP status {code}")),
        other => unreachable(other.to_string()),
    })?;
    let mut body = response
        .body_mut()
        .with_config()
        .limit(MAX_ARCHIVE_BYTES)
        .reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreachable(format!("transfer interrupted: {e}"))),
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| FetchError::Fatal(write_error(e)))?;
    }
    let actual = to_hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
        // Dropping `tmp` deletes it.
        return Err(FetchError::Fatal(DatasetError::ChecksumMismatch {
            dataset: kind,
            url: url.to_string(),
            file: dest.to_path_buf(),
            expected: expected_sha256.to_string(),
            actual,
        }));
    }
    tmp.commit()
        .map_err(|e| FetchError::Fatal(write_error(e)))?;
    Ok(())
}

/// Lower-case hexadecimal of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_dirs_takes_back_only_what_it_made_and_only_while_empty() {
        let root = tempfile::tempdir().unwrap();
        let existing = root.path().join("existing");
        fs::create_dir(&existing).unwrap();
        let deep = existing.join("a").join("b");
        let made = MadeDirs::create(&deep).unwrap();
        assert_eq!(made.0, [existing.join("a"), deep.clone()]);
        made.remove_empty();
        assert!(!existing.join("a").exists());
        assert!(existing.is_dir());

        let made = MadeDirs::create(&deep).unwrap();
        fs::write(deep.join("kept"), b"x").unwrap();
        made.remove_empty();
        assert!(
            deep.join("kept").is_file(),
            "a directory holding a file stays"
        );

        assert!(MadeDirs::create(&deep).unwrap().0.is_empty());
    }

    #[test]
    fn hex_of_the_empty_sha256() {
        assert_eq!(
            to_hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
