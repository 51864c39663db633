//! A tar writer that streams: each entry's header, then its bytes copied from a reader in
//! fixed-size pieces, so an image of many GiB is written with a constant, small buffer.
//!
//! Entries are ustar regular files (mode 0644, owner root, fixed mtime so the same bundle
//! gives the same tarball). Sizes of 8 GiB and more do not fit ustar's 11 octal digits;
//! they use the GNU base-256 size field, which GNU tar, Go's archive/tar (Docker,
//! containerd, k3s) and Rust's tar crate all read. CUDA layers reach that size.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;
/// The largest size ustar's octal field holds: 11 digits.
const OCTAL_MAX: u64 = 0o777_7777_7777;
const COPY_BUFFER: usize = 1024 * 1024;

/// Writes a tar archive into `W`.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// One file from memory (index.json, manifest.json).
    pub fn append_bytes(&mut self, path: &str, bytes: &[u8]) -> io::Result<()> {
        self.append_reader(path, bytes.len() as u64, &mut &bytes[..], &mut |_| {})
    }

    /// One file of exactly `size` bytes read from `reader`; `seen` gets every piece as it
    /// passes (for hashing and progress). A reader that ends early or has more is an error:
    /// the header already promised `size`.
    pub fn append_reader(
        &mut self,
        path: &str,
        size: u64,
        reader: &mut dyn Read,
        seen: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        self.out.write_all(&header(path, size)?)?;
        let mut buf = vec![0u8; COPY_BUFFER.min(size.max(1) as usize)];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{path}: the source ended {left} bytes early"),
                ));
            }
            seen(&buf[..n]);
            self.out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        let mut one = [0u8; 1];
        if reader.read(&mut one)? != 0 {
            return Err(io::Error::other(format!(
                "{path}: the source is longer than its {size} bytes"
            )));
        }
        let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..pad])
    }

    /// The two zero blocks that end an archive; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A header block for a regular file.
fn header(path: &str, size: u64) -> io::Result<[u8; BLOCK]> {
    if path.len() >= 100 || !path.is_ascii() {
        return Err(io::Error::other(format!(
            "{path:?} is too long for a tar entry name"
        )));
    }
    let mut h = [0u8; BLOCK];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, path.as_bytes());
    put(100, b"0000644\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    if size <= OCTAL_MAX {
        put(124, format!("{size:011o}\0").as_bytes());
    } else {
        // GNU base-256: high bit of the first byte set, the size big-endian in the rest.
        let mut field = [0u8; 12];
        field[4..].copy_from_slice(&size.to_be_bytes());
        field[0] = 0x80;
        put(124, &field);
    }
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = TarWriter::new(Vec::new());
        for (path, bytes) in entries {
            tar.append_bytes(path, bytes)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        tar.finish().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The system's tar reads what we write, names and contents intact.
    #[test]
    fn gnu_tar_lists_and_extracts_the_archive() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let big = vec![7u8; 1500];
        let bytes = archive(&[
            ("oci-layout", b"{}"),
            ("blobs/sha256/abc", &big),
            ("empty", b""),
        ]);
        assert_eq!(bytes.len() % BLOCK, 0);
        let path = dir.path().join("t.tar");
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
        let out = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("tar: {e}"));
        assert!(out.status.success(), "{out:?}");
        let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap_or_default();
        assert_eq!(read("oci-layout"), b"{}");
        assert_eq!(read("blobs/sha256/abc"), big);
        assert!(dir.path().join("empty").is_file());
    }

    #[test]
    fn a_reader_shorter_or_longer_than_its_size_is_an_error() {
        let mut tar = TarWriter::new(Vec::new());
        let err = tar
            .append_reader("x", 10, &mut &b"12345"[..], &mut |_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("5 bytes early"), "{err}");
        let mut tar = TarWriter::new(Vec::new());
        let err = tar
            .append_reader("x", 2, &mut &b"12345"[..], &mut |_| {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("longer than its 2 bytes"), "{err}");
    }

    #[test]
    fn sizes_past_eight_gib_use_base_256() {
        let h = header("big", 10 * 1024 * 1024 * 1024).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h[124], 0x80);
        let mut size = [0u8; 8];
        size.copy_from_slice(&h[128..136]);
        assert_eq!(u64::from_be_bytes(size), 10 * 1024 * 1024 * 1024);
        let small = header("small", 8).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&small[124..136], b"00000000010\0");
        assert!(header(&"x".repeat(100), 1).is_err());
    }
}
