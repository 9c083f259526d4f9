"""The built-in models srice runs without a model hub: where the trained toy bundle lives and how its
detector runs (``toy_bundle``), and the tiny random-weight builds of the MLLM (``tiny_mllm``; other
families, Qwen2.5-VL and LLaVA, in ``tiny_families``) and of every tool (``tiny_tools``) for tests and
smoke runs.

They sit below ``srice.serving`` (a variant can name a built-in model without importing how the toy is
trained, ``srice.toy``) and above ``srice.tools``, whose own loaders the tiny tool builds use.
"""
