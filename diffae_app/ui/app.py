"""The studio's Gradio Blocks: the page and its events (layout in ``tabs.py``, events in
``wiring.py`` and ``api.py``, handlers in ``handlers.py``).

    demo = build_demo(registry)          # registry: ui.models.ModelRegistry
    demo.queue(**settings.queue_kwargs()).launch(**settings.launch_kwargs())

Events and their speed rules:

* encoding runs once per photo, on ``Image.change`` (uploads, webcam, clicks on an example,
  which do not fire ``upload``), with a progress bar; a new photo cancels a running render;
* every slider release, the number boxes (release fires on blur), the lock toggles and the
  Render button go through ONE ``gr.on(..., trigger_mode="always_last")``, so a burst of moves
  renders once, with the latest values; the handler yields a low-step preview, then the final
  render;
* named API endpoints: ``/encode``, ``/edit``, ``/attributes`` (on hidden components, sharing
  the caller's session state), ``/interpolate`` and ``/sample``; every other event is private.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from diffae_app.classifier import CELEBA_ATTRIBUTES, read_header

from . import tabs
from .api import api_components, wire_api
from .examples import real_photo_examples, shipped_examples
from .handlers import Handlers
from .layout import CSS, SliderBank
from .models import ModelRegistry, describe, is_bundled
from .runtime import Settings
from .state import UserState, delete_outputs
from .wiring import Components, wire

TITLE = "DiffAE Studio"

#: ``launch()`` arguments that style the page (Gradio 6 takes css/theme in launch, not Blocks).
CSS_AND_THEME: dict[str, Any] = {"css": CSS}


def known_attribute_names(models: ModelRegistry) -> list[str]:
    """Every attribute a session may need a slider for, so the slots exist at build time.

    The default model's (its classifier artefacts, as loaded), those in the classifier
    artefacts of the bundled model and of the server's other local bundles (their headers
    only, no model is loaded), and the official CelebA classifier's (official checkpoints).
    """
    names = list(models.default.attribute_names)
    for folder in _bundle_folders(models.choices):
        for path in sorted((folder / "classifiers").glob("*.safetensors")):
            header = read_header(path) or {}
            try:
                names += [str(n) for n in json.loads(header.get("attribute_names", "[]"))]
            except (json.JSONDecodeError, TypeError):
                continue  # not an artefact we can read; loading that model will say why
    return [*names, *CELEBA_ATTRIBUTES]


def _bundle_folders(specs: tuple[str, ...]) -> list[Path]:
    """Local bundle folders among the offered model specs, the bundled model always first."""
    from diffae_app.studio import DEFAULT_MODEL_DIR

    folders = [DEFAULT_MODEL_DIR]
    folders += [Path(s) for s in specs if not is_bundled(s) and Path(s).is_dir()]
    return folders


def build_demo(models: ModelRegistry, settings: Settings | None = None) -> gr.Blocks:
    """The whole app for a model registry (the default model is already loaded)."""
    settings = settings or Settings.from_env()
    studio = models.default
    bank = SliderBank(known_attribute_names(models))
    handlers = Handlers(models, bank)
    examples = [str(p) for p in shipped_examples()] + [str(p) for p in real_photo_examples()]

    with gr.Blocks(
        title=TITLE,
        analytics_enabled=False,
        delete_cache=(settings.cache_every, settings.cache_age),
    ) as demo:
        c = Components()
        c["state"] = _session_state(handlers, settings)
        gr.Markdown(f"# {TITLE}\nEdit faces with Diffusion Autoencoders: upload, slide, download.")
        _model_header(c, models)
        with gr.Tabs(selected="edit") as c["tabs"]:
            with gr.Tab("Edit", id="edit", elem_id="tab-edit"):
                tabs.edit_tab(c, bank, handlers.new_state(), examples, studio)
            with gr.Tab("Interpolate", id="interpolate", elem_id="tab-interpolate"):
                tabs.interpolate_tab(c)
            with gr.Tab("Random faces", id="random", elem_id="tab-random"):
                tabs.random_tab(c, studio)
            with gr.Tab("Custom attribute", id="custom", elem_id="tab-custom") as c["custom_tab"]:
                tabs.custom_tab(c, studio)
        api_components(c)
        wire(c, handlers, bank)
        wire_api(c, handlers)
    demo.studio_models = models  # for tests and app.py
    return demo


def _session_state(handlers: Handlers, settings: Settings) -> gr.State:
    """Each browser session's ``UserState``; its files and typed models go when it expires."""

    def fresh_state() -> Any:  # a function (deep-copied as itself), called per session
        return handlers.new_state()

    def forget(state: Any) -> None:  # the session expired: drop all of it
        delete_outputs(state)
        if isinstance(state, UserState):
            handlers.models.release(state.uid)

    return gr.State(fresh_state, time_to_live=settings.session_ttl, delete_callback=forget)


def _model_header(c: Components, models: ModelRegistry) -> None:
    """Which model is active, and the selector to move this session to another one."""
    c["header"] = gr.Markdown(
        describe(models.default, models.default_spec, models.notice), elem_id="studio-header"
    )
    with gr.Accordion("Model", open=False, elem_id="model-accordion"):
        with gr.Row():
            c["model_choice"] = gr.Dropdown(
                choices=list(models.choices),
                value=models.default_spec,
                allow_custom_value=models.allow_custom,
                label="Model: 'default' (bundled), a bundle folder, an official checkpoints "
                "folder or .ckpt, or a Hub repo id"
                if models.allow_custom
                else "Model (the models this server offers)",
                elem_id="model-choice",
                scale=4,
            )
            c["model_load"] = gr.Button("Load for this session", elem_id="model-load", scale=1)
