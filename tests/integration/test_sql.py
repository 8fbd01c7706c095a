"""Deployments as SQL functions on DuckDB and Spark (guide 004 section 3), on the built-in model and
on echo deployments, on the session's Ray cluster."""

from __future__ import annotations

import json
import os
import sys

import duckdb
import pydantic
import pytest

import byzerllm
from byzerllm import sql

from ..conftest import run_cli

pytestmark = pytest.mark.integration

# guide 004 section 3, with Byzer's "select ... as table1" written as "create table table1 as select ..."
GUIDE = [
    """create table table1 as
select kimi_chat(llm_param(map("instruction",'我是威廉，请记住我是谁。'))) as response""",
    "select llm_result(response) as result from table1",
    """create table table2 as
select kimi_chat(llm_stack(response,llm_param(map("instruction",'请问我是谁？')))) as response from table1""",
    "select llm_result(response) as result from table2",
]
# 100 rows, two of them bad: an empty instruction and a misspelt generation parameter
HUNDRED = """select i, {fn}(llm_param(map(['instruction', case when i = 71 then 'max_lenght' else 'max_length' end],
    [case when i = 13 then '' else 'row ' || i end, '4']))) as r from range(100) t(i)"""

SPARK_HUNDRED = """select id as i, {fn}(llm_param(map('instruction', case when id = 13 then '' else 'row ' || id end,
    case when id = 71 then 'max_lenght' else 'max_length' end, '4'))) as r from range(100)"""


@pytest.fixture(scope="module")
def short(ray_cluster):
    """A client whose answers stop after 24 tokens, so the guide's statements run as written."""
    return byzerllm.ByzerLLM(default_max_output_length=24)


@pytest.fixture(scope="module")
def echo_chat(ray_cluster):
    client = byzerllm.ByzerLLM().setup_infer_backend("echo").setup_num_workers(2).setup_worker_concurrency(4)
    client.deploy(model_path="", udf_name="sql_echo", infer_params={})
    yield "sql_echo"
    client.undeploy("sql_echo")


def guide(model: str) -> list[str]:
    return [s.replace("kimi_chat", model) for s in GUIDE]


def check_follow_up(first: str, second: str) -> None:
    """The follow-up request carried the first turn: the worker counted its prompt as at least the
    first prompt and answer."""
    one, two = json.loads(first), json.loads(second)
    assert [m["role"] for m in two["input"]["history"]] == ["user", "assistant"]
    assert two["input"]["history"][1]["content"] == one["output"]
    used = one["metadata"]["input_tokens_count"] + one["metadata"]["generated_tokens_count"]
    assert two["metadata"]["input_tokens_count"] >= used


def test_the_guides_statements_on_duckdb(short, smollm2_chat):
    con = duckdb.connect()
    reg = sql.register(con, llm=short, models=[smollm2_chat])
    assert reg.functions == {smollm2_chat: smollm2_chat}
    s1, s2, s3, s4 = guide(smollm2_chat)
    sql.run(con, s1, dialect="spark")
    [(first_text,)] = sql.run(con, s2, dialect="spark").fetchall()
    sql.run(con, s3, dialect="spark")
    [(second_text,)] = sql.run(con, s4, dialect="spark").fetchall()
    assert first_text and second_text
    [(first,)] = con.sql("select response from table1").fetchall()
    [(second,)] = con.sql("select response from table2").fetchall()
    check_follow_up(first, second)
    reg.close()


def test_every_row_is_answered_or_has_its_error(echo_chat):
    con = duckdb.connect()
    reg = sql.register(con, models=[echo_chat], concurrency=8)
    rows = con.sql(
        f"select i, llm_result(r) as a, llm_error(r) as e from ({HUNDRED.format(fn=echo_chat)}) order by i"
    ).fetchall()
    assert [r[0] for r in rows] == list(range(100))
    answers = {i: a for i, a, e in rows if e is None}
    errors = {i: e for i, a, e in rows if e is not None}
    assert len(answers) == 98 and all(answers[i] == f"row {i}" for i in answers)
    assert sorted(errors) == [13, 71]
    assert "instruction" in errors[13] and "max_lenght" in errors[71]
    reg.close()


