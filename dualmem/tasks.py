"""The task names every LLM call carries (`ChatRequest.task`).

They key the usage of an `Answer` and of a model (`BaseLLM.usage()`), and they are what
`dualmem.testing.ScriptedLLM` scripts replies against: a script for `"deliberate"` answers
every `"deliberate.*"` task that has no script of its own. The values are part of the
public API (and of the benchmark's response cache keys): renaming one is a breaking change.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Task"]


class Task(StrEnum):
    """One kind of LLM call. The value is the string sent as `ChatRequest.task`."""

    #: System 1: the fast answer from the top retrieved memories
    ANSWER = "answer"
    #: ingestion: candidate facts from new turns
    EXTRACT = "extract"
    #: ingestion: ADD / UPDATE / DELETE / NOOP of facts against their nearest memories
    RECONCILE = "reconcile"
    #: gate: D-Mem's answer quality audit (relevance, faithfulness, completeness)
    GATE_AUDIT = "gate.audit"
    #: gate: extra answers drawn at a raised temperature (consistency, majority, consensus)
    GATE_SAMPLE = "gate.sample"
    #: gate: the judge that counts agreeing samples (majority, consensus)
    GATE_JUDGE = "gate.judge"
    #: System 2, neighbour tier: the answer from the turns around the top memories
    NEIGHBOURS_ANSWER = "neighbours.answer"
    #: System 2, full scan: question-relevant facts from one chunk of the history
    DELIBERATE_EXTRACT = "deliberate.extract"
    #: System 2, full scan: the LLM filter over the kept facts
    DELIBERATE_FILTER = "deliberate.filter"
    #: System 2: the answer from the kept facts (scan) or the selected raw lines (evidence)
    DELIBERATE_ANSWER = "deliberate.answer"
    #: System 2, evidence strategy: pick the numbers of the lines that help answer
    DELIBERATE_SELECT = "deliberate.select"
    #: System 2, evidence strategy: cut a sentence answer down to the words that answer
    DELIBERATE_SHORTEN = "deliberate.shorten"
    #: benchmark baseline `fullctx`: the answer from the whole history in one call
    ANSWER_FULLCTX = "answer.fullctx"
    #: benchmark peer `llamaindex:facts`: LlamaIndex's FactExtractionMemoryBlock at ingestion
    LLAMAINDEX_FACTS = "llamaindex.facts"
