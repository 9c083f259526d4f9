"""Batch evaluation: benchmark files read as ``EvalItem``s (``data`` and ``formats/``), the run that
writes one resumable record per question (``run``), the summaries (``report``) and the scores that
follow each benchmark's reference (``metrics``, ``vqa``, ``choice``)."""
