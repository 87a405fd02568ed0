//! `mixture`: run DeepSeek-class MoE models and their dense relatives on ordinary hardware.

mod bench;
mod chat;
mod conversation;
mod defaults;
mod fetch;
mod inspect;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use mixture_engine::{Sampler, Session};
use mixture_model::arch::{self, Architecture};
use mixture_model::tokenizer::Tokenizer;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "mixture",
    version,
    about = "Run DeepSeek-class Mixture-of-Experts models (and dense Llama/Qwen relatives) from GGUF files or Hugging Face checkpoints",
    long_about = "Run DeepSeek-class Mixture-of-Experts models (DeepSeek-V2/V3/R1, Qwen3-MoE, Mixtral) and dense \
Llama/Qwen models from a GGUF file (the first part of a split set) or a Hugging Face checkpoint directory.\n\n\
Token ids in and out for now: pass --ids as a comma-separated list."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads for the numeric kernels. Default: the number of physical cores.
    #[arg(long, short = 't', global = true)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with a model in the terminal (one answer when stdin is not a terminal).
    Chat(chat::ChatArgs),
    /// Generate after a prompt of text (--prompt, no chat template) or token ids (--ids).
    Run(RunArgs),
    /// Per-token log-probabilities and perplexity of a token sequence.
    Score(ScoreArgs),
    /// Measure prompt processing (pp) and generation (tg) tokens/s, like llama-bench, with
    /// the memory bandwidth and the fraction of the decode bound reached.
    Bench(bench::BenchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (chat, completions, streaming).
    Serve(serve::ServeArgs),
    /// Show a model's architecture, hyperparameters, parameter counts and tensor types.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct ModelArg {
    /// A .gguf file (first part of a split set) or a Hugging Face model directory. Without it,
    /// the default model (SmolLM2-135M-Instruct Q4_1) is used, fetched on first use.
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
}

impl ModelArg {
    /// The given path, or the default model (fetched into the cache if needed).
    pub fn path(&self) -> Result<PathBuf> {
        match &self.model {
            Some(p) => Ok(p.clone()),
            None => fetch::default_model(),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Prompt token ids, comma-separated (e.g. 1,2,3).
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "prompt",
        conflicts_with = "prompt"
    )]
    ids: Vec<u32>,
    /// Prompt text, tokenized with the model's tokenizer and continued as is (no chat
    /// template; use `mixture chat` for conversations). Prints the generated text.
    #[arg(long)]
    prompt: Option<String>,
    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy. Default: the model's own generation config, else 0.
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample only among the K most likely tokens (0 = no limit). Default: the model's config.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities add up to P.
    /// Default: the model's config, else 1.
    #[arg(long)]
    top_p: Option<f32>,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object {"ids": [...], ...} instead of plain text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ScoreArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Token ids to score, comma-separated (at least two).
    #[arg(long, value_delimiter = ',', required = true)]
    ids: Vec<u32>,
    /// Print {"token_logprobs": [...], "perplexity": x}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// A .gguf file or a Hugging Face model directory.
    path: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn load_model(path: &Path) -> Result<Box<dyn Architecture>> {
    let loaded = mixture_model::load(path)?;
    Ok(arch::build(loaded)?)
}

fn run(a: RunArgs) -> Result<()> {
    let path = a.model.path()?;
    let params =
        defaults::ModelSampling::read(&path).resolve(a.temperature, a.top_k, a.top_p, a.seed);
    if !(params.temperature >= 0.0 && params.temperature.is_finite()) {
        bail!("--temperature must be a finite number >= 0");
    }
    if !(params.top_p > 0.0 && params.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1]");
    }
    let model = load_model(&path)?;
    let spec = model.spec().clone();
    // Text mode: tokenize the prompt, print decoded text as it streams.
    let tokenizer = match &a.prompt {
        Some(_) => Some(Tokenizer::load(&path).context("loading the tokenizer")?),
        None => None,
    };
    let prompt_ids = match (&a.prompt, &tokenizer) {
        (Some(text), Some(t)) => t.encode(text, true, false)?,
        _ => a.ids.clone(),
    };
    let mut stop = spec.eos_token_ids.clone();
    if let Some(t) = &tokenizer {
        stop.extend_from_slice(t.eos_ids());
    }
    let mut decoder = tokenizer
        .as_ref()
        .map(|t| t.stream_decoder().skip_special(true));
    let mut session = Session::new(model.as_ref());
    let mut sampler = Sampler::new(params);
    let start = std::time::Instant::now();
    let mut stdout = std::io::stdout();
    let mut first = true;
    let mut text = String::new();
    let (ids, reason) =
        session.generate(&prompt_ids, a.max_tokens, &mut sampler, &stop, |tok| {
            if stop.contains(&tok) {
                return true;
            }
            let piece = match decoder.as_mut() {
                Some(d) => d.push(tok).unwrap_or_default(),
                None if a.json => String::new(),
                None => format!("{}{tok}", if first { "" } else { "," }),
            };
            first = false;
            text.push_str(&piece);
            if !a.json {
                let _ = write!(stdout, "{piece}");
                let _ = stdout.flush();
            }
            true
        })?;
    if let Some(d) = decoder.as_mut() {
        let tail = d.finish();
        if !a.json {
            let _ = write!(stdout, "{tail}");
        }
        text.push_str(&tail);
    }
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        let mut v = serde_json::json!({
            "ids": ids,
            "finish_reason": format!("{reason:?}").to_lowercase(),
            "prompt_tokens": prompt_ids.len(),
            "seconds": secs,
        });
        if tokenizer.is_some() {
            v["text"] = serde_json::Value::String(text);
        }
        println!("{v}");
    } else {
        println!();
        eprintln!("{} tokens in {secs:.2}s ({:?})", ids.len(), reason);
    }
    Ok(())
}

fn score(a: ScoreArgs) -> Result<()> {
    let model = load_model(&a.model.path()?)?;
    let mut session = Session::new(model.as_ref());
    let lp = session.score(&a.ids)?;
    let mean = lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len() as f64;
    let ppl = (-mean).exp();
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "token_logprobs": lp, "perplexity": ppl })
        );
    } else {
        for (i, v) in lp.iter().enumerate() {
            println!("{}\t{}\t{v:.6}", i + 1, a.ids[i + 1]);
        }
        println!("perplexity\t{ppl:.4}");
    }
    Ok(())
}

/// Write to stdout; a closed pipe (`mixture inspect x | head`) ends the program quietly.
pub(crate) fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing output: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let cli = Cli::parse();
    if cli.threads == Some(0) {
        eprintln!("error: --threads must be at least 1");
        std::process::exit(1);
    }
    let n_threads = mixture_kernels::threads::init(cli.threads);
    let result = match cli.command {
        Command::Bench(a) => bench::bench(a, n_threads),
        Command::Chat(a) => chat::chat(a),
        Command::Run(a) => run(a),
        Command::Score(a) => score(a),
        Command::Serve(a) => serve::serve(a),
        Command::Inspect(a) => inspect::inspect(&a.path, a.json).context("inspect"),
    };
    if let Err(e) = result {
        // One line: the chain of causes joined.
        let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", msg.join(": "));
        std::process::exit(1);
    }
}
