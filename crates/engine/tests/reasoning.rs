//! `<think>` splitting: hand-written expectations, every chunking of crafted streams against a
//! plain non-streaming reference written independently here, the thinking cap, the pre-opened
//! prompt detection on the real templates' renderings, and a property test.

use mixture_engine::reasoning::{
    prompt_opens_think, split, Piece, ReasoningSplitter, ThinkBudget, DEFAULT_CLOSE_TAG,
    DEFAULT_OPEN_TAG,
};
use proptest::prelude::*;

/// The rules of `reasoning.rs`, written directly on whole strings (no state machine):
/// `ws* <think> nl* REASONING nl* </think> nl* CONTENT`; pre-opened output may repeat the open
/// tag at its start; output without a think block is all content, verbatim.
fn reference(text: &str, pre_opened: bool) -> (String, String) {
    let nl: &[char] = &['\n', '\r'];
    let after_ws = text.trim_start();
    let body = if let Some(rest) = after_ws.strip_prefix(DEFAULT_OPEN_TAG) {
        rest
    } else if pre_opened {
        text
    } else {
        return (String::new(), text.to_string());
    };
    match body.split_once(DEFAULT_CLOSE_TAG) {
        Some((reasoning, content)) => (
            reasoning.trim_matches(nl).to_string(),
            content.trim_start_matches(nl).to_string(),
        ),
        None => (body.trim_matches(nl).to_string(), String::new()),
    }
}

/// Pushes the chunks through a fresh splitter and concatenates what comes out, checking on the
/// way that no piece is empty and that one call never returns two adjacent pieces of one kind.
fn stream<S: AsRef<str>>(chunks: &[S], pre_opened: bool) -> (String, String) {
    let mut splitter = ReasoningSplitter::new(pre_opened);
    let mut reasoning = String::new();
    let mut content = String::new();
    let mut calls: Vec<Vec<Piece>> = chunks.iter().map(|c| splitter.push(c.as_ref())).collect();
    calls.push(splitter.finish());
    for pieces in calls {
        for pair in pieces.windows(2) {
            assert_ne!(pair[0].is_reasoning(), pair[1].is_reasoning(), "{pieces:?}");
        }
        for piece in pieces {
            assert!(
                !piece.text().is_empty(),
                "empty piece from {chunks:?}",
                chunks = chunks.iter().map(|c| c.as_ref()).collect::<Vec<_>>()
            );
            match piece {
                Piece::Reasoning(s) => reasoning.push_str(&s),
                Piece::Content(s) => content.push_str(&s),
            }
        }
    }
    (reasoning, content)
}

