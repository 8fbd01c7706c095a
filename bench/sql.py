"""Rows through a model from SQL vs a Python loop (issue target: DuckDB >= 1.8x the loop's rows/s).

One run deploys the built-in model with 2 workers on Ray and answers the same ``--rows`` questions
(``--max_length`` tokens each, seed fixed) three ways:
- reference: a Python loop calling ``chat_oai`` once per row (one request in flight);
- DuckDB: ``select llm_result(bench_chat(llm_param(...))) from range(N)`` with ``byzerllm.sql``
  registered (each Arrow batch's rows sent concurrently; the pool spreads them over the workers);
- Spark local[2]: the same query through the pandas UDFs (executors call the deployment on Ray).

    .venv/bin/python bench/sql.py [--rows 400] [--max_length 8] [--concurrency N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import duckdb
from _common import print_table, ray_cluster, write_result

import byzerllm
from byzerllm import sql

NAME = "bench_chat"


def question(i: int) -> str:
    return f"Question {i}: name one colour."


def loop(llm: byzerllm.ByzerLLM, rows: int, max_length: int) -> list[str]:
    out = []
    for i in range(rows):
        [r] = llm.chat_oai(
            [{"role": "user", "content": question(i)}], model=NAME, llm_config={"max_length": max_length, "seed": 1}
        )
        out.append(r.output)
    return out


def query(rows: int, max_length: int, dialect: str) -> str:
    if dialect == "duckdb":
        text = "'Question ' || i || ': name one colour.'"
        param = f"map(['instruction', 'max_length', 'seed'], [{text}, '{max_length}', '1'])"
        return f"select llm_result({NAME}(llm_param({param}))) as a from range({rows}) t(i)"
    param = (
        f"map('instruction', concat('Question ', id, ': name one colour.'), 'max_length', '{max_length}', 'seed', '1')"
    )
    return f"select llm_result({NAME}(llm_param({param}))) as a from range({rows})"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--max_length", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=None, help="rows in flight (default: the slots)")
    args = ap.parse_args()
    with ray_cluster():
        llm = byzerllm.ByzerLLM().setup_num_workers(2)
        llm.deploy(model_path="builtin:smollm2", udf_name=NAME, infer_params={})
        try:
            llm.chat_oai([{"role": "user", "content": "warm up"}], model=NAME, llm_config={"max_length": 2})
            answers, t_loop = timed(lambda: loop(llm, args.rows, args.max_length))
            con = duckdb.connect()
            reg = sql.register(con, llm=llm, models=[NAME], concurrency=args.concurrency)
            rows, t_duck = timed(lambda: con.sql(query(args.rows, args.max_length, "duckdb")).fetchall())
            reg.close()
            from pyspark.sql import SparkSession

            os.environ["PYSPARK_PYTHON"] = sys.executable
            spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
            sql.register(spark, llm=llm, models=[NAME], concurrency=args.concurrency)
            spark_rows, t_spark = timed(lambda: spark.sql(query(args.rows, args.max_length, "spark")).collect())
            spark.stop()
        finally:
            llm.undeploy(NAME)
    answered = {
        "loop": sum(1 for a in answers if a),
        "duckdb": sum(1 for (a,) in rows if a),
        "spark": sum(1 for r in spark_rows if r.a),
    }
    results = {
        "python loop (chat_oai per row)": {"seconds": t_loop, "rows_per_s": args.rows / t_loop},
        "DuckDB (byzerllm.sql)": {"seconds": t_duck, "rows_per_s": args.rows / t_duck},
        "Spark local[2] (pandas UDF)": {"seconds": t_spark, "rows_per_s": args.rows / t_spark},
    }
    print_table(
        f"{args.rows} rows, {args.max_length} tokens each, built-in model, 2 workers",
        ["path", "seconds", "rows/s", "x loop"],
        [[k, v["seconds"], v["rows_per_s"], t_loop / v["seconds"]] for k, v in results.items()],
    )
    ratio = t_loop / t_duck
    print(f"DuckDB / loop throughput: {ratio:.2f}x (target >= 1.8x); rows answered: {answered}")
    path = write_result(
        "sql",
        {
            "rows": args.rows,
            "max_length": args.max_length,
            "workers": 2,
            "concurrency": args.concurrency or "the slots (2)",
            "results": results,
            "duckdb_vs_loop": ratio,
            "spark_vs_loop": t_loop / t_spark,
            "answered": answered,
            "target": "DuckDB >= 1.8x the loop's rows/s",
            "met": ratio >= 1.8,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
