//! Open a model from a path: a `.gguf` file (the first of a split set) or a Hugging Face
//! directory.

use crate::error::{ModelError, Result};
use crate::spec::ModelSpec;
use crate::tensor::WeightStore;
use std::path::{Path, PathBuf};

/// A model as read from disk: what it is, and its weights under canonical names.
pub struct LoadedModel {
    pub spec: ModelSpec,
    pub weights: WeightStore,
    /// The files the weights come from.
    pub files: Vec<PathBuf>,
}

/// Load a model from a `.gguf` file or a Hugging Face checkpoint directory.
pub fn load(path: &Path) -> Result<LoadedModel> {
    if !path.exists() {
        return Err(ModelError::NotFound(path.to_path_buf()));
    }
    if path.is_dir() {
        if !path.join("config.json").is_file() {
            return Err(ModelError::Hf {
                path: path.to_path_buf(),
                msg: "directory has no config.json".into(),
            });
        }
        return crate::hf::load(path);
    }
    crate::gguf::load(path)
}
