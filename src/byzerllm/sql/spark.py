"""The SQL functions on a SparkSession: pandas UDFs whose executors call the deployments on Ray.

Each executor's Python worker connects to the Ray cluster the driver is connected to (once, then
reused) and sends its batch's rows concurrently, as on DuckDB.
"""

from __future__ import annotations

from typing import Any

import pandas as pd  # module level: Spark reads the pandas UDFs' type hints to type them

from . import calls

# per Python worker process: (ray address, model, options) -> ModelFunction
_FUNCTIONS: dict[tuple, calls.ModelFunction] = {}


def _function(
    address: str, model: str, concurrency: int, cache: bool, response_class: Any, max_output: int | None
) -> calls.ModelFunction:
    key = (address, model, concurrency, cache, repr(response_class), max_output)
    if key not in _FUNCTIONS:
        import byzerllm

        byzerllm.connect_cluster(address)
        client = byzerllm.ByzerLLM(default_max_output_length=max_output)
        _FUNCTIONS[key] = calls.ModelFunction(client, model, calls.Caller(), concurrency, cache, response_class)
    return _FUNCTIONS[key]


def register_functions(
    spark: Any, llm: Any, models: list[str], concurrency: dict[str, int], cache: bool, typed: dict[str, tuple]
) -> None:
    """Register the helper functions and one pandas UDF per deployment in ``models`` (its name) and
    per entry of ``typed`` (function name -> ``(deployment, response_class)``) on ``spark``; each
    executor sends at most ``concurrency[function name]`` rows of a batch at once. The
    executors' clients cap outputs as ``llm`` does (``default_max_output_length``)."""
    import ray
    from pyspark.sql.functions import pandas_udf, udf

    address = ray.get_runtime_context().gcs_address
    max_output = getattr(llm, "default_max_output_length", None)
    spark.udf.register("llm_param", udf(calls.llm_param, "string"))
    spark.udf.register("llm_prompt", udf(calls.llm_prompt, "string"))
    spark.udf.register("llm_result", udf(calls.llm_result, "string"))
    spark.udf.register("llm_error", udf(calls.llm_error, "string"))
    spark.udf.register("llm_stack", udf(calls.llm_stack, "string"))
    for model in models:
        fn = _answers(address, model, concurrency[model], cache, max_output)
        spark.udf.register(model, pandas_udf(fn, "string"))
    for name, (model, response_class) in typed.items():
        from .schema import spark_type, struct_of

        kind = ("struct", [("value", struct_of(response_class)), ("error", "string")])
        fn = _typed_answers(address, model, concurrency[name], cache, max_output, response_class)
        spark.udf.register(name, pandas_udf(fn, spark_type(kind)))


# pandas UDFs are typed by their signature: one Series parameter, no defaults
def _answers(address: str, model: str, concurrency: int, cache: bool, max_output: int | None) -> Any:
    def answers(requests: pd.Series) -> pd.Series:
        f = _function(address, model, concurrency, cache, None, max_output)
        return pd.Series(f.batch([None if pd.isna(r) else r for r in requests]), dtype=object)

    return answers


def _typed_answers(
    address: str, model: str, concurrency: int, cache: bool, max_output: int | None, response_class: Any
) -> Any:
    def answers(requests: pd.Series) -> pd.DataFrame:
        f = _function(address, model, concurrency, cache, response_class, max_output)
        rows = f.typed_batch([None if pd.isna(r) else r for r in requests])
        return pd.DataFrame(
            {"value": [r["value"] if r else None for r in rows], "error": [r["error"] if r else None for r in rows]}
        )

    return answers
