"""Answering a question: System 1 -> quality gate -> System 2, in the order of the folders.

- `reader.py`: the answering call every phase reads its evidence with.
- `gate/`: signals, policies, the audit and the judge, calibration.
- `deliberate/`: System 2 strategies over the raw history (neighbour tier, full scan).
- `pipeline.py`: runs the phases and builds the `Answer` once from their results.
"""