fn chars(text: &str) -> Vec<&str> {
    let mut bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    bounds.push(text.len());
    bounds.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// Checks every chunking we can afford against the reference: one piece; every cut in two;
/// every cut in three for short texts; fixed chunk sizes 1..=4 (in characters) from every
/// starting offset; and every composition into chunks of 1..=4 characters for short texts.
fn check_all_chunkings(text: &str, pre_opened: bool) {
    let want = reference(text, pre_opened);
    assert_eq!(
        split(text, pre_opened),
        want,
        "split({text:?}, {pre_opened})"
    );
    let cs = chars(text);
    let n = cs.len();
    let join = |a: usize, b: usize| cs[a..b].concat();
    for i in 0..=n {
        let chunks = [join(0, i), join(i, n)];
        assert_eq!(
            stream(&chunks, pre_opened),
            want,
            "{chunks:?} pre_opened={pre_opened}"
        );
        if n <= 40 {
            for j in i..=n {
                let chunks = [join(0, i), join(i, j), join(j, n)];
                assert_eq!(stream(&chunks, pre_opened), want, "{chunks:?}");
            }
        }
    }
    for size in 1..=4 {
        for first in 0..size.min(n + 1) {
            let mut chunks = vec![join(0, first)];
            let mut at = first;
            while at < n {
                chunks.push(join(at, (at + size).min(n)));
                at += size;
            }
            assert_eq!(stream(&chunks, pre_opened), want, "{chunks:?}");
        }
    }
    if n <= 14 {
        // All compositions of n into parts of 1..=4 characters.
        fn rec(cs: &[&str], at: usize, chunks: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            if at == cs.len() {
                out.push(chunks.clone());
                return;
            }
            for size in 1..=4.min(cs.len() - at) {
                chunks.push(cs[at..at + size].concat());
                rec(cs, at + size, chunks, out);
                chunks.pop();
            }
        }
        let mut all = Vec::new();
        rec(&cs, 0, &mut Vec::new(), &mut all);
        for chunks in all {
            assert_eq!(stream(&chunks, pre_opened), want, "{chunks:?}");
        }
    }
}

/// Hand-written cases: (text, pre_opened, reasoning, content).
const CASES: &[(&str, bool, &str, &str)] = &[
    // DeepSeek-R1 / Qwen3 shape.
    (
        "<think>\nThe user asks about France.\n</think>\n\nParis.",
        false,
        "The user asks about France.",
        "Paris.",
    ),
    // R1 distill: the prompt ended with "<think>\n".
    (
        "Okay, France.\nIts capital is Paris.\n</think>\n\nThe capital is **Paris**.",
        true,
        "Okay, France.\nIts capital is Paris.",
        "The capital is **Paris**.",
    ),
    // Pre-opened, and the model writes the open tag again anyway.
    ("<think>\nhmm\n</think>\n\nok", true, "hmm", "ok"),
    ("\n<think>\nhmm\n</think>\n\nok", true, "hmm", "ok"),
    // Empty think blocks, as Qwen3 and R1 write them.
    ("<think>\n\n</think>\n\nHello!", false, "", "Hello!"),
    ("<think></think>Hello!", false, "", "Hello!"),
    ("\n</think>\n\nHello!", true, "", "Hello!"),
    // No think block: everything is content, verbatim, tags included.
    (
        "Hello <b>world</b> 1 < 2\n",
        false,
        "",
        "Hello <b>world</b> 1 < 2\n",
    ),
    ("\n\nHello", false, "", "\n\nHello"),
    (
        "Sure. <think>not a block</think>",
        false,
        "",
        "Sure. <think>not a block</think>",
    ),
    ("a</think>b", false, "", "a</think>b"),
    // Text before the open tag that is only whitespace is dropped.
    ("  \n<think>r</think>c", false, "r", "c"),
    // Text after the close tag is verbatim, tags included; only leading newlines go.
    (
        "<think>a</think>\n\n  b <think>c</think>\n",
        false,
        "a",
        "  b <think>c</think>\n",
    ),
    // Inner newlines and other whitespace stay.
    (
        "<think>\n\n a\n\nb \n\n</think>\r\n\r\nc",
        false,
        " a\n\nb ",
        "c",
    ),
    // "<" inside reasoning that is not a tag.
    (
        "<think>x < y, <b>, </thin>, </think>done",
        false,
        "x < y, <b>, </thin>, ",
        "done",
    ),
    // Unclosed think block: the stream ended while thinking.
    ("<think>\nhalf a thought\n", false, "half a thought", ""),
    ("still thinking </thi", true, "still thinking </thi", ""),
    // A partial open tag at the end is content after all.
    ("<thi", false, "", "<thi"),
    ("   ", false, "", "   "),
    ("", false, "", ""),
    ("", true, "", ""),
    // Non-ASCII around the tags.
    ("<think>é日本</think>\nü", false, "é日本", "ü"),
];

#[test]
fn hand_written_cases() {
    for &(text, pre_opened, reasoning, content) in CASES {
        let want = (reasoning.to_string(), content.to_string());
        assert_eq!(reference(text, pre_opened), want, "reference on {text:?}");
        assert_eq!(split(text, pre_opened), want, "split on {text:?}");
    }
}

#[test]
fn every_chunking_of_the_hand_written_cases() {
    for &(text, pre_opened, _, _) in CASES {
        check_all_chunkings(text, pre_opened);
        check_all_chunkings(text, !pre_opened);
    }
}

#[test]
fn streams_promptly_and_holds_only_possible_tags() {
    let mut s = ReasoningSplitter::new(false);
    assert_eq!(s.push("<thi"), vec![]);
    assert!(!s.in_think());
    assert_eq!(s.push("nk>\n"), vec![]);
    assert!(s.in_think());
    assert_eq!(s.push("Let"), vec![Piece::Reasoning("Let".into())]);
    assert_eq!(
        s.push(" me see.\n"),
        vec![Piece::Reasoning(" me see.".into())]
    );
    // The newline is held: it is dropped if the close tag follows, shown otherwise.
    assert_eq!(s.push("Ok"), vec![Piece::Reasoning("\nOk".into())]);
    assert_eq!(s.push(" x <"), vec![Piece::Reasoning(" x ".into())]);
    // "<" proven not a tag as soon as the next character comes.
    assert_eq!(s.push("3 "), vec![Piece::Reasoning("<3 ".into())]);
    assert_eq!(s.push("\n</th"), vec![]);
    assert_eq!(s.push("ink>"), vec![]);
    assert!(!s.in_think());
    assert_eq!(s.push("\n\n"), vec![]);
    assert_eq!(s.push("Paris"), vec![Piece::Content("Paris".into())]);
    // After the block nothing is held, "<" included.
    assert_eq!(s.push(" <"), vec![Piece::Content(" <".into())]);
    assert_eq!(s.finish(), vec![]);

    // One push may give both kinds, in order.
    let mut s = ReasoningSplitter::new(false);
    assert_eq!(
        s.push("<think>a</think>\nb"),
        vec![Piece::Reasoning("a".into()), Piece::Content("b".into())]
    );
}

#[test]
fn a_lone_angle_bracket_is_released_when_disambiguated_or_at_finish() {
    // Before any tag: "<" could open the block.
    let mut s = ReasoningSplitter::new(false);
    assert_eq!(s.push("<"), vec![]);
    assert_eq!(s.push("b"), vec![Piece::Content("<b".into())]);

    let mut s = ReasoningSplitter::new(false);
    assert_eq!(s.push("<"), vec![]);
    assert_eq!(s.finish(), vec![Piece::Content("<".into())]);

    // Inside the block: "<" could start the close tag.
    let mut s = ReasoningSplitter::new(true);
    assert_eq!(s.push("a<"), vec![Piece::Reasoning("a".into())]);
    assert_eq!(s.push("/"), vec![]);
    assert_eq!(s.push("b"), vec![Piece::Reasoning("</b".into())]);
    assert_eq!(s.push("</think"), vec![]);
    assert_eq!(s.finish(), vec![Piece::Reasoning("</think".into())]);
}

#[test]
fn empty_think_gives_no_reasoning_piece_at_all() {
    for pre_opened in [false, true] {
        let tokens = ["<think>", "\n\n", "</think>", "\n\n", "Hi", "!"];
        let mut s = ReasoningSplitter::new(pre_opened);
        let mut pieces: Vec<Piece> = tokens.iter().flat_map(|t| s.push(t)).collect();
        pieces.extend(s.finish());
        assert_eq!(
            pieces,
            vec![Piece::Content("Hi".into()), Piece::Content("!".into())]
        );
    }
}

#[test]
fn custom_tags() {
    let mut s =
        ReasoningSplitter::with_tags("<|begin_of_thought|>", "<|end_of_thought|>", false).unwrap();
    assert_eq!(s.close_tag(), "<|end_of_thought|>");
    let mut pieces = s.push("<|begin_of_thought|>\nhm\n<|end_of");
    pieces.extend(s.push("_thought|>\n\nyes <think>"));
    pieces.extend(s.finish());
    assert_eq!(
        pieces,
        vec![
            Piece::Reasoning("hm".into()),
            Piece::Content("yes <think>".into())
        ]
    );
}

/// A scripted "model" that would think forever: the cap must close the block after exactly
/// `cap` thinking tokens, and the forced close text must take the splitter to content.
#[test]
fn thinking_cap_closes_the_block() {
    for (pre_opened, cap) in [(true, 3), (false, 3), (true, 1), (false, 5)] {
        let mut splitter = ReasoningSplitter::new(pre_opened);
        let mut budget = ThinkBudget::new(Some(cap));
        assert!(!budget.exhausted(&splitter));
        let mut out = Vec::new();
        let mut thinking_tokens = Vec::new();
        let mut forced = false;
        let mut script = if pre_opened { vec![] } else { vec!["<think>"] };
        script.extend(["\n", "t0", " t1", " t2", " t3", " t4", " t5", " t6", " t7"]);
        for token in script {
            out.extend(splitter.push(token));
            if splitter.in_think() {
                thinking_tokens.push(token);
            }
            if budget.on_token(&splitter) {
                // The engine tokenizes this, feeds it to the model and pushes the same text.
                assert_eq!(splitter.forced_close(), "</think>\n\n");
                out.extend(splitter.push(&splitter.forced_close()));
                forced = true;
                break;
            }
        }
        assert!(forced, "cap {cap} never reached");
        assert_eq!(thinking_tokens.len(), cap);
        assert_eq!(budget.used(), cap);
        assert!(!splitter.in_think());
        assert!(!budget.exhausted(&splitter));
        // The answer that follows is content and no longer counts.
        out.extend(splitter.push("Answer"));
        assert!(!budget.on_token(&splitter));
        assert_eq!(budget.used(), cap);
        out.extend(splitter.finish());
        let reasoning: String = out
            .iter()
            .filter(|p| p.is_reasoning())
            .map(|p| p.text())
            .collect();
        let content: String = out
            .iter()
            .filter(|p| !p.is_reasoning())
            .map(|p| p.text())
            .collect();
        let want_reasoning = thinking_tokens
            .iter()
            .filter(|t| **t != "<think>")
            .copied()
            .collect::<String>();
        assert_eq!(reasoning, want_reasoning.trim_matches('\n'));
        assert_eq!(content, "Answer");
    }
}

#[test]
fn thinking_cap_edge_cases() {
    // Cap 0 with a pre-opened block: close before generating anything.
    let s = ReasoningSplitter::new(true);
    assert!(ThinkBudget::new(Some(0)).exhausted(&s));
    // Cap 0 without: nothing to close until the model opens a block.
    let mut s = ReasoningSplitter::new(false);
    let mut b = ThinkBudget::new(Some(0));
    assert!(!b.exhausted(&s));
    s.push("<think>");
    assert!(b.on_token(&s));
    // No cap: never exhausted.
    let mut s = ReasoningSplitter::new(true);
    let mut b = ThinkBudget::new(None);
    for _ in 0..1000 {
        s.push("x");
        assert!(!b.on_token(&s));
    }
    assert_eq!(b.used(), 1000);
    // The model closes the block itself before the cap: nothing to force.
    let mut s = ReasoningSplitter::new(true);
    let mut b = ThinkBudget::new(Some(3));
    for t in ["a", "</think>", "b", "c", "d"] {
        s.push(t);
        assert!(!b.on_token(&s), "{t}");
    }
    assert_eq!(b.used(), 1);
}

#[test]
fn prompt_opens_think_crafted() {
    assert!(prompt_opens_think("<｜User｜>Hi<｜Assistant｜><think>\n"));
    assert!(prompt_opens_think("<｜Assistant｜><think>"));
    assert!(prompt_opens_think("<think> \n\t"));
    assert!(!prompt_opens_think(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ));
    assert!(!prompt_opens_think("<|im_start|>assistant\n"));
    assert!(!prompt_opens_think(
        "<|im_start|>user\nWhat is <think>?<|im_end|>\n<|im_start|>assistant\n"
    ));
    assert!(!prompt_opens_think(""));
}

/// The generation prompts the real templates render (fixtures made with transformers'
/// `apply_chat_template`): which of them leave the think block open.
#[test]
fn prompt_opens_think_on_real_template_renderings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/chat_templates");
    let expected = |file: &str, case: &str| -> bool {
        match file {
            // Opens the block on every generation prompt that is not a tool turn.
            "llama-cpp-deepseek-r1" => true,
            "deepseek-r1-distill-llama" => !case.contains("tool"),
            // These close it ("<think></think>", "<think>\n</think>") unless thinking is on.
            "deepseek-r1-distill-qwen" | "deepseek-v3.1" | "deepseek-v3.2" | "qwq-32b" => {
                case == "thinking_on"
            }
            // Qwen3 and SmolLM3 let the model open it; the rest do not think.
            _ => false,
        }
    };
    let mut checked = 0;
    let mut opened = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let file = path.file_stem().unwrap().to_str().unwrap().to_string();
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for case in fixture["cases"].as_array().unwrap() {
            let (Some(true), Some(prompt)) = (
                case["add_generation_prompt"].as_bool(),
                case["expected"].as_str(),
            ) else {
                continue;
            };
            let name = case["name"].as_str().unwrap();
            let want = expected(&file, name);
            assert_eq!(
                prompt_opens_think(prompt),
                want,
                "{file} / {name}: {prompt:?}"
            );
            checked += 1;
            opened += want as usize;
        }
    }
    assert!(
        checked >= 100 && opened >= 15,
        "checked {checked}, opened {opened}"
    );
}

