"""kbflow's ``qwen3_reranker.jinja``, loaded and rendered the way SGLang does, gives Qwen's
documented Qwen3-Reranker prompt; ``kbflow serve-reranker`` launches SGLang with it.

SGLang needs a GPU, so its loader and renderer are replicated here line for line (cited below)
and the launch is checked against a stand-in interpreter that records what it was given."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from kbflow.errors import ConfigError
from kbflow.search.rerank_server import reranker_command, template_path

ROOT = Path(__file__).resolve().parents[3]

# Qwen's format, from the Qwen3-Reranker model card (format_instruction, prefix, suffix),
# written out here independently of the template.
QWEN_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
QWEN_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN_DEFAULT_INSTRUCTION = (
    "Given a web search query, retrieve relevant passages that answer the query"
)

QUERY = "订单退款多久能到账？"
DOCUMENT = "退款审核通过后，款项将在 3-5 个工作日内原路退回您的支付账户。"
INSTRUCT = "给定一个客服问题，判断知识库条目是否回答了它"


def qwen_prompt(instruction: str, query: str, doc: str) -> str:
    body = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"
    return QWEN_PREFIX + body + QWEN_SUFFIX


def load_like_sglang(path: Path) -> str:
    """``TemplateManager._load_jinja_template`` (sglang/srt/managers/template_manager.py in
    0.5.8, sglang/srt/parser/template_manager.py in 0.5.23): the file's lines joined, leading
    and trailing newlines stripped, every two-character ``\\n`` turned into a newline."""
    with open(path) as f:
        chat_template = "".join(f.readlines()).strip("\n")
    return chat_template.replace("\\n", "\n")


def jinja_env_058() -> jinja2.Environment:
    # sglang 0.5.8 serving_rerank._get_jinja_env
    return jinja2.Environment(
        loader=jinja2.BaseLoader(), autoescape=False, undefined=jinja2.Undefined
    )


def jinja_env_0523() -> jinja2.Environment:
    # sglang 0.5.23 serving_rerank._get_jinja_env
    return ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(), autoescape=False, undefined=jinja2.Undefined
    )


ENVS = pytest.mark.parametrize("make_env", [jinja_env_058, jinja_env_0523], ids=["0.5.8", "0.5.23"])


def render_like_sglang(
    env: jinja2.Environment, chat_template: str, query: str, document: str, instruct: str | None
) -> str:
    """sglang/srt/entrypoints/openai/serving_rerank.py ``_render_jinja_chat_template`` (the
    same in 0.5.8 and 0.5.23), called once per document by ``_handle_text_reranker_request``
    with ``instruct=getattr(request, "instruct", None)``."""
    template = env.from_string(chat_template)
    render_kwargs: dict[str, object] = {
        "messages": [
            {"role": "user", "content": query},
            {"role": "user", "content": document},
        ]
    }
    if instruct:
        render_kwargs["instruct"] = instruct
    return template.render(**render_kwargs)


@ENVS
def test_template_renders_qwens_documented_prompt(make_env):
    prompt = render_like_sglang(
        make_env(), load_like_sglang(template_path()), QUERY, DOCUMENT, INSTRUCT
    )
    assert prompt == qwen_prompt(INSTRUCT, QUERY, DOCUMENT)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


@ENVS
@pytest.mark.parametrize("instruct", [None, ""])
def test_without_instruct_qwens_default_instruction_is_used(make_env, instruct):
    prompt = render_like_sglang(
        make_env(), load_like_sglang(template_path()), QUERY, DOCUMENT, instruct
    )
    assert prompt == qwen_prompt(QWEN_DEFAULT_INSTRUCTION, QUERY, DOCUMENT)


@ENVS
def test_query_and_document_text_is_kept_verbatim(make_env):
    query, doc = "what does {{ instruct }} mean?", 'a literal \\n, a "quote" and {% raw %}'
    prompt = render_like_sglang(make_env(), load_like_sglang(template_path()), query, doc, None)
    assert prompt == qwen_prompt(QWEN_DEFAULT_INSTRUCTION, query, doc)


def test_template_takes_sglangs_qwen3_text_reranker_path():
    """serving_rerank._is_qwen3_reranker_template looks for this phrase in the loaded template
    (lowercased); _is_qwen3_vl_reranker_template for vision tokens, which must be absent."""
    loaded = load_like_sglang(template_path()).lower()
    assert 'answer can only be "yes" or "no"' in loaded
    assert "<|vision_start|>" not in loaded and "<|image_pad|>" not in loaded


def test_template_is_ascii_package_data():
    """SGLang opens the file with the locale's encoding; a wheel ships it only if
    package-data names it."""
    path = template_path()
    assert path.parent == ROOT / "src" / "kbflow" / "search"
    path.read_bytes().decode("ascii")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "search/*.jinja" in pyproject["tool"]["setuptools"]["package-data"]["kbflow"]


def test_reranker_command():
    cmd = reranker_command(
        "/opt/sglang/bin/python",
        Path("/models/Qwen3-Reranker-4B"),
        30010,
        mem_fraction=0.2,
        extra=["--context-length", "8192"],
    )
    assert cmd == [
        "/opt/sglang/bin/python",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "/models/Qwen3-Reranker-4B",
        "--host",
        "127.0.0.1",
        "--port",
        "30010",
        "--chat-template",
        str(template_path()),
        "--mem-fraction-static",
        "0.2",
        "--context-length",
        "8192",
    ]
    assert "--is-embedding" not in cmd
    assert reranker_command("py", Path("m"), 1)[-1] == "0.15"


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_reranker_command_rejects_a_fraction_outside_0_1(fraction):
    with pytest.raises(ConfigError, match="memory fraction"):
        reranker_command("py", Path("m"), 1, mem_fraction=fraction)


def kbflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kbflow.cli", "serve-reranker", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_print_command_uses_the_sglang_python_setting():
    out = kbflow(
        "--model-path",
        "/models/Qwen3 Reranker",
        "--port",
        "30011",
        "--print-command",
        env={"KBFLOW_EMBED__SGLANG_PYTHON": "/opt/sglang/bin/python"},
    )
    assert out.returncode == 0, out.stderr
    expected = reranker_command(
        "/opt/sglang/bin/python", Path("/models/Qwen3 Reranker"), 30011, mem_fraction=0.15
    )
    assert out.stdout == shlex.join(expected) + "\n"
    assert shlex.split(out.stdout) == expected


def test_print_command_defaults_to_this_python_and_passes_sglang_args():
    out = kbflow(
        "--model-path", "m", "--mem-fraction", "0.25", "--print-command", "--", "--tp-size", "2"
    )
    assert out.returncode == 0, out.stderr
    expected = reranker_command(
        sys.executable, Path("m"), 30010, mem_fraction=0.25, extra=["--tp-size", "2"]
    )
    assert shlex.split(out.stdout) == expected


def fake_python(tmp_path: Path, version: str, exit_code: int) -> Path:
    """An interpreter stand-in: answers the SGLang version probe (``-c ...``), otherwise records
    its pid and arguments and exits with ``exit_code``."""
    script = tmp_path / "python"
    record = tmp_path / "record"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then echo {version}; exit 0; fi\n'
        f'echo $$ > "{record}.pid"\n'
        f'printf "%s\\n" "$@" > "{record}"\n'
        f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return script


def test_serve_reranker_becomes_sglang_and_passes_its_exit_code(tmp_path: Path):
    python = fake_python(tmp_path, "0.5.23", exit_code=7)
    model = tmp_path / "Qwen3-Reranker-4B"
    model.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbflow.cli", "serve-reranker", "--model-path", str(model)]
        + ["--python", str(python), "--port", "30012"],
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 7, stderr
    # exec'd in place (same pid): SIGINT/SIGTERM reach SGLang with nothing in between
    assert int((tmp_path / "record.pid").read_text()) == proc.pid
    recorded = (tmp_path / "record").read_text().splitlines()
    assert recorded == reranker_command(str(python), model, 30012)[1:]


def test_too_old_sglang_is_one_line_and_exit_2(tmp_path: Path):
    python = fake_python(tmp_path, "0.5.5", exit_code=0)
    out = kbflow("--model-path", str(tmp_path), "--python", str(python))
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert "SGLang 0.5.5" in line and ">= 0.5.8" in line
    assert "Traceback" not in out.stderr and not (tmp_path / "record").exists()


def test_missing_model_folder_is_refused_before_launch(tmp_path: Path):
    python = fake_python(tmp_path, "0.5.8", exit_code=0)
    out = kbflow("--model-path", str(tmp_path / "absent"), "--python", str(python))
    assert out.returncode == 2 and "not a folder" in out.stderr
    assert not (tmp_path / "record").exists()
