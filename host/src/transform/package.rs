//! A chain packed into bytes: the configuration and every plugin's component, precompiled to native
//! code. An engine that runs the chain on many workers (the Spark job) builds the package once, on
//! its driver, and ships the bytes: each worker loads the chain without compiling anything.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::chain::{self, Chain, resolve_entries};
use super::plugin::{Plugin, Runtime, content_hash};
use crate::config::{ChainEntry, Config};
use crate::error::PluginError;

/// Bumped when the layout of a package changes.
const FORMAT: u32 = 1;

/// One plugin of a package.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Packed {
    entry: ChainEntry,
    /// The component file's name (messages and the plugin's identity).
    file: String,
    /// SHA-256 of the component file.
    hash: String,
    /// The component, precompiled by the packing runtime (base64).
    native: String,
    /// The component file itself (base64): compiled where `native` does not load.
    wasm: String,
}

/// A chain and the configuration it runs under, ready to ship.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainPackage {
    format: u32,
    /// The configuration (TOML), plugins directory as given when packing.
    config: String,
    plugins: Vec<Packed>,
}

impl ChainPackage {
    /// Packs the chain `cfg` names (`[[chain]]`, or every component of the plugins directory),
    /// compiling each component once.
    pub fn build(cfg: &Config) -> Result<Self, PluginError> {
        let runtime = Runtime::new(None)?;
        let entries =
            if cfg.no_plugins { Vec::new() } else { resolve_entries(&cfg.plugins.dir, &cfg.chain)? };
        let mut plugins = Vec::with_capacity(entries.len());
        for entry in entries {
            let path = entry.path(&cfg.plugins.dir);
            let wasm = std::fs::read(&path).map_err(|e| PluginError::InvalidComponent {
                path: path.clone(),
                message: format!("cannot read: {e}"),
            })?;
            let native = runtime.precompile(&path, &wasm)?;
            plugins.push(Packed {
                file: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                hash: content_hash(&wasm),
                native: B64.encode(native),
                wasm: B64.encode(&wasm),
                entry,
            });
        }
        let config = toml::to_string(cfg)
            .map_err(|e| PluginError::Package(format!("cannot write the config: {e}")))?;
        Ok(Self { format: FORMAT, config, plugins })
    }

    /// The package as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a package serializes")
    }

    /// A package from [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PluginError> {
        let p: Self = serde_json::from_slice(bytes)
            .map_err(|e| PluginError::Package(format!("not a chain package: {e}")))?;
        if p.format != FORMAT {
            return Err(PluginError::Package(format!(
                "package format {} (this build reads {FORMAT}); pack it again with this build",
                p.format
            )));
        }
        Ok(p)
    }

    /// The configuration the chain was packed with.
    pub fn config(&self) -> Result<Config, PluginError> {
        Config::from_toml(&self.config, "chain package").map_err(|e| PluginError::Package(e.to_string()))
    }

    /// Instantiates the chain in `runtime`: precompiled code where it matches this build, else the
    /// component compiled here.
    pub fn load(&self, runtime: &Runtime) -> Result<Chain, PluginError> {
        let cfg = self.config()?;
        let limits = chain::limits(&cfg.plugins);
        let mut stages: Vec<Box<dyn chain::Stage>> = Vec::with_capacity(self.plugins.len());
        for p in &self.plugins {
            let path: PathBuf = Path::new(&cfg.plugins.dir).join(&p.file);
            let blob = |text: &str| {
                B64.decode(text)
                    .map_err(|e| PluginError::Package(format!("{}: damaged component: {e}", p.file)))
            };
            let compiled = match runtime.load_precompiled(&path, &p.hash, &blob(&p.native)?) {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(plugin = %p.file, reason = %e, "precompiled plugin does not fit this build; compiling it");
                    runtime.compile_bytes(&path, &blob(&p.wasm)?)?
                }
            };
            stages.push(Box::new(Plugin::start(compiled, p.entry.config_pairs(), limits)?));
        }
        Ok(Chain::from_stages(stages).with_stage_policies(self.plugins.iter().map(|p| p.entry.on_quarantine)))
    }
}
