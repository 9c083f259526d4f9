"""The Python API in a dozen lines: ask the embedded trained toy model about an image, in-process.

    .venv/bin/python demos/direct_answer.py [IMAGE] [QUESTION]

Swap ``TransformersBackend`` for ``OpenAIBackend(url, served_name)`` to use a running vllm serve.
"""

import sys
from pathlib import Path

from srice.agent.prompts import direct_request
from srice.images import check_question, load_image
from srice.serving.hf import TransformersBackend
from srice.serving.variants import get_variant

image = load_image(
    sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "examples" / "large_square.png"
)
question = check_question(sys.argv[2] if len(sys.argv) > 2 else "What colour is the square?")
backend = TransformersBackend(get_variant("toy").model_path())
[completion] = backend.generate([direct_request(image, question)])
print("answer:", completion.text)
print("logprobs:", completion.summary())
