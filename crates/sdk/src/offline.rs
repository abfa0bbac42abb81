//! What the client serves without the server: the snapshot cached on disk
//! by an earlier run, or a bootstrap file.

use std::path::{Path, PathBuf};

use sextant_formats::SourceFormat;

use crate::state::{Loaded, Source};
use crate::wire::SnapshotBody;

/// Why an offline source could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OfflineError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a Sextant SDK cache file: {source}")]
    CacheFormat { path: PathBuf, source: serde_json::Error },
    #[error("{path} was cached for environment `{found}`, not `{expected}`")]
    OtherEnvironment {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path}: {source}")]
    Import {
        path: PathBuf,
        source: sextant_formats::ImportError,
    },
    #[error("{path} does not compile: {source}")]
    Compile {
        path: PathBuf,
        source: sextant_core::CompileError,
    },
}

/// Reads the cache file. `expected` is the configured environment, if any.
pub(crate) async fn read_cache(path: &Path, expected: Option<&str>) -> Result<Loaded, OfflineError> {
    let text = tokio::fs::read(path).await.map_err(|source| OfflineError::Read {
        path: path.into(),
        source,
    })?;
    let body: SnapshotBody = serde_json::from_slice(&text).map_err(|source| OfflineError::CacheFormat {
        path: path.into(),
        source,
    })?;
    if let Some(expected) = expected
        && body.environment != expected
    {
        return Err(OfflineError::OtherEnvironment {
            path: path.into(),
            found: body.environment,
            expected: expected.into(),
        });
    }
    Loaded::from_body(body, Source::Cache).map_err(|source| OfflineError::Compile {
        path: path.into(),
        source,
    })
}

/// Reads a bootstrap file in Sextant, Unleash or flagd format (`None`:
/// detected from the content) for `environment`.
pub(crate) async fn read_bootstrap(
    path: &Path,
    format: Option<SourceFormat>,
    environment: &str,
) -> Result<Loaded, OfflineError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| OfflineError::Read {
            path: path.into(),
            source,
        })?;
    let (_, document) = sextant_formats::import(&text, format, environment).map_err(|source| OfflineError::Import {
        path: path.into(),
        source,
    })?;
    let body = SnapshotBody {
        workspace: None,
        environment: environment.to_owned(),
        version: 0,
        document,
    };
    Loaded::from_body(body, Source::Bootstrap).map_err(|source| OfflineError::Compile {
        path: path.into(),
        source,
    })
}

/// Writes the cache atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over the old one, so a crash leaves
/// either the old or the new snapshot, never half of one.
pub(crate) async fn write_cache(path: &Path, body: &SnapshotBody) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(body).map_err(std::io::Error::other)?;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per write: two clients of one process may share a cache file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself (best effort: not every platform can
        // open a directory).
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> SnapshotBody {
        serde_json::from_value(json!({
            "workspace": "default", "environment": "production", "version": 7,
            "document": {"flags": [{"key": "a", "kind": "boolean",
                "variations": [{"key": "on", "value": true}],
                "environments": {"production": {"enabled": true, "default_serve": {"variation": "on"}}}}]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn the_cache_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/cache.json");
        write_cache(&path, &body()).await.unwrap();
        write_cache(&path, &body()).await.unwrap();
        let loaded = read_cache(&path, Some("production")).await.unwrap();
        assert_eq!(loaded.version(), 7);
        assert_eq!(loaded.source, Source::Cache);
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[tokio::test]
    async fn a_cache_of_another_environment_or_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.json");
        write_cache(&path, &body()).await.unwrap();
        assert!(matches!(
            read_cache(&path, Some("staging")).await,
            Err(OfflineError::OtherEnvironment { .. })
        ));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            read_cache(&path, None).await,
            Err(OfflineError::CacheFormat { .. })
        ));
        assert!(matches!(
            read_cache(&dir.path().join("missing"), None).await,
            Err(OfflineError::Read { .. })
        ));
    }
}
