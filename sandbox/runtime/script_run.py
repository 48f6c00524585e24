"""A script job's run: the granted columns as Parquet into the isolated sandbox, its outputs parsed, the outcome.

Called by the executor (``sandbox.runtime.executor``) in the job's child process, for real and dry runs
alike. The sandbox is ``sandbox.scripts`` (bubblewrap, seccomp, rlimits, a pids cgroup); the outputs it
left are parsed and re-serialised by ``jobs.script.outputs``.

What comes out differs by run, because a script can transform the data before any check sees it:

- a dry run (mock rows) answers with everything: the outputs, stdout, stderr, exit status, timings;
- a real run is always held for review, whatever happened: the proposed release holds the outputs
  when the script succeeded and every output passed, none otherwise; the reviewers see the code (the
  job's spec), the runtime (its package list and hash), the exit status, stdout, stderr, timings and problems in the raw table.
  The analyst's view of the job is the same "held" in every case, so that neither its status nor its
  verdict tells whether the script failed, how long it ran, or what it printed.
"""

from __future__ import annotations

import hashlib
import json
import resource
import secrets
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.values import JobStage, JobStatus
from jobs.released import Released
from jobs.script import OutputType, ScriptPlan, ScriptsUnavailable, evidence
from jobs.script.outputs import OutputRefused, Parsed, parse
from policies.model import Disclosure
from policies.rules import CellStatus
from sandbox.runtime.definition import JobDefinition, Outcome, Verdict
from sandbox.scripts import isolation
from sandbox.scripts import runtime as script_runtime
from sandbox.scripts.collect import EVIDENCE
from sandbox.scripts.protocol import Confinement, Request, Result

HELD = "script outputs are always held for review"
DEFAULT_MEMORY_BYTES = 4 * 2**30
FAILED = "the script failed or left outputs the sandbox refused; nothing can be released"


def run(definition: JobDefinition, plan: ScriptPlan, tables: dict[str, pa.Table], stage: Any) -> Outcome:
    """Run ``plan`` isolated on ``tables`` (decrypted, or mock) and say what may come out of it."""
    inputs = script_inputs(plan, tables)
    timeout = definition.limits.timeout_seconds
    memory = definition.limits.memory_bytes or _memory_limit()
    limits = Confinement(wall_seconds=timeout, memory_bytes=memory, cpu_seconds=timeout + 1)
    try:
        result = isolation.run(Request(plan.code, inputs, {name: kind.value for name, kind in plan.outputs.items()}, limits))
    except isolation.IsolationFailed as exc:
        if definition.mock:
            raise
        return held_anyway(str(exc))  # the script may have caused it: a real run ends held whatever happened
    if result.refused:
        raise ScriptsUnavailable(result.refused, details={"field": "kind"})
    stage(JobStage.OUTPUT_CONTROL, 0.8)
    try:
        parsed, problems = _parsed(plan, result)
        evidence = _evidence(plan, result, parsed, definition.policy.disclosure, problems)
    except (Exception, MemoryError) as exc:  # a parser's bug or the memory left: never a failure the analyst sees
        if definition.mock:
            raise
        return held_anyway(f"the outputs could not be read ({type(exc).__name__})")
    run_details = _run_details(result, problems) | {"evidence": evidence}
    succeeded = result.succeeded and not problems
    outputs = {name: output.released() for name, output in parsed.items()} if succeeded else {}
    summary = {"outputs": len(outputs), "runtime": runtime()}
    released: Released = {"columns": [], "rows": [], "notes": [], "summary": summary, "outputs": outputs}
    stage(JobStage.RELEASE, 0.95)
    if definition.mock:
        released["run"] = run_details
        verdict = Verdict(CellStatus.PASS if succeeded else CellStatus.BLOCK, "" if succeeded else FAILED, {"runtime": runtime()})
        return Outcome(JobStatus.RELEASED, "", verdict, _raw(run_details), released)
    verdict = Verdict(CellStatus.REVIEW, HELD if succeeded else f"{HELD}; {FAILED}", {"runtime": runtime()})
    return Outcome(JobStatus.HELD, HELD, verdict, _raw(run_details), released)


def held_anyway(problem: str) -> Outcome:
    """A real run that ended without a usable result (the launcher failed, the outputs could not be read, the job's
    process died): held like any other, nothing proposed for release, the problem for the reviewers. Whether a run
    fails is the script's choice, so it must not show: the analyst reads the same "held" as for a good run."""
    released: Released = {"columns": [], "rows": [], "notes": [], "summary": {"outputs": 0, "runtime": runtime()}, "outputs": {}}
    verdict = Verdict(CellStatus.REVIEW, f"{HELD}; {FAILED}", {"runtime": runtime()})
    return Outcome(JobStatus.HELD, HELD, verdict, _raw({"problems": [problem]}), released)


