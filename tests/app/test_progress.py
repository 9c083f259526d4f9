"""Progress without a terminal: plain lines with counts, rate and ETA."""

import io

from srice.app.progress import Progress


def test_lines_every_twentieth_and_at_the_end_when_not_a_terminal():
    stream = io.StringIO()  # not a terminal
    with Progress(100, done=20, stream=stream) as p:
        for _ in range(8):
            p.update(10)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 and lines[0].startswith("eval: 30/100 q (30%), ") and "ETA" in lines[0]
    assert lines[-1].startswith("eval: 100/100 q (100%)") and lines[-1].endswith("ETA 0s")
    quiet = io.StringIO()
    p = Progress(1000, stream=quiet, interval=3600)
    p.update(10)  # 1% done, under a twentieth: no line yet
    assert quiet.getvalue() == ""
