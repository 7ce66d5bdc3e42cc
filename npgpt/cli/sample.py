"""``python -m npgpt sample``: continue a prompt with the model of a checkpoint or of a GPT-2 folder
(document section 3, step 3: output decoding)."""
from ..checks import UsageError
from .flags import add, command

STRATEGIES = ("greedy", "temperature", "top-k", "top-p", "beam")


def register(subparsers) -> None:
    from ..checks import at_least, in_range
    p = command(subparsers, "sample", help="generate text from a checkpoint or a GPT-2 folder",
                description="Continue a prompt with a trained model (document section 3, step 3: output decoding).")
    source = p.add_mutually_exclusive_group(required=True)
    add(source, "--ckpt", help="checkpoint written by 'npgpt train' (OUT_DIR/ckpt.npz)")
    add(source, "--pretrained", metavar="DIR", help="a Hugging Face GPT-2 folder: config.json, model.safetensors, "
        "vocab.json, merges.txt (npgpt never downloads it; see the README)")
    add(p, "--prompt", default="\n", help="text to continue (characters must be in the vocabulary)")
    add(p, "--strategy", choices=STRATEGIES, default="top-k", help="decoding strategy")
    add(p, "--max-new-tokens", type=at_least(0), default=300, help="tokens to generate")
    add(p, "--temperature", type=in_range(0.0, low_open=True), default=0.8,
        help="softmax temperature (sampling strategies)")
    add(p, "--top-k", type=at_least(1), default=40, help="keep the k most likely tokens (top-k)")
    add(p, "--top-p", type=in_range(0.0, 1.0, low_open=True), default=0.9,
        help="keep the smallest set with this probability (top-p)")
    add(p, "--beam-width", type=at_least(1), default=4, help="hypotheses kept (beam)")
    add(p, "--num-samples", type=at_least(1), default=1, help="independent samples to print")
    add(p, "--seed", type=at_least(0), default=0, help="random seed for sampling")
    add(p, "--no-cache", action="store_true", default=False, help="recompute the whole context for every token")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..decoding import beam_search, generate
    from ..io.checkpoint import model_from_checkpoint, read_checkpoint, tokenizer_from_checkpoint

    check_token_budget(args.num_samples, args.max_new_tokens)
    if args.pretrained is not None:
        model, tokenizer, prompt, eos = pretrained_for_sampling(args.pretrained, args.prompt)
    else:
        meta, arrays = read_checkpoint(args.ckpt)
        tokenizer = tokenizer_from_checkpoint(args.ckpt, meta)
        model = model_from_checkpoint(args.ckpt, meta, arrays)
        prompt, eos = tokenizer.encode(args.prompt), None
    for i in range(args.num_samples):
        if args.strategy == "beam":
            ids, _ = beam_search(model, prompt, args.max_new_tokens, beam_width=args.beam_width,
                                 eos_id=eos, use_cache=not args.no_cache)
        else:
            ids = generate(model, prompt, args.max_new_tokens, strategy=args.strategy,
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           seed=args.seed + i, eos_id=eos, use_cache=not args.no_cache)
        print(tokenizer.decode(ids))
        if i + 1 < args.num_samples:
            print("-" * 40)
    return 0


def check_token_budget(num_samples: int, max_new_tokens: int) -> None:
    """Refuse, before a model is loaded, more tokens than one command writes: the samples are
    printed one after the other, and their count times their length is the work asked for."""
    from ..decoding.generate import MAX_NEW_TOKENS
    total = num_samples * max_new_tokens
    if total > MAX_NEW_TOKENS:
        raise UsageError(f"--num-samples {num_samples} x --max-new-tokens {max_new_tokens} is {total:,} tokens; "
                         f"sample writes at most {MAX_NEW_TOKENS:,} in one command")


def pretrained_for_sampling(folder: str, text: str):
    """(model, tokenizer, prompt ids, id of <|endoftext|> or None) of a Hugging Face GPT-2 folder."""
    from ..io.pretrained import load_pretrained

    model, tokenizer = load_pretrained(folder)
    if tokenizer is None:
        raise UsageError(f"{folder} has no vocab.json and merges.txt: sampling needs GPT-2's tokenizer "
                         f"to read the prompt and write the text")
    prompt = tokenizer.encode(text, allowed_special="all")
    if not prompt:
        raise UsageError("--prompt is empty: give some text to continue")
    return model, tokenizer, prompt, tokenizer.special_tokens.get("<|endoftext|>")
