//! The knowledge base: canned answers per client, their template language and their file format.
//!
//! SQLite holds the articles (see [`crate::store`]); this module owns what is specific to them: templates
//! ([`template`]) and the `kb/<client>/articles/<id>.md` files ([`files`]).

pub mod analysis;
pub mod files;
pub mod index;
pub mod language;
pub mod suggest;
pub mod template;

use std::path::Path;

use crate::domain::ClientSlug;
use crate::store::{Db, ImportSummary};

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some files are broken; nothing was written.
    #[error("{} problem(s) found; nothing was imported:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Files(Vec<files::Problem>),
    /// Writing to the store failed (earlier clients may have been imported; importing again is safe).
    #[error("storing {client} failed: {source}")]
    Store {
        /// The client being imported.
        client: ClientSlug,
        /// The cause.
        #[source]
        source: crate::store::Error,
    },
}

/// Imports every client directory under `dir`: all files are read and checked first, and if any is broken
/// nothing is written. Each client is then written in one transaction. Importing the same files again
/// changes nothing. `progress` is called with the number of files of each client as it is stored.
pub async fn import_dir(
    db: &Db,
    dir: &Path,
    actor: &str,
    mut progress: impl FnMut(&ClientSlug, usize),
) -> Result<Vec<(ClientSlug, ImportSummary)>, ImportError> {
    let clients = files::read_tree(dir).map_err(ImportError::Files)?;
    let mut summaries = Vec::with_capacity(clients.len());
    for client in clients {
        let summary = db
            .import_client(client.slug.clone(), client.profile, client.articles, actor.to_owned())
            .await
            .map_err(|source| ImportError::Store { client: client.slug.clone(), source })?;
        progress(&client.slug, client.files);
        summaries.push((client.slug, summary));
    }
    Ok(summaries)
}

/// Writes every client's profile and articles under `dir`, in the form [`import_dir`] reads. Returns the
/// number of files written.
///
/// # Errors
/// Reading the store or writing a file failed.
pub async fn export_dir(db: &Db, dir: &Path) -> anyhow::Result<usize> {
    let mut written = 0;
    for client in db.clients().await? {
        let articles: Vec<_> = db
            .all_articles(client.slug.clone())
            .await?
            .into_iter()
            .map(|article| (article.id, article.content))
            .collect();
        written += files::write_client(dir, &client.slug, &client.profile, &articles)?;
    }
    Ok(written)
}
