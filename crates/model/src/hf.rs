//! Hugging Face directory reader (placeholder: being written).
use crate::error::{ModelError, Result};
use crate::load::LoadedModel;
use std::path::Path;

pub fn load(path: &Path) -> Result<LoadedModel> {
    Err(ModelError::Hf {
        path: path.to_path_buf(),
        msg: "Hugging Face reading is not implemented yet".into(),
    })
}