def test_temperature_0_answers_are_cached_when_asked(llm, echo_chat):
    con = duckdb.connect()
    reg = sql.register(con, models=[echo_chat], cache=True)
    query = f"select llm_result({echo_chat}(llm_param(map(['instruction', 'temperature'], ['same', '0']))))"
    before = sum(llm.stat(echo_chat)["total_requests"])
    assert con.sql(query).fetchall() == con.sql(query).fetchall() == [("same",)]
    assert sum(llm.stat(echo_chat)["total_requests"]) == before + 1
    reg.close()


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_a_typed_function_returns_a_struct(short, smollm2_chat):
    con = duckdb.connect()
    reg = sql.register(con, llm=short, models=[], typed={"person": (smollm2_chat, Person)})
    [(value, error, age_type)] = con.sql(
        "select p.value, p.error, typeof(p.value.age) from (select person(llm_param(map(['instruction'], "
        "['Alice is 30 years old.']))) as p)"
    ).fetchall()
    assert error is None and set(value) == {"name", "age"} and isinstance(value["age"], int)
    assert age_type == "BIGINT"
    reg.close()


def test_the_sql_command_over_a_csv_file(echo_chat, tmp_path):
    (tmp_path / "q.csv").write_text("q\nfirst question\nsecond question\n")
    out = tmp_path / "a.parquet"
    answer = f"llm_result({echo_chat}(llm_param(map(['instruction'], [q]))))"
    query = f"select q, {answer} as a from read_csv('{tmp_path}/q.csv')"
    run_cli("sql", query, "--output", str(out), "--models", echo_chat, check=True)
    assert duckdb.sql(f"select a from '{out}' order by a").fetchall() == [("first question",), ("second question",)]
    shown = run_cli(
        "sql",
        f"""select llm_result({echo_chat}(llm_param(map("instruction", 'hello there')))) as a""",
        "--dialect",
        "spark",
        check=True,
    )
    assert "hello there" in shown.stdout
    bad = run_cli("sql", "select 1", "--output", str(tmp_path / "a.xlsx"))
    assert bad.returncode == 1 and ".csv, .parquet, .json" in bad.stderr


@pytest.fixture(scope="module")
def spark(ray_cluster, tmp_path_factory):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # executors run this environment's Python
    session = (
        SparkSession.builder.master("local[2]")
        .appName("byzerllm-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("warehouse")))
        .getOrCreate()
    )
    yield session
    session.stop()


def test_the_guides_statements_and_row_errors_on_spark(spark, short, smollm2_chat, echo_chat):
    sql.register(spark, llm=short, models=[smollm2_chat, echo_chat])
    s1, s2, s3, s4 = guide(smollm2_chat)
    spark.sql(s1)
    [first_text] = spark.sql(s2).collect()
    spark.sql(s3)
    [second_text] = spark.sql(s4).collect()
    assert first_text.result and second_text.result
    [first] = spark.sql("select response from table1").collect()
    [second] = spark.sql("select response from table2").collect()
    check_follow_up(first.response, second.response)
    hundred = SPARK_HUNDRED.format(fn=echo_chat)
    rows = spark.sql(f"select i, llm_result(r) as a, llm_error(r) as e from ({hundred})").collect()
    assert sorted(r.i for r in rows) == list(range(100))
    assert sorted(r.i for r in rows if r.e is not None) == [13, 71]
    assert sum(1 for r in rows if r.a == f"row {r.i}") == 98


def test_spark_needs_a_ray_client(spark):
    from byzerllm.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="ByzerLLM client, not a SimpleByzerLLM") as info:
        sql.register(spark, llm=byzerllm.SimpleByzerLLM())
    assert info.value.param == "llm"
