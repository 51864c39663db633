//! sha256 of local files, computed once per file version per process.
//!
//! Putting one artifact on fifty hosts would otherwise hash it fifty times; concurrent
//! callers for the same file wait for the first one's result. A file is identified by
//! device, inode, size and modification time, so an edited file is hashed again.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

type Cache = Mutex<HashMap<FileId, Arc<OnceCell<String>>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The file's size and lowercase hex sha256.
pub async fn sha256_file(path: &Path) -> Result<(u64, String), std::io::Error> {
    let meta = tokio::fs::metadata(path).await?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let id = FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    };
    let cell = {
        let mut map = cache()
            .lock()
            .map_err(|_| std::io::Error::other("hash cache poisoned"))?;
        Arc::clone(map.entry(id).or_default())
    };
    let path: PathBuf = path.to_path_buf();
    let hex = cell
        .get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || hash_blocking(&path))
                .await
                .map_err(std::io::Error::other)?
        })
        .await?;
    Ok((meta.len(), hex.clone()))
}

fn hash_blocking(path: &Path) -> Result<String, std::io::Error> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_match_sha256sum_and_follow_edits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let (len, hex) = sha256_file(&path).await.unwrap();
        assert_eq!(len, 3);
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::write(&path, b"abcd").unwrap();
        let (len, hex) = sha256_file(&path).await.unwrap();
        assert_eq!(len, 4);
        assert_eq!(
            hex,
            "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"
        );
    }
}
