//! Sampling defaults from the model's own generation config: GGUF `general.sampling.*` keys,
//! or a Hugging Face directory's `generation_config.json`. Flags given by the user win; what
//! neither says falls back to greedy decoding (temperature 0), which keeps small models on
//! track and makes answers reproducible.

use mixture_engine::SamplingParams;
use std::path::Path;

/// What the model file suggests; `None` where it says nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ModelSampling {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
}

impl ModelSampling {
    /// Read the suggestions of a GGUF file or HF directory; unreadable or absent → none.
    pub fn read(path: &Path) -> ModelSampling {
        if path.is_dir() {
            return Self::from_generation_config(&path.join("generation_config.json"));
        }
        let Ok(file) = mixture_model::gguf::open(path) else {
            return ModelSampling::default();
        };
        let f32_key = |k: &str| file.get(k).and_then(|v| v.as_f32());
        ModelSampling {
            temperature: f32_key("general.sampling.temp"),
            top_k: file
                .get("general.sampling.top_k")
                .and_then(|v| v.as_u64())
                .map(|v| v as usize),
            top_p: f32_key("general.sampling.top_p"),
        }
    }

    fn from_generation_config(path: &Path) -> ModelSampling {
        let Some(v) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        else {
            return ModelSampling::default();
        };
        let greedy = v.get("do_sample").and_then(|d| d.as_bool()) == Some(false);
        ModelSampling {
            temperature: if greedy {
                Some(0.0)
            } else {
                v.get("temperature")
                    .and_then(|t| t.as_f64())
                    .map(|t| t as f32)
            },
            top_k: v.get("top_k").and_then(|t| t.as_u64()).map(|t| t as usize),
            top_p: v.get("top_p").and_then(|t| t.as_f64()).map(|t| t as f32),
        }
    }

    /// Combine with the user's flags (which win) into sampling parameters.
    pub fn resolve(
        &self,
        temperature: Option<f32>,
        top_k: Option<usize>,
        top_p: Option<f32>,
        seed: u64,
    ) -> SamplingParams {
        SamplingParams {
            temperature: temperature.or(self.temperature).unwrap_or(0.0),
            top_k: top_k.or(self.top_k).unwrap_or(0),
            top_p: top_p.or(self.top_p).unwrap_or(1.0),
            seed,
            ..SamplingParams::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_config_and_flags() {
        let dir = std::env::temp_dir().join(format!("mixture-gencfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("generation_config.json"),
            r#"{"do_sample": true, "temperature": 0.6, "top_p": 0.95}"#,
        )
        .unwrap();
        let m = ModelSampling::read(&dir);
        assert_eq!(m.temperature, Some(0.6));
        assert_eq!(m.top_p, Some(0.95));
        let p = m.resolve(None, Some(40), None, 1);
        assert_eq!((p.temperature, p.top_k, p.top_p), (0.6, 40, 0.95));
        let p = m.resolve(Some(0.0), None, None, 1);
        assert_eq!(p.temperature, 0.0);
        std::fs::write(
            dir.join("generation_config.json"),
            r#"{"do_sample": false, "temperature": 0.6}"#,
        )
        .unwrap();
        assert_eq!(ModelSampling::read(&dir).temperature, Some(0.0));
        assert_eq!(ModelSampling::read(&dir.join("missing")).temperature, None);
    }
}
