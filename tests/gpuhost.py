"""Stand-ins for a GPU host's parts that tests can build on a CPU machine: an environment that
carries a given SGLang version (its metadata), and a Qwen3-like model folder whose tokenizer does
or does not append ``<|endoftext|>``."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path


def venv_with_sglang(root: Path, version: str | None) -> Path:
    """A real virtual environment whose ``importlib.metadata`` sees SGLang ``version`` (its
    distribution metadata only: the check reads the version, it never imports SGLang)."""
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    if version is not None:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        meta = Path(site) / f"sglang-{version}.dist-info"
        meta.mkdir()
        (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: sglang\nVersion: {version}\n")
    return python


def tokenizer_folder(folder: Path, appends_end: bool) -> Path:
    """A Qwen3-like model folder whose tokenizer does or does not append <|endoftext|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    folder.mkdir(parents=True)
    vocab = {"[UNK]": 0, "<|endoftext|>": 1} | {
        w: i + 2 for i, w in enumerate(["where", "is", "my", "order", "我", "的", "订", "单"])
    }
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if appends_end:
        tok.post_processor = processors.TemplateProcessing(
            single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", 1)]
        )
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    model = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}
    (folder / "config.json").write_text(json.dumps(model))
    return folder