const ATOMS: &[&str] = &[
    "<think>", "</think>", "<", "</", "think", ">", "a", "é", "日", "\n", "\r", " ", "<th", "ink>",
];

fn text_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ATOMS), 0..24).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_chunkings_match_the_reference(
        text in text_strategy(),
        cuts in prop::collection::vec(0usize..64, 0..12),
        pre_opened in any::<bool>(),
    ) {
        let want = reference(&text, pre_opened);
        prop_assert_eq!(split(&text, pre_opened), want.clone());
        let cs = chars(&text);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (cs.len() + 1)).collect();
        bounds.push(0);
        bounds.push(cs.len());
        bounds.sort_unstable();
        let chunks: Vec<String> = bounds.windows(2).map(|w| cs[w[0]..w[1]].concat()).collect();
        prop_assert_eq!(stream(&chunks, pre_opened), want.clone());
        // One character at a time, the way a byte-level tokenizer may stream.
        prop_assert_eq!(stream(&cs, pre_opened), want);
    }

    #[test]
    fn only_possible_tags_are_held_back(text in text_strategy(), pre_opened in any::<bool>()) {
        // After each character: what is shown so far plus what a finish would release now
        // equals the reference split of the text so far, and what is held is at most
        // whitespace followed by a proper prefix of a tag.
        let mut s = ReasoningSplitter::new(pre_opened);
        let mut fed = String::new();
        let (mut reasoning, mut content) = (String::new(), String::new());
        for c in chars(&text) {
            fed.push_str(c);
            for p in s.push(c) {
                match p {
                    Piece::Reasoning(t) => reasoning.push_str(&t),
                    Piece::Content(t) => content.push_str(&t),
                }
            }
            let (mut r, mut k) = (reasoning.clone(), content.clone());
            let mut held = String::new();
            for p in s.clone().finish() {
                held.push_str(p.text());
                match p {
                    Piece::Reasoning(t) => r.push_str(&t),
                    Piece::Content(t) => k.push_str(&t),
                }
            }
            prop_assert_eq!((r, k), reference(&fed, pre_opened));
            let tag_part = held.trim_start();
            prop_assert!(
                tag_part.len() < DEFAULT_CLOSE_TAG.len()
                    && (DEFAULT_OPEN_TAG.starts_with(tag_part) || DEFAULT_CLOSE_TAG.starts_with(tag_part)),
                "held {:?} after {:?}", held, fed
            );
        }
    }
}
