"""The synthetic VQA world: scenes of shapes (``scene``), their pictures (``render``), questions with
exact answers (``questions``), and the generator that writes a data set (``world``)."""

from srice.synth.world import GENERATOR_VERSION, SynthKnobs, SynthSummary, generate, make_image

__all__ = ["GENERATOR_VERSION", "SynthKnobs", "SynthSummary", "generate", "make_image"]
