"""Front ends: the command line (``cli``), the Gradio demo (``demo``, ``demo_page``), and the one
way they all build an agent (``build``)."""
