//! `mixture chat`: an interactive terminal chat, or one answer when stdin is not a terminal.

use crate::conversation::{Conversation, Reply, ReplyOptions};
use crate::ModelArg;
use anyhow::{Context, Result};
use clap::Args;
use mixture_engine::reasoning::Piece;
use mixture_model::arch::{self, Architecture};
use mixture_model::chat_template::ChatTemplate;
use mixture_model::tokenizer::Tokenizer;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The system prompt used with the built-in default model when none is given: without one,
/// SmolLM2's template inserts its own, under which the model derails on simple questions.
const DEFAULT_MODEL_SYSTEM: &str = "You are a helpful assistant.";

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// System prompt (default: none, or "You are a helpful assistant." for the built-in model).
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature; 0 is greedy. Default: the model's own generation config, else 0.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sample only among the K most likely tokens. Default: the model's config.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling threshold. Default: the model's config, else 1.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longest reply, in tokens.
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: usize,
    /// Ask the model to think first (sets `enable_thinking` for templates that have it).
    #[arg(long)]
    pub think: bool,
    /// Do not print the model's thinking (it is kept; `/think` shows the last one).
    #[arg(long)]
    pub hide_thinking: bool,
    /// Close the think block after N thinking tokens.
    #[arg(long, value_name = "N")]
    pub max_thinking_tokens: Option<usize>,
}

const HELP: &str = "commands: /reset (forget the conversation), /system TEXT (set the system prompt and reset), \
/save FILE (write the conversation as JSON), /think (show the last reply's thinking), /help, /quit. \
End a line with \\ to continue it, or wrap several lines in \"\"\". Ctrl-C stops a reply; Ctrl-D quits.";

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

fn load(path: &Path) -> Result<(Box<dyn Architecture>, Tokenizer, ChatTemplate)> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("loading {}", path.display()));
    bar.enable_steady_tick(Duration::from_millis(120));
    let result = (|| -> Result<_> {
        let model = arch::build(mixture_model::load(path)?)?;
        let tokenizer = Tokenizer::load(path).context("loading the tokenizer")?;
        let template = load_template(path).context("loading the chat template")?;
        Ok((model, tokenizer, template))
    })();
    bar.finish_and_clear();
    result
}

/// The model's own template, or the documented ChatML fallback when it has none.
fn load_template(path: &Path) -> Result<ChatTemplate> {
    let own = if path.is_dir() {
        ChatTemplate::from_hf_dir(path)?
    } else {
        ChatTemplate::from_gguf_metadata(&mixture_model::gguf::open(path)?)?
    };
    Ok(own.unwrap_or_else(|| {
        eprintln!("mixture: the model has no chat template; using ChatML (<|im_start|>role ... <|im_end|>)");
        ChatTemplate::fallback()
    }))
}

pub fn chat(a: ChatArgs) -> Result<()> {
    let path = a.model.path()?;
    let system = a.system.clone().or_else(|| {
        a.model
            .model
            .is_none()
            .then(|| DEFAULT_MODEL_SYSTEM.to_string())
    });
    let params = crate::defaults::ModelSampling::read(&path).resolve(
        a.temperature,
        a.top_k,
        a.top_p,
        a.seed,
    );
    let (model, tokenizer, template) = load(&path)?;
    let opts = ReplyOptions {
        max_tokens: a.max_tokens,
        max_thinking_tokens: a.max_thinking_tokens,
        template_extra: a
            .think
            .then(|| serde_json::json!({ "enable_thinking": true })),
    };
    let mut conv = Conversation::new(model.as_ref(), tokenizer, template, params, system);
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
            .context("installing the Ctrl-C handler")?;
    }
    if !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let text = text.trim();
        if text.is_empty() {
            anyhow::bail!("no prompt on standard input");
        }
        let tty_out = std::io::stdout().is_terminal();
        let r = answer(
            &mut conv,
            text,
            &opts,
            &interrupt,
            !a.hide_thinking,
            tty_out,
        )?;
        println!();
        eprintln!("{}", stats(&r));
        return Ok(());
    }
    interactive(&mut conv, &opts, &interrupt, &a, model.spec().name.as_str())
}

