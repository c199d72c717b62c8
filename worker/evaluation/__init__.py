"""Evaluation harness: does the explanation re-rank passages and pick answers well, and at
what cost? Reads the NaturalQuestions and MIRACL files of ``shared/data`` (and MIRACL qrels),
runs the pipeline per question, appends one JSON line per question and summarises.

Pure parts (``data``, ``metrics``, ``summary``, ``store``) import neither torch nor the
engine; ``runner``, ``method_runs`` and ``cli`` talk to an engine only through its public
contract.
"""
