"""Launching Qwen3-Reranker on SGLang for ``/v1/rerank`` (``kbflow serve-reranker``).

What SGLang does with it, read in the 0.5.8 and 0.5.23 wheels (the same in both unless said):

- ``--chat-template FILE.jinja`` is read by ``TemplateManager._load_jinja_template``
  (``srt/managers/template_manager.py`` in 0.5.8, ``srt/parser/template_manager.py`` in 0.5.23):
  the file's leading and trailing newlines are stripped, every two-character ``\\n`` becomes a
  newline, and the text replaces the tokenizer's ``chat_template``.
- ``/v1/rerank`` (``srt/entrypoints/openai/serving_rerank.py``) takes the decoder-only Qwen3 path
  when that template contains ``answer can only be "yes" or "no"``
  (``_is_qwen3_reranker_template``); without it, it treats the model as a cross-encoder.
  ``_render_jinja_chat_template`` renders the template once per document with
  ``messages=[{"role": "user", "content": query}, {"role": "user", "content": document}]`` and
  ``instruct`` only when the request carries a non-empty one (a plain ``jinja2.Environment``
  in 0.5.8, an ``ImmutableSandboxedEnvironment`` in 0.5.23), then scores P(yes) / (P(yes) +
  P(no)) of the next token after the prompt (``score_prompts``).
- So the server runs in generation mode: no ``--is-embedding`` (with it the Qwen3 path answers
  an error). No other flag is needed: the scoring request sets its own logprob options, and the
  radix cache stays on because the documents of one query share the prompt up to
  ``<Document>:`` (system text, instruction, query), which it computes once.
- ``--mem-fraction-static`` is a share of the GPU memory that is *free when the server starts*
  (the KV pool is what remains of that share after the weights; ``profile_max_num_token`` in
  0.5.8, ``KVCacheConfigurator._profile_available_bytes`` in 0.5.23), not of the whole card:
  start order matters when it shares a GPU with embedding workers (README "Rerank").

SGLang's own ``examples/chat_template/qwen3_reranker.jinja`` is not in the wheel and ends the
prompt after ``<|im_start|>assistant\\n``; Qwen's documented suffix also has the empty think
block. kbflow ships ``qwen3_reranker.jinja`` (this package's data) with Qwen's format.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path

from kbflow.errors import ConfigError

TEMPLATE_NAME = "qwen3_reranker.jinja"

#: The oldest SGLang whose ``/v1/rerank`` this launch was checked against (the Qwen3 template
#: detection and rendering above).
SGLANG_RERANK_MIN = "0.5.8"


def template_path() -> Path:
    """The shipped ``qwen3_reranker.jinja`` as a file on disk (SGLang opens it by path).
    Raises ``ConfigError`` if kbflow is installed in a form that has no such file (a zip)."""
    resource = files("kbflow.search").joinpath(TEMPLATE_NAME)
    path = Path(str(resource))
    if not path.is_file():
        raise ConfigError(
            f"{TEMPLATE_NAME} is not a file on disk ({resource}); install kbflow unpacked "
            "(pip install, not a zip) so SGLang can read the template"
        )
    return path


def reranker_command(
    python: str,
    model_path: Path,
    port: int,
    host: str = "127.0.0.1",
    mem_fraction: float = 0.15,
    extra: Sequence[str] = (),
) -> list[str]:
    """``python -m sglang.launch_server`` serving ``model_path`` for ``/v1/rerank`` with the
    shipped template, in generation mode (no ``--is-embedding``), taking ``mem_fraction`` of
    the GPU memory free at start; ``extra`` is appended. Raises ``ConfigError`` for a
    ``mem_fraction`` outside (0, 1)."""
    if not 0 < mem_fraction < 1:
        raise ConfigError(f"the reranker's memory fraction must be in (0, 1), not {mem_fraction}")
    return [
        python,
        "-m",
        "sglang.launch_server",
        "--model-path",
        str(model_path),
        "--host",
        host,
        "--port",
        str(port),
        "--chat-template",
        str(template_path()),
        "--mem-fraction-static",
        f"{mem_fraction:g}",
        *extra,
    ]


def check_reranker_sglang(python: Path) -> str:
    """The SGLang version in ``python``'s environment, at least :data:`SGLANG_RERANK_MIN`
    (``kbflow.embed.sglang.require_sglang``: a ``ConfigError`` saying what to do otherwise)."""
    from kbflow.embed.sglang import require_sglang

    fix = (
        "point --python (or KBFLOW_EMBED__SGLANG_PYTHON) at the bin/python of SGLang's own "
        "environment (`make sglang-venv`, README: GPU runbook)"
    )
    return require_sglang(python, SGLANG_RERANK_MIN, fix)