/// Stream one reply to stdout: thinking dimmed (or to stderr when stdout is not a terminal).
fn answer(
    conv: &mut Conversation<'_>,
    text: &str,
    opts: &ReplyOptions,
    interrupt: &AtomicBool,
    show_thinking: bool,
    tty: bool,
) -> Result<Reply> {
    interrupt.store(false, Ordering::Relaxed);
    let mut out = std::io::stdout();
    let mut in_thinking = false;
    let mut emit = |p: &Piece| {
        match p {
            Piece::Reasoning(t) if show_thinking => {
                if tty {
                    if !in_thinking {
                        let _ = write!(out, "{DIM}");
                        in_thinking = true;
                    }
                    let _ = write!(out, "{t}");
                } else {
                    eprint!("{t}");
                }
            }
            Piece::Reasoning(_) => {}
            Piece::Content(t) => {
                if in_thinking {
                    let _ = write!(out, "{RESET}");
                    in_thinking = false;
                }
                let _ = write!(out, "{t}");
            }
        }
        let _ = out.flush();
    };
    let r = conv.reply(text, opts, interrupt, &mut emit);
    if in_thinking {
        let _ = write!(std::io::stdout(), "{RESET}");
    }
    r
}

fn stats(r: &Reply) -> String {
    let tps = if r.generate_seconds > 0.0 {
        r.generated as f64 / r.generate_seconds
    } else {
        0.0
    };
    format!(
        "[{} tokens, {tps:.1} tokens/s; prompt {} tokens ({} computed) in {:.2}s{}]",
        r.generated,
        r.prompt_tokens,
        r.prompt_computed,
        r.prompt_seconds,
        if r.interrupted { "; stopped" } else { "" }
    )
}

/// Read one message: `\` at a line end continues it; `"""` opens and closes a block.
fn read_message(rl: &mut rustyline::DefaultEditor) -> Result<Option<String>> {
    use rustyline::error::ReadlineError;
    let mut lines: Vec<String> = Vec::new();
    let mut block = false;
    loop {
        let prompt = if lines.is_empty() && !block {
            "> "
        } else {
            ". "
        };
        match rl.readline(prompt) {
            Ok(line) => {
                if line.trim() == "\"\"\"" {
                    if block {
                        break;
                    }
                    block = true;
                    continue;
                }
                if block {
                    lines.push(line);
                } else if let Some(l) = line.strip_suffix('\\') {
                    lines.push(l.to_string());
                } else {
                    lines.push(line);
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {
                if lines.is_empty() && !block {
                    println!("(Ctrl-D or /quit to leave)");
                }
                lines.clear();
                block = false;
            }
            Err(ReadlineError::Eof) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    let text = lines.join("\n");
    let _ = rl.add_history_entry(text.as_str());
    Ok(Some(text))
}

fn interactive(
    conv: &mut Conversation<'_>,
    opts: &ReplyOptions,
    interrupt: &AtomicBool,
    a: &ChatArgs,
    name: &str,
) -> Result<()> {
    println!("{DIM}mixture chat with {name}. {HELP}{RESET}");
    let mut rl = rustyline::DefaultEditor::new()?;
    let mut last_reasoning = String::new();
    while let Some(text) = read_message(&mut rl)? {
        let t = text.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(cmd) = t.strip_prefix('/') {
            let (name, arg) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
            match name {
                "quit" | "exit" => break,
                "help" => println!("{HELP}"),
                "reset" => {
                    conv.reset();
                    println!("{DIM}(conversation cleared){RESET}");
                }
                "system" => {
                    conv.system = (!arg.trim().is_empty()).then(|| arg.trim().to_string());
                    conv.reset();
                    println!("{DIM}(system prompt set; conversation cleared){RESET}");
                }
                "save" if !arg.trim().is_empty() => {
                    let json = serde_json::to_string_pretty(&conv.transcript())?;
                    match std::fs::write(arg.trim(), json + "\n") {
                        Ok(()) => println!("{DIM}(saved to {}){RESET}", arg.trim()),
                        Err(e) => println!("cannot write {}: {e}", arg.trim()),
                    }
                }
                "think" => {
                    if last_reasoning.is_empty() {
                        println!("{DIM}(no thinking in the last reply){RESET}");
                    } else {
                        println!("{DIM}{last_reasoning}{RESET}");
                    }
                }
                _ => println!("unknown command /{name}. {HELP}"),
            }
            continue;
        }
        match answer(conv, t, opts, interrupt, !a.hide_thinking, true) {
            Ok(r) => {
                println!();
                if a.hide_thinking && !r.reasoning.trim().is_empty() {
                    println!("{DIM}(thought for a while; /think shows it){RESET}");
                }
                println!("{DIM}{}{RESET}", stats(&r));
                last_reasoning = r.reasoning.trim().to_string();
            }
            Err(e) => println!("error: {e:#}"),
        }
    }
    Ok(())
}
