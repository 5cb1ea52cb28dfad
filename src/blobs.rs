//! Content-addressed file storage for media: each file is kept once, named by the SHA-256 of its bytes,
//! under `<data dir>/blobs/<first two hex digits>/<hash>`.
//!
//! One handle, [`Blobs`], is all the rest of recado sees, so an S3-compatible object store can take its
//! place later without touching callers. Files are written to a temporary name, synced, then renamed into
//! place: a crash never leaves a partial file under a hash, and two writers of the same bytes end with one
//! file. The filesystem calls run on the blocking pool.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The media store.
#[derive(Clone, Debug)]
pub struct Blobs {
    root: PathBuf,
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// SHA-256 of the bytes, lowercase hex: the file's name.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl Blobs {
    /// Opens (creating) the store at `root`, readable only by this user.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { root: root.to_owned() })
    }

    /// Starts writing a file.
    ///
    /// # Errors
    /// The temporary file cannot be created.
    pub async fn writer(&self) -> std::io::Result<BlobWriter> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let file = tempfile::NamedTempFile::new_in(root.join("tmp"))?;
            Ok(BlobWriter { root, file: Some(file), hasher: Sha256::new(), size: 0 })
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Reads a whole stored file.
    ///
    /// # Errors
    /// The file is missing or unreadable.
    pub async fn read(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        let path = self.path(sha256)?;
        tokio::fs::read(path).await
    }

    /// Opens a stored file for streaming.
    ///
    /// # Errors
    /// The file is missing or unreadable.
    pub async fn open_file(&self, sha256: &str) -> std::io::Result<tokio::fs::File> {
        let path = self.path(sha256)?;
        tokio::fs::File::open(path).await
    }

    /// The path of a stored file; refuses anything that is not a SHA-256 in hex.
    fn path(&self, sha256: &str) -> std::io::Result<PathBuf> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a blob name"));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }
}

/// A file being written: bytes are hashed as they arrive.
pub struct BlobWriter {
    root: PathBuf,
    file: Option<tempfile::NamedTempFile>,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `bytes`.
    ///
    /// # Errors
    /// The write fails (disk full...).
    pub async fn write(&mut self, bytes: bytes::Bytes) -> std::io::Result<()> {
        self.hasher.update(&bytes);
        self.size += bytes.len() as u64;
        let mut file = self.file.take().ok_or_else(|| std::io::Error::other("writer already finished"))?;
        let file = tokio::task::spawn_blocking(move || {
            file.write_all(&bytes)?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.file = Some(file);
        Ok(())
    }

    /// Syncs the file and moves it to its content address. Returns its hash and size.
    ///
    /// # Errors
    /// The sync or the rename fails.
    pub async fn finish(mut self) -> std::io::Result<Stored> {
        let sha256 = hex::encode(self.hasher.finalize_reset());
        let file = self.file.take().ok_or_else(|| std::io::Error::other("writer already finished"))?;
        let directory = self.root.join(&sha256[..2]);
        let target = directory.join(&sha256);
        let size = self.size;
        tokio::task::spawn_blocking(move || {
            file.as_file().sync_all()?;
            std::fs::create_dir_all(&directory)?;
            // Same name, same bytes: an existing file is already the one we wrote.
            file.persist(&target).map_err(|error| error.error)?;
            std::fs::File::open(&directory)?.sync_all()?;
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(Stored { sha256, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_named_by_their_hash_and_stored_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let blobs = Blobs::open(&dir.path().join("blobs")).expect("open");
        let mut stored = Vec::new();
        for _ in 0..2 {
            let mut writer = blobs.writer().await.expect("writer");
            writer.write(bytes::Bytes::from_static(b"hello ")).await.expect("write");
            writer.write(bytes::Bytes::from_static(b"world")).await.expect("write");
            stored.push(writer.finish().await.expect("finish"));
        }
        assert_eq!(stored[0], stored[1]);
        assert_eq!(stored[0].sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(stored[0].size, 11);
        assert_eq!(blobs.read(&stored[0].sha256).await.expect("read"), b"hello world");
        assert!(blobs.read("../../etc/passwd").await.is_err(), "only hashes name files");
        let leftovers = std::fs::read_dir(dir.path().join("blobs/tmp")).expect("tmp").count();
        assert_eq!(leftovers, 0, "no temporary file is left behind");
    }
}
