"""The import paths Byzer-LLM has and its users import (audit section 1) exist, and each is the one
implementation re-exported, not a copy."""

from __future__ import annotations

import importlib

import pytest

import byzerllm

# (module, names): from auto-coder's imports (allwefantasy/auto-coder @ bf7af36) and Byzer-LLM's documents
PATHS = [
    (
        "byzerllm",
        [
            "ByzerLLM",
            "SimpleByzerLLM",
            "prompt",
            "Image",
            "connect_cluster",
            "MetaHolder",
            "SingleOutputMeta",
            "InferBackend",
            "LLMRequest",
            "LLMResponse",
            "Templates",
            "format_str_jinja2",
        ],
    ),
    ("byzerllm.utils", ["format_str_jinja2", "format_prompt_jinja2", "random_uuid", "print_flush", "generate_str_md5"]),
    ("byzerllm.utils.types", ["SingleOutputMeta"]),
    (
        "byzerllm.utils.client",
        [
            "ByzerLLM",
            "SimpleByzerLLM",
            "EventName",
            "EventCallbackResult",
            "EventCallback",
            "LLMFunctionCallResponse",
            "LLMClassResponse",
            "ExecuteCodeResponse",
            "Role",
            "LLMHistoryItem",
            "LLMRequest",
            "LLMResponse",
            "InferBackend",
            "Templates",
            "Template",
            "code_utils",
            "types",
        ],
    ),
    ("byzerllm.utils.client.types", ["EventName", "EventCallbackResult", "LLMResponse", "Templates"]),
    ("byzerllm.utils.client.byzerllm_client", ["ByzerLLM"]),
    ("byzerllm.utils.client.simple_byzerllm_client", ["SimpleByzerLLM"]),
    ("byzerllm.utils.client.code_utils", ["extract_code"]),
    ("byzerllm.utils.str2model", ["to_model"]),
    ("byzerllm.utils.nontext", ["Image", "Audio"]),
    ("byzerllm.utils.langutil", ["asyncfy_with_semaphore"]),
    ("byzerllm.types", ["Bool", "Int", "Float", "ImagePath", "AudioPath"]),
    ("byzerllm.apps.byzer_storage.env", ["get_latest_byzer_retrieval_lib"]),
    ("byzerllm.apps.byzer_storage.simple_api", ["ByzerStorage", "DataType", "FieldOption", "SortOption"]),
    ("byzerllm.apps.byzer_storage.local_simple_api", ["LocalByzerStorage", "DataType", "FieldOption", "SortOption"]),
    ("byzerllm.apps.utils", ["TagExtractor"]),
    ("byzerllm.version", ["__version__"]),
    ("byzerllm.log", ["init_logger"]),
    ("byzerllm.utils.client.entrypoints.openai.serving_chat", ["OpenAIServingChat"]),
    ("byzerllm.utils.client.entrypoints.openai.serving_completion", ["OpenAIServingCompletion"]),
    (
        "byzerllm.utils.client.entrypoints.openai.protocol",
        [
            "ModelList",
            "ModelCard",
            "ModelPermission",
            "ChatCompletionRequest",
            "ErrorResponse",
            "CompletionRequest",
            "EmbeddingCompletionRequest",
            "EmbeddingResponse",
            "EmbeddingResponseData",
            "UsageInfo",
        ],
    ),
]


@pytest.mark.parametrize(("module", "names"), PATHS, ids=[p[0] for p in PATHS])
def test_import_path_exists(module, names):
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing


def test_the_paths_are_re_exports_of_one_implementation():
    from byzerllm.types import SingleOutputMeta
    from byzerllm.utils import format_str_jinja2
    from byzerllm.utils.client import SimpleByzerLLM, types
    from byzerllm.utils.types import SingleOutputMeta as UtilsMeta

    assert SimpleByzerLLM is byzerllm.SimpleByzerLLM and UtilsMeta is SingleOutputMeta
    assert types.EventName is byzerllm.types.EventName and format_str_jinja2 is byzerllm.format_str_jinja2


