"""Driver for scripts/autocoder_check.sh; runs inside the auto-coder venv, never the project's .venv.

autocoder_driver.py imports MOD...   import each module in a subprocess of its own; exit 1 if any fails
autocoder_driver.py survey           import every autocoder.* module one by one (2 at a time) and
                                     scan auto-coder's source for the byzerllm names it uses; print
                                     the byzerllm names/modules that are missing, by how many
                                     autocoder modules they stop
autocoder_driver.py e2e --base-url URL --api-key KEY --model DEPLOYMENT
                                     auto-coder's own code builds a saas/openai SimpleByzerLLM on URL
                                     and runs one of its prompt functions on it
"""

from __future__ import annotations

import argparse
import ast
import collections
import concurrent.futures
import importlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import traceback

MARK = "@@AUTOCODER_CHECK@@"

# runs in a fresh interpreter: import one module, print one JSON line after MARK
CHILD = r"""
import importlib, json, sys, traceback
name = sys.argv[1]
try:
    importlib.import_module(name)
    out = {"ok": True}
except BaseException as e:
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(e.__traceback__)]
    out = {"ok": False, "type": type(e).__name__, "msg": str(e)[:400],
           "name": getattr(e, "name", None) if isinstance(e, (ImportError, AttributeError)) else None,
           "obj": getattr(getattr(e, "obj", None), "__name__", None) if isinstance(e, AttributeError) else None,
           "frames": frames[-40:], "tail": "".join(traceback.format_exception_only(e)).strip()}
sys.stdout.flush()
print("\n" + sys.argv[2] + json.dumps(out), flush=True)
"""


def byzerllm_src() -> str:
    spec = importlib.util.find_spec("byzerllm")
    return str(pathlib.Path(spec.origin).parent.resolve())


def autocoder_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("autocoder")
    return pathlib.Path(next(iter(spec.submodule_search_locations))).resolve()


def import_in_child(module: str, timeout: float = 180) -> dict:
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [sys.executable, "-c", CHILD, module, MARK],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {
            "ok": False,
            "type": "Timeout",
            "msg": f"import took over {timeout}s",
            "frames": [],
            "tail": "timeout",
            "seconds": timeout,
        }
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(MARK)]
    if not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {
            "ok": False,
            "type": "Crash",
            "msg": f"exit {p.returncode}: {' | '.join(tail)}",
            "frames": [],
            "tail": "\n".join(tail),
            "seconds": time.monotonic() - t0,
        }
    out = json.loads(lines[-1][len(MARK) :])
    out["seconds"] = time.monotonic() - t0
    return out


def classify(r: dict, bsrc: str, acdir: str) -> tuple[str, str, str]:
    """(cause, key, where): cause is 'byzerllm' or 'other'; key names the missing thing or the error;
    where is the auto-coder file:line that hit it."""
    frames = r.get("frames") or []
    ac = [f for f in frames if f[0].startswith(acdir)]
    where = f"autocoder/{os.path.relpath(ac[-1][0], acdir)}:{ac[-1][1]}" if ac else "?"
    typ, msg, name = r.get("type"), r.get("msg", ""), r.get("name") or ""
    real = [f for f in frames if not f[0].startswith("<frozen")]
    if real and real[-1][0].startswith(bsrc):  # raised in byzerllm's own code, e.g. while it imports itself
        f = real[-1]
        return (
            "byzerllm",
            (f"byzerllm's own code fails: {r.get('tail', msg)[:200]} (byzerllm/{os.path.relpath(f[0], bsrc)}:{f[1]})"),
            where,
        )
    if typ == "ModuleNotFoundError" and name.split(".")[0] == "byzerllm":
        return "byzerllm", f"module {name}", where
    if typ == "ImportError" and name.split(".")[0] == "byzerllm" and msg.startswith("cannot import name"):
        attr = msg.split("'")[1]
        return "byzerllm", f"{name}.{attr}", where
    if typ == "AttributeError" and (r.get("obj") or "").split(".")[0] == "byzerllm":
        return "byzerllm", f"{r['obj']}.{name}", where
    if typ == "AttributeError" and msg.startswith("module 'byzerllm"):
        mod = msg.split("'")[1]
        return "byzerllm", f"{mod}.{msg.split(chr(39))[3]}", where
    inside = [f for f in frames if f[0].startswith(bsrc)]
    if inside:
        f = inside[-1]
        at = f"byzerllm/{os.path.relpath(f[0], bsrc)}:{f[1]}"
        return "byzerllm", f"error inside byzerllm: {typ}: {msg[:160]} ({at})", where
    return "other", f"{typ}: {msg[:200]}", where


