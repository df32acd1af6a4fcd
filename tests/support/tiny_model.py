"""Tiny random causal LMs with a real (byte-level) tokenizer, for fast tests.

Everything is built in code: no download, no GGUF parse. The tokenizer is a byte-level BPE with
no merges (one token per byte) plus the ChatML special tokens, so it round-trips any UTF-8 text
and supports `apply_chat_template`.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_tokenizer():
    """A byte-level tokenizer: 256 byte tokens + 3 specials (vocab 259)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    arch: str = "llama",
    hidden_size: int = 32,
    layers: int = 2,
) -> Path:
    """Save a randomly initialised tiny Llama or Qwen2 with the byte tokenizer to `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tokenizer = build_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    if arch == "llama":
        config = LlamaConfig(**common)
    elif arch == "qwen2":
        config = Qwen2Config(**common)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use llama or qwen2")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def teach_answer_format(model_dir: str | Path, steps: int = 300, seed: int = 0) -> Path:
    """Briefly fit a tiny model to answer "The answer is D." with a random digit D.

    A random tiny model never produces a parsable answer, so every group would be all-wrong and
    the trainer would have nothing to learn from. The warm-up answers "What is a + b?" with the
    right sum half of the time and a random digit otherwise, so the model states an answer in the
    verifier's format and is right sometimes: groups mix correct and wrong samples.
    """
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        texts = []
        for _ in range(8):
            a, b = rng.randint(0, 4), rng.randint(0, 4)
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": f"What is {a} + {b}?"}],
                tokenize=False,
                add_generation_prompt=True,
            )
            answer = a + b if rng.random() < 0.5 else rng.randint(0, 9)
            texts.append(f"{prompt}The answer is {answer}.<|im_end|>")
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(model_dir, safe_serialization=True)
    return model_dir
