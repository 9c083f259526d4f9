"""How the embedded toy bundle is made: training data (``data``), vision pre-training (``vision``),
MLLM and YOLO training, and the bundle run that trains and calibrates both (``bundle``). Where the
bundle lives and how its detector runs is ``srice.builtin.toy_bundle``."""
