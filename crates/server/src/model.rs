//! The model a server serves: weights (shared with the scheduler), tokenizer, chat template,
//! the tokens that end a turn, and its public id.

use mixture_model::arch::{self, Architecture};
use mixture_model::chat_template::ChatTemplate;
use mixture_model::tokenizer::Tokenizer;
use std::path::Path;
use std::sync::Arc;

/// Everything request handling needs to know about the model.
pub struct ServedModel {
    /// The id clients name in `model`: the file stem (`SmolLM2-135M-Instruct.Q4_1`), or the
    /// directory name for a Hugging Face checkpoint. `default` is accepted as well.
    pub id: String,
    pub model: Arc<dyn Architecture>,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    /// Tokens that end generation (tokenizer EOS / end-of-turn ids and the model's own).
    pub stop_ids: Vec<u32>,
    /// The model's context length (0 = unknown).
    pub context_length: usize,
    /// Unix time the server loaded the model (`created` in `/v1/models`).
    pub created: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Model(#[from] mixture_model::ModelError),
}

/// The public id of a model path.
pub fn model_id(path: &Path) -> String {
    let name = if path.is_dir() {
        path.file_name()
    } else {
        path.file_stem()
    };
    name.map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "model".to_string())
}

impl ServedModel {
    /// Load a `.gguf` file or a Hugging Face directory. Uses the model's own chat template,
    /// or ChatML when it has none (reported through `tracing`).
    pub fn load(path: &Path) -> Result<ServedModel, LoadError> {
        let model: Arc<dyn Architecture> = Arc::from(arch::build(mixture_model::load(path)?)?);
        let tokenizer = Tokenizer::load(path)?;
        let own = if path.is_dir() {
            ChatTemplate::from_hf_dir(path)?
        } else {
            ChatTemplate::from_gguf_metadata(&mixture_model::gguf::open(path)?)?
        };
        let template = own.unwrap_or_else(|| {
            tracing::warn!("the model has no chat template; using ChatML");
            ChatTemplate::fallback()
        });
        Ok(ServedModel::new(model_id(path), model, tokenizer, template))
    }

    pub fn new(
        id: String,
        model: Arc<dyn Architecture>,
        tokenizer: Tokenizer,
        template: ChatTemplate,
    ) -> ServedModel {
        let mut stop_ids: Vec<u32> = tokenizer.eos_ids().to_vec();
        stop_ids.extend(model.spec().eos_token_ids.iter().copied());
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let context_length = model.spec().hparams.context_length;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        ServedModel {
            id,
            model,
            tokenizer: Arc::new(tokenizer),
            template,
            stop_ids,
            context_length,
            created,
        }
    }

    /// Whether a request's `model` names this model.
    pub fn answers_to(&self, name: &str) -> bool {
        name == self.id || name == "default"
    }
}
