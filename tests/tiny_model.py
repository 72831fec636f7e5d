"""A tiny sentence-transformers model for tests that run ``nenqa`` as a subprocess many times.

One BERT layer of width 8 with fixed random weights and the default model's tokenizer: it loads
and embeds in a fraction of the real model's time, gives the same vectors for the same text
every run, and is selected the way a user selects any model (``NENQA_EMBEDDING_MODEL``), so the
code under test has no test-only path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nenqa.models.embedding import prepare_default_model
from nenqa.settings import Settings

_COPIED = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)
WIDTH = 8


def build_tiny_model(target: Path, *, seed: int = 0) -> Path:
    """Write the tiny model into ``target`` (created) and return it; ``seed`` picks weights."""
    import torch
    from transformers import BertConfig, BertModel

    source = prepare_default_model(Settings().model_cache_dir)
    target.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        shutil.copyfile(source / name, target / name)
    shutil.copytree(source / "2_Normalize", target / "2_Normalize", dirs_exist_ok=True)
    config = json.loads((source / "config.json").read_text())
    config.update(
        hidden_size=WIDTH, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16
    )
    torch.manual_seed(seed)
    BertModel(BertConfig(**config)).save_pretrained(target)
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    pooling["word_embedding_dimension"] = WIDTH
    (target / "1_Pooling").mkdir(exist_ok=True)
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    return target
