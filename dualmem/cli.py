"""The `dualmem` command line: demo, add, ask, memories, history, reindex, forget, serve, calibrate, bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from .config import Config, GateConfig
from .errors import DualMemError

app = typer.Typer(
    help="dualmem: dual-process long-term memory for LLM agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_state: dict[str, Any] = {}

UserOpt = Annotated[str | None, typer.Option("--user-id", "-u", help="scope: user id")]
AgentOpt = Annotated[str | None, typer.Option("--agent-id", help="scope: agent id")]
SessionOpt = Annotated[str | None, typer.Option("--session-id", "-s", help="scope: session id")]


@app.callback()
def main(
    data_dir: Annotated[
        Path | None, typer.Option(help="where history and index live [~/.dualmem]")
    ] = None,
    llm: Annotated[str | None, typer.Option(help="'local' or 'openai'")] = None,
    model: Annotated[
        str | None, typer.Option(help="qwen2.5-0.5b, smollm2-135m, a GGUF path, or an API model")
    ] = None,
) -> None:
    overrides = {k: v for k, v in {"data_dir": data_dir, "llm": llm, "model": model}.items() if v is not None}
    _state["overrides"] = overrides


def _config(**extra: Any) -> Config:
    config = Config.from_env(**_state.get("overrides", {}), **extra)
    saved = config.data_dir / "config.json"
    if saved.exists() and "gate" not in config.model_fields_set:  # calibrated settings live with the memory
        config = config.updated(gate=Config.load(saved).gate)
    return config


def _memory(**extra: Any):
    from .memory import DualMemory

    return DualMemory(_config(**extra))


def _run(fn) -> None:
    try:
        fn()
    except DualMemError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    extract: Annotated[
        bool, typer.Option(help="extract facts with the LLM (slower) instead of indexing raw turns")
    ] = False,
    mode: Annotated[str, typer.Option(help="fast, gated or full")] = "gated",
    policy: Annotated[
        str | None, typer.Option(help="gate policy: cascade, signals, audit, majority, consensus")
    ] = None,
    keep: Annotated[bool, typer.Option(help="keep the memory in --data-dir instead of a temp dir")] = False,
) -> None:
    """Ingest a short multi-session conversation and answer questions, showing fast and deliberate paths."""
    from .demo import run_demo

    config = _config()
    _run(
        lambda: run_demo(
            config=config,
            data_dir=config.data_dir if keep else None,
            extract=extract,
            mode=mode,
            policy=policy,
        )
    )


@app.command()
def add(
    transcript: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON list of turns or 'speaker: text' lines")
    ],
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    session_id: SessionOpt = None,
    timestamp: Annotated[str | None, typer.Option(help="date of the session (ISO-8601)")] = None,
    extract: Annotated[
        bool | None, typer.Option(help="extract facts (default from config) or index raw turns")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="turns per add call")] = 20,
) -> None:
    """Add a transcript to the memory: every turn is checked before the first is stored, and
    re-adding the same file stores nothing twice."""
    from .inputs import make_scope
    from .transcript import load_transcript

    def go() -> None:
        turns = load_transcript(transcript, make_scope(user_id, agent_id, session_id), timestamp)
        memory = _memory()
        added = stored = 0
        for start in tqdm(range(0, len(turns), batch), desc="add", unit="batch"):
            result = memory.add(
                turns[start : start + batch],
                user_id=user_id,
                agent_id=agent_id,
                session_id=session_id,
                extract=extract,
            )
            added += len(result.added)
            stored += len(result.turns)
            if result.error:
                typer.secho(f"warning: {result.error}", fg="yellow", err=True)
        skipped = f" ({len(turns) - stored} already stored)" if stored < len(turns) else ""
        typer.echo(f"stored {stored} turns{skipped}, {added} memories added")

    _run(go)


@app.command()
def ask(
    question: str,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    session_id: SessionOpt = None,
    mode: Annotated[str, typer.Option(help="fast, gated or full")] = "gated",
    policy: Annotated[
        str | None, typer.Option(help="cascade, signals, audit, majority, consensus")
    ] = None,
    deliberate: Annotated[
        bool, typer.Option(help="off: gate only, keep the fast answer, say if it would escalate")
    ] = True,
    strategy: Annotated[
        str | None, typer.Option(help="System 2: evidence or scan (default: the config's deliberation)")
    ] = None,
    explain_: Annotated[bool, typer.Option("--explain", help="print the full trace")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the Answer as JSON")] = False,
) -> None:
    """Answer a question from memory."""
    from .explain import explain

    def go() -> None:
        answer = _memory().answer(
            question, user_id=user_id, agent_id=agent_id, session_id=session_id, mode=mode, policy=policy,
            deliberate=deliberate, strategy=strategy,
        )
        typer.echo(answer.model_dump_json(indent=2) if as_json else explain(answer, verbose=explain_))

    _run(go)


@app.command()
def memories(
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    session_id: SessionOpt = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="search instead of listing")] = None,
    k: int = 10,
) -> None:
    """List (or search) the memories of a scope."""

    def go() -> None:
        memory = _memory()
        scope = dict(user_id=user_id, agent_id=agent_id, session_id=session_id)
        found = memory.search(query, k=k, **scope) if query else memory.get_all(**scope)
        for m in found:
            score = f"{m.score:.2f} " if m.score is not None else ""
            typer.echo(f"{score}{m.id}  {m.render()}")
        typer.echo(f"({len(found)} memories)")

    _run(go)


@app.command()
def history(
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    session_id: SessionOpt = None,
    limit: int | None = None,
) -> None:
    """Print the raw turns of a scope."""

    def go() -> None:
        for t in _memory().history(user_id=user_id, agent_id=agent_id, session_id=session_id, limit=limit):
            typer.echo(f"{t.id}  {t.render()}")

    _run(go)


@app.command()
def reindex(
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    session_id: SessionOpt = None,
    extract: Annotated[bool | None, typer.Option(help="extract facts or index raw turns")] = None,
) -> None:
    """Rebuild the memory index from the history (one scope, or all)."""

    def go() -> None:
        r = _memory().reindex(user_id=user_id, agent_id=agent_id, session_id=session_id, extract=extract)
        typer.echo(f"reindexed {r.scopes} scope(s), {r.turns} turns -> {r.memories} memories")
        for e in r.errors:
            typer.secho(f"warning: {e}", fg="yellow", err=True)

    _run(go)


@app.command()
def forget(user_id: UserOpt = None, agent_id: AgentOpt = None, session_id: SessionOpt = None) -> None:
    """Delete a scope's turns and memories."""

    def go() -> None:
        r = _memory().delete_all(user_id=user_id, agent_id=agent_id, session_id=session_id)
        typer.echo(f"deleted {r['turns']} turns and {r['memories']} memories")

    _run(go)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind (off loopback: --api-key)")] = "127.0.0.1",
    port: int = 8000,
    api_key: Annotated[
        str | None, typer.Option(envvar="DUALMEM_API_KEY", help="required on every /v1 call when set")
    ] = None,
    workers: Annotated[int, typer.Option(help="worker processes on the same stores")] = 1,
    demo: Annotated[bool, typer.Option(help="serve a temporary memory holding the demo")] = False,
    runs: Annotated[
        list[Path] | None, typer.Option(help="a `dualmem bench --out` folder (or a folder of them)")
    ] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help="a browser origin allowed to call")] = None,
) -> None:
    """Serve the REST API (/v1, schema at /openapi.json) and the inspector page (/)."""
    try:
        from .serve import serve as run_server
    except ModuleNotFoundError as e:
        typer.secho(f"error: `dualmem serve` needs the serve extra ({e.name} is not installed): "
                    "pip install 'dualmem[serve]'", fg="red", err=True)
        raise typer.Exit(2) from None
    _run(lambda: run_server(_config(), host=host, port=port, api_key=api_key, workers=workers, demo=demo,
                            runs=runs or [], cors_origins=cors_origin or [], echo=typer.echo))


