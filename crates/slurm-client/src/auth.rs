//! Where the JWT comes from: a file re-read when it changes (rotation) or a fixed string
//! (`SLURM_JWT`). A rejected token forces one re-read regardless of the file's timestamp.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{Error, Result};

/// The source of the `X-SLURM-USER-TOKEN` header.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// A fixed token, e.g. from the `SLURM_JWT` environment variable.
    Static(String),
    /// A file holding the token (trailing whitespace ignored), re-read when its
    /// modification time or size changes.
    File(PathBuf),
}

#[derive(Debug, Default)]
struct Cached {
    token: String,
    stamp: Option<(SystemTime, u64)>,
}

/// Caches the current token and notices rotation.
#[derive(Debug)]
pub(crate) struct TokenProvider {
    source: TokenSource,
    cached: Mutex<Cached>,
}

impl TokenProvider {
    pub fn new(source: TokenSource) -> Result<Self> {
        let p = Self {
            source,
            cached: Mutex::new(Cached::default()),
        };
        p.current()?;
        Ok(p)
    }

    /// The token to send now; a file whose timestamp or size changed is read again.
    pub fn current(&self) -> Result<String> {
        match &self.source {
            TokenSource::Static(t) => Ok(t.clone()),
            TokenSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| token_err(path, e))?;
                let stamp = (
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    meta.len(),
                );
                let mut c = self.cached.lock().expect("token cache poisoned");
                if c.stamp != Some(stamp) {
                    c.token = read(path)?;
                    c.stamp = Some(stamp);
                }
                Ok(c.token.clone())
            }
        }
    }

    /// Reads the file again even if it looks unchanged (a rewrite within the same second
    /// with the same length keeps both). Returns whether the token differs from before.
    pub fn reload(&self) -> Result<bool> {
        match &self.source {
            TokenSource::Static(_) => Ok(false),
            TokenSource::File(path) => {
                let token = read(path)?;
                let mut c = self.cached.lock().expect("token cache poisoned");
                let changed = token != c.token;
                c.token = token;
                c.stamp = std::fs::metadata(path)
                    .ok()
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
                Ok(changed)
            }
        }
    }
}

fn read(path: &PathBuf) -> Result<String> {
    let raw = std::fs::read_to_string(path).map_err(|e| token_err(path, e))?;
    Ok(raw.trim().to_string())
}

fn token_err(path: &std::path::Path, source: std::io::Error) -> Error {
    Error::TokenFile {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tokens_follow_rotation() {
        let dir = std::env::temp_dir().join(format!("sps-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwt");
        std::fs::write(&path, "first\n").unwrap();
        let p = TokenProvider::new(TokenSource::File(path.clone())).unwrap();
        assert_eq!(p.current().unwrap(), "first");

        std::fs::write(&path, "second-token\n").unwrap();
        assert_eq!(p.current().unwrap(), "second-token");

        // Same length, possibly same mtime: only a forced reload is sure to see it.
        std::fs::write(&path, "third--token\n").unwrap();
        assert!(p.reload().unwrap());
        assert_eq!(p.current().unwrap(), "third--token");
        assert!(!p.reload().unwrap());

        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(p.reload(), Err(Error::TokenFile { .. })));
    }
}
