"""Write a BERT sentence-transformers folder as a llama.cpp GGUF embedding model.

A small version of what llama.cpp's ``convert_hf_to_gguf.py`` does for ``BertModel``: the
hyperparameters, the WordPiece vocabulary in llama.cpp's "phantom space" form (a word start gets
``▁``, a ``##`` continuation loses its prefix), the special token ids, the weights in float32,
and ``bert.pooling_type`` as chosen by the caller. The tests use it on the built-in
all-MiniLM-L6-v2 to get an embedding GGUF that declares its pooling, since no such file ships in a
PyPI package.
"""

from __future__ import annotations

import json
from pathlib import Path

POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}


def write_bert_gguf(folder: str | Path, out: str | Path, pooling: str | None) -> Path:
    """Write ``folder`` (a BERT sentence-transformers model: ``config.json``, ``vocab.txt``,
    ``model.safetensors``) to the GGUF file ``out`` declaring ``pooling`` (``mean``, ``cls``,
    ``last``, ``none``, ``rank``; ``None`` writes no pooling key). Needs the ``gguf`` and ``safetensors``
    packages."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    folder, out = Path(folder), Path(out)
    cfg = json.loads((folder / "config.json").read_text())
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    arch = gguf.MODEL_ARCH.BERT
    n_layers = int(cfg["num_hidden_layers"])
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(folder.name)
    writer.add_context_length(int(cfg["max_position_embeddings"]))
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_block_count(n_layers)
    writer.add_head_count(int(cfg["num_attention_heads"]))
    writer.add_layer_norm_eps(float(cfg["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    if pooling is not None:
        writer.add_pooling_type(gguf.PoolingType(POOLING[pooling]))

    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    specials = {tok_cfg[k] for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")}
    tokens, types = [], []
    for token in vocab:
        if token in specials:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(token[2:] if token.startswith("##") else "\u2581" + token)
            types.append(gguf.TokenType.NORMAL)
    ids = {token: i for i, token in enumerate(vocab)}
    writer.add_token_type_count(int(cfg.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_unk_token_id(ids[tok_cfg["unk_token"]])
    writer.add_sep_token_id(ids[tok_cfg["sep_token"]])
    writer.add_pad_token_id(ids[tok_cfg["pad_token"]])
    writer.add_bos_token_id(ids[tok_cfg["cls_token"]])  # llama.cpp starts a BERT input with BOS = [CLS]
    writer.add_mask_token_id(ids[tok_cfg["mask_token"]])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)

    names = gguf.get_tensor_name_map(arch, n_layers)
    for name, tensor in load_file(str(folder / "model.safetensors")).items():
        name = name.removeprefix("bert.")
        if name.startswith("pooler.") or name == "embeddings.position_ids":
            continue  # the pooler head is not part of a sentence embedding
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError(f"no GGUF name for tensor {name}")
        writer.add_tensor(new, np.ascontiguousarray(tensor, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