def test_types_of_the_real_package():
    # R-ct:70 InferBackend.LLAMA_CPP; R-ct:84 EventName values; R-t Bool/Int/Float are pydantic models
    # with one ``value`` field; R-ut:37 SingleOutputMeta's positional order; R-ct:46 LLMRequest's
    from byzerllm.utils.client import EventName

    assert byzerllm.InferBackend.LLAMA_CPP == "llama_cpp"
    assert EventName.BEFORE_CALL_MODEL.value == "before_call_model"
    assert EventName.AFTER_CALL_MODEL.value == "after_call_model"
    assert byzerllm.types.Bool(value=True).value is True and byzerllm.types.Int.model_json_schema()["required"] == [
        "value"
    ]
    meta = byzerllm.SingleOutputMeta(1, 2, "thinking", "stop", 0.5, {"k": 1})
    assert (
        meta.input_tokens_count,
        meta.generated_tokens_count,
        meta.reasoning_content,
        meta.finish_reason,
        meta.first_token_time,
        meta.extra_info,
    ) == (1, 2, "thinking", "stop", 0.5, {"k": 1})
    request = byzerllm.LLMRequest("q", False, 100, 0.5, 0.2)
    assert (request.max_length, request.top_p, request.temperature) == (100, 0.5, 0.2)


def test_templates_of_the_real_package():
    # R-ct:108 Templates.qwen/llama/default/empty/yi/deepseek_code_*
    for name in (
        "qwen",
        "llama",
        "default",
        "empty",
        "yi",
        "deepseek_code_chat",
        "deepseek_code_insertion",
        "deepseek_code_completion",
    ):
        assert isinstance(getattr(byzerllm.Templates, name)(), byzerllm.Template)
    chat = [{"role": "user", "content": "hi"}]
    assert byzerllm.Templates.deepseek_code_chat().render(chat) == "### Instruction:\nhi\n### Response:\n"
    assert byzerllm.Templates.empty().render(chat) == "hi"
    fim = [{"role": "system", "content": "a<｜fim▁hole｜>b"}, {"role": "user", "content": "ignored"}]
    assert byzerllm.Templates.deepseek_code_insertion().render(fim) == "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>"


def test_helpers_of_byzerllm_utils():
    # R-u:862 format_str_jinja2 renders with jinja2's defaults (an unknown variable is empty);
    # R-u:851 format_prompt_jinja2 renders a function's docstring without its indentation
    from byzerllm.utils import format_prompt_jinja2, format_str_jinja2, generate_str_md5, random_uuid

    assert format_str_jinja2("{{ a }}-{{ b }}", a=1) == "1-"

    def doc():
        """
        Hello {{ name }}
          indented
        """

    assert format_prompt_jinja2(doc, name="x") == "Hello x\n  indented"
    assert len(random_uuid()) == 32 and random_uuid() != random_uuid()
    assert generate_str_md5("abc") == "900150983cd24fb0d6963f7d28e17f72"


def test_local_byzer_storage_is_the_embedded_store_with_a_client_for_embeddings(tmp_path, monkeypatch):
    # apps/byzer_storage/local_simple_api.py:582 LocalByzerStorage(cluster_name, database, table, host,
    # port, emb_llm); auto-coder's rag/cache/local_byzer_storage_cache.py:89 builds it so
    from byzerllm.apps.byzer_storage import local_simple_api

    monkeypatch.setenv("BYZERLLM_STORAGE_DIR", str(tmp_path))
    emb = object()
    store = local_simple_api.LocalByzerStorage(
        "byzerai_store", "rag_test", "docs", host="127.0.0.1", port=1, emb_llm=emb
    )
    assert store.llm is emb and (store.host, store.port) == ("127.0.0.1", 1)
    assert isinstance(store, byzerllm.apps.byzer_storage.ByzerStorage)


def test_init_logger_gives_a_byzerllm_logger():
    from byzerllm.log import init_logger

    assert init_logger("autocoder.rag.api_server").name == "byzerllm.autocoder.rag.api_server"
    assert init_logger("byzerllm.x").name == "byzerllm.x"
