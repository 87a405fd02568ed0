//! GGUF reader (placeholder: being written).
use crate::error::{ModelError, Result};
use crate::load::LoadedModel;
use std::path::Path;

pub fn load(path: &Path) -> Result<LoadedModel> {
    Err(ModelError::Gguf {
        path: path.to_path_buf(),
        msg: "GGUF reading is not implemented yet".into(),
    })
}