def _memory_limit() -> int:
    """This process's address-space limit (the job child's), or ``DEFAULT_MEMORY_BYTES`` where none is set."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return DEFAULT_MEMORY_BYTES if soft == resource.RLIM_INFINITY else soft


def script_inputs(plan: ScriptPlan, tables: dict[str, pa.Table]) -> dict[str, bytes]:
    """Each dataset's columns the script may read, as Parquet, join keys replaced by tokens under one fresh key.

    A token is a keyed BLAKE2b (128 bits) of the value's text, with a key drawn for this run and never
    stored: equal values give equal tokens within the run, across its datasets (so rows join), and a
    token cannot be computed, recognised or linked to another run's without the key.
    """
    key = secrets.token_bytes(32)
    inputs = {}
    for name in plan.datasets:
        table = tables[name].select(list(plan.columns[name]))
        for column in plan.tokens[name]:
            table = table.set_column(table.schema.get_field_index(column), column, tokens(key, table.column(column)))
        inputs[name] = _parquet(table)
    return inputs


def tokens(key: bytes, values: pa.ChunkedArray) -> pa.Array:
    """``values`` as opaque tokens under ``key`` (nulls stay null); each distinct value is hashed once."""
    encoded = values.combine_chunks().cast(pa.string()).dictionary_encode()
    hashed = [hashlib.blake2b(value.encode(), key=key, digest_size=16).hexdigest() for value in encoded.dictionary.to_pylist()]
    return pa.array(hashed, pa.string()).take(encoded.indices)


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue())


def _parsed(plan: ScriptPlan, result: Result) -> tuple[dict[str, Parsed], list[str]]:
    parsed: dict[str, Parsed] = {}
    problems = list(result.problems)
    for name, data in result.outputs.items():
        if name not in plan.outputs:  # a table's evidence (``_evidence``)
            continue
        try:
            parsed[name] = parse(OutputType(plan.outputs[name]), data)
        except OutputRefused as exc:
            problems.append(f"output {name!r}: {exc}")
        except (Exception, MemoryError) as exc:  # whatever a hostile file makes a parser raise: refused like the rest
            problems.append(f"output {name!r}: could not be read ({type(exc).__name__})")
    return parsed, problems


def _evidence(plan: ScriptPlan, result: Result, parsed: dict[str, Parsed], settings: Disclosure, problems: list[str]) -> dict[str, Any]:
    """Per table output a helper made, the rules' advisory verdicts on its cells (``jobs.script.evidence``)."""
    judged = {}
    for name, output in parsed.items():
        data = result.outputs.get(f"{name}{EVIDENCE}")
        if data is None or output.table is None:
            continue
        try:
            judged[name] = evidence.judge(json.loads(data.decode("utf-8"), parse_constant=_no_constant), output.table, settings)
        except (Exception, MemoryError) as exc:
            reason = str(exc) if isinstance(exc, evidence.EvidenceRefused) else f"not readable: {type(exc).__name__}"
            problems.append(f"output {name!r}: its evidence is malformed ({reason})")
    return judged


def _no_constant(name: str) -> None:
    raise ValueError("NaN and infinities are not JSON")


def _run_details(result: Result, problems: list[str]) -> dict[str, Any]:
    """What a dry run shows the analyst, and a real run only the reviewers and auditors."""
    return {
        "exit_status": result.exit_status,
        "timed_out": result.timed_out,
        "seconds": round(result.seconds, 3),
        "stdout": result.stdout,
        "stderr": result.stderr,
        "problems": problems,
        "output_bytes": {name: len(data) for name, data in result.outputs.items()},
    }


def _raw(details: dict[str, Any]) -> pa.Table:
    """The run's diagnostics as the raw table reviewers and auditors see (the analyst never does, for a real run)."""
    items = {key: value if isinstance(value, str) else json.dumps(value) for key, value in details.items()}
    items["runtime"] = json.dumps(runtime())
    items["packages"] = "\n".join(script_runtime.packages())  # the list the runtime's hash is of
    return pa.table({"item": list(items), "value": list(items.values())})


def runtime() -> dict[str, str]:
    """The pinned script runtime (``sandbox.scripts.runtime``), recorded with every job: its Python and a hash of its package list."""
    return script_runtime.describe()
