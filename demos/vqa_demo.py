"""The srice Gradio VQA demo, as a script: the same as ``srice demo`` (same options).

    .venv/bin/python demos/vqa_demo.py                      # http://127.0.0.1:7860, starts vllm serve
    .venv/bin/python demos/vqa_demo.py --server http://127.0.0.1:8000 --tools yolo,zoom

The app itself is ``srice.app.demo`` (``build_app`` / ``launch``); ``srice.app.commands.cmd_demo``
wires it to the serving layer and the agent.
"""

import sys

from srice.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
