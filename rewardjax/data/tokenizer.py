"""Tokenizers: local Hugging Face tokenizer directories, chat templates, a small BPE.

Real models bring their tokenizer directory (`tokenizer.json` + `tokenizer_config.json`
with a chat template); `load_tokenizer` reads one through transformers, offline and
without remote code. Tests and synthetic tasks use `default_tokenizer()`, a byte-level
BPE trained once by `train_bpe_tokenizer` and committed under `rewardjax/assets/`, so
every machine sees the same ids and the same code path as a real model.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers


@contextlib.contextmanager
def _without_transformers_advice():
    # Importing transformers without torch logs "PyTorch was not found. Models won't be
    # available", whichever submodule is imported; we use only its tokenizer classes, which
    # need no torch, so the notice says nothing to our users. transformers skips its
    # advisory warnings while this variable is set; set only for the import, it leaves the
    # user's own later use of transformers as it was.
    name = "TRANSFORMERS_NO_ADVISORY_WARNINGS"
    previous = os.environ.get(name)
    os.environ[name] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


with _without_transformers_advice():
    import transformers

EOS = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
STEP = "<|step|>"
SPECIAL_TOKENS = (EOS, IM_START, IM_END, STEP)

# ChatML, the format Qwen2/Qwen3 models use.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DEFAULT_TOKENIZER_DIR = "assets/tokenizer"


def load_tokenizer(path: str | os.PathLike) -> transformers.PreTrainedTokenizerBase:
    """A tokenizer from a local directory (never the hub, never remote code)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist")
    tok = transformers.AutoTokenizer.from_pretrained(
        str(path), local_files_only=True, trust_remote_code=False)
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError(f"tokenizer at {path} has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


def default_tokenizer() -> transformers.PreTrainedTokenizerBase:
    """The committed byte-level BPE (vocab 2048, digits split, ChatML template)."""
    return load_tokenizer(Path(str(resources.files("rewardjax"))) / DEFAULT_TOKENIZER_DIR)


def train_bpe_tokenizer(texts: Iterable[str], *, vocab_size: int = 2048,
                        special_tokens: Sequence[str] = SPECIAL_TOKENS,
                        chat_template: str = CHATML_TEMPLATE,
                        ) -> transformers.PreTrainedTokenizerFast:
    """Trains a byte-level BPE tokenizer (GPT-2/Qwen style) on `texts`.

    Digits are split one per token, as in Llama and Qwen tokenizers, which keeps
    arithmetic learnable for small models. The first special token is the eos and pad
    token.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    eos = special_tokens[0]
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, pad_token=eos,
        additional_special_tokens=list(special_tokens[1:]))
    fast.chat_template = chat_template
    fast.padding_side = "left"
    return fast


def encode_chat(tokenizer, messages: Sequence[dict], *, add_generation_prompt: bool = False
                ) -> list[int]:
    """Token ids of `messages` rendered through the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(list(messages), tokenize=True,
                                        add_generation_prompt=add_generation_prompt)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def _gsm8k_texts():
    import json
    path = Path(str(resources.files("rewardjax"))) / "assets/data/gsm8k/train.jsonl"
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            yield record["question"]
            yield record["answer"]


def main():
    """Rebuilds the committed default tokenizer from the shipped GSM8K train split."""
    import argparse
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", default=str(Path(str(resources.files("rewardjax"))) / DEFAULT_TOKENIZER_DIR))
    parser.add_argument("--vocab-size", type=int, default=2048)
    args = parser.parse_args()
    tok = train_bpe_tokenizer(_gsm8k_texts(), vocab_size=args.vocab_size)
    tok.save_pretrained(args.out)
    print(f"saved tokenizer (vocab {len(tok)}) to {args.out}")


if __name__ == "__main__":
    main()


def eos_ids(tokenizer) -> tuple[int, ...]:
    """The ids that end a completion: the tokenizer's eos plus the chat template's
    end-of-turn token (`<|im_end|>`), if it has one."""
    ids = [tokenizer.eos_token_id]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        ids.append(end)
    return tuple(dict.fromkeys(i for i in ids if i is not None))
