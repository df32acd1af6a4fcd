"""Turn a problem into the exact prompt text and token ids the policy sees."""

from __future__ import annotations


def render_prompt(
    tokenizer,
    problem: str,
    template: str = "{problem}",
    system_prompt: str | None = None,
    use_chat_template: bool = True,
) -> str:
    """Apply `template` (a format string with {problem}), then the tokenizer's chat template."""
    try:
        content = template.format(problem=problem)
    except (KeyError, IndexError, ValueError):  # stray braces in a user template: substitute literally
        content = template.replace("{problem}", problem)
    if not use_chat_template or getattr(tokenizer, "chat_template", None) is None:
        return content if system_prompt is None else f"{system_prompt}\n\n{content}"
    messages = [{"role": "user", "content": content}]
    if system_prompt is not None:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer, text: str, chat: bool, max_tokens: int | None = None) -> list[int]:
    """Token ids of a rendered prompt; a chat-rendered text already holds its special tokens.

    Prompts longer than `max_tokens` keep their last `max_tokens` tokens (the question's end and
    the assistant header matter most for generation).
    """
    ids = list(tokenizer(text, add_special_tokens=not chat)["input_ids"])
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[-max_tokens:]
    return ids