@app.command()
def mcp(
    transport: Annotated[str, typer.Option(help="stdio, or http (streamable HTTP at /mcp)")] = "stdio",
    host: Annotated[str, typer.Option(help="http: the address to listen on (loopback)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="http: the port")] = 8765,
    user_id: Annotated[str | None, typer.Option(envvar="DUALMEM_USER_ID", help="default user id")] = None,
    agent_id: Annotated[str | None, typer.Option(envvar="DUALMEM_AGENT_ID", help="default agent id")] = None,
    session_id: Annotated[str | None, typer.Option(envvar="DUALMEM_SESSION_ID", help="default")] = None,
) -> None:
    """Serve the memory to MCP clients (desktop and IDE agents): see dualmem/mcp_server.py."""
    from .mcp_server import serve

    if transport not in ("stdio", "http"):
        raise typer.BadParameter("--transport must be stdio or http")
    _run(lambda: serve(_memory(), transport=transport, host=host, port=port,  # type: ignore[arg-type]
                       user_id=user_id, agent_id=agent_id, session_id=session_id))


@app.command()
def calibrate(
    results: Annotated[
        Path, typer.Argument(exists=True, help="JSONL of labelled questions (from `dualmem bench`)")
    ],
    target_escalation: Annotated[
        float | None, typer.Option(help="escalate this share of questions")
    ] = None,
    target_quality: Annotated[
        float | None, typer.Option(help="reach this share of always-deliberate F1")
    ] = None,
    fit: Annotated[
        bool, typer.Option("--fit", help="fit the learned gate, cross-validated by conversation")
    ] = False,
    max_escalation: Annotated[float, typer.Option(help="--fit: escalate at most this share")] = 0.35,
    max_right_escalated: Annotated[
        float, typer.Option(help="--fit: escalate at most this share of right fast answers")
    ] = 0.10,
    out: Annotated[Path | None, typer.Option(help="--fit: model file (default: the data dir's)")] = None,
    save: Annotated[bool, typer.Option(help="save the fitted gate into the data dir's config.json")] = True,
) -> None:
    """Fit the gate on labelled questions and print the trade-off table: thresholds and the
    cascade band for a target, or (--fit) the learned gate's weights and operating point."""

    def go() -> None:
        config = _config()
        if fit:
            gate = _fit_learned(results, config, out, max_escalation, max_right_escalated)
        else:
            gate = _calibrate_thresholds(results, config, target_escalation, target_quality)
        if save:
            typer.echo(f"saved to {config.updated(gate=gate).save()}")

    _run(go)


def _fit_learned(
    results: Path, config: Config, out: Path | None, max_esc: float, max_right: float
) -> GateConfig:
    from .answering.gate.learned import FEATURES, fit, format_fit, load_labelled

    data = load_labelled(results)
    report = fit(data.features, data.wrong, data.groups, names=FEATURES, max_escalation=max_esc,
                 max_right_escalated=max_right)
    report.model.fitted_on = f"{results} ({report.n} questions, {report.groups} conversations)"
    typer.echo(format_fit(report))
    path = out or Path(config.data_dir) / "gate_model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report.model.save(path)
    typer.echo(f"model written to {path}")
    return config.gate.model_copy(update={"policy": "learned", "model": str(path)})


def _calibrate_thresholds(
    results: Path, config: Config, escalation: float | None, quality: float | None
) -> GateConfig:
    from .answering.gate.calibrate import calibrate as fit_thresholds
    from .answering.gate.calibrate import format_table, load_records

    cal = fit_thresholds(
        load_records(results), base=config.gate, target_escalation=escalation,
        target_quality=quality,
    )
    typer.echo(format_table(cal))
    typer.echo("\n" + cal.config.model_dump_json(indent=2))
    return cal.config


_BENCH_EXTRA = ("nltk", "matplotlib")  # [project.optional-dependencies] bench


def _bench_unavailable(missing: str) -> None:
    """`dualmem bench` without the bench extra: a clear error and exit code 2, whatever the args."""

    @app.command(
        "bench",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    )
    def bench(ctx: typer.Context) -> None:
        """Benchmarks (needs the bench extra: pip install 'dualmem[bench]')."""
        typer.secho(
            f"error: `dualmem bench` needs the bench extra ({missing} is not installed): "
            "pip install 'dualmem[bench]'",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)


try:  # the benchmark harness registers `dualmem bench`
    from .bench.run import register as _register_bench
except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] not in _BENCH_EXTRA:
        raise  # not the optional extra: a real error
    _bench_unavailable((e.name or "").split(".")[0])
else:
    _register_bench(app)
