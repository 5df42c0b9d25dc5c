//! Shared helpers of the integration tests: synthetic full-size IDX files (made once and
//! kept under cargo's per-package temporary directory), per-test dataset directories made of
//! hard links to them, options that touch nothing outside a test's directory, and a tiny
//! HTTP server on 127.0.0.1.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use norma_datasets::{DataFile, DatasetKind, LoadOptions};
use sha2::{Digest, Sha256};

pub const IMAGE_LEN: usize = 784;

/// Pixel `j` of image `i` of `file` (covers 0..=255, differs between images).
pub fn pixel(file: DataFile, i: usize, j: usize) -> u8 {
    let salt = if file == DataFile::TrainImages { 3 } else { 11 };
    ((i * salt + j) % 256) as u8
}

/// Label of item `i` of `file`: every class equally often (6,000 / 1,000 each).
pub fn label(file: DataFile, i: usize) -> u8 {
    let shift = if file == DataFile::TrainLabels { 0 } else { 7 };
    ((i + shift) % 10) as u8
}

pub fn images_bytes(file: DataFile, count: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + count * IMAGE_LEN);
    for x in [2051u32, count as u32, 28, 28] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    for i in 0..count {
        v.extend((0..IMAGE_LEN).map(|j| pixel(file, i, j)));
    }
    v
}

pub fn labels_bytes(file: DataFile, count: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + count);
    for x in [2049u32, count as u32] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend((0..count).map(|i| label(file, i)));
    v
}

/// The correct content of `file`.
pub fn valid_bytes(file: DataFile) -> Vec<u8> {
    if file.is_images() {
        images_bytes(file, file.expected_count())
    } else {
        labels_bytes(file, file.expected_count())
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Directories holding the four valid files, extracted (`raw`) and gzipped (`gz`).
pub struct Fixtures {
    pub raw: PathBuf,
    pub gz: PathBuf,
}

fn tmp_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// The fixtures, written on first use and reused by later test runs.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        // Bump the version whenever `valid_bytes` changes: old fixtures are reused otherwise.
        let root = tmp_root().join("datasets-fixtures-v1");
        if !root.join("complete").is_file() {
            // Built aside and renamed, so a concurrent or interrupted run never sees half.
            let building = tempfile::tempdir_in(tmp_root()).unwrap();
            let (raw, gz) = (building.path().join("raw"), building.path().join("gz"));
            fs::create_dir(&raw).unwrap();
            fs::create_dir(&gz).unwrap();
            for file in DataFile::ALL {
                let bytes = valid_bytes(file);
                fs::write(raw.join(file.file_name()), &bytes).unwrap();
                fs::write(gz.join(file.gz_name()), gzip(&bytes)).unwrap();
            }
            fs::write(building.path().join("complete"), b"").unwrap();
            let built = building.keep();
            if fs::rename(&built, &root).is_err() {
                // Another run got there first; theirs is as good as ours.
                let _ = fs::remove_dir_all(&built);
            }
        }
        Fixtures {
            raw: root.join("raw"),
            gz: root.join("gz"),
        }
    })
}

/// A fresh directory (on the fixtures' file system, so hard links work).
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(tmp_root()).unwrap()
}

/// Fills `dir` with links to the four data files of `from` (the fixtures' `raw` or `gz`).
pub fn link_all(from: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for file in DataFile::ALL {
        for name in [file.file_name(), file.gz_name()] {
            let src = from.join(name);
            if src.is_file() {
                let dest = dir.join(name);
                if fs::hard_link(&src, &dest).is_err() {
                    fs::copy(&src, &dest).unwrap();
                }
            }
        }
    }
}

/// Replaces `dir/name` by `bytes` without touching a file it may be hard-linked to.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    let _ = fs::remove_file(&path);
    fs::write(path, bytes).unwrap();
}

/// Names in `dir` (empty if it does not exist), sorted; hidden files included.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every path under `dir` (relative, sorted), with each file's length and modification time:
/// a snapshot that changes when anything in the tree is created, removed or written.
pub fn tree(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, u64, std::time::SystemTime)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            out.push((
                path.strip_prefix(root).unwrap().to_path_buf(),
                meta.len(),
                meta.modified().unwrap(),
            ));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Sets the modification time of `path` to `age` ago (to make a file look left over).
pub fn age(path: &Path, age: Duration) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - age)
        .unwrap();
}

/// Options that look only in `dir` (as an explicit directory), never download, and cache
/// inside `dir`: a test cannot touch anything outside its own directory.
pub fn only(kind: DatasetKind, dir: &Path) -> LoadOptions {
    kind.options()
        .read_env(false)
        .data_dir(Some(dir.to_path_buf()))
        .local_dir(dir.join("no-local-dir"))
        .system_dir(None)
        .download(false)
        .user_cache_dir(dir.join("user-cache"))
}

/// A minimal HTTP/1.1 server on 127.0.0.1 answering GET from a map of paths to bodies (404
/// otherwise). It stops when dropped, and by itself after a minute at most.
pub struct Server {
    pub base_url: String,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        requests2.fetch_add(1, Ordering::SeqCst);
                        let _ = serve(stream, &files);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        });
        Server {
            base_url,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
        if request[0] == 0x16 {
            // A TLS handshake record: this server only speaks plain HTTP, so hang up at once.
            return Ok(());
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    match files.get(&path) {
        Some(body) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(body)?;
        }
        None => {
            let body = b"not found";
            write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(body)?;
        }
    }
    stream.flush()
}