def cmd_imports(modules: list[str]) -> int:
    bsrc, acdir = byzerllm_src(), str(autocoder_dir())
    failed = 0
    for m in modules:
        r = import_in_child(m)
        if r["ok"]:
            print(f"  ok    import {m} ({r['seconds']:.1f}s)")
            continue
        failed += 1
        cause, key, where = classify(r, bsrc, acdir)
        print(f"  FAIL  import {m}: {r['tail']}")
        print(f"        cause: {cause}: {key}  (hit at {where})")
        shown = [f for f in r.get("frames") or [] if not f[0].startswith("<") and "/importlib/" not in f[0]]
        for f in shown[-4:]:
            print(f'          File "{f[0]}", line {f[1]}, in {f[2]}\n            {f[3]}')
    print(f"imports: {len(modules) - failed} ok, {failed} failed")
    return 1 if failed else 0


def all_modules(acdir: pathlib.Path) -> list[str]:
    mods = []
    for p in sorted(acdir.rglob("*.py")):
        rel = p.relative_to(acdir.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(not x.isidentifier() for x in parts) or parts[-1].startswith("test_"):
            continue  # not importable, or auto-coder's own tests (they need pytest)
        mods.append(".".join(parts))
    return mods


def static_scan(acdir: pathlib.Path) -> dict[str, set[str]]:
    """Every byzerllm name auto-coder's source imports or reads as byzerllm.X.Y that is missing here."""
    import byzerllm  # noqa: F401

    def exists(dotted: str) -> bool:
        parts = dotted.split(".")
        obj = None
        for i in range(len(parts), 0, -1):  # longest importable module prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except Exception:
                continue
            try:
                for a in parts[i:]:
                    obj = getattr(obj, a)
            except AttributeError:
                return False
            return True
        return False

    uses: dict[str, set[str]] = collections.defaultdict(set)
    for p in sorted(acdir.rglob("*.py")):
        try:
            tree = ast.parse(p.read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue
        rel = str(p.relative_to(acdir.parent))
        aliases = {"byzerllm": "byzerllm"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "byzerllm":
                        uses[a.name].add(rel)
                        if a.asname:
                            aliases[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("byzerllm"):
                for a in node.names:
                    uses[f"{node.module}.{a.name}" if a.name != "*" else node.module].add(rel)
        for node in ast.walk(tree):  # byzerllm.X.Y read as attributes
            if isinstance(node, ast.Attribute):
                chain, n = [], node
                while isinstance(n, ast.Attribute):
                    chain.append(n.attr)
                    n = n.value
                if isinstance(n, ast.Name) and n.id in aliases and aliases[n.id] == "byzerllm":
                    uses["byzerllm." + ".".join(reversed(chain))].add(rel)
    # group by the first missing component: byzerllm.utils.client.entrypoints (and every name under
    # it) is one missing thing; the names used under it are listed with it
    out: dict[str, set[str]] = collections.defaultdict(set)
    names: dict[str, set[str]] = collections.defaultdict(set)
    for dotted, files in uses.items():
        parts = dotted.split(".")
        first = next((i for i in range(2, len(parts) + 1) if not exists(".".join(parts[:i]))), None)
        if first is None:
            continue
        key = ".".join(parts[:first])
        out[key] |= files
        if first < len(parts):
            names[key].add(".".join(parts[first:]))
    return {(f"{k} (used: {', '.join(sorted(names[k]))})" if names[k] else k): v for k, v in out.items()}


def cmd_survey() -> int:
    acdir = autocoder_dir()
    bsrc = byzerllm_src()
    mods = all_modules(acdir)
    print(f"importing {len(mods)} autocoder modules, one subprocess each, 2 at a time...")
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(mods, pool.map(import_in_child, mods), strict=True))
    ok = [m for m, r in results.items() if r["ok"]]
    by_cause: dict[str, dict[str, list]] = {c: collections.defaultdict(list) for c in ("byzerllm", "other")}
    for m, r in results.items():
        if not r["ok"]:
            cause, key, where = classify(r, bsrc, str(acdir))
            by_cause[cause][key].append((m, where))
    nb = sum(len(v) for v in by_cause["byzerllm"].values())
    no = sum(len(v) for v in by_cause["other"].values())
    print(
        f"survey: {len(mods)} modules in {time.monotonic() - t0:.0f}s: {len(ok)} import, "
        f"{nb} fail because of byzerllm, {no} fail for other reasons"
    )
    for cause, title in (("byzerllm", "missing in byzerllm (first failure of each module)"), ("other", "other causes")):
        groups = sorted(by_cause[cause].items(), key=lambda kv: (-len(kv[1]), kv[0]))
        if not groups:
            continue
        print(f"\n-- {title}: {len(groups)} distinct")
        for key, items in groups:
            wheres = collections.Counter(w for _, w in items)
            print(f"  {len(items):4d} modules  {key}")
            print(
                f"               needed at: {', '.join(f'{w} ({n})' for w, n in wheres.most_common(4))}"
                + (" ..." if len(wheres) > 4 else "")
            )
    try:
        static = static_scan(acdir)
    except Exception as e:  # byzerllm itself does not import
        print(f"\n-- static scan skipped: byzerllm does not import: {type(e).__name__}: {e}")
        static = {}
    print(f"\n-- static scan of auto-coder's source: {len(static)} byzerllm names used but missing here")
    for key, files in sorted(static.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        sample = ", ".join(sorted(files)[:3]) + (" ..." if len(files) > 3 else "")
        print(f"  {len(files):4d} files  {key}   ({sample})")
    report = pathlib.Path(os.environ.get("AUTOCODER_SURVEY_JSON", "/tmp/autocoder_survey.json"))
    report.write_text(
        json.dumps(
            {"results": results, "static_missing": {k: sorted(v) for k, v in static.items()}},
            indent=1,
            ensure_ascii=False,
        )
    )
    print(f"\nfull results: {report}")
    return 1 if nb else 0


CHANGES_REPORT = """## Modified Files
### src/greeting.py
```diff
diff --git a/src/greeting.py b/src/greeting.py
--- a/src/greeting.py
+++ b/src/greeting.py
@@ -1,2 +1,5 @@
-def greet():
-    return "hello"
+def greet(name: str = "world") -> str:
+    \"\"\"Greet someone by name.\"\"\"
+    return f"hello, {name}"
```
"""


def cmd_e2e(base_url: str, api_key: str, model: str) -> int:
    step = "start"

    def ok(msg: str) -> None:
        print(f"  ok    {step}: {msg}", flush=True)

    try:
        step = "register the model in auto-coder (autocoder.models.add_and_activate_models)"
        from autocoder import models as models_module

        name = "byzerllm/autocoder-check"
        models_module.add_and_activate_models(
            [
                {
                    "name": name,
                    "description": "byzerllm serve in front of the built-in model",
                    "model_name": model,
                    "model_type": "saas/openai",
                    "base_url": base_url,
                    "api_key": api_key,
                    "is_reasoning": False,
                    "input_price": 1.0,
                    "output_price": 2.0,
                    "average_speed": 0.0,
                    "max_output_tokens": 48,
                }
            ]
        )
        info = models_module.get_model_by_name(name)
        assert info["base_url"] == base_url and info["api_key"] == api_key, info
        ok(f"{name} -> {base_url} model {model}")

        step = "build the client (autocoder.utils.llms.get_single_llm, product_mode=lite)"
        from autocoder.utils import llms

        import byzerllm

        # SimpleByzerLLM(default_model_name=name).deploy(model_path="", pretrained_model_type="saas/openai",
        #   udf_name=name, infer_params={"saas.base_url", "saas.api_key", "saas.model", "saas.is_reasoning",
        #   "saas.max_output_tokens"}) -- auto-coder's own code
        llm = llms.get_single_llm(name, product_mode="lite")
        assert isinstance(llm, byzerllm.SimpleByzerLLM), type(llm)
        assert llm.default_model_name == name, llm.default_model_name
        assert llms.get_llm_names(llm) == [name], llms.get_llm_names(llm)
        ok(f"{type(llm).__name__}(default_model_name={llm.default_model_name!r}) deployed as saas/openai")

        step = "auto-coder prompt function (git_utils.generate_commit_message.with_llm(llm).run)"
        from autocoder.common import git_utils

        t0 = time.monotonic()
        message = git_utils.generate_commit_message.with_llm(llm).run(CHANGES_REPORT)
        assert isinstance(message, str), type(message)
        assert message.strip(), "empty commit message"
        ok(f"{len(message)} chars in {time.monotonic() - t0:.1f}s: {message.strip()[:80]!r}...")

        step = "token counts (byzerllm.MetaHolder + autocoder TokenCostCalculator)"
        from autocoder.common.token_cost_caculate import TokenCostCalculator

        meta_holder = byzerllm.MetaHolder()
        message = git_utils.generate_commit_message.with_llm(llm).with_meta(meta_holder).run(CHANGES_REPORT)
        assert isinstance(message, str) and message.strip(), repr(message)
        calc = TokenCostCalculator(logger_name="autocoder_check")
        model_names, info_map = calc.get_model_info(llm)
        assert model_names == name and info_map == {name: {"input_price": 1.0, "output_price": 2.0}}, info_map
        stats = calc.calculate_token_costs(meta_holder, info_map)
        assert stats.input_tokens > 100, stats  # the prompt's few-shot examples alone are thousands
        assert 0 < stats.output_tokens <= 48, stats  # saas.max_output_tokens caps it
        assert stats.total_cost > 0, stats
        ok(f"input_tokens={stats.input_tokens} output_tokens={stats.output_tokens} cost={stats.total_cost:.6f}")

        step = "code generation that continues a cut-off answer (utils_code_auto_generate.chat_with_continue)"
        from autocoder.common import AutoCoderArgs
        from autocoder.common.utils_code_auto_generate import chat_with_continue

        # auto-coder's code-generation llm_config carries human_as_model; ignore_eos makes every round end
        # on the 48-token cap, so auto-coder asks again with "gen.response_prefix": True (the server
        # continues the assistant message) until its 6 rounds are done
        t0 = time.monotonic()
        result = chat_with_continue(
            llm,
            [{"role": "user", "content": "Write a Python module of ten functions."}],
            {"human_as_model": False, "gen.ignore_eos": True},
            AutoCoderArgs(),
        )
        assert result.content.strip(), "empty code"
        assert result.generated_tokens_count > 48, result  # more than one round: the prefix was continued
        ok(
            f"{result.generated_tokens_count} tokens in {len(result.content)} chars over "
            f"{result.generated_tokens_count // 48} rounds in {time.monotonic() - t0:.1f}s"
        )
    except BaseException as e:  # report every failure the same way
        print(f"  FAIL  {step}")
        for line in traceback.format_exception(e)[-6:]:
            print("        " + line.rstrip().replace("\n", "\n        "))
        print("e2e: failed")
        return 1
    print("e2e: passed")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("imports").add_argument("modules", nargs="+")
    sub.add_parser("survey")
    e = sub.add_parser("e2e")
    e.add_argument("--base-url", required=True)
    e.add_argument("--api-key", required=True)
    e.add_argument("--model", required=True)
    a = ap.parse_args()
    if a.cmd == "imports":
        return cmd_imports(a.modules)
    if a.cmd == "survey":
        return cmd_survey()
    return cmd_e2e(a.base_url, a.api_key, a.model)


if __name__ == "__main__":
    sys.exit(main())
