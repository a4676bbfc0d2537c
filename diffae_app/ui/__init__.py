"""The Gradio UI of DiffAE Studio: layout and wiring (``app``), thin handlers (``handlers``),
pure layout rules (``layout``), per-user state (``state``), the model registry (``models``)
and server settings (``runtime``). Only this package and the root ``app.py`` import Gradio."""
