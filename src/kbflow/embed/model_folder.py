"""What a served model's folder says about how to use it, read before a worker starts.

- The query prompt: sentence-transformers' ``config_sentence_transformers.json`` carries the
  text a model's queries start with (``prompts.query``; Qwen3-Embedding ships
  ``Instruct: Given a web search query, retrieve relevant passages that answer the query\\n
  Query:``). It is the default of ``embed.query_instruction``, so the instruction follows the
  model, not its name.
- The end token: models that pool the last token (Qwen3-Embedding; causal LMs served with
  ``--is-embedding``) need the tokenizer to append the end-of-text token, because SGLang adds
  nothing of its own. Qwen's own code stopped appending ``<|endoftext|>`` by hand in June 2025
  when the tokenizer files started doing it; a checkout from before gives vectors of the last
  word instead, with no error anywhere. :func:`check_end_token` refuses such a folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kbflow.errors import ConfigError

log = logging.getLogger(__name__)

END_TOKEN = "<|endoftext|>"

SAMPLE = "我的订单物流信息一直没有更新 where is my order"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def query_prompt(folder: Path) -> str | None:
    """The folder's query prompt (``config_sentence_transformers.json``: ``prompts.query``, or
    the prompt named by ``default_prompt_name``); None when it has none."""
    config = _read_json(folder / "config_sentence_transformers.json")
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict):
        return None
    for name in ("query", config.get("default_prompt_name")):
        value = prompts.get(name) if isinstance(name, str) else None
        if isinstance(value, str) and value:
            return value
    return None


def pools_last_token(folder: Path) -> bool:
    """Whether the model's vector is its last token's: a sentence-transformers pooling module
    that says so, or a causal LM (``*ForCausalLM``, which SGLang pools on the last token)."""
    for module in _read_json(folder / "modules.json").get("modules", []) or []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            pooling = _read_json(folder / str(module.get("path", "")) / "config.json")
            if pooling:
                return bool(pooling.get("pooling_mode_lasttoken"))
    architectures = _read_json(folder / "config.json").get("architectures") or []
    return any(str(a).endswith("ForCausalLM") for a in architectures)


def check_end_token(folder: Path) -> str | None:
    """Refuse (``ConfigError``) a last-token model whose tokenizer does not end a text with its
    end token; returns what was checked, or None when the model does not pool the last token."""
    if not pools_last_token(folder):
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(
            f"cannot load the tokenizer in {folder} to check its end token: {exc}"
        ) from exc
    vocab = tokenizer.get_vocab()
    end = END_TOKEN if END_TOKEN in vocab else tokenizer.eos_token
    if end is None or end not in vocab:
        raise ConfigError(
            f"the tokenizer in {folder} has no end token ({END_TOKEN} or eos_token): a "
            "last-token embedding model needs one"
        )
    ids = tokenizer(SAMPLE)["input_ids"]
    if not ids or ids[-1] != vocab[end]:
        raise ConfigError(
            f"the tokenizer in {folder} does not append {end} to a text, and the model pools "
            "the last token: every vector would be of the text's last word. Update the "
            "checkout's tokenizer.json and tokenizer_config.json from the model's current "
            "release (Qwen fixed this in June 2025), then rerun"
        )
    log.info("tokenizer in %s appends %s (id %d)", folder, end, vocab[end])
    return end
