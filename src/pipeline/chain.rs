//! A client's plugin chain made ready to run: each running version loaded (from the compiled cache, or
//! compiled again from its kept component), and those that cannot be loaded kept aside, so their failure is
//! recorded like any failed run and the circuit breaker sees a version that no longer loads. A store that
//! cannot be read is not the plugin's fault: loading stops with that error, and the messages wait.

use crate::plugins::rules::LoadStoredError;

use crate::domain::{ClientSlug, PluginState};
use crate::plugins::rules::{ChainLink, Rules};
use crate::store::{Db, PluginRun, RunningPlugin};

/// A client's chain, loaded: the plugins ready to run, and those that could not be loaded (each counts as
/// a failed run, so the circuit breaker sees a plugin that no longer loads).
#[derive(Clone, Default)]
pub(crate) struct LoadedChain {
    /// Ready plugins, in chain order.
    pub links: Vec<ChainLink>,
    /// Plugins that failed to load, with why.
    pub broken: Vec<(RunningPlugin, String)>,
}

impl LoadedChain {
    /// Loads the running plugins of `client`.
    ///
    /// # Errors
    /// The store could not be read (a version's kept component is needed to compile it again).
    pub(crate) async fn load(
        rules: &Rules,
        db: &Db,
        client: &ClientSlug,
        plugins: &[RunningPlugin],
    ) -> crate::store::Result<Self> {
        let mut chain = Self::default();
        for plugin in plugins {
            match rules.loaded(db, client, plugin).await {
                Ok(loaded) => chain.links.push(ChainLink { plugin: plugin.clone(), loaded }),
                Err(LoadStoredError::Store(error)) => return Err(error),
                Err(error) => {
                    tracing::warn!(client = client.as_str(), plugin = %plugin.id, error = %format!("{error:#}"), "plugin does not load");
                    chain.broken.push((plugin.clone(), format!("could not start: {error:#}")));
                }
            }
        }
        Ok(chain)
    }

    /// Whether the chain has an active plugin (loaded or not).
    pub(crate) fn has_active(&self) -> bool {
        self.links
            .iter()
            .map(|link| &link.plugin)
            .chain(self.broken.iter().map(|(plugin, _)| plugin))
            .any(|plugin| plugin.state == PluginState::Active)
    }
}

/// The recorded run of a plugin that could not be loaded.
pub(crate) fn broken_run(plugin: &RunningPlugin, why: &str) -> PluginRun {
    PluginRun {
        plugin_id: plugin.id.clone(),
        plugin_name: plugin.name.clone(),
        plugin_version: plugin.version.clone(),
        applied: false,
        decision: None,
        failure: Some(why.to_owned()),
        logs: Vec::new(),
        fuel: 0,
        duration_us: 0,
        kv_writes: Vec::new(),
    }
}
